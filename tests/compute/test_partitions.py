"""The compute phase gives the same rows whether a day is cut into few pieces or many (LocalCluster)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

from compute import columns as c
from compute import phases, pipeline
from compute.sample import SampleSpec, write_sample_day
from compute.settings import load_settings
from compute.storage import Store

RUN_DATE = dt.date(2026, 12, 1)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    # Threads in this process, so the row-group size patched below reaches the tasks.
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as dask_client:
        yield dask_client


def _read(store: Store, folder: str) -> pd.DataFrame:
    table = pipeline.read_folder(store, folder)
    assert table is not None, f"no Parquet files under {folder}"
    frame = table.to_pandas(ignore_metadata=True)
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype) or frame[name].dtype == "string":
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    return frame


def _compute(run: phases.DailyRun, client: Client, monkeypatch: pytest.MonkeyPatch, vertices: int) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    monkeypatch.setitem(phases._PIECE_ROWS, "segments", (vertices, vertices))
    result = phases.compute(run, client)
    temp = run.store("temp")
    trips = _read(temp, pipeline.TRIPS).sort_values(c.TRIP_ID, kind="mergesort").reset_index(drop=True)
    segs = _read(temp, pipeline.SEGMENTS).sort_values([c.TRIP_ID, c.SEG_INDEX], kind="mergesort").reset_index(drop=True)
    return result.counts, trips, segs


def test_coarse_and_fine_pieces_equal(tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings("local", environ={}, overrides={"data_dir": str(tmp_path)})
    write_sample_day(Store(settings.url("input", RUN_DATE)), RUN_DATE, SampleSpec(trips=60, vertices_per_trip=30, grid_cells=24, trips_per_file=1_000))
    run = phases.DailyRun.create(settings, RUN_DATE, force=True)
    phases.fetch(run)
    monkeypatch.setattr(pipeline, "ROW_GROUP_VERTICES", 150)
    phases.validate(run, client)

    one_counts, one_trips, one_segs = _compute(run, client, monkeypatch, vertices=10**9)
    many_counts, many_trips, many_segs = _compute(run, client, monkeypatch, vertices=150)

    # A piece never spans files, so the coarsest split is one piece per validated file that kept
    # any trip (the sample's file of planted defects keeps none).
    temp = run.store("temp")
    files = [f for f in pipeline.list_dataset_files(temp, f"{pipeline.VALIDATED}/trajectories")
             if pq.ParquetFile(temp.path(f)).metadata.num_rows > 0]
    assert one_counts["pieces"] == len(files) <= 2
    assert many_counts["pieces"] >= 8
    assert one_counts["tachometer"]["aligned"] > 0
    assert one_counts["tachometer"] == many_counts["tachometer"]
    assert len(one_trips) == one_counts["trips"] == many_counts["trips"]
    assert one_segs[c.MATCHED].any()
    pd.testing.assert_frame_equal(one_trips, many_trips)
    pd.testing.assert_frame_equal(one_segs, many_segs)
