"""The compute phase gives the same rows whether a day is cut into few pieces or many (LocalCluster)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

from compute import columns as c
from compute import phases, pipeline, tachograph
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


class TestAlignedRowOrder:
    """Aligned tachograph rows come out in (piece, trip, time) order, equal times in file order."""

    @staticmethod
    def _case(rng: np.random.Generator, n_trips: int = 300, n_rows: int = 20_000, trip_ms: float = 3_600_000.0) -> tuple:
        piece = np.sort(rng.integers(0, 12, n_trips))
        start = rng.uniform(0, 8.64e7, n_trips).round()
        index = pipeline.TripIndex(
            trip_ids=np.array([f"t{i}" for i in range(n_trips)], dtype=object), vehicle_ids=pd.Index(["v"]),
            vehicle_codes=np.zeros(n_trips, np.int64), start_ms=start, end_ms=start + trip_ms, piece=piece,
            row=np.zeros(n_trips, np.int64),
        )
        trip = rng.integers(-1, n_trips, n_rows)
        ts = np.where(trip >= 0, start[np.maximum(trip, 0)] + rng.integers(0, 50, n_rows) * (trip_ms // 50), np.nan)
        return index, trip, ts

    @staticmethod
    def _expected(rows: np.ndarray, trip: np.ndarray, ts: np.ndarray, index: pipeline.TripIndex) -> np.ndarray:
        return rows[np.lexsort((ts[rows], trip[rows], index.piece[trip[rows]]))]

    def test_shuffled_rows_match_lexsort(self) -> None:
        rng = np.random.default_rng(5)
        index, trip, ts = self._case(rng)
        rows = np.flatnonzero(trip >= 0)
        got = pipeline._in_piece_trip_time_order(rows, trip, ts, index)
        np.testing.assert_array_equal(got, self._expected(rows, trip, ts, index))

    def test_rows_already_in_order_are_kept(self) -> None:
        rng = np.random.default_rng(6)
        index, trip, ts = self._case(rng)
        rows = self._expected(np.flatnonzero(trip >= 0), trip, ts, index)
        assert pipeline._in_piece_trip_time_order(rows, trip, ts, index) is rows

    def test_long_trips_use_lexsort(self) -> None:
        rng = np.random.default_rng(8)
        index, trip, ts = self._case(rng, trip_ms=2.0**33)
        rows = np.flatnonzero(trip >= 0)
        np.testing.assert_array_equal(pipeline._in_piece_trip_time_order(rows, trip, ts, index), self._expected(rows, trip, ts, index))


    @pytest.mark.parametrize("seed", range(6))
    def test_order_check_matches_numpy(self, seed: int) -> None:
        """The one-pass check agrees with a numpy reference on sorted rows, a swapped pair, equal
        times, a NaN time and a trip that goes back."""
        rng = np.random.default_rng(seed)
        index, trip, ts = self._case(rng, n_rows=2_000)
        ts[rng.integers(0, len(ts), 3)] = ts[0]  # some equal times
        rows = self._expected(np.flatnonzero(trip >= 0), trip, ts, index)
        variants = [rows, rows[::-1], np.r_[rows[1:2], rows[:1], rows[2:]], rows[:1], rows[:0]]
        with_nan = ts.copy()
        with_nan[rows[len(rows) // 2]] = np.nan
        for candidate, times in [(v, ts) for v in variants] + [(rows, with_nan)]:
            a, b = candidate[:-1], candidate[1:]
            step = trip[b] - trip[a]
            expected = bool(np.all((step > 0) | ((step == 0) & (times[b] >= times[a]))))
            assert tachograph.in_trip_time_order(candidate, trip, times) is expected

    def test_ordered_and_shuffled_files_align_alike(self, tmp_path: Path) -> None:
        """A tachograph file already in (vehicle, time) order is written without a copy. Its aligned
        output equals that of the same records shuffled, which go through the sort."""
        n_trips, per_trip = 40, 30
        start = 1.7e12 + np.arange(n_trips) * 3_600_000.0
        index = pipeline.TripIndex(
            trip_ids=np.array([f"t{i}" for i in range(n_trips)], dtype=object), vehicle_ids=pd.Index([f"v{i}" for i in range(n_trips)]),
            vehicle_codes=np.arange(n_trips, dtype=np.int64), start_ms=start, end_ms=start + per_trip * 1_000.0,
            piece=np.repeat(np.arange(4), n_trips // 4), row=np.tile(np.arange(n_trips // 4), 4),
        )
        trip = np.repeat(np.arange(n_trips), per_trip)
        ts_ms = start[trip] + np.tile(np.arange(per_trip), n_trips) * 1_000.0
        rng = np.random.default_rng(3)
        records = pa.table({
            c.VEHICLE_ID: pa.array([f"v{t}" for t in trip]),
            c.TS: pa.array(ts_ms.astype("int64"), pa.timestamp("ms", tz="UTC")),
            c.SPEED_KMH: pa.array(rng.uniform(0, 90, len(trip))),
            c.FUEL_ML: pa.array(rng.uniform(0, 3, len(trip))),
        })
        outputs = []
        for name, table in [("ordered", records), ("shuffled", records.take(pa.array(rng.permutation(len(trip)))))]:
            store = Store(str(tmp_path / name))
            store.write_bytes("validated/tachometer/part-0.parquet", pipeline.parquet_bytes(table))
            result = pipeline.align_tacho_piece(pipeline.StoreRef(url=str(tmp_path / name)), "validated/tachometer/part-0.parquet", index)
            assert (result.rows, result.aligned, result.outside_trips) == (len(trip), len(trip), 0)
            assert result.row_groups_by_piece == {0: [0], 1: [1], 2: [2], 3: [3]}
            outputs.append(pq.read_table(store.path(result.path)))
        assert outputs[0].equals(outputs[1])
        assert outputs[0].column("trip_row").to_pylist() == list(index.row[trip])
        assert outputs[0].column(c.SPEED_KMH).equals(records.column(c.SPEED_KMH))


class TestVehicleMaster:
    """The broadcast master keeps the first row of a repeated vehicle id."""

    def test_keeps_first_row_of_each_vehicle(self) -> None:
        vehicles = pd.DataFrame({c.VEHICLE_ID: ["v3", "v1", "v2", "v1", "v4"], c.VEHICLE_CLASS: ["a", "b", "c", "dup", "d"]})
        master = pipeline.VehicleMaster.of(vehicles)
        assert list(master.frame[c.VEHICLE_ID]) == ["v3", "v1", "v2", "v4"]
        assert list(master.frame[c.VEHICLE_CLASS]) == ["a", "b", "c", "d"]  # the first row of v1, not its duplicate
        assert list(master.ids) == ["v3", "v1", "v2", "v4"]
