"""Builders of hostile client tables for the hostile-input tests, made in code.

A hostile table is what a careless or unusual client writer produces: NaN coordinates, Z values,
odd keys, time zones, float model years, broken GeoParquet metadata. Each builder returns an
Arrow table with GeoParquet metadata where the dataset has geometry, so a test changes one thing
at a time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyproj
import shapely

from compute.contract import (
    ContractSettings,
    ValidationContext,
    conform_table,
    find_duplicate_keys,
    to_frame,
    validate_rows,
)
from tests.contract.contract_corpus import vehicles, write_day

# Builders shared with the contract corpus and re-exported for the hostile tests.
__all__ = ["vehicles", "write_day"]

T0_MS = 1_785_000_000_000  # 2026-07-25T17:20:00Z
TS = pa.timestamp("ms", tz="UTC")
# Three vertices about 100 m apart along a street in Tokyo.
LINE = shapely.LineString([(139.7000, 35.68), (139.7011, 35.68), (139.7022, 35.68)])
AREA = shapely.Polygon([(139.69, 35.67), (139.71, 35.67), (139.71, 35.69), (139.69, 35.69)])
LINK = shapely.LineString([(139.7000, 35.68), (139.7030, 35.68)])


def geo_metadata(crs: object = "EPSG:4326") -> bytes:
    """Return GeoParquet 1.1 ``geo`` metadata for a WKB column ``geometry`` in ``crs``."""
    entry = {"encoding": "WKB", "geometry_types": [], "crs": pyproj.CRS.from_user_input(crs).to_json_dict()}
    return json.dumps({"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": entry}}).encode()


def encode(geometry: shapely.Geometry | bytes | None) -> bytes | None:
    """Return WKB of a shapely geometry; bytes and ``None`` pass as they are."""
    if geometry is None or isinstance(geometry, bytes):
        return geometry
    return bytes(shapely.to_wkb(geometry, include_srid=False))


def trajectories(
    geometries: Sequence[shapely.Geometry | bytes | None],
    times_s: Sequence[Sequence[float] | None] | None = None,
    trip_ids: Sequence[object] | None = None,
    vehicle_ids: Sequence[str | None] | None = None,
) -> pa.Table:
    """Return trips ``T0``, ``T1``, ... of vehicle ``V1``; ``times_s`` are seconds after ``T0_MS``.

    Without ``times_s`` each trip gets one time every 10 s per vertex of its geometry.
    """
    n_rows = len(geometries)
    if times_s is None:
        times_s = [None if not isinstance(g, shapely.Geometry) else [10.0 * i for i in range(shapely.get_num_coordinates(g))] for g in geometries]
    times = [None if t is None else [T0_MS + int(round(s * 1000)) for s in t] for t in times_s]
    return pa.table(
        {
            "trip_id": pa.array(list(trip_ids) if trip_ids is not None else [f"T{i}" for i in range(n_rows)]),
            "vehicle_id": pa.array(list(vehicle_ids) if vehicle_ids is not None else ["V1"] * n_rows, pa.string()),
            "geometry": pa.array([encode(g) for g in geometries], pa.binary()),
            "timestamps": pa.array(times, pa.list_(pa.int64())).cast(pa.list_(TS)),
            "load_kg": pa.array([500.0] * n_rows, pa.float64()),
        }
    ).replace_schema_metadata({b"geo": geo_metadata()})


def tachometer(rows: Sequence[dict] | None = None) -> pa.Table:
    """Return tachometer records; ``s`` is seconds after ``T0_MS``, vehicle ``V1`` by default."""
    rows = rows or [{"s": 0, "speed": 0.0, "fuel": 0.5}, {"s": 1, "speed": 10.0, "fuel": 1.0}]
    return pa.table(
        {
            "vehicle_id": pa.array([r.get("vehicle_id", "V1") for r in rows], pa.string()),
            "ts": pa.array([None if r.get("s") is None else T0_MS + int(r["s"] * 1000) for r in rows], pa.int64()).cast(TS),
            "speed_kmh": pa.array([r.get("speed") for r in rows], pa.float64()),
            "engine_rpm": pa.array([r.get("rpm", 1500.0) for r in rows], pa.float64()),
            "fuel_ml": pa.array([r.get("fuel") for r in rows], pa.float64()),
        }
    )


def geo_attributes(features: Sequence[tuple[str, shapely.Geometry | bytes | None, dict]] | None = None) -> pa.Table:
    """Return geo features from ``(feature_id, geometry, other columns)``; default one area, one link."""
    features = features or [("osm-a1", AREA, {"area_type": "urban"}), ("osm-l1", LINK, {"road_class": "primary"})]
    return pa.table(
        {
            "feature_id": pa.array([f[0] for f in features], pa.string()),
            "source": pa.array(["osm"] * len(features), pa.string()),
            "geometry": pa.array([encode(f[1]) for f in features], pa.binary()),
            "road_class": pa.array([f[2].get("road_class") for f in features], pa.string()),
            "speed_limit_kmh": pa.array([f[2].get("speed_limit_kmh") for f in features], pa.float64()),
            "gradient_pct": pa.array([f[2].get("gradient_pct") for f in features], pa.float64()),
            "area_type": pa.array([f[2].get("area_type") for f in features], pa.string()),
        }
    ).replace_schema_metadata({b"geo": geo_metadata()})


def good_day() -> dict[str, pa.Table]:
    """Return a small well-formed day: two trips, two vehicles, two records, one area, one link."""
    return {
        "trajectories": trajectories([LINE, LINE], vehicle_ids=["V1", "V2"]),
        "vehicles": vehicles(),
        "tachometer": tachometer(),
        "geo_attributes": geo_attributes(),
    }


def validate(
    dataset: str,
    table: pa.Table,
    known: Sequence[str] | None = ("V1", "V2"),
    settings: ContractSettings | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Conform and validate one table as the validate phase does; return ``(accepted, rejects)``."""
    settings = settings or ContractSettings()
    frame = to_frame(dataset, conform_table(dataset, table, settings))
    context = ValidationContext(
        known_vehicle_ids=None if known is None else np.array(known, dtype=object),
        duplicated_keys={dataset: find_duplicate_keys(dataset, [frame])},
        settings=settings,
    )
    accepted, rejects = validate_rows(dataset, frame, context)
    return accepted, rejects


def reasons_by_key(rejects: pd.DataFrame) -> dict[str, str]:
    """Return ``{row_key: reason}`` of a rejects frame."""
    return dict(zip(rejects["row_key"], rejects["reason"], strict=True))
