"""The compiled T3 segment pass and T2 tachograph loop against independent numpy references.

The references below restate the rules of ``compute.emissions.profiles`` with array code. The
per-segment and per-interval power and work come from ``physics.wheel_power_kw`` and
``physics.effective_work_kj``. Per-trip sums come from ``np.bincount`` or a pandas groupby, and
the grade of a tachograph interval from a backward ``pandas.merge_asof`` by trip. The random
pieces are built to be awkward: unsorted and duplicated rows, missing values, grades beyond the
clip, trips without segments or tachograph rows, and rows of trips that are not in the trip frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from emission_inputs import START, TIME_DTYPE, make_trips, make_vehicles

from compute import columns as c
from compute.emissions import EmissionSettings, estimate_trips, load_model
from compute.emissions import profiles as p
from compute.emissions.model import FUEL_MEASURED, GPS_PROFILE, TACHO_PROFILE, EmissionModel, resolve_trip_vehicles
from compute.emissions.physics import GRAVITY_M_S2, effective_work_kj, wheel_power_kw

RELATIVE_TOLERANCE = 1e-9
_EPOCH = pd.Timestamp(0, tz="UTC")

VEHICLES: list[dict[str, object]] = [
    {"vehicle_id": "car", "vehicle_class": "passenger", "fuel_type": "gasoline", "catalog": 20.0, "test_cycle": "WLTC"},
    {"vehicle_id": "car-default", "vehicle_class": "passenger", "fuel_type": "gasoline"},
    {"vehicle_id": "hybrid", "vehicle_class": "passenger", "fuel_type": "hybrid", "catalog": 30.0, "test_cycle": "JC08"},
    {"vehicle_id": "kei", "vehicle_class": "kei_truck", "fuel_type": "gasoline", "catalog": 18.0, "test_cycle": "JC08"},
    {"vehicle_id": "truck", "vehicle_class": "heavy_truck", "fuel_type": "diesel", "max_payload_kg": 10_000.0},
    {"vehicle_id": "bus", "vehicle_class": "bus", "fuel_type": "cng"},
    {"vehicle_id": "ev", "vehicle_class": "passenger", "fuel_type": "electric"},
]


@dataclass(frozen=True)
class Piece:
    """Inputs of ``estimate_trips`` for one random piece."""

    segments: pd.DataFrame
    trips: pd.DataFrame
    vehicles: pd.DataFrame
    tacho: pd.DataFrame


@pytest.fixture(scope="module")
def cold_model() -> EmissionModel:
    """Model with the cold-start excess switched on and a 5 % grade clip."""
    return load_model(EmissionSettings(cold_start=True, cold_start_duration_s=90.0, cold_start_excess_pct=25.0, max_abs_grade_pct=5.0))


@pytest.fixture(scope="module")
def lenient_model() -> EmissionModel:
    """Model whose tachograph checks pass easily, so that many trips take T1 and T2."""
    return load_model(EmissionSettings(min_tacho_coverage=0.5, max_tacho_gap_s=600.0, max_tacho_median_interval_s=10.0))


# -- random pieces -----------------------------------------------------------------------------


def _seconds(times: pd.Series) -> np.ndarray:
    return ((pd.to_datetime(times, utc=True) - _EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype="float64")


def _random_piece(seed: int, n_trips: int = 30, shuffle: bool = True) -> Piece:
    """Build a piece with every awkward case the profiles must take.

    Each trip has 0 to 40 segments. Some have zero duration, missing speed, acceleration or
    grade, grades up to 30 %, equal start times or large speed changes, and one trip has missing
    durations. Each trip also has 0 to 800 tachograph rows about 1 s apart, some with equal
    timestamps, zero or missing speed, missing fuel or a long gap.
    Segments and rows of the unknown trip ``ghost`` are mixed in; rows are shuffled unless
    ``shuffle`` is False.
    """
    rng = np.random.default_rng(seed)
    trip_rows = []
    segment_parts = []
    tacho_parts = []
    for i in range(n_trips):
        trip_id = f"trip-{i:03d}"
        vehicle = str(VEHICLES[i % len(VEHICLES)]["vehicle_id"]) if i % 11 != 10 else "unknown-vehicle"
        start = START + pd.Timedelta(seconds=float(rng.integers(0, 40_000)) + rng.uniform(0, 1))
        n_segments = int(rng.choice([0, 1, 2, int(rng.integers(3, 40))]))
        duration = rng.choice([1.0, 2.0, 5.0, 12.0, 45.0], n_segments) * rng.uniform(0.5, 1.5, n_segments)
        duration[rng.random(n_segments) < 0.08] = 0.0
        if i == 7:
            duration[rng.random(n_segments) < 0.2] = np.nan
        offsets = np.concatenate([[0.0], np.nancumsum(duration)[:-1]]) if n_segments else np.zeros(0)
        repeat = rng.random(n_segments) < 0.1
        offsets[1:][repeat[1:]] = offsets[:-1][repeat[1:]]
        length = rng.uniform(0, 400, n_segments) * (rng.random(n_segments) > 0.1)
        with np.errstate(divide="ignore", invalid="ignore"):
            speed_kmh = np.where(duration > 0, length / duration * 3.6, np.nan)
        speed_kmh[rng.random(n_segments) < 0.03] = np.nan
        accel = rng.normal(0, 1.5, n_segments) * np.where(rng.random(n_segments) < 0.1, 8.0, 1.0)
        accel[rng.random(n_segments) < 0.05] = np.nan
        grade = rng.uniform(-30, 30, n_segments)
        grade[rng.random(n_segments) < 0.3] = np.nan
        link_gradient = rng.uniform(-20, 20, n_segments)
        link_gradient[rng.random(n_segments) < 0.6] = np.nan
        segment_parts.append(_segment_frame(trip_id, vehicle, start, offsets, duration, length, speed_kmh, accel, grade, link_gradient))

        trip_duration_s = float(np.nansum(duration)) if n_segments else float(rng.uniform(0, 200))
        time_source = "vertex" if rng.random() < 0.8 else "interpolated"
        trip_rows.append({"trip_id": trip_id, "vehicle_id": vehicle, "start": start, "duration_s": trip_duration_s,
                          "time_source": time_source, "load_kg": float(rng.choice([np.nan, 500.0, 3000.0]))})

        # Most trips get rows about 1 s apart over their whole duration. Some get a few rows or none.
        whole_trip_rows = min(int(trip_duration_s) + 2, 800)
        n_rows = int(rng.choice([0, 1, 2, int(rng.integers(3, 120)), whole_trip_rows, whole_trip_rows]))
        steps = rng.choice([0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0], n_rows)
        if n_rows > 3 and rng.random() < 0.3:
            steps[rng.integers(1, n_rows)] = 25.0
        ts = np.cumsum(steps) - (steps[0] if n_rows else 0.0) + rng.uniform(-0.5, 0.5)
        row_speed = np.abs(rng.normal(40, 25, n_rows))
        row_speed[rng.random(n_rows) < 0.1] = 0.0
        row_speed[rng.random(n_rows) < 0.02] = np.nan
        row_fuel = rng.uniform(0, 3, n_rows)
        row_fuel[rng.random(n_rows) < 0.02] = np.nan
        tacho_parts.append(_tacho_frame(trip_id, vehicle, start, ts, row_speed, row_fuel))

    segment_parts.append(_segment_frame("ghost", "car", START, np.arange(3.0), np.ones(3), np.full(3, 10.0),
                                        np.full(3, 36.0), np.zeros(3), np.ones(3), np.full(3, np.nan)))
    tacho_parts.append(_tacho_frame("ghost", "car", START, np.arange(5.0), np.full(5, 20.0), np.ones(5)))
    segments = pd.concat(segment_parts, ignore_index=True)
    tacho = pd.concat(tacho_parts, ignore_index=True)
    if shuffle:
        segments = segments.iloc[rng.permutation(len(segments))].reset_index(drop=True)
        tacho = tacho.iloc[rng.permutation(len(tacho))].reset_index(drop=True)
    return Piece(segments, make_trips(trip_rows), make_vehicles(VEHICLES), tacho)


def _segment_frame(
    trip_id: str, vehicle_id: str, start: pd.Timestamp, offsets_s: np.ndarray, duration_s: np.ndarray, length_m: np.ndarray,
    speed_kmh: np.ndarray, accel_m_s2: np.ndarray, grade_pct: np.ndarray, link_gradient_pct: np.ndarray,
) -> pd.DataFrame:
    n = len(offsets_s)
    return pd.DataFrame(
        {
            c.TRIP_ID: pd.Series([trip_id] * n, dtype="str"),
            c.VEHICLE_ID: pd.Series([vehicle_id] * n, dtype="str"),
            c.SEG_INDEX: np.arange(n, dtype="int32"),
            c.T_START: pd.Series(start + pd.to_timedelta(np.asarray(offsets_s, dtype=float), unit="s")).astype(TIME_DTYPE),
            c.DURATION_S: np.asarray(duration_s, dtype="float64"),
            c.LENGTH_M: np.asarray(length_m, dtype="float64"),
            c.SPEED_KMH: np.asarray(speed_kmh, dtype="float64"),
            c.ACCEL_M_S2: np.asarray(accel_m_s2, dtype="float64"),
            c.GRADE_PCT: np.asarray(grade_pct, dtype="float64"),
            c.ROAD_CLASS: pd.Series([None] * n, dtype=object),
            c.AREA_TYPE: pd.Series([None] * n, dtype=object),
            c.SPEED_LIMIT_KMH: np.full(n, np.nan),
            c.LINK_GRADIENT_PCT: np.asarray(link_gradient_pct, dtype="float64"),
            c.MATCHED: np.zeros(n, dtype=bool),
        }
    )


def _tacho_frame(
    trip_id: str, vehicle_id: str, start: pd.Timestamp, offsets_s: np.ndarray, speed_kmh: np.ndarray, fuel_ml: np.ndarray,
) -> pd.DataFrame:
    n = len(offsets_s)
    return pd.DataFrame(
        {
            c.TRIP_ID: pd.Series([trip_id] * n, dtype="str"),
            c.VEHICLE_ID: pd.Series([vehicle_id] * n, dtype="str"),
            c.TS: pd.Series(start + pd.to_timedelta(np.asarray(offsets_s, dtype=float), unit="s")).astype(TIME_DTYPE),
            c.SPEED_KMH: np.asarray(speed_kmh, dtype="float64"),
            c.ENGINE_RPM: np.full(n, np.nan),
            c.FUEL_ML: np.asarray(fuel_ml, dtype="float64"),
        }
    )


# -- references --------------------------------------------------------------------------------


def _positions(trip_frame: pd.DataFrame, trip_ids: pd.Series) -> np.ndarray:
    row_of = {trip_id: row for row, trip_id in enumerate(trip_frame[c.TRIP_ID].astype(str))}
    return np.array([row_of.get(str(trip_id), -1) for trip_id in trip_ids], dtype=np.int64)


def _cold_multiplier(elapsed_s: np.ndarray, model: EmissionModel) -> np.ndarray:
    settings = model.settings
    if not settings.cold_start:
        return np.ones(len(elapsed_s))
    return np.where(elapsed_s < settings.cold_start_duration_s, 1.0 + settings.cold_start_excess_pct / 100.0, 1.0)


def _reference_segments(segments: pd.DataFrame, trip_frame: pd.DataFrame, model: EmissionModel) -> dict[str, np.ndarray]:
    """Compute T3 physics and T4/T5 distance fuel per segment and their per-trip sums, with numpy."""
    settings = model.settings
    n_trips = len(trip_frame)
    position = _positions(trip_frame, segments[c.TRIP_ID])
    known = position >= 0
    trip = np.where(known, position, 0)

    def value(name: str) -> np.ndarray:
        return trip_frame[name].to_numpy(dtype="float64")[trip]

    duration = segments[c.DURATION_S].to_numpy(dtype="float64")
    length = segments[c.LENGTH_M].to_numpy(dtype="float64")
    speed_kmh = segments[c.SPEED_KMH].to_numpy(dtype="float64")
    speed = np.nan_to_num(speed_kmh / 3.6, nan=0.0)
    accel = np.nan_to_num(segments[c.ACCEL_M_S2].to_numpy(dtype="float64"), nan=0.0)
    link = segments[c.LINK_GRADIENT_PCT].to_numpy(dtype="float64")
    raw = np.where(np.isnan(link), segments[c.GRADE_PCT].to_numpy(dtype="float64"), link)
    missing_grade = np.isnan(raw) & (length > 0)
    raw = np.nan_to_num(raw, nan=0.0)
    grade = np.clip(raw, -settings.max_abs_grade_pct, settings.max_abs_grade_pct)

    # The acceleration-loss factor of a trip comes from the median duration of its timed segments.
    timed = known & (duration > 0)
    median = pd.Series(duration[timed]).groupby(position[timed]).median().reindex(range(n_trips)).to_numpy(dtype="float64")
    factor = np.ones(n_trips)
    if settings.gps_accel_correction:
        factor = np.interp(np.where(np.isnan(median), 1.0, median), model.accel_intervals_s, model.accel_factors)

    cold = _cold_multiplier(_seconds(segments[c.T_START]) - _seconds(trip_frame[c.START_TIME])[trip], model)
    power = wheel_power_kw(
        speed, accel, grade, value("mass_kg"), value("rolling_kw_s_per_m_per_t"), value("road_load_b_kw_s2_per_m2"),
        value("aero_kw_s3_per_m3"), value("inertia_factor"), factor[trip], np.maximum(speed - 0.5 * accel * duration, 0.0),
    )
    work = effective_work_kj(power, duration, value("regen_share"))
    physics = (value("idle_rate_per_s") * duration + value("profile_fuel_per_kj") * work) * cold

    # A segment with length but no duration moved: not idle, and it takes the distance model in T3 too.
    untimed = ~(duration > 0) & (length > 0)
    idle = ~untimed & (speed * 3.6 < settings.idle_speed_kmh)
    slope = grade / 100.0
    sin_theta = slope / np.sqrt(1.0 + slope**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        force_ratio = 1.0 + value("mass_kg") * GRAVITY_M_S2 * sin_theta * value("traction_distance_share") / value("positive_force_n")
    share = np.nan_to_num(value("variable_share"), nan=1.0)
    multiplier = (1.0 - share) + share * np.maximum(np.nan_to_num(force_ratio, nan=1.0), 0.0)
    distance = np.where(idle, value("idle_rate_per_s") * duration, length / 1000.0 * value("distance_fuel_per_km") * multiplier) * cold

    moving_s = np.maximum(duration, 0.0)
    jump = np.abs(accel) * moving_s > np.minimum(settings.max_gps_accel_m_s2 * moving_s, settings.max_gps_speed_change_kmh / 3.6)
    physics = np.where(jump | untimed, distance, physics)
    physics = np.where(known, physics, 0.0)
    distance = np.where(known, distance, 0.0)

    def per_trip(weights: np.ndarray) -> np.ndarray:
        return np.bincount(position[known], weights=np.asarray(weights, dtype=float)[known], minlength=n_trips)

    timed_count = per_trip(timed)
    speed_missing = per_trip(timed & ~np.isfinite(speed_kmh))
    sparse = ~(median <= settings.max_gps_median_interval_s)
    timed_trip = (trip_frame[c.TIME_SOURCE] == "vertex").to_numpy()
    return {
        "physics_fuel": physics,
        "distance_fuel": distance,
        "grade_pct": grade,
        "trip_physics_fuel": per_trip(physics),
        "trip_distance_fuel": per_trip(distance),
        "trip_physics_scale": per_trip(np.abs(physics)),
        "trip_distance_scale": per_trip(np.abs(distance)),
        "trip_length_m": per_trip(length),
        "trip_segment_count": per_trip(np.ones(len(segments))).astype(np.int64),
        "trip_idle_s": per_trip(np.where(idle, duration, 0.0)),
        "trip_accel_factor": factor,
        "trip_missing_grade": per_trip(missing_grade) > 0,
        "trip_grade_clipped": per_trip(grade != raw) > 0,
        "trip_gps_jump": per_trip(jump) > 0,
        "timed_trip": timed_trip,
        "sparse": sparse,
        "gps_valid": timed_trip & (timed_count >= settings.min_gps_segments) & ~sparse & (speed_missing == 0),
    }


def _interval_grades(start_s: np.ndarray, interval_trip: np.ndarray, segments: pd.DataFrame, trip_frame: pd.DataFrame,
                     model: EmissionModel) -> np.ndarray:
    """Return the grade of the last segment of the same trip that starts at or before each interval, by merge_asof."""
    if start_s.size == 0:
        return np.zeros(0)
    limit = model.settings.max_abs_grade_pct
    link = segments[c.LINK_GRADIENT_PCT].to_numpy(dtype="float64")
    grade = np.nan_to_num(np.where(np.isnan(link), segments[c.GRADE_PCT].to_numpy(dtype="float64"), link), nan=0.0)
    right = pd.DataFrame({"trip": _positions(trip_frame, segments[c.TRIP_ID]), "t": _seconds(segments[c.T_START]), "grade": grade})
    right = right[right["trip"] >= 0].sort_values("t", kind="stable")
    left = pd.DataFrame({"trip": interval_trip, "t": start_s, "order": np.arange(start_s.size)}).sort_values("t", kind="stable")
    joined = pd.merge_asof(left, right, on="t", by="trip", direction="backward").sort_values("order")
    return np.clip(joined["grade"].fillna(0.0).to_numpy(), -limit, limit)


def _reference_tacho(tacho: pd.DataFrame, segments: pd.DataFrame, trip_frame: pd.DataFrame, model: EmissionModel) -> dict[str, np.ndarray]:
    """Compute T1 sums, T2 interval physics and validity per trip, with numpy and pandas."""
    settings = model.settings
    n_trips = len(trip_frame)
    rows_frame = pd.DataFrame({
        "trip": _positions(trip_frame, tacho[c.TRIP_ID]),
        "t": _seconds(tacho[c.TS]),
        "speed": tacho[c.SPEED_KMH].to_numpy(dtype="float64"),
        "fuel": tacho[c.FUEL_ML].to_numpy(dtype="float64"),
    })
    # Stable sort: rows with equal timestamps keep their input order.
    rows_frame = rows_frame[rows_frame["trip"] >= 0].sort_values(["trip", "t"], kind="stable")
    trip = rows_frame["trip"].to_numpy()
    t = rows_frame["t"].to_numpy()
    speed = rows_frame["speed"].to_numpy()
    fuel = rows_frame["fuel"].to_numpy()

    rows = np.bincount(trip, minlength=n_trips).astype(float)
    fuel_rows = np.bincount(trip, weights=np.isfinite(fuel), minlength=n_trips)
    speed_rows = np.bincount(trip, weights=np.isfinite(speed), minlength=n_trips)
    measured = np.bincount(trip, weights=np.where(np.isfinite(fuel), fuel, 0.0), minlength=n_trips) / 1000.0
    first = rows_frame.groupby("trip")["t"].min().reindex(range(n_trips)).to_numpy(dtype="float64")
    last = rows_frame.groupby("trip")["t"].max().reindex(range(n_trips)).to_numpy(dtype="float64")

    same = trip[1:] == trip[:-1]
    interval_trip = trip[:-1][same]
    dt = np.diff(t)[same]
    start_s = t[:-1][same]
    v0 = speed[:-1][same] / 3.6
    v1 = speed[1:][same] / 3.6
    gaps = pd.Series(dt).groupby(interval_trip)
    max_gap = gaps.max().reindex(range(n_trips)).to_numpy(dtype="float64")
    median_dt = gaps.median().reindex(range(n_trips)).to_numpy(dtype="float64")

    usable = np.isfinite(v0) & np.isfinite(v1) & (dt > 0)
    interval_trip, dt, start_s, v0, v1 = interval_trip[usable], dt[usable], start_s[usable], v0[usable], v1[usable]

    def value(name: str) -> np.ndarray:
        return trip_frame[name].to_numpy(dtype="float64")[interval_trip]

    mean_speed = 0.5 * (v0 + v1)
    grade = _interval_grades(start_s, interval_trip, segments, trip_frame, model)
    power = wheel_power_kw(
        mean_speed, (v1 - v0) / dt, grade, value("mass_kg"), value("rolling_kw_s_per_m_per_t"),
        value("road_load_b_kw_s2_per_m2"), value("aero_kw_s3_per_m3"), value("inertia_factor"),
    )
    work = effective_work_kj(power, dt, value("regen_share"))
    cold = _cold_multiplier(start_s - _seconds(trip_frame[c.START_TIME])[interval_trip], model)
    fuel_interval = (value("idle_rate_per_s") * dt + value("profile_fuel_per_kj") * work) * cold
    idle = mean_speed * 3.6 < settings.idle_speed_kmh

    trip_duration = (trip_frame[c.END_TIME] - trip_frame[c.START_TIME]).dt.total_seconds().to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        coverage = np.where(trip_duration > 0, (last - first) / trip_duration, rows > 0)
    spans = (rows >= 2) & (coverage >= settings.min_tacho_coverage) & (max_gap <= settings.max_tacho_gap_s)
    return {
        "measured_fuel": measured,
        "fuel_valid": spans & (trip_frame["unit"] == "l").to_numpy() & (fuel_rows >= settings.min_tacho_coverage * rows),
        "model_fuel": np.bincount(interval_trip, weights=fuel_interval, minlength=n_trips),
        "model_scale": np.bincount(interval_trip, weights=np.abs(fuel_interval), minlength=n_trips),
        "speed_valid": spans & (speed_rows >= settings.min_tacho_coverage * rows) & (median_dt <= settings.max_tacho_median_interval_s),
        "idle_s": np.bincount(interval_trip, weights=np.where(idle, dt, 0.0), minlength=n_trips),
        "distance_m": np.bincount(interval_trip, weights=mean_speed * dt, minlength=n_trips),
        "has_fuel_rows": fuel_rows > 0,
        "has_speed_rows": speed_rows > 0,
    }


# -- comparisons -------------------------------------------------------------------------------


def _assert_sums_close(actual: np.ndarray, expected: np.ndarray, scale: np.ndarray, name: str) -> None:
    """Assert equality to ``RELATIVE_TOLERANCE`` of the sum of magnitudes, so regenerative terms may cancel."""
    assert actual.shape == expected.shape, name
    assert np.array_equal(np.isnan(actual), np.isnan(expected)), f"{name}: missing values differ"
    finite = ~np.isnan(expected)
    error = np.abs(actual[finite] - expected[finite])
    bound = RELATIVE_TOLERANCE * np.maximum(scale[finite], np.abs(expected[finite])) + 1e-300
    worst = int(np.argmax(error - bound)) if error.size else 0
    assert np.all(error <= bound), f"{name}: trip {np.flatnonzero(finite)[worst]} is {actual[finite][worst]!r}, expected {expected[finite][worst]!r}"


def _assert_segment_profile(piece: Piece, model: EmissionModel) -> p.SegmentProfile:
    trip_frame = resolve_trip_vehicles(piece.trips, piece.vehicles, model)
    actual = p.segment_profile(piece.segments, trip_frame, model)
    expected = _reference_segments(piece.segments, trip_frame, model)

    for name in ("physics_fuel", "distance_fuel"):
        got = getattr(actual, name)
        np.testing.assert_allclose(got, expected[name], rtol=RELATIVE_TOLERANCE, atol=1e-15, err_msg=name)
    np.testing.assert_array_equal(actual.grade_pct, expected["grade_pct"])
    _assert_sums_close(actual.trip_physics_fuel, expected["trip_physics_fuel"], expected["trip_physics_scale"], "trip_physics_fuel")
    _assert_sums_close(actual.trip_distance_fuel, expected["trip_distance_fuel"], expected["trip_distance_scale"], "trip_distance_fuel")
    for name in ("trip_length_m", "trip_idle_s", "trip_accel_factor"):
        np.testing.assert_allclose(getattr(actual, name), expected[name], rtol=RELATIVE_TOLERANCE, err_msg=name)
    for name in ("trip_segment_count", "trip_missing_grade", "trip_grade_clipped", "trip_gps_jump", "timed_trip", "sparse", "gps_valid"):
        np.testing.assert_array_equal(getattr(actual, name), expected[name], err_msg=name)
    return actual


def _assert_tacho_profile(piece: Piece, model: EmissionModel) -> p.TachoProfile:
    trip_frame = resolve_trip_vehicles(piece.trips, piece.vehicles, model)
    actual = p.tacho_profile(piece.tacho, piece.segments, trip_frame, model)
    expected = _reference_tacho(piece.tacho, piece.segments, trip_frame, model)

    _assert_sums_close(actual.model_fuel, expected["model_fuel"], expected["model_scale"], "model_fuel")
    for name in ("measured_fuel", "idle_s", "distance_m"):
        np.testing.assert_allclose(getattr(actual, name), expected[name], rtol=RELATIVE_TOLERANCE, atol=1e-12, err_msg=name)
    for name in ("fuel_valid", "speed_valid", "has_fuel_rows", "has_speed_rows"):
        np.testing.assert_array_equal(getattr(actual, name), expected[name], err_msg=name)
    return actual


# -- tests -------------------------------------------------------------------------------------


class TestSegmentPass:
    @pytest.mark.parametrize("seed", [1, 2, 3, 4])
    def test_random_piece_matches_reference(self, seed: int, model: EmissionModel) -> None:
        piece = _random_piece(seed)
        actual = _assert_segment_profile(piece, model)

        assert actual.trip_gps_jump.any()
        assert actual.trip_grade_clipped.any()
        assert actual.trip_missing_grade.any()
        assert (actual.trip_segment_count == 0).any()
        assert (actual.trip_position == -1).sum() == 3

    @pytest.mark.parametrize("seed", [5, 6])
    def test_cold_start_and_tight_clip(self, seed: int, cold_model: EmissionModel, model: EmissionModel) -> None:
        piece = _random_piece(seed)
        cold = _assert_segment_profile(piece, cold_model)

        warm = p.segment_profile(piece.segments, resolve_trip_vehicles(piece.trips, piece.vehicles, model), model)
        changed = np.isfinite(warm.trip_physics_fuel) & (cold.trip_physics_fuel != warm.trip_physics_fuel)
        assert changed.sum() > 5
        assert cold.trip_grade_clipped.sum() > warm.trip_grade_clipped.sum()

    def test_sorted_and_shuffled_segments_agree(self, model: EmissionModel) -> None:
        ordered = _random_piece(7, shuffle=False)
        shuffled = _random_piece(7, shuffle=True)
        trip_frame = resolve_trip_vehicles(ordered.trips, ordered.vehicles, model)

        a = p.segment_profile(ordered.segments, trip_frame, model)
        b = p.segment_profile(shuffled.segments, trip_frame, model)

        np.testing.assert_allclose(a.trip_physics_fuel, b.trip_physics_fuel, rtol=RELATIVE_TOLERANCE, atol=1e-12)
        np.testing.assert_allclose(a.trip_distance_fuel, b.trip_distance_fuel, rtol=RELATIVE_TOLERANCE, atol=1e-12)
        np.testing.assert_array_equal(a.gps_valid, b.gps_valid)

    def test_categorical_trip_ids(self, model: EmissionModel) -> None:
        piece = _random_piece(8)
        categories = sorted(set(piece.segments[c.TRIP_ID])) + ["never-used"]
        segments = piece.segments.assign(**{c.TRIP_ID: pd.Categorical(piece.segments[c.TRIP_ID], categories=categories[::-1])})
        _assert_segment_profile(Piece(segments, piece.trips, piece.vehicles, piece.tacho), model)

    def test_link_gradient_first_then_grade(self, model: EmissionModel) -> None:
        """A NaN link gradient falls back to grade_pct. Both NaN gives 0 and a flag, and a clip gives a flag."""
        segments = _segment_frame(
            "trip-000", "car", START, np.arange(5.0) * 10, np.full(5, 10.0), np.array([100.0, 100.0, 100.0, 0.0, 100.0]),
            np.full(5, 36.0), np.zeros(5), np.array([4.0, np.nan, 40.0, np.nan, -2.0]), np.array([np.nan, np.nan, np.nan, np.nan, 3.0]),
        )
        trips = make_trips([{"trip_id": "trip-000", "vehicle_id": "car", "duration_s": 50.0}])
        piece = Piece(segments, trips, make_vehicles(VEHICLES), segments.iloc[:0])

        actual = _assert_segment_profile(piece, model)

        assert list(actual.grade_pct) == [4.0, 0.0, 15.0, 0.0, 3.0]
        assert bool(actual.trip_missing_grade[0]) is True
        assert bool(actual.trip_grade_clipped[0]) is True

    def test_zero_length_missing_grade_unflagged(self, model: EmissionModel) -> None:
        segments = _segment_frame("trip-000", "car", START, np.array([0.0, 10.0]), np.full(2, 10.0), np.array([0.0, 50.0]),
                                  np.array([0.0, 18.0]), np.zeros(2), np.array([np.nan, 1.0]), np.full(2, np.nan))
        trips = make_trips([{"trip_id": "trip-000", "vehicle_id": "car", "duration_s": 20.0}])
        actual = _assert_segment_profile(Piece(segments, trips, make_vehicles(VEHICLES), segments.iloc[:0]), model)
        assert bool(actual.trip_missing_grade[0]) is False

    def test_zero_positive_force_like_numpy(self, model: EmissionModel) -> None:
        """positive_force_n = 0 gives numpy's nan_to_num of the force ratio, not a ZeroDivisionError."""
        segments = _segment_frame(
            "trip-000", "car", START, np.array([0.0, 10.0]), np.full(2, 10.0), np.array([100.0, 100.0]),
            np.full(2, 36.0), np.zeros(2), np.array([2.0, 0.0]), np.full(2, np.nan),
        )
        trips = make_trips([{"trip_id": "trip-000", "vehicle_id": "car", "duration_s": 20.0}])
        trip_frame = resolve_trip_vehicles(trips, make_vehicles(VEHICLES), model)
        trip_frame["positive_force_n"] = 0.0

        actual = p.segment_profile(segments, trip_frame, model)

        row = trip_frame.iloc[0]
        share = row["variable_share"] if np.isfinite(row["variable_share"]) else 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.nan_to_num(1.0 + np.array([row["mass_kg"] * GRAVITY_M_S2 * (0.02 / np.sqrt(1.0004)) * row["traction_distance_share"], 0.0]) / 0.0, nan=1.0)
        expected = 100.0 / 1000.0 * row["distance_fuel_per_km"] * ((1.0 - share) + share * np.maximum(ratio, 0.0))
        np.testing.assert_allclose(actual.distance_fuel, expected, rtol=1e-12)
        assert actual.distance_fuel[0] > 1e300  # the climbing segment: an infinite ratio becomes the largest float

    def test_no_segments_and_no_trips(self, model: EmissionModel) -> None:
        piece = _random_piece(9)
        no_segments = Piece(piece.segments.iloc[:0], piece.trips, piece.vehicles, piece.tacho)
        actual = _assert_segment_profile(no_segments, model)
        assert not actual.trip_physics_fuel.any()
        assert not actual.gps_valid.any()
        assert actual.sparse.all()

        no_trips = resolve_trip_vehicles(piece.trips.iloc[:0], piece.vehicles, model)
        unknown_only = p.segment_profile(piece.segments, no_trips, model)
        assert unknown_only.trip_physics_fuel.shape == (0,)
        assert np.all(unknown_only.trip_position == -1)
        assert not unknown_only.physics_fuel.any()


