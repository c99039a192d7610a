"""A day delivered again: ``_SUCCESS`` is withdrawn first, and files the new delivery lacks are accounted for.

The client's output is moto S3 with a PutObject-only key, so nothing can be deleted there. The
lake is the GCS emulator. A second case delivers to a local folder, which allows deleting.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from compute import transfer
from compute.storage import ObjectRecord, StorageError, Store

from .conftest import GcsEmulator, MotoS3

DAY = "2026-12-01"


class _WatchedUploader(transfer.S3PutObjectUploader):
    """The real PutObject uploader; before each PUT it records the ``_SUCCESS`` the client would read now."""

    def __init__(self, moto_s3: MotoS3, prefix: str) -> None:
        super().__init__(f"s3://{moto_s3.output_bucket}/{prefix}", moto_s3.options("writer"))
        self.admin = moto_s3.client("admin")
        self.seen: list[tuple[str, dict[str, Any] | None]] = []

    def put(self, relative: str, body: Any, record: ObjectRecord) -> dict[str, Any]:
        self.seen.append((relative, _success(self.admin, self.bucket, self.prefix)))
        return super().put(relative, body, record)


def _success(admin: Any, bucket: str, prefix: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(admin.get_object(Bucket=bucket, Key=prefix + "_SUCCESS")["Body"].read()))
    except admin.exceptions.NoSuchKey:
        return None


def _objects(admin: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    listed = admin.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix):]: admin.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def _lake(gcs: GcsEmulator, name: str) -> tuple[Store, Store]:
    processed = Store(f"gs://{gcs.bucket}/{name}/processed/20261201/", gcs.options)
    state = Store(f"gs://{gcs.bucket}/{name}/temp/20261201/", gcs.options)
    return processed, state


def _deliver(processed: Store, uploader: transfer.Uploader, state: Store, events: list[tuple[str, dict[str, Any]]] | None = None,
             **kwargs: Any) -> Any:
    sink = (lambda e, f: events.append((e, f))) if events is not None else transfer._ignore
    return transfer.deliver(processed, uploader, state, run_date=DAY, versions={}, retries=0, retry_delay_s=0.01, on_event=sink, **kwargs)


def _delivered_day(moto_s3: MotoS3, gcs: GcsEmulator, name: str, files: dict[str, bytes]) -> tuple[Store, Store, _WatchedUploader, Any]:
    """Deliver ``files`` once to the write-only output; return the lake stores, the uploader and the manifest.

    The uploader's record of PUTs starts empty, so a test sees only the PUTs of its own delivery.
    """
    processed, state = _lake(gcs, name)
    for relative, body in files.items():
        processed.write_bytes(relative, body)
    uploader = _WatchedUploader(moto_s3, f"output/{name}/20261201/")
    manifest, _ = _deliver(processed, uploader, state)
    uploader.seen.clear()
    return processed, state, uploader, manifest


class TestWriteOnlyOutput:
    def test_changed_day_withdraws_success_first(self, moto_s3: MotoS3, gcs: GcsEmulator) -> None:
        files = {"trips.parquet": b"old trips" * 100, "summary.json": b'{"trips": 1}'}
        processed, state, uploader, first = _delivered_day(moto_s3, gcs, "redeliver-changed", files)
        old_sha = first.counts["manifest_sha256"]

        processed.write_bytes("trips.parquet", b"new trips" * 100)
        events: list[tuple[str, dict[str, Any]]] = []
        second, proof = _deliver(processed, uploader, state, events)

        order = [name for name, _ in uploader.seen]
        assert order == ["_SUCCESS", "trips.parquet", "manifest.json", "_SUCCESS"]
        # The first PUT of the new delivery finds the old, complete _SUCCESS and replaces it ...
        assert uploader.seen[0][1] == {"run_date": DAY, "status": "complete", "manifest_sha256": old_sha}
        # ... so while trips.parquet and the manifest change, the client reads "redelivering".
        for _, success in uploader.seen[1:]:
            assert success == {"run_date": DAY, "status": "redelivering", "manifest_sha256": None, "replaces_manifest_sha256": old_sha}
        outputs = _objects(uploader.admin, uploader.bucket, uploader.prefix)
        final = json.loads(outputs["_SUCCESS"])
        assert final == {"run_date": DAY, "status": "complete", "manifest_sha256": proof.sha256}
        assert hashlib.sha256(outputs["manifest.json"]).hexdigest() == proof.sha256 != old_sha
        assert outputs["trips.parquet"] == b"new trips" * 100
        assert second.counts["uploaded"] == 3
        assert second.counts["already_delivered"] == 1  # summary.json unchanged
        assert [e for e, _ in events].count("success_withdrawn") == 1

    def test_unchanged_day_leaves_success_alone(self, moto_s3: MotoS3, gcs: GcsEmulator) -> None:
        processed, state, uploader, _ = _delivered_day(moto_s3, gcs, "redeliver-same", {"trips.parquet": b"trips" * 100})
        events: list[tuple[str, dict[str, Any]]] = []
        manifest, _ = _deliver(processed, uploader, state, events)
        assert uploader.seen == []
        assert manifest.counts["uploaded"] == 0
        assert "success_withdrawn" not in [e for e, _ in events]

    def test_force_withdraws_then_uploads_everything(self, moto_s3: MotoS3, gcs: GcsEmulator) -> None:
        processed, state, uploader, _ = _delivered_day(moto_s3, gcs, "redeliver-force", {"trips.parquet": b"trips" * 100})
        _deliver(processed, uploader, state, force=True)
        assert [name for name, _ in uploader.seen] == ["_SUCCESS", "trips.parquet", "manifest.json", "_SUCCESS"]
        assert uploader.seen[1][1] is not None and uploader.seen[1][1]["status"] == "redelivering"
        assert _success(uploader.admin, uploader.bucket, uploader.prefix)["status"] == "complete"  # type: ignore[index]

    def test_interrupted_redelivery_stays_withdrawn(self, moto_s3: MotoS3, gcs: GcsEmulator) -> None:
        files = {"a.parquet": b"a" * 100, "b.parquet": b"b" * 100}
        processed, state, uploader, _ = _delivered_day(moto_s3, gcs, "redeliver-broken", files)
        processed.write_bytes("a.parquet", b"A" * 100)
        processed.write_bytes("b.parquet", b"B" * 100)

        moto_s3.fail("PUT", "redeliver-broken/20261201/b.parquet", -1)
        try:
            with pytest.raises(StorageError, match="b.parquet") as info:
                _deliver(processed, uploader, state)
        finally:
            moto_s3.heal()
        assert _success(uploader.admin, uploader.bucket, uploader.prefix)["status"] == "redelivering"  # type: ignore[index]
        # The operator reads it in Japanese by default, without a traceback (a StorageError is expected).
        assert "2 個中 1 個のオブジェクトを" in info.value.message("ja")
        assert "publish を再実行してください" in info.value.message("ja")
        from flows.cli import is_expected

        assert is_expected(info.value)

        uploader.seen.clear()
        _, proof = _deliver(processed, uploader, state)
        # a.parquet is delivered already; the withdrawn _SUCCESS is not withdrawn a second time.
        assert [name for name, _ in uploader.seen] == ["b.parquet", "manifest.json", "_SUCCESS"]
        assert _success(uploader.admin, uploader.bucket, uploader.prefix) == {"run_date": DAY, "status": "complete", "manifest_sha256": proof.sha256}

    def test_expired_markers_still_withdraw(self, moto_s3: MotoS3, gcs: GcsEmulator) -> None:
        # temp/ (and the delivery markers in it) expired after the first delivery, which the
        # write-only output does not let us see. A redelivery that fails part way must not leave
        # the old complete _SUCCESS and manifest over a mix of old and new files.
        files = {"a.parquet": b"a" * 100, "b.parquet": b"b" * 100}
        processed, state, uploader, _ = _delivered_day(moto_s3, gcs, "redeliver-expired", files)
        state.remove(transfer.DELIVERY_DIR)
        processed.write_bytes("a.parquet", b"A" * 100)
        processed.write_bytes("b.parquet", b"B" * 100)

        moto_s3.fail("PUT", "redeliver-expired/20261201/b.parquet", -1)
        try:
            with pytest.raises(StorageError, match="b.parquet"):
                _deliver(processed, uploader, state)
        finally:
            moto_s3.heal()

        assert [name for name, _ in uploader.seen][:2] == ["_SUCCESS", "a.parquet"]
        success = _success(uploader.admin, uploader.bucket, uploader.prefix)
        assert success == {"run_date": DAY, "status": "redelivering", "manifest_sha256": None, "replaces_manifest_sha256": None}

    def test_old_format_files_listed_withdrawn(self, moto_s3: MotoS3, gcs: GcsEmulator) -> None:
        files = {"trips.parquet": b"parquet" * 100, "summary.json": b"{}"}
        processed, state, uploader, _ = _delivered_day(moto_s3, gcs, "redeliver-format", files)

        processed.remove("trips.parquet")
        processed.write_bytes("trips.csv", b"trip_id\n1\n")
        events: list[tuple[str, dict[str, Any]]] = []
        manifest, _ = _deliver(processed, uploader, state, events)

        assert manifest.withdrawn == ["trips.parquet"]
        assert manifest.counts["withdrawn"] == 1
        assert ("objects_withdrawn", {"count": 1, "objects": "trips.parquet", "deleted": False}) in events
        assert uploader.seen[0][0] == "_SUCCESS"
        assert uploader.seen[0][1]["status"] == "complete"  # type: ignore[index]
        outputs = _objects(uploader.admin, uploader.bucket, uploader.prefix)
        delivered = json.loads(outputs["manifest.json"])
        assert delivered["withdrawn"] == ["trips.parquet"]
        assert {o["path"] for o in delivered["objects"]} == {"trips.csv", "summary.json"}
        assert "trips.parquet" in outputs  # PutObject only: it cannot be deleted

        # The next delivery of the same files changes nothing and still lists the withdrawn file.
        uploader.seen.clear()
        again, _ = _deliver(processed, uploader, state)
        assert uploader.seen == []
        assert again.withdrawn == ["trips.parquet"]

        # Back to Parquet: the file is delivered again and no longer withdrawn.
        processed.remove("trips.csv")
        processed.write_bytes("trips.parquet", b"parquet, again" * 100)
        back, _ = _deliver(processed, uploader, state)
        assert back.withdrawn == ["trips.csv"]
        assert "trips.parquet" in {o.path for o in back.objects}


def test_local_output_deletes_success_and_old_files(tmp_path: Path) -> None:
    processed = Store(str(tmp_path / "processed"))
    state = Store(str(tmp_path / "temp"))
    output = Store(str(tmp_path / "output"))
    processed.write_bytes("trips.parquet", b"parquet" * 10)
    uploader = transfer.make_uploader(output)
    _deliver(processed, uploader, state)
    assert (tmp_path / "output" / "_SUCCESS").exists()

    processed.remove("trips.parquet")
    processed.write_bytes("trips.csv", b"trip_id\n1\n")
    events: list[tuple[str, dict[str, Any]]] = []
    manifest, proof = _deliver(processed, uploader, state, events)

    # Written beside its place and renamed: no ".partial-" file stays.
    assert sorted(p.name for p in (tmp_path / "output").iterdir()) == ["_SUCCESS", "manifest.json", "trips.csv"]
    assert manifest.withdrawn == []
    assert manifest.counts["deleted"] == 1
    assert ("objects_withdrawn", {"count": 1, "objects": "trips.parquet", "deleted": True}) in events
    assert [f["deleted"] for e, f in events if e == "success_withdrawn"] == [True]
    assert json.loads((tmp_path / "output" / "_SUCCESS").read_text())["manifest_sha256"] == proof.sha256
    assert transfer.delivered_objects(state) == ["trips.csv"]
