"""Hostile inputs for the fast paths of the latest compute changes, against plain references.

The paths under test are these:

* ``pipeline.arrow_column`` and its dictionary cache;
* the Parquet encodings of ``pipeline.parquet_bytes`` and ``pipeline._write_grouped``;
* the vehicle master resolved once per worker (``resolve_vehicles``, ``VehicleMaster.resolved``);
* the compiled helpers of ``emissions.profiles``: group medians, the sort check, and the forward
  segment pointer of the tachograph loop;
* ``metrics.breakdown``, the link grid of ``spatial`` with small radii, and the Arrow WKB decoding
  of ``segments.build_segments_from_arrow``.

Each reference is written here. Arrow columns are compared with ``pyarrow.array``, and the
files with the plain Parquet encoding as DuckDB reads it. Medians and breakdowns are compared with
a pandas groupby, and the grade of a tachograph interval with a Python loop over every segment.
The link join is compared with a brute-force tangent-plane distance, and the WKB decoding with
the shapely fallback.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import threading
from collections.abc import Callable
from pathlib import Path

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from compute import columns as c
from compute import metrics, pipeline, segments, spatial
from compute.emissions import EmissionSettings, estimate_trips, load_model, profiles, resolve_vehicles
from compute.emissions.model import EmissionModel, ResolvedVehicles, resolve_trip_vehicles
from compute.emissions.physics import effective_work_kj, wheel_power_kw
from compute.storage import Store

T0_MS = 1_796_000_000_000
START = pd.Timestamp(T0_MS, unit="ms", tz="UTC")
TIME_DTYPE = "datetime64[ms, UTC]"
UTC_MS = pa.timestamp("ms", tz="UTC")
# The 100k day that benchmarks/bench_compute.py prepares, when it exists on this machine.
BENCHMARK_TEMP = Path(os.environ.get("LMCO2_BENCH_DIR", "var/bench")) / "100k" / "lake" / "temp" / "20261201"
PLAIN_OPTIONS = {"compression": "lz4", "statistics": False}
BINARY = pa.binary()


# -- pipeline.arrow_column ---------------------------------------------------------------------


def _read_only(values: np.ndarray) -> np.ndarray:
    values = values.copy()
    values.flags.writeable = False
    return values


def _floats_with_nan_tail(n: int) -> pd.Series:
    values = np.arange(n, dtype=np.float64)
    if n:
        values[-1] = np.nan
    return pd.Series(values)


def _hostile_columns() -> dict[str, pd.Series]:
    rng = np.random.default_rng(11)
    tokyo = dt.timezone(dt.timedelta(hours=9))
    many = pd.Index([f"c{i:05d}" for i in range(40_000)], dtype=object)
    columns: dict[str, pd.Series] = {
        "float16": pd.Series(np.array([1.0, np.nan, -2.5, 65504.0], dtype=np.float16)),
        "read-only floats": pd.Series(_read_only(np.array([1.0, np.nan, 3.0, 4.0])), copy=False),
        "every third float": pd.Series(np.arange(30.0)[::3]),
        "floats with shuffled index": pd.Series([1.0, np.nan, 2.0], index=[30, 10, 20]),
        "read-only booleans": pd.Series(_read_only(np.arange(11) % 3 == 0), copy=False),
        "every third boolean": pd.Series((np.arange(40) % 3 == 0)[::3]),
        "big-endian times": pd.Series(np.array(["2026-12-01T00:00:00", "NaT", "1969-12-31T23:59:59"], dtype=">M8[ns]")),
        "extreme nanosecond times": pd.Series(np.array([np.iinfo(np.int64).min + 1, np.iinfo(np.int64).max, 0], dtype="M8[ns]")),
        "Tokyo times": pd.Series(pd.date_range("2026-12-01", periods=9, freq="37min", tz="Asia/Tokyo")),
        "fixed-offset times": pd.Series(pd.date_range("2026-12-01", periods=9, freq="h", tz=tokyo)),
        "times with index": pd.Series(pd.date_range("2026-12-01", periods=3, freq="s", tz="UTC"), index=[7, 3, 5]),
        "every third time": pd.Series(pd.date_range("2026-12-01", periods=30, freq="s", tz="UTC").as_unit("ms")).iloc[::3],
        "int8 codes": pd.Series(pd.Categorical.from_codes(np.array([0, -1, 4, 1], np.int8), categories=list("abcde"))),
        "int16 codes": pd.Series(pd.Categorical.from_codes(np.array([0, -1, 299, 7], np.int16), categories=many[:300])),
        "int32 codes": pd.Series(pd.Categorical.from_codes(np.array([0, -1, 39_999, 5], np.int32), categories=many)),
        "integer categories": pd.Series(pd.Categorical([10, 9, None, 10])),
        "float categories": pd.Series(pd.Categorical([3.5, 1.0, None, 3.5])),
        "time categories": pd.Series(pd.Categorical(pd.to_datetime(["2026-12-01", None, "2026-12-02"], utc=True))),
        "boolean categories": pd.Series(pd.Categorical([True, False, None])),
        "every third code": pd.Series(pd.Categorical.from_codes(np.arange(30) % 4 - 1, categories=list("abc"))).iloc[::3],
        "nine missing codes": pd.Series(pd.Categorical.from_codes(np.full(9, -1), categories=["a"])),
        "nullable booleans": pd.Series([True, None, False], dtype="boolean"),
        "nullable floats": pd.Series([1.0, None], dtype="Float64"),
        "durations": pd.Series(pd.to_timedelta([1, None, 3], unit="s")),
    }
    for unit in ("s", "ms", "us", "ns"):
        for zone in (None, "UTC"):
            times = pd.Series(pd.to_datetime(["2026-12-01 00:00:01", None, "1950-06-01 00:00:00"]).as_unit(unit))
            columns[f"{unit} times in {zone}"] = times.dt.tz_localize(zone) if zone else times
    for n in (0, 1, 7, 8, 9, 15, 16, 17):
        columns[f"{n} floats, last missing"] = _floats_with_nan_tail(n)
        columns[f"{n} floats, all missing"] = pd.Series(np.full(n, np.nan))
        columns[f"{n} booleans"] = pd.Series(rng.random(n) < 0.5)
        columns[f"{n} codes, first missing"] = pd.Series(pd.Categorical.from_codes(np.r_[-1, np.zeros(max(n - 1, 0), int)][:n], categories=["x"]))
    return columns


def _assert_same_array(got: pa.Array, expected: pa.Array, name: str) -> None:
    assert got.type == expected.type, f"{name}: {got.type} != {expected.type}"
    assert got.null_count == expected.null_count, name
    assert got.equals(expected), f"{name}: {got.to_pylist()[:6]} != {expected.to_pylist()[:6]}"
    got.validate(full=True)


class TestArrowColumn:
    """``arrow_column`` gives the array of ``pyarrow.array``, type and nulls included."""

    @pytest.mark.parametrize("name", list(_hostile_columns()))
    def test_matches_pyarrow_array(self, name: str) -> None:
        values = _hostile_columns()[name]

        expected = pa.array(values)

        _assert_same_array(pipeline.arrow_column(values), expected, name)

    @pytest.mark.parametrize("dtype", [">f8", ">f4"])
    def test_big_endian_floats_keep_values(self, dtype: str) -> None:
        values = pd.Series(np.array([1.0, np.nan, 3.5], dtype=dtype))
        with pytest.raises(pa.ArrowNotImplementedError):
            pa.array(values)

        got = pipeline.arrow_column(values)

        assert got.to_pylist() == [1.0, None, 3.5]

    @pytest.mark.parametrize("first_ordered", [False, True])
    def test_ordered_flag_follows_the_column(self, first_ordered: bool) -> None:
        categories = pd.Index(["low", "high"], dtype=object)
        first = pd.Series(pd.Categorical.from_codes([0, 1, -1], categories=categories, ordered=first_ordered))
        second = first.cat.as_unordered() if first_ordered else first.cat.as_ordered()
        assert second.cat.categories is first.cat.categories

        _assert_same_array(pipeline.arrow_column(first), pa.array(first), "first")
        _assert_same_array(pipeline.arrow_column(second), pa.array(second), "second")

    def test_interval_categories_convert(self) -> None:
        values = pd.Series(pd.cut([1.0, 2.0, 3.0], 2))
        _assert_same_array(pipeline.arrow_column(values), pa.array(values), "intervals")

    def test_dictionary_cache_survives_churn(self) -> None:
        """Hundreds of categoricals created and dropped (ids get reused) and older ones converted again."""
        long_lived = [pd.Series(pd.Categorical.from_codes([1, 0, -1], categories=pd.Index([f"k{i}", f"m{i}"], dtype=object))) for i in range(3)]
        for round_number in range(300):
            fresh = pd.Series(pd.Categorical.from_codes([0, -1, 2, 1], categories=pd.Index([f"r{round_number}-{j}" for j in range(3)], dtype=object)))
            _assert_same_array(pipeline.arrow_column(fresh), pa.array(fresh), f"round {round_number}")
            del fresh
            if round_number % 50 == 0:
                gc.collect()
            older = long_lived[round_number % len(long_lived)]
            _assert_same_array(pipeline.arrow_column(older), pa.array(older), f"kept column in round {round_number}")

        assert len(pipeline._DICTIONARIES) <= pipeline._DICTIONARIES_KEPT

    def test_threads_convert_their_own_categories(self) -> None:
        columns = [pd.Series(pd.Categorical.from_codes(np.arange(50) % (k + 2) - 1, categories=pd.Index([f"t{k}-{j}" for j in range(k + 1)], dtype=object)))
                   for k in range(24)]
        expected = [pa.array(column) for column in columns]
        errors: list[str] = []
        barrier = threading.Barrier(4)

        def convert(offset: int) -> None:
            barrier.wait()
            for round_number in range(40):
                k = (offset * 7 + round_number) % len(columns)
                got = pipeline.arrow_column(columns[k])
                if not got.equals(expected[k]):
                    errors.append(f"thread {offset}, column {k}")

        threads = [threading.Thread(target=convert, args=(offset,)) for offset in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []


# -- Parquet encodings -------------------------------------------------------------------------


def _duckdb_rows(path: Path) -> list[tuple[object, ...]]:
    return duckdb.connect().execute(f"SELECT * FROM read_parquet('{path}')").fetchall()


def _write_both(table: pa.Table, folder: Path) -> tuple[Path, Path]:
    """Write ``table`` with the segment options and with the plain ones, and return both paths."""
    split = folder / "split.parquet"
    plain = folder / "plain.parquet"
    split.write_bytes(pipeline.parquet_bytes(table, **pipeline.SEGMENT_WRITE_OPTIONS))
    plain.write_bytes(pipeline.parquet_bytes(table, **PLAIN_OPTIONS))
    return split, plain


def _hostile_ticks(unit: str) -> list[int | None]:
    """Unsorted, repeated, negative and null times, and jumps of decades, in ``unit``."""
    per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    base = T0_MS // 1_000 * per_second
    return [base, base + 1, base - 86_400 * per_second, None, 0, -1, base, base,
            base + 3 * 10**8 * per_second // 1_000, -(2 * 10**8) * per_second // 1_000, None, 1]


class TestParquetEncodings:
    """Delta-encoded timestamps and split floats stay readable and bit-identical."""

    @pytest.mark.parametrize("zone", [None, "UTC", "Asia/Tokyo"])
    @pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
    def test_times_read_as_plain_encoding(self, tmp_path: Path, unit: str, zone: str | None) -> None:
        ticks = _hostile_ticks(unit)
        table = pa.table({
            "t": pa.array(ticks, pa.timestamp(unit, tz=zone)),
            "x": pa.array([float(i) if i % 3 else None for i in range(len(ticks))], pa.float64()),
            "code": pa.array([f"k{i % 2}" for i in range(len(ticks))]).dictionary_encode(),
        })

        split, plain = _write_both(table, tmp_path)

        assert pq.read_table(split).equals(pq.read_table(plain))
        assert _duckdb_rows(split) == _duckdb_rows(plain)
        column = pq.ParquetFile(split).metadata.row_group(0).column(0)
        assert "DELTA_BINARY_PACKED" in column.encodings
        assert column.compression == "UNCOMPRESSED"

    @pytest.mark.parametrize("rows", ["empty", "all null", "one row"])
    def test_degenerate_tables(self, tmp_path: Path, rows: str) -> None:
        n = {"empty": 0, "all null": 9, "one row": 1}[rows]
        values = [None] * n if rows == "all null" else [T0_MS] * n
        table = pa.table({"t": pa.array(values, UTC_MS), "x": pa.array([None] * n, pa.float64())})

        split, plain = _write_both(table, tmp_path)

        assert pq.read_table(split).equals(table)
        assert _duckdb_rows(split) == _duckdb_rows(plain)
        assert len(_duckdb_rows(split)) == n

    def test_int64_wraparound_deltas(self, tmp_path: Path) -> None:
        """Deltas between the int64 extremes overflow. The values must still come back."""
        big = np.iinfo(np.int64)
        table = pa.table({"t": pa.array([big.min + 1, big.max - 1, 0, None, big.min + 1], pa.timestamp("ns"))})

        split, _ = _write_both(table, tmp_path)

        assert pq.read_table(split).equals(table)

    def test_duckdb_reads_float16_columns(self, tmp_path: Path) -> None:
        table = pa.table({"h": pa.array(np.array([1.0, -2.5, 0.0], dtype=np.float16))})
        split, plain = _write_both(table, tmp_path)
        assert _duckdb_rows(split) == _duckdb_rows(plain)

    def test_segment_intermediate_reads_in_duckdb(self, tmp_path: Path) -> None:
        n = 9
        starts = pd.Series(pd.to_datetime(T0_MS + np.array([0, 5, -3, 10**6, 0, 0, 7, 1, 2]) * 1_000, unit="ms", utc=True))
        seg_out = pd.DataFrame({
            c.TRIP_ID: pd.Categorical(["a", None, "b", "a", "b", "a", "c", "c", None], categories=pd.Index(["b", "a", "c", "unused"], dtype=object)),
            c.SEG_INDEX: np.arange(n, dtype=np.int32),
            c.T_START: starts.astype(TIME_DTYPE).where(np.arange(n) % 4 != 1),
            c.LENGTH_M: np.r_[np.nan, 1.0, -0.0, np.inf, 5e-324, 2.0, 3.0, np.nan, 1e308],
            c.AREA_ID: pd.Categorical([None] * n, categories=pd.Index([], dtype=object)),
            c.LINK_ID: pd.Categorical(["l1", None, "l2", "l1", None, "l2", "l1", None, None]),
            c.MATCHED: np.arange(n) % 2 == 0,
            c.CO2_TTW_KG: np.linspace(0.0, 1.0, n),
        }, index=np.arange(n)[::-1])

        for stop in (0, 1, 8, 9):
            table = pipeline._segment_intermediate(seg_out.iloc[:stop])
            split, plain = _write_both(table, tmp_path)

            assert pq.read_table(split).equals(pq.read_table(plain)), f"{stop} rows"
            assert _duckdb_rows(split) == _duckdb_rows(plain), f"{stop} rows"

    def test_grouped_write_many_row_groups(self, tmp_path: Path) -> None:
        rng = np.random.default_rng(3)
        n = 3_000
        group = np.sort(rng.integers(0, 900, n))
        ticks = T0_MS + rng.integers(-10**9, 10**9, n)
        table = pa.table({
            "trip_row": pa.array(group.astype(np.int32)),
            c.TS: pa.array(ticks, UTC_MS),
            "naive": pa.array(np.where(rng.random(n) < 0.2, None, ticks * 1_000).tolist(), pa.timestamp("us")),
            c.SPEED_KMH: pa.array(rng.choice([0.0, 12.5, np.nan], n), from_pandas=True),
            c.FUEL_ML: pa.array(rng.uniform(0.0, 1.0, n)),
        })
        store = Store(str(tmp_path))

        directory = pipeline._write_grouped(store, "aligned/part-00000.parquet", table, group)

        path = tmp_path / "aligned" / "part-00000.parquet"
        parquet = pq.ParquetFile(path)
        groups = np.unique(group)
        assert parquet.metadata.num_row_groups == len(groups)
        assert sorted(directory) == groups.tolist()
        for value in groups[:: max(len(groups) // 40, 1)]:
            (number,) = directory[int(value)]
            rows = np.flatnonzero(group == value)
            assert parquet.read_row_group(number).equals(table.slice(int(rows[0]), len(rows)))
        assert pq.read_table(path).equals(table)
        time_column = parquet.metadata.row_group(0).column(1)
        assert "DELTA_BINARY_PACKED" in time_column.encodings
        assert time_column.compression == "UNCOMPRESSED"

        count, tick_sum, naive_count, speed_count, fuel_sum = duckdb.connect().execute(
            f"SELECT count(*), sum(epoch_ms({c.TS})), count(naive), count({c.SPEED_KMH}), sum({c.FUEL_ML}) FROM read_parquet('{path}')"
        ).fetchone()
        assert (count, tick_sum) == (n, int(ticks.sum()))
        assert naive_count == n - table.column("naive").null_count
        assert speed_count == n - table.column(c.SPEED_KMH).null_count
        assert fuel_sum == pytest.approx(float(table.column(c.FUEL_ML).to_numpy().sum()), rel=1e-12)

    def test_grouped_write_of_no_rows(self, tmp_path: Path) -> None:
        table = pa.table({c.TS: pa.array([], UTC_MS), c.FUEL_ML: pa.array([], pa.float64())})

        directory = pipeline._write_grouped(Store(str(tmp_path)), "aligned/empty.parquet", table, np.zeros(0, np.int64))

        path = tmp_path / "aligned" / "empty.parquet"
        assert directory == {}
        assert pq.read_table(path).schema == table.schema
        assert _duckdb_rows(path) == []

    @pytest.mark.skipif(not BENCHMARK_TEMP.is_dir(), reason="the 100k benchmark day is not on this machine")
    @pytest.mark.parametrize("folder", ["segments", "tacho_aligned"])
    def test_benchmark_files_read_alike(self, folder: str) -> None:
        """A file the pipeline wrote on the benchmark day: DuckDB and pyarrow see the same times."""
        path = sorted((BENCHMARK_TEMP / folder).glob("*.parquet"))[0]
        time_name = c.T_START if folder == "segments" else c.TS
        float_name = c.LENGTH_M if folder == "segments" else c.FUEL_ML

        row = duckdb.connect().execute(
            f"SELECT count(*), count({time_name}), sum(epoch_ms({time_name})), min(epoch_ms({time_name})), "
            f"max(epoch_ms({time_name})), count({float_name}) FROM read_parquet('{path}')"
        ).fetchone()

        table = pq.read_table(path, columns=[time_name, float_name])
        ticks = table.column(time_name).cast(pa.int64()).to_numpy(zero_copy_only=False)
        present = ticks[table.column(time_name).is_valid().to_numpy(zero_copy_only=False)]
        assert row == (table.num_rows, present.size, int(present.sum()), int(present.min()), int(present.max()),
                       table.num_rows - table.column(float_name).null_count)


# -- vehicle master resolved once per worker ---------------------------------------------------


def _vehicle_pairs(model: EmissionModel) -> list[tuple[str, str]]:
    pairs = model.vehicle_params[[c.VEHICLE_CLASS, c.FUEL_TYPE]].drop_duplicates()
    return [(str(a), str(b)) for a, b in pairs.itertuples(index=False)]


def _master(model: EmissionModel, ids: list[object], rng: np.random.Generator) -> pd.DataFrame:
    """Build a vehicle master of known classes with awkward catalog, cycle and payload values."""
    pairs = _vehicle_pairs(model)
    chosen = [pairs[int(k)] for k in rng.integers(0, len(pairs), len(ids))]
    catalog = rng.choice([np.nan, 0.0, 8.5, 14.0, 22.0], len(ids))
    payload = rng.choice([np.nan, 0.0, 350.0, 2_000.0, 10_000.0], len(ids))
    return pd.DataFrame({
        c.VEHICLE_ID: pd.Series(ids, dtype=object),
        c.VEHICLE_CLASS: pd.Series([a for a, _ in chosen], dtype="str"),
        c.FUEL_TYPE: pd.Series([b for _, b in chosen], dtype="str"),
        c.CATALOG_FE: catalog,
        c.TEST_CYCLE: pd.Series(rng.choice(np.array(["WLTC", "JC08", "JH25", "NEDC", None], dtype=object), len(ids)), dtype=object),
        c.MAX_PAYLOAD_KG: payload,
        c.MODEL_YEAR: pd.Series(rng.integers(2000, 2026, len(ids)), dtype="Int64"),
    })


def _piece(vehicle_ids: list[object], rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Build segments, trips and 1 Hz tachograph rows, one trip per entry of ``vehicle_ids``."""
    segment_parts, tacho_parts, trip_rows = [], [], []
    for t, vehicle in enumerate(vehicle_ids):
        trip_id = f"trip-{t:03d}"
        start = START + pd.Timedelta(seconds=int(rng.integers(0, 20_000)))
        n = int(rng.integers(1, 25))
        duration = rng.choice([1.0, 2.0, 5.0, 10.0], n)
        length = rng.uniform(0.0, 150.0, n)
        offsets = np.r_[0.0, np.cumsum(duration)[:-1]]
        grade = rng.uniform(-6.0, 6.0, n)
        grade[rng.random(n) < 0.3] = np.nan
        segment_parts.append(pd.DataFrame({
            c.TRIP_ID: trip_id, c.VEHICLE_ID: str(vehicle), c.SEG_INDEX: np.arange(n, dtype=np.int32),
            c.T_START: (start + pd.to_timedelta(offsets, unit="s")).astype(TIME_DTYPE),
            c.DURATION_S: duration, c.LENGTH_M: length, c.SPEED_KMH: length / duration * 3.6,
            c.ACCEL_M_S2: rng.normal(0.0, 0.8, n), c.GRADE_PCT: grade,
            c.ROAD_CLASS: pd.Series(rng.choice(np.array(["motorway", "local", None], dtype=object), n), dtype=object),
            c.AREA_TYPE: pd.Series(rng.choice(np.array(["urban", None], dtype=object), n), dtype=object),
            c.SPEED_LIMIT_KMH: np.full(n, np.nan), c.LINK_GRADIENT_PCT: np.where(rng.random(n) < 0.5, rng.uniform(-4, 4, n), np.nan),
            c.MATCHED: rng.random(n) < 0.5,
        }))
        total_s = float(duration.sum())
        if t % 2 == 0:
            rows = int(total_s) + 1
            tacho_parts.append(pd.DataFrame({
                c.TRIP_ID: trip_id, c.VEHICLE_ID: str(vehicle),
                c.TS: (start + pd.to_timedelta(np.arange(rows), unit="s")).astype(TIME_DTYPE),
                c.SPEED_KMH: np.abs(rng.normal(30.0, 15.0, rows)), c.ENGINE_RPM: np.full(rows, np.nan),
                c.FUEL_ML: rng.uniform(0.0, 2.0, rows),
            }))
        trip_rows.append({
            c.TRIP_ID: trip_id, c.VEHICLE_ID: vehicle, c.START_TIME: start, c.END_TIME: start + pd.Timedelta(seconds=total_s),
            c.LOAD_KG: float(rng.choice([np.nan, 0.0, 300.0, 5_000.0, 1e9])), c.N_VERTICES: n + 1, c.TIME_SOURCE: "vertex",
        })
    trips = pd.DataFrame(trip_rows)
    trips[c.VEHICLE_ID] = pd.Series([row[c.VEHICLE_ID] for row in trip_rows], dtype=object)
    trips[c.START_TIME] = trips[c.START_TIME].astype(TIME_DTYPE)
    trips[c.END_TIME] = trips[c.END_TIME].astype(TIME_DTYPE)
    return pd.concat(segment_parts, ignore_index=True), trips, pd.concat(tacho_parts, ignore_index=True)


