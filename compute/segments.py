"""Trajectories -> segments: vectorised geometry and kinematics.

A segment is the piece of a trip between two consecutive vertices. Its length is the geodesic
distance on the WGS 84 ellipsoid. Segments shorter than :data:`LOCAL_LENGTH_MAX_M` are measured
with the mid-latitude radii of curvature, which stay within 0.01 mm of ``pyproj.Geod.inv`` below
1 km (checked between 70 degrees south and north). Longer ones go through ``pyproj.Geod.inv``.
No projection zone has to be chosen, so a trip that crosses zones is measured the same way
everywhere. All work is done on flat numpy arrays of every vertex of the partition at once: there
is no Python loop per trip or per vertex.

Two entry points share one core:

* :func:`build_segments_from_arrow` takes the validated Arrow table as read from Parquet. Arrow's
  ``binary_slice`` copies the coordinates of little-endian WKB LineStrings into one float64
  buffer, and the per-vertex times are read from the ``timestamps`` list column through its
  Arrow offsets, so no shapely object and no per-trip array is created.
* :func:`build_segments` takes a pandas frame with shapely geometry (as ``contract.to_frame``
  returns it) and converts it to the same flat arrays.

Invariants
----------
* Input rows are accepted trajectories: a valid LineString of two or more vertices, and when
  ``timestamps`` is present, one non-decreasing timestamp per vertex (the contract checks it).
* Every input trip appears exactly once in the returned trip table, even when all its vertices
  coincide (length 0).
* Segments keep the vertex order of the LineString; ``seg_index`` counts from 0 within each trip.
* Both entry points return equal frames for the same rows.
* ``trip_id`` and ``vehicle_id`` of the segments are pandas categoricals whose categories are
  the partition's ids: one code per segment instead of one Python string.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyproj
import shapely

from compute import columns as c

_GEOD = pyproj.Geod(ellps="WGS84")
_MS = "datetime64[ms, UTC]"
_WGS84_A_M = 6_378_137.0
_WGS84_F = 1.0 / 298.257223563
_WGS84_E2 = _WGS84_F * (2.0 - _WGS84_F)
_RADIANS = np.pi / 180.0

#: Segments at least this long (by the local formula) are measured with ``pyproj.Geod.inv``.
LOCAL_LENGTH_MAX_M = 1_000.0

# WKB geometry type codes of a LineString: ISO 2D and 3D, and EWKB (PostGIS, shapely) with Z.
_WKB_LINESTRING_2D = (2,)
_WKB_LINESTRING_3D = (1002, 0x80000002)

# The float64 columns of the segments come last, so that one 2D array can hold all of them.
_SEGMENT_KEY_COLUMNS: tuple[str, ...] = (c.TRIP_ID, c.VEHICLE_ID, c.SEG_INDEX, c.T_START)
_SEGMENT_FLOAT_COLUMNS: tuple[str, ...] = (
    c.DURATION_S, c.LENGTH_M, c.SPEED_KMH, c.ACCEL_M_S2, c.GRADE_PCT, c.LON_MID, c.LAT_MID, c.EAST_M, c.NORTH_M,
)
SEGMENT_COLUMNS: tuple[str, ...] = _SEGMENT_KEY_COLUMNS + _SEGMENT_FLOAT_COLUMNS + (c.STANDSTILL,)
TRIP_COLUMNS: tuple[str, ...] = (
    c.TRIP_ID, c.VEHICLE_ID, c.START_TIME, c.END_TIME, c.LOAD_KG, c.N_VERTICES, c.TIME_SOURCE,
)
#: Columns of the validated trajectories that segmenting reads.
INPUT_COLUMNS: tuple[str, ...] = (c.TRIP_ID, c.VEHICLE_ID, c.GEOMETRY, c.TIMESTAMPS, c.START_TIME, c.END_TIME, c.LOAD_KG)


@dataclass(frozen=True)
class StandstillRule:
    """Rule that recognises a vehicle standing still in noisy GPS fixes.

    A receiver that does not move keeps reporting positions scattered by a few metres. At 1 Hz
    that scatter reads as 10 to 20 km/h of speed with accelerations of 1 to 2 m/s2. A T3 profile
    of a 10-minute stop with 2 m of scatter then gets about 13 times the fuel of idling, and the
    trip gets about 2 km it never drove. Take a run of fixes of a trip with vertex times that
    all lie within ``radius_m`` of the run's first fix. It is a standstill when it spans at
    least ``min_duration_s``, its segments add up to more than twice ``radius_m``, and its
    direction of travel turns by more than 60 degrees a step on average. Inside a circle of that radius,
    a vehicle that drives through or stops without scatter travels about two radii at most, so
    a longer path means the fixes went back and forth, or that the vehicle circled. Scatter
    turns by about 120 degrees a step, circling smoothly. The segments of a standstill
    keep their times and midpoints but get length 0, so they count as idle. A ``radius_m`` or
    ``min_duration_s`` of 0 turns the rule off.

    The defaults: within 20 m for 30 s is a mean speed below 2.4 km/h, about the idle speed of
    the emission model (2 km/h), so a run the rule marks as a standstill would be near idle anyway. Runs
    are found from the first fix onwards. A run shorter than ``min_duration_s`` moves the
    start to the next fix, and a run long enough moves it to the first fix after the run. The
    last fixes of the approach and the first of the departure that lie within the radius of the
    run's first fix belong to the standstill, so it can shorten the driven distance by up to
    about one radius on each side.
    """

    radius_m: float = 20.0
    min_duration_s: float = 30.0

    @property
    def active(self) -> bool:
        """Tell whether the rule is on."""
        return self.radius_m > 0 and self.min_duration_s > 0


#: The rule switched off: segments keep every measured length.
NO_STANDSTILL = StandstillRule(0.0, 0.0)


@dataclass(frozen=True)
class _Vertices:
    """Every vertex of a partition as flat arrays, with per-trip attributes."""

    coords: np.ndarray  # (n_vertices, 3) lon, lat, z (NaN for 2D), or (n_vertices, 2) lon, lat from 2D WKB
    counts: np.ndarray  # vertices per trip, int64
    given_ms: np.ndarray  # values of the timestamps list column in epoch ms: int64, or float64 with NaN for nulls
    given_first: np.ndarray  # per trip, int64: index in given_ms of its first timestamp (used where has_times)
    has_times: np.ndarray  # per trip
    start_ms: np.ndarray  # per trip, NaN when missing
    end_ms: np.ndarray
    trip_ids: np.ndarray
    vehicle_ids: np.ndarray
    load_kg: np.ndarray


def build_segments(trajectories: pd.DataFrame, standstill: StandstillRule = NO_STANDSTILL) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split accepted trajectories into segments and return ``(segments, trips)``.

    Parameters
    ----------
    trajectories
        One row per trip with ``trip_id``, ``vehicle_id``, ``geometry`` (shapely LineStrings in
        EPSG:4326, optionally with Z in metres), ``timestamps`` (array of per-vertex times or
        missing), ``start_time``, ``end_time`` and ``load_kg``.
    standstill
        How GPS scatter while standing still is recognised (:class:`StandstillRule`); off unless given.

    Returns
    -------
    segments
        One row per segment, columns :data:`SEGMENT_COLUMNS`. ``speed_kmh`` is NaN where the
        segment lasts 0 s; ``grade_pct`` is NaN for 2D trips or zero-length segments.
        ``standstill`` is True for the segments of a standstill, whose length is 0.
    trips
        One row per input trip, columns :data:`TRIP_COLUMNS`; ``time_source`` is ``vertex`` when
        per-vertex timestamps were given and ``interpolated`` when times were spread along the
        line between ``start_time`` and ``end_time`` in proportion to distance.

    Raises
    ------
    ValueError
        If a trip has a different number of timestamps than vertices.

    Notes
    -----
    Cost is linear in the number of vertices. On a piece of 747k vertices of 2D trips, the peak
    memory above the input was about 160 bytes per vertex here and 110 in
    :func:`build_segments_from_arrow` (process ``ru_maxrss``), of which the returned segments take 72.
    """
    geometry = trajectories[c.GEOMETRY]
    geoms = np.asarray(geometry.array if hasattr(geometry, "array") else geometry, dtype=object)
    coords, owner = shapely.get_coordinates(geoms, include_z=True, return_index=True)
    counts = np.bincount(owner, minlength=len(trajectories))
    timestamps = _timestamps_as_arrow(trajectories)
    vertices = _flat_vertices(
        coords, counts, timestamps, trajectories[c.TRIP_ID].to_numpy(dtype=object), trajectories[c.VEHICLE_ID].to_numpy(dtype=object),
        _epoch_ms(trajectories[c.START_TIME]), _epoch_ms(trajectories[c.END_TIME]),
        pd.to_numeric(trajectories[c.LOAD_KG], errors="coerce").to_numpy(dtype=np.float64) if c.LOAD_KG in trajectories.columns else None,
    )
    return _segments_of(vertices, standstill)


