"""The storage module's messages: each one is the text of an error some code raises."""

from __future__ import annotations

import base64
import hashlib
import pickle
import re
import socket
from pathlib import Path

import pytest
from pydantic import SecretStr

from compute import i18n, storage, transfer
from compute.phases import InputChangedError, InputChanges

REPO_ROOT = Path(__file__).resolve().parents[1]


def _source_code() -> str:
    files = [*(REPO_ROOT / "compute").rglob("*.py"), *(REPO_ROOT / "flows").rglob("*.py")]
    return "\n".join(path.read_text(encoding="utf-8") for path in files)


def test_every_storage_message_is_raised() -> None:
    source = _source_code()
    codes = [key.removeprefix("storage.") for key in i18n.keys() if key.startswith("storage.")]

    assert codes, "compute.storage registers no message"
    for code in codes:
        raised = re.search(rf"DeliveryError\(\s*\"{code}\"", source)
        # The register call names the key once, so a second mention is a localized_error(...) or message(...) that uses it.
        used = source.count(f'"storage.{code}"') >= 2
        assert raised or used, f"nothing raises or logs storage.{code}"


def test_changed_input_keeps_its_texts() -> None:
    error = InputChangedError("/in/20261201/", "2026-12-01", InputChanges(resized=("vehicles/part-0.parquet",)), True)

    assert isinstance(error, storage.DeliveryError)
    assert error.code == "input_changed"
    assert "前回の取得（fetch）の後に変わりました" in error.message("ja")
    assert "サイズ変更 1 件: vehicles/part-0.parquet" in error.message("ja")
    assert str(error).startswith("The input of 2026-12-01 in /in/20261201/ changed after it was fetched")
    assert pickle.loads(pickle.dumps(error)).message("ja") == error.message("ja")


class TestLocalizedErrors:
    """Errors of copies, uploads and notices carry their text in both languages, also after pickling."""

    def test_copy_failure_in_both_languages(self, tmp_path: Path) -> None:
        source = storage.Store(str(tmp_path / "in"))
        source.write_bytes("a.parquet", b"a" * 10)
        destination = storage.Store(str(tmp_path / "out"))

        def corrupt(store: storage.Store, record: storage.ObjectRecord) -> None:
            raise storage.VerificationError(f"{record.path} differs")

        with pytest.raises(storage.StorageError) as info:
            storage.copy_tree(source, destination, phase="fetch", run_date="2026-12-01", retries=0, verify=corrupt)

        error = info.value
        assert str(error).startswith(f"1 of 1 objects failed to copy from {source.url} to {destination.url}: a.parquet: a.parquet differs.")
        assert str(error).endswith("then rerun the fetch phase.")
        assert error.message("ja").startswith("1 個中 1 個のオブジェクトを")
        assert error.message("ja").endswith("fetch フェーズを再実行してください。")
        assert pickle.loads(pickle.dumps(error)).message("ja") == error.message("ja")

    def test_upload_checksum_in_both_languages(self) -> None:
        body = b"payload"
        record = storage.ObjectRecord("a.bin", len(body), hashlib.sha256(body).hexdigest(), base64.b64encode(hashlib.md5(body).digest()).decode())
        wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()

        with pytest.raises(storage.VerificationError) as info:
            transfer.check_put_response(record, {"ChecksumSHA256": wrong, "ETag": '"x"'}, url="s3://b/a.bin")

        assert str(info.value) == f"upload of s3://b/a.bin returned ChecksumSHA256={wrong}, expected {record_checksum(body)}; the object is corrupt, rerun publish"
        assert info.value.message("ja").startswith(f"s3://b/a.bin へのアップロードの応答の ChecksumSHA256 が {wrong} で")

    def test_webhook_refusal_in_both_languages(self) -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            port = listener.getsockname()[1]
        # Nothing listens on the port any more, so the connection is refused.
        with pytest.raises(transfer.NoticeError) as info:
            transfer.send_webhook(SecretStr(f"http://127.0.0.1:{port}/hook"), {"run_date": "2026-12-01"}, timeout_s=5)

        assert str(info.value) == "completion webhook failed: URLError; check the receiver, then rerun publish"
        assert info.value.message("ja") == "完了通知の Webhook に送れませんでした（URLError）。受信側を確認してから、publish フェーズを再実行してください。"

    def test_plain_text_error_keeps_its_text(self) -> None:
        error = storage.StorageError("cannot delete s3://b/x: the output allows PutObject only")

        assert error.message("ja") == "cannot delete s3://b/x: the output allows PutObject only"


def record_checksum(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()
