"""The run report judges the same trips as the plausibility check."""

from __future__ import annotations

import pandas as pd

from compute import charts
from compute import columns as c
from compute.plausibility import PlausibilitySettings


def test_electric_and_unranged_trips_not_judged() -> None:
    settings = PlausibilitySettings()
    ranged = next(iter(settings.intensity_ranges_g_per_km))
    trips = pd.DataFrame({
        c.VEHICLE_ID: ["petrol", "ev", "odd", "short"],
        c.DISTANCE_KM: [5.0, 5.0, 5.0, settings.min_trip_distance_km / 2],
        c.CO2_G_PER_KM: [200.0, 0.0, 150.0, 200.0],
    })
    vehicles = pd.DataFrame({
        c.VEHICLE_ID: ["petrol", "ev", "odd", "short"],
        c.VEHICLE_CLASS: [ranged, ranged, "class-without-range", ranged],
        c.FUEL_TYPE: ["gasoline", "electric", "gasoline", "gasoline"],
    })

    judged = charts._judged_trips(charts._trips_with_class(trips, vehicles), settings)

    assert judged[c.VEHICLE_ID].tolist() == ["petrol"]
