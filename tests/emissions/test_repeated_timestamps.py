"""Fixes stamped with the same second: the segment builder spreads their times, and the distance
covered in 0 s still burns fuel."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import shapely
from emission_inputs import empty_tacho, make_segments, make_trips, make_vehicles, read_cycle

from compute import columns as c
from compute import segments
from compute.emissions import estimate_trips
from compute.emissions.model import EmissionModel

CAR = {"vehicle_id": "car", "vehicle_class": "passenger", "fuel_type": "gasoline", "catalog": 20.0, "test_cycle": "WLTC"}
TRUCK = {"vehicle_id": "truck", "vehicle_class": "heavy_truck", "fuel_type": "diesel", "max_payload_kg": 10_000.0}
START_MS = 1_796_000_000_000
UTC_MS = pa.timestamp("ms", tz="UTC")
METRES_PER_DEGREE = 111_320.0


def _trajectory(vehicle_id: str, speed_m_s: np.ndarray, times_ms: np.ndarray) -> pa.Table:
    """One trip driving ``speed_m_s`` (1 Hz) due east along 35 N, with the given vertex times."""
    along_m = np.concatenate([[0.0], np.cumsum(0.5 * (speed_m_s[1:] + speed_m_s[:-1]))])
    lon = 139.0 + along_m / (METRES_PER_DEGREE * np.cos(np.radians(35.0)))
    line = shapely.LineString(np.column_stack((lon, np.full(lon.size, 35.0))))
    return pa.table({
        c.TRIP_ID: ["trip"],
        c.VEHICLE_ID: [vehicle_id],
        c.GEOMETRY: pa.array([shapely.to_wkb(line)], pa.binary()),
        c.TIMESTAMPS: pa.array([times_ms.tolist()], pa.list_(UTC_MS)),
        c.START_TIME: pa.array([int(times_ms[0])], UTC_MS),
        c.END_TIME: pa.array([int(times_ms[-1])], UTC_MS),
        c.LOAD_KG: pa.array([None], pa.float64()),
    })


def _estimate(model: EmissionModel, table: pa.Table, vehicle: dict) -> tuple[pd.Series, pd.DataFrame]:
    segs, trips = segments.build_segments_from_arrow(table)
    # No geo layer: the columns of the spatial join, as it leaves them for unmatched segments.
    segs = segs.assign(**{c.ROAD_CLASS: None, c.AREA_TYPE: None, c.SPEED_LIMIT_KMH: np.nan, c.LINK_GRADIENT_PCT: np.nan,
                          c.MATCHED: False})
    row = estimate_trips(segs, trips, make_vehicles([vehicle]), empty_tacho(), model).trips.iloc[0]
    return row, segs


@pytest.mark.parametrize("vehicle", [CAR, TRUCK], ids=["car", "truck"])
@pytest.mark.parametrize("every", [5, 2])
def test_repeated_seconds_keep_fuel(model: EmissionModel, vehicle: dict, every: int) -> None:
    speed = read_cycle("wltc_japan")
    times = START_MS + 1_000 * np.arange(speed.size, dtype=np.int64)
    repeated = times.copy()
    repeated[every::every] = times[every - 1::every][: repeated[every::every].size]  # each takes the second before it
    assert (np.diff(repeated) == 0).sum() > speed.size // every - 2

    base, _ = _estimate(model, _trajectory(vehicle["vehicle_id"], speed, times), vehicle)
    spread, segs = _estimate(model, _trajectory(vehicle["vehicle_id"], speed, repeated), vehicle)

    # Every moving segment has a duration again, and the trip keeps the GPS tier.
    moving = segs[c.LENGTH_M] > 0
    assert (segs.loc[moving, c.DURATION_S] > 0).all()
    assert segs[c.DURATION_S].sum() == pytest.approx(speed.size - 1)
    assert spread[c.METHOD] == base[c.METHOD] == "gps_profile"
    assert spread[c.DISTANCE_KM] == pytest.approx(base[c.DISTANCE_KM])
    # Before, the 0 s segments burnt nothing: a fifth of the segments cost about a fifth of the fuel.
    assert spread[c.FUEL_L] == pytest.approx(base[c.FUEL_L], rel=0.05)


def test_run_at_trip_end_spreads_back() -> None:
    speed = np.full(11, 10.0)
    times = START_MS + 1_000 * np.arange(11, dtype=np.int64)
    times[-3:] = times[-3]  # the last three fixes share one second
    segs, trips = segments.build_segments_from_arrow(_trajectory("car", speed, times))

    assert (segs[c.DURATION_S] > 0).all()
    assert segs[c.DURATION_S].sum() == pytest.approx(8.0)
    # The last three fixes are spread back over the 1 s before them, so the vertex before the run moves too.
    # Times are epoch milliseconds in float64, exact to about 0.1 us at this date.
    np.testing.assert_allclose(segs[c.DURATION_S].to_numpy()[-3:], [1.0 / 3.0] * 3, atol=1e-6)
    assert trips[c.END_TIME].iloc[0] == pd.Timestamp(int(times[-1]), unit="ms", tz="UTC")


def test_all_fixes_in_one_second_use_distance(model: EmissionModel) -> None:
    speed = np.full(31, 20.0)
    times = np.full(31, START_MS, dtype=np.int64)
    row, segs = _estimate(model, _trajectory("car", speed, times), CAR)

    assert (segs[c.DURATION_S] == 0).all()
    assert row[c.METHOD] == "catalog_fe"
    assert row[c.DISTANCE_KM] == pytest.approx(0.6, rel=5e-3)
    # The catalog tier's fuel for 0.6 km: 0.6 km / 20 km/l times a real-world gap below 1.6.
    assert 0.6 / 20.0 <= row[c.FUEL_L] <= 0.6 / 20.0 * 1.6


def test_standing_in_one_second_burns_nothing(model: EmissionModel) -> None:
    segs = make_segments("trip", "car", np.zeros(5), np.zeros(5))
    trips = make_trips([{"trip_id": "trip", "vehicle_id": "car", "duration_s": 0.0}])
    row = estimate_trips(segs, trips, make_vehicles([CAR]), empty_tacho(), model).trips.iloc[0]

    assert row[c.FUEL_L] == 0.0
