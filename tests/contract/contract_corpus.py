"""Builders of small client days for the contract tests, made in code (no binary files kept).

``good_day()`` returns one well-formed day as Arrow tables with GeoParquet metadata. Each test
breaks one thing in a copy of it, runs conform and validation, and pins the error or reject row.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pyproj
import shapely

T0_MS = 1_785_000_000_000  # 2026-07-25T17:20:00Z
TS = pa.timestamp("ms", tz="UTC")


def geo_metadata(crs: object = "EPSG:4326", column: str = "geometry", encoding: str = "WKB") -> bytes:
    """Return GeoParquet ``geo`` metadata; ``crs=...`` of ``None`` writes an explicit null CRS."""
    entry: dict[str, object] = {"encoding": encoding, "geometry_types": []}
    if crs is not None:
        entry["crs"] = pyproj.CRS.from_user_input(crs).to_json_dict()
    else:
        entry["crs"] = None
    return json.dumps({"version": "1.1.0", "primary_column": column, "columns": {column: entry}}).encode()


def wkb(wkt: str | None) -> bytes | None:
    """Return the WKB of ``wkt`` (``None`` stays ``None``)."""
    return None if wkt is None else shapely.to_wkb(shapely.from_wkt(wkt))


def with_geo(table: pa.Table, crs: object = "EPSG:4326", column: str = "geometry") -> pa.Table:
    """Return ``table`` with GeoParquet metadata for ``column`` in ``crs``."""
    return table.replace_schema_metadata({b"geo": geo_metadata(crs, column)})


def trajectories(rows: list[dict]) -> pa.Table:
    """Return a trajectories table from rows with ``wkt`` and ``times_s`` (seconds after T0)."""
    table = pa.table(
        {
            "trip_id": pa.array([r.get("trip_id") for r in rows], pa.string()),
            "vehicle_id": pa.array([r.get("vehicle_id", "V1") for r in rows], pa.string()),
            "geometry": pa.array([wkb(r.get("wkt")) for r in rows], pa.binary()),
            "timestamps": pa.array(
                [None if r.get("times_s") is None else [T0_MS + int(s * 1000) for s in r["times_s"]] for r in rows],
                pa.list_(pa.int64()),
            ).cast(pa.list_(TS)),
            "start_time": pa.array([r.get("start_ms") for r in rows], pa.int64()).cast(TS),
            "end_time": pa.array([r.get("end_ms") for r in rows], pa.int64()).cast(TS),
            "load_kg": pa.array([r.get("load_kg") for r in rows], pa.float64()),
        }
    )
    return with_geo(table)


# About 100 m east per 10 s along a street in Tokyo: 36 km/h.
GOOD_LINE = "LINESTRING (139.7000 35.6800, 139.7011 35.6800, 139.7022 35.6800)"
GOOD_TRIP = {"trip_id": "T1", "vehicle_id": "V1", "wkt": GOOD_LINE, "times_s": [0, 10, 20], "load_kg": 500.0}


def vehicles(rows: list[dict] | None = None) -> pa.Table:
    """Return a vehicles master; default one diesel light truck ``V1`` and one hybrid car ``V2``."""
    rows = rows or [
        {"vehicle_id": "V1", "vehicle_class": "light_truck", "fuel_type": "diesel"},
        {"vehicle_id": "V2", "vehicle_class": "passenger", "fuel_type": "hybrid"},
    ]
    return pa.table(
        {
            "vehicle_id": pa.array([r.get("vehicle_id") for r in rows], pa.string()),
            "vehicle_class": pa.array([r.get("vehicle_class") for r in rows], pa.string()),
            "fuel_type": pa.array([r.get("fuel_type") for r in rows], pa.string()),
            "catalog_fuel_economy_km_per_l": pa.array([r.get("fe", 12.5) for r in rows], pa.float64()),
            "test_cycle": pa.array([r.get("test_cycle", "WLTC") for r in rows], pa.string()),
            "max_payload_kg": pa.array([r.get("payload", 2000.0) for r in rows], pa.float64()),
            "model_year": pa.array([r.get("model_year", 2020) for r in rows], pa.int64()),
        }
    )


def tachometer(rows: list[dict] | None = None) -> pa.Table:
    """Return tachometer records; default three records of ``V1`` one second apart."""
    rows = rows or [
        {"s": 0, "speed": 0.0, "fuel": 0.5},
        {"s": 1, "speed": 10.0, "fuel": 1.0},
        {"s": 2, "speed": 20.0, "fuel": 1.5},
    ]
    return pa.table(
        {
            "vehicle_id": pa.array([r.get("vehicle_id", "V1") for r in rows], pa.string()),
            "ts": pa.array([None if r.get("s") is None else T0_MS + int(r["s"] * 1000) for r in rows], pa.int64()).cast(TS),
            "speed_kmh": pa.array([r.get("speed") for r in rows], pa.float64()),
            "engine_rpm": pa.array([r.get("rpm", 1500.0) for r in rows], pa.float64()),
            "fuel_ml": pa.array([r.get("fuel") for r in rows], pa.float64()),
        }
    )


URBAN_AREA = "POLYGON ((139.69 35.67, 139.71 35.67, 139.71 35.69, 139.69 35.69, 139.69 35.67))"
ROAD_LINK = "LINESTRING (139.7000 35.6800, 139.7030 35.6800)"


def geo_attributes(rows: list[dict] | None = None) -> pa.Table:
    """Return geo features; default one urban area and one road link, plus a pass-through column."""
    rows = rows or [
        {"feature_id": "osm-a1", "wkt": URBAN_AREA, "area_type": "urban"},
        {"feature_id": "osm-l1", "wkt": ROAD_LINK, "road_class": "primary", "speed_limit_kmh": 50.0},
    ]
    table = pa.table(
        {
            "feature_id": pa.array([r.get("feature_id") for r in rows], pa.string()),
            "source": pa.array([r.get("source", "osm") for r in rows], pa.string()),
            "geometry": pa.array([wkb(r.get("wkt")) for r in rows], pa.binary()),
            "road_class": pa.array([r.get("road_class") for r in rows], pa.string()),
            "speed_limit_kmh": pa.array([r.get("speed_limit_kmh") for r in rows], pa.float64()),
            "gradient_pct": pa.array([r.get("gradient_pct") for r in rows], pa.float64()),
            "area_type": pa.array([r.get("area_type") for r in rows], pa.string()),
            "elevation_m": pa.array([r.get("elevation_m") for r in rows], pa.float64()),
            "name": pa.array([r.get("name", "x") for r in rows], pa.string()),
        }
    )
    return with_geo(table)


def good_day() -> dict[str, pa.Table]:
    """Return one well-formed day, one table per dataset."""
    return {
        "trajectories": trajectories([GOOD_TRIP, {**GOOD_TRIP, "trip_id": "T2", "vehicle_id": "V2"}]),
        "vehicles": vehicles(),
        "tachometer": tachometer(),
        "geo_attributes": geo_attributes(),
    }


def write_day(root: Path, tables: dict[str, pa.Table]) -> Path:
    """Write each table as ``root/<dataset>/part-0.parquet`` and return ``root``."""
    for dataset, table in tables.items():
        folder = root / dataset
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "part-0.parquet")
    return root