def _case(name: str, model: EmissionModel) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(trip vehicle ids, master)`` of one named case as a trips frame and a master."""
    rng = np.random.default_rng(sorted(VEHICLE_CASES).index(name))
    master_ids: list[object] = [f"V{i:03d}" for i in range(12)]
    trip_ids: list[object] = list(master_ids[:10])
    master = _master(model, master_ids, rng)
    if name == "missing vehicles":
        trip_ids = trip_ids + ["not-in-master", "V999"]
    elif name == "null trip ids":
        trip_ids = trip_ids + [None, np.nan]
    elif name == "numeric ids":
        master = _master(model, list(range(12)), rng)
        trip_ids = [3, 0, 11, 11, 40, 7]
    elif name == "duplicate master ids":
        duplicate = _master(model, master_ids[:4], rng)
        master = pd.concat([master, duplicate], ignore_index=True)
    elif name == "empty master":
        master = master.iloc[:0]
    elif name == "no trips":
        trip_ids = []
    elif name == "ids equal as text":
        master = _master(model, ["1", 1, "01", 2.5, "2.5"], rng)
        trip_ids = ["1", 1, 1.0, "01", 2.5, "2.5", "1.0"]
    elif name == "unknown class in master":
        odd = master.iloc[:2].assign(**{c.VEHICLE_ID: ["odd-a", "odd-b"], c.VEHICLE_CLASS: ["tractor", "passenger"],
                                        c.FUEL_TYPE: ["diesel", "hydrogen"]})
        master = pd.concat([master, odd], ignore_index=True)
    elif name == "master with shuffled index":
        master = master.iloc[rng.permutation(len(master))]
        master.index = rng.permutation(len(master)) * 7 + 3
    trips = pd.DataFrame({c.VEHICLE_ID: pd.Series(trip_ids, dtype=object), c.LOAD_KG: rng.choice([np.nan, 0.0, 800.0, 1e9], len(trip_ids))})
    return trips, master


VEHICLE_CASES = (
    "clean", "missing vehicles", "null trip ids", "numeric ids", "duplicate master ids", "empty master", "no trips",
    "ids equal as text", "unknown class in master", "master with shuffled index",
)


def _subset_master(trips: pd.DataFrame, master: pd.DataFrame) -> pd.DataFrame:
    """Return the rows of the master that the trips use, first row per id, as a piece resolved them before."""
    used_ids = pd.Index(pd.unique(trips[c.VEHICLE_ID].to_numpy(dtype=object)))
    unique = master.drop_duplicates(c.VEHICLE_ID, keep="first")
    return unique[np.asarray([value in used_ids for value in unique[c.VEHICLE_ID].to_numpy(dtype=object)], dtype=bool)]


def _assert_same_frame(actual: pd.DataFrame, expected: pd.DataFrame, check_dtype: bool = True) -> None:
    assert list(actual.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(actual, expected, check_exact=True, check_dtype=check_dtype)


class TestResolvedVehicles:
    """The master resolved once gives the trip frame of resolving it per call."""

    @pytest.mark.parametrize("name", VEHICLE_CASES)
    def test_resolved_equals_plain_master(self, name: str, model: EmissionModel) -> None:
        trips, master = _case(name, model)

        expected = resolve_trip_vehicles(trips, master, model)

        _assert_same_frame(resolve_trip_vehicles(trips, resolve_vehicles(master, model), model), expected)
        _assert_same_frame(resolve_trip_vehicles(trips, pipeline.VehicleMaster.of(master).resolved(model), model), expected)
        assert len(expected) == len(trips)
        assert pd.Series(expected[c.VEHICLE_ID].to_numpy(dtype=object)).equals(pd.Series(trips[c.VEHICLE_ID].to_numpy(dtype=object)))

    @pytest.mark.parametrize("name", VEHICLE_CASES)
    def test_values_equal_per_piece_master(self, name: str, model: EmissionModel) -> None:
        """Before, each piece resolved only its own vehicles. The values must not depend on the others."""
        trips, master = _case(name, model)

        whole = resolve_trip_vehicles(trips, master, model)
        own = resolve_trip_vehicles(trips, _subset_master(trips, master), model)

        # Dtypes may widen (bool to object) when the master has a vehicle without class parameters.
        _assert_same_frame(whole, own, check_dtype=False)

    def test_first_duplicate_wins(self, model: EmissionModel) -> None:
        trips, master = _case("duplicate master ids", model)
        first = master.drop_duplicates(c.VEHICLE_ID, keep="first")

        frame = resolve_trip_vehicles(trips, master, model)

        for column in (c.VEHICLE_CLASS, c.FUEL_TYPE, c.CATALOG_FE, c.MAX_PAYLOAD_KG):
            expected = first.set_index(c.VEHICLE_ID)[column].reindex(trips[c.VEHICLE_ID]).to_numpy(dtype=object)
            assert pd.Series(frame[column].to_numpy(dtype=object)).equals(pd.Series(expected)), column

    def test_categorical_trip_ids(self, model: EmissionModel) -> None:
        trips, master = _case("missing vehicles", model)
        categorical = trips.assign(**{c.VEHICLE_ID: trips[c.VEHICLE_ID].astype("category")})

        got = resolve_trip_vehicles(categorical, pipeline.VehicleMaster.of(master).resolved(model), model)

        expected = resolve_trip_vehicles(trips, master, model)
        assert isinstance(got[c.VEHICLE_ID].dtype, pd.CategoricalDtype)
        _assert_same_frame(got.drop(columns=[c.VEHICLE_ID]), expected.drop(columns=[c.VEHICLE_ID]))

    def test_ids_are_not_compared_as_text(self, model: EmissionModel) -> None:
        trips, master = _case("ids equal as text", model)

        frame = resolve_trip_vehicles(trips, master, model)

        # "1" and 1 are different vehicles. 1.0 is the same key as 1 by Python equality, and "1.0" is no vehicle.
        classes = master[c.VEHICLE_CLASS].tolist()
        assert list(frame[c.VEHICLE_CLASS].iloc[:6]) == [classes[0], classes[1], classes[1], classes[2], classes[3], classes[4]]
        assert list(frame["vehicle_found"]) == [True] * 6 + [False]

    def test_null_ids_resolve_alike(self, model: EmissionModel) -> None:
        master = _master(model, [None, "V1"], np.random.default_rng(5))
        trips = pd.DataFrame({c.VEHICLE_ID: pd.Series([None, np.nan], dtype=object), c.LOAD_KG: [np.nan, np.nan]})

        frame = resolve_trip_vehicles(trips, master, model)

        assert frame["vehicle_found"].iloc[0] == frame["vehicle_found"].iloc[1]

    @pytest.mark.parametrize("name", ["clean", "missing vehicles", "numeric ids", "duplicate master ids", "empty master",
                                      "unknown class in master"])
    def test_estimate_identical_either_way(self, name: str, model: EmissionModel) -> None:
        trip_ids, master = _case(name, model)
        rng = np.random.default_rng(90)
        segs, trips, tacho = _piece(list(trip_ids[c.VEHICLE_ID]), rng)

        expected = estimate_trips(segs, trips, master, tacho, model)
        resolved = estimate_trips(segs, trips, pipeline.VehicleMaster.of(master).resolved(model), tacho, model)
        per_piece = estimate_trips(segs, trips, _subset_master(trips, master), tacho, model)

        for got in (resolved, per_piece):
            _assert_same_frame(got.trips, expected.trips)
            _assert_same_frame(got.segments, expected.segments)
        assert len(expected.trips) == len(trips)

    def test_concurrent_first_calls(self, model: EmissionModel, model_no_gap: EmissionModel) -> None:
        _, frame = _case("duplicate master ids", model)
        master = pipeline.VehicleMaster.of(frame)
        references = {id(model): resolve_vehicles(frame, model), id(model_no_gap): resolve_vehicles(frame, model_no_gap)}
        results: list[tuple[EmissionModel, ResolvedVehicles]] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(4)

        def resolve(chosen_model: EmissionModel) -> None:
            try:
                barrier.wait()
                for _ in range(5):
                    results.append((chosen_model, master.resolved(chosen_model)))
            except BaseException as error:  # collected and asserted below
                errors.append(error)

        threads = [threading.Thread(target=resolve, args=(m,)) for m in (model, model, model_no_gap, model)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        assert len(results) == 20
        for chosen_model, resolved in results:
            reference = references[id(chosen_model)]
            _assert_same_frame(resolved.frame, reference.frame)
            _assert_same_frame(resolved.unknown, reference.unknown)
            assert list(resolved.ids) == list(reference.ids)

    def test_models_alternate(self, model: EmissionModel, model_no_gap: EmissionModel) -> None:
        trips, frame = _case("missing vehicles", model)
        master = pipeline.VehicleMaster.of(frame)

        for chosen_model in (model, model_no_gap, model, model_no_gap):
            got = resolve_trip_vehicles(trips, master.resolved(chosen_model), chosen_model)
            _assert_same_frame(got, resolve_trip_vehicles(trips, frame, chosen_model))

        assert master.resolved(model_no_gap) is master.resolved(model_no_gap)
        assert not master.resolved(model).frame["residual_gap"].equals(master.resolved(model_no_gap).frame["residual_gap"])

    def test_new_model_after_old_one_is_dropped(self, model: EmissionModel) -> None:
        """A model created after another was dropped may get its id, but it must not get its resolution."""
        trips, frame = _case("clean", model)
        master = pipeline.VehicleMaster.of(frame)
        for k in range(6):
            settings = EmissionSettings(gap_explained_by_profile=1.0) if k % 2 else EmissionSettings()
            fresh = load_model(settings)
            got = resolve_trip_vehicles(trips, master.resolved(fresh), fresh)
            _assert_same_frame(got, resolve_trip_vehicles(trips, frame, fresh))
            del fresh
            gc.collect()


# -- emissions.profiles ------------------------------------------------------------------------


def _median_reference(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    return pd.Series(values.astype(np.float64)).groupby(groups).median().reindex(range(n_groups)).to_numpy(dtype="float64")


MEDIAN_CASES: dict[str, tuple[list[int], list[float], int]] = {
    "opposite infinities": ([0, 0], [np.inf, -np.inf], 1),
    "infinities": ([0, 0, 1], [np.inf, np.inf, -np.inf], 2),
    "sum overflows": ([0, 0], [1.7e308, 1.0e308], 1),
    "subnormal": ([0, 0], [5e-324, 5e-324], 1),
    "missing id first": ([-1, 0, 0], [5.0, 1.0, 2.0], 1),
    "missing id inside": ([0, -1, 1], [5.0, 1.0, 2.0], 2),
    "id beyond groups": ([0, 0, 3], [5.0, 1.0, 2.0], 2),
    "one group": ([0, 0, 0, 0, 0], [5.0, 1.0, 2.0, np.nan, 4.0], 1),
    "no groups": ([0, 1], [1.0, 2.0], 0),
    "interleaved": ([0, 1, 0, 1], [1.0, 2.0, 3.0, 4.0], 2),
    "group comes back": ([0, 0, 1, 1, 0], [1.0, 2.0, 3.0, 4.0, 9.0], 2),
    "only NaN": ([0, 0, 2], [np.nan, np.nan, 1.0], 3),
    "huge id": ([0, 2**40], [1.0, 2.0], 3),
}


class TestProfileHelpers:
    @pytest.mark.parametrize("name", list(MEDIAN_CASES))
    def test_group_median_cases(self, name: str) -> None:
        groups, values, n_groups = MEDIAN_CASES[name]
        groups_array, values_array = np.array(groups, dtype=np.int64), np.array(values)

        got = profiles._group_median(groups_array, values_array, n_groups)

        np.testing.assert_array_equal(got, _median_reference(groups_array, values_array, n_groups))

    @pytest.mark.parametrize("seed", range(6))
    def test_group_median_random(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        n, n_groups = int(rng.integers(1, 400)), int(rng.integers(1, 30))
        groups = np.sort(rng.integers(-1 if seed % 3 == 0 else 0, n_groups + (seed % 2), n))
        if seed >= 4:
            groups = rng.permutation(groups)
        values = np.round(rng.normal(2.0, 1.0, n), 1)
        values[rng.random(n) < 0.2] = np.nan

        for dtype in (np.int64, np.int32):
            got = profiles._group_median(groups.astype(dtype), values, n_groups)
            np.testing.assert_array_equal(got, _median_reference(groups, values, n_groups))
        np.testing.assert_array_equal(profiles._group_median(groups, values.astype(np.float32), n_groups),
                                      _median_reference(groups, values.astype(np.float32), n_groups))

    @pytest.mark.parametrize("seed", range(4))
    def test_sort_check_matches_loop(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(400):
            n = int(rng.integers(0, 7))
            position = np.sort(rng.integers(0, 3, n)) if rng.random() < 0.7 else rng.integers(0, 3, n)
            seconds = rng.choice([0.0, 1.0, 1.0, 2.0, np.nan, np.inf, -np.inf], n)
            if rng.random() < 0.5:
                seconds = np.sort(seconds)

            expected = True
            for i in range(n - 1):
                same_trip = position[i + 1] == position[i]
                with np.errstate(invalid="ignore"):
                    step_ok = bool(seconds[i + 1] - seconds[i] >= 0)
                if position[i + 1] < position[i] or (same_trip and not step_ok):
                    expected = False

            assert profiles._is_sorted_by_trip_and_time(position, seconds) is expected, (position, seconds)

    @pytest.mark.parametrize("categorical", [False, True])
    def test_segment_columns_match_pandas(self, categorical: bool) -> None:
        trip_frame = pd.DataFrame({c.TRIP_ID: pd.Series(["b", "a", "c"], dtype="str")})
        ids = ["a", "ghost", "c", "a", None, "b"]
        segs = pd.DataFrame({
            c.TRIP_ID: pd.Categorical(ids, categories=["zz", "c", "b", "a", "ghost"]) if categorical else pd.Series(ids, dtype=object),
            c.T_START: pd.Series([START, pd.NaT, START - pd.Timedelta(days=20_000), START, START, pd.NaT]).astype(TIME_DTYPE),
            c.LINK_GRADIENT_PCT: [np.nan, 2.0, np.nan, -50.0, np.nan, np.nan],
            c.GRADE_PCT: [1.5, 3.0, np.nan, 4.0, -7.0, np.nan],
        }).set_axis([10, 4, 7, 1, 2, 99])

        columns = profiles.segment_columns(segs, trip_frame)

        assert columns.position.tolist() == [1, -1, 2, 1, -1, 0]
        seconds = [T0_MS / 1_000, np.nan, T0_MS / 1_000 - 20_000 * 86_400, T0_MS / 1_000, T0_MS / 1_000, np.nan]
        np.testing.assert_array_equal(columns.start_s, seconds)
        np.testing.assert_array_equal(columns.grade_pct, [1.5, 2.0, np.nan, -50.0, -7.0, np.nan])

    def test_segment_columns_of_no_segments(self) -> None:
        empty = pd.DataFrame({c.TRIP_ID: pd.Series([], dtype="str")})
        columns = profiles.segment_columns(empty, pd.DataFrame({c.TRIP_ID: ["a"]}))
        assert (columns.position.size, columns.start_s.size, columns.grade_pct.size) == (0, 0, 0)
        assert columns.position.dtype == np.int64


def _seconds_of(times: pd.Series) -> np.ndarray:
    values = pd.to_datetime(times, utc=True)
    out = ((values - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype="float64", na_value=np.nan)
    return out


def _grade_by_scan(t: float, segment_rows: list[tuple[float, int, float]]) -> float:
    """Return the grade of the segment with the latest start at or before ``t``. Of equal starts the last row wins."""
    best: tuple[float, int, float] | None = None
    for start, row, grade in segment_rows:
        if start <= t and (best is None or (start, row) > (best[0], best[1])):
            best = (start, row, grade)
    return 0.0 if best is None else best[2]


def _tacho_reference(tacho: pd.DataFrame, segs: pd.DataFrame, trip_frame: pd.DataFrame, model: EmissionModel) -> dict[str, np.ndarray]:
    """Sum modelled fuel, idle time and distance per trip with a Python loop over the intervals."""
    settings = model.settings
    limit = settings.max_abs_grade_pct
    row_of = {trip_id: row for row, trip_id in enumerate(trip_frame[c.TRIP_ID].astype(object))}
    n_trips = len(trip_frame)

    by_trip: dict[int, list[tuple[float, int, float]]] = {}
    seg_start = _seconds_of(segs[c.T_START])
    link = segs[c.LINK_GRADIENT_PCT].to_numpy(dtype="float64")
    from_z = segs[c.GRADE_PCT].to_numpy(dtype="float64")
    for k, trip_id in enumerate(segs[c.TRIP_ID].astype(object)):
        if trip_id not in row_of or np.isnan(seg_start[k]):
            continue
        grade = link[k] if not np.isnan(link[k]) else from_z[k]
        grade = 0.0 if np.isnan(grade) else float(np.clip(grade, -limit, limit))
        by_trip.setdefault(row_of[trip_id], []).append((float(seg_start[k]), k, grade))

    rows_of_trip: dict[int, list[tuple[float, int, float]]] = {}
    ts = _seconds_of(tacho[c.TS])
    speed = tacho[c.SPEED_KMH].to_numpy(dtype="float64")
    for k, trip_id in enumerate(tacho[c.TRIP_ID].astype(object)):
        if trip_id in row_of:
            rows_of_trip.setdefault(row_of[trip_id], []).append((float(ts[k]), k, float(speed[k])))

    fuel, idle, distance = np.zeros(n_trips), np.zeros(n_trips), np.zeros(n_trips)
    trip_start = _seconds_of(trip_frame[c.START_TIME])
    for trip, rows in rows_of_trip.items():
        rows.sort(key=lambda row: (np.isnan(row[0]), row[0], row[1]))
        values = trip_frame.iloc[trip]
        for (t0, _, s0), (t1, _, s1) in zip(rows[:-1], rows[1:]):
            dt_s = t1 - t0
            v0, v1 = s0 / 3.6, s1 / 3.6
            if not (np.isfinite(v0) and np.isfinite(v1) and dt_s > 0):
                continue
            mean_speed = 0.5 * (v0 + v1)
            power = wheel_power_kw(np.array([mean_speed]), np.array([(v1 - v0) / dt_s]), _grade_by_scan(t0, by_trip.get(trip, [])),
                                   values["mass_kg"], values["rolling_kw_s_per_m_per_t"], values["road_load_b_kw_s2_per_m2"],
                                   values["aero_kw_s3_per_m3"], values["inertia_factor"])
            work = effective_work_kj(power, np.array([dt_s]), values["regen_share"])[0]
            cold = 1.0
            if settings.cold_start and t0 - trip_start[trip] < settings.cold_start_duration_s:
                cold = 1.0 + settings.cold_start_excess_pct / 100.0
            fuel[trip] += (values["idle_rate_per_s"] * dt_s + values["profile_fuel_per_kj"] * work) * cold
            if mean_speed * 3.6 < settings.idle_speed_kmh:
                idle[trip] += dt_s
            distance[trip] += mean_speed * dt_s
    return {"model_fuel": fuel, "idle_s": idle, "distance_m": distance}


def _pointer_piece(seed: int, model: EmissionModel) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Build tachograph rows and segments that walk the segment pointer over every awkward case.

    Segment starts come from a few whole seconds, so many are equal, and some are missing. Rows start
    before the first segment and run past the last one, repeat times, miss speeds and arrive
    shuffled. One trip has no segments, one no rows, and both frames have rows of a trip that is
    not in the trip frame.
    """
    rng = np.random.default_rng(seed)
    pairs = _vehicle_pairs(model)
    pair = ("heavy_truck", "diesel") if ("heavy_truck", "diesel") in pairs else pairs[0]
    vehicles = pd.DataFrame({
        c.VEHICLE_ID: ["truck"], c.VEHICLE_CLASS: pd.Series([pair[0]], dtype="str"), c.FUEL_TYPE: pd.Series([pair[1]], dtype="str"),
        c.CATALOG_FE: [np.nan], c.TEST_CYCLE: pd.Series([None], dtype=object), c.MAX_PAYLOAD_KG: [np.nan],
    })
    trip_ids = [f"trip-{t}" for t in range(8)]
    trips = pd.DataFrame({
        c.TRIP_ID: pd.Series(trip_ids, dtype="str"), c.VEHICLE_ID: "truck",
        c.START_TIME: pd.Series([START] * 8).astype(TIME_DTYPE), c.END_TIME: pd.Series([START + pd.Timedelta(seconds=90)] * 8).astype(TIME_DTYPE),
        c.LOAD_KG: np.nan,
    })
    seg_parts, tacho_parts = [], []
    for t, trip_id in enumerate(trip_ids + ["ghost"]):
        n_segments = 0 if t == 3 else int(rng.integers(1, 14))
        offsets = rng.choice([5.0, 10.0, 10.0, 20.0, 35.0, 35.0, 60.0], n_segments)
        starts = pd.Series(START + pd.to_timedelta(offsets, unit="s")).astype(TIME_DTYPE)
        starts[rng.random(n_segments) < 0.15] = pd.NaT
        seg_parts.append(pd.DataFrame({
            c.TRIP_ID: trip_id, c.T_START: starts, c.GRADE_PCT: rng.uniform(-12.0, 12.0, n_segments),
            c.LINK_GRADIENT_PCT: np.where(rng.random(n_segments) < 0.3, rng.uniform(-30.0, 30.0, n_segments), np.nan),
        }))
        n_rows = 0 if t == 5 else int(rng.integers(2, 90))
        ts = np.sort(rng.choice(np.arange(-10.0, 80.0, 1.0), n_rows)) + rng.choice([0.0, 0.5])
        speed = np.abs(rng.normal(35.0, 20.0, n_rows))
        speed[rng.random(n_rows) < 0.05] = np.nan
        speed[rng.random(n_rows) < 0.1] = 0.0
        tacho_parts.append(pd.DataFrame({
            c.TRIP_ID: trip_id, c.TS: pd.Series(START + pd.to_timedelta(ts, unit="s")).astype(TIME_DTYPE),
            c.SPEED_KMH: speed, c.FUEL_ML: rng.uniform(0.0, 2.0, n_rows),
        }))
    segs = pd.concat(seg_parts, ignore_index=True)
    tacho = pd.concat(tacho_parts, ignore_index=True)
    return segs, tacho, resolve_trip_vehicles(trips, vehicles, model)


