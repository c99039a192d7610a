"""Row rules of trajectories on time and speed: timestamps per vertex, order, plausible speed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyproj
import shapely

from compute import columns as c
from compute.contract.details import Detail
from compute.contract.reasons import ReasonCode
from compute.contract.settings import ContractThresholds
from compute.contract.state import RuleState, objects_where

_GEOD = pyproj.Geod(ellps="WGS84")
MS_PER_S = 1000.0
#: Mean earth radius (IUGG) of the spherical distances that screen the speed rules.
_EARTH_RADIUS_M = 6_371_008.8
#: Margin of that screen. Spherical and WGS 84 geodesic distances differ by at most 0.56 %, checked
#: from 1 m to half the globe in tests/contract/test_speed_screen.py. A pair or trip whose spherical
#: speed is below 99 % of the limit is therefore below the limit on the ellipsoid too.
SPHERE_MARGIN = 0.01
#: Relative amount by which a measured speed must exceed ``max_speed_kmh`` to be rejected.
#: Distances from coordinates carry rounding errors of a few parts in 10^11: a trip built at
#: exactly 200 km/h measured 200.0000000075 km/h and was rejected before this tolerance.
SPEED_TOLERANCE = 1e-9


def timestamps_as_int_ms(series: pd.Series) -> pa.ListArray:
    """Return the ``timestamps`` column as an Arrow list of int64 epoch milliseconds.

    Accepts what ``to_pandas`` produces (numpy ``datetime64`` arrays, time zone dropped but
    values in UTC), an ``ArrowDtype`` list column, or Python lists of timestamps.
    """
    if isinstance(series.dtype, pd.ArrowDtype):
        arrow = pa.chunked_array(series.array._pa_array).combine_chunks()
    else:
        items = [None if _is_null_item(v) else v for v in series.to_numpy(dtype=object)]
        arrow = pa.array(items, type=pa.list_(pa.timestamp("ms"))) if items else pa.array([], pa.list_(pa.timestamp("ms")))
    if pa.types.is_null(arrow.type):
        return pa.array([None] * len(arrow), type=pa.list_(pa.int64()))
    value_type = arrow.type.value_type
    if pa.types.is_timestamp(value_type) and value_type.unit != "ms":
        arrow = arrow.cast(pa.list_(pa.timestamp("ms", tz=value_type.tz)), safe=False)
    return arrow.cast(pa.list_(pa.int64()))


def _is_null_item(value: object) -> bool:
    if value is None:
        return True
    return bool(isinstance(value, float) and np.isnan(value))


def check_times(
    frame: pd.DataFrame, geometries: np.ndarray, thresholds: ContractThresholds, state: RuleState
) -> tuple[pa.ListArray, np.ndarray]:
    """Apply the time rules and return the timestamps (int64 ms) and which rows have them."""
    n_rows = len(frame)
    times = timestamps_as_int_ms(frame[c.TIMESTAMPS]) if c.TIMESTAMPS in frame else pa.nulls(n_rows, pa.list_(pa.int64()))
    has_times = ~np.asarray(times.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    start = pd.to_datetime(frame[c.START_TIME], utc=True) if c.START_TIME in frame else pd.Series(pd.NaT, index=frame.index)
    end = pd.to_datetime(frame[c.END_TIME], utc=True) if c.END_TIME in frame else pd.Series(pd.NaT, index=frame.index)

    no_trip_times = (start.isna() | end.isna()).to_numpy()
    state.reject(
        ReasonCode.TIME_MISSING,
        ~has_times & no_trip_times,
        value=lambda hit: [f"start_time={start.iloc[i]}, end_time={end.iloc[i]}" for i in hit],
        detail=Detail("times_null"),
    )

    n_times = np.asarray(pa.compute.list_value_length(times).fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
    n_vertices = shapely.get_num_coordinates(geometries)
    null_inside = _any_null_element(times)
    state.reject(
        ReasonCode.TIMESTAMP_COUNT_MISMATCH,
        has_times & ((n_times != n_vertices) | null_inside),
        value=n_times,
        detail=lambda hit: [
            Detail(
                "timestamp_null" if null_inside[i] else "timestamp_count",
                {"timestamps": int(n_times[i]), "vertices": int(n_vertices[i])},
            )
            for i in hit
        ],
    )

    _check_time_window(times, has_times, start, end, thresholds, state)

    backwards, where = _first_decrease(times, n_rows)
    flat = _flat_values(times)
    state.reject(
        ReasonCode.TIMESTAMP_BACKWARDS,
        has_times & backwards,
        value=lambda hit: [f"{_iso(flat[where[i]])} -> {_iso(flat[where[i] + 1])}" for i in hit],
        detail=lambda hit: [
            Detail("vertex_pair", {"first": int(where[i] - _start_offset(times, i)), "second": int(where[i] - _start_offset(times, i) + 1)})
            for i in hit
        ],
    )
    end_before_start = ~has_times & (end < start).fillna(False).to_numpy(dtype=bool)
    state.reject(
        ReasonCode.TIMESTAMP_BACKWARDS,
        end_before_start,
        value=lambda hit: [f"start_time={start.iloc[i]}, end_time={end.iloc[i]}" for i in hit],
        detail=Detail("end_before_start"),
    )
    return times, has_times


def _check_time_window(
    times: pa.ListArray, has_times: np.ndarray, start: pd.Series, end: pd.Series, thresholds: ContractThresholds, state: RuleState
) -> None:
    """Reject trips with a vertex time, or a trip time, outside ``min_time`` to ``max_time``."""
    earliest_ms, latest_ms = thresholds.time_window_ms()
    n_rows = len(times)
    flat = _flat_values(times)
    owner = np.repeat(np.arange(n_rows), np.diff(_offsets(times))) if n_rows else np.zeros(0, dtype=np.int64)
    # Null vertex times were filled with the int64 minimum; their rows already failed the count rule.
    outside = (flat < earliest_ms) | (flat > latest_ms)
    first = np.full(n_rows, -1, dtype=np.int64)
    rows, positions = np.unique(owner[outside], return_index=True)
    first[rows] = np.flatnonzero(outside)[positions]
    vertex_outside = has_times & (first >= 0)

    trip_ms = [_epoch_ms(series) for series in (start, end)]
    trip_outside = ~has_times & np.logical_or.reduce([(ms < earliest_ms) | (ms > latest_ms) for ms in trip_ms])
    window = {"min_time": thresholds.min_time.isoformat(), "max_time": thresholds.max_time.isoformat()}
    state.reject(
        ReasonCode.TIMESTAMP_OUT_OF_RANGE,
        vertex_outside,
        value=lambda hit: [_iso(flat[first[i]]) for i in hit],
        detail=lambda hit: [Detail("vertex_outside_window", {"vertex": int(first[i] - _start_offset(times, i)), **window}) for i in hit],
    )
    state.reject(
        ReasonCode.TIMESTAMP_OUT_OF_RANGE,
        trip_outside,
        value=lambda hit: [f"start_time={start.iloc[i]}, end_time={end.iloc[i]}" for i in hit],
        detail=Detail("outside_window", window),
    )


def _epoch_ms(times: pd.Series) -> np.ndarray:
    """Return times as float epoch milliseconds, NaN where null (NaN compares false, so nulls pass)."""
    values = pd.to_datetime(times, utc=True).to_numpy(dtype="datetime64[ms]")
    ms = values.astype(np.int64).astype(float)
    ms[np.isnat(values)] = np.nan
    return ms


def _flat_values(times: pa.ListArray) -> np.ndarray:
    flat = times.flatten() if len(times) else pa.array([], pa.int64())
    values = flat.fill_null(np.iinfo(np.int64).min).to_numpy(zero_copy_only=False)
    # flatten() drops the slice offset, so index with offsets relative to the first list.
    return np.asarray(values, dtype=np.int64)


def _offsets(times: pa.ListArray) -> np.ndarray:
    offsets = np.asarray(times.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    return offsets - offsets[0]


def _start_offset(times: pa.ListArray, row: int) -> int:
    return int(_offsets(times)[row])


def _any_null_element(times: pa.ListArray) -> np.ndarray:
    n_rows = len(times)
    if n_rows == 0:
        return np.zeros(0, dtype=bool)
    flat = times.flatten()
    nulls = np.asarray(flat.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    owner = np.repeat(np.arange(n_rows), np.diff(_offsets(times)))
    return np.bincount(owner[nulls], minlength=n_rows) > 0


def _first_decrease(times: pa.ListArray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Return per row whether a timestamp decreases, and the flat position of the first one."""
    where = np.full(n_rows, -1, dtype=np.int64)
    if n_rows == 0:
        return np.zeros(0, dtype=bool), where
    flat = _flat_values(times)
    owner = np.repeat(np.arange(n_rows), np.diff(_offsets(times)))
    same_trip = owner[1:] == owner[:-1]
    decrease = same_trip & (np.diff(flat) < 0)
    positions = np.flatnonzero(decrease)
    rows, first = np.unique(owner[positions], return_index=True)
    where[rows] = positions[first]
    backwards = np.zeros(n_rows, dtype=bool)
    backwards[rows] = True
    return backwards, where