class TestTachoLoop:
    @pytest.mark.parametrize("seed", [11, 12, 13, 14])
    def test_random_piece_matches_reference(self, seed: int, lenient_model: EmissionModel) -> None:
        piece = _random_piece(seed)
        actual = _assert_tacho_profile(piece, lenient_model)

        assert actual.speed_valid.sum() >= 3
        assert actual.fuel_valid.sum() >= 2
        assert (~actual.has_speed_rows).any()

    @pytest.mark.parametrize("seed", [15, 16])
    def test_default_and_cold_settings(self, seed: int, model: EmissionModel, cold_model: EmissionModel) -> None:
        piece = _random_piece(seed)
        warm = _assert_tacho_profile(piece, model)
        cold = _assert_tacho_profile(piece, cold_model)
        assert (cold.model_fuel != warm.model_fuel).sum() > 5

    def test_duplicate_timestamps_keep_input_order(self, model: EmissionModel) -> None:
        """Rows with equal timestamps pair with their neighbours in input order. An interval of dt = 0 adds no fuel."""
        ts = np.array([0.0, 1.0, 1.0, 2.0, 3.0])
        speeds = np.array([10.0, 20.0, 60.0, 30.0, 30.0])
        tacho = _tacho_frame("trip-000", "car", START, ts, speeds, np.full(5, 0.5))
        trips = make_trips([{"trip_id": "trip-000", "vehicle_id": "car", "duration_s": 3.0}])
        no_segments = _segment_frame("x", "car", START, *([np.zeros(0)] * 7))
        swapped = tacho.iloc[[0, 2, 1, 3, 4]].reset_index(drop=True)
        reversed_rows = tacho.iloc[::-1].reset_index(drop=True)

        forward = _assert_tacho_profile(Piece(no_segments, trips, make_vehicles(VEHICLES), tacho), model)
        swap = _assert_tacho_profile(Piece(no_segments, trips, make_vehicles(VEHICLES), swapped), model)
        _assert_tacho_profile(Piece(no_segments, trips, make_vehicles(VEHICLES), reversed_rows), model)

        # Forward pairs 0-1 (10 to 20) and 1-2 (60 to 30). Swapped pairs 0-1 (10 to 60) and 1-2 (20 to 30).
        assert forward.distance_m[0] == pytest.approx((15.0 + 45.0 + 30.0) / 3.6)
        assert swap.distance_m[0] == pytest.approx((35.0 + 25.0 + 30.0) / 3.6)
        assert forward.measured_fuel[0] == pytest.approx(2.5e-3)
        assert bool(forward.speed_valid[0]) is True

    def test_nan_speed_breaks_only_its_intervals(self, model: EmissionModel) -> None:
        speeds = np.array([36.0, np.nan, 36.0, 36.0, 36.0])
        fuel = np.array([1.0, np.nan, np.nan, 1.0, 1.0])
        tacho = _tacho_frame("trip-000", "car", START, np.arange(5.0), speeds, fuel)
        trips = make_trips([{"trip_id": "trip-000", "vehicle_id": "car", "duration_s": 4.0}])
        segments = _segment_frame("trip-000", "car", START, np.zeros(1), np.full(1, 4.0), np.full(1, 40.0),
                                  np.full(1, 36.0), np.zeros(1), np.full(1, 2.0), np.full(1, np.nan))

        actual = _assert_tacho_profile(Piece(segments, trips, make_vehicles(VEHICLES), tacho), model)

        assert actual.distance_m[0] == pytest.approx(20.0)
        assert actual.measured_fuel[0] == pytest.approx(3e-3)
        assert bool(actual.fuel_valid[0]) is False
        assert bool(actual.speed_valid[0]) is False

    def test_median_interval_not_mean(self, model: EmissionModel) -> None:
        """Gaps 1, 1, 3 and 9 s: the median is 2 s (T2 accepts it), the mean 3.5 s would not."""
        tacho = _tacho_frame("trip-000", "car", START, np.array([0.0, 1.0, 2.0, 5.0, 14.0]), np.full(5, 30.0), np.ones(5))
        trips = make_trips([{"trip_id": "trip-000", "vehicle_id": "car", "duration_s": 14.0}])
        no_segments = _segment_frame("x", "car", START, *([np.zeros(0)] * 7))

        actual = _assert_tacho_profile(Piece(no_segments, trips, make_vehicles(VEHICLES), tacho), model)

        assert model.settings.max_tacho_median_interval_s == 2.0
        assert bool(actual.speed_valid[0]) is True
        assert bool(actual.fuel_valid[0]) is True

    def test_single_row_and_missing_trips(self, model: EmissionModel) -> None:
        trips = make_trips([
            {"trip_id": "single", "vehicle_id": "car", "duration_s": 0.0},
            {"trip_id": "none", "vehicle_id": "car", "duration_s": 60.0},
            {"trip_id": "pair", "vehicle_id": "truck", "duration_s": 1.0},
        ])
        tacho = pd.concat([
            _tacho_frame("pair", "truck", START, np.array([1.0, 0.0]), np.array([20.0, 10.0]), np.array([2.0, 1.0])),
            _tacho_frame("ghost", "car", START, np.arange(3.0), np.full(3, 50.0), np.ones(3)),
            _tacho_frame("single", "car", START, np.zeros(1), np.full(1, 30.0), np.full(1, 4.0)),
        ], ignore_index=True)
        segments = _segment_frame("pair", "truck", START, np.array([0.0, 0.0]), np.ones(2), np.full(2, 4.0),
                                  np.full(2, 15.0), np.zeros(2), np.array([1.0, 9.0]), np.full(2, np.nan))

        actual = _assert_tacho_profile(Piece(segments, trips, make_vehicles(VEHICLES), tacho), model)

        assert list(actual.measured_fuel) == pytest.approx([4e-3, 0.0, 3e-3])
        assert list(actual.distance_m) == pytest.approx([0.0, 0.0, 15.0 / 3.6])
        assert list(actual.has_speed_rows) == [True, False, True]
        # A single row cannot span a trip; two rows can.
        assert list(actual.fuel_valid) == [False, False, True]
        assert list(actual.speed_valid) == [False, False, True]

    def test_interval_grade_ties_take_last_segment(self, model: EmissionModel) -> None:
        """Two segments start with the interval: the later one in segment order sets the grade."""
        trips = make_trips([{"trip_id": "pair", "vehicle_id": "truck", "duration_s": 1.0}])
        tacho = _tacho_frame("pair", "truck", START, np.array([0.0, 1.0]), np.array([36.0, 36.0]), np.ones(2))
        flat_last = _segment_frame("pair", "truck", START, np.zeros(2), np.ones(2), np.full(2, 10.0),
                                   np.full(2, 36.0), np.zeros(2), np.array([12.0, 0.0]), np.full(2, np.nan))
        steep_last = flat_last.iloc[::-1].reset_index(drop=True)
        vehicles = make_vehicles(VEHICLES)

        flat = _assert_tacho_profile(Piece(flat_last, trips, vehicles, tacho), model)
        steep = _assert_tacho_profile(Piece(steep_last, trips, vehicles, tacho), model)
        level = _assert_tacho_profile(Piece(flat_last.iloc[:0], trips, vehicles, tacho), model)

        assert flat.model_fuel[0] == pytest.approx(level.model_fuel[0], rel=1e-12)
        assert steep.model_fuel[0] > 2 * flat.model_fuel[0]