class TestTachoSegmentPointer:
    """The forward pointer of ``_tacho_trip_sums`` picks the grade a scan of every segment picks."""

    @pytest.mark.parametrize("seed", range(8))
    @pytest.mark.parametrize("order", ["as built", "shuffled", "sorted without missing starts"])
    def test_matches_scan(self, seed: int, order: str, model: EmissionModel) -> None:
        segs, tacho, trip_frame = _pointer_piece(seed, model)
        rng = np.random.default_rng(100 + seed)
        if order == "shuffled":
            segs = segs.iloc[rng.permutation(len(segs))]
            tacho = tacho.iloc[rng.permutation(len(tacho))]
        elif order == "sorted without missing starts":
            # Rows already in (trip, time) order take the path without a sort.
            row_of = {trip_id: row for row, trip_id in enumerate(trip_frame[c.TRIP_ID])}
            segs = segs[segs[c.T_START].notna()].assign(_row=lambda f: f[c.TRIP_ID].map(row_of).fillna(-1))
            segs = segs.sort_values(["_row", c.T_START], kind="stable").drop(columns="_row")

        expected = _tacho_reference(tacho, segs, trip_frame, model)
        got = profiles.tacho_profile(tacho, segs, trip_frame, model)

        for name, values in expected.items():
            np.testing.assert_allclose(getattr(got, name), values, rtol=1e-12, atol=1e-12, err_msg=name)
        assert np.count_nonzero(expected["model_fuel"]) >= 5

    def test_grade_changes_the_fuel(self, model: EmissionModel) -> None:
        """The reference can tell grades apart: flattening every segment changes the fuel."""
        segs, tacho, trip_frame = _pointer_piece(0, model)
        flat = segs.assign(**{c.GRADE_PCT: 0.0, c.LINK_GRADIENT_PCT: np.nan})

        steep = profiles.tacho_profile(tacho, segs, trip_frame, model).model_fuel
        level = profiles.tacho_profile(tacho, flat, trip_frame, model).model_fuel

        assert np.abs(steep - level).max() > 1e-3 * np.abs(level).max()

    def test_equal_starts_take_last_row(self, model: EmissionModel) -> None:
        segs, tacho, trip_frame = _pointer_piece(1, model)
        trip_id = trip_frame[c.TRIP_ID].iloc[0]
        mine = segs[c.TRIP_ID] == trip_id
        starts = pd.Series([START + pd.Timedelta(seconds=s) for s in (0, 10, 10, 10, 30)]).astype(TIME_DTYPE)
        tied = pd.DataFrame({c.TRIP_ID: trip_id, c.T_START: starts, c.GRADE_PCT: [0.0, -9.0, 4.0, 11.0, 0.0],
                             c.LINK_GRADIENT_PCT: np.nan})
        segs = pd.concat([segs[~mine], tied], ignore_index=True)
        rows = pd.DataFrame({c.TRIP_ID: trip_id, c.TS: pd.Series([START + pd.Timedelta(seconds=s) for s in range(0, 40)]).astype(TIME_DTYPE),
                             c.SPEED_KMH: np.linspace(10.0, 50.0, 40), c.FUEL_ML: 1.0})
        tacho = pd.concat([tacho[tacho[c.TRIP_ID] != trip_id], rows], ignore_index=True)

        got = profiles.tacho_profile(tacho, segs, trip_frame, model).model_fuel
        expected = _tacho_reference(tacho, segs, trip_frame, model)["model_fuel"]
        uphill_tie = _tacho_reference(tacho, segs.assign(**{c.GRADE_PCT: segs[c.GRADE_PCT].replace(11.0, -9.0)}), trip_frame, model)

        np.testing.assert_allclose(got, expected, rtol=1e-12)
        assert got[0] != uphill_tie["model_fuel"][0]


