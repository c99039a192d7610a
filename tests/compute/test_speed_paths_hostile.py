"""Hostile inputs for the fast paths of segments, spatial, metrics, flags, pipeline and numba_cache.

Every equivalence check compares the code with a reference written here in plain Python or numpy
(a loop per trip, a brute-force search, dictionaries of sums), never with the code under test.
The inputs are the awkward ones. They include NaN and infinite coordinates and times, trips of one
vertex, untimed trips beside timed ones and segments over 1 km. They also include rows already in
order or in reverse, unused and missing categories, and cache folders that cannot be written.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyproj
import pytest
import shapely

from compute import columns as c
from compute import metrics, numba_cache, pipeline, segments, spatial
from compute.emissions import flags
from tests.reference_times import spread_trip_times

T0_MS = 1_796_000_000_000
WGS84_A_M = 6_378_137.0
WGS84_F = 1.0 / 298.257223563
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)
#: The documented switch from the local length formula to ``pyproj.Geod.inv``.
LOCAL_LENGTH_MAX_M = 1_000.0
GEOD = pyproj.Geod(ellps="WGS84")
UTC_MS = pa.timestamp("ms", tz="UTC")


# -- segments: builders and reference ----------------------------------------------------------


def _wkb_linestring(coords: np.ndarray, three_d: bool) -> bytes:
    """Encode one little-endian ISO WKB LineString, NaN and infinite values included."""
    kind = 1002 if three_d else 2
    values = coords if three_d else coords[:, :2]
    return b"\x01" + np.array([kind, len(coords)], "<u4").tobytes() + np.ascontiguousarray(values, "<f8").tobytes()


def _trajectory_table(
    coords: np.ndarray,
    counts: np.ndarray,
    vertex_ms: np.ndarray,
    timed: np.ndarray,
    start_ms: Sequence[float | None],
    end_ms: Sequence[float | None],
    *,
    three_d: bool = True,
    trip_ids: list[str] | None = None,
) -> pa.Table:
    """Build a validated-trajectories table. A NaN in ``vertex_ms`` gives a null timestamp in the list."""
    offsets = np.r_[0, np.cumsum(counts)]
    n_trips = len(counts)
    lists: list[list[int | None] | None] = []
    for t, (lo, hi) in enumerate(zip(offsets[:-1], offsets[1:])):
        if not timed[t]:
            lists.append(None)
            continue
        lists.append([None if np.isnan(ms) else int(ms) for ms in vertex_ms[lo:hi]])
    return pa.table({
        c.TRIP_ID: trip_ids if trip_ids is not None else [f"T{t:03d}" for t in range(n_trips)],
        c.VEHICLE_ID: [f"V{t % 3}" for t in range(n_trips)],
        c.GEOMETRY: pa.array([_wkb_linestring(coords[lo:hi], three_d) for lo, hi in zip(offsets[:-1], offsets[1:])], pa.binary()),
        c.TIMESTAMPS: pa.array(lists, pa.list_(pa.int64())).cast(pa.list_(UTC_MS)),
        c.START_TIME: pa.array([None if v is None else int(v) for v in start_ms], pa.int64()).cast(UTC_MS),
        c.END_TIME: pa.array([None if v is None else int(v) for v in end_ms], pa.int64()).cast(UTC_MS),
    })


def _reference_length_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Measure one pair as the module documents it: mid-latitude radii below 1 km, else pyproj."""
    with np.errstate(invalid="ignore", over="ignore"):
        phi = np.radians(0.5 * (lat1 + lat2))
        w = np.sqrt(1.0 - WGS84_E2 * np.sin(phi) ** 2)
        meridian_m = WGS84_A_M * (1.0 - WGS84_E2) / w**3
        prime_vertical_m = WGS84_A_M / w
        dlon = np.radians((lon2 - lon1 + 180.0) % 360.0 - 180.0)
        local = float(np.hypot(prime_vertical_m * np.cos(phi) * dlon, meridian_m * np.radians(lat2 - lat1)))
    if local < LOCAL_LENGTH_MAX_M:
        return local
    _, _, exact = GEOD.inv(lon1, lat1, lon2, lat2)
    return abs(float(exact))