def _iso(ms: int) -> str:
    return str(np.datetime64(int(ms), "ms")) + "Z"


def check_speeds(
    frame: pd.DataFrame,
    geometries: np.ndarray,
    times: pa.ListArray,
    has_times: np.ndarray,
    thresholds: ContractThresholds,
    state: RuleState,
) -> None:
    """Reject trips whose speed between two vertices (or on average) exceeds ``max_speed_kmh``.

    Distances are geodesic on the WGS 84 ellipsoid. A time step shorter than ``min_interval_s``
    counts as ``min_interval_s``, so two fixes with the same timestamp do not give infinite speed.

    The geodesic (Karney's algorithm in pyproj) costs about 1.5 us a pair, 73 % of validating a
    piece. Spherical distances screen the pairs first (:data:`SPHERE_MARGIN`), and only pairs and
    trips within the margin of the limit are measured on the ellipsoid. Decisions, values and
    details are those of the ellipsoid alone.
    """
    _check_vertex_speeds(geometries, times, state.open & has_times, thresholds, state)
    _check_average_speeds(frame, geometries, state.open & ~has_times, thresholds, state)


def _above(limit_kmh: float) -> float:
    """Return the speed a measured value must exceed to count as above ``limit_kmh`` (:data:`SPEED_TOLERANCE`)."""
    return limit_kmh * (1.0 + SPEED_TOLERANCE)


