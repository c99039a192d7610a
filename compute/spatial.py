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

Both rules depend only on the segment and the whole attribute layer, so the result of a partition
does not depend on how the day was partitioned. The attribute layer is small next to the
trajectories (tens of thousands of features), so it is broadcast to every partition together with
the grid indexes built here once per run.

How the joins run
-----------------
Both joins use a uniform grid in degrees with a sorted cell table (CSR): every feature, or every
straight edge of a link, is registered in the cells it can matter for, and a midpoint reads only
its own cell. Candidate pairs are then tested with numpy: an interior test for polygons that are
axis-aligned rectangles (mesh cells), ``shapely.contains_xy`` for other polygons, and the
point-to-edge distance for links. Nothing runs per segment in Python, and no shapely geometry is
created per segment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
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
#: Upper bound of grid cells along one axis of the area index (keys stay small and sparse).
_MAX_CELLS_PER_AXIS = 1 << 20

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
        member = self.members[np.repeat(first, count) + within_cell]
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

    @property
    def n_features(self) -> int:
        return len(self.areas) + len(self.links)

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
    link_pick, distance = nearest_links(lon, lat, layers, max_distance_m)

    out = segments.copy(deep=False)
    out[c.AREA_ID] = _take(layers.areas, c.FEATURE_ID, area_pick)
    out[c.AREA_TYPE] = _take(layers.areas, c.AREA_TYPE, area_pick)
    out[c.LINK_ID] = _take(layers.links, c.FEATURE_ID, link_pick)
    out[c.ROAD_CLASS] = _take(layers.links, c.ROAD_CLASS, link_pick)
    out[c.SPEED_LIMIT_KMH] = _take_float(layers.links, c.SPEED_LIMIT_KMH, link_pick)
    out[c.LINK_GRADIENT_PCT] = _take_float(layers.links, c.GRADIENT_PCT, link_pick)
    out[c.LINK_DISTANCE_M] = distance
    out[c.MATCHED] = link_pick >= 0
    return out


def locate_areas(lon: np.ndarray, lat: np.ndarray, layers: GeoLayers) -> np.ndarray:
    """Return, per point, the row of the area that contains it (smallest first), or -1."""
    pick = np.full(len(lon), -1, dtype=np.int64)
    if layers._area_grid is None or len(lon) == 0:
        return pick
    point, area = layers._area_grid.pairs(lon, lat)
    if len(point) == 0:
        return pick

    # Rectangles: a strict interior test on the bounds is exact. Other polygons: GEOS.
    x, y = lon[point], lat[point]
    box = layers._area_is_box[area]
    b = layers._area_bounds[area]
    inside = box & (b[:, 0] < x) & (x < b[:, 2]) & (b[:, 1] < y) & (y < b[:, 3])
    other = ~box
    if other.any():
        geoms = np.asarray(layers.areas.geometry.array, dtype=object)
        inside[other] = shapely.contains_xy(geoms[area[other]], x[other], y[other])

    # Areas are sorted by size then feature_id, so the smallest row inside wins.
    return _min_per_point(point, np.where(inside, area, _NO_MEMBER), len(lon))