# -- metrics.breakdown -------------------------------------------------------------------------


def _breakdown_reference(segs: pd.DataFrame, dimensions: tuple[str, ...]) -> pd.DataFrame:
    """Group the filled categories with pandas: trip id, then category, both in text order."""
    parts = []
    for name in dimensions:
        category = metrics.BREAKDOWN_DIMENSIONS[name](segs)
        filled = category.astype(object).where(category.notna(), metrics.UNMATCHED).astype(str)
        frame = pd.DataFrame({
            c.TRIP_ID: segs[c.TRIP_ID].astype(object).where(segs[c.TRIP_ID].notna(), None).to_numpy(),
            c.CATEGORY: filled.to_numpy(dtype=object),
            c.DISTANCE_KM: segs[c.LENGTH_M].to_numpy(dtype="float64") / 1000.0,
            c.CO2_TTW_KG: segs[c.CO2_TTW_KG].to_numpy(dtype="float64"),
        })
        frame["trip_text"] = frame[c.TRIP_ID].astype(str)
        grouped = frame.groupby(["trip_text", c.CATEGORY], sort=False, dropna=False).agg(
            **{c.TRIP_ID: (c.TRIP_ID, "first"), c.DISTANCE_KM: (c.DISTANCE_KM, "sum"), c.CO2_TTW_KG: (c.CO2_TTW_KG, "sum")}
        ).reset_index()
        grouped["missing_trip"] = grouped[c.TRIP_ID].isna()
        grouped = grouped.sort_values(["missing_trip", "trip_text", c.CATEGORY], kind="stable")
        grouped.insert(1, c.DIMENSION, name)
        parts.append(grouped[[c.TRIP_ID, c.DIMENSION, c.CATEGORY, c.DISTANCE_KM, c.CO2_TTW_KG]])
    return pd.concat(parts, ignore_index=True)


