"""Segments x geo attributes: areas by containment, road links by nearest link within a distance.

Rules
-----
* A segment is represented by its midpoint.
* Area: the polygon that contains the midpoint. When several do (nested or overlapping areas),
  the smallest polygon wins, then the smallest ``feature_id``. No polygon: ``area_type`` is None.
* Road link: the nearest LineString within ``max_distance_m`` of the midpoint, measured in a
  metric CRS (the UTM zone of the link layer's centre). Equal distances are broken by the
  smallest ``feature_id``. No link in range: ``matched`` is False and the link columns are null.

Both rules depend only on the segment and the whole attribute layer, so the result of a partition
does not depend on how the day was partitioned; the attribute layer is broadcast to every
partition (it is small next to the trajectories: tens of thousands of features).
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from compute import columns as c

_POLYGONAL = ("Polygon", "MultiPolygon")
_LINEAR = ("LineString", "MultiLineString")

JOIN_COLUMNS: tuple[str, ...] = (
    c.AREA_ID, c.AREA_TYPE, c.LINK_ID, c.ROAD_CLASS, c.SPEED_LIMIT_KMH, c.LINK_GRADIENT_PCT,
    c.LINK_DISTANCE_M, c.MATCHED,
)


@dataclass
class GeoLayers:
    """The day's attribute layer split into areas and road links, ready to join.

    Attributes
    ----------
    areas
        Polygons in EPSG:4326, sorted so that row order is the tie-break order.
    links
        LineStrings in ``metric_crs``, sorted so that row order is the tie-break order.
    metric_crs
        CRS in metres used for link distances.
    """

    areas: gpd.GeoDataFrame
    links: gpd.GeoDataFrame
    metric_crs: pyproj.CRS

    @property
    def n_features(self) -> int:
        return len(self.areas) + len(self.links)


def prepare_layers(geo: gpd.GeoDataFrame) -> GeoLayers:
    """Split accepted geo attributes into areas and links and order them for tie-breaks.

    Parameters
    ----------
    geo
        Accepted ``geo_attributes`` rows in EPSG:4326 (polygons and line strings; points and other
        types are ignored here).
    """
    if geo.crs is not None and geo.crs.to_epsg() != 4326:
        raise ValueError(f"geo attributes must be in EPSG:4326 before joining, got {geo.crs.to_string()}; conform them first")
    kinds = geo.geometry.geom_type.to_numpy()
    areas = geo.loc[np.isin(kinds, _POLYGONAL)].copy()
    links = geo.loc[np.isin(kinds, _LINEAR)].copy()

    metric = _metric_crs(links if len(links) else geo)
    areas["_size"] = areas.to_crs(metric).area if len(areas) else pd.Series(dtype=float)
    areas = areas.sort_values(["_size", c.FEATURE_ID], kind="mergesort").reset_index(drop=True)
    links = links.sort_values(c.FEATURE_ID, kind="mergesort").reset_index(drop=True).to_crs(metric)
    areas = gpd.GeoDataFrame(areas, geometry=c.GEOMETRY, crs="EPSG:4326")
    return GeoLayers(areas=areas, links=links, metric_crs=metric)


def join_segments(segments: pd.DataFrame, layers: GeoLayers, max_distance_m: float) -> pd.DataFrame:
    """Return ``segments`` with area and road-link attributes (:data:`JOIN_COLUMNS`) added.

    Notes
    -----
    Cost is one STRtree query per segment for areas and one bounded nearest query per segment for
    links; the trees are built once per call.
    """
    out = segments.copy()
    n = len(out)
    lon = out[c.LON_MID].to_numpy(dtype=np.float64)
    lat = out[c.LAT_MID].to_numpy(dtype=np.float64)

    # Areas: containment of the midpoint, smallest polygon first.
    area_pick = np.full(n, -1, dtype=np.int64)
    if n and len(layers.areas):
        points = shapely.points(lon, lat)
        hit, tree = layers.areas.sindex.query(points, predicate="within")
        area_pick = _first_per_input(hit, tree.astype(np.float64), tree, n)
    out[c.AREA_ID] = _take(layers.areas, c.FEATURE_ID, area_pick, object)
    out[c.AREA_TYPE] = _take(layers.areas, c.AREA_TYPE, area_pick, object)

    # Links: nearest within max_distance_m, smallest feature_id on equal distance.
    link_pick = np.full(n, -1, dtype=np.int64)
    distance = np.full(n, np.nan)
    if n and len(layers.links):
        to_metric = pyproj.Transformer.from_crs("EPSG:4326", layers.metric_crs, always_xy=True)
        x, y = to_metric.transform(lon, lat)
        points = shapely.points(x, y)
        (hit, tree), dist = layers.links.sindex.nearest(points, max_distance=max_distance_m, return_distance=True, return_all=True)
        order = np.lexsort((tree, dist, hit))
        hit, tree, dist = hit[order], tree[order], dist[order]
        first = np.unique(hit, return_index=True)[1]
        link_pick[hit[first]] = tree[first]
        distance[hit[first]] = dist[first]
    matched = link_pick >= 0
    out[c.LINK_ID] = _take(layers.links, c.FEATURE_ID, link_pick, object)
    out[c.ROAD_CLASS] = _take(layers.links, c.ROAD_CLASS, link_pick, object)
    out[c.SPEED_LIMIT_KMH] = _take(layers.links, c.SPEED_LIMIT_KMH, link_pick, np.float64)
    out[c.LINK_GRADIENT_PCT] = _take(layers.links, c.GRADIENT_PCT, link_pick, np.float64)
    out[c.LINK_DISTANCE_M] = distance
    out[c.MATCHED] = matched
    return out


def _first_per_input(hit: np.ndarray, rank: np.ndarray, tree: np.ndarray, n: int) -> np.ndarray:
    pick = np.full(n, -1, dtype=np.int64)
    if len(hit) == 0:
        return pick
    order = np.lexsort((rank, hit))
    hit, tree = hit[order], tree[order]
    first = np.unique(hit, return_index=True)[1]
    pick[hit[first]] = tree[first]
    return pick


def _take(frame: pd.DataFrame, column: str, pick: np.ndarray, dtype: type) -> np.ndarray:
    """Values of ``column`` at ``pick``; -1 gives None (object) or NaN (float)."""
    missing_value = None if dtype is object else np.nan
    out = np.full(len(pick), missing_value, dtype=dtype)
    if column not in frame.columns or len(frame) == 0:
        return out
    series = frame[column]
    if dtype is object:
        values = series.astype(object).where(series.notna(), None).to_numpy()
    else:
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
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