def _reference_segments(
    coords: np.ndarray, counts: np.ndarray, vertex_ms: np.ndarray, timed: np.ndarray, start_ms: Sequence[float | None], end_ms: Sequence[float | None],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Compute segment and trip columns with one Python loop per trip and per segment."""
    columns: dict[str, list[float]] = {name: [] for name in (
        c.SEG_INDEX, "trip", c.T_START, c.DURATION_S, c.LENGTH_M, c.SPEED_KMH, c.ACCEL_M_S2, c.GRADE_PCT, c.LON_MID, c.LAT_MID)}
    trip_start, trip_end = [], []
    first = 0
    for trip, count in enumerate(counts):
        xyz = coords[first: first + count]
        lengths = [_reference_length_m(xyz[k, 0], xyz[k, 1], xyz[k + 1, 0], xyz[k + 1, 1]) for k in range(count - 1)]
        if timed[trip]:
            times = spread_trip_times(vertex_ms[first: first + count], lengths)
        else:
            start_value, end_value = start_ms[trip], end_ms[trip]
            start = np.nan if start_value is None else float(start_value)
            end = np.nan if end_value is None else float(end_value)
            total = 0.0
            along = [0.0]
            for length in lengths:
                total += length
                along.append(along[-1] + length)
            times = [start + ((a / total) if total > 0 else 0.0) * (end - start) for a in along]
        trip_start.append(times[0] if count else np.nan)
        trip_end.append(times[-1] if count else np.nan)
        previous_speed = previous_duration = np.nan
        for k, length in enumerate(lengths):
            duration = (times[k + 1] - times[k]) / 1000.0
            speed = length / duration if duration > 0 else np.nan
            accel = 0.0
            if k > 0:
                dv = speed - previous_speed
                dt = 0.5 * (duration + previous_duration)
                if dt > 0 and np.isfinite(dv):
                    accel = dv / dt
            grade = 100.0 * (xyz[k + 1, 2] - xyz[k, 2]) / length if length > 0.5 else np.nan
            for name, value in ((c.SEG_INDEX, k), ("trip", trip), (c.T_START, times[k]), (c.DURATION_S, duration), (c.LENGTH_M, length),
                                (c.SPEED_KMH, speed * 3.6), (c.ACCEL_M_S2, accel), (c.GRADE_PCT, grade),
                                (c.LON_MID, (xyz[k, 0] + xyz[k + 1, 0]) / 2.0), (c.LAT_MID, (xyz[k, 1] + xyz[k + 1, 1]) / 2.0)):
                columns[name].append(value)
            previous_speed, previous_duration = speed, duration
        first += count
    trips = {c.START_TIME: np.array(trip_start, dtype=float), c.END_TIME: np.array(trip_end, dtype=float)}
    return {name: np.array(values, dtype=float) for name, values in columns.items()}, trips


def _epoch_ms(times: pd.Series) -> np.ndarray:
    """Return epoch milliseconds of a ``datetime64[ms, UTC]`` column as float, NaN for NaT."""
    values = times.dt.tz_localize(None).to_numpy().astype("datetime64[ms]")
    out = values.astype(np.int64).astype(float)
    out[np.isnat(values)] = np.nan
    return out


def _floor_ms(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(values), np.floor(values), np.nan)


def _assert_matches_reference(table: pa.Table, coords: np.ndarray, counts: np.ndarray, vertex_ms: np.ndarray, timed: np.ndarray,
                              start_ms: Sequence[float | None], end_ms: Sequence[float | None]) -> pd.DataFrame:
    """Build segments from ``table`` and compare every column with :func:`_reference_segments`."""
    segs, trips = segments.build_segments_from_arrow(table)
    expected, expected_trips = _reference_segments(coords, counts, vertex_ms, timed, start_ms, end_ms)

    assert len(segs) == len(expected[c.LENGTH_M])
    trip_ids = np.asarray(table.column(c.TRIP_ID).to_pylist(), dtype=object)
    assert list(segs[c.TRIP_ID].astype(object)) == list(trip_ids[expected["trip"].astype(int)])
    np.testing.assert_array_equal(segs[c.SEG_INDEX].to_numpy(), expected[c.SEG_INDEX].astype(np.int32))
    for name in (c.LENGTH_M, c.GRADE_PCT, c.LON_MID, c.LAT_MID):
        np.testing.assert_allclose(segs[name].to_numpy(dtype=float), expected[name], rtol=1e-12, atol=0, equal_nan=True, err_msg=name)

    # An interpolated time near 1.8e12 ms has a last bit of 2.4e-4 ms, so another rounding of the
    # same formula may move it by that much, and its floor by 1 ms. Given times are exact.
    np.testing.assert_allclose(_epoch_ms(segs[c.T_START]), _floor_ms(expected[c.T_START]), rtol=0, atol=1.0, equal_nan=True)
    np.testing.assert_allclose(segs[c.DURATION_S].to_numpy(dtype=float), expected[c.DURATION_S], rtol=1e-12, atol=1e-6, equal_nan=True)
    for name in (c.SPEED_KMH, c.ACCEL_M_S2):
        np.testing.assert_allclose(segs[name].to_numpy(dtype=float), expected[name], rtol=1e-6, atol=1e-6, equal_nan=True, err_msg=name)

    np.testing.assert_array_equal(trips[c.N_VERTICES].to_numpy(), counts)
    np.testing.assert_allclose(_epoch_ms(trips[c.START_TIME]), _floor_ms(expected_trips[c.START_TIME]), rtol=0, atol=1.0, equal_nan=True)
    np.testing.assert_allclose(_epoch_ms(trips[c.END_TIME]), _floor_ms(expected_trips[c.END_TIME]), rtol=0, atol=1.0, equal_nan=True)
    assert list(trips[c.TIME_SOURCE]) == ["vertex" if t else "interpolated" for t in timed]
    return segs


def _tokyo_piece(rng: np.random.Generator, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float], list[float]]:
    """Return coordinates and vertex times of short urban trips, 0-2 s apart (0 s steps included)."""
    n = int(counts.sum())
    coords = np.column_stack([139.7 + np.cumsum(rng.normal(0, 1e-4, n)), 35.6 + np.cumsum(rng.normal(0, 1e-4, n)), rng.uniform(0, 30, n)])
    vertex_ms = (T0_MS + np.cumsum(rng.choice([0, 1_000, 1_000, 2_000], n))).astype(float)
    offsets = np.r_[0, np.cumsum(counts)]
    start = [float(vertex_ms[lo]) for lo in offsets[:-1]]
    end = [float(vertex_ms[hi - 1]) + 7_000.0 for hi in offsets[1:]]
    return coords, vertex_ms, start, end


# Trip 2 (vertices 4-12) is timed in the "mixed" timing and followed by two untimed trips, so a
# non-finite length there must not reach the interpolated times of trips 3 and 4.


def _set_nan_lon(xyz: np.ndarray) -> None:
    xyz[4, 0] = np.nan
    xyz[13, 0] = np.nan  # in untimed trip 3 too, before untimed trip 4


def _set_inf_lon(xyz: np.ndarray) -> None:
    xyz[6, 0] = np.inf


def _set_inf_lat(xyz: np.ndarray) -> None:
    xyz[9, 1] = -np.inf


def _set_nan_z(xyz: np.ndarray) -> None:
    xyz[2:6, 2] = np.nan


def _set_lat_beyond_pole(xyz: np.ndarray) -> None:
    xyz[11, 1] = 95.0


def _cross_antimeridian(xyz: np.ndarray) -> None:
    xyz[:, 0] = np.where(np.arange(len(xyz)) % 2 == 0, 179.99995, -179.99995)


def _jump_over_one_km(xyz: np.ndarray) -> None:
    xyz[6:, 0] += 0.5  # about 45 km east: measured by pyproj
    xyz[8, :2] = (-40.0, -35.6)  # nearly antipodal to the previous vertex


def _all_nan(xyz: np.ndarray) -> None:
    xyz[:] = np.nan


HOSTILE_COORDINATES = {
    "nan-lon": _set_nan_lon, "inf-lon": _set_inf_lon, "inf-lat": _set_inf_lat, "nan-z": _set_nan_z,
    "lat-95": _set_lat_beyond_pole, "antimeridian": _cross_antimeridian, "over-1km": _jump_over_one_km, "all-nan": _all_nan,
}
TIMINGS = {
    "all-timed": np.array([True, True, True, True, True]),
    "mixed": np.array([True, False, True, False, False]),
    "untimed": np.array([False, False, False, False, False]),
}


class TestSegmentLoops:
    """``_segment_geometry``, ``_segment_kinematics`` and ``_vertex_times`` against a per-trip loop."""

    @pytest.mark.parametrize("timing", list(TIMINGS))
    @pytest.mark.parametrize("case", list(HOSTILE_COORDINATES))
    def test_hostile_coordinates(self, case: str, timing: str) -> None:
        rng = np.random.default_rng(sorted(HOSTILE_COORDINATES).index(case))
        counts = np.array([3, 1, 9, 2, 5])
        coords, vertex_ms, start, end = _tokyo_piece(rng, counts)
        HOSTILE_COORDINATES[case](coords)
        timed = TIMINGS[timing]

        table = _trajectory_table(coords, counts, vertex_ms, timed, start, end)

        with np.errstate(all="ignore"):
            segs = _assert_matches_reference(table, coords, counts, vertex_ms, timed, start, end)
        assert len(segs) == int((counts - 1).sum())

    def test_long_segments_use_pyproj(self) -> None:
        counts = np.array([4])
        coords = np.array([[139.0, 35.0, 0.0], [140.0, 35.0, 10.0], [140.0, 35.0001, 10.0], [139.0, 36.5, 0.0]])
        vertex_ms = np.array([T0_MS, T0_MS + 600_000, T0_MS + 601_000, T0_MS + 1_800_000], dtype=float)

        segs = _assert_matches_reference(_trajectory_table(coords, counts, vertex_ms, np.array([True]), [T0_MS], [T0_MS]),
                                         coords, counts, vertex_ms, np.array([True]), [T0_MS], [T0_MS])

        _, _, first_m = GEOD.inv(139.0, 35.0, 140.0, 35.0)
        assert segs[c.LENGTH_M].iloc[0] == pytest.approx(first_m, rel=1e-12)
        assert segs[c.LENGTH_M].iloc[1] < LOCAL_LENGTH_MAX_M

    def test_decreasing_and_equal_times(self) -> None:
        counts = np.array([5, 3])
        coords = np.column_stack([139.7 + np.arange(8) * 1e-4, np.full(8, 35.6), np.arange(8.0)])
        coords[2, 0] = coords[1, 0] + 3e-6  # a 0.27 m segment: too short for a grade
        vertex_ms = np.array([T0_MS, T0_MS + 5_000, T0_MS + 1_000, T0_MS + 1_000, T0_MS + 3_000, T0_MS, T0_MS, T0_MS], dtype=float)
        timed = np.array([True, True])

        segs = _assert_matches_reference(_trajectory_table(coords, counts, vertex_ms, timed, [T0_MS, T0_MS], [T0_MS, T0_MS]),
                                         coords, counts, vertex_ms, timed, [T0_MS, T0_MS], [T0_MS, T0_MS])

        assert (segs[c.DURATION_S] < 0).sum() == 1
        # The negative segment and the two 0 s segments of trip 1, whose vertices share one time.
        # Trip 0's pair of equal times is spread up to the next time, so its segment has a speed.
        assert segs[c.SPEED_KMH].isna().sum() == 3
        assert segs.loc[segs[c.SEG_INDEX] == 0, c.ACCEL_M_S2].eq(0.0).all()
        assert 0.0 < segs[c.LENGTH_M].iloc[1] < 0.5
        assert np.isnan(segs[c.GRADE_PCT].iloc[1])

    def test_untimed_trips_without_start_or_end(self) -> None:
        counts = np.array([3, 4, 2, 3, 2])
        coords, vertex_ms, _, _ = _tokyo_piece(np.random.default_rng(4), counts)
        coords[9:12] = coords[9]  # trip 3 does not move, so every vertex keeps the start time
        start: Sequence[float | None] = [None, T0_MS, T0_MS + 9_000, T0_MS, T0_MS]
        end: Sequence[float | None] = [T0_MS + 5_000, None, T0_MS, T0_MS + 4_000, T0_MS + 4_000]  # trip 2 ends before it starts
        timed = np.array([False, False, False, False, False])

        segs = _assert_matches_reference(_trajectory_table(coords, counts, vertex_ms, timed, start, end), coords, counts, vertex_ms, timed, start, end)

        assert segs[c.T_START].isna().sum() == 5
        assert segs[c.ACCEL_M_S2].notna().all()
        assert list(segs.loc[segs[c.TRIP_ID] == "T003", c.DURATION_S]) == [0.0, 0.0]
        assert list(segs.loc[segs[c.TRIP_ID] == "T004", c.DURATION_S]) == [4.0]

    def test_null_timestamp_inside_a_list(self) -> None:
        counts = np.array([4, 3])
        coords, vertex_ms, start, end = _tokyo_piece(np.random.default_rng(5), counts)
        vertex_ms[1] = np.nan
        vertex_ms[6] = np.nan
        for timed in (np.array([True, True]), np.array([True, False])):
            _assert_matches_reference(_trajectory_table(coords, counts, vertex_ms, timed, start, end), coords, counts, vertex_ms, timed, start, end)

    def test_single_vertex_trips(self) -> None:
        counts = np.array([1, 4, 1, 1, 2, 1])
        coords, vertex_ms, start, end = _tokyo_piece(np.random.default_rng(6), counts)
        for timed in (np.ones(6, bool), np.zeros(6, bool), np.arange(6) % 2 == 0):
            _assert_matches_reference(_trajectory_table(coords, counts, vertex_ms, timed, start, end), coords, counts, vertex_ms, timed, start, end)

    @pytest.mark.parametrize("timed", [True, False], ids=["timed", "untimed"])
    def test_only_single_vertex_trips(self, timed: bool) -> None:
        counts = np.array([1, 1, 1])
        coords, vertex_ms, start, end = _tokyo_piece(np.random.default_rng(7), counts)
        flags_timed = np.full(3, timed)

        segs = _assert_matches_reference(_trajectory_table(coords, counts, vertex_ms, flags_timed, start, end),
                                         coords, counts, vertex_ms, flags_timed, start, end)

        assert segs.empty
        assert [str(dtype) for dtype in segs.dtypes] == [str(dtype) for dtype in segments.empty_segments().dtypes]

    @pytest.mark.parametrize("first_timed", [True, False], ids=["after-timed", "after-untimed"])
    def test_nan_length_stays_in_its_trip(self, first_timed: bool) -> None:
        coords = np.array([[np.nan, 35.6, np.nan], [139.7, 35.6, np.nan], [139.7, 35.6, np.nan], [139.701, 35.6, np.nan]])
        vertex_ms = np.array([T0_MS, T0_MS + 1_000, np.nan, np.nan])
        table = _trajectory_table(coords, np.array([2, 2]), vertex_ms, np.array([first_timed, False]),
                                  [T0_MS, T0_MS], [T0_MS + 1_000, T0_MS + 10_000], three_d=False)

        with np.errstate(invalid="ignore"):
            segs, _ = segments.build_segments_from_arrow(table)

        assert segs[c.DURATION_S].iloc[1] == 10.0

    def test_empty_table(self) -> None:
        table = _trajectory_table(np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool), [], [])
        segs, trips = segments.build_segments_from_arrow(table)
        assert segs.empty
        assert trips.empty

    def test_two_dimensional_wkb(self) -> None:
        counts = np.array([3, 5, 2])
        coords, vertex_ms, start, end = _tokyo_piece(np.random.default_rng(8), counts)
        coords[:, 2] = np.nan
        timed = np.array([True, False, True])

        segs = _assert_matches_reference(_trajectory_table(coords, counts, vertex_ms, timed, start, end, three_d=False),
                                         coords, counts, vertex_ms, timed, start, end)

        assert segs[c.GRADE_PCT].isna().all()

    def test_sliced_and_chunked_tables(self) -> None:
        counts = np.array([3, 5, 2, 4])
        coords, vertex_ms, start, end = _tokyo_piece(np.random.default_rng(9), counts)
        timed = np.array([False, True, True, True])
        table = _trajectory_table(coords, counts, vertex_ms, timed, start, end)
        rest = slice(3, None)  # vertices of trips 1..3

        _assert_matches_reference(table.slice(1), coords[rest], counts[1:], vertex_ms[rest], timed[1:], start[1:], end[1:])
        _assert_matches_reference(pa.concat_tables([table.slice(0, 2), table.slice(2)]), coords, counts, vertex_ms, timed, start, end)

    def test_random_pieces(self) -> None:
        rng = np.random.default_rng(10)
        counts = rng.integers(1, 25, 120)
        n = int(counts.sum())
        coords = np.column_stack([
            np.repeat(rng.uniform(-180, 180, 120), counts) + np.cumsum(rng.normal(0, 2e-3, n)),
            np.repeat(rng.uniform(-80, 80, 120), counts) + np.cumsum(rng.normal(0, 2e-3, n)),
            np.where(rng.random(n) < 0.2, np.nan, rng.uniform(0, 100, n)),
        ])
        coords[rng.integers(0, n, 40), 0] += 0.05  # jumps of about 4 km, measured by pyproj
        coords[:, 0] = (coords[:, 0] + 180.0) % 360.0 - 180.0
        vertex_ms = (T0_MS + np.cumsum(rng.choice([-1_000, 0, 1_000, 3_000], n))).astype(float)
        offsets = np.r_[0, np.cumsum(counts)]
        start = [float(vertex_ms[lo]) for lo in offsets[:-1]]
        end = [float(vertex_ms[hi - 1]) for hi in offsets[1:]]
        timed = rng.random(120) < 0.5

        segs = _assert_matches_reference(_trajectory_table(coords, counts, vertex_ms, timed, start, end), coords, counts, vertex_ms, timed, start, end)

        assert segs[c.LENGTH_M].max() > LOCAL_LENGTH_MAX_M

    def test_trip_result_independent_of_piece(self) -> None:
        counts = np.array([4, 6, 3, 5])
        coords, vertex_ms, start, end = _tokyo_piece(np.random.default_rng(11), counts)
        offsets = np.r_[0, np.cumsum(counts)]
        timed = np.array([True, False, True, True])
        whole, _ = segments.build_segments_from_arrow(_trajectory_table(coords, counts, vertex_ms, timed, start, end))

        for trip in range(len(counts)):
            lo, hi = offsets[trip], offsets[trip + 1]
            alone, _ = segments.build_segments_from_arrow(_trajectory_table(
                coords[lo:hi], counts[trip: trip + 1], vertex_ms[lo:hi], timed[trip: trip + 1], start[trip: trip + 1], end[trip: trip + 1],
                trip_ids=[f"T{trip:03d}"]))
            in_piece = whole[whole[c.TRIP_ID] == f"T{trip:03d}"].reset_index(drop=True)
            pd.testing.assert_frame_equal(in_piece.drop(columns=[c.TRIP_ID, c.VEHICLE_ID]), alone.drop(columns=[c.TRIP_ID, c.VEHICLE_ID]),
                                          check_exact=True)

    def test_frame_path_categorical_duplicate_ids(self) -> None:
        counts = np.array([3, 4, 2])
        coords, vertex_ms, start, end = _tokyo_piece(np.random.default_rng(12), counts)
        timed = np.array([True, False, True])
        table = _trajectory_table(coords, counts, vertex_ms, timed, start, end, trip_ids=["A", "B", "A"])
        frame = table.to_pandas(ignore_metadata=True)
        frame[c.GEOMETRY] = shapely.from_wkb(frame[c.GEOMETRY].to_numpy())
        frame[c.TRIP_ID] = pd.Categorical(frame[c.TRIP_ID], categories=["B", "A", "unused"])

        segs = _assert_matches_reference(table, coords, counts, vertex_ms, timed, start, end)
        from_frame, _ = segments.build_segments(frame)

        pd.testing.assert_frame_equal(from_frame.drop(columns=[c.TRIP_ID]), segs.drop(columns=[c.TRIP_ID]), check_exact=True)
        assert list(from_frame[c.TRIP_ID].astype(object)) == ["A", "A", "B", "B", "B", "A"]


# -- spatial -----------------------------------------------------------------------------------


def _reference_nearest(lon: np.ndarray, lat: np.ndarray, geo: gpd.GeoDataFrame, max_distance_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brute force over every straight edge: nearest link id, its distance, and whether the case is clear.

    The plane is tangent at each point, scaled by the WGS 84 radii at the point's own latitude. A
    case is not clear when a second link or the radius lies within 1e-6 m of the best distance.
    """
    links = geo[geo.geom_type.isin(["LineString", "MultiLineString"])]
    ax, ay, bx, by, owner = [], [], [], [], []
    for feature, geom in zip(links[c.FEATURE_ID], links.geometry):
        for part in shapely.get_parts(geom):
            xy = shapely.get_coordinates(part)
            ax += list(xy[:-1, 0])
            ay += list(xy[:-1, 1])
            bx += list(xy[1:, 0])
            by += list(xy[1:, 1])
            owner += [feature] * (len(xy) - 1)
    ax_, ay_, bx_, by_ = (np.array(v)[None, :] for v in (ax, ay, bx, by))
    owner_ = np.array(owner, dtype=object)

    with np.errstate(invalid="ignore", over="ignore"):
        phi = np.radians(lat)[:, None]
        w = np.sqrt(1.0 - WGS84_E2 * np.sin(phi) ** 2)
        kx = WGS84_A_M / w * np.cos(phi) * np.pi / 180.0
        ky = WGS84_A_M * (1.0 - WGS84_E2) / w**3 * np.pi / 180.0

        def wrap(delta: np.ndarray) -> np.ndarray:
            return np.where((delta >= -180.0) & (delta < 180.0), delta, (delta + 180.0) % 360.0 - 180.0)

        x1 = wrap(ax_ - lon[:, None]) * kx
        y1 = (ay_ - lat[:, None]) * ky
        dx = wrap(bx_ - lon[:, None]) * kx - x1
        dy = (by_ - lat[:, None]) * ky - y1
        squared = dx * dx + dy * dy
        t = np.where(squared > 0, np.clip(-(x1 * dx + y1 * dy) / np.where(squared > 0, squared, 1.0), 0.0, 1.0), 0.0)
        distance = np.hypot(x1 + t * dx, y1 + t * dy)
    distance = np.where(np.isfinite(distance), distance, np.inf)

    # Edges are grouped by link, so a reduceat gives each link's distance. Taking argmin over links
    # ordered by id breaks ties to the smallest id.
    starts = np.flatnonzero(np.r_[True, owner_[1:] != owner_[:-1]])
    by_id = np.argsort(owner_[starts])
    link_ids = owner_[starts][by_id]
    per_link = np.minimum.reduceat(distance, starts, axis=1)[:, by_id]
    nearest = per_link.min(axis=1)
    second = np.partition(per_link, 1, axis=1)[:, 1]
    within = nearest <= max_distance_m
    pick = np.full(len(lon), None, dtype=object)
    pick[within] = link_ids[np.argmin(per_link, axis=1)][within]
    best = np.where(within, nearest, np.nan)
    with np.errstate(invalid="ignore"):
        clear = ~np.isfinite(nearest) | ((np.abs(nearest - max_distance_m) > 1e-6) & (second - nearest > 1e-6))
    return pick, best, clear


def _layer_at_sites(rng: np.random.Generator, sites: list[tuple[float, float]]) -> gpd.GeoDataFrame:
    """Build random short links and four boxes around each site, with ids that are not in row order."""
    geoms: list[shapely.Geometry] = []
    ids: list[str] = []
    roads: list[str | None] = []
    area_types: list[str | None] = []
    for s, (lon0, lat0) in enumerate(sites):
        for i in range(40):
            start = np.array([lon0, lat0]) + rng.uniform(-0.004, 0.004, 2)
            geoms.append(shapely.LineString(start + np.cumsum(rng.normal(0, 3e-4, (int(rng.integers(2, 5)), 2)), axis=0)))
            ids.append(f"L{s}-{39 - i:02d}")
            roads.append(["motorway", "primary", None][i % 3])
            area_types.append(None)
        for k in range(4):
            geoms.append(shapely.box(lon0 - 0.006 + 0.003 * k, lat0 - 0.006, lon0 - 0.003 + 0.003 * k, lat0 + 0.006))
            ids.append(f"A{s}-{k}")
            roads.append(None)
            area_types.append(["urban", None, "rural", "suburban"][k])
    return gpd.GeoDataFrame({c.FEATURE_ID: ids, c.ROAD_CLASS: roads, c.AREA_TYPE: area_types}, geometry=geoms, crs="EPSG:4326")


SITES = [(139.70, 35.60), (18.95, 69.65), (-70.65, -33.45), (0.0, 0.0)]


class TestNearestLinksScale:
    """``_nearest_edges`` scales each point by its own latitude, computed inside the loop."""

    def test_interleaved_latitudes_match_brute_force(self) -> None:
        rng = np.random.default_rng(20)
        geo = _layer_at_sites(rng, SITES)
        layers = spatial.prepare_layers(geo)
        site = rng.integers(0, len(SITES), 2_000)  # consecutive points jump between latitudes
        lon = np.array([SITES[s][0] for s in site]) + rng.uniform(-0.005, 0.005, len(site))
        lat = np.array([SITES[s][1] for s in site]) + rng.uniform(-0.005, 0.005, len(site))
        lon[:6] = [np.nan, np.inf, 139.70, -np.inf, 139.70, 1e300]
        lat[:6] = [35.6, 35.6, np.nan, 35.6, np.inf, 35.6]

        for max_distance_m in (5.0, 25.0, 120.0):
            pick, distance = spatial.nearest_links(lon, lat, layers, max_distance_m)
            expected, expected_m, clear = _reference_nearest(lon, lat, geo, max_distance_m)
            got = np.where(pick >= 0, layers.links[c.FEATURE_ID].to_numpy(dtype=object)[np.maximum(pick, 0)], None)
            assert clear.sum() > 0.99 * len(lon)
            assert list(got[clear]) == list(expected[clear]), max_distance_m
            np.testing.assert_allclose(distance[clear], expected_m[clear], rtol=1e-9, atol=1e-9, equal_nan=True)
            assert (pick[:6] == -1).all()
            assert np.isnan(distance[:6]).all()

    def test_unmatched_point_between_matches(self) -> None:
        rng = np.random.default_rng(21)
        geo = _layer_at_sites(rng, SITES[:2])
        layers = spatial.prepare_layers(geo)
        near = shapely.get_coordinates(geo.geometry.iloc[0])[0]
        lon = np.array([near[0], 100.0, near[0], 18.95, near[0]])
        lat = np.array([near[1], 0.0, near[1], 69.65, near[1]])

        pick, distance = spatial.nearest_links(lon, lat, layers, 25.0)
        expected, expected_m, _ = _reference_nearest(lon, lat, geo, 25.0)

        got = np.where(pick >= 0, layers.links[c.FEATURE_ID].to_numpy(dtype=object)[np.maximum(pick, 0)], None)
        assert list(got) == list(expected)
        np.testing.assert_allclose(distance, expected_m, rtol=1e-9, equal_nan=True)


class TestTextCodesCache:
    """``GeoLayers.text_codes`` keeps one factorisation per (layer, column) across pieces."""

    def test_pieces_share_layers(self) -> None:
        rng = np.random.default_rng(22)
        geo = _layer_at_sites(rng, SITES[:2])
        layers = spatial.prepare_layers(geo)
        boxes = geo[geo[c.FEATURE_ID].str.startswith("A")]
        centres = shapely.get_coordinates(shapely.centroid(boxes.geometry.to_numpy()))
        link_vertices = shapely.get_coordinates(geo.geometry.iloc[[0, 5, 41, 50, 60]])

        # Piece 1 touches links and no area. Piece 2 touches every box and more links.
        piece_1 = pd.DataFrame({c.LON_MID: link_vertices[:2, 0] + 0.05, c.LAT_MID: link_vertices[:2, 1]})
        piece_2 = pd.DataFrame({c.LON_MID: np.r_[centres[:, 0], link_vertices[:, 0]], c.LAT_MID: np.r_[centres[:, 1], link_vertices[:, 1]]})
        spatial.join_segments(piece_1, layers, 25.0)
        out = spatial.join_segments(piece_2, layers, 25.0)
        fresh = spatial.join_segments(piece_2, spatial.prepare_layers(geo), 25.0)

        n_boxes = len(boxes)
        assert list(out[c.AREA_ID].iloc[:n_boxes].astype(object)) == list(boxes[c.FEATURE_ID])
        expected_types = [None if pd.isna(t) else t for t in boxes[c.AREA_TYPE]]
        assert [None if pd.isna(t) else t for t in out[c.AREA_TYPE].iloc[:n_boxes].astype(object)] == expected_types
        expected_links, _, _ = _reference_nearest(piece_2[c.LON_MID].to_numpy(), piece_2[c.LAT_MID].to_numpy(), geo, 25.0)
        assert [None if pd.isna(v) else v for v in out[c.LINK_ID].astype(object)] == list(expected_links)
        road_of = {feature: None if pd.isna(road) else road for feature, road in zip(geo[c.FEATURE_ID], geo[c.ROAD_CLASS])}
        expected_roads = [None if link is None else road_of[link] for link in expected_links]
        assert [None if pd.isna(v) else v for v in out[c.ROAD_CLASS].astype(object)] == expected_roads
        pd.testing.assert_frame_equal(out, fresh)


# -- metrics -----------------------------------------------------------------------------------


def _reference_breakdown(segs: pd.DataFrame, dimensions: tuple[str, ...]) -> pd.DataFrame:
    """Sum per (trip, category) with dictionaries, sorted by str(trip) then str(category) with the missing trip last."""
    rows = []
    for name in dimensions:
        category = metrics.BREAKDOWN_DIMENSIONS[name](segs)
        sums: dict[tuple[object, str], list[float]] = {}
        for trip, value, length, co2 in zip(segs[c.TRIP_ID].astype(object), category.astype(object), segs[c.LENGTH_M], segs[c.CO2_TTW_KG]):
            key = (None if pd.isna(trip) else trip, metrics.UNMATCHED if pd.isna(value) else value)
            total = sums.setdefault(key, [0.0, 0.0])
            total[0] += 0.0 if np.isnan(length) else length / 1000.0
            total[1] += 0.0 if np.isnan(co2) else co2
        for trip, value in sorted(sums, key=lambda k: (k[0] is None, str(k[0]), str(k[1]))):
            rows.append({c.TRIP_ID: trip, c.DIMENSION: name, c.CATEGORY: value,
                         c.DISTANCE_KM: sums[(trip, value)][0], c.CO2_TTW_KG: sums[(trip, value)][1]})
    frame = pd.DataFrame(rows, columns=list(metrics.BREAKDOWN_DTYPES))
    return frame.astype(metrics.BREAKDOWN_DTYPES)


def _breakdown_segments(rng: np.random.Generator, n: int, categorical: bool) -> pd.DataFrame:
    trip = rng.choice(np.array(["t1", "t10", "t2", "t9", None], dtype=object), n)
    road = rng.choice(np.array(["primary", "unmatched", None, "Primary", "motorway"], dtype=object), n)
    area = rng.choice(np.array(["urban", None, "rural"], dtype=object), n)
    # No NaT: hour_utc formats the hours as integers, which fails once a NaT turns them into floats.
    start = pd.to_datetime(T0_MS + rng.integers(0, 86_400, n) * 1_000, unit="ms", utc=True).astype("datetime64[ms, UTC]")
    length = np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0, 100, n))
    length[(trip == "t2") & (road == "motorway")] = np.nan  # an observed group without distance
    return pd.DataFrame({
        c.TRIP_ID: pd.Categorical(trip, categories=["t9", "t1", "t10", "t2", "unused"]) if categorical else pd.Series(trip, dtype=object),
        c.ROAD_CLASS: pd.Categorical(road, categories=["motorway", "primary", "Primary", "unmatched", "never"]) if categorical else road,
        c.AREA_TYPE: area,
        c.T_START: start,
        c.LENGTH_M: length,
        c.CO2_TTW_KG: np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0, 0.05, n)),
    })


