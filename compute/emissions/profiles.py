"""Per-segment and per-tachograph-interval fuel, summed per trip with ``np.bincount``.

Both functions work on whole partitions: every array is one element per segment (or tachograph
interval) and trips are addressed by their row position in the resolved trip frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba
import numpy as np
import pandas as pd

from compute import columns as c
from compute.emissions.physics import GRAVITY_M_S2

if TYPE_CHECKING:
    from compute.emissions.model import EmissionModel



@dataclass(frozen=True)
class SegmentProfile:
    """Segment-level fuel of T3 (physics) and T4/T5 (distance), and per-trip sums.

    Per-segment arrays: trip_position (-1 when the trip is unknown), physics_fuel, distance_fuel,
    duration_s, length_m. Per-trip arrays: all names starting with ``trip_`` plus timed_trip,
    gps_valid and sparse. Fuel is in the vehicle's fuel unit; physics fuel includes the
    real-world residual on its power-dependent part.
    """

    trip_position: np.ndarray
    physics_fuel: np.ndarray
    distance_fuel: np.ndarray
    duration_s: np.ndarray
    length_m: np.ndarray
    trip_physics_fuel: np.ndarray
    trip_distance_fuel: np.ndarray
    trip_length_m: np.ndarray
    trip_segment_count: np.ndarray
    trip_idle_s: np.ndarray
    trip_accel_factor: np.ndarray
    trip_missing_grade: np.ndarray
    trip_grade_clipped: np.ndarray
    trip_gps_jump: np.ndarray
    #: The trip has segments of a GPS standstill (``segments.StandstillRule``).
    trip_standstill: np.ndarray
    timed_trip: np.ndarray
    gps_valid: np.ndarray
    sparse: np.ndarray
    grade_pct: np.ndarray


@dataclass(frozen=True)
class TachoProfile:
    """Per-trip tachograph results: measured fuel (T1), modelled fuel (T2) and their validity."""

    measured_fuel: np.ndarray
    fuel_valid: np.ndarray
    model_fuel: np.ndarray
    speed_valid: np.ndarray
    idle_s: np.ndarray
    distance_m: np.ndarray
    has_fuel_rows: np.ndarray
    has_speed_rows: np.ndarray
    #: Records of the trip rejected in validation (see ``pipeline.rejected_tacho_records``).
    rejected_rows: np.ndarray


@dataclass(frozen=True)
class SegmentColumns:
    """Segment columns that both profiles read, converted to numpy once per partition.

    ``position`` is the row of each segment's trip in the trip frame (-1 when unknown), and
    ``start_s`` the segment start in seconds since 1970 (NaN when missing). ``grade_pct`` is the
    link gradient, else the grade from Z, NaN when both are missing (not clipped).
    """

    position: np.ndarray
    start_s: np.ndarray
    grade_pct: np.ndarray


def segment_columns(segments: pd.DataFrame, trip_frame: pd.DataFrame) -> SegmentColumns:
    """Convert the segment columns of :class:`SegmentColumns`."""
    if segments.empty:
        return SegmentColumns(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    link = segments[c.LINK_GRADIENT_PCT].to_numpy(dtype="float64", na_value=np.nan)
    from_z = segments[c.GRADE_PCT].to_numpy(dtype="float64", na_value=np.nan)
    return SegmentColumns(
        position=np.ascontiguousarray(_trip_positions(trip_frame, segments[c.TRIP_ID]), dtype=np.int64),
        start_s=_epoch_seconds(segments[c.T_START]),
        grade_pct=np.where(np.isnan(link), from_z, link),
    )


def segment_profile(
    segments: pd.DataFrame, trip_frame: pd.DataFrame, model: EmissionModel, columns: SegmentColumns | None = None
) -> SegmentProfile:
    """Compute fuel per segment with the T3 physics model and the T4/T5 distance model.

    The per-segment arithmetic and the per-trip sums run in one compiled pass
    (``_segment_pass``). ``columns`` are :func:`segment_columns` of the same frames, when the
    caller has them already.
    """
    settings = model.settings
    n_trips = len(trip_frame)
    columns = segment_columns(segments, trip_frame) if columns is None else columns
    position = columns.position
    valid = position >= 0
    safe = np.where(valid, position, 0)

    duration = segments[c.DURATION_S].to_numpy(dtype="float64")
    length = segments[c.LENGTH_M].to_numpy(dtype="float64")

    # T3 physics: the trip's vertex interval sets the acceleration-loss factor.
    timed_trip = (trip_frame[c.TIME_SOURCE] == "vertex").to_numpy() if n_trips else np.zeros(0, bool)
    timed_segment = valid & (duration > 0)
    median_interval = _group_median(safe[timed_segment], duration[timed_segment], n_trips)
    accel_factor = np.ones(n_trips)
    if settings.gps_accel_correction:
        accel_factor = np.interp(np.nan_to_num(median_interval, nan=1.0), model.accel_intervals_s, model.accel_factors)

    trip_values = _per_trip_arrays(trip_frame)
    per_trip = np.stack([trip_values(name) for name in _SEGMENT_TRIP_VALUES] + [
        _epoch_seconds(trip_frame[c.START_TIME]) if n_trips else np.zeros(0), accel_factor,
    ]) if n_trips else np.zeros((len(_SEGMENT_TRIP_VALUES) + 2, 0))
    physics, distance, grade_pct, sums = _segment_pass(
        position, duration, length,
        segments[c.SPEED_KMH].to_numpy(dtype="float64"), segments[c.ACCEL_M_S2].to_numpy(dtype="float64"), columns.grade_pct,
        columns.start_s, per_trip, n_trips,
        float(settings.idle_speed_kmh), float(settings.max_abs_grade_pct),
        bool(settings.cold_start), float(settings.cold_start_duration_s), 1.0 + settings.cold_start_excess_pct / 100.0,
        float(settings.max_gps_accel_m_s2), settings.max_gps_speed_change_kmh / 3.6,
    )
    (trip_physics, trip_distance, trip_length, segment_count, timed_count, speed_missing, trip_idle,
     missing_grade, clipped, jump) = sums
    sparse = ~(median_interval <= settings.max_gps_median_interval_s)
    trip_standstill = np.zeros(n_trips, dtype=bool)
    if c.STANDSTILL in segments.columns and n_trips:
        still = valid & segments[c.STANDSTILL].to_numpy(dtype=bool)
        trip_standstill = np.bincount(safe[still], minlength=n_trips) > 0
    gps_valid = timed_trip & (timed_count >= settings.min_gps_segments) & ~sparse & (speed_missing == 0)

    return SegmentProfile(
        trip_position=position,
        physics_fuel=physics,
        distance_fuel=distance,
        duration_s=duration,
        length_m=length,
        trip_physics_fuel=trip_physics,
        trip_distance_fuel=trip_distance,
        trip_length_m=trip_length,
        trip_segment_count=segment_count.astype(np.int64),
        trip_idle_s=trip_idle,
        trip_accel_factor=accel_factor,
        trip_missing_grade=missing_grade > 0,
        trip_grade_clipped=clipped > 0,
        trip_gps_jump=jump > 0,
        trip_standstill=trip_standstill,
        timed_trip=timed_trip,
        gps_valid=gps_valid,
        sparse=sparse,
        grade_pct=grade_pct,
    )


#: Trip columns the segment pass reads, in the row order of its ``per_trip`` matrix. The trip
#: start (epoch s) and the acceleration factor follow them as the last two rows.
_SEGMENT_TRIP_VALUES = (
    "mass_kg", "rolling_kw_s_per_m_per_t", "road_load_b_kw_s2_per_m2", "aero_kw_s3_per_m3", "inertia_factor",
    "regen_share", "idle_rate_per_s", "profile_fuel_per_kj", "traction_distance_share", "positive_force_n",
    "variable_share", "distance_fuel_per_km",
)


def segment_shares(
    position: np.ndarray, timed_trip: np.ndarray, physics_fuel: np.ndarray, distance_fuel: np.ndarray,
    duration_s: np.ndarray, length_m: np.ndarray, n_trips: int,
) -> np.ndarray:
    """Return each segment's share of its trip, used to split trip totals over the segments.

    The weight is the segment's T3 physics fuel on a trip with vertex times, else its T4/T5
    distance fuel. A trip whose weights do not sum to a positive number falls back to the
    durations, then the lengths, then equal shares. Segments of no trip (position -1) get NaN.
    """
    return _segment_shares(position, timed_trip, physics_fuel, distance_fuel, duration_s, length_m, n_trips)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _segment_shares(
    position: np.ndarray, timed_trip: np.ndarray, physics_fuel: np.ndarray, distance_fuel: np.ndarray,
    duration_s: np.ndarray, length_m: np.ndarray, n_trips: int,
) -> np.ndarray:
    """Compute the shares of :func:`segment_shares` in one loop per fallback level.

    Sums run in row order. Rows of no trip add 0 to trip 0, as the ``np.bincount`` over
    ``max(position, 0)`` that this loop replaced did.
    """
    n = position.shape[0]
    weight = np.empty(n, dtype=np.float64)
    for i in range(n):
        p = position[i]
        if p < 0:
            weight[i] = 0.0
        elif timed_trip[p]:
            weight[i] = physics_fuel[i]
        else:
            weight[i] = distance_fuel[i]

    totals = np.zeros(max(n_trips, 1), dtype=np.float64)
    for level in range(4):
        totals[:] = 0.0
        for i in range(n):
            totals[max(position[i], 0)] += weight[i]
        if level == 3:
            break
        changed = False
        for i in range(n):
            p = position[i]
            if p >= 0 and not totals[p] > 0:
                changed = True
                if level == 0:
                    weight[i] = duration_s[i]
                elif level == 1:
                    weight[i] = length_m[i]
                else:
                    weight[i] = 1.0
        if not changed:
            # No weight changed, so the sums of the next levels would equal these.
            break

    share = np.empty(n, dtype=np.float64)
    for i in range(n):
        p = position[i]
        share[i] = weight[i] / totals[p] if p >= 0 else np.nan
    return share


def spread_to_segments(share: np.ndarray, position: np.ndarray, trip_values: np.ndarray) -> np.ndarray:
    """Return ``share * trip_values[:, position]`` per segment, one row per row of ``trip_values``.

    ``trip_values`` has one column per trip. A segment of no trip (position -1) gets NaN.
    """
    return _spread_to_segments(
        np.ascontiguousarray(share, dtype=np.float64), np.ascontiguousarray(position, dtype=np.int64),
        np.ascontiguousarray(trip_values, dtype=np.float64),
    )


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _spread_to_segments(share: np.ndarray, position: np.ndarray, trip_values: np.ndarray) -> np.ndarray:
    out = np.empty((trip_values.shape[0], share.shape[0]))
    for i in range(share.shape[0]):
        p = position[i]
        for k in range(trip_values.shape[0]):
            out[k, i] = share[i] * trip_values[k, p] if p >= 0 else np.nan
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _nan_to_num(x: float, nan: float) -> float:
    """``numpy.nan_to_num`` of one value: NaN to ``nan``, infinities to the largest floats."""
    if np.isnan(x):
        return nan
    if np.isinf(x):
        return np.finfo(np.float64).max if x > 0 else -np.finfo(np.float64).max
    return x


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _segment_pass(
    position: np.ndarray, duration: np.ndarray, length: np.ndarray, speed_kmh: np.ndarray, accel_m_s2: np.ndarray,
    grade_in: np.ndarray, t_start_s: np.ndarray, per_trip: np.ndarray, n_trips: int,
    idle_speed_kmh: float, max_abs_grade_pct: float, cold_start: bool, cold_start_duration_s: float,
    cold_multiplier: float, max_gps_accel_m_s2: float, max_gps_speed_change_m_s: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                     np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """T3 physics and T4/T5 distance fuel of every segment, and their per-trip sums.

    Returns physics fuel, distance fuel and the clipped grade per segment, with 0 fuel for
    segments of unknown trips. The per-trip tuple contains physics fuel, distance fuel, length,
    segment count, timed segment count, timed segments without speed and idle seconds. It ends
    with the counts of segments with a missing grade, a clipped grade and a GPS jump.

    The physics is ``physics.wheel_power_kw`` with the inertia term on the mean speed of the
    segment and its predecessor. A segment whose speed change no vehicle can make (a GPS jump),
    and a segment with length but no duration, take the distance model instead.
    """
    n = position.shape[0]
    physics = np.zeros(n)
    distance = np.zeros(n)
    grade_out = np.zeros(n)
    trip_physics = np.zeros(n_trips)
    trip_distance = np.zeros(n_trips)
    trip_length = np.zeros(n_trips)
    segment_count = np.zeros(n_trips)
    timed_count = np.zeros(n_trips)
    speed_missing = np.zeros(n_trips)
    trip_idle = np.zeros(n_trips)
    missing_grade = np.zeros(n_trips)
    clipped = np.zeros(n_trips)
    jumps = np.zeros(n_trips)
    for i in range(n):
        dt = duration[i]
        speed = _nan_to_num(speed_kmh[i] / 3.6, 0.0)
        accel = _nan_to_num(accel_m_s2[i], 0.0)
        raw = grade_in[i]
        grade_missing = np.isnan(raw) and length[i] > 0
        if np.isnan(raw):
            raw = 0.0
        grade = min(max(raw, -max_abs_grade_pct), max_abs_grade_pct)
        grade_out[i] = grade
        trip = position[i]
        if trip < 0:
            continue
        mass_kg = per_trip[0, trip]
        mass_t = mass_kg / 1000.0
        idle_rate = per_trip[6, trip]
        cold = 1.0
        if cold_start and t_start_s[i] - per_trip[12, trip] < cold_start_duration_s:
            cold = cold_multiplier

        slope = grade / 100.0
        sin_theta = slope / np.sqrt(1.0 + slope * slope)
        inertia_speed = max(speed - 0.5 * accel * dt, 0.0)
        inertia = mass_t * per_trip[4, trip] * accel * inertia_speed
        if inertia > 0:
            inertia = inertia * per_trip[13, trip]
        resistance = per_trip[1, trip] * mass_t * speed + per_trip[2, trip] * speed * speed + per_trip[3, trip] * speed * speed * speed
        power = resistance + inertia + mass_t * GRAVITY_M_S2 * sin_theta * speed
        work = (max(power, 0.0) - per_trip[5, trip] * max(-power, 0.0)) * dt
        seg_physics = (idle_rate * dt + per_trip[7, trip] * work) * cold

        # A segment that moved within 0 s (two fixes stamped with the same second) has no speed.
        # It is not idling: it takes the distance model, in T3 as well (``untimed`` below).
        untimed = not dt > 0 and length[i] > 0
        idle = not untimed and speed * 3.6 < idle_speed_kmh
        if idle:
            seg_distance = idle_rate * dt * cold
        else:
            climbing_n = mass_kg * GRAVITY_M_S2 * sin_theta * per_trip[8, trip]
            force_ratio = _nan_to_num(1.0 + climbing_n / per_trip[9, trip], 1.0)
            share = _nan_to_num(per_trip[10, trip], 1.0)
            multiplier = (1.0 - share) + share * max(force_ratio, 0.0)
            seg_distance = length[i] / 1000.0 * per_trip[11, trip] * multiplier * cold

        positive_dt = max(dt, 0.0)
        jump = abs(accel) * positive_dt > min(max_gps_accel_m_s2 * positive_dt, max_gps_speed_change_m_s)
        if jump or untimed:
            seg_physics = seg_distance
        physics[i] = seg_physics
        distance[i] = seg_distance

        trip_physics[trip] += seg_physics
        trip_distance[trip] += seg_distance
        trip_length[trip] += length[i]
        segment_count[trip] += 1.0
        if dt > 0:
            timed_count[trip] += 1.0
            if not np.isfinite(speed_kmh[i]):
                speed_missing[trip] += 1.0
        if idle:
            trip_idle[trip] += dt
        if grade_missing:
            missing_grade[trip] += 1.0
        if grade != raw:
            clipped[trip] += 1.0
        if jump:
            jumps[trip] += 1.0
    sums = (trip_physics, trip_distance, trip_length, segment_count, timed_count, speed_missing, trip_idle, missing_grade, clipped, jumps)
    return physics, distance, grade_out, sums


def tacho_profile(
    tacho: pd.DataFrame, segments: pd.DataFrame, trip_frame: pd.DataFrame, model: EmissionModel,
    columns: SegmentColumns | None = None,
) -> TachoProfile:
    """Sum measured fuel (T1) and run the physics model on 1 Hz tachograph speed (T2).

    Rows are paired with the next row of the same trip into intervals; an interval has the mean
    of the two speeds, the acceleration (v1 - v0) / dt and the grade of the segment running at
    its start. Validation: rows must span ``min_tacho_coverage`` of the trip duration without a
    gap above ``max_tacho_gap_s``; T2 also needs a median interval of at most
    ``max_tacho_median_interval_s``.

    The rows are walked once by a compiled loop (``_tacho_trip_sums``) that keeps the per-trip
    sums as it goes, so no per-interval array is built. ``columns`` are :func:`segment_columns`
    of ``segments``, when the caller has them already.
    """
    settings = model.settings
    n_trips = len(trip_frame)
    empty = np.zeros(n_trips)
    none = np.zeros(n_trips, dtype=bool)
    if tacho.empty or not n_trips:
        return TachoProfile(empty, none, empty, none, empty.copy(), empty.copy(), none, none, empty.copy())

    position = _trip_positions(trip_frame, tacho[c.TRIP_ID])
    keep = position >= 0
    rejected_rows = np.zeros(n_trips)
    all_seconds = _epoch_seconds(tacho[c.TS])
    if c.TACHO_REJECTED in tacho.columns:
        # Rejected records only count against T1's fuel coverage. In the walk they would cut the
        # T2 intervals on either side of them, which span the missing second well enough.
        rejected = tacho[c.TACHO_REJECTED].to_numpy(dtype=bool)
        rejected_rows = _distinct_per_trip(position[keep & rejected], all_seconds[keep & rejected], n_trips)
        keep &= ~rejected
    seconds = all_seconds[keep]
    position = position[keep].astype(np.int64)
    speed_kmh = tacho[c.SPEED_KMH].to_numpy(dtype="float64")[keep]
    fuel_ml = tacho[c.FUEL_ML].to_numpy(dtype="float64")[keep]
    if not _is_sorted_by_trip_and_time(position, seconds):
        order = np.lexsort((seconds, position))
        seconds, position, speed_kmh, fuel_ml = seconds[order], position[order], speed_kmh[order], fuel_ml[order]

    grades = _segment_grades(segments, trip_frame, model, columns)
    trip_values = _per_trip_arrays(trip_frame)
    per_trip = np.stack([trip_values(name) for name in _TACHO_TRIP_VALUES])
    trip_start_s = _epoch_seconds(trip_frame[c.START_TIME])
    sums = _tacho_trip_sums(
        position, seconds, speed_kmh, fuel_ml, n_trips, per_trip, trip_start_s, *grades,
        bool(settings.cold_start), float(settings.cold_start_duration_s), 1.0 + settings.cold_start_excess_pct / 100.0,
        float(settings.idle_speed_kmh),
    )
    rows, fuel_rows, speed_rows, measured_ml, first, last, max_gap, median_dt, model_fuel, idle_s, distance_m = sums

    trip_duration = (trip_frame[c.END_TIME] - trip_frame[c.START_TIME]).dt.total_seconds().to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        coverage = np.where(trip_duration > 0, (last - first) / trip_duration, rows > 0)
    spans_trip = (rows >= 2) & (coverage >= settings.min_tacho_coverage) & (max_gap <= settings.max_tacho_gap_s)
    liquid = (trip_frame["unit"] == "l").to_numpy()
    fuel_valid = spans_trip & liquid & (fuel_rows >= settings.min_tacho_coverage * (rows + rejected_rows))
    speed_valid = (
        spans_trip & (speed_rows >= settings.min_tacho_coverage * rows) & (median_dt <= settings.max_tacho_median_interval_s)
    )
    return TachoProfile(
        measured_fuel=measured_ml / 1000.0,
        fuel_valid=fuel_valid,
        model_fuel=model_fuel,
        speed_valid=speed_valid,
        idle_s=idle_s,
        distance_m=distance_m,
        has_fuel_rows=fuel_rows > 0,
        has_speed_rows=speed_rows > 0,
        rejected_rows=rejected_rows,
    )


#: Trip columns the tachograph loop reads, in the row order of its ``per_trip`` matrix.
_TACHO_TRIP_VALUES = (
    "mass_kg", "rolling_kw_s_per_m_per_t", "road_load_b_kw_s2_per_m2", "aero_kw_s3_per_m3", "inertia_factor",
    "regen_share", "idle_rate_per_s", "profile_fuel_per_kj",
)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _tacho_trip_sums(
    position: np.ndarray, seconds: np.ndarray, speed_kmh: np.ndarray, fuel_ml: np.ndarray, n_trips: int,
    per_trip: np.ndarray, trip_start_s: np.ndarray,
    seg_first: np.ndarray, seg_end: np.ndarray, seg_start_s: np.ndarray, seg_grade: np.ndarray,
    cold_start: bool, cold_start_duration_s: float, cold_multiplier: float, idle_speed_kmh: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Walk tachograph rows sorted by (trip, time) and return per-trip sums.

    Returns rows, rows with fuel, rows with speed, measured fuel (ml, missing as 0), first and last
    time, largest and median gap between rows (NaN without intervals), and over the usable
    intervals (both speeds present, dt > 0): modelled fuel, idle seconds and distance (m).
    The interval arithmetic is that of ``physics.wheel_power_kw`` and ``physics.effective_work_kj``.
    """
    rows = np.zeros(n_trips)
    fuel_rows = np.zeros(n_trips)
    speed_rows = np.zeros(n_trips)
    measured = np.zeros(n_trips)
    first = np.full(n_trips, np.nan)
    last = np.full(n_trips, np.nan)
    max_gap = np.full(n_trips, np.nan)
    median_dt = np.full(n_trips, np.nan)
    model_fuel = np.zeros(n_trips)
    idle_s = np.zeros(n_trips)
    distance = np.zeros(n_trips)
    n = position.shape[0]
    gaps = np.empty(max(n, 1))
    i = 0
    while i < n:
        trip = position[i]
        end = i
        while end < n and position[end] == trip:
            end += 1
        mass_t = per_trip[0, trip] / 1000.0
        rolling = per_trip[1, trip]
        road_b = per_trip[2, trip]
        aero = per_trip[3, trip]
        inertia_factor = per_trip[4, trip]
        regen = per_trip[5, trip]
        idle_rate = per_trip[6, trip]
        fuel_per_kj = per_trip[7, trip]
        for r in range(i, end):
            rows[trip] += 1.0
            if np.isfinite(fuel_ml[r]):
                fuel_rows[trip] += 1.0
                measured[trip] += fuel_ml[r]
            if np.isfinite(speed_kmh[r]):
                speed_rows[trip] += 1.0
        first[trip] = seconds[i]
        last[trip] = seconds[end - 1]
        n_gaps = 0
        # Rows of a trip come in time order, so the segment running at each interval start only
        # moves forward: ``seg`` is the last segment starting at or before the previous interval.
        seg_lo = seg_first[trip]
        seg_hi = seg_end[trip]
        seg = seg_lo - 1
        for r in range(i, end - 1):
            dt = seconds[r + 1] - seconds[r]
            gaps[n_gaps] = dt
            n_gaps += 1
            v0 = speed_kmh[r] / 3.6
            v1 = speed_kmh[r + 1] / 3.6
            if not (np.isfinite(v0) and np.isfinite(v1) and dt > 0):
                continue
            speed = 0.5 * (v0 + v1)
            accel = (v1 - v0) / dt
            # The rule of ``_grade_of`` (dt > 0 above means the time is not NaN).
            while seg + 1 < seg_hi and seg_start_s[seg + 1] <= seconds[r]:
                seg += 1
            grade = seg_grade[seg] if seg >= seg_lo else 0.0
            slope = grade / 100.0
            sin_theta = slope / np.sqrt(1.0 + slope * slope)
            inertia = mass_t * inertia_factor * accel * speed
            resistance = rolling * mass_t * speed + road_b * speed * speed + aero * speed * speed * speed
            climbing = mass_t * GRAVITY_M_S2 * sin_theta * speed
            power = resistance + inertia + climbing
            work = (max(power, 0.0) - regen * max(-power, 0.0)) * dt
            cold = cold_multiplier if cold_start and seconds[r] - trip_start_s[trip] < cold_start_duration_s else 1.0
            model_fuel[trip] += (idle_rate * dt + fuel_per_kj * work) * cold
            if speed * 3.6 < idle_speed_kmh:
                idle_s[trip] += dt
            distance[trip] += speed * dt
        if n_gaps:
            max_gap[trip] = gaps[:n_gaps].max()
            median_dt[trip] = np.median(gaps[:n_gaps])
        i = end
    return rows, fuel_rows, speed_rows, measured, first, last, max_gap, median_dt, model_fuel, idle_s, distance


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _grade_of(t: float, trip: int, seg_first: np.ndarray, seg_end: np.ndarray, seg_start_s: np.ndarray, seg_grade: np.ndarray) -> float:
    """Return the grade of the last segment of ``trip`` that starts at or before ``t`` (0 when none).

    Segments of a trip are ``[seg_first[trip], seg_end[trip])`` of arrays sorted by (trip, start
    time, segment order), so the last of equal start times is the last in segment order.
    """
    lo = seg_first[trip]
    hi = seg_end[trip]
    if hi <= lo:
        return 0.0
    j = lo + np.searchsorted(seg_start_s[lo:hi], t, side="right") - 1
    if j < lo:
        return 0.0
    return seg_grade[j]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _grades_at(start_s: np.ndarray, interval_trip: np.ndarray, seg_first: np.ndarray, seg_end: np.ndarray,
               seg_start_s: np.ndarray, seg_grade: np.ndarray) -> np.ndarray:
    out = np.zeros(start_s.shape[0])
    for k in range(start_s.shape[0]):
        out[k] = _grade_of(start_s[k], interval_trip[k], seg_first, seg_end, seg_start_s, seg_grade)
    return out


