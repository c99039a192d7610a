"""The input contract as data: datasets, canonical Arrow schemas, allowed values and row keys.

This module is the one place that states what a client day must contain. Everything else in
``compute.contract`` (conforming, validation, the docs in ``docs/contract.md``) reads from here.

Invariants
----------
* Every timestamp column is ``timestamp[ms, tz=UTC]``; ``timestamps`` is a list of them.
* Geometry columns are WKB ``binary`` in EPSG:4326 (longitude, latitude; Z, when present, is
  elevation in metres).
* Units are part of column names and never implied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from compute import columns as c

Dataset = Literal["trajectories", "vehicles", "tachometer", "geo_attributes"]

DATASETS: tuple[str, ...] = ("trajectories", "vehicles", "tachometer", "geo_attributes")
# geo_attributes may come from the reference location in the configuration instead of the day.
REQUIRED_DATASETS: tuple[str, ...] = ("trajectories", "vehicles", "tachometer")
GEOMETRY_DATASETS: tuple[str, ...] = ("trajectories", "geo_attributes")

TIMESTAMP_TYPE = pa.timestamp("ms", tz="UTC")
TIMESTAMPS_TYPE = pa.list_(TIMESTAMP_TYPE)

VEHICLE_CLASSES: tuple[str, ...] = (
    "kei_passenger",
    "passenger",
    "bus",
    "kei_truck",
    "light_truck",
    "medium_truck",
    "heavy_truck",
)
FUEL_TYPES: tuple[str, ...] = ("gasoline", "diesel", "hybrid", "lpg", "cng", "electric")
TEST_CYCLES: tuple[str, ...] = ("JC08", "WLTC", "JH25")
AREA_TYPES: tuple[str, ...] = ("urban", "suburban", "rural")

# Quantity kind of a column; selects which source units a mapping may declare for it.
Kind = Literal[
    "id",
    "text",
    "geometry",
    "time",
    "time_list",
    "speed",
    "mass",
    "volume",
    "fuel_economy",
    "length",
    "percent",
    "rotation",
    "year",
]


@dataclass(frozen=True)
class ColumnSpec:
    """One canonical column: name, Arrow type, whether the file must contain it, and its kind."""

    name: str
    type: pa.DataType
    required: bool
    kind: Kind


_TRAJECTORIES = (
    ColumnSpec(c.TRIP_ID, pa.string(), True, "id"),
    ColumnSpec(c.VEHICLE_ID, pa.string(), True, "id"),
    ColumnSpec(c.GEOMETRY, pa.binary(), True, "geometry"),
    ColumnSpec(c.TIMESTAMPS, TIMESTAMPS_TYPE, False, "time_list"),
    ColumnSpec(c.START_TIME, TIMESTAMP_TYPE, False, "time"),
    ColumnSpec(c.END_TIME, TIMESTAMP_TYPE, False, "time"),
    ColumnSpec(c.LOAD_KG, pa.float64(), False, "mass"),
)
_VEHICLES = (
    ColumnSpec(c.VEHICLE_ID, pa.string(), True, "id"),
    ColumnSpec(c.VEHICLE_CLASS, pa.string(), True, "text"),
    ColumnSpec(c.FUEL_TYPE, pa.string(), True, "text"),
    ColumnSpec(c.CATALOG_FE, pa.float64(), False, "fuel_economy"),
    ColumnSpec(c.TEST_CYCLE, pa.string(), False, "text"),
    ColumnSpec(c.MAX_PAYLOAD_KG, pa.float64(), False, "mass"),
    ColumnSpec(c.MODEL_YEAR, pa.int64(), True, "year"),
)
_TACHOMETER = (
    ColumnSpec(c.VEHICLE_ID, pa.string(), True, "id"),
    ColumnSpec(c.TS, TIMESTAMP_TYPE, True, "time"),
    ColumnSpec(c.SPEED_KMH, pa.float64(), True, "speed"),
    ColumnSpec(c.ENGINE_RPM, pa.float64(), False, "rotation"),
    ColumnSpec(c.FUEL_ML, pa.float64(), False, "volume"),
)
_GEO_ATTRIBUTES = (
    ColumnSpec(c.FEATURE_ID, pa.string(), True, "id"),
    ColumnSpec(c.SOURCE, pa.string(), True, "text"),
    ColumnSpec(c.GEOMETRY, pa.binary(), True, "geometry"),
    ColumnSpec(c.ROAD_CLASS, pa.string(), False, "text"),
    ColumnSpec(c.SPEED_LIMIT_KMH, pa.float64(), False, "speed"),
    ColumnSpec(c.GRADIENT_PCT, pa.float64(), False, "percent"),
    ColumnSpec(c.AREA_TYPE, pa.string(), False, "text"),
    ColumnSpec(c.ELEVATION_M, pa.float64(), False, "length"),
)

COLUMN_SPECS: dict[str, tuple[ColumnSpec, ...]] = {
    "trajectories": _TRAJECTORIES,
    "vehicles": _VEHICLES,
    "tachometer": _TACHOMETER,
    "geo_attributes": _GEO_ATTRIBUTES,
}

SCHEMAS: dict[str, pa.Schema] = {
    dataset: pa.schema([pa.field(spec.name, spec.type) for spec in specs]) for dataset, specs in COLUMN_SPECS.items()
}

# Columns whose values are the row key; tachometer rows are keyed by vehicle and time together.
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "trajectories": (c.TRIP_ID,),
    "vehicles": (c.VEHICLE_ID,),
    "tachometer": (c.VEHICLE_ID, c.TS),
    "geo_attributes": (c.FEATURE_ID,),
}

# Extra columns are kept by default only where the contract says they pass through.
KEEPS_EXTRA_COLUMNS: dict[str, bool] = {
    "trajectories": False,
    "vehicles": False,
    "tachometer": False,
    "geo_attributes": True,
}

# Text columns whose values are compared case-insensitively and normalised while conforming.
LOWERCASE_COLUMNS: dict[str, tuple[str, ...]] = {
    "vehicles": (c.VEHICLE_CLASS, c.FUEL_TYPE),
    "geo_attributes": (c.AREA_TYPE, c.SOURCE),
}
UPPERCASE_COLUMNS: dict[str, tuple[str, ...]] = {"vehicles": (c.TEST_CYCLE,)}


def column_spec(dataset: str, name: str) -> ColumnSpec:
    """Return the spec of canonical column ``name`` of ``dataset``.

    Raises
    ------
    KeyError
        If ``dataset`` has no such column.
    """
    for spec in COLUMN_SPECS[check_dataset(dataset)]:
        if spec.name == name:
            return spec
    known = [spec.name for spec in COLUMN_SPECS[dataset]]
    raise KeyError(f"dataset {dataset!r} has no column {name!r}; its columns are {known}")


def check_dataset(dataset: str) -> str:
    """Return ``dataset`` unchanged, or raise ``ValueError`` if it is not one of :data:`DATASETS`."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    return dataset
