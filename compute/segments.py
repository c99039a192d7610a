"""Trajectories -> segments: vectorised geometry and kinematics.

A segment is the piece of a trip between two consecutive vertices. Its length is geodesic (WGS 84
ellipsoid, through ``pyproj.Geod``), so no projection zone has to be chosen and a trip that
crosses zones is measured the same way everywhere. All work is done on flat numpy arrays of every
vertex of the partition at once: there is no Python loop per trip or per vertex.

Invariants
----------
* Input rows are accepted trajectories: a valid LineString of two or more vertices, and when
  ``timestamps`` is present, one non-decreasing timestamp per vertex (the contract checks it).
* Every input trip appears exactly once in the returned trip table, even when all its vertices
  coincide (length 0).
* Segments keep the vertex order of the LineString; ``seg_index`` counts from 0 within each trip.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyproj
import shapely

from compute import columns as c

_GEOD = pyproj.Geod(ellps="WGS84")
_MS = "datetime64[ms, UTC]"

SEGMENT_COLUMNS: tuple[str, ...] = (
    c.TRIP_ID, c.VEHICLE_ID, c.SEG_INDEX, c.T_START, c.DURATION_S, c.LENGTH_M, c.SPEED_KMH,
    c.ACCEL_M_S2, c.GRADE_PCT, c.LON_MID, c.LAT_MID,
)
TRIP_COLUMNS: tuple[str, ...] = (
    c.TRIP_ID, c.VEHICLE_ID, c.START_TIME, c.END_TIME, c.LOAD_KG, c.N_VERTICES, c.TIME_SOURCE,
)


def build_segments(trajectories: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split accepted trajectories into segments and return ``(segments, trips)``.

    Parameters
    ----------
    trajectories
        One row per trip with ``trip_id``, ``vehicle_id``, ``geometry`` (shapely LineStrings in
        EPSG:4326, optionally with Z in metres), ``timestamps`` (array of per-vertex times or
        missing), ``start_time``, ``end_time`` and ``load_kg``.

    Returns
    -------
    segments
        One row per segment, columns :data:`SEGMENT_COLUMNS`. ``speed_kmh`` is NaN where the
        segment lasts 0 s; ``grade_pct`` is NaN for 2D trips or zero-length segments.
    trips
        One row per input trip, columns :data:`TRIP_COLUMNS`; ``time_source`` is ``vertex`` when
        per-vertex timestamps were given and ``interpolated`` when times were spread along the
        line between ``start_time`` and ``end_time`` in proportion to distance.

    Notes
    -----
    Cost is linear in the number of vertices; memory is about 150 bytes per vertex while running.
    """
    n_trips = len(trajectories)
    if n_trips == 0:
        return empty_segments(), _trip_frame(trajectories, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool))

    # Stage 1: every vertex of the partition as flat arrays.
    geoms = np.asarray(trajectories[c.GEOMETRY].array if hasattr(trajectories[c.GEOMETRY], "array") else trajectories[c.GEOMETRY], dtype=object)
    coords, owner = shapely.get_coordinates(geoms, include_z=True, return_index=True)
    counts = np.bincount(owner, minlength=n_trips)
    first_vertex = np.cumsum(counts) - counts

    # Stage 2: segments are consecutive vertex pairs of the same trip.
    a = np.nonzero(owner[:-1] == owner[1:])[0]
    b = a + 1
    trip_of_segment = owner[a]
    _, _, length_m = _GEOD.inv(coords[a, 0], coords[a, 1], coords[b, 0], coords[b, 1])
    length_m = np.abs(np.asarray(length_m, dtype=np.float64))

    # Stage 3: per-vertex times, given or interpolated along the line.
    vertex_ms, has_times = _vertex_times(trajectories, counts, owner, a, length_m)
    start_ms = vertex_ms[a]
    duration_s = (vertex_ms[b] - start_ms) / 1000.0

    # Stage 4: kinematics; acceleration is the change of segment speed across the shared vertex.
    with np.errstate(divide="ignore", invalid="ignore"):
        speed_ms = np.where(duration_s > 0, length_m / duration_s, np.nan)
        grade_pct = np.where(length_m > 0.5, 100.0 * (coords[b, 2] - coords[a, 2]) / length_m, np.nan)
    seg_index = (a - first_vertex[trip_of_segment]).astype(np.int32)
    accel = _acceleration(speed_ms, duration_s, seg_index)

    trip_ids = trajectories[c.TRIP_ID].to_numpy()
    vehicle_ids = trajectories[c.VEHICLE_ID].to_numpy()
    segments = pd.DataFrame(
        {
            c.TRIP_ID: trip_ids[trip_of_segment],
            c.VEHICLE_ID: vehicle_ids[trip_of_segment],
            c.SEG_INDEX: seg_index,
            c.T_START: pd.to_datetime(start_ms, unit="ms", utc=True).astype(_MS),
            c.DURATION_S: duration_s,
            c.LENGTH_M: length_m,
            c.SPEED_KMH: speed_ms * 3.6,
            c.ACCEL_M_S2: accel,
            c.GRADE_PCT: grade_pct,
            c.LON_MID: (coords[a, 0] + coords[b, 0]) / 2.0,
            c.LAT_MID: (coords[a, 1] + coords[b, 1]) / 2.0,
        }
    )
    last_vertex = first_vertex + counts - 1
    trips = _trip_frame(trajectories, vertex_ms[first_vertex], vertex_ms[last_vertex], counts, has_times)
    return segments, trips