def nearest_links(lon: np.ndarray, lat: np.ndarray, layers: GeoLayers, max_distance_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Return, per point, the row of the nearest link within ``max_distance_m`` (-1) and its distance (NaN)."""
    pick = np.full(len(lon), -1, dtype=np.int64)
    distance = np.full(len(lon), np.nan)
    grid = layers.link_grid(max_distance_m)
    if grid is None or len(lon) == 0:
        return pick, distance
    point, edge = grid.pairs(lon, lat)
    if len(point) == 0:
        return pick, distance

    # Point-to-edge distance in the tangent plane of each point.
    kx, ky = _metres_per_degree(lat)
    px, py, kxp, kyp = lon[point], lat[point], kx[point], ky[point]
    e = layers._edges
    assert e is not None
    ax = _wrap_degrees(e.ax[edge] - px) * kxp
    ay = (e.ay[edge] - py) * kyp
    dx = _wrap_degrees(e.bx[edge] - px) * kxp - ax
    dy = (e.by[edge] - py) * kyp - ay
    squared = dx * dx + dy * dy
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(squared > 0, np.clip(-(ax * dx + ay * dy) / squared, 0.0, 1.0), 0.0)
    pair_distance = np.hypot(ax + t * dx, ay + t * dy)

    # Per point: the minimum distance in range, then the smallest link row at that distance.
    in_range = pair_distance <= max_distance_m
    pair_distance = np.where(in_range, pair_distance, np.inf)
    starts = np.flatnonzero(np.r_[True, point[1:] != point[:-1]])
    owners = point[starts]
    best = np.minimum.reduceat(pair_distance, starts)
    at_best = pair_distance == np.repeat(best, np.diff(np.r_[starts, len(point)]))
    link = np.where(at_best & in_range, e.link[edge], _NO_MEMBER)
    best_link = np.minimum.reduceat(link, starts)
    found = best_link != _NO_MEMBER
    pick[owners[found]] = best_link[found]
    distance[owners[found]] = best[found]
    return pick, distance


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
    """Grid of cells one search radius wide; each edge is registered in every cell within the radius.

    The radius in degrees is taken where it is widest: east-west at the highest latitude a point
    within ``max_distance_m`` of a link can have, north-south at the equator's meridian radius.
    A point within the radius of an edge then lies in a cell the edge is registered in.
    """
    height = max_distance_m / (_WGS84_A_M * (1.0 - _WGS84_E2) * _RAD)
    top = min(float(max(np.abs(edges.ay).max(), np.abs(edges.by).max())) + height, 89.9)
    kx, _ = _metres_per_degree(np.array([top]))
    width = max_distance_m / float(kx[0])
    bounds = np.c_[
        np.minimum(edges.ax, edges.bx) - width, np.minimum(edges.ay, edges.by) - height,
        np.maximum(edges.ax, edges.bx) + width, np.maximum(edges.ay, edges.by) + height,
    ]
    return _register(bounds, float(bounds[:, 0].min()), float(bounds[:, 1].min()), width, height)


def _register(bounds: np.ndarray, x0: float, y0: float, width: float, height: float) -> _Grid:
    """Register member ``i`` in every cell that its box ``bounds[i]`` overlaps.

    A box that ends exactly on a grid line is not registered in the cell after it; see
    :meth:`_Grid.pairs` for the lookup side of that rule.
    """
    column0 = np.floor((bounds[:, 0] - x0) / width).astype(np.int64)
    column1 = np.maximum(np.ceil((bounds[:, 2] - x0) / width).astype(np.int64) - 1, column0)
    row0 = np.floor((bounds[:, 1] - y0) / height).astype(np.int64)
    row1 = np.maximum(np.ceil((bounds[:, 3] - y0) / height).astype(np.int64) - 1, row0)
    n_columns = int(column1.max()) + 1
    wide = column1 - column0 + 1
    cells = wide * (row1 - row0 + 1)

    member = np.repeat(np.arange(len(bounds), dtype=np.int64), cells)
    k = np.arange(len(member), dtype=np.int64) - np.repeat(np.cumsum(cells) - cells, cells)
    key = (row0[member] + k // wide[member]) * n_columns + column0[member] + k % wide[member]
    order = np.lexsort((member, key))
    key, member = key[order], member[order]
    keys, first = np.unique(key, return_index=True)
    return _Grid(x0, y0, width, height, n_columns, keys, np.r_[first, len(key)].astype(np.int64), member)


def _link_edges(geoms: np.ndarray) -> _LinkEdges:
    if len(geoms) == 0:
        empty = np.zeros(0)
        return _LinkEdges(empty, empty, empty, empty, np.zeros(0, np.int64))
    # MultiLineString parts: consecutive vertices of one link that belong to different parts
    # must not form an edge, so edges are taken per part.
    parts = shapely.get_parts(geoms)
    part_owner = np.repeat(np.arange(len(geoms)), shapely.get_num_geometries(geoms))
    part_coords, part_index = shapely.get_coordinates(parts, return_index=True)
    a = np.flatnonzero(part_index[:-1] == part_index[1:])
    return _LinkEdges(
        ax=part_coords[a, 0], ay=part_coords[a, 1], bx=part_coords[a + 1, 0], by=part_coords[a + 1, 1],
        link=part_owner[part_index[a]].astype(np.int64),
    )


# -- helpers -----------------------------------------------------------------------------------


def _metres_per_degree(lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """East-west and north-south metres per degree at ``lat`` on the WGS 84 ellipsoid."""
    phi = np.radians(lat)
    sin_phi = np.sin(phi)
    w = np.sqrt(1.0 - _WGS84_E2 * sin_phi * sin_phi)
    return _WGS84_A_M / w * np.cos(phi) * _RAD, _WGS84_A_M * (1.0 - _WGS84_E2) / (w * w * w) * _RAD


def _wrap_degrees(delta: np.ndarray) -> np.ndarray:
    """Longitude differences into [-180, 180)."""
    return (delta + 180.0) % 360.0 - 180.0


def _min_per_point(point: np.ndarray, member: np.ndarray, n: int) -> np.ndarray:
    """Smallest member per point of pairs grouped by point; -1 where none (``_NO_MEMBER``)."""
    pick = np.full(n, -1, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, point[1:] != point[:-1]])
    best = np.minimum.reduceat(member, starts)
    found = best != _NO_MEMBER
    pick[point[starts][found]] = best[found]
    return pick


def _take(frame: pd.DataFrame, column: str, pick: np.ndarray) -> pd.Categorical:
    """Values of a text ``column`` at ``pick`` as a categorical; -1 gives a missing value."""
    if column not in frame.columns or len(frame) == 0:
        return pd.Categorical.from_codes(np.full(len(pick), -1), categories=pd.Index([], dtype=object))
    series = frame[column]
    codes, uniques = pd.factorize(series.astype(object).where(series.notna(), None).to_numpy(), use_na_sentinel=True)
    picked_codes = np.where(pick >= 0, codes[np.maximum(pick, 0)], -1)
    return pd.Categorical.from_codes(picked_codes, categories=pd.Index(uniques, dtype=object))


def _take_float(frame: pd.DataFrame, column: str, pick: np.ndarray) -> np.ndarray:
    """Values of a numeric ``column`` at ``pick``; -1 gives NaN."""
    out = np.full(len(pick), np.nan)
    if column not in frame.columns or len(frame) == 0:
        return out
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    found = pick >= 0
    out[found] = values[pick[found]]
    return out


def _metric_crs(frame: gpd.GeoDataFrame) -> pyproj.CRS:
    """UTM zone of the centre of ``frame`` (EPSG:4326); Tokyo (zone 54N) when it is empty."""
    if len(frame) == 0:
        return pyproj.CRS.from_epsg(32654)
    minx, miny, maxx, maxy = frame.total_bounds
    lon, lat = (minx + maxx) / 2.0, (miny + maxy) / 2.0
    zone = int(np.floor((lon + 180.0) / 6.0)) % 60 + 1
    return pyproj.CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)
