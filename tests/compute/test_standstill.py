"""GPS standstills: fixes scattered around one place get length 0 and count as idle.

The compiled rule is compared with a direct reading of its definition on random trips, then
checked on a stop with receiver scatter, on slow driving, across the antimeridian and through the
emission model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely

from compute import columns as c
from compute import segments
from compute.emissions import EmissionSettings, estimate_trips, load_model
from compute.segments import StandstillRule
from tests.emissions.emission_inputs import empty_tacho, make_vehicles

GEOD = pyproj.Geod(ellps="WGS84")
T0 = pd.Timestamp("2026-12-01 00:00:00")
RULE = StandstillRule()


def _frame(trips: list[tuple[np.ndarray, np.ndarray | None]]) -> pd.DataFrame:
    """Return trajectories ``T0``, ``T1``, ... from (lon/lat array, seconds after T0 or None)."""
    rows = []
    for i, (lonlat, seconds) in enumerate(trips):
        times = None if seconds is None else (T0 + pd.to_timedelta(seconds, unit="s")).to_numpy(dtype="datetime64[ms]")
        duration = 0.0 if seconds is None else float(seconds[-1])
        rows.append({
            c.TRIP_ID: f"T{i}", c.VEHICLE_ID: "truck", c.GEOMETRY: shapely.LineString(lonlat), c.TIMESTAMPS: times,
            c.START_TIME: T0, c.END_TIME: T0 + pd.Timedelta(seconds=duration if seconds is not None else 600.0), c.LOAD_KG: np.nan,
        })
    frame = pd.DataFrame(rows)
    for name in (c.START_TIME, c.END_TIME):
        frame[name] = frame[name].dt.tz_localize("UTC")
    return frame


def _walk(lon: float, lat: float, east_m: np.ndarray, north_m: np.ndarray) -> np.ndarray:
    """Return lon/lat of points ``east_m``, ``north_m`` metres from (lon, lat)."""
    distance = np.hypot(east_m, north_m)
    azimuth = np.degrees(np.arctan2(east_m, north_m))
    x, y, _ = GEOD.fwd(np.full(distance.size, lon), np.full(distance.size, lat), azimuth, distance)
    return np.column_stack([x, y])


def _stop_trip(rng: np.random.Generator, scatter_m: float, stop_s: int = 300, lon: float = 139.70) -> tuple[np.ndarray, np.ndarray, float]:
    """Return a 1 Hz trip: 60 s at 10 m/s east, ``stop_s`` standing with scatter, 60 s on.

    Also returns the driven length in metres (1,200).
    """
    drive = np.arange(61) * 10.0
    east = np.concatenate([drive, np.full(stop_s - 1, 600.0) + rng.normal(0, scatter_m, stop_s - 1), 600.0 + drive])
    north = np.concatenate([np.zeros(61), rng.normal(0, scatter_m, stop_s - 1), np.zeros(61)])
    return _walk(lon, 35.68, east, north), np.arange(east.size, dtype=float), 1200.0


def _reference_mask(lonlat: np.ndarray, seconds: np.ndarray, rule: StandstillRule) -> np.ndarray:
    """Read the rule directly: from each run start, the longest run of fixes within the radius of
    the start. A run spanning the duration is a standstill when its path is longer than two
    radii and its direction turns by more than 60 degrees a step on average, and the next run
    starts after it."""
    n = len(seconds)
    azimuth, _, step_m = GEOD.inv(lonlat[:-1, 0], lonlat[:-1, 1], lonlat[1:, 0], lonlat[1:, 1])

    def turns_much(first: int, last: int) -> bool:
        moving = [k for k in range(first, last) if step_m[k] > 0]
        turn = [abs((azimuth[b] - azimuth[a] + 180.0) % 360.0 - 180.0) for a, b in zip(moving, moving[1:], strict=False)]
        return bool(turn) and float(np.mean(turn)) > 60.0

    still = np.zeros(n - 1, dtype=bool)
    first = 0
    while first < n - 1:
        last = first
        while last + 1 < n:
            _, _, d = GEOD.inv(lonlat[first, 0], lonlat[first, 1], lonlat[last + 1, 0], lonlat[last + 1, 1])
            if d > rule.radius_m:
                break
            last += 1
        if last > first and seconds[last] - seconds[first] >= rule.min_duration_s:
            still[first:last] = step_m[first:last].sum() > 2 * rule.radius_m and turns_much(first, last)
            first = last + 1
        else:
            first += 1
    return still


def test_rule_matches_its_definition() -> None:
    rng = np.random.default_rng(5)
    trips = []
    for _ in range(40):
        # Alternate driving and stops of random lengths, scatter and sampling intervals.
        east, north, seconds, t = [0.0], [0.0], [0.0], 0.0
        for _ in range(int(rng.integers(1, 6))):
            step_s = float(rng.choice([1.0, 2.0, 5.0, 15.0]))
            if rng.random() < 0.5:
                speed = rng.uniform(0.2, 15.0)
                for _ in range(int(rng.integers(2, 40))):
                    t += step_s
                    east.append(east[-1] + speed * step_s)
                    north.append(north[-1] + rng.normal(0, 1.0))
                    seconds.append(t)
            else:
                scatter = rng.uniform(0.5, 12.0)
                centre = (east[-1], north[-1])
                for _ in range(int(rng.integers(2, 80))):
                    t += step_s
                    east.append(centre[0] + rng.normal(0, scatter))
                    north.append(centre[1] + rng.normal(0, scatter))
                    seconds.append(t)
        trips.append((_walk(139.7, 35.68, np.array(east), np.array(north)), np.array(seconds)))

    segs, _ = segments.build_segments(_frame(trips), RULE)

    expected = np.concatenate([_reference_mask(lonlat, seconds, RULE) for lonlat, seconds in trips])
    assert 0.05 < expected.mean() < 0.95
    np.testing.assert_array_equal(segs[c.STANDSTILL].to_numpy(), expected)


@pytest.mark.parametrize("lon", [139.70, 179.99995], ids=["tokyo", "antimeridian"])
def test_scatter_at_a_stop_held_still(lon: float) -> None:
    lonlat, seconds, driven_m = _stop_trip(np.random.default_rng(1), scatter_m=2.0, lon=lon)

    off, _ = segments.build_segments(_frame([(lonlat, seconds)]))
    on, _ = segments.build_segments(_frame([(lonlat, seconds)]), RULE)

    still = on[c.STANDSTILL].to_numpy()
    # Driving segments (the first 60 and the last 60) are held still only within one radius
    # (20 m, two segments) of the stop.
    assert not still[:58].any()
    assert not still[-58:].any()
    assert still[60:-60].mean() > 0.95
    assert off[c.LENGTH_M].sum() > driven_m + 500
    assert on[c.LENGTH_M].sum() == pytest.approx(driven_m, rel=0.02)
    assert (on.loc[still, c.SPEED_KMH] == 0).all()
    np.testing.assert_array_equal(on.loc[~still, c.LENGTH_M].to_numpy(), off.loc[~still, c.LENGTH_M].to_numpy())


def test_clean_stop_left_as_measured() -> None:
    # Fixes that stop without scatter already give idle segments: nothing is held still.
    lonlat, seconds, driven_m = _stop_trip(np.random.default_rng(6), scatter_m=0.0)

    segs, _ = segments.build_segments(_frame([(lonlat, seconds)]), RULE)

    assert not segs[c.STANDSTILL].any()
    assert segs[c.LENGTH_M].sum() == pytest.approx(driven_m, rel=1e-6)


@pytest.mark.parametrize("radius_m", [8.0, 10.0])
def test_circling_not_held_still(radius_m: float) -> None:
    # Five minutes at 10 km/h round a car park: inside 20 m of a fix, but turning smoothly.
    seconds = np.arange(301, dtype=float)
    angle = seconds * (10.0 / 3.6) / radius_m
    lonlat = _walk(139.7, 35.68, radius_m * np.sin(angle), radius_m * (1.0 - np.cos(angle)))

    segs, _ = segments.build_segments(_frame([(lonlat, seconds)]), RULE)

    assert not segs[c.STANDSTILL].any()
    assert segs[c.LENGTH_M].sum() == pytest.approx(300 * 10.0 / 3.6, rel=0.01)


def test_creep_near_pole_not_held_still() -> None:
    # 1 km south from 89.99 degrees in 20 s, then 3 km/h east with 1 m of scatter. A scale of
    # metres per degree kept from 89.99 would halve the east-west steps at 89.98 and hold the
    # creep still.
    rng = np.random.default_rng(9)
    drive = _walk(10.0, 89.99, np.zeros(21), -np.arange(21) * 50.0)
    creep_s = np.arange(1, 121, dtype=float)
    creep = _walk(float(drive[-1, 0]), float(drive[-1, 1]), creep_s * 3.0 / 3.6 + rng.normal(0, 1, 120), rng.normal(0, 1, 120))
    lonlat = np.vstack([drive, creep])
    seconds = np.concatenate([np.arange(21, dtype=float), 20.0 + creep_s])

    segs, _ = segments.build_segments(_frame([(lonlat, seconds)]), RULE)

    assert not segs[c.STANDSTILL].any()


def test_slow_driving_not_held_still() -> None:
    # 3 km/h for two minutes: 25 m every 30 s, beyond the 20 m radius.
    seconds = np.arange(121, dtype=float)
    lonlat = _walk(139.7, 35.68, seconds * 3.0 / 3.6, np.zeros(seconds.size))

    segs, _ = segments.build_segments(_frame([(lonlat, seconds)]), RULE)

    assert not segs[c.STANDSTILL].any()


def test_interpolated_times_not_examined() -> None:
    lonlat, _, _ = _stop_trip(np.random.default_rng(2), scatter_m=2.0)

    segs, trips = segments.build_segments(_frame([(lonlat, None)]), RULE)

    assert trips[c.TIME_SOURCE].tolist() == ["interpolated"]
    assert not segs[c.STANDSTILL].any()


def test_rule_off_keeps_lengths() -> None:
    lonlat, seconds, _ = _stop_trip(np.random.default_rng(3), scatter_m=2.0)

    default, _ = segments.build_segments(_frame([(lonlat, seconds)]))
    off, _ = segments.build_segments(_frame([(lonlat, seconds)]), StandstillRule(radius_m=0.0))

    assert not off[c.STANDSTILL].any()
    pd.testing.assert_frame_equal(off, default)


@pytest.mark.parametrize("scatter_m", [1.0, 2.0, 3.0])
def test_stop_fuel_near_clean_stop(scatter_m: float) -> None:
    # A medium diesel truck: the same trip with a clean stop and with receiver scatter.
    model = load_model(EmissionSettings())
    vehicles = make_vehicles([{"vehicle_id": "truck", "vehicle_class": "medium_truck", "fuel_type": "diesel"}])
    clean, seconds, _ = _stop_trip(np.random.default_rng(4), scatter_m=0.0)
    noisy, _, _ = _stop_trip(np.random.default_rng(4), scatter_m=scatter_m)

    def fuel(lonlat: np.ndarray, rule: StandstillRule) -> tuple[float, str]:
        segs, trips = segments.build_segments(_frame([(lonlat, seconds)]), rule)
        # No geo layer: the columns of the spatial join, unmatched.
        segs = segs.assign(**{c.ROAD_CLASS: None, c.AREA_TYPE: None, c.SPEED_LIMIT_KMH: np.nan, c.LINK_GRADIENT_PCT: np.nan, c.MATCHED: False})
        row = estimate_trips(segs, trips, vehicles, empty_tacho(), model).trips.iloc[0]
        return float(row[c.FUEL_L]), str(row[c.QUALITY_FLAGS])

    clean_l, _ = fuel(clean, RULE)
    held_l, held_flags = fuel(noisy, RULE)
    raw_l, raw_flags = fuel(noisy, StandstillRule(radius_m=0.0))

    assert held_l == pytest.approx(clean_l, rel=0.10)
    assert raw_l > 1.5 * clean_l
    assert "gps_standstill" in held_flags.split(";")
    assert "gps_standstill" not in raw_flags.split(";")
