"""A GPS jump under a synthetic timestamp must not become acceleration work in the T3 physics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from compute import columns as c
from compute.emissions import EmissionSettings, estimate_trips, load_model
from compute.emissions.model import EmissionModel

START = pd.Timestamp("2013-07-01 08:00:00", tz="UTC")
TAXI = pd.DataFrame(
    {
        c.VEHICLE_ID: ["taxi"], c.VEHICLE_CLASS: ["passenger"], c.FUEL_TYPE: ["diesel"], c.CATALOG_FE: [np.nan],
        c.TEST_CYCLE: [None], c.MAX_PAYLOAD_KG: [np.nan], c.MODEL_YEAR: pd.array([2009], dtype="Int64"),
    }
)


@pytest.fixture(scope="module")
def model() -> EmissionModel:
    return load_model(EmissionSettings())


def run_trip(model: EmissionModel, lengths_m: list[float], every_s: float = 15.0) -> pd.Series:
    """Estimate one taxi trip with vertices every ``every_s`` seconds and the given segment lengths."""
    length = np.asarray(lengths_m, dtype="float64")
    duration = np.full(length.size, every_s)
    speed = length / duration
    accel = np.concatenate([[0.0], np.diff(speed) / duration[1:]])
    n = length.size
    segments = pd.DataFrame(
        {
            c.TRIP_ID: ["trip"] * n, c.VEHICLE_ID: ["taxi"] * n, c.SEG_INDEX: np.arange(n, dtype="int32"),
            c.T_START: (START + pd.to_timedelta(np.arange(n) * every_s, unit="s")).astype("datetime64[ms, UTC]"),
            c.DURATION_S: duration, c.LENGTH_M: length, c.SPEED_KMH: speed * 3.6, c.ACCEL_M_S2: accel,
            c.GRADE_PCT: np.full(n, np.nan), c.LON_MID: np.zeros(n), c.LAT_MID: np.zeros(n), c.AREA_ID: [None] * n,
            c.AREA_TYPE: [None] * n, c.LINK_ID: [None] * n, c.ROAD_CLASS: [None] * n, c.SPEED_LIMIT_KMH: np.full(n, np.nan),
            c.LINK_GRADIENT_PCT: np.full(n, np.nan), c.LINK_DISTANCE_M: np.full(n, np.nan), c.MATCHED: [False] * n,
        }
    )
    trips = pd.DataFrame(
        {
            c.TRIP_ID: ["trip"], c.VEHICLE_ID: ["taxi"], c.START_TIME: pd.Series([START], dtype="datetime64[ms, UTC]"),
            c.END_TIME: pd.Series([START + pd.Timedelta(seconds=float(duration.sum()))], dtype="datetime64[ms, UTC]"),
            c.LOAD_KG: [np.nan], c.N_VERTICES: [n + 1], c.TIME_SOURCE: ["vertex"],
        }
    )
    empty_tacho = pd.DataFrame({c.TRIP_ID: pd.Series([], dtype="str"), c.TS: pd.Series([], dtype="datetime64[ms, UTC]"),
                                c.SPEED_KMH: pd.Series([], dtype="float64"), c.FUEL_ML: pd.Series([], dtype="float64")})
    return estimate_trips(segments, trips, TAXI, empty_tacho, model).trips.iloc[0]


# A city taxi at about 30 km/h; in the jump trip one fix is missing, so 780 m appear to pass in 15 s.
SMOOTH = [120.0, 130.0, 125.0, 140.0, 135.0, 120.0, 125.0, 130.0, 140.0, 125.0]
JUMP = [120.0, 130.0, 125.0, 140.0, 780.0, 60.0, 125.0, 130.0, 140.0, 125.0]


def test_jump_trip_stays_plausible(model: EmissionModel) -> None:
    smooth, jump = run_trip(model, SMOOTH), run_trip(model, JUMP)
    assert jump[c.METHOD] == "gps_profile"
    assert "gps_jump_replaced" in jump[c.QUALITY_FLAGS]
    assert "gps_jump_replaced" not in smooth[c.QUALITY_FLAGS]
    assert jump[c.CO2_G_PER_KM] < smooth[c.CO2_G_PER_KM] * 1.5


def test_jump_limit_is_a_setting(model: EmissionModel) -> None:
    lenient = load_model(EmissionSettings(max_gps_accel_m_s2=20.0, max_gps_speed_change_kmh=300.0))
    raw = run_trip(lenient, JUMP)
    assert "gps_jump_replaced" not in raw[c.QUALITY_FLAGS]
    assert raw[c.CO2_G_PER_KM] > run_trip(model, JUMP)[c.CO2_G_PER_KM] * 2.0
