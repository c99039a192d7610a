"""Storage: one fsspec code path, verified copies, manifests and phase markers."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from compute.storage import (
    Manifest,
    StorageError,
    Store,
    VerificationError,
    copy_tree,
    manifest_of,
    read_phase_marker,
    verify_manifest,
    write_phase_marker,
)


@pytest.fixture(params=["file", "memory"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Store, Store]:
    if request.param == "file":
        return Store(str(tmp_path / "src")), Store(str(tmp_path / "dst"))
    root = f"memory://lmco2-{uuid.uuid4().hex}"
    return Store(f"{root}/src/"), Store(f"{root}/dst/")


def _fill(store: Store) -> None:
    store.write_bytes("trajectories/part-0.parquet", b"a" * 1000)
    store.write_bytes("vehicles/part-0.parquet", b"vehicles")
    store.write_bytes("empty.bin", b"")


class TestCopyTree:
    def test_copies_every_object_with_checksums(self, stores: tuple[Store, Store]) -> None:
        source, destination = stores
        _fill(source)
        manifest = copy_tree(source, destination, phase="fetch", run_date="2026-12-01")
        assert sorted(o.path for o in manifest.objects) == ["empty.bin", "trajectories/part-0.parquet", "vehicles/part-0.parquet"]
        assert destination.read_bytes("trajectories/part-0.parquet") == b"a" * 1000
        assert manifest.counts == {"objects": 3, "bytes": 1008}
        assert verify_manifest(destination, manifest) == []

    def test_manifest_round_trips(self, stores: tuple[Store, Store]) -> None:
        source, destination = stores
        _fill(source)
        manifest = copy_tree(source, destination, phase="fetch", run_date="2026-12-01")
        again = Manifest.from_json(manifest.to_json())
        assert again.objects == sorted(manifest.objects, key=lambda o: o.path)
        assert again.counts == manifest.counts

    def test_corrupted_destination_is_detected(self, stores: tuple[Store, Store]) -> None:
        source, destination = stores
        _fill(source)
        manifest = copy_tree(source, destination, phase="fetch", run_date="2026-12-01")
        destination.write_bytes("vehicles/part-0.parquet", b"vehiclex")
        problems = verify_manifest(destination, manifest)
        assert len(problems) == 1
        assert "vehicles/part-0.parquet" in problems[0]

    def test_failed_verification_is_retried_then_raised(self, stores: tuple[Store, Store]) -> None:
        source, destination = stores
        _fill(source)
        attempts: list[tuple[str, int]] = []

        def always_differs(store: Store, record: object) -> None:
            raise VerificationError("differs")

        with pytest.raises(StorageError, match="3 of 3 objects failed"):
            copy_tree(source, destination, phase="fetch", run_date="2026-12-01", retries=1, retry_delay_s=0.0,
                      verify=always_differs, on_retry=lambda name, attempt, error: attempts.append((name, attempt)))
        assert len(attempts) == 6

    def test_transient_failure_is_survived(self, stores: tuple[Store, Store]) -> None:
        source, destination = stores
        _fill(source)
        failures = {"vehicles/part-0.parquet": 1}

        def flaky(store: Store, record: object) -> None:
            path = record.path
            if failures.get(path, 0) > 0:
                failures[path] -= 1
                raise OSError("connection reset")

        manifest = copy_tree(source, destination, phase="fetch", run_date="2026-12-01", retry_delay_s=0.0, verify=flaky)
        assert manifest.counts["objects"] == 3
        assert failures["vehicles/part-0.parquet"] == 0


class TestMarkers:
    def test_marker_written_and_read(self, stores: tuple[Store, Store]) -> None:
        _, state = stores
        assert read_phase_marker(state, "fetch") is None
        manifest = Manifest(phase="fetch", run_date="2026-12-01", root=state.url, counts={"objects": 0})
        write_phase_marker(state, manifest)
        assert read_phase_marker(state, "fetch").counts == {"objects": 0}

    def test_manifest_of_skips_excluded(self, stores: tuple[Store, Store]) -> None:
        source, _ = stores
        _fill(source)
        manifest = manifest_of(source, phase="output", run_date="2026-12-01", exclude=["empty.bin"])
        assert [o.path for o in manifest.objects] == ["trajectories/part-0.parquet", "vehicles/part-0.parquet"]


class TestWriteOnly:
    def test_write_only_store_refuses_reads(self, tmp_path: Path) -> None:
        store = Store(str(tmp_path / "out"), write_only=True)
        store.write_bytes("a.txt", b"x")
        with pytest.raises(StorageError, match="write-only"):
            store.list()
        with pytest.raises(StorageError, match="write-only"):
            store.read_bytes("a.txt")