def _breakdown_segments(n: int, n_trips: int, road: pd.Series | pd.Categorical | np.ndarray, area: pd.Series | pd.Categorical | np.ndarray,
                        rng: np.random.Generator) -> pd.DataFrame:
    trip_ids = np.array([f"t{k:04d}" for k in rng.integers(0, n_trips, n)], dtype=object)
    length = rng.uniform(0.0, 400.0, n)
    length[rng.random(n) < 0.05] = np.nan
    co2 = rng.uniform(0.0, 0.2, n)
    co2[rng.random(n) < 0.05] = np.nan
    # Categories are passed as arrays, so that a Series is not aligned on the shuffled index.
    road = road.array if isinstance(road, pd.Series) else road
    area = area.array if isinstance(area, pd.Series) else area
    return pd.DataFrame({c.TRIP_ID: trip_ids, c.LENGTH_M: length, c.CO2_TTW_KG: co2, c.ROAD_CLASS: road, c.AREA_TYPE: area},
                        index=rng.permutation(n) * 3)


def _category_cases(n: int, rng: np.random.Generator) -> dict[str, Callable[[], object]]:
    labels = np.array(["motorway", "local", "unmatched", None], dtype=object)
    drawn = rng.choice(labels[[0, 1, 3]], n)
    return {
        "categorical with unmatched": lambda: pd.Categorical(drawn, categories=["unmatched", "motorway", "local", "unused"]),
        "categorical with unmatched used": lambda: pd.Categorical(rng.choice(labels, n), categories=["local", "unmatched", "motorway"]),
        "categorical all missing": lambda: pd.Categorical([None] * n, categories=["motorway"]),
        "categorical without categories": lambda: pd.Categorical([None] * n, categories=pd.Index([], dtype=object)),
        "categorical of numbers": lambda: pd.Categorical(rng.choice(np.array([9, 10, 100, None], dtype=object), n)),
        "ordered categorical": lambda: pd.Categorical(drawn, categories=["motorway", "local"], ordered=True),
        "objects with None and NaN": lambda: pd.Series(np.where(rng.random(n) < 0.5, drawn, np.nan), dtype=object),
        "objects with literal unmatched": lambda: pd.Series(rng.choice(labels, n), dtype=object),
        "text dtype": lambda: pd.Series(drawn, dtype="str"),
        "all missing objects": lambda: pd.Series([None] * n, dtype=object),
    }


