"""The storage module's messages: each one is the text of an error some code raises."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

from compute import i18n, storage
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
        assert re.search(rf"DeliveryError\(\s*\"{code}\"", source), f"no DeliveryError({code!r}, ...) raises storage.{code}"


def test_changed_input_keeps_its_texts() -> None:
    error = InputChangedError("/in/20261201/", "2026-12-01", InputChanges(resized=("vehicles/part-0.parquet",)), True)

    assert isinstance(error, storage.DeliveryError)
    assert error.code == "input_changed"
    assert "前回の取得（fetch）の後に変わりました" in error.message("ja")
    assert "サイズ変更 1 件: vehicles/part-0.parquet" in error.message("ja")
    assert str(error).startswith("The input of 2026-12-01 in /in/20261201/ changed after it was fetched")
    assert pickle.loads(pickle.dumps(error)).message("ja") == error.message("ja")
