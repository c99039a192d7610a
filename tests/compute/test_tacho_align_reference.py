"""Aligned tachograph output against a pandas reference, on files that test the no-copy path.

``align_tacho_piece`` writes a file whose records all align and already come in (trip, time)
order without a ``take`` copy. Each case here builds records whose trip is known by
construction, writes them as one validated file, aligns it and compares the output with a
stable pandas sort of the aligned records by (piece, trip, time).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from compute import columns as c
from compute import pipeline
from compute.storage import Store

N_VEHICLES = 6
TRIPS_PER_VEHICLE = 4
RECORDS_PER_TRIP = 25
TRIP_MS = 600_000.0
GAP_MS = 900_000.0
FIRST_MS = 1.767e12
RELATIVE = "validated/tachometer/part-0.parquet"


def _trip_index() -> pipeline.TripIndex:
    """Build trips of 6 vehicles, 4 each, numbered vehicle by vehicle, in 3 pieces of 8 trips."""
    n_trips = N_VEHICLES * TRIPS_PER_VEHICLE
    vehicle_of_trip = np.repeat(np.arange(N_VEHICLES), TRIPS_PER_VEHICLE)
    start = FIRST_MS + np.tile(np.arange(TRIPS_PER_VEHICLE), N_VEHICLES) * (TRIP_MS + GAP_MS)
    piece = np.repeat(np.arange(3), n_trips // 3)
    return pipeline.TripIndex(
        trip_ids=np.array([f"t{i}" for i in range(n_trips)], dtype=object),
        vehicle_ids=pd.Index([f"v{i}" for i in range(N_VEHICLES)]),
        vehicle_codes=vehicle_of_trip.astype(np.int64), start_ms=start, end_ms=start + TRIP_MS,
        piece=piece, row=np.tile(np.arange(n_trips // 3), 3),
    )


def _ordered_records(index: pipeline.TripIndex) -> pd.DataFrame:
    """Records in (vehicle, time) order, every one inside a trip, with its trip as ``trip``."""
    rng = np.random.default_rng(21)
    trip = np.repeat(np.arange(index.n_trips), RECORDS_PER_TRIP)
    step_ms = TRIP_MS / RECORDS_PER_TRIP
    ts_ms = index.start_ms[trip] + np.tile(np.arange(RECORDS_PER_TRIP), index.n_trips) * step_ms
    return pd.DataFrame({
        "trip": trip,
        c.VEHICLE_ID: [f"v{v}" for v in index.vehicle_codes[trip]],
        "ts_ms": ts_ms.astype(np.int64),
        c.SPEED_KMH: rng.uniform(0, 90, len(trip)),
        c.FUEL_ML: rng.uniform(0, 3, len(trip)),
    })


def _with_duplicate_time(records: pd.DataFrame) -> pd.DataFrame:
    out = records.copy()
    out.loc[7, "ts_ms"] = out.loc[6, "ts_ms"]
    return out


def _with_swapped_pair(records: pd.DataFrame) -> pd.DataFrame:
    order = np.arange(len(records))
    order[[30, 31]] = order[[31, 30]]
    return records.iloc[order].reset_index(drop=True)


def _interleaved_vehicles(records: pd.DataFrame) -> pd.DataFrame:
    """The same records written by time, so the vehicles' trips interleave."""
    return records.sort_values("ts_ms", kind="stable").reset_index(drop=True)


def _with_one_outside(records: pd.DataFrame) -> pd.DataFrame:
    out = records.copy()
    out.loc[40, "ts_ms"] = int(FIRST_MS - 3_600_000)
    out.loc[40, "trip"] = -1
    return out


def _float32_with_nulls(records: pd.DataFrame) -> pd.DataFrame:
    out = records.copy()
    out[c.SPEED_KMH] = pd.array(out[c.SPEED_KMH].astype(np.float32), dtype="Float32")
    out[c.FUEL_ML] = pd.array(out[c.FUEL_ML].astype(np.float32), dtype="Float32")
    out.loc[[3, 50, 51], c.SPEED_KMH] = pd.NA
    out.loc[[0, 99], c.FUEL_ML] = pd.NA
    return out


def _without_fuel(records: pd.DataFrame) -> pd.DataFrame:
    return records.drop(columns=[c.FUEL_ML])


def _to_arrow(records: pd.DataFrame, ts_type: pa.DataType) -> pa.Table:
    columns: dict[str, pa.Array] = {
        c.VEHICLE_ID: pa.array(records[c.VEHICLE_ID].tolist()),
        c.TS: pa.array(records["ts_ms"].to_numpy(), pa.timestamp("ms", tz="UTC")).cast(ts_type),
    }
    for name in (c.SPEED_KMH, c.FUEL_ML):
        if name in records:
            values = records[name]
            arrow_type = pa.float32() if str(values.dtype) == "Float32" else pa.float64()
            columns[name] = pa.array(values.astype(object).where(values.notna(), None).tolist(), arrow_type)
    return pa.table(columns)


