"""An input object rewritten with the same size after fetch is found by its version token and SHA-256."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from compute import phases
from compute.sample import SampleSpec, write_sample_day
from compute.settings import load_settings
from compute.storage import Manifest, Store, phase_marker_path, version_token
from tests.conftest import RUN_DATE, write_profile

VEHICLES = "vehicles/part-00000.parquet"


def _run(tmp_path: Path, **kwargs: object) -> phases.DailyRun:
    profile = write_profile(tmp_path / "profile.yaml", tmp_path / "data")
    return phases.DailyRun.create(load_settings(str(profile)), RUN_DATE, **kwargs)  # type: ignore[arg-type]


def _input(tmp_path: Path) -> Path:
    return tmp_path / "data" / "client" / "input" / RUN_DATE.strftime("%Y%m%d")


def _fetched(tmp_path: Path) -> Path:
    write_sample_day(Store(str(_input(tmp_path))), RUN_DATE, SampleSpec(trips=12, vertices_per_trip=6))
    assert not phases.fetch(_run(tmp_path)).skipped
    return _input(tmp_path) / VEHICLES


def _rewrite(path: Path, body: bytes) -> None:
    """Write ``body`` over ``path`` and move its time on, as a second upload a few seconds later would."""
    before = path.stat()
    path.write_bytes(body)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 5_000_000_000))


def _flip_one_byte(body: bytes) -> bytes:
    middle = len(body) // 2
    return body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]


class TestSameSizeRewrite:
    def test_fetch_records_a_token_per_object(self, tmp_path: Path) -> None:
        _fetched(tmp_path)
        marker = Manifest.from_json(_run(tmp_path).state.read_text(phase_marker_path("fetch")))
        assert set(marker.sources) == {o.path for o in marker.objects}
        assert all(token.startswith("mtime:") for token in marker.sources.values())

    def test_rewritten_object_stops_skipped_fetch(self, tmp_path: Path) -> None:
        vehicles = _fetched(tmp_path)
        body = vehicles.read_bytes()
        _rewrite(vehicles, _flip_one_byte(body))
        assert vehicles.stat().st_size == len(body)

        with pytest.raises(phases.InputChangedError) as info:
            phases.fetch(_run(tmp_path))
        assert info.value.changes.modified == (VEHICLES,)
        assert not (info.value.changes.added or info.value.changes.removed or info.value.changes.resized)
        assert f"内容変更 1 件: {VEHICLES}" in info.value.message("ja")
        assert f"1 rewritten: {VEHICLES}" in info.value.message("en")
        # The forced rerun copies the new bytes.
        assert not phases.fetch(_run(tmp_path, force=True)).skipped
        assert _run(tmp_path).store("raw").read_bytes(VEHICLES) == vehicles.read_bytes()

    def test_rewritten_object_stops_run_without_fetch(self, tmp_path: Path) -> None:
        vehicles = _fetched(tmp_path)
        _rewrite(vehicles, _flip_one_byte(vehicles.read_bytes()))
        with pytest.raises(phases.InputChangedError) as info:
            phases.check_raw_copy_current(_run(tmp_path, force=True))
        assert info.value.changes.modified == (VEHICLES,)
        assert "fetch を含めて、例えば次のように --force で再実行" in info.value.message("ja")

    def test_same_bytes_new_time_unchanged(self, tmp_path: Path) -> None:
        vehicles = _fetched(tmp_path)
        _rewrite(vehicles, vehicles.read_bytes())
        assert phases.fetch(_run(tmp_path)).skipped
        assert phases.check_raw_copy_current(_run(tmp_path)).status == "unchanged"

    def test_rewrite_with_time_set_back_found(self, tmp_path: Path) -> None:
        """A copy that restores the modification time (``touch -r``, ``cp -p``) still counts as rewritten."""
        vehicles = _fetched(tmp_path)
        before = vehicles.stat()
        time.sleep(0.02)  # lets the status change time move on coarse-clock file systems
        vehicles.write_bytes(_flip_one_byte(vehicles.read_bytes()))
        os.utime(vehicles, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert vehicles.stat().st_mtime_ns == before.st_mtime_ns

        with pytest.raises(phases.InputChangedError) as info:
            phases.fetch(_run(tmp_path))
        assert info.value.changes.modified == (VEHICLES,)

    def test_marker_without_tokens_compares_sizes_only(self, tmp_path: Path) -> None:
        """A fetch marker written before tokens were recorded keeps working, as before."""
        vehicles = _fetched(tmp_path)
        state = _run(tmp_path).state
        data = json.loads(state.read_text(phase_marker_path("fetch")))
        del data["sources"]
        state.write_text(phase_marker_path("fetch"), json.dumps(data))
        _rewrite(vehicles, _flip_one_byte(vehicles.read_bytes()))
        assert phases.fetch(_run(tmp_path)).skipped


def test_delivered_manifest_has_no_sources_key() -> None:
    """Only fetch's marker carries tokens; the manifest the client receives keeps its fields."""
    manifest = Manifest(phase="publish", run_date="2026-12-01", root="s3://out/")
    assert "sources" not in json.loads(manifest.to_json())


@pytest.mark.parametrize(
    ("info", "token"),
    [
        ({"ETag": '"5d41402abc4b2a76b9719d911017c592"', "size": 5}, "etag:5d41402abc4b2a76b9719d911017c592"),
        ({"md5Hash": "XUFAKrxLKna5cZ2REBfFkg==", "crc32c": "mnG7TA==", "size": 5}, "md5hash:XUFAKrxLKna5cZ2REBfFkg=="),
        ({"crc32c": "mnG7TA==", "size": 5}, "crc32c:mnG7TA=="),
        ({"mtime": 1796482120.3906507, "size": 1}, "mtime:1796482120.390651"),
        ({"mtime": 1796482120.3906507, "created": 1796482121.5, "size": 1}, "mtime:1796482120.390651,ctime:1796482121.500000"),
        ({"size": 1}, ""),
    ],
)
def test_version_token_per_store(info: dict[str, object], token: str) -> None:
    assert version_token(info) == token
