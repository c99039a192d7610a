"""Row rules on geometry: presence, type, emptiness, validity, coordinate range, repair."""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

from compute.contract.details import Detail, geos_problem
from compute.contract.frames import WKB_UNREADABLE, describe_unreadable_wkb
from compute.contract.reasons import FlagCode, ReasonCode
from compute.contract.state import RuleState, objects_where

# shapely type ids (shapely.GeometryType)
LINESTRING = 1
POLYGON = 3
MULTILINESTRING = 5
MULTIPOLYGON = 6
ALLOWED_TYPES: dict[str, tuple[int, ...]] = {
    "trajectories": (LINESTRING,),
    "geo_attributes": (LINESTRING, POLYGON, MULTILINESTRING, MULTIPOLYGON),
}
_TYPE_NAMES = {
    0: "Point",
    1: "LineString",
    2: "LinearRing",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}


def check_geometry(dataset: str, frame: pd.DataFrame, geometries: np.ndarray, state: RuleState) -> np.ndarray:
    """Apply the geometry rules and return the geometries with repaired polygons in place.

    Rules in order: missing, unreadable WKB, wrong type, empty, single point, then invalid. A
    one-vertex LineString WKB cannot be decoded and counts as single point, like a line whose
    vertices are all the same point. Invalid lines, and any geometry with an infinite Z, are
    rejected. Invalid polygons are repaired and flagged, unless no area is left. Last come coordinates out of range and at (0, 0).
    """
    missing = shapely.is_missing(geometries)
    raw = frame[WKB_UNREADABLE].to_numpy(dtype=object) if WKB_UNREADABLE in frame else np.full(len(frame), None, dtype=object)
    unreadable = missing & pd.notna(raw)
    single_point_wkb = np.array([_is_short_linestring(value) for value in raw[unreadable]], dtype=bool)
    short = np.zeros(len(frame), dtype=bool)
    short[np.flatnonzero(unreadable)[single_point_wkb]] = True

    state.reject(ReasonCode.GEOMETRY_MISSING, missing & ~unreadable, detail=Detail("geometry_null"))
    state.reject(ReasonCode.GEOMETRY_SINGLE_POINT, short, value=raw, detail=Detail("wkb_too_short"))
    state.reject(
        ReasonCode.GEOMETRY_UNREADABLE,
        unreadable,
        value=raw,
        detail=lambda hit: [Detail("wkb_undecodable", {"size_bytes": len(raw[i])}) for i in hit],
    )

    type_ids = shapely.get_type_id(geometries)
    wrong_type = ~missing & ~np.isin(type_ids, ALLOWED_TYPES[dataset])
    state.reject(
        ReasonCode.GEOMETRY_WRONG_TYPE,
        wrong_type,
        value=lambda hit: [_TYPE_NAMES.get(int(t), str(t)) for t in type_ids[hit]],
        detail=Detail("types_allowed", {"types": ", ".join(_TYPE_NAMES[t] for t in ALLOWED_TYPES[dataset])}),
    )
    state.reject(ReasonCode.GEOMETRY_EMPTY, ~missing & shapely.is_empty(geometries), value=geometries, detail=Detail("no_vertices"))

    is_line = np.isin(type_ids, (LINESTRING, MULTILINESTRING))
    line_open = state.open & is_line
    n_vertices = shapely.get_num_coordinates(geometries)
    zero_length = np.zeros(len(frame), dtype=bool)
    zero_length[line_open] = shapely.length(geometries[line_open]) == 0
    state.reject(
        ReasonCode.GEOMETRY_SINGLE_POINT,
        line_open & ((n_vertices < 2) | zero_length),
        value=geometries,
        detail=lambda hit: [Detail("no_second_point", {"vertices": int(n_vertices[i])}) for i in hit],
    )

    valid = np.ones(len(frame), dtype=bool)
    valid[state.open] = shapely.is_valid(geometries[state.open])
    state.reject(
        ReasonCode.GEOMETRY_INVALID,
        is_line & ~valid,
        value=geometries,
        detail=lambda hit: [Detail("geos_invalid", geos_problem(shapely.is_valid_reason(geometries[i]))) for i in hit],
    )
    _reject_infinite_elevation(geometries, state)
    geometries = _repair_polygons(geometries, state.open & ~is_line & ~valid, state)

    _check_coordinates(geometries, state)
    return geometries