class TestEstimateTrips:
    @pytest.mark.parametrize("seed", [21, 22])
    def test_trip_fuel_matches_tier_reference(self, seed: int, lenient_model: EmissionModel) -> None:
        piece = _random_piece(seed)
        trip_frame = resolve_trip_vehicles(piece.trips, piece.vehicles, lenient_model)
        segment_reference = _reference_segments(piece.segments, trip_frame, lenient_model)
        tacho_reference = _reference_tacho(piece.tacho, piece.segments, trip_frame, lenient_model)

        result = estimate_trips(piece.segments, piece.trips, piece.vehicles, piece.tacho, lenient_model)

        trips = result.trips
        assert list(trips[c.TRIP_ID]) == list(piece.trips[c.TRIP_ID])
        unit_fuel = trips[c.FUEL_L].fillna(trips[c.FUEL_M3]).fillna(trips[c.ENERGY_KWH]).to_numpy(dtype="float64")
        expected_by_method = {
            FUEL_MEASURED: tacho_reference["measured_fuel"],
            TACHO_PROFILE: np.maximum(tacho_reference["model_fuel"], 0.0),
            GPS_PROFILE: np.maximum(segment_reference["trip_physics_fuel"], 0.0),
        }
        methods = trips[c.METHOD].to_numpy()
        for method, expected in expected_by_method.items():
            chosen = methods == method
            assert chosen.any(), method
            np.testing.assert_allclose(unit_fuel[chosen], expected[chosen], rtol=1e-9, err_msg=method)

        # Segment CO2 sums back to the trip CO2. Segments of unknown trips get none.
        segment_trip = result.segments[c.TRIP_ID].astype(str).to_numpy()
        assert result.segments.loc[segment_trip == "ghost", c.CO2_TTW_KG].isna().all()
        summed = result.segments.assign(trip=segment_trip).groupby("trip")[c.CO2_TTW_KG].sum(min_count=1)
        has_segments = trips[c.TRIP_ID].isin(summed.index).to_numpy()
        trip_co2 = trips[c.CO2_TTW_KG].to_numpy()[has_segments]
        assert np.isfinite(trip_co2).sum() > 10
        np.testing.assert_allclose(summed.reindex(trips[c.TRIP_ID][has_segments]).to_numpy(), trip_co2, rtol=1e-9)
