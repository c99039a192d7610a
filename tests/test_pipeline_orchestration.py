"""Orchestration helpers of the pipeline on a real Dask cluster: day-wide duplicate keys, deadlines."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

from compute import contract, pipeline
from compute.storage import Store


@pytest.fixture(scope="module")
def client() -> Client:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def _tacho(path: Path, vehicle: str, seconds: list[int]) -> None:
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    table = pa.table(
        {
            "vehicle_id": pa.array([vehicle] * len(seconds), pa.string()),
            "ts": pa.array([start + dt.timedelta(seconds=s) for s in seconds], pa.timestamp("ms", tz="UTC")),
            "speed_kmh": pa.array([10.0] * len(seconds)),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=2)


def test_duplicates_across_files_are_found(tmp_path: Path, client: Client) -> None:
    _tacho(tmp_path / "tachometer" / "part-0.parquet", "V1", [0, 1, 2, 3, 4, 5])
    _tacho(tmp_path / "tachometer" / "part-1.parquet", "V1", [5, 6, 7])
    _tacho(tmp_path / "tachometer" / "part-2.parquet", "V2", [5, 6, 6])
    store = Store(str(tmp_path))
    pieces = pipeline.plan_pieces(store, "tachometer", target_rows=2)
    assert len(pieces) >= 5

    found = pipeline.duplicate_keys(client, pipeline.StoreRef(str(tmp_path)), pieces, contract.ContractSettings())

    assert sorted(found) == ["V1@2026-12-01T00:00:05.000Z", "V2@2026-12-01T00:00:06.000Z"]


def test_no_duplicates_gives_empty(tmp_path: Path, client: Client) -> None:
    _tacho(tmp_path / "tachometer" / "part-0.parquet", "V1", [0, 1, 2])
    pieces = pipeline.plan_pieces(Store(str(tmp_path)), "tachometer", target_rows=1)
    found = pipeline.duplicate_keys(client, pipeline.StoreRef(str(tmp_path)), pieces, contract.ContractSettings())
    assert len(found) == 0


def test_gather_deadline_cancels_slow_tasks(client: Client) -> None:
    import time

    futures = client.map(time.sleep, [5.0, 5.0], pure=False)
    with pytest.raises(TimeoutError, match="compute_timeout_s"):
        pipeline.gather(client, futures, timeout_s=0.5)
    assert all(f.status == "cancelled" for f in futures)