def _reject_infinite_elevation(geometries: np.ndarray, state: RuleState) -> None:
    """Reject geometries with an infinite Z; a NaN Z stays, as an unknown elevation of that vertex.

    GEOS validity looks at x and y only, so an infinite elevation would pass it and turn into an
    infinite road gradient later.
    """
    candidates = objects_where(state.open & shapely.has_z(geometries), geometries)
    coords, owner = shapely.get_coordinates(candidates, include_z=True, return_index=True)
    if coords.size == 0:
        return
    bad = np.isinf(coords[:, 2])
    if not bad.any():
        return
    rows, first = np.unique(owner[bad], return_index=True)
    positions = np.flatnonzero(bad)[first]
    starts = np.searchsorted(owner, rows)
    value = np.full(geometries.size, None, dtype=object)
    detail = np.full(geometries.size, None, dtype=object)
    for row, position, start in zip(rows, positions, starts, strict=True):
        value[row] = f"z = {coords[position, 2]}"
        detail[row] = Detail("elevation_infinite", {"vertex": int(position - start)})
    mask = np.zeros(geometries.size, dtype=bool)
    mask[rows] = True
    state.reject(ReasonCode.GEOMETRY_INVALID, mask, value=value, detail=detail)


def _is_short_linestring(raw: object) -> bool:
    header = describe_unreadable_wkb(raw) if isinstance(raw, (bytes, bytearray)) else None
    return header is not None and header[1] < 2


def _repair_polygons(geometries: np.ndarray, invalid: np.ndarray, state: RuleState) -> np.ndarray:
    positions = np.flatnonzero(invalid)
    if positions.size == 0:
        return geometries
    original = geometries[positions]
    # "structure" with keep_collapsed=False returns polygonal output only (GEOS >= 3.10).
    repaired = shapely.make_valid(original, method="structure", keep_collapsed=False)
    lost = shapely.is_empty(repaired) | shapely.is_missing(repaired)

    no_area = np.zeros(geometries.size, dtype=bool)
    no_area[positions[lost]] = True
    reasons = {int(p): shapely.is_valid_reason(g) for p, g in zip(positions, original)}
    state.reject(
        ReasonCode.GEOMETRY_INVALID,
        no_area,
        value=geometries,
        detail=lambda hit: [Detail("repair_left_no_area", geos_problem(reasons[int(i)])) for i in hit],
    )

    fixed = positions[~lost]
    result = geometries.copy()
    result[fixed] = repaired[~lost]
    flagged = np.zeros(geometries.size, dtype=bool)
    flagged[fixed] = True
    state.flag(FlagCode.GEOMETRY_REPAIRED, flagged)
    return result


def _check_coordinates(geometries: np.ndarray, state: RuleState) -> None:
    candidates = objects_where(state.open, geometries)
    coords, owner = shapely.get_coordinates(candidates, return_index=True)
    if coords.size == 0:
        return
    x = coords[:, 0]
    y = coords[:, 1]

    out_of_range = (np.abs(x) > 180) | (np.abs(y) > 90)
    _reject_first_coordinate(ReasonCode.COORDINATE_OUT_OF_RANGE, out_of_range, owner, coords, geometries.size, state)
    null_island = (x == 0) & (y == 0)
    _reject_first_coordinate(ReasonCode.COORDINATE_NULL_ISLAND, null_island, owner, coords, geometries.size, state)


def _reject_first_coordinate(
    code: ReasonCode, bad: np.ndarray, owner: np.ndarray, coords: np.ndarray, n_rows: int, state: RuleState
) -> None:
    if not bad.any():
        return
    rows, first = np.unique(owner[bad], return_index=True)
    bad_positions = np.flatnonzero(bad)[first]
    # Vertex number within its geometry: position minus the position of the geometry's first vertex.
    starts = np.searchsorted(owner, rows)
    value = np.full(n_rows, None, dtype=object)
    detail = np.full(n_rows, None, dtype=object)
    for row, position, start in zip(rows, bad_positions, starts):
        value[row] = f"({coords[position, 0]:.7g}, {coords[position, 1]:.7g})"
        detail[row] = Detail("vertex_lon_lat", {"vertex": int(position - start)})
    mask = np.zeros(n_rows, dtype=bool)
    mask[rows] = True
    state.reject(code, mask, value=value, detail=detail)