def build_segments_from_arrow(table: pa.Table, standstill: StandstillRule = NO_STANDSTILL) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split accepted trajectories, as an Arrow table of the contract, into ``(segments, trips)``.

    Parameters
    ----------
    table
        Validated trajectories with at least ``trip_id``, ``vehicle_id``, ``geometry`` (WKB
        LineStrings in EPSG:4326) and ``start_time``/``end_time``; ``timestamps``
        (``list<timestamp[ms, tz=UTC]>``) and ``load_kg`` are optional.
    standstill
        As in :func:`build_segments`.

    Returns
    -------
    segments, trips
        As :func:`build_segments` returns them.

    Raises
    ------
    ValueError
        If a trip has a different number of timestamps than vertices.

    Notes
    -----
    Little-endian WKB LineStrings (ISO 2D or 3D, or EWKB with Z and no SRID) are decoded with
    numpy. Any other encoding in the table sends the whole table through ``shapely.from_wkb``.
    """
    geometry = _combined(table.column(c.GEOMETRY))
    decoded = _decode_wkb_linestrings(geometry)
    if decoded is None:
        geoms = shapely.from_wkb(geometry.to_numpy(zero_copy_only=False))
        coords, owner = shapely.get_coordinates(geoms, include_z=True, return_index=True)
        counts = np.bincount(owner, minlength=table.num_rows)
    else:
        coords, counts = decoded
    timestamps = _combined(table.column(c.TIMESTAMPS)) if c.TIMESTAMPS in table.column_names else None
    load = (
        table.column(c.LOAD_KG).cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
        if c.LOAD_KG in table.column_names else None
    )
    vertices = _flat_vertices(
        coords, counts, timestamps,
        table.column(c.TRIP_ID).to_numpy(zero_copy_only=False).astype(object),
        table.column(c.VEHICLE_ID).to_numpy(zero_copy_only=False).astype(object),
        _arrow_epoch_ms(table.column(c.START_TIME)), _arrow_epoch_ms(table.column(c.END_TIME)), load,
    )
    return _segments_of(vertices, standstill)


def geodesic_length_m(lon1: np.ndarray, lat1: np.ndarray, lon2: np.ndarray, lat2: np.ndarray) -> np.ndarray:
    """Return the WGS 84 geodesic distance in metres between point pairs given in degrees.

    Pairs closer than :data:`LOCAL_LENGTH_MAX_M` use the mid-latitude radii of curvature (meridian
    ``M`` and prime vertical ``N``): ``hypot(N cos(phi_m) dlambda, M dphi)``; the others use
    ``pyproj.Geod.inv``.
    """
    lat_mid = np.radians(0.5 * (lat1 + lat2))
    sin_mid = np.sin(lat_mid)
    w = np.sqrt(1.0 - _WGS84_E2 * sin_mid * sin_mid)
    meridian_m = _WGS84_A_M * (1.0 - _WGS84_E2) / (w * w * w)
    prime_vertical_m = _WGS84_A_M / w
    dlon = np.radians((lon2 - lon1 + 180.0) % 360.0 - 180.0)
    length_m = np.hypot(prime_vertical_m * np.cos(lat_mid) * dlon, meridian_m * np.radians(lat2 - lat1))

    far = ~(length_m < LOCAL_LENGTH_MAX_M)
    if far.any():
        _, _, exact = _GEOD.inv(lon1[far], lat1[far], lon2[far], lat2[far])
        length_m[far] = np.abs(np.asarray(exact, dtype=np.float64))
    return length_m


def empty_segments() -> pd.DataFrame:
    """Return a 0-row segments frame with the right dtypes."""
    return pd.DataFrame(
        {
            c.TRIP_ID: pd.Series(pd.Categorical([], categories=pd.Index([], dtype=object))),
            c.VEHICLE_ID: pd.Series(pd.Categorical([], categories=pd.Index([], dtype=object))),
            c.SEG_INDEX: pd.Series([], dtype=np.int32),
            c.T_START: pd.Series([], dtype=_MS),
            c.DURATION_S: pd.Series([], dtype=np.float64),
            c.LENGTH_M: pd.Series([], dtype=np.float64),
            c.SPEED_KMH: pd.Series([], dtype=np.float64),
            c.ACCEL_M_S2: pd.Series([], dtype=np.float64),
            c.GRADE_PCT: pd.Series([], dtype=np.float64),
            c.LON_MID: pd.Series([], dtype=np.float64),
            c.LAT_MID: pd.Series([], dtype=np.float64),
            c.EAST_M: pd.Series([], dtype=np.float64),
            c.NORTH_M: pd.Series([], dtype=np.float64),
            c.STANDSTILL: pd.Series([], dtype=bool),
        }
    )


# -- core --------------------------------------------------------------------------------------


def _segments_of(v: _Vertices, standstill: StandstillRule) -> tuple[pd.DataFrame, pd.DataFrame]:
    n_trips = len(v.counts)
    if n_trips == 0:
        return empty_segments(), _trip_frame(v, np.zeros(0), np.zeros(0))
    first_vertex = np.cumsum(v.counts) - v.counts
    segment_counts = np.maximum(v.counts - 1, 0)
    coords = _read_only(np.ascontiguousarray(v.coords, dtype=np.float64))

    # The loops write the float columns into the rows of one array, which becomes the float
    # block of the frame without a copy.
    floats = np.empty((len(_SEGMENT_FLOAT_COLUMNS), int(segment_counts.sum())), dtype=np.float64)
    duration_s, length_m, speed_kmh, accel, grade_pct, lon_mid, lat_mid, east_m, north_m = floats

    # Segments are consecutive vertex pairs of the same trip. The loop measures each one locally,
    # then pyproj measures again those of 1 km or more.
    seg_index, n_far = _segment_geometry(coords, v.counts, length_m, lon_mid, lat_mid, east_m, north_m)
    if n_far:
        _measure_far_segments(coords, first_vertex, segment_counts, length_m)

    # Per-vertex times, given or interpolated along the line.
    vertex_ms = _vertex_times(v.counts, _read_only(v.given_ms), v.given_first, v.has_times, length_m,
                              _read_only(np.asarray(v.start_ms, dtype=np.float64)), _read_only(np.asarray(v.end_ms, dtype=np.float64)))

    # Standstills get length 0 after the times are known (spreading repeated times reads the
    # measured lengths) and before the speeds are derived from the lengths.
    still = np.zeros(length_m.shape[0], dtype=bool)
    if standstill.active:
        _standstill_segments(coords, v.counts, _read_only(v.has_times), vertex_ms, length_m, float(standstill.radius_m),
                             float(standstill.min_duration_s) * 1000.0, still)
        length_m[still] = 0.0

    # Kinematics; acceleration is the change of segment speed across the shared vertex.
    start_ms = _segment_kinematics(coords, v.counts, vertex_ms, length_m, duration_s, speed_kmh, accel, grade_pct)

    segments = _segment_frame(v, segment_counts, seg_index, start_ms, floats)
    segments[c.STANDSTILL] = still
    # A trip without vertices (an empty LineString) keeps its given start and end.
    has_vertices = v.counts > 0
    first_ms = np.asarray(v.start_ms, dtype=np.float64).copy()
    last_ms = np.asarray(v.end_ms, dtype=np.float64).copy()
    first_ms[has_vertices] = vertex_ms[first_vertex[has_vertices]]
    last_ms[has_vertices] = vertex_ms[(first_vertex + v.counts - 1)[has_vertices]]
    trips = _trip_frame(v, first_ms, last_ms)
    return segments, trips


def _read_only(values: np.ndarray) -> np.ndarray:
    """Return a read-only view of ``values``.

    numba compiles a loop once per combination of argument types, and the write flag is part of
    an array's type. Whether an input is writeable depends on where it came from (``to_numpy`` of
    an Arrow array returns a read-only array, shapely and numpy writeable ones). The loops get
    read-only views of their inputs, so each one compiles once for every source.
    """
    view = values.view()
    view.flags.writeable = False
    return view


def _measure_far_segments(coords: np.ndarray, first_vertex: np.ndarray, segment_counts: np.ndarray, length_m: np.ndarray) -> None:
    """Replace the lengths of segments of at least :data:`LOCAL_LENGTH_MAX_M` (or NaN) by ``pyproj.Geod.inv``."""
    far = np.flatnonzero(~(length_m < LOCAL_LENGTH_MAX_M))
    segment_end = np.cumsum(segment_counts)
    trip = np.searchsorted(segment_end, far, side="right")
    a = first_vertex[trip] + (far - (segment_end - segment_counts)[trip])
    b = a + 1
    _, _, exact = _GEOD.inv(coords[a, 0], coords[a, 1], coords[b, 0], coords[b, 1])
    length_m[far] = np.abs(np.asarray(exact, dtype=np.float64))


def _segment_frame(v: _Vertices, segment_counts: np.ndarray, seg_index: np.ndarray, start_ms: np.ndarray, floats: np.ndarray) -> pd.DataFrame:
    """Assemble the segments frame from the loop outputs without copying them.

    ``floats`` contains the columns :data:`_SEGMENT_FLOAT_COLUMNS` as rows. ``start_ms`` contains
    whole epoch milliseconds, with ``numpy.iinfo(np.int64).min`` for NaT.
    """
    keys = pd.DataFrame(
        {
            c.TRIP_ID: _repeat_categorical(v.trip_ids, segment_counts),
            c.VEHICLE_ID: _repeat_categorical(v.vehicle_ids, segment_counts),
            c.SEG_INDEX: seg_index,
            c.T_START: pd.array(start_ms.view("datetime64[ms]"), dtype=pd.DatetimeTZDtype("ms", "UTC")),
        },
        copy=False,
    )
    # The transposed 2D array becomes the float64 block of the frame as it is. The frame
    # constructor with a dict of 1D columns would copy them into a new block instead.
    values = pd.DataFrame(floats.T, columns=list(_SEGMENT_FLOAT_COLUMNS), copy=False)
    return pd.concat([keys, values], axis=1)


# -- compiled loops ----------------------------------------------------------------------------
#
# One pass over the vertices of a piece each, in float64 with fastmath off: the same formulas, in
# the same order of operations, as ``geodesic_length_m`` and the numpy code they replaced. They
# avoid the dozen full-length temporary arrays that the array expressions built per piece, and
# write into arrays the caller allocates once.


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _segment_geometry(
    coords: np.ndarray, counts: np.ndarray, length_m: np.ndarray, lon_mid: np.ndarray, lat_mid: np.ndarray,
    east_m: np.ndarray, north_m: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Write the local length in metres, the midpoint and the east and north displacement of every
    segment (the two legs of the local length, which give the direction of travel).

    Returns the index of each segment within its trip and the number of segments that pyproj has
    to measure again. The length uses the mid-latitude radii of curvature, as
    :func:`geodesic_length_m` does below 1 km. A segment of :data:`LOCAL_LENGTH_MAX_M` or more, or
    of NaN length, counts for pyproj.
    """
    index = np.empty(length_m.shape[0], dtype=np.int32)
    n_far = 0
    s = 0
    vertex = 0
    for t in range(counts.shape[0]):
        for k in range(counts[t] - 1):
            i = vertex + k
            lon1 = coords[i, 0]
            lat1 = coords[i, 1]
            lon2 = coords[i + 1, 0]
            lat2 = coords[i + 1, 1]
            lat_mid_rad = (0.5 * (lat1 + lat2)) * _RADIANS
            sin_mid = np.sin(lat_mid_rad)
            w = np.sqrt(1.0 - _WGS84_E2 * sin_mid * sin_mid)
            meridian_m = _WGS84_A_M * (1.0 - _WGS84_E2) / (w * w * w)
            prime_vertical_m = _WGS84_A_M / w
            # x % 360 is x itself for 0 <= x < 360 (fmod is exact there), so the library call is
            # only needed for a step across the antimeridian or a NaN.
            shifted = lon2 - lon1 + 180.0
            wrapped = shifted if 0.0 <= shifted < 360.0 else shifted % 360.0
            dlon = (wrapped - 180.0) * _RADIANS
            # NOTE: keep sin and cos apart. LLVM merged them into one sincos call when they were
            # adjacent statements, and libm does not document that sincos returns the same bits as
            # sin and cos. With numba 0.68.1 this loop calls sin and cos separately.
            east = prime_vertical_m * np.cos(lat_mid_rad) * dlon
            north = meridian_m * ((lat2 - lat1) * _RADIANS)
            length = np.hypot(east, north)
            length_m[s] = length
            east_m[s] = east
            north_m[s] = north
            if not length < LOCAL_LENGTH_MAX_M:
                n_far += 1
            # NOTE: the plain mean puts the midpoint of a step across the antimeridian near
            # longitude 0, so the spatial join looks for its area and link there.
            lon_mid[s] = (lon1 + lon2) / 2.0
            lat_mid[s] = (lat1 + lat2) / 2.0
            index[s] = k
            s += 1
        vertex += counts[t]
    return index, n_far


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _segment_kinematics(
    coords: np.ndarray, counts: np.ndarray, vertex_ms: np.ndarray, length_m: np.ndarray,
    duration_s: np.ndarray, speed_kmh: np.ndarray, accel: np.ndarray, grade_pct: np.ndarray,
) -> np.ndarray:
    """Write duration, speed (km/h), acceleration and grade of every segment.

    Returns the start time of each segment in whole epoch milliseconds (``datetime64[ms]``
    integers, NaT for a NaN time). Speed is NaN for a segment of 0 s. Grade is NaN below 0.5 m or
    without Z (``coords`` with two columns, or NaN Z). Acceleration is the change of speed from the previous segment of the trip
    over the mean of both durations, and 0 on the first segment of a trip or where it is undefined.
    """
    start_ms = np.empty(length_m.shape[0], dtype=np.int64)
    has_z = coords.shape[1] > 2
    s = 0
    vertex = 0
    for t in range(counts.shape[0]):
        previous_speed = np.nan
        previous_duration = np.nan
        for k in range(counts[t] - 1):
            a = vertex + k
            b = a + 1
            start = vertex_ms[a]
            duration = (vertex_ms[b] - start) / 1000.0
            length = length_m[s]
            speed = length / duration if duration > 0 else np.nan
            acceleration = 0.0
            if k > 0:
                dv = speed - previous_speed
                dt = 0.5 * (duration + previous_duration)
                if dt > 0 and np.isfinite(dv):
                    acceleration = dv / dt
            start_ms[s] = _floor_epoch_ms(start)
            duration_s[s] = duration
            speed_kmh[s] = speed * 3.6
            accel[s] = acceleration
            if has_z and length > 0.5:
                grade_pct[s] = 100.0 * (coords[b, 2] - coords[a, 2]) / length
            else:
                grade_pct[s] = np.nan
            previous_speed = speed
            previous_duration = duration
            s += 1
        vertex += counts[t]
    return start_ms


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _floor_epoch_ms(value_ms: float) -> int:
    """Return ``floor(value_ms)`` as an int64, or the NaT integer (int64 minimum) for NaN, an
    infinity or a value outside int64. numpy's float to int64 cast gives the same on x86-64."""
    nat = -9_223_372_036_854_775_808
    if not np.isfinite(value_ms):
        return nat
    floored = np.floor(value_ms)
    if -9.223372036854775808e18 <= floored < 9.223372036854775808e18:
        return int(floored)
    return nat


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _standstill_segments(
    coords: np.ndarray, counts: np.ndarray, has_times: np.ndarray, vertex_ms: np.ndarray, length_m: np.ndarray,
    radius_m: float, min_duration_ms: float, still: np.ndarray,
) -> None:
    """Mark in ``still`` the segments of every standstill (:class:`StandstillRule`).

    Only trips with vertex times are examined: interpolated times carry no speed. A run from a
    fix must reach the first fix at least ``min_duration_ms`` later, so that fix is tested first.
    A moving vehicle fails on it, in one distance per fix. Distances to a run's first fix are
    measured in a tangent plane with the radii of curvature of :func:`geodesic_length_m`. The
    radii are those of a latitude within 0.01 degrees of that fix, which is off by less than
    1e-3 up to 80 degrees of latitude (2 cm at 20 m). Longitudes are wrapped, so a standstill on
    the antimeridian is found too.
    """
    squared_radius = radius_m * radius_m
    vertex = 0
    segment = 0
    scale_lat = np.nan
    kx = 0.0
    ky = 0.0
    for t in range(counts.shape[0]):
        n = counts[t]
        if has_times[t] and n > 1:
            first = 0
            due = 0
            while first < n - 1:
                a = vertex + first
                # ``due``: the first fix at least min_duration_ms after ``first``. It only moves forward.
                due = max(due, first + 1)
                while due < n and vertex_ms[vertex + due] - vertex_ms[a] < min_duration_ms:
                    due += 1
                if due == n:
                    break
                # Near the poles the east-west scale changes fast, so it is taken at every fix there.
                if not abs(coords[a, 1] - scale_lat) <= 0.01 or abs(coords[a, 1]) > 80.0:
                    scale_lat = coords[a, 1]
                    sin_lat = np.sin(scale_lat * _RADIANS)
                    w = np.sqrt(1.0 - _WGS84_E2 * sin_lat * sin_lat)
                    kx = _WGS84_A_M / w * np.cos(scale_lat * _RADIANS) * _RADIANS
                    ky = _WGS84_A_M * (1.0 - _WGS84_E2) / (w * w * w) * _RADIANS
                if not _within(coords, a, vertex + due, kx, ky, squared_radius):
                    first += 1
                    continue
                last = first
                while last + 1 < n and _within(coords, a, vertex + last + 1, kx, ky, squared_radius):
                    last += 1
                if last >= due:
                    if _scattered(coords, vertex + first, vertex + last, length_m, segment + first, kx, ky, radius_m):
                        for k in range(first, last):
                            still[segment + k] = True
                    first = last + 1
                else:
                    first += 1
        vertex += n
        segment += n - 1 if n > 1 else 0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _scattered(coords: np.ndarray, a: int, b: int, length_m: np.ndarray, s: int, kx: float, ky: float, radius_m: float) -> bool:
    """Tell whether the run of fixes ``a`` to ``b`` (segments from ``s``) went back and forth.

    Its segments must add up to more than two radii, and the direction of travel must turn by
    more than 60 degrees a step on average. Scatter around one place turns by about 120 degrees
    a step (fixes drawn at random), while a vehicle that circles in a car park turns smoothly
    and is left moving. Segments of length 0 have no direction and are skipped.
    """
    path_m = 0.0
    for k in range(b - a):
        path_m += length_m[s + k]
    if not path_m > 2.0 * radius_m:
        return False
    turned = 0.0
    turns = 0
    previous_x = 0.0
    previous_y = 0.0
    for v in range(a, b):
        x = _longitude_step(coords[v, 0], coords[v + 1, 0]) * kx
        y = (coords[v + 1, 1] - coords[v, 1]) * ky
        if x == 0.0 and y == 0.0:
            continue
        if previous_x != 0.0 or previous_y != 0.0:
            turned += abs(np.arctan2(previous_x * y - previous_y * x, previous_x * x + previous_y * y))
            turns += 1
        previous_x = x
        previous_y = y
    return turns > 0 and turned / turns > np.pi / 3.0


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _longitude_step(lon_a: float, lon_b: float) -> float:
    """Return ``lon_b - lon_a`` in degrees, wrapped across the antimeridian into [-180, 180].

    A branch costs less than a floating-point modulo per fix. Longitudes are valid (the contract
    checks them), so one turn of 360 degrees is enough.
    """
    step = lon_b - lon_a
    if step > 180.0:
        step -= 360.0
    elif step < -180.0:
        step += 360.0
    return step


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _within(coords: np.ndarray, a: int, b: int, kx: float, ky: float, squared_radius: float) -> bool:
    """Tell whether vertex ``b`` lies within the radius of vertex ``a`` (metres per degree ``kx``, ``ky`` at ``a``)."""
    dx = _longitude_step(coords[a, 0], coords[b, 0]) * kx
    dy = (coords[b, 1] - coords[a, 1]) * ky
    return dx * dx + dy * dy <= squared_radius


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _spread_repeated_times(times_ms: np.ndarray, length_m: np.ndarray) -> None:
    """Spread, in place, the times of a trip's vertices that repeat the time of the vertex before.

    Receivers often stamp fixes with whole seconds, so two fixes of one second share a time and
    the segment between them would last 0 s with no speed. A run of equal times is spread from
    that time to the next different one, in proportion to the length travelled, so the
    vehicle keeps one speed over the run. A run at the end of the trip is spread back from the
    time before it instead. Without length the run is spread evenly, as standing still. A trip
    whose vertices all share one time keeps it: no time is known to spread.
    """
    n = times_ms.shape[0]
    k = 0
    while k < n - 1:
        if times_ms[k + 1] != times_ms[k]:
            k += 1
            continue
        last = k + 1
        while last + 1 < n and times_ms[last + 1] == times_ms[k]:
            last += 1
        if last + 1 < n:
            low, high = k, last + 1
        elif k > 0:
            low, high = k - 1, last
        else:
            return
        total = 0.0
        for j in range(low, high):
            total += length_m[j]
        if np.isfinite(total):
            along = 0.0
            for v in range(low + 1, high):
                along += length_m[v - 1]
                fraction = along / total if total > 0 else (v - low) / (high - low)
                times_ms[v] = times_ms[low] + fraction * (times_ms[high] - times_ms[low])
        k = last + 1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _vertex_times(
    counts: np.ndarray, given_ms: np.ndarray, given_first: np.ndarray, has_times: np.ndarray, length_m: np.ndarray,
    start_ms: np.ndarray, end_ms: np.ndarray,
) -> np.ndarray:
    """Return epoch milliseconds per vertex: the given timestamps of a trip that has them,
    else times spread from its start to its end in proportion to the length travelled.

    A trip without a positive, finite length keeps its start time on every vertex. Each trip is
    summed on its own, so a NaN length stays in its trip. Given timestamps that repeat (fixes
    stamped with the same second) are spread by :func:`_spread_repeated_times`.
    """
    n_vertices = 0
    for t in range(counts.shape[0]):
        n_vertices += counts[t]
    vertex_ms = np.empty(n_vertices, dtype=np.float64)
    vertex = 0
    segment = 0
    for t in range(counts.shape[0]):
        n_trip_vertices = counts[t]
        n_segments = n_trip_vertices - 1 if n_trip_vertices > 1 else 0
        if has_times[t]:
            first = given_first[t]
            for k in range(n_trip_vertices):
                vertex_ms[vertex + k] = given_ms[first + k]
            _spread_repeated_times(vertex_ms[vertex:vertex + n_trip_vertices], length_m[segment:segment + n_segments])
        else:
            total = 0.0
            for j in range(n_segments):
                total += length_m[segment + j]
            along = 0.0
            for k in range(n_trip_vertices):
                if k > 0:
                    along += length_m[segment + k - 1]
                fraction = along / total if total > 0 else 0.0
                vertex_ms[vertex + k] = start_ms[t] + fraction * (end_ms[t] - start_ms[t])
        vertex += n_trip_vertices
        segment += n_segments
    return vertex_ms


