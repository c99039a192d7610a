"""Parquet bytes from an Arrow buffer (a memoryview) written through Store on every backend.

``pipeline.parquet_bytes`` returns a memoryview of an Arrow buffer instead of ``bytes``. These
tests write such views to a local folder, to a moto S3 server and to the GCS emulator. Both
servers run on 127.0.0.1 and are started by the fixtures of ``tests/production/conftest.py``.
Each test checks that the bytes read back equal the view and that the record's size and checksums
are those of the bytes read back. A table without rows must still give a readable file.
"""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from compute import pipeline
from compute.storage import ObjectRecord, Store
from tests.production.conftest import GcsEmulator, MotoS3


def _tables() -> dict[str, pa.Table]:
    rng = np.random.default_rng(11)
    wide = pa.table({
        "trip_id": pa.array([f"車両-{i % 97}" for i in range(40_000)]),
        "t_ms": pa.array(np.arange(40_000, dtype=np.int64) * 1_000),
        "speed_kmh": pa.array(rng.uniform(0, 120, 40_000)),
    })
    return {
        "rows": wide,
        "empty": wide.slice(0, 0),
        "no_columns": pa.table({}),
    }


def _check_record(record: ObjectRecord, data: memoryview, read_back: bytes, *, md5: bool) -> None:
    assert bytes(data) == read_back
    assert record.size == len(read_back)
    assert record.sha256 == hashlib.sha256(read_back).hexdigest()
    expected_md5 = base64.b64encode(hashlib.md5(read_back).digest()).decode("ascii") if md5 else ""  # noqa: S324
    assert record.md5 == expected_md5
    assert pq.read_table(io.BytesIO(read_back)).num_rows == pq.read_table(pa.BufferReader(data)).num_rows


def _large_table() -> pa.Table:
    """About 7 MB of random float64 that zstd cannot shrink: more than one s3fs/gcsfs block (5 MiB)."""
    rng = np.random.default_rng(12)
    return pa.table({"value": pa.array(rng.standard_normal(900_000))})


def _write_and_check(store: Store, case: str, table: pa.Table) -> None:
    for md5 in (True, False):
        data = pipeline.parquet_bytes(table, split_floats=md5)
        assert isinstance(data, memoryview)
        relative = f"s6/{case}-{md5}.parquet"
        record = store.write_bytes(relative, data, md5=md5)
        with store.open(relative) as handle:
            read_back = handle.read()
        _check_record(record, data, read_back, md5=md5)
        size, sha256, _ = store.checksums(relative)
        assert (size, sha256) == (record.size, record.sha256)


@pytest.mark.parametrize("case", ["rows", "empty", "no_columns"])
def test_memoryview_local_store(tmp_path: Path, case: str) -> None:
    store = Store(str(tmp_path / "lake"))
    _write_and_check(store, case, _large_table() if case == "large" else _tables()[case])


@pytest.mark.parametrize("case", ["rows", "empty", "no_columns", "large"])
def test_memoryview_moto_s3(moto_s3: MotoS3, case: str) -> None:  # noqa: F811
    store = Store(f"s3://{moto_s3.input_bucket}/hostile-s6/", moto_s3.options("admin"))
    _write_and_check(store, case, _large_table() if case == "large" else _tables()[case])


@pytest.mark.parametrize("case", ["rows", "empty", "no_columns", "large"])
def test_memoryview_gcs_emulator(gcs: GcsEmulator, case: str) -> None:  # noqa: F811
    store = Store(f"gs://{gcs.bucket}/hostile-s6/", gcs.options)
    _write_and_check(store, case, _large_table() if case == "large" else _tables()[case])


def test_trajectories_write_reads_back(tmp_path: Path) -> None:
    """Read back the file of write_trajectories, which also writes an Arrow buffer, with the same rows."""
    store = Store(str(tmp_path / "lake"))
    vertices = pa.array([[1.0, 2.0], [3.0], [4.0, 5.0, 6.0]], pa.list_(pa.float64()))
    table = pa.table({"trip_id": ["a", "b", "c"], "xs": vertices})
    pipeline.write_trajectories(store, "s6/trajectories.parquet", table)

    read = pq.read_table(store.path("s6/trajectories.parquet"))

    assert read.column("trip_id").to_pylist() == ["a", "b", "c"]
    assert read.column("xs").to_pylist() == vertices.to_pylist()