def _segment_distances(geometries: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the vertices of the selected rows, the row of each, and per vertex pair its spherical distance.

    The pair ``i`` joins vertices ``i`` and ``i + 1``; pairs that span two rows have distance 0
    and ``same_row`` false. :func:`geodesic` gives the distance on the ellipsoid.
    """
    coords, owner = shapely.get_coordinates(objects_where(rows, geometries), return_index=True)
    if owner.size < 2:
        return coords, owner, np.zeros(0, dtype=bool), np.zeros(0)
    same_row = owner[1:] == owner[:-1]
    return coords, owner, same_row, np.where(same_row, sphere_distances(coords), 0.0)


def sphere_distances(coords: np.ndarray) -> np.ndarray:
    """Return the haversine distance in metres between consecutive (longitude, latitude) rows of ``coords``."""
    lat = np.radians(coords[:, 1])
    cos_lat = np.cos(lat)
    half = np.sin(np.diff(lat) / 2) ** 2 + cos_lat[:-1] * cos_lat[1:] * np.sin(np.radians(np.diff(coords[:, 0])) / 2) ** 2
    return 2 * _EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(half, 1.0)))


def geodesic(coords: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Return the WGS 84 geodesic distance in metres of the vertex pairs ``pairs`` (pair ``i`` joins vertices ``i`` and ``i + 1``)."""
    _, _, distance_m = _GEOD.inv(coords[pairs, 0], coords[pairs, 1], coords[pairs + 1, 0], coords[pairs + 1, 1])
    return np.asarray(distance_m, dtype=np.float64)


def _check_vertex_speeds(
    geometries: np.ndarray, times: pa.ListArray, rows: np.ndarray, thresholds: ContractThresholds, state: RuleState
) -> None:
    n_rows = rows.size
    coords, owner, same_row, distance_m = _segment_distances(geometries, rows)
    if same_row.size == 0:
        return

    # The count rule already rejected every row whose timestamps differ from its vertices, so
    # the timestamps of the selected rows line up with their vertices one to one.
    flat = _flat_values(times)
    flat_owner = np.repeat(np.arange(n_rows), np.diff(_offsets(times)))
    vertex_ms = flat[rows[flat_owner]] if flat.size else flat
    step_s = np.maximum(np.diff(vertex_ms) / MS_PER_S, thresholds.min_interval_s)
    speed_kmh = np.where(same_row, distance_m / step_s * 3.6, 0.0)
    near = np.flatnonzero(speed_kmh > thresholds.max_speed_kmh * (1 - SPHERE_MARGIN))
    if near.size == 0:
        return
    distance_m[near] = geodesic(coords, near)
    speed_kmh[near] = distance_m[near] / step_s[near] * 3.6
    too_fast = np.zeros(speed_kmh.size, dtype=bool)
    too_fast[near] = speed_kmh[near] > _above(thresholds.max_speed_kmh)
    if not too_fast.any():
        return

    # Report the fastest pair of each rejected trip.
    pair_owner = owner[:-1]
    segments = np.flatnonzero(too_fast)
    segments = segments[np.argsort(-speed_kmh[segments], kind="stable")]
    rejected_rows, first = np.unique(pair_owner[segments], return_index=True)
    worst = np.full(n_rows, -1, dtype=np.int64)
    worst[rejected_rows] = segments[first]
    vertex_start = np.searchsorted(owner, np.arange(n_rows))
    mask = np.zeros(n_rows, dtype=bool)
    mask[rejected_rows] = True
    state.reject(
        ReasonCode.SPEED_IMPLAUSIBLE,
        mask,
        value=lambda hit: [f"{speed_kmh[worst[i]]:.1f} km/h" for i in hit],
        detail=lambda hit: [
            Detail(
                "vertex_speed",
                {
                    "first": int(worst[i] - vertex_start[i]),
                    "second": int(worst[i] - vertex_start[i] + 1),
                    "distance_m": float(distance_m[worst[i]]),
                    "interval_s": float(step_s[worst[i]]),
                    "limit_kmh": thresholds.max_speed_kmh,
                },
            )
            for i in hit
        ],
    )


def _check_average_speeds(
    frame: pd.DataFrame, geometries: np.ndarray, rows: np.ndarray, thresholds: ContractThresholds, state: RuleState
) -> None:
    if not rows.any():
        return
    n_rows = rows.size
    coords, owner, same_row, distance_m = _segment_distances(geometries, rows)
    length_m = np.bincount(owner[:-1], weights=distance_m, minlength=n_rows) if same_row.size else np.zeros(n_rows)
    start = pd.to_datetime(frame[c.START_TIME], utc=True)
    end = pd.to_datetime(frame[c.END_TIME], utc=True)
    elapsed_s = (end - start).dt.total_seconds().fillna(0).to_numpy(dtype=float)
    duration_s = np.maximum(elapsed_s, thresholds.min_interval_s)
    average_kmh = length_m / duration_s * 3.6
    near = average_kmh > thresholds.max_speed_kmh * (1 - SPHERE_MARGIN)
    if near.any():
        pairs = np.flatnonzero(same_row & near[owner[:-1]])
        exact = np.bincount(owner[pairs], weights=geodesic(coords, pairs), minlength=n_rows)
        length_m = np.where(near, exact, length_m)
        average_kmh = length_m / duration_s * 3.6
    state.reject(
        ReasonCode.SPEED_IMPLAUSIBLE,
        rows & (average_kmh > _above(thresholds.max_speed_kmh)),
        value=lambda hit: [f"{average_kmh[i]:.1f} km/h" for i in hit],
        detail=lambda hit: [
            Detail(
                "trip_average_speed",
                {"distance_m": float(length_m[i]), "duration_s": float(duration_s[i]), "limit_kmh": thresholds.max_speed_kmh},
            )
            for i in hit
        ],
    )