def _flat_vertices(
    coords: np.ndarray,
    counts: np.ndarray,
    timestamps: pa.Array | None,
    trip_ids: np.ndarray,
    vehicle_ids: np.ndarray,
    start_ms: np.ndarray,
    end_ms: np.ndarray,
    load_kg: np.ndarray | None,
) -> _Vertices:
    n_trips = len(counts)
    counts = counts.astype(np.int64)
    given_ms, given_first, has_times = _given_timestamps(timestamps, counts, trip_ids)
    return _Vertices(
        coords=coords,
        counts=counts,
        given_ms=given_ms,
        given_first=given_first,
        has_times=has_times,
        start_ms=start_ms,
        end_ms=end_ms,
        trip_ids=trip_ids,
        vehicle_ids=vehicle_ids,
        load_kg=load_kg if load_kg is not None else np.full(n_trips, np.nan),
    )


def _given_timestamps(timestamps: pa.Array | None, counts: np.ndarray, trip_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a list column of per-vertex times through its Arrow offsets (no per-trip loop).

    Returns the values of the list column in epoch milliseconds (without a copy when none is
    null, else as float64 with NaN for nulls), the index of each trip's first value among them,
    and per trip whether it has timestamps.
    """
    n_trips = len(counts)
    if timestamps is None or len(timestamps) == 0 or timestamps.null_count == len(timestamps):
        return np.zeros(0, dtype=np.int64), np.zeros(n_trips, dtype=np.int64), np.zeros(n_trips, dtype=bool)
    if not (pa.types.is_list(timestamps.type) or pa.types.is_large_list(timestamps.type)):
        timestamps = timestamps.cast(pa.list_(timestamps.type.value_type))
    present = timestamps.is_valid().to_numpy(zero_copy_only=False)
    # The offsets of a sliced list array index its whole, unsliced values array.
    offsets = timestamps.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    lengths = np.diff(offsets)
    mismatch = present & (lengths != counts)
    if mismatch.any():
        bad = int(np.flatnonzero(mismatch)[0])
        raise ValueError(
            f"trip {trip_ids[bad]!r} has {lengths[bad]} timestamps for {counts[bad]} vertices; "
            "validate trajectories before building segments (reason timestamps_count_mismatch)"
        )
    epoch_ms = pc.cast(timestamps.values, pa.int64())
    if epoch_ms.null_count:
        return epoch_ms.to_numpy(zero_copy_only=False).astype(np.float64), offsets[:-1], present
    return epoch_ms.to_numpy(), offsets[:-1], present


def _timestamps_as_arrow(trajectories: pd.DataFrame) -> pa.Array | None:
    """Return the ``timestamps`` column of a frame as an Arrow list array of epoch milliseconds."""
    if c.TIMESTAMPS not in trajectories.columns:
        return None
    column = trajectories[c.TIMESTAMPS]
    if isinstance(column.dtype, pd.ArrowDtype):
        return _combined(pa.chunked_array(column.array._pa_array))  # type: ignore[attr-defined]
    values = column.to_numpy(dtype=object)
    missing = pd.isna(column).to_numpy()
    values = np.where(missing, None, values)
    # pyarrow converts the numpy arrays inside the object column in C++, without a Python loop.
    return pa.array(values, type=pa.list_(pa.timestamp("ms")), from_pandas=True)


def _decode_wkb_linestrings(geometry: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """Decode little-endian WKB LineStrings into ``(coords, counts)``; None if unsupported.

    ``coords`` has two columns when every row is 2D and three when every row has Z. It is a
    view of the buffer that ``binary_slice`` returns.
    """
    if len(geometry) == 0:
        return np.zeros((0, 3)), np.zeros(0, np.int64)
    header = _wkb_linestring_header(geometry)
    # The float64 view below has the right values only on a little-endian machine.
    if header is None or sys.byteorder != "little":
        return None
    _, _, counts, width = header
    n_values = int(counts.sum()) * width
    if n_values == 0:
        return np.zeros((0, width)), counts

    # binary_slice copies the bytes after each 9-byte header into one new buffer, where the
    # coordinates of all rows are then one run of float64 values. The explicit stop (the longest
    # row) is needed: without one, pyarrow 26.0.1 overflows its output size estimate and raises
    # "Negative buffer resize" for an even number of rows.
    longest_row_bytes = 9 + int(counts.max()) * width * 8
    payload = pc.binary_slice(geometry, 9, longest_row_bytes)
    offset_type = np.int64 if pa.types.is_large_binary(payload.type) else np.int32
    first_byte = int(np.frombuffer(payload.buffers()[1], dtype=offset_type)[payload.offset])
    coords = np.frombuffer(payload.buffers()[2], dtype=np.float64, count=n_values, offset=first_byte).reshape(-1, width)
    if not coords.flags.aligned:
        coords = coords.copy()
    return coords, counts


def vertex_counts(geometry: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Return the number of vertices of each WKB geometry (LineString headers read with numpy)."""
    array = _combined(geometry)
    if len(array) == 0:
        return np.zeros(0, np.int64)
    header = _wkb_linestring_header(array)
    if header is not None:
        return header[2]
    geoms = shapely.from_wkb(array.to_numpy(zero_copy_only=False), on_invalid="ignore")
    return np.asarray(shapely.get_num_coordinates(geoms), dtype=np.int64)


def _wkb_linestring_header(geometry: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """Return ``(bytes, row starts, vertex counts, dimensions)`` when every row is a plain LineString."""
    n = len(geometry)
    if geometry.null_count or not (pa.types.is_binary(geometry.type) or pa.types.is_large_binary(geometry.type)):
        return None
    offset_type = np.int64 if pa.types.is_large_binary(geometry.type) else np.int32
    offsets = np.frombuffer(geometry.buffers()[1], dtype=offset_type)[geometry.offset: geometry.offset + n + 1].astype(np.int64)
    data = np.frombuffer(geometry.buffers()[2], dtype=np.uint8)
    start = offsets[:-1]
    size = offsets[1:] - start
    if (size < 9).any() or (data[start] != 1).any():
        return None
    fields = data[start[:, None] + np.arange(1, 9)].copy().view("<u4")  # (n, 2): type, vertex count
    kind, counts = fields[:, 0], fields[:, 1].astype(np.int64)
    three_d = np.isin(kind, _WKB_LINESTRING_3D)
    known = np.isin(kind, _WKB_LINESTRING_2D) | three_d
    dims = np.where(three_d, 3, 2)
    if not known.all() or (size != 9 + counts * dims * 8).any() or len(np.unique(dims)) != 1:
        return None
    return data, start, counts, int(dims[0])


def _repeat_categorical(values: np.ndarray, repeats: np.ndarray) -> pd.Categorical:
    """Return ``np.repeat(values, repeats)`` as a categorical, without one Python string per row."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    per_value = pd.Categorical.from_codes(codes, categories=pd.Index(uniques, dtype=object))
    # The codes keep the smallest integer type that from_codes chose for the categories.
    return pd.Categorical.from_codes(np.repeat(per_value.codes, repeats), dtype=per_value.dtype)


def _combined(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Return a column as one array. A single chunk is returned as it is, because combine_chunks would copy it."""
    if not isinstance(column, pa.ChunkedArray):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _arrow_epoch_ms(column: pa.ChunkedArray) -> np.ndarray:
    """Epoch milliseconds of a timestamp column as float64, NaN where null."""
    values = pc.cast(column.cast(pa.timestamp("ms", tz="UTC")), pa.int64()).cast(pa.float64())
    return values.fill_null(np.nan).to_numpy()


def _epoch_ms(series: pd.Series) -> np.ndarray:
    values = pd.to_datetime(series, utc=True)
    out = values.astype("datetime64[ms, UTC]").to_numpy(dtype="datetime64[ms]").astype(np.int64).astype(np.float64)
    out[values.isna().to_numpy()] = np.nan
    return out


def _to_timestamps(epoch_ms: np.ndarray) -> pd.DatetimeIndex:
    """Float epoch milliseconds (NaN for missing) -> ``datetime64[ms, UTC]``, floored to the ms."""
    values = np.full(len(epoch_ms), np.datetime64("NaT"), dtype="datetime64[ms]")
    finite = np.isfinite(epoch_ms)
    values[finite] = np.floor(epoch_ms[finite]).astype(np.int64).astype("datetime64[ms]")
    return pd.DatetimeIndex(values).tz_localize("UTC")


def _trip_frame(v: _Vertices, start_ms: np.ndarray, end_ms: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            c.TRIP_ID: v.trip_ids,
            c.VEHICLE_ID: v.vehicle_ids,
            c.START_TIME: _to_timestamps(np.asarray(start_ms, dtype=np.float64)),
            c.END_TIME: _to_timestamps(np.asarray(end_ms, dtype=np.float64)),
            c.LOAD_KG: v.load_kg,
            c.N_VERTICES: np.asarray(v.counts, dtype=np.int64),
            c.TIME_SOURCE: np.where(v.has_times, "vertex", "interpolated").astype(object),
        }
    )