def _per_trip_arrays(trip_frame: pd.DataFrame) -> Callable[[str], np.ndarray]:
    """Return a lookup of trip columns as float64 arrays, each converted once."""
    cache: dict[str, np.ndarray] = {}

    def values(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = trip_frame[name].to_numpy(dtype="float64")
        return cache[name]

    return values


def _grade_at(
    start_s: np.ndarray, interval_trip: np.ndarray, segments: pd.DataFrame, trip_frame: pd.DataFrame, model: EmissionModel
) -> np.ndarray:
    """Return the grade of the segment each tachograph interval starts in (0 without segments).

    The segment is the last one of the same trip that starts at or before the interval. Of
    segments with equal start times the last in segment order wins. Both are the rules of a
    backward ``pandas.merge_asof`` by trip. Start times are compared exactly.
    """
    if start_s.size == 0:
        return np.zeros(0)
    grades = _segment_grades(segments, trip_frame, model)
    return _grades_at(np.asarray(start_s, dtype=np.float64), np.asarray(interval_trip, dtype=np.int64), *grades)


def _segment_grades(
    segments: pd.DataFrame, trip_frame: pd.DataFrame, model: EmissionModel, columns: SegmentColumns | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Segments of known trips sorted by (trip, start time, segment order), for ``_grade_of``.

    Returns per trip the first and end row, then per row the start time (epoch s) and the grade:
    the link gradient, else the grade from Z, else 0, clipped to ``max_abs_grade_pct``.
    """
    n_trips = len(trip_frame)
    if segments.empty:
        zeros = np.zeros(n_trips, dtype=np.int64)
        return zeros, zeros, np.zeros(0), np.zeros(0)
    limit = model.settings.max_abs_grade_pct
    columns = segment_columns(segments, trip_frame) if columns is None else columns
    known = columns.position >= 0
    everything = bool(known.all())
    seg_trip = columns.position if everything else columns.position[known]
    seg_start_s = columns.start_s if everything else columns.start_s[known]
    grade = columns.grade_pct if everything else columns.grade_pct[known]
    seg_grade = np.clip(np.where(np.isnan(grade), 0.0, grade), -limit, limit)
    if not _is_sorted_by_trip_and_time(seg_trip, seg_start_s):
        order = np.lexsort((np.arange(seg_trip.size), seg_start_s, seg_trip))
        seg_trip, seg_start_s, seg_grade = seg_trip[order], seg_start_s[order], seg_grade[order]
    trips = np.arange(n_trips)
    seg_first = np.searchsorted(seg_trip, trips, side="left").astype(np.int64)
    seg_end = np.searchsorted(seg_trip, trips, side="right").astype(np.int64)
    return seg_first, seg_end, np.ascontiguousarray(seg_start_s), np.ascontiguousarray(seg_grade)


def _trip_positions(trip_frame: pd.DataFrame, trip_ids: pd.Series) -> np.ndarray:
    """Return the row of ``trip_frame`` of every trip id (-1 when absent).

    A categorical column is looked up once per category instead of once per row.
    """
    index = pd.Index(trip_frame[c.TRIP_ID])
    if isinstance(trip_ids.dtype, pd.CategoricalDtype):
        codes = trip_ids.cat.codes.to_numpy()
        by_category = index.get_indexer(trip_ids.cat.categories)
        return np.where(codes >= 0, by_category[np.maximum(codes, 0)] if by_category.size else -1, -1)
    return index.get_indexer(trip_ids)


def _is_sorted_by_trip_and_time(position: np.ndarray, seconds: np.ndarray) -> bool:
    """Tell whether rows are already in (trip, time) order, as the aligned tachograph files store
    them and as segments come from a piece. A NaN time is out of order."""
    return bool(_sorted_by_key_and_value(np.ascontiguousarray(position, dtype=np.int64), np.ascontiguousarray(seconds, dtype=np.float64)))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _sorted_by_key_and_value(key: np.ndarray, value: np.ndarray) -> bool:
    for i in range(key.shape[0] - 1):
        step = key[i + 1] - key[i]
        if not (step > 0 or (step == 0 and value[i + 1] - value[i] >= 0)):
            return False
    return True


def _group_median(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Return the median of ``values`` per group ``0 .. n_groups - 1``, skipping NaN (NaN for none).

    Groups in ascending order (segments of a piece) go through a compiled loop that takes the
    median of each run. It gives the values of the ``pandas`` groupby ``median``, which also
    averages the two middle values of an even count as ``(a + b) / 2``. Other orders use pandas.
    """
    if values.size == 0:
        return np.full(n_groups, np.nan)
    groups = np.ascontiguousarray(groups, dtype=np.int64)
    values = np.ascontiguousarray(values, dtype=np.float64)
    if groups[0] >= 0 and groups[-1] < n_groups and _ascending(groups):
        return _run_medians(groups, values, n_groups)
    return pd.Series(values).groupby(groups).median().reindex(range(n_groups)).to_numpy(dtype="float64")


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _ascending(key: np.ndarray) -> bool:
    for i in range(key.shape[0] - 1):
        if key[i + 1] < key[i]:
            return False
    return True


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _run_medians(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    out = np.full(n_groups, np.nan)
    scratch = np.empty(values.shape[0])
    n = values.shape[0]
    i = 0
    while i < n:
        end = i
        count = 0
        while end < n and groups[end] == groups[i]:
            if not np.isnan(values[end]):
                scratch[count] = values[end]
                count += 1
            end += 1
        if count:
            out[groups[i]] = np.median(scratch[:count])
        i = end
    return out


def _distinct_per_trip(position: np.ndarray, seconds: np.ndarray, n_trips: int) -> np.ndarray:
    """Count the distinct times per trip, as float64.

    Copies of one vehicle and second that differ and lie in two validation pieces (two files, or
    two parts of one) appear in the rejects of both, and each alignment task places its own row
    for that second.
    """
    if not len(position):
        return np.zeros(n_trips)
    distinct = pd.DataFrame({"trip": position, "seconds": seconds}).drop_duplicates()
    return np.bincount(distinct["trip"].to_numpy(dtype=np.int64), minlength=n_trips).astype(np.float64)


def _epoch_seconds(times: pd.Series) -> np.ndarray:
    """Return seconds since 1970 as float64, NaN for a missing time.

    The integer count of the column's unit is divided by the units per second, with no
    intermediate timedelta array. For whole seconds and milliseconds that is the exact value
    rounded once, which ``(times - epoch) / Timedelta(seconds=1)`` misses by an ulp at times.
    """
    dtype = times.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        # Already datetimes (naive ones count as UTC): no conversion, the integer buffer is read.
        values = pd.DatetimeIndex(times)
    else:
        values = pd.DatetimeIndex(pd.to_datetime(times, utc=True))
    ticks = values.asi8
    seconds = ticks / float(_UNITS_PER_SECOND[values.unit])
    seconds[ticks == np.iinfo(np.int64).min] = np.nan  # NaT
    return seconds


_UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