def _reference(records: pd.DataFrame, index: pipeline.TripIndex) -> pd.DataFrame:
    """Aligned rows as a stable sort by (piece, trip, time) of the records inside trips."""
    aligned = records[records["trip"] >= 0].copy()
    aligned["piece"] = index.piece[aligned["trip"].to_numpy()]
    aligned = aligned.sort_values(["piece", "trip", "ts_ms"], kind="stable")
    fuel = aligned[c.FUEL_ML] if c.FUEL_ML in aligned else pd.Series(np.nan, index=aligned.index)
    return pd.DataFrame({
        "trip_row": index.row[aligned["trip"].to_numpy()].astype(np.int32),
        "ts_ms": aligned["ts_ms"].to_numpy(np.int64),
        c.SPEED_KMH: aligned[c.SPEED_KMH].astype("float64").to_numpy(na_value=np.nan),
        c.FUEL_ML: fuel.astype("float64").to_numpy(na_value=np.nan),
        "piece": aligned["piece"].to_numpy(),
    })


CASES: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "ordered": lambda records: records,
    "duplicate_time": _with_duplicate_time,
    "swapped_pair": _with_swapped_pair,
    "interleaved_vehicles": _interleaved_vehicles,
    "one_outside_trips": _with_one_outside,
    "float32_with_nulls": _float32_with_nulls,
    "fuel_absent": _without_fuel,
}


@pytest.mark.parametrize("row_group_size", [None, 7])
@pytest.mark.parametrize("case", sorted(CASES))
def test_aligned_output_matches_pandas(tmp_path: Path, case: str, row_group_size: int | None) -> None:
    index = _trip_index()
    records = CASES[case](_ordered_records(index))
    store = Store(str(tmp_path))
    table = _to_arrow(records, pa.timestamp("ms", tz="UTC"))
    store.fs.makedirs(store.path("validated/tachometer"), exist_ok=True)
    pq.write_table(table, store.path(RELATIVE), row_group_size=row_group_size)
    expected = _reference(records, index)

    result = pipeline.align_tacho_piece(pipeline.StoreRef(url=str(tmp_path)), RELATIVE, index)
    out = pq.read_table(store.path(result.path))

    assert result.rows == len(records)
    assert result.aligned == len(expected)
    assert result.outside_trips == len(records) - len(expected)
    np.testing.assert_array_equal(out.column("trip_row").to_numpy(), expected["trip_row"].to_numpy())
    times = out.column(c.TS).cast(pa.int64()).to_numpy()
    np.testing.assert_array_equal(times, expected["ts_ms"].to_numpy())
    np.testing.assert_array_equal(out.column(c.SPEED_KMH).to_numpy(zero_copy_only=False), expected[c.SPEED_KMH].to_numpy())
    np.testing.assert_array_equal(out.column(c.FUEL_ML).to_numpy(zero_copy_only=False), expected[c.FUEL_ML].to_numpy())
    assert out.column(c.SPEED_KMH).null_count == int(np.isnan(expected[c.SPEED_KMH].to_numpy()).sum())
    pieces, first = np.unique(expected["piece"].to_numpy(), return_index=True)
    assert sorted(result.row_groups_by_piece) == list(pieces)
    metadata = pq.ParquetFile(store.path(result.path)).metadata
    for number, piece in enumerate(pieces):
        assert result.row_groups_by_piece[int(piece)] == [number]
        stop = first[number + 1] if number + 1 < len(first) else len(expected)
        assert metadata.row_group(number).num_rows == stop - first[number]


@pytest.mark.parametrize("ts_type", [pa.timestamp("us", tz="Asia/Tokyo"), pa.timestamp("ms")])
def test_aligned_times_other_units(tmp_path: Path, ts_type: pa.DataType) -> None:
    """Times in microseconds, another zone or without a zone align as the same UTC instants."""
    index = _trip_index()
    records = _ordered_records(index)
    store = Store(str(tmp_path))
    store.fs.makedirs(store.path("validated/tachometer"), exist_ok=True)
    pq.write_table(_to_arrow(records, ts_type), store.path(RELATIVE))

    result = pipeline.align_tacho_piece(pipeline.StoreRef(url=str(tmp_path)), RELATIVE, index)
    out = pq.read_table(store.path(result.path))

    assert result.aligned == len(records)
    assert out.schema.field(c.TS).type == pa.timestamp("ms", tz="UTC")
    np.testing.assert_array_equal(out.column(c.TS).cast(pa.int64()).to_numpy(), _reference(records, index)["ts_ms"].to_numpy())
