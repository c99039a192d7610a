"""Geometry encoding and CRS of a client file, and reprojection of WKB to EPSG:4326."""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyproj
import shapely

from compute.contract.errors import ContractError, Phrases, phrase
from compute.contract.reasons import ErrorCode
from compute.contract.settings import ColumnMapping

TARGET_CRS = "EPSG:4326"
# GeoParquet: a column whose metadata has no "crs" key is in OGC:CRS84 (longitude, latitude).
DEFAULT_GEOPARQUET_CRS = "OGC:CRS84"


def resolve_source_crs(
    dataset: str, source_column: str, schema: pa.Schema, arrow_type: pa.DataType, mapping: ColumnMapping
) -> pyproj.CRS:
    """Return the CRS of the geometry column, from the GeoParquet metadata or the mapping.

    Raises
    ------
    ContractError
        If the column is not WKB, the file has no usable ``geo`` metadata and the mapping declares
        none, or the CRS is null or not known to pyproj.
    """
    if not (pa.types.is_null(arrow_type) or pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type)):
        raise ContractError(
            ErrorCode.GEOMETRY_ENCODING_UNSUPPORTED,
            dataset,
            "geometry",
            phrase("wkb_binary"),
            phrase("arrow_type", type=str(arrow_type)),
        )

    column_meta, found = _geo_column_metadata(schema, source_column)
    if column_meta is None:
        if mapping.geometry_encoding == "WKB" and mapping.crs is not None:
            return _parse_crs(dataset, mapping.crs)
        raise ContractError(
            ErrorCode.GEO_METADATA_MISSING,
            dataset,
            "geometry",
            phrase("geo_metadata_wkb_crs"),
            found,
        )

    encoding = column_meta.get("encoding")
    if encoding != "WKB":
        raise ContractError(
            ErrorCode.GEOMETRY_ENCODING_UNSUPPORTED,
            dataset,
            "geometry",
            phrase("encoding", encoding="WKB"),
            phrase("encoding", encoding=repr(encoding)),
        )
    if mapping.override_file_crs and mapping.crs is not None:
        return _parse_crs(dataset, mapping.crs)
    if "crs" not in column_meta:
        return _parse_crs(dataset, DEFAULT_GEOPARQUET_CRS)
    if column_meta["crs"] is None:
        if mapping.crs is not None:
            return _parse_crs(dataset, mapping.crs)
        raise ContractError(
            ErrorCode.CRS_UNKNOWN,
            dataset,
            "geometry",
            phrase("crs_projjson_or_epsg"),
            phrase("crs_null"),
        )
    return _parse_crs(dataset, column_meta["crs"])


def _has_geo(schema: pa.Schema) -> bool:
    return bool(schema.metadata) and b"geo" in schema.metadata


def _geo_column_metadata(schema: pa.Schema, column: str) -> tuple[dict | None, Phrases]:
    """Return the GeoParquet entry of ``column``, or ``None`` and what was found in its place."""
    if not _has_geo(schema):
        return None, phrase("no_geo_key")
    try:
        geo = json.loads(schema.metadata[b"geo"])
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return None, phrase("geo_not_json", error=str(error))
    columns = geo.get("columns") if isinstance(geo, dict) else None
    if not isinstance(columns, dict):
        return None, phrase("geo_without_columns", value=repr(schema.metadata[b"geo"][:120]))
    entry = columns.get(column)
    if not isinstance(entry, dict):
        return None, phrase("geo_column_absent", column=column, columns=str(sorted(columns)[:10]))
    return entry, ()


def _parse_crs(dataset: str, value: object) -> pyproj.CRS:
    try:
        if isinstance(value, dict):
            return pyproj.CRS.from_json_dict(value)
        return pyproj.CRS.from_user_input(value)
    except (pyproj.exceptions.CRSError, TypeError, ValueError) as error:
        shown = json.dumps(value)[:120] if isinstance(value, dict) else repr(value)
        raise ContractError(
            ErrorCode.CRS_UNKNOWN, dataset, "geometry", phrase("crs_known_to_pyproj"), phrase("crs_value", value=shown)
        ) from error


def is_lon_lat_wgs84(crs: pyproj.CRS) -> bool:
    """Return whether ``crs`` is WGS 84 longitude/latitude in either axis order."""
    return crs.equals(pyproj.CRS.from_epsg(4326), ignore_axis_order=True)


@lru_cache(maxsize=32)
def _transformer(source_wkt: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(pyproj.CRS.from_wkt(source_wkt), TARGET_CRS, always_xy=True)


def reproject_wkb(column: pa.Array, source_crs: pyproj.CRS) -> pa.Array:
    """Return WKB geometries in EPSG:4326; Z values (elevation in metres) are kept as they are.

    Rows whose WKB cannot be decoded keep their original bytes, so validation can reject them
    with their value.
    """
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), pa.binary())
    column = column.cast(pa.binary())
    if is_lon_lat_wgs84(source_crs) or len(column) == 0:
        return column

    raw = np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)
    geometries = shapely.from_wkb(raw, on_invalid="ignore")
    transformer = _transformer(source_crs.to_wkt())

    def _to_wgs84(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        out = coords.copy()
        out[:, 0] = x
        out[:, 1] = y
        return out

    projected = shapely.transform(geometries, _to_wgs84, include_z=None)
    encoded = shapely.to_wkb(projected, include_srid=False)
    keep_raw = shapely.is_missing(geometries) & np.array([value is not None for value in raw], dtype=bool)
    encoded = np.where(keep_raw, raw, encoded)
    return pa.array(list(encoded), type=pa.binary())


def geo_metadata_4326() -> bytes:
    """Return GeoParquet 1.1 ``geo`` metadata for one WKB column ``geometry`` in EPSG:4326."""
    return _geo_metadata_4326()


@lru_cache(maxsize=1)
def _geo_metadata_4326() -> bytes:
    crs = pyproj.CRS.from_epsg(4326).to_json_dict()
    meta = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": [], "crs": crs}},
    }
    return json.dumps(meta).encode()