class TestBreakdown:
    """Dense and sorted key counting give the dictionary reference."""

    @pytest.mark.parametrize("dense_keys_min", [-(1 << 40), 1 << 40], ids=["sorted-keys", "dense-keys"])
    @pytest.mark.parametrize("categorical", [True, False], ids=["categorical", "object"])
    @pytest.mark.parametrize("n", [0, 1, 9, 3_000])
    def test_matches_reference(self, n: int, categorical: bool, dense_keys_min: int, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(metrics, "_DENSE_KEYS_MIN", dense_keys_min)
        segs = _breakdown_segments(np.random.default_rng(n), n, categorical)
        dimensions = (c.ROAD_CLASS, c.AREA_TYPE, "hour_utc")

        actual = metrics.breakdown(segs, dimensions)

        expected = _reference_breakdown(segs, dimensions)
        pd.testing.assert_frame_equal(actual, expected, check_exact=False, rtol=1e-12, atol=0)

    def test_both_sides_of_the_dense_threshold(self, monkeypatch: pytest.MonkeyPatch) -> None:
        n = 40
        segs = _breakdown_segments(np.random.default_rng(31), n, categorical=True)
        # 6 trip codes (5 categories and the missing slot) times 6 road-class codes.
        n_keys = 6 * 6
        expected = _reference_breakdown(segs, (c.ROAD_CLASS,))
        for dense_keys_min in (n_keys - 4 * n, n_keys - 4 * n - 1):
            monkeypatch.setattr(metrics, "_DENSE_KEYS_MIN", dense_keys_min)
            pd.testing.assert_frame_equal(metrics.breakdown(segs, (c.ROAD_CLASS,)), expected, check_exact=False, rtol=1e-12)

    def test_many_unused_categories(self) -> None:
        rng = np.random.default_rng(32)
        n = 500
        trip = np.array([f"t{i:05d}" for i in rng.integers(0, 40, n)], dtype=object)
        segs = pd.DataFrame({
            c.TRIP_ID: pd.Categorical(trip, categories=[f"t{i:05d}" for i in range(30_000)]),
            c.ROAD_CLASS: pd.Categorical(rng.choice(np.array(["a", "b"], dtype=object), n), categories=[f"r{i}" for i in range(20)] + ["a", "b"]),
            c.AREA_TYPE: None,
            c.LENGTH_M: rng.uniform(0, 100, n),
            c.CO2_TTW_KG: rng.uniform(0, 0.05, n),
        })
        pd.testing.assert_frame_equal(metrics.breakdown(segs), _reference_breakdown(segs, metrics.DEFAULT_DIMENSIONS), check_exact=False, rtol=1e-12)


def _reference_matched_share(trips: pd.DataFrame, segs: pd.DataFrame) -> np.ndarray:
    """Compute the share per trip row with dictionaries. NaN lengths count 0 and a total of 0 or less gives NaN."""
    total: dict[object, float] = {}
    on_link: dict[object, float] = {}
    for trip, length, matched in zip(segs[c.TRIP_ID].astype(object), segs[c.LENGTH_M], segs[c.MATCHED]):
        if pd.isna(trip):
            continue
        value = 0.0 if np.isnan(length) else float(length)
        total[trip] = total.get(trip, 0.0) + value
        on_link[trip] = on_link.get(trip, 0.0) + (value if matched else 0.0)
    return np.array([on_link[t] / total[t] if not pd.isna(t) and total.get(t, 0.0) > 0 else np.nan for t in trips[c.TRIP_ID].astype(object)])


class TestMatchedShare:
    """``add_matched_share`` against a dictionary reference, with the trips frame otherwise unchanged."""

    @pytest.mark.parametrize("categorical", [True, False], ids=["categorical", "object"])
    @pytest.mark.parametrize("n", [0, 1, 7, 2_000])
    def test_matches_reference(self, n: int, categorical: bool) -> None:
        rng = np.random.default_rng(40 + n)
        trip = rng.choice(np.array(["a", "b", "c", None], dtype=object), n)
        length = np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0, 100, n))
        length[trip == "c"] = np.where(rng.random(int((trip == "c").sum())) < 0.5, 0.0, np.nan)  # c has no length
        segs = pd.DataFrame({
            c.TRIP_ID: pd.Categorical(trip, categories=["d", "c", "b", "a"]) if categorical else pd.Series(trip, dtype=object),
            c.LENGTH_M: length,
            c.MATCHED: rng.random(n) < 0.6,
        })
        trips = pd.DataFrame({c.TRIP_ID: np.array(["c", "a", "d", "e", "a", None, "b"], dtype=object), "value": np.arange(7.0)},
                             index=[70, 3, 12, 9, 40, 15, 5])

        actual = metrics.add_matched_share(trips, segs)

        expected = _reference_matched_share(trips, segs)
        np.testing.assert_allclose(actual[c.MATCHED_SHARE].to_numpy(), expected, rtol=1e-12, equal_nan=True)
        if n > 100:
            assert np.isfinite(expected).sum() == 3  # a, b and a again; c has no length
        pd.testing.assert_frame_equal(actual.drop(columns=[c.MATCHED_SHARE]), trips)

    def test_all_unmatched_and_all_missing_ids(self) -> None:
        segs = pd.DataFrame({c.TRIP_ID: pd.Series([None, None, "x"], dtype=object), c.LENGTH_M: [5.0, 6.0, 7.0], c.MATCHED: [True, True, False]})
        trips = pd.DataFrame({c.TRIP_ID: ["x", "y"]})
        actual = metrics.add_matched_share(trips, segs)
        assert actual[c.MATCHED_SHARE].iloc[0] == 0.0
        assert np.isnan(actual[c.MATCHED_SHARE].iloc[1])