def empty_segments() -> pd.DataFrame:
    """Return a 0-row segments frame with the right dtypes."""
    return pd.DataFrame(
        {
            c.TRIP_ID: pd.Series([], dtype=object),
            c.VEHICLE_ID: pd.Series([], dtype=object),
            c.SEG_INDEX: pd.Series([], dtype=np.int32),
            c.T_START: pd.Series([], dtype=_MS),
            c.DURATION_S: pd.Series([], dtype=np.float64),
            c.LENGTH_M: pd.Series([], dtype=np.float64),
            c.SPEED_KMH: pd.Series([], dtype=np.float64),
            c.ACCEL_M_S2: pd.Series([], dtype=np.float64),
            c.GRADE_PCT: pd.Series([], dtype=np.float64),
            c.LON_MID: pd.Series([], dtype=np.float64),
            c.LAT_MID: pd.Series([], dtype=np.float64),
        }
    )


def _vertex_times(
    trajectories: pd.DataFrame,
    counts: np.ndarray,
    owner: np.ndarray,
    seg_start: np.ndarray,
    length_m: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Return epoch milliseconds per vertex and, per trip, whether they were given."""
    n_vertices = len(owner)
    vertex_ms = np.empty(n_vertices, dtype=np.float64)
    given = _given_timestamps(trajectories, counts)
    has_times_per_trip = np.zeros(len(counts), dtype=bool)
    if given is not None:
        values_ms, has_times_per_trip = given
        vertex_ms[has_times_per_trip[owner]] = values_ms
    missing_trips = ~has_times_per_trip
    if missing_trips.any():
        # Spread start..end along the cumulative length of each trip.
        cumulative = np.zeros(n_vertices, dtype=np.float64)
        cumulative[seg_start + 1] = length_m
        cumulative = np.cumsum(cumulative)
        first = np.cumsum(counts) - counts
        trip_start_cum = cumulative[first][owner]
        along = cumulative - trip_start_cum
        total = np.bincount(owner[seg_start], weights=length_m, minlength=len(counts))
        start = _epoch_ms(trajectories[c.START_TIME])
        end = _epoch_ms(trajectories[c.END_TIME])
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = np.where(total[owner] > 0, along / total[owner], 0.0)
        interpolated = start[owner] + fraction * (end - start)[owner]
        mask = missing_trips[owner]
        vertex_ms[mask] = interpolated[mask]
    return vertex_ms, has_times_per_trip


def _given_timestamps(trajectories: pd.DataFrame, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    if c.TIMESTAMPS not in trajectories.columns:
        return None
    column = trajectories[c.TIMESTAMPS]
    present = column.map(lambda value: value is not None and not (isinstance(value, float) and np.isnan(value))).to_numpy(dtype=bool)
    if not present.any():
        return None
    arrays = [np.asarray(value, dtype="datetime64[ms]").astype(np.int64) for value in column[present]]
    values = np.concatenate(arrays).astype(np.float64)
    lengths = np.fromiter((len(x) for x in arrays), dtype=np.int64, count=len(arrays))
    if not np.array_equal(lengths, counts[present]):
        bad = np.nonzero(lengths != counts[present])[0][0]
        trip = trajectories[c.TRIP_ID].to_numpy()[present][bad]
        raise ValueError(
            f"trip {trip!r} has {lengths[bad]} timestamps for {counts[present][bad]} vertices; "
            "validate trajectories before building segments (reason timestamps_count_mismatch)"
        )
    return values, present


def _acceleration(speed_ms: np.ndarray, duration_s: np.ndarray, seg_index: np.ndarray) -> np.ndarray:
    accel = np.zeros(len(speed_ms), dtype=np.float64)
    if len(speed_ms) < 2:
        return accel
    dv = speed_ms[1:] - speed_ms[:-1]
    dt = 0.5 * (duration_s[1:] + duration_s[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where((dt > 0) & np.isfinite(dv), dv / dt, 0.0)
    accel[1:] = np.where(seg_index[1:] > 0, value, 0.0)
    return accel


def _epoch_ms(series: pd.Series) -> np.ndarray:
    values = pd.to_datetime(series, utc=True)
    out = values.astype("datetime64[ms, UTC]").to_numpy(dtype="datetime64[ms]").astype(np.int64).astype(np.float64)
    out[values.isna().to_numpy()] = np.nan
    return out


def _trip_frame(
    trajectories: pd.DataFrame,
    start_ms: np.ndarray,
    end_ms: np.ndarray,
    counts: np.ndarray,
    has_times: np.ndarray,
) -> pd.DataFrame:
    load = trajectories[c.LOAD_KG] if c.LOAD_KG in trajectories.columns else pd.Series(np.nan, index=trajectories.index)
    return pd.DataFrame(
        {
            c.TRIP_ID: trajectories[c.TRIP_ID].to_numpy(dtype=object),
            c.VEHICLE_ID: trajectories[c.VEHICLE_ID].to_numpy(dtype=object),
            c.START_TIME: pd.to_datetime(np.asarray(start_ms, dtype=np.float64), unit="ms", utc=True).astype(_MS),
            c.END_TIME: pd.to_datetime(np.asarray(end_ms, dtype=np.float64), unit="ms", utc=True).astype(_MS),
            c.LOAD_KG: pd.to_numeric(load, errors="coerce").to_numpy(dtype=np.float64),
            c.N_VERTICES: np.asarray(counts, dtype=np.int64),
            c.TIME_SOURCE: np.where(has_times, "vertex", "interpolated").astype(object),
        }
    )
