"""Segments x geo attributes: areas by containment, road links by nearest link within a distance.

Rules
-----
* A segment is represented by its midpoint (``lon_mid``, ``lat_mid``, EPSG:4326).
* Area: the polygon that contains the midpoint in its interior (a midpoint on a boundary is not
  contained). When several do (nested or overlapping areas), the smallest polygon wins, then the
  smallest ``feature_id``. No polygon: ``area_id`` and ``area_type`` are None.
* Road link: the nearest LineString within ``max_distance_m`` (inclusive) of the midpoint. The
  distance is measured in the tangent plane of the midpoint, scaled by the WGS 84 radii of
  curvature at the midpoint's latitude (meridian ``M`` north-south, ``N cos(lat)`` east-west).
  That plane is the same for every link the midpoint is compared with, and it differs from the
  geodesic distance by about ``tan(lat) * d / M`` relative (0.1 mm at 25 m near Tokyo). Equal
  distances are broken by the smallest ``feature_id``. No link in range: ``matched`` is False
  and the link columns are null.
* Link gradient: ``gradient_pct`` rises in the direction the link's LineString is drawn (first
  to last vertex). A segment travelling against that direction gets the opposite sign. The
  direction is compared with the nearest edge of the link, and at equal distance with the edge
  drawn first. A repeated vertex is no edge unless its LineString part has no other edge. A
  segment square to the edge, or without a displacement, keeps the sign as given.

Both rules depend only on the segment and the whole attribute layer, so the result of a partition
does not depend on how the day was partitioned. The attribute layer is small next to the
trajectories (tens of thousands of features), so it is broadcast to every partition together with
the grid indexes built here once per run.

How the joins run
-----------------
Both joins use a uniform grid in degrees with a sorted cell table (CSR): every feature, or every
straight edge of a link, is registered in the cells it can matter for, and a midpoint reads only
its own cell. A compiled loop (numba) first reads the member range of every midpoint's cell, then
walks the members: the point-to-edge distance for links, and a strict interior test for polygons
that are axis-aligned rectangles (mesh cells). It keeps the best candidate as it goes, so no
candidate-pair arrays are built. For links, ``np.hypot`` runs only for an edge whose squared
distance does not already show it to be out of range or farther than the best edge so far, which
gives the same result as running it for every edge. Other polygons go through
``shapely.contains_xy`` on their candidate pairs only. No shapely geometry is created per segment.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import geopandas as gpd
import numba
import numpy as np
import pandas as pd
import pyproj
import shapely

from compute import columns as c

_POLYGONAL = ("Polygon", "MultiPolygon")
_LINEAR = ("LineString", "MultiLineString")
_WGS84_A_M = 6_378_137.0
_WGS84_E2 = (1.0 / 298.257223563) * (2.0 - 1.0 / 298.257223563)
_RAD = np.pi / 180.0
_NO_MEMBER = np.iinfo(np.int64).max
#: Upper bound of grid cells along one axis of the area and link indexes (keys stay small and sparse).
_MAX_CELLS_PER_AXIS = 1 << 20
#: Smallest cell of the link grid (m). Cells are one search radius wide when the radius is larger.
_MIN_LINK_CELL_M = 10.0
#: Most (cell, edge) entries of a link grid. A larger layer gets wider cells (:func:`_build_edge_grid`).
#: The grid then takes at most about 12 bytes per entry (an int32 member, and per occupied cell an
#: int64 key and an int32 offset), 400 MiB. Building it takes about 40 bytes per entry for a
#: moment on the client. At 25 m cells, 2 million links of a whole country took 158 million
#: entries and 101 million cells: 2.2 GB sent to every worker and 11.5 GiB on the client.
_MAX_LINK_GRID_ENTRIES = 1 << 25
#: Grids with at most this many cells also get a table of member offsets by cell key (4 bytes a
#: cell, 16 MiB at most), which replaces a binary search per point by one lookup. A city or
#: prefecture fits; a country-wide layer at 25 m cells does not and keeps the binary search.
_MAX_DENSE_CELLS = 1 << 22

JOIN_COLUMNS: tuple[str, ...] = (
    c.AREA_ID, c.AREA_TYPE, c.LINK_ID, c.ROAD_CLASS, c.SPEED_LIMIT_KMH, c.LINK_GRADIENT_PCT,
    c.LINK_DISTANCE_M, c.MATCHED,
)


@dataclass(frozen=True)
class _Grid:
    """A uniform grid in degrees and, per occupied cell, the members registered in it (CSR)."""

    x0: float
    y0: float
    width_deg: float
    height_deg: float
    n_columns: int
    keys: np.ndarray  # sorted unique cell keys (row * n_columns + column)
    starts: np.ndarray  # len(keys) + 1 offsets into members
    members: np.ndarray  # member index, ascending within each cell
    #: Offsets into members by cell key (len = cells + 1) when the grid has at most
    #: ``_MAX_DENSE_CELLS`` cells. Otherwise it is empty and the lookup searches ``keys``.
    dense: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def pairs(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(point, member)`` candidate pairs, grouped by point in ascending order.

        A member is registered up to the cell before the grid line its box ends on, so a point
        whose cell coordinate is exactly a whole number also reads the cell before it.
        """
        with np.errstate(invalid="ignore"):
            column_f = (x - self.x0) / self.width_deg
            row_f = (y - self.y0) / self.height_deg
            column = np.floor(column_f)
            row = np.floor(row_f)
        usable = np.isfinite(column) & np.isfinite(row)
        column = np.where(usable, column, -1.0)
        row = np.where(usable, row, -1.0)
        points = np.arange(len(x), dtype=np.int64)
        parts = [self._cell_pairs(points, column, row)]

        on_column = usable & (column_f == column) & (column > 0)
        on_row = usable & (row_f == row) & (row > 0)
        for shift_column, shift_row, on in ((1, 0, on_column), (0, 1, on_row), (1, 1, on_column & on_row)):
            if on.any():
                chosen = np.flatnonzero(on)
                parts.append(self._cell_pairs(chosen, column[chosen] - shift_column, row[chosen] - shift_row))
        if len(parts) == 1:
            return parts[0]
        point = np.concatenate([p for p, _ in parts])
        member = np.concatenate([m for _, m in parts])
        order = np.argsort(point, kind="stable")
        return point[order], member[order]

    def _cell_pairs(self, points: np.ndarray, column: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pairs of ``points`` with the members of cell ``(column, row)`` of each."""
        inside = (column >= 0) & (column < self.n_columns) & (row >= 0)
        if len(self.keys) == 0 or not inside.any():
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        key = np.where(inside, row * self.n_columns + column, -1).astype(np.int64)
        position = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        found = inside & (self.keys[position] == key)
        first = np.where(found, self.starts[position], 0)
        count = np.where(found, self.starts[position + 1] - first, 0)

        point = np.repeat(points, count)
        within_cell = np.arange(len(point), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        member = self.members[np.repeat(first, count) + within_cell].astype(np.int64)
        return point, member


@dataclass(frozen=True)
class _LinkEdges:
    """Straight edges of every link, in degrees, with the link row each belongs to."""

    ax: np.ndarray
    ay: np.ndarray
    bx: np.ndarray
    by: np.ndarray
    link: np.ndarray


@dataclass
class GeoLayers:
    """The day's attribute layer split into areas and road links, ready to join.

    Attributes
    ----------
    areas
        Polygons in EPSG:4326, sorted so that row order is the tie-break order (size, then
        ``feature_id``).
    links
        LineStrings in EPSG:4326, sorted by ``feature_id`` (the tie-break order).
    metric_crs
        UTM zone of the layer's centre; used to order areas by size.
    """

    areas: gpd.GeoDataFrame
    links: gpd.GeoDataFrame
    metric_crs: pyproj.CRS
    _area_grid: _Grid | None = field(default=None, repr=False)
    _area_is_box: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)
    _area_bounds: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)), repr=False)
    _edges: _LinkEdges | None = field(default=None, repr=False)
    _link_grids: dict[float, _Grid] = field(default_factory=dict, repr=False)
    _text_codes: dict[tuple[str, str], tuple[np.ndarray, pd.Index]] = field(default_factory=dict, repr=False)
    _text_tables: dict[tuple[str, str], tuple[np.ndarray, pd.CategoricalDtype]] = field(default_factory=dict, repr=False)
    _number_tables: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n_features(self) -> int:
        return len(self.areas) + len(self.links)

    def text_codes(self, layer: str, column: str) -> tuple[np.ndarray, pd.Index]:
        """Return integer codes (-1 for missing) and categories of a text column of ``layer``
        (``"areas"`` or ``"links"``), computed on first use and kept for the next pieces."""
        key = (layer, column)
        if key not in self._text_codes:
            series = getattr(self, layer)[column]
            codes, uniques = pd.factorize(series.astype(object).where(series.notna(), None).to_numpy(), use_na_sentinel=True)
            self._text_codes[key] = (codes, pd.Index(uniques, dtype=object))
        return self._text_codes[key]

    def _text_table(self, layer: str, column: str) -> tuple[np.ndarray, pd.CategoricalDtype]:
        """Return the codes of a text column by row with -1 appended, and their categorical dtype.

        Indexing the table with a pick (-1 for none) gives the codes of the picked rows. The codes
        are in the integer type pandas stores for that number of categories, so building the
        categorical does not convert them again.
        """
        key = (layer, column)
        if key not in self._text_tables:
            codes, uniques = self.text_codes(layer, column)
            dtype = pd.CategoricalDtype(uniques, ordered=False)
            code_type = pd.Categorical.from_codes(np.zeros(0, dtype=np.int64), dtype=dtype).codes.dtype
            self._text_tables[key] = (np.append(codes, -1).astype(code_type), dtype)
        return self._text_tables[key]

    def _number_table(self, layer: str, column: str) -> np.ndarray:
        """Return a numeric column as float64 by row with NaN appended (non-numeric values are NaN)."""
        key = (layer, column)
        if key not in self._number_tables:
            values = pd.to_numeric(getattr(self, layer)[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            self._number_tables[key] = np.append(values, np.nan)
        return self._number_tables[key]

    def link_grid(self, max_distance_m: float) -> _Grid | None:
        """Return the edge grid for ``max_distance_m``, built on first use and kept."""
        if self._edges is None or len(self._edges.link) == 0:
            return None
        key = float(max_distance_m)
        if key not in self._link_grids:
            self._link_grids[key] = _build_edge_grid(self._edges, key)
        return self._link_grids[key]


def prepare_layers(geo: gpd.GeoDataFrame, link_max_distance_m: float | None = None) -> GeoLayers:
    """Split accepted geo attributes into areas and links, order them for tie-breaks, index them.

    Parameters
    ----------
    geo
        Accepted ``geo_attributes`` rows in EPSG:4326 (polygons and line strings; points and other
        types are ignored here).
    link_max_distance_m
        When given, the link index for this search distance is built now, so that it travels
        with the layers to the workers instead of being rebuilt on each of them.

    Raises
    ------
    ValueError
        If ``geo`` is in another CRS than EPSG:4326.
    """
    if geo.crs is not None and geo.crs.to_epsg() != 4326:
        raise ValueError(f"geo attributes must be in EPSG:4326 before joining, got {geo.crs.to_string()}; conform them first")
    kinds = geo.geometry.geom_type.to_numpy()
    areas = geo.loc[np.isin(kinds, _POLYGONAL)].copy()
    links = geo.loc[np.isin(kinds, _LINEAR)].copy()

    metric = _metric_crs(links if len(links) else geo)
    areas["_size"] = areas.to_crs(metric).area if len(areas) else pd.Series(dtype=float)
    areas = areas.sort_values(["_size", c.FEATURE_ID], kind="mergesort").reset_index(drop=True)
    links = links.sort_values(c.FEATURE_ID, kind="mergesort").reset_index(drop=True)
    areas = gpd.GeoDataFrame(areas, geometry=c.GEOMETRY, crs="EPSG:4326")
    links = gpd.GeoDataFrame(links, geometry=c.GEOMETRY, crs="EPSG:4326")

    area_geoms = np.asarray(areas.geometry.array, dtype=object)
    bounds = shapely.bounds(area_geoms) if len(areas) else np.zeros((0, 4))
    is_box = np.asarray(shapely.equals(area_geoms, shapely.box(*bounds.T)), dtype=bool) if len(areas) else np.zeros(0, bool)
    layers = GeoLayers(
        areas=areas, links=links, metric_crs=metric,
        _area_grid=_build_area_grid(bounds) if len(areas) else None,
        _area_is_box=is_box, _area_bounds=bounds,
        _edges=_link_edges(np.asarray(links.geometry.array, dtype=object)),
    )
    if link_max_distance_m is not None:
        layers.link_grid(link_max_distance_m)
    return layers


def join_segments(segments: pd.DataFrame, layers: GeoLayers, max_distance_m: float) -> pd.DataFrame:
    """Return ``segments`` with area and road-link attributes (:data:`JOIN_COLUMNS`) added.

    Parameters
    ----------
    segments
        Segments with ``lon_mid`` and ``lat_mid`` in degrees (EPSG:4326).
    layers
        The result of :func:`prepare_layers`.
    max_distance_m
        Search radius for road links, in metres.

    Notes
    -----
    Cost is linear in the number of segments plus the number of candidate pairs, which are the
    features registered in a midpoint's grid cell (typically one or two). The grids are built
    once per layer and search distance.
    """
    lon = segments[c.LON_MID].to_numpy(dtype=np.float64)
    lat = segments[c.LAT_MID].to_numpy(dtype=np.float64)

    area_pick = locate_areas(lon, lat, layers)
    directed = c.EAST_M in segments.columns and c.NORTH_M in segments.columns
    link_pick, distance, against = _nearest_links_and_directions(
        lon, lat, layers, max_distance_m,
        segments[c.EAST_M].to_numpy(dtype=np.float64) if directed else np.zeros(0),
        segments[c.NORTH_M].to_numpy(dtype=np.float64) if directed else np.zeros(0),
    )
    gradient = _take_float(layers, "links", c.GRADIENT_PCT, link_pick)
    np.negative(gradient, out=gradient, where=against)

    joined = {
        c.AREA_ID: _take(layers, "areas", c.FEATURE_ID, area_pick),
        c.AREA_TYPE: _take(layers, "areas", c.AREA_TYPE, area_pick),
        c.LINK_ID: _take(layers, "links", c.FEATURE_ID, link_pick),
        c.ROAD_CLASS: _take(layers, "links", c.ROAD_CLASS, link_pick),
        c.SPEED_LIMIT_KMH: _take_float(layers, "links", c.SPEED_LIMIT_KMH, link_pick),
        c.LINK_GRADIENT_PCT: gradient,
        c.LINK_DISTANCE_M: distance,
        c.MATCHED: link_pick >= 0,
    }

    out = segments.copy(deep=False)
    for name, values in joined.items():
        # pandas 3.1 copies a bare ndarray on assignment. A Series on the frame's own index is
        # stored without a copy, which is safe because nothing else refers to these arrays.
        out[name] = pd.Series(values, index=out.index, copy=False)
    return out


_PREPARE_LOCK = threading.Lock()


def locate_areas(lon: np.ndarray, lat: np.ndarray, layers: GeoLayers) -> np.ndarray:
    """Return, per point, the row of the area that contains it (smallest first), or -1."""
    pick = np.full(len(lon), -1, dtype=np.int64)
    if layers._area_grid is None or len(lon) == 0:
        return pick
    grid = layers._area_grid
    lon = np.ascontiguousarray(lon, dtype=np.float64)
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    # Rectangles: a strict interior test on the bounds is exact, done in the compiled loop.
    # Areas are sorted by size then feature_id, so the smallest row inside wins.
    bounds = np.ascontiguousarray(layers._area_bounds, dtype=np.float64)
    pick, needs_geos = _locate_boxes(lon, lat, grid.x0, grid.y0, grid.width_deg, grid.height_deg, grid.n_columns,
                                     grid.keys, grid.starts, grid.dense, grid.members, layers._area_is_box, bounds)
    if not needs_geos.any():
        return pick

    # Other polygons: GEOS on the candidate pairs of the points that have any.
    chosen = np.flatnonzero(needs_geos)
    point, area = grid.pairs(lon[chosen], lat[chosen])
    other = ~layers._area_is_box[area]
    point, area = point[other], area[other]
    geoms = np.asarray(layers.areas.geometry.array, dtype=object)
    # Prepared polygons index their edges once, so a test no longer walks every vertex: one
    # area of 500,000 vertices took 5.26 s for 2,000 points unprepared and 0.11 s prepared.
    # The layer is a worker's broadcast copy, so each polygon is prepared once per worker. The
    # lock keeps two task threads from preparing the same polygon at once.
    with _PREPARE_LOCK:
        shapely.prepare(geoms[np.unique(area)])
    inside = shapely.contains_xy(geoms[area], lon[chosen][point], lat[chosen][point])
    polygon_pick = _min_per_point(point, np.where(inside, area, _NO_MEMBER), len(chosen)) if len(point) else np.full(len(chosen), -1)
    box_pick = pick[chosen]
    pick[chosen] = np.where((polygon_pick >= 0) & ((box_pick < 0) | (polygon_pick < box_pick)), polygon_pick, box_pick)
    return pick


def nearest_links(lon: np.ndarray, lat: np.ndarray, layers: GeoLayers, max_distance_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Return, per point, the row of the nearest link within ``max_distance_m`` (-1) and its distance (NaN)."""
    pick, distance, _ = _nearest_links_and_directions(lon, lat, layers, max_distance_m, np.zeros(0), np.zeros(0))
    return pick, distance


def _nearest_links_and_directions(
    lon: np.ndarray, lat: np.ndarray, layers: GeoLayers, max_distance_m: float, east_m: np.ndarray, north_m: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`nearest_links`, plus whether each point's displacement (``east_m``, ``north_m``, or
    empty arrays for none) runs against the drawn direction of the nearest edge of its link."""
    pick = np.full(len(lon), -1, dtype=np.int64)
    distance = np.full(len(lon), np.nan)
    against = np.zeros(len(lon), dtype=np.bool_)
    grid = layers.link_grid(max_distance_m)
    if grid is None or len(lon) == 0:
        return pick, distance, against
    e = layers._edges
    assert e is not None
    lon = np.ascontiguousarray(lon, dtype=np.float64)
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    _nearest_edges(lon, lat, grid.x0, grid.y0, grid.width_deg, grid.height_deg, grid.n_columns, grid.keys, grid.starts,
                   grid.dense, grid.members, e.ax, e.ay, e.bx, e.by, e.link, float(max_distance_m), pick, distance,
                   np.ascontiguousarray(east_m, dtype=np.float64), np.ascontiguousarray(north_m, dtype=np.float64), against)
    return pick, distance, against


# -- compiled loops ----------------------------------------------------------------------------
#
# The loops below run once per point over the members of its grid cell. They follow the rules of
# the module docstring and the cell lookup of ``_Grid.pairs``, including the extra cells of a
# point on a grid line. Arithmetic is float64 with fastmath off, so the compiler keeps the order
# of operations, and error_model="numpy" makes a division by zero give inf or NaN as numpy does.
# A longitude difference already in [-180, 180) is used as it is (``_wrapped``).
#
# Each join runs in two passes. The first (``_cell_ranges``) only reads the member range of every
# point's own cell from the cell table, so the CPU can run the reads of many points at once. The
# second pass walks the candidates. On a 747k-segment piece the two passes took less time than
# one loop doing both.

#: Value of ``end`` that marks a point on a grid line (a whole-number cell coordinate). The second
#: pass reads up to four cells for such a point.
_ON_GRID_LINE = -1
#: A candidate is skipped without ``np.hypot`` when its squared distance exceeds the squared
#: limit by this relative margin (see ``_squared_limit``).
_SKIP_MARGIN = 1e-9
#: Limits below this (m) are never used to skip a candidate, so that squares stay far from the
#: subnormal range where the margin would not cover the rounding.
_SKIP_MIN_M = 1e-150


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cell_members(key: int, keys: np.ndarray, starts: np.ndarray, dense: np.ndarray) -> tuple[int, int]:
    """Return the member range ``[first, end)`` of cell ``key`` (empty when the cell is absent)."""
    if dense.shape[0] > 0:
        if key + 1 < dense.shape[0]:
            return dense[key], dense[key + 1]
        return 0, 0
    return _searched_members(key, keys, starts)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _searched_members(key: int, keys: np.ndarray, starts: np.ndarray) -> tuple[int, int]:
    """Return the member range of cell ``key`` by binary search in the sorted ``keys``."""
    n = keys.shape[0]
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < n and keys[lo] == key:
        return starts[lo], starts[lo + 1]
    return 0, 0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cell_key(column: float, row: float, n_columns: int) -> int:
    """Return the key of the cell at whole ``column`` and ``row``, or -1 outside the grid."""
    if column >= 0 and column < n_columns and row >= 0:
        return int(row * n_columns + column)
    return -1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _point_cell(x: float, y: float, x0: float, y0: float, width: float, height: float, n_columns: int, k: int) -> int:
    """Return the key of the ``k``-th cell (0 to 3) a point reads, or -1.

    Cell 0 is the point's own cell. Cells 1 to 3 are the cells before it (left, below, both),
    read only when the point's cell coordinate is a whole number (see ``_Grid.pairs``).
    """
    column_f = (x - x0) / width
    row_f = (y - y0) / height
    column = np.floor(column_f)
    row = np.floor(row_f)
    if not (np.isfinite(column) and np.isfinite(row)):
        return -1
    shift_column = 1.0 if k == 1 or k == 3 else 0.0
    shift_row = 1.0 if k >= 2 else 0.0
    if shift_column > 0 and not (column_f == column and column > 0):
        return -1
    if shift_row > 0 and not (row_f == row and row > 0):
        return -1
    return _cell_key(column - shift_column, row - shift_row, n_columns)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cell_ranges(
    lon: np.ndarray, lat: np.ndarray, x0: float, y0: float, width: float, height: float, n_columns: int,
    keys: np.ndarray, starts: np.ndarray, dense: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the member range ``[first, end)`` of each point's own cell.

    The range is empty for a point outside the grid or with a non-finite coordinate. A point on a
    grid line gets ``end = _ON_GRID_LINE`` and its cells are read with ``_point_cell``.
    """
    n = lon.shape[0]
    first = np.zeros(n, dtype=np.int64)
    end = np.zeros(n, dtype=np.int64)
    use_dense = dense.shape[0] > 0
    for i in range(n):
        column_f = (lon[i] - x0) / width
        row_f = (lat[i] - y0) / height
        column = np.floor(column_f)
        row = np.floor(row_f)
        if not (np.isfinite(column) and np.isfinite(row)):
            continue
        if (column_f == column and column > 0) or (row_f == row and row > 0):
            end[i] = _ON_GRID_LINE
            continue
        cell = _cell_key(column, row, n_columns)
        if cell < 0:
            continue
        # The table read is written out here. numba 0.68 compiles a call to ``_cell_members``
        # instead of inlining it, and that call per point made this pass about three times slower.
        if use_dense:
            if cell + 1 < dense.shape[0]:
                first[i] = dense[cell]
                end[i] = dense[cell + 1]
        else:
            first[i], end[i] = _searched_members(cell, keys, starts)
    return first, end


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _wrapped(delta: float) -> float:
    """Wrap a longitude difference into [-180, 180). A value already inside is returned unchanged."""
    if -180.0 <= delta < 180.0:
        return delta
    return (delta + 180.0) % 360.0 - 180.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _metres_per_degree_at(lat: float) -> tuple[float, float]:
    """Return :func:`_metres_per_degree` of one latitude, with the same operations."""
    phi = lat * _RAD
    sin_phi = np.sin(phi)
    w = np.sqrt(1.0 - _WGS84_E2 * sin_phi * sin_phi)
    return _WGS84_A_M / w * np.cos(phi) * _RAD, _WGS84_A_M * (1.0 - _WGS84_E2) / (w * w * w) * _RAD


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _squared_limit(distance_m: float) -> float:
    """Return a squared length above which a candidate's distance is surely greater than ``distance_m``.

    ``ex * ex + ey * ey`` lies within a few 2**-53 (relative) of the exact squared length, and so
    does ``np.hypot(ex, ey) ** 2`` for a ``hypot`` accurate to a few ulps. A sum above
    ``distance_m ** 2 * (1 + 1e-9)`` therefore means that ``np.hypot`` returns more than
    ``distance_m``. This is true only while the squares are normal floats, so the limit is
    infinity (nothing is skipped) below ``_SKIP_MIN_M`` and for a NaN ``distance_m``.
    """
    if distance_m >= _SKIP_MIN_M:
        return distance_m * distance_m * (1.0 + _SKIP_MARGIN)
    return np.inf


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _locate_boxes(
    lon: np.ndarray, lat: np.ndarray, x0: float, y0: float, width: float, height: float, n_columns: int,
    keys: np.ndarray, starts: np.ndarray, dense: np.ndarray, members: np.ndarray, is_box: np.ndarray, bounds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Find, per point, the smallest rectangular area row whose interior contains it (-1 for none),
    and whether a non-rectangular area is among its candidates (those need GEOS)."""
    first, end = _cell_ranges(lon, lat, x0, y0, width, height, n_columns, keys, starts, dense)
    n = lon.shape[0]
    pick = np.full(n, -1, dtype=np.int64)
    needs_geos = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        if end[i] == first[i]:
            continue
        x = lon[i]
        y = lat[i]
        best = _NO_MEMBER
        n_cells = 4 if end[i] == _ON_GRID_LINE else 1
        for k in range(n_cells):
            if n_cells == 1:
                cell_first, cell_end = first[i], end[i]
            else:
                cell = _point_cell(x, y, x0, y0, width, height, n_columns, k)
                if cell < 0:
                    continue
                cell_first, cell_end = _cell_members(cell, keys, starts, dense)
            for j in range(cell_first, cell_end):
                area = members[j]
                if not is_box[area]:
                    needs_geos[i] = True
                elif bounds[area, 0] < x and x < bounds[area, 2] and bounds[area, 1] < y and y < bounds[area, 3] and area < best:
                    best = area
        if best != _NO_MEMBER:
            pick[i] = best
    return pick, needs_geos


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _nearest_edges(
    lon: np.ndarray, lat: np.ndarray, x0: float, y0: float, width: float, height: float,
    n_columns: int, keys: np.ndarray, starts: np.ndarray, dense: np.ndarray, members: np.ndarray,
    ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, edge_link: np.ndarray, max_distance_m: float,
    pick: np.ndarray, distance: np.ndarray, east_m: np.ndarray, north_m: np.ndarray, against: np.ndarray,
) -> None:
    """Write, per point, the nearest link within ``max_distance_m`` into ``pick`` and ``distance``.

    With a displacement per point (``east_m``, ``north_m``; empty arrays for none), ``against``
    is True where it points against the drawn direction of the nearest edge of the picked link
    (the smaller edge row, drawn first, at equal distance): a negative dot product, in the same
    metres. The order in which the grid cells list edges therefore does not change the result.

    Distance is measured in the tangent plane of the point, scaled as :func:`_metres_per_degree`
    does; the scale is computed only for a point whose own cell has members or that lies on a grid
    line. Equal distances go to the smaller link row. ``np.hypot`` is skipped for a candidate whose squared distance shows that it
    is beyond ``max_distance_m`` or farther than the best link so far (``_squared_limit``), so
    ``pick`` and ``distance`` are those of computing it for every candidate.
    """
    first, end = _cell_ranges(lon, lat, x0, y0, width, height, n_columns, keys, starts, dense)
    limit_max = _squared_limit(max_distance_m)
    directed = east_m.shape[0] == lon.shape[0]
    for i in range(lon.shape[0]):
        if end[i] == first[i]:
            continue
        px = lon[i]
        py = lat[i]
        kxp, kyp = _metres_per_degree_at(py)
        best = np.inf
        best_link = _NO_MEMBER
        best_edge = _NO_MEMBER
        best_dx = 0.0
        best_dy = 0.0
        limit = limit_max
        n_cells = 4 if end[i] == _ON_GRID_LINE else 1
        for k in range(n_cells):
            if n_cells == 1:
                cell_first, cell_end = first[i], end[i]
            else:
                cell = _point_cell(px, py, x0, y0, width, height, n_columns, k)
                if cell < 0:
                    continue
                cell_first, cell_end = _cell_members(cell, keys, starts, dense)
            for j in range(cell_first, cell_end):
                edge = members[j]
                x1 = _wrapped(ax[edge] - px) * kxp
                y1 = (ay[edge] - py) * kyp
                dx = _wrapped(bx[edge] - px) * kxp - x1
                dy = (by[edge] - py) * kyp - y1
                squared = dx * dx + dy * dy
                t = 0.0
                if squared > 0:
                    t = min(max(-(x1 * dx + y1 * dy) / squared, 0.0), 1.0)
                ex = x1 + t * dx
                ey = y1 + t * dy
                if ex * ex + ey * ey > limit:
                    continue
                d = np.hypot(ex, ey)
                if d <= max_distance_m:
                    link = edge_link[edge]
                    if d < best or (d == best and (link < best_link or (link == best_link and edge < best_edge))):
                        best = d
                        best_link = link
                        best_edge = edge
                        best_dx = dx
                        best_dy = dy
                        limit = min(limit, _squared_limit(d))
        if best_link != _NO_MEMBER:
            pick[i] = best_link
            distance[i] = best
            if directed:
                against[i] = east_m[i] * best_dx + north_m[i] * best_dy < 0.0


# -- indexes -----------------------------------------------------------------------------------


def _build_area_grid(bounds: np.ndarray) -> _Grid:
    """Grid of cells a quarter of the median area's box, each area registered where its box lies.

    Mesh edges rarely fall exactly on grid lines in floating point, so a box straddles one more
    cell than it covers. Quarter cells keep that overhead to about 0.4 candidates per point.
    """
    width = float(np.median(bounds[:, 2] - bounds[:, 0])) / 4.0
    height = float(np.median(bounds[:, 3] - bounds[:, 1])) / 4.0
    extent_x = float(bounds[:, 2].max() - bounds[:, 0].min())
    extent_y = float(bounds[:, 3].max() - bounds[:, 1].min())
    width = max(width, extent_x / _MAX_CELLS_PER_AXIS, 1e-9)
    height = max(height, extent_y / _MAX_CELLS_PER_AXIS, 1e-9)
    return _register(bounds, float(bounds[:, 0].min()), float(bounds[:, 1].min()), width, height)


def _build_edge_grid(edges: _LinkEdges, max_distance_m: float) -> _Grid:
    """Grid of cells one search radius wide (at least :data:`_MIN_LINK_CELL_M`); each edge is
    registered in the cells within the radius of it, piece by piece (:func:`_edge_pieces`).

    The radius in degrees is taken where it is widest: east-west at the highest latitude a point
    within ``max_distance_m`` of a link can have, north-south at the equator's meridian radius.
    A point within the radius of an edge then lies in a cell the edge is registered in.

    A layer that would register more than :data:`_MAX_LINK_GRID_ENTRIES` edges in cells gets
    wider cells, widened until it fits. Memory then stays bounded, and each point reads more
    candidates (about 1.8 times as many at twice the width), so the join of such a layer is
    slower. Results do not depend on the cell size.

    NOTE: that is true up to 89.9 degrees of latitude, where the width is capped, and not across
    the antimeridian. Longitudes are registered unwrapped, so a link just east of -180 is no candidate
    for a point just west of +180. An edge that crosses the antimeridian is registered along its
    unwrapped line, which runs the other way round the globe. It then misses points near its own
    ends, and matches points near longitude 0 on that line, where its ends wrap to opposite sides.
    Links of Japanese road networks are far from both limits.
    """
    height = max_distance_m / (_WGS84_A_M * (1.0 - _WGS84_E2) * _RAD)
    top = min(float(max(np.abs(edges.ay).max(), np.abs(edges.by).max())) + height, 89.9)
    kx, _ = _metres_per_degree(np.array([top]))
    width = max_distance_m / float(kx[0])
    bounds = np.c_[
        np.minimum(edges.ax, edges.bx) - width, np.minimum(edges.ay, edges.by) - height,
        np.maximum(edges.ax, edges.bx) + width, np.maximum(edges.ay, edges.by) + height,
    ]
    x0, y0 = float(bounds[:, 0].min()), float(bounds[:, 1].min())
    # Cells may be wider than the radius, which only adds candidates. The floor keeps a small
    # radius (the settings allow any positive one) from registering a 250 m edge in millions of
    # centimetre cells, and the cap on cells per axis keeps the cell keys inside int64.
    cell_m = max(max_distance_m, _MIN_LINK_CELL_M)
    extent_x = float(bounds[:, 2].max() - x0)
    extent_y = float(bounds[:, 3].max() - y0)
    while True:
        # From metres directly: a radius below about 1e-318 m is 0 in degrees.
        cell_width = max(cell_m / float(kx[0]), extent_x / _MAX_CELLS_PER_AXIS)
        cell_height = max(cell_m / (_WGS84_A_M * (1.0 - _WGS84_E2) * _RAD), extent_y / _MAX_CELLS_PER_AXIS)
        piece_bounds, piece_edge = _edge_pieces(edges, cell_width, cell_height)
        piece_bounds[:, 0] -= width
        piece_bounds[:, 1] -= height
        piece_bounds[:, 2] += width
        piece_bounds[:, 3] += height
        entries = _entry_count(piece_bounds, x0, y0, cell_width, cell_height)
        if entries <= _MAX_LINK_GRID_ENTRIES or not np.isfinite(entries):
            break
        # Entries fall a little slower than the cell area grows (a box touches about one more
        # cell per axis), so the loop may take a second step.
        cell_m *= max(1.25, float(np.sqrt(entries / _MAX_LINK_GRID_ENTRIES)))
    return _register(piece_bounds, x0, y0, cell_width, cell_height, owner=piece_edge)


def _cell_spans(bounds: np.ndarray, x0: float, y0: float, width: float, height: float) -> tuple[np.ndarray, ...]:
    """Return the first and last column and row of the cells each box overlaps (see :func:`_register`)."""
    column0 = np.floor((bounds[:, 0] - x0) / width).astype(np.int64)
    column1 = np.maximum(np.ceil((bounds[:, 2] - x0) / width).astype(np.int64) - 1, column0)
    row0 = np.floor((bounds[:, 1] - y0) / height).astype(np.int64)
    row1 = np.maximum(np.ceil((bounds[:, 3] - y0) / height).astype(np.int64) - 1, row0)
    return column0, column1, row0, row1


def _entry_count(bounds: np.ndarray, x0: float, y0: float, width: float, height: float) -> float:
    """Return how many (cell, box) entries :func:`_register` would make, before merging the boxes of one member."""
    column0, column1, row0, row1 = _cell_spans(bounds, x0, y0, width, height)
    return float(np.sum((column1 - column0 + 1).astype(np.float64) * (row1 - row0 + 1)))


def _edge_pieces(edges: _LinkEdges, cell_width: float, cell_height: float) -> tuple[np.ndarray, np.ndarray]:
    """Split every edge into equal pieces, to register each piece by its own box.

    Returns the box of each piece (min x, min y, max x, max y, in degrees, without the search
    radius) and the edge it belongs to. The join still measures the whole edge, so pieces change
    which cells list an edge and not the distance to it.

    An edge that spans ``cx`` by ``cy`` cells, cut into ``n`` pieces, takes up to
    ``n * (cx / n + 3) * (cy / n + 3)`` cells. The radius pads a piece by at most one cell on
    each side, and a box that is not aligned with the grid touches one more cell. The count is
    least at ``n = sqrt(cx * cy) / 3``. Rounded to a whole ``n``, it is at most
    ``6 * (cx + cy) + 12``, linear in the length of the edge. The edge's own box would take about
    ``cx * cy`` cells (1.4e8 for a 3-degree diagonal edge at 25 m cells). An edge along a grid
    axis stays one piece.
    """
    ax, ay, bx, by = edges.ax, edges.ay, edges.bx, edges.by
    with np.errstate(invalid="ignore"):
        cells_x = np.abs(bx - ax) / cell_width
        cells_y = np.abs(by - ay) / cell_height
        n_pieces = np.round(np.sqrt(cells_x * cells_y) / 3.0)
        # An edge with a non-finite coordinate stays one piece, as it was registered before.
        n_pieces = np.where(np.isfinite(n_pieces) & (n_pieces > 1.0), n_pieces, 1.0).astype(np.int64)
    edge = np.repeat(np.arange(len(n_pieces), dtype=np.int64), n_pieces)
    k = np.arange(len(edge), dtype=np.int64) - np.repeat(np.cumsum(n_pieces) - n_pieces, n_pieces)
    n = n_pieces[edge]

    # The ends of an edge are kept exactly. A split point may lie up to about 3 ulps (of the
    # edge's largest coordinate) off the exact line. Each box is therefore widened by 8 such ulps
    # and then clipped to the box of its edge, which contains the exact line. The two pieces at
    # a split point use the same computed value.
    x_start = np.where(k == 0, ax[edge], ax[edge] + (k / n) * (bx - ax)[edge])
    y_start = np.where(k == 0, ay[edge], ay[edge] + (k / n) * (by - ay)[edge])
    x_end = np.where(k + 1 == n, bx[edge], ax[edge] + ((k + 1) / n) * (bx - ax)[edge])
    y_end = np.where(k + 1 == n, by[edge], ay[edge] + ((k + 1) / n) * (by - ay)[edge])
    slack_x = 8.0 * np.spacing(np.maximum(np.abs(ax), np.abs(bx)))[edge]
    slack_y = 8.0 * np.spacing(np.maximum(np.abs(ay), np.abs(by)))[edge]
    bounds = np.c_[
        np.maximum(np.minimum(x_start, x_end) - slack_x, np.minimum(ax, bx)[edge]),
        np.maximum(np.minimum(y_start, y_end) - slack_y, np.minimum(ay, by)[edge]),
        np.minimum(np.maximum(x_start, x_end) + slack_x, np.maximum(ax, bx)[edge]),
        np.minimum(np.maximum(y_start, y_end) + slack_y, np.maximum(ay, by)[edge]),
    ]
    return bounds, edge


def _register(bounds: np.ndarray, x0: float, y0: float, width: float, height: float, owner: np.ndarray | None = None) -> _Grid:
    """Register member ``i`` in every cell that its box ``bounds[i]`` overlaps.

    With ``owner``, box ``i`` registers member ``owner[i]`` instead, and a member whose boxes
    overlap in a cell is registered there once. A box that ends exactly on a grid line is not
    registered in the cell after it. :meth:`_Grid.pairs` describes the lookup side of that rule.
    """
    column0, column1, row0, row1 = _cell_spans(bounds, x0, y0, width, height)
    n_columns = int(column1.max()) + 1
    wide = column1 - column0 + 1
    cells = wide * (row1 - row0 + 1)

    box = np.repeat(np.arange(len(bounds), dtype=np.int64), cells)
    k = np.arange(len(box), dtype=np.int64) - np.repeat(np.cumsum(cells) - cells, cells)
    key = (row0[box] + k // wide[box]) * n_columns + column0[box] + k % wide[box]
    member = box if owner is None else owner[box]
    n_members = len(bounds) if owner is None else int(owner.max()) + 1
    del box, k
    order = np.lexsort((member, key))
    key, member = key[order], member[order]
    if owner is not None:
        repeated = np.r_[False, (key[1:] == key[:-1]) & (member[1:] == member[:-1])]
        key, member = key[~repeated], member[~repeated]
    keys, first = np.unique(key, return_index=True)
    # The join reads members and the offset tables at random, once per point. As int32 they take
    # half the cache, which two workers on one machine share (the offsets of a 30 km layer at
    # 25 m cells: 5.7 MB instead of 11.5 MB), and half the memory of a large layer.
    index_type = np.int32 if len(key) < np.iinfo(np.int32).max else np.int64
    starts = np.r_[first, len(key)].astype(index_type)
    n_cells = int(keys[-1]) + 1 if len(keys) else 0
    dense = np.zeros(0, index_type)
    if 0 < n_cells <= _MAX_DENSE_CELLS:
        # A cell without members gets the offset of the next occupied cell: an empty range.
        dense = starts[np.searchsorted(keys, np.arange(n_cells + 1, dtype=np.int64))].astype(index_type)
    members = member.astype(np.int32) if n_members < np.iinfo(np.int32).max else member
    return _Grid(x0, y0, width, height, n_columns, keys, starts, members, dense)


def _link_edges(geoms: np.ndarray) -> _LinkEdges:
    """Return the straight edges of every link, taken per LineString part.

    A zero-length edge (a repeated vertex) is left out of a part that has a longer edge. Its
    point is also an end of a longer edge of the same part, so distances change by rounding at
    most. Kept, it could be the nearest edge of a point, and it has no direction to sign the
    gradient by. A part whose vertices all coincide keeps its edges, so the link is still matched.
    """
    if len(geoms) == 0:
        empty = np.zeros(0)
        return _LinkEdges(empty, empty, empty, empty, np.zeros(0, np.int64))
    # MultiLineString parts: consecutive vertices of one link that belong to different parts
    # must not form an edge, so edges are taken per part.
    parts = shapely.get_parts(geoms)
    part_owner = np.repeat(np.arange(len(geoms)), shapely.get_num_geometries(geoms))
    part_coords, part_index = shapely.get_coordinates(parts, return_index=True)
    a = np.flatnonzero(part_index[:-1] == part_index[1:])
    a = a[_drop_zero_length_edges(part_coords, part_index, a, len(parts))]
    return _LinkEdges(
        ax=part_coords[a, 0], ay=part_coords[a, 1], bx=part_coords[a + 1, 0], by=part_coords[a + 1, 1],
        link=part_owner[part_index[a]].astype(np.int64),
    )


def _drop_zero_length_edges(coords: np.ndarray, part_index: np.ndarray, first: np.ndarray, n_parts: int) -> np.ndarray:
    """Return which edges (``first`` vertex rows into ``coords``) to keep: every edge that has a
    length (or a NaN coordinate), and the zero-length edges of parts that have no other edge."""
    moves = (coords[first, 0] != coords[first + 1, 0]) | (coords[first, 1] != coords[first + 1, 1])
    edge_part = part_index[first]
    part_moves = np.zeros(n_parts, dtype=bool)
    part_moves[edge_part[moves]] = True
    return moves | ~part_moves[edge_part]


# -- helpers -----------------------------------------------------------------------------------


def _metres_per_degree(lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """East-west and north-south metres per degree at ``lat`` on the WGS 84 ellipsoid (NaN for a
    non-finite latitude, which then matches nothing)."""
    with np.errstate(invalid="ignore"):
        phi = np.radians(lat)
        sin_phi = np.sin(phi)
        w = np.sqrt(1.0 - _WGS84_E2 * sin_phi * sin_phi)
        return _WGS84_A_M / w * np.cos(phi) * _RAD, _WGS84_A_M * (1.0 - _WGS84_E2) / (w * w * w) * _RAD


def _min_per_point(point: np.ndarray, member: np.ndarray, n: int) -> np.ndarray:
    """Smallest member per point of pairs grouped by point; -1 where none (``_NO_MEMBER``)."""
    pick = np.full(n, -1, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, point[1:] != point[:-1]])
    best = np.minimum.reduceat(member, starts)
    found = best != _NO_MEMBER
    pick[point[starts][found]] = best[found]
    return pick


def _take(layers: GeoLayers, layer: str, column: str, pick: np.ndarray) -> pd.Categorical:
    """Values of a text ``column`` of ``layer`` at ``pick`` as a categorical; -1 gives a missing value."""
    frame = getattr(layers, layer)
    if column not in frame.columns or len(frame) == 0:
        return pd.Categorical.from_codes(np.full(len(pick), -1), categories=pd.Index([], dtype=object))
    table, dtype = layers._text_table(layer, column)
    # The table contains only codes of its categories and -1, so pandas need not check them again.
    return pd.Categorical.from_codes(table[pick], dtype=dtype, validate=False)


def _take_float(layers: GeoLayers, layer: str, column: str, pick: np.ndarray) -> np.ndarray:
    """Return the values of a numeric ``column`` of ``layer`` at ``pick``, NaN where ``pick`` is -1."""
    frame = getattr(layers, layer)
    if column not in frame.columns or len(frame) == 0:
        return np.full(len(pick), np.nan)
    return layers._number_table(layer, column)[pick]


def _metric_crs(frame: gpd.GeoDataFrame) -> pyproj.CRS:
    """UTM zone of the centre of ``frame`` (EPSG:4326); Tokyo (zone 54N) when it is empty."""
    if len(frame) == 0:
        return pyproj.CRS.from_epsg(32654)
    minx, miny, maxx, maxy = frame.total_bounds
    lon, lat = (minx + maxx) / 2.0, (miny + maxy) / 2.0
    zone = int(np.floor((lon + 180.0) / 6.0)) % 60 + 1
    return pyproj.CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)