# -- flags -------------------------------------------------------------------------------------


def _reference_flags(masks: dict[str, Any], n_rows: int, documented: list[str]) -> list[str]:
    """Join per row with a Python loop over the documented codes."""
    rows = []
    for row in range(n_rows):
        codes = [code for code in documented if code in masks and bool(np.broadcast_to(np.asarray(masks[code], dtype=bool), (n_rows,))[row])]
        rows.append(";".join(codes))
    return rows


class TestJoinFlags:
    """``join_flags`` packs the codes of a row into bits and must give the row-by-row join."""

    def test_every_code_every_combination(self) -> None:
        rng = np.random.default_rng(50)
        codes = list(flags.QUALITY_FLAGS)
        n = 2_000
        masks: dict[str, Any] = {code: rng.random(n) < 0.5 for code in codes}
        masks[codes[-1]] = pd.Series(rng.random(n) < 0.5, index=rng.permutation(n))  # positional, whatever the index
        masks[codes[-2]] = list(rng.random(n) < 0.5)
        masks[codes[0]] = np.ones(n, bool)

        got = flags.join_flags(masks, n)

        assert list(got) == _reference_flags(masks, n, codes)
        assert got.dtype == object
        assert len(set(got)) > 100

    def test_all_and_no_flags(self) -> None:
        codes = list(flags.QUALITY_FLAGS)
        got = flags.join_flags({code: np.array([True, False]) for code in codes}, 2)
        assert list(got) == [";".join(codes), ""]

    def test_at_the_sixty_two_code_limit(self, monkeypatch: pytest.MonkeyPatch) -> None:
        documented = {f"code_{i:02d}": "test code" for i in range(62)}
        monkeypatch.setattr(flags, "QUALITY_FLAGS", documented)
        rng = np.random.default_rng(51)
        n = 300
        masks: dict[str, Any] = {code: rng.random(n) < 0.5 for code in documented}
        masks["code_61"] = np.arange(n) % 2 == 0  # the highest bit, set on every other row

        got = flags.join_flags(masks, n)

        assert list(got) == _reference_flags(masks, n, list(documented))

    def test_zero_rows(self) -> None:
        got = flags.join_flags({code: np.zeros(0, bool) for code in flags.QUALITY_FLAGS}, 0)
        assert len(got) == 0
        assert got.dtype == object

    def test_wrong_mask_length_raises(self) -> None:
        with pytest.raises(ValueError):
            flags.join_flags({next(iter(flags.QUALITY_FLAGS)): np.ones(3, bool)}, 4)


