"""Tachograph records rejected for their values count against T1's fuel coverage, each second once.

The alignment places a rejected record in its trip as a row with ``rejected`` set and no speed
or fuel. Copies of one second in two tachograph files (or two validation pieces) are rejected in
both, so the same second can arrive as two such rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from emission_inputs import make_segments, make_tacho, make_trips, make_vehicles

from compute import columns as c
from compute.emissions import estimate_trips
from compute.emissions.model import FUEL_MEASURED, EmissionModel

CAR = {"vehicle_id": "car", "vehicle_class": "passenger", "fuel_type": "gasoline", "catalog": 20.0, "test_cycle": "WLTC"}
# A 600 s trip at 40 km/h: segments every 10 s, tachograph rows at 1 Hz with 1 ml each.
ROWS = 601


def _estimate(model: EmissionModel, rejected_seconds: list[int], copies: int) -> pd.Series:
    """Estimate the trip with the records of ``rejected_seconds`` replaced by ``copies`` rejected rows each."""
    segments = make_segments("t", "car", np.full(60, 10.0), np.full(60, 40 / 3.6 * 10.0))
    trips = make_trips([{"trip_id": "t", "vehicle_id": "car", "duration_s": ROWS - 1}])
    tacho = make_tacho("t", "car", np.full(ROWS, 40.0), np.full(ROWS, 1.0))
    tacho[c.TACHO_REJECTED] = False
    holes = tacho.iloc[rejected_seconds].copy()
    holes[[c.SPEED_KMH, c.FUEL_ML]] = np.nan
    holes[c.TACHO_REJECTED] = True
    accepted = tacho.drop(index=rejected_seconds)
    rows = pd.concat([accepted, *[holes] * copies], ignore_index=True).sort_values(c.TS, kind="stable")
    result = estimate_trips(segments, trips, make_vehicles([CAR]), rows, model)
    return result.trips.set_index(c.TRIP_ID).loc["t"]


def test_few_rejected_keep_t1_with_flag(model: EmissionModel) -> None:
    trip = _estimate(model, list(range(10, 400, 20)), copies=1)  # 20 of 601 records, 3.3 %

    assert trip[c.METHOD] == FUEL_MEASURED
    assert "tacho_rows_rejected" in str(trip[c.QUALITY_FLAGS]).split(";")
    assert trip[c.FUEL_L] == (ROWS - 20) / 1000.0


def test_second_rejected_twice_counts_once(model: EmissionModel) -> None:
    """Counted twice, 20 seconds of 601 would leave fuel on 581 of 621 rows, below 95 %."""
    once = _estimate(model, list(range(10, 400, 20)), copies=1)
    twice = _estimate(model, list(range(10, 400, 20)), copies=2)

    assert twice[c.METHOD] == FUEL_MEASURED
    assert twice[c.FUEL_L] == once[c.FUEL_L]


def test_many_rejected_leave_t1(model: EmissionModel) -> None:
    trip = _estimate(model, list(range(5, 600, 10)), copies=1)  # 60 of 601 records, 10 %
    flags = str(trip[c.QUALITY_FLAGS]).split(";")

    assert trip[c.METHOD] != FUEL_MEASURED
    assert "tacho_rows_rejected" in flags
    assert "tacho_fuel_incomplete" in flags