def _labels(values: pd.Series) -> list[object]:
    """Return the values as a list with every missing value as None."""
    return [None if pd.isna(value) else value for value in values.astype(object)]


CATEGORY_CASES = sorted(_category_cases(1, np.random.default_rng(0)))


class TestBreakdown:
    """``metrics.breakdown`` equals a pandas groupby on the categories filled with ``"unmatched"``."""

    @pytest.mark.parametrize("table_kind", ["dense", "sparse"])
    @pytest.mark.parametrize("case", CATEGORY_CASES)
    def test_matches_groupby(self, case: str, table_kind: str) -> None:
        rng = np.random.default_rng(CATEGORY_CASES.index(case))
        n, n_trips = (400, 30) if table_kind == "dense" else (2_500, 2_000)
        cases = _category_cases(n, rng)
        area = cases["objects with literal unmatched"]() if case != "objects with literal unmatched" else cases["text dtype"]()
        segs = _breakdown_segments(n, n_trips, cases[case](), area, rng)  # type: ignore[arg-type]
        if table_kind == "sparse":
            # Many distinct areas give more (trip, category) keys than the dense table takes.
            segs[c.AREA_TYPE] = pd.Series([f"a{k:03d}" for k in rng.integers(0, 120, n)], index=segs.index, dtype=object)
        segs.loc[segs.index[::17], c.TRIP_ID] = None

        got = metrics.breakdown(segs)

        expected = _breakdown_reference(segs, metrics.DEFAULT_DIMENSIONS)
        assert len(got) == len(expected)
        assert list(got[c.DIMENSION]) == list(expected[c.DIMENSION])
        assert _labels(got[c.TRIP_ID]) == _labels(expected[c.TRIP_ID])
        assert list(got[c.CATEGORY]) == list(expected[c.CATEGORY])
        np.testing.assert_allclose(got[c.DISTANCE_KM], expected[c.DISTANCE_KM], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(got[c.CO2_TTW_KG], expected[c.CO2_TTW_KG], rtol=1e-12, atol=1e-15)
        if table_kind == "sparse":
            keys = (len(set(segs[c.TRIP_ID].dropna())) + 1) * 121
            assert keys > 4 * n + metrics._DENSE_KEYS_MIN

    def test_categorical_and_text_agree(self) -> None:
        rng = np.random.default_rng(8)
        n = 500
        drawn = rng.choice(np.array(["motorway", "local", "unmatched", None], dtype=object), n)
        text = _breakdown_segments(n, 40, pd.Series(drawn, dtype=object), pd.Series(drawn, dtype=object), rng)
        categorical = text.assign(**{c.ROAD_CLASS: pd.Categorical(drawn, categories=["unmatched", "local", "motorway"]),
                                     c.AREA_TYPE: pd.Categorical(drawn)})

        pd.testing.assert_frame_equal(metrics.breakdown(categorical), metrics.breakdown(text), check_exact=True)

    def test_no_segments(self) -> None:
        segs = _breakdown_segments(0, 1, pd.Categorical([]), pd.Series([], dtype=object), np.random.default_rng(1))
        got = metrics.breakdown(segs)
        assert len(got) == 0
        assert list(got.columns) == list(metrics.BREAKDOWN_DTYPES)


# -- spatial link grid -------------------------------------------------------------------------


_A_M = 6_378_137.0
_E2 = (1.0 / 298.257223563) * (2.0 - 1.0 / 298.257223563)


def _link_layer(rng: np.random.Generator) -> gpd.GeoDataFrame:
    """Build short polylines around Tokyo, a north-south and an east-west line, and a repeated link."""
    geoms: list[shapely.Geometry] = []
    for _ in range(30):
        start = np.array([139.70, 35.60]) + rng.uniform(0.0, 0.004, 2)
        steps = rng.uniform(-0.0008, 0.0008, (3, 2))
        geoms.append(shapely.LineString(np.vstack([start, start + np.cumsum(steps, axis=0)])))
    geoms.append(shapely.LineString([(139.702, 35.600), (139.702, 35.604)]))
    geoms.append(shapely.LineString([(139.700, 35.602), (139.704, 35.602)]))
    geoms.append(geoms[0])
    ids = [f"link-{k:03d}" for k in rng.permutation(len(geoms))]
    return gpd.GeoDataFrame({c.FEATURE_ID: ids}, geometry=geoms, crs="EPSG:4326")


def _link_distances(lon: np.ndarray, lat: np.ndarray, layers: spatial.GeoLayers) -> np.ndarray:
    """Measure the distance (m) of every point to every link row in the point's tangent plane, by brute force."""
    geoms = np.asarray(layers.links.geometry.array, dtype=object)
    out = np.full((len(lon), len(geoms)), np.inf)
    phi = np.radians(lat)
    w = np.sqrt(1.0 - _E2 * np.sin(phi) ** 2)
    kx = _A_M / w * np.cos(phi) * np.pi / 180.0
    ky = _A_M * (1.0 - _E2) / w**3 * np.pi / 180.0
    for row, geom in enumerate(geoms):
        xy = shapely.get_coordinates(geom)
        for (x1, y1), (x2, y2) in zip(xy[:-1], xy[1:]):
            ax, ay = (x1 - lon) * kx, (y1 - lat) * ky
            dx, dy = (x2 - lon) * kx - ax, (y2 - lat) * ky - ay
            squared = dx * dx + dy * dy
            with np.errstate(invalid="ignore", divide="ignore"):
                t = np.where(squared > 0, np.clip(-(ax * dx + ay * dy) / squared, 0.0, 1.0), 0.0)
            out[:, row] = np.minimum(out[:, row], np.hypot(ax + t * dx, ay + t * dy))
    return out


class TestLinkGrid:
    @pytest.mark.parametrize("radius_m", [1e-9, 0.5, 9.99, 10.0, 10.01, 25.0, 500.0])
    def test_radii_around_the_cell_floor(self, radius_m: float) -> None:
        rng = np.random.default_rng(int(radius_m * 100) % 97)
        layers = spatial.prepare_layers(_link_layer(rng), link_max_distance_m=radius_m)
        vertices = shapely.get_coordinates(np.asarray(layers.links.geometry.array, dtype=object))
        lon = np.r_[rng.uniform(139.6985, 139.7065, 4_000), vertices[:, 0], 0.5 * (vertices[1:, 0] + vertices[:-1, 0])]
        lat = np.r_[rng.uniform(35.5985, 35.6065, 4_000), vertices[:, 1], 0.5 * (vertices[1:, 1] + vertices[:-1, 1])]

        pick, distance = spatial.nearest_links(lon, lat, layers, radius_m)

        per_link = _link_distances(lon, lat, layers)
        best = per_link.min(axis=1)
        ordered = np.sort(per_link, axis=1)
        clear = (np.abs(best - radius_m) > 1e-6) & ((ordered[:, 1] - best > 1e-6) | (best > radius_m))
        expected = np.where(best <= radius_m, per_link.argmin(axis=1), -1)
        assert clear.mean() > 0.9
        mismatch = np.flatnonzero(clear & (pick != expected))
        assert mismatch.size == 0, f"{mismatch.size} picks differ, first at ({lon[mismatch[0]]!r}, {lat[mismatch[0]]!r})"
        np.testing.assert_allclose(distance[clear & (pick >= 0)], best[clear & (pick >= 0)], rtol=1e-12, atol=1e-9)
        on_vertex = slice(4_000, 4_000 + len(vertices))
        assert (pick[on_vertex] >= 0).all()
        assert (distance[on_vertex] == 0.0).all()

    def test_far_points_match_nothing(self) -> None:
        layers = spatial.prepare_layers(_link_layer(np.random.default_rng(2)), link_max_distance_m=25.0)
        lon = np.array([139.702, 1e15, -1e15, 139.702, 139.702, 5e-324, 1e308, 139.702])
        lat = np.array([1e15, 35.602, 35.602, 1e17, -1e17, 35.602, 1e308, 35.602 + 1e-3])

        pick, distance = spatial.nearest_links(lon, lat, layers, 25.0)

        assert pick[:-1].tolist() == [-1] * 7
        assert np.isnan(distance[:-1]).all()
        assert pick[-1] >= 0

    @pytest.mark.parametrize("radius_m", [5e-324, 1e-320])
    def test_subnormal_radius_builds(self, radius_m: float) -> None:
        line = shapely.LineString([(139.5, 35.5), (139.5, 35.6)])
        geo = gpd.GeoDataFrame({c.FEATURE_ID: ["link-a"]}, geometry=[line], crs="EPSG:4326")

        layers = spatial.prepare_layers(geo, link_max_distance_m=radius_m)
        pick, distance = spatial.nearest_links(np.array([139.5]), np.array([35.5]), layers, radius_m)

        assert pick.tolist() == [0]
        assert distance.tolist() == [0.0]


# -- segments from Arrow WKB -------------------------------------------------------------------


def _wkb(coords: np.ndarray, kind: int, byte_order: str) -> bytes:
    flag = b"\x01" if byte_order == "<" else b"\x00"
    return flag + np.array([kind, len(coords)], f"{byte_order}u4").tobytes() + np.ascontiguousarray(coords, f"{byte_order}f8").tobytes()


def _trajectory_rows(n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[str], list[list[int] | None]]:
    counts = rng.integers(2, 8, n)
    coords = [np.c_[139.7 + np.cumsum(rng.normal(0, 2e-4, k)), 35.6 + np.cumsum(rng.normal(0, 2e-4, k)), rng.uniform(0, 40, k)]
              for k in counts]
    times: list[list[int] | None] = []
    for t, k in enumerate(counts):
        times.append(None if t % 3 == 1 else [T0_MS + 1_000 * j + int(rng.integers(0, 900)) for j in range(k)])
    return coords, [f"T{t:03d}" for t in range(n)], times


def _trajectory_table(geometry: list[bytes], trip_ids: list[str], times: list[list[int] | None], binary: pa.DataType = BINARY) -> pa.Table:
    n = len(geometry)
    return pa.table({
        c.TRIP_ID: trip_ids, c.VEHICLE_ID: [f"V{int(trip_id[1:]) % 2}" for trip_id in trip_ids],
        c.GEOMETRY: pa.array(geometry, binary),
        c.TIMESTAMPS: pa.array(times, pa.list_(pa.int64())).cast(pa.list_(UTC_MS)),
        c.START_TIME: pa.array([T0_MS] * n, pa.int64()).cast(UTC_MS),
        c.END_TIME: pa.array([T0_MS + 90_000] * n, pa.int64()).cast(UTC_MS),
        c.LOAD_KG: pa.array([float(trip_id[1:]) for trip_id in trip_ids]),
    })


def _assert_same_build(actual: tuple[pd.DataFrame, pd.DataFrame], expected: tuple[pd.DataFrame, pd.DataFrame], label: str) -> None:
    for got, want, part in zip(actual, expected, ("segments", "trips")):
        assert list(got.columns) == list(want.columns), f"{label}: {part}"
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=f"{label}: {part}")