# -- pipeline: aligned tachograph order and Parquet encodings ----------------------------------


def _trip_index(start_ms: np.ndarray, end_ms: np.ndarray, piece: np.ndarray, vehicle_codes: np.ndarray | None = None) -> pipeline.TripIndex:
    n = len(start_ms)
    return pipeline.TripIndex(
        trip_ids=np.array([f"t{i}" for i in range(n)], dtype=object), vehicle_ids=pd.Index(["v"]),
        vehicle_codes=np.zeros(n, np.int64) if vehicle_codes is None else vehicle_codes,
        start_ms=start_ms.astype(float), end_ms=end_ms.astype(float), piece=piece.astype(np.int64), row=np.zeros(n, np.int64),
    )


def _reference_order(rows: np.ndarray, trip: np.ndarray, ts_ms: np.ndarray, index: pipeline.TripIndex) -> list[int]:
    """Sort with Python's stable sort on (piece, trip, time)."""
    return sorted(rows.tolist(), key=lambda r: (index.piece[trip[r]], trip[r], ts_ms[r]))


class TestInPieceTripTimeOrder:
    """``_in_piece_trip_time_order`` gives a stable (piece, trip, time) order in every shape of input."""

    @pytest.mark.parametrize("pieces", ["sorted", "shuffled"])
    @pytest.mark.parametrize("rows_order", ["random", "sorted", "reversed"])
    def test_matches_stable_sort(self, pieces: str, rows_order: str) -> None:
        rng = np.random.default_rng(60)
        n_trips, n_rows = 50, 4_000
        start = np.round(rng.uniform(0, 8.64e7, n_trips))
        start[:5] = 0.0
        piece = np.sort(rng.integers(0, 6, n_trips)) if pieces == "sorted" else rng.integers(0, 6, n_trips)
        index = _trip_index(start, start + 3.6e6, piece)
        trip = rng.integers(-1, n_trips, n_rows)
        offset = rng.integers(0, 20, n_rows) * 1_000.0  # many equal times within a trip
        ts = np.where(trip >= 0, start[np.maximum(trip, 0)] + offset, np.nan)
        rows = np.flatnonzero(trip >= 0)
        expected = _reference_order(rows, trip, ts, index)
        if rows_order == "sorted":
            rows = np.array(expected)
        elif rows_order == "reversed":
            rows = np.array(expected[::-1])

        got = pipeline._in_piece_trip_time_order(rows, trip, ts, index)

        assert got.tolist() == _reference_order(rows, trip, ts, index)

    def test_rows_at_start_end_and_beyond_the_key(self) -> None:
        start = np.array([0.0, 10.0, 2.0**33, 100.0])
        end = start + np.array([2.0**32 + 5.0, 0.0, 10.0, 2.0**40])
        index = _trip_index(start, end, np.array([0, 0, 1, 1]))
        ts = np.array([2.0**32 + 5.0, 10.0, 0.0, 2.0**33 + 10.0, 2.0**33, 100.0, 2.0**40 + 100.0, 5.0])
        trip = np.array([0, 1, 0, 2, 2, 3, 3, 0])
        rows = np.arange(len(ts))[::-1].copy()

        got = pipeline._in_piece_trip_time_order(rows, trip, ts, index)

        assert got.tolist() == _reference_order(rows, trip, ts, index)

    def test_one_swap_in_sorted_rows(self) -> None:
        index = _trip_index(np.array([0.0, 100.0]), np.array([1e6, 1e6]), np.array([0, 1]))
        trip = np.array([0, 0, 0, 1, 1])
        ts = np.array([5.0, 7.0, 6.0, 200.0, 300.0])  # rows 1 and 2 are 1 ms out of order

        got = pipeline._in_piece_trip_time_order(np.arange(5), trip, ts, index)

        assert got.tolist() == [0, 2, 1, 3, 4]

    def test_empty_and_single_row(self) -> None:
        index = _trip_index(np.array([0.0]), np.array([10.0]), np.array([0]))
        assert len(pipeline._in_piece_trip_time_order(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), index)) == 0
        assert pipeline._in_piece_trip_time_order(np.array([0]), np.array([0]), np.array([3.0]), index).tolist() == [0]


