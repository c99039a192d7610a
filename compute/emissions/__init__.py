"""Tiered fuel and CO2 model: pure functions on one partition.

Public API (kept stable for ``compute.pipeline``)::

    model = load_model(EmissionSettings())           # factors and cycles, loaded once, picklable
    result = estimate_trips(segments, trips, vehicles, tacho, model)
    resolved = resolve_vehicles(vehicles, model)     # the master joined once, for many partitions
    result.trips        # one row per trip (see compute.columns for the names)
    result.segments     # one row per segment with fuel_l and co2_ttw_kg, for breakdowns
    model.versions      # factor_table_version, methodology_version, ... for metadata
"""

from __future__ import annotations

from compute.emissions.model import (
    METHODS,
    TRIP_OUTPUT_DTYPES,
    EmissionModel,
    EstimateResult,
    ResolvedVehicles,
    estimate_trips,
    load_model,
    resolve_vehicles,
)
from compute.emissions.settings import EmissionSettings

__all__ = [
    "METHODS", "TRIP_OUTPUT_DTYPES", "EmissionModel", "EmissionSettings", "EstimateResult", "ResolvedVehicles", "estimate_trips", "load_model",
    "resolve_vehicles",
]