WKB_KINDS = {"2D": (2, 2), "ISO 3D": (1002, 3), "EWKB Z": (0x80000002, 3)}


class TestArrowWkbSegments:
    """The ``binary_slice`` decoding gives what the shapely fallback gives, bit for bit."""

    @pytest.mark.parametrize("kind", list(WKB_KINDS))
    @pytest.mark.parametrize("n", range(1, 10))
    def test_little_endian_equals_fallback(self, n: int, kind: str) -> None:
        code, dims = WKB_KINDS[kind]
        coords, trip_ids, times = _trajectory_rows(n, np.random.default_rng(n))
        little = [_wkb(xyz[:, :dims], code, "<") for xyz in coords]
        big = [_wkb(xyz[:, :dims], code, ">") for xyz in coords]
        assert segments._decode_wkb_linestrings(pa.array(little)) is not None
        assert segments._decode_wkb_linestrings(pa.array(big)) is None

        fast = segments.build_segments_from_arrow(_trajectory_table(little, trip_ids, times))

        _assert_same_build(fast, segments.build_segments_from_arrow(_trajectory_table(big, trip_ids, times)), "big-endian")
        _assert_same_build(fast, segments.build_segments_from_arrow(_trajectory_table(little, trip_ids, times, pa.large_binary())), "large_binary")

    @pytest.mark.parametrize("n", [1, 2, 5, 8])
    def test_sliced_and_chunked_tables(self, n: int) -> None:
        coords, trip_ids, times = _trajectory_rows(n + 3, np.random.default_rng(40 + n))
        little = [_wkb(xyz, 1002, "<") for xyz in coords]
        whole = _trajectory_table(little, trip_ids, times)
        expected = segments.build_segments_from_arrow(_trajectory_table(little[1: n + 1], trip_ids[1: n + 1], times[1: n + 1]))

        sliced = whole.slice(1, n)
        chunked = pa.concat_tables([whole.slice(k, 1) for k in range(1, n + 1)])
        uneven = pa.concat_tables([whole.slice(1, 1), whole.slice(2, n - 1)]) if n > 1 else sliced

        _assert_same_build(segments.build_segments_from_arrow(sliced), expected, "sliced")
        _assert_same_build(segments.build_segments_from_arrow(chunked), expected, "one chunk per row")
        _assert_same_build(segments.build_segments_from_arrow(uneven), expected, "two chunks")

    def test_equals_shapely_frame_path(self) -> None:
        coords, trip_ids, times = _trajectory_rows(7, np.random.default_rng(60))
        little = [_wkb(xyz, 1002, "<") for xyz in coords]
        table = _trajectory_table(little, trip_ids, times)
        frame = pd.DataFrame({
            c.TRIP_ID: trip_ids, c.VEHICLE_ID: [f"V{t % 2}" for t in range(7)],
            c.GEOMETRY: list(shapely.from_wkb(little)),
            c.TIMESTAMPS: pd.Series([None if v is None else np.array(v, dtype="datetime64[ms]") for v in times], dtype=object),
            c.START_TIME: pd.Series([START] * 7).astype(TIME_DTYPE), c.END_TIME: pd.Series([START + pd.Timedelta(seconds=90)] * 7).astype(TIME_DTYPE),
            c.LOAD_KG: np.arange(7, dtype=float),
        })

        _assert_same_build(segments.build_segments_from_arrow(table), segments.build_segments(frame), "shapely frame")

    def test_mixed_dimensions_fall_back(self) -> None:
        coords, trip_ids, times = _trajectory_rows(4, np.random.default_rng(61))
        mixed = [_wkb(xyz[:, :2], 2, "<") if k % 2 else _wkb(xyz, 1002, "<") for k, xyz in enumerate(coords)]
        assert segments._decode_wkb_linestrings(pa.array(mixed)) is None

        segs, trips = segments.build_segments_from_arrow(_trajectory_table(mixed, trip_ids, times))

        assert trips[c.N_VERTICES].tolist() == [len(xyz) for xyz in coords]
        assert np.isnan(segs[c.GRADE_PCT].to_numpy()[segs[c.TRIP_ID].astype(str).isin(["T001", "T003"])]).all()

    @pytest.mark.parametrize("kind", ["2D", "ISO 3D"])
    def test_empty_linestring_keeps_its_trip(self, kind: str) -> None:
        code, dims = WKB_KINDS[kind]
        line = np.array([[139.7, 35.6, 1.0], [139.71, 35.61, 2.0]])[:, :dims]
        geometry = [_wkb(np.zeros((0, dims)), code, "<"), _wkb(line, code, "<"), _wkb(np.zeros((0, dims)), code, "<")]

        segs, trips = segments.build_segments_from_arrow(_trajectory_table(geometry, ["E0", "T1", "E2"], [None, [T0_MS, T0_MS + 5_000], None]))

        assert trips[c.N_VERTICES].tolist() == [0, 2, 0]
        assert len(segs) == 1