def _reference_trip(vehicle: list[str | None], ts_ms: np.ndarray, trips: pd.DataFrame) -> np.ndarray:
    """As-of rule with a loop: the last trip of the vehicle started at or before, if not ended (-1 else)."""
    out = np.full(len(ts_ms), -1, dtype=np.int64)
    for r, (v, ts) in enumerate(zip(vehicle, ts_ms)):
        if v is None or np.isnan(ts):
            continue
        best = -1
        for t, (tv, start) in enumerate(zip(trips[c.VEHICLE_ID], trips[c.START_TIME])):
            if tv == v and start <= ts and (best < 0 or start >= trips[c.START_TIME].iloc[best]):
                best = t
        if best >= 0 and ts <= trips[c.END_TIME].iloc[best]:
            out[r] = best
    return out


class TestAlignTachoPiece:
    """``align_tacho_piece`` on a local store: row groups per piece, rows in trip and time order."""

    @pytest.mark.parametrize("file_order", ["shuffled", "by-vehicle-and-time"])
    def test_aligned_file_matches_reference(self, tmp_path: Path, file_order: str) -> None:
        rng = np.random.default_rng(70)
        n_trips = 30
        vehicles = [f"V{i % 7}" for i in range(n_trips)]
        start = T0_MS + np.array([(i // 7) * 4_000_000 + int(rng.integers(0, 1_000)) * 1_000 for i in range(n_trips)], dtype=float)
        trips = pd.DataFrame({
            c.TRIP_ID: [f"trip-{i:02d}" for i in range(n_trips)], c.VEHICLE_ID: vehicles,
            c.START_TIME: start, c.END_TIME: start + 1_800_000.0, "piece": np.repeat(np.arange(4), [8, 7, 8, 7]).astype(np.int32),
        })
        index = pipeline.build_trip_index([part for _, part in trips.groupby("piece")])

        n_rows = 3_000
        vehicle = rng.choice(np.array([f"V{i}" for i in range(9)] + [None], dtype=object), n_rows)
        ts = T0_MS + rng.integers(-100, 16_000, n_rows) * 1_000.0
        ts[rng.random(n_rows) < 0.03] = np.nan
        ts[:50] = T0_MS + 4_000_000.0  # equal times
        if file_order == "by-vehicle-and-time":
            order = np.lexsort((ts, vehicle.astype(str)))
            vehicle, ts = vehicle[order], ts[order]
        tacho = pa.table({
            c.VEHICLE_ID: pa.array(list(vehicle), pa.string()),
            c.TS: pa.array([None if np.isnan(v) else int(v) for v in ts], pa.int64()).cast(UTC_MS),
            c.SPEED_KMH: pa.array(np.arange(n_rows, dtype=float)),  # the file row, to check the order
            c.FUEL_ML: pa.array(np.where(rng.random(n_rows) < 0.1, np.nan, rng.uniform(0, 5, n_rows))),
        })
        ref = pipeline.StoreRef(str(tmp_path))
        store = ref.open()
        store.write_bytes("validated/tachometer/part-0.parquet", pipeline.parquet_bytes(tacho))

        result = pipeline.align_tacho_piece(ref, "validated/tachometer/part-0.parquet", index)

        expected_trip = _reference_trip(list(vehicle), ts, trips)
        assigned = np.flatnonzero(expected_trip >= 0)
        assert result.aligned == len(assigned)
        assert result.outside_trips == n_rows - len(assigned)
        piece_of_trip = trips["piece"].to_numpy()
        row_in_piece = trips.groupby("piece").cumcount().to_numpy()
        parquet = pq.ParquetFile(io.BytesIO(Path(store.path(result.path)).read_bytes()))
        assert sorted(result.row_groups_by_piece) == sorted(set(piece_of_trip[expected_trip[assigned]]))
        for piece, groups in result.row_groups_by_piece.items():
            rows = [r for r in assigned if piece_of_trip[expected_trip[r]] == piece]
            rows.sort(key=lambda r: (expected_trip[r], ts[r]))
            got = parquet.read_row_groups(groups)
            assert got.column(c.SPEED_KMH).to_pylist() == [float(r) for r in rows], piece
            assert got.column("trip_row").to_pylist() == [int(row_in_piece[expected_trip[r]]) for r in rows]
            np.testing.assert_array_equal(got.column(c.FUEL_ML).to_numpy(zero_copy_only=False), tacho.column(c.FUEL_ML).to_numpy()[rows])

            piece_trips = trips[trips["piece"] == piece]
            frame = pipeline._read_aligned_tacho(store, [pipeline.TachoRowGroups(result.path, tuple(groups))], piece_trips)
            assert list(frame[c.TRIP_ID].astype(object)) == [trips[c.TRIP_ID].iloc[expected_trip[r]] for r in rows]
            assert _epoch_ms(frame[c.TS]).tolist() == [ts[r] for r in rows]


def _float_values() -> np.ndarray:
    payload = np.array([0x7FF8_0000_0000_0123], np.uint64).view(np.float64)
    return np.r_[0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, np.finfo(np.float64).max, 1.0, -2.5, payload]


class TestParquetEncodings:
    """lz4, no statistics and BYTE_STREAM_SPLIT keep every bit of every value."""

    @pytest.mark.parametrize("float_type", [np.float64, np.float32, np.float16])
    def test_floats_round_trip_bitwise(self, float_type: type) -> None:
        with np.errstate(over="ignore"):
            values: np.ndarray = _float_values().astype(float_type)
        table = pa.table({
            "x": pa.array(values), "with_null": pa.array(list(values[:-1]) + [None], pa.from_numpy_dtype(float_type)),
            "text": pa.array([str(i) for i in range(len(values))]), "nested": pa.array([[1.5, np.nan]] * len(values)),
        })

        back = pq.read_table(io.BytesIO(pipeline.parquet_bytes(table, **pipeline.SEGMENT_WRITE_OPTIONS)))

        bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[np.dtype(float_type).itemsize]
        np.testing.assert_array_equal(back.column("x").to_numpy().view(bits), values.view(bits))
        assert back.column("with_null").null_count == 1
        assert back.column("text").to_pylist() == table.column("text").to_pylist()
        assert back.schema == table.schema

    def test_times_round_trip_through_delta_encoding(self) -> None:
        """Timestamps are delta-encoded and uncompressed; jumps, disorder, nulls and extremes survive."""
        ticks = [T0_MS, T0_MS + 1_000, T0_MS - 86_400_000, None, 0, -1, 2**62, -(2**62), T0_MS, T0_MS]
        table = pa.table({
            "t": pa.array(ticks, pa.timestamp("ms", tz="UTC")), "naive": pa.array(ticks, pa.timestamp("us")),
            "x": pa.array(np.arange(len(ticks), dtype=np.float64)),
        })

        data = pipeline.parquet_bytes(table, **pipeline.SEGMENT_WRITE_OPTIONS)

        back = pq.read_table(io.BytesIO(data))
        assert back.equals(table)
        column = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(0)
        assert "DELTA_BINARY_PACKED" in column.encodings
        assert column.compression == "UNCOMPRESSED"

    def test_duckdb_reads_the_segment_intermediate(self, tmp_path: Path) -> None:
        """DuckDB 1.4 reads BYTE_STREAM_SPLIT only for floats; the intermediate stays readable."""
        duckdb = pytest.importorskip("duckdb")
        n = 1_000
        table = pa.table({
            c.TRIP_ID: pa.array([f"T{i // 100}" for i in range(n)]).dictionary_encode(),
            c.SEG_INDEX: pa.array(np.arange(n, dtype=np.int32) % 100),
            c.T_START: pa.array(T0_MS + np.arange(n, dtype=np.int64) * 1_000, pa.timestamp("ms", tz="UTC")),
            c.LENGTH_M: pa.array(np.linspace(0.0, 25.0, n)),
            c.MATCHED: pa.array(np.arange(n) % 3 == 0),
        })
        path = tmp_path / "part-00000.parquet"
        path.write_bytes(pipeline.parquet_bytes(table, **pipeline.SEGMENT_WRITE_OPTIONS))

        row = duckdb.connect().execute(
            f"SELECT count(*), sum({c.SEG_INDEX}), sum(epoch_ms({c.T_START})), sum({c.LENGTH_M}), "
            f"count(DISTINCT {c.TRIP_ID}), sum({c.MATCHED}::INT) FROM read_parquet('{path}')"
        ).fetchone()

        seconds = T0_MS + np.arange(n, dtype=np.int64) * 1_000
        assert row[:3] == (n, int((np.arange(n) % 100).sum()), int(seconds.sum()))
        assert row[3] == pytest.approx(float(np.linspace(0.0, 25.0, n).sum()), rel=1e-12)
        assert row[4:] == (10, int((np.arange(n) % 3 == 0).sum()))

    def test_segment_intermediate_equals_from_pandas(self) -> None:
        n = 6
        seg_out = pd.DataFrame({
            c.TRIP_ID: pd.Categorical(["a", None, "b", "a", "b", "a"], categories=["b", "a", "unused"]),
            c.SEG_INDEX: np.arange(n, dtype=np.int32),
            c.T_START: pd.Series(pd.to_datetime(T0_MS + np.arange(n) * 1_000, unit="ms", utc=True)).astype("datetime64[ms, UTC]").where(np.arange(n) != 2),
            c.LENGTH_M: _float_values()[:n],
            c.LON_MID: np.full(n, 139.7), c.LAT_MID: np.full(n, np.nan),
            c.AREA_ID: pd.Categorical([None] * n, categories=pd.Index([], dtype=object)),
            c.LINK_ID: pd.Categorical(["l1", None, "l2", "l1", None, "l2"]),
            c.MATCHED: np.array([True, False, True, True, False, True]),
            c.CO2_TTW_KG: np.linspace(0, 1, n),
            "not_in_intermediate": np.zeros(n),
        }, index=[9, 3, 7, 1, 5, 0])
        present = [name for name in pipeline._SEGMENT_INTERMEDIATE_COLUMNS if name in seg_out.columns]

        for frame in (seg_out, seg_out.iloc[:0]):
            table = pipeline._segment_intermediate(frame)
            expected = pa.Table.from_pandas(frame[present], preserve_index=False)
            assert table.column_names == present
            assert table.schema.types == expected.schema.types
            # Required columns are not nullable unless this frame has a missing value in them.
            required = {c.TRIP_ID, c.SEG_INDEX, c.T_START, c.LENGTH_M, c.LON_MID, c.LAT_MID, c.MATCHED}
            nullable = {name: name not in required or bool(frame[name].isna().any()) for name in present}
            assert {f.name: f.nullable for f in table.schema} == nullable
            back = pq.read_table(io.BytesIO(pipeline.parquet_bytes(table, **pipeline.SEGMENT_WRITE_OPTIONS))).to_pandas()
            back_expected = pq.read_table(io.BytesIO(pipeline.parquet_bytes(expected, compression="lz4", statistics=False))).to_pandas()
            pd.testing.assert_frame_equal(back, back_expected)


# -- numba cache seed --------------------------------------------------------------------------


def _make_seed(root: Path, n_files: int) -> Path:
    seed = root / "seed"
    for i in range(n_files):
        path = seed / f"module_{i % 3}" / f"loop_{i:03d}.nbc"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes([i % 251]) * (1_000 + 37 * i))
    return seed


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _offline_environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (numba_cache.SEED_ENV, "NUMBA_CACHE_DIR")}
    env.update({"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "AWS_EC2_METADATA_DISABLED": "true",
                "NO_GCE_CHECK": "True", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"})
    env.update(extra)
    return env


class TestNumbaCacheSeed:
    """``numba_cache.seed`` under concurrency and with folders it cannot use."""

    def test_concurrent_threads(self, tmp_path: Path) -> None:
        seed = _make_seed(tmp_path, 90)
        target = tmp_path / "cache"
        env = {numba_cache.SEED_ENV: str(seed), "NUMBA_CACHE_DIR": str(target)}
        copied: list[int] = []
        errors: list[Exception] = []

        def run() -> None:
            try:
                copied.append(numba_cache.seed(env))
            except Exception as error:
                errors.append(error)

        threads = [threading.Thread(target=run) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        assert _files(target) == _files(seed)
        assert 90 <= sum(copied) <= 6 * 90
        assert numba_cache.seed(env) == 0

    def test_concurrent_imports_seed_the_cache(self, tmp_path: Path) -> None:
        seed = _make_seed(tmp_path, 30)
        target = tmp_path / "pod" / "numba-cache"
        env = _offline_environment(**{numba_cache.SEED_ENV: str(seed), "NUMBA_CACHE_DIR": str(target)})
        command = [sys.executable, "-c", "import compute"]
        processes = [subprocess.Popen(command, env=env, cwd=Path(pipeline.__file__).parents[1], stderr=subprocess.PIPE, text=True)
                     for _ in range(2)]
        stderr = [process.communicate(timeout=120)[1] for process in processes]

        assert [process.returncode for process in processes] == [0, 0], stderr
        assert _files(target) == _files(seed)

    @pytest.mark.parametrize("target_kind", ["below-a-file", "is-a-file"])
    def test_unusable_target_warns(self, tmp_path: Path, target_kind: str, caplog: pytest.LogCaptureFixture) -> None:
        seed = _make_seed(tmp_path, 3)
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("x")
        target = blocker / "numba-cache" if target_kind == "below-a-file" else blocker

        with caplog.at_level(logging.WARNING, logger="compute.numba_cache"):
            copied = numba_cache.seed({numba_cache.SEED_ENV: str(seed), "NUMBA_CACHE_DIR": str(target)})

        assert copied == 0
        records = [r for r in caplog.records if getattr(r, "event", None) == "numba_cache_seed_failed"]
        assert len(records) == 1
        assert records[0].cache_dir == str(target)  # type: ignore[attr-defined]

    def test_import_survives_an_unusable_target(self, tmp_path: Path) -> None:
        seed = _make_seed(tmp_path, 2)
        blocker = tmp_path / "file"
        blocker.write_text("x")
        env = _offline_environment(**{numba_cache.SEED_ENV: str(seed), "NUMBA_CACHE_DIR": str(blocker / "cache")})

        done = subprocess.run([sys.executable, "-c", "import compute.segments"], env=env, cwd=Path(pipeline.__file__).parents[1],
                              capture_output=True, text=True, timeout=120, check=False)

        assert done.returncode == 0, done.stderr[-2000:]
        assert f"numba のキャッシュの種 {seed} をコピーできませんでした" in done.stderr  # Japanese outside a run

    def test_existing_files_and_folders_are_kept(self, tmp_path: Path) -> None:
        seed = _make_seed(tmp_path, 6)
        target = tmp_path / "cache"
        (target / "module_0" / "loop_000.nbc").mkdir(parents=True)  # a folder where the seed has a file
        (target / "module_1").mkdir()
        (target / "module_1" / "loop_001.nbc").write_bytes(b"newer")

        copied = numba_cache.seed({numba_cache.SEED_ENV: str(seed), "NUMBA_CACHE_DIR": str(target)})

        assert copied == 4
        assert (target / "module_0" / "loop_000.nbc").is_dir()
        assert (target / "module_1" / "loop_001.nbc").read_bytes() == b"newer"

    def test_failed_copy_leaves_no_temporary_file(self, tmp_path: Path) -> None:
        seed = _make_seed(tmp_path, 2)
        (seed / "module_0" / "dangling.nbi").symlink_to(tmp_path / "missing")
        target = tmp_path / "cache"

        copied = numba_cache.seed({numba_cache.SEED_ENV: str(seed), "NUMBA_CACHE_DIR": str(target)})

        leftovers = [p.name for p in target.rglob(".*")]
        assert leftovers == []
        assert copied == len([p for p in target.rglob("*") if p.is_file()])

    @pytest.mark.parametrize("place", ["seed-child", "deeper", "through-symlink"])
    def test_target_inside_the_seed_is_not_nested(self, tmp_path: Path, place: str) -> None:
        seed = _make_seed(tmp_path, 6)
        expected = _files(seed)
        if place == "seed-child":
            target = seed / "cache"
        elif place == "deeper":
            target = seed / "module_1" / "cache"
        else:
            (seed / "module_2" / "real-cache").mkdir()
            (tmp_path / "link").symlink_to(seed / "module_2" / "real-cache")
            target = tmp_path / "link"
        env = {numba_cache.SEED_ENV: str(seed), "NUMBA_CACHE_DIR": str(target)}

        first = numba_cache.seed(env)
        second = numba_cache.seed(env)

        assert first == len(expected)
        assert second == 0
        assert _files(target) == expected
