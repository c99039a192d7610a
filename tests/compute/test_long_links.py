"""Road links several degrees long: the size of the link index and the nearest-link join.

The link grid registers an edge in pieces (``spatial._edge_pieces``), so the entries of a long
diagonal edge grow with its length and not with the area of its bounding box. The join must
still find such a link, at the same distance, beside ordinary short links.

The reference measures the distance from each point to every link with shapely. It groups the
points by 0.05-degree cells, clips the links to a box around each group, densifies them to 1e-5
degree steps and projects them to an azimuthal equidistant CRS centred on the group. The
densifying is needed because an edge is straight in degrees, and a projected straight edge
between far-apart ends bows away from it.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from compute import columns as c
from compute import spatial

MAX_DISTANCE_M = 25.0
#: South-west corner of the short links and start of the long diagonal link.
LON0, LAT0 = 139.70, 35.60
#: Span in degrees of the long diagonal link, in longitude and in latitude.
LONG_SPAN_DEG = 3.0
#: Cell (degrees) of the groups of points that share one projection centre in the reference. At
#: 4 km from the centre the azimuthal equidistant scale is off by under 1e-7 across the radius.
GROUP_DEG = 0.05
#: Margin (degrees) of the box the reference clips the links to around a group of points: about
#: 180 m east-west here, far more than the search radius.
CLIP_DEG = 0.002
#: Reference distances closer than this (m) to the radius or to a second link are left out,
#: because the tangent plane of the join and the geodesic differ by about 0.1 mm at 25 m.
AMBIGUOUS_M = 1e-3
M_PER_DEG_LAT = 110_950.0
M_PER_DEG_LON = 90_600.0


# -- builders ----------------------------------------------------------------------------------


def _short_links(rng: np.random.Generator, n_links: int = 300) -> list[shapely.LineString]:
    """Return road-like links of two edges of up to 150 m each, in a 2 km square at (LON0, LAT0)."""
    x = rng.uniform(0, 2000, (n_links, 1)) + np.c_[np.zeros(n_links), np.cumsum(rng.uniform(-150, 150, (n_links, 2)), axis=1)]
    y = rng.uniform(0, 2000, (n_links, 1)) + np.c_[np.zeros(n_links), np.cumsum(rng.uniform(-150, 150, (n_links, 2)), axis=1)]
    lon = LON0 + x / M_PER_DEG_LON
    lat = LAT0 + y / M_PER_DEG_LAT
    return list(shapely.linestrings(np.stack([lon, lat], axis=-1)))


def _long_diagonal(span_deg: float = LONG_SPAN_DEG) -> shapely.LineString:
    """Return one straight edge from (LON0, LAT0) to ``span_deg`` degrees north-east of it.

    It crosses the square of the short links, so points there can be near both kinds.
    """
    return shapely.LineString([(LON0, LAT0), (LON0 + span_deg, LAT0 + span_deg)])


def _long_zigzag(span_deg: float) -> shapely.LineString:
    """Return a link of four diagonal edges that together run ``span_deg`` degrees east,
    alternating north-east and south-east."""
    step = span_deg / 4.0
    lon = 141.0 + step * np.arange(5)
    lat = 34.0 + step * (np.arange(5) % 2)
    return shapely.LineString(np.c_[lon, lat])


def _layer(short: list[shapely.LineString], long: dict[str, shapely.LineString]) -> gpd.GeoDataFrame:
    """Return a layer of ``short`` links (``short-NNNN``) and the ``long`` links by feature id.

    Each long link has its own road class, speed limit and gradient, so a wrong pick shows in
    every joined column.
    """
    n_short = len(short)
    return gpd.GeoDataFrame(
        {
            c.FEATURE_ID: [f"short-{i:04d}" for i in range(n_short)] + list(long),
            c.ROAD_CLASS: ["residential"] * n_short + ["motorway"] * len(long),
            c.SPEED_LIMIT_KMH: [30.0] * n_short + [100.0 + i for i in range(len(long))],
            c.GRADIENT_PCT: list(np.linspace(-3.0, 3.0, n_short)) + [2.5 + i for i in range(len(long))],
            c.AREA_TYPE: [None] * (n_short + len(long)),
        },
        geometry=short + list(long.values()),
        crs="EPSG:4326",
    )


def _segments(lon: np.ndarray, lat: np.ndarray, east_m: np.ndarray | None = None, north_m: np.ndarray | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({c.TRIP_ID: "T1", c.LON_MID: np.asarray(lon, dtype=float), c.LAT_MID: np.asarray(lat, dtype=float)})
    if east_m is not None and north_m is not None:
        frame[c.EAST_M] = east_m
        frame[c.NORTH_M] = north_m
    return frame


def _points_beside_long_link(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return points along the long diagonal link, up to 40 m to either side of it."""
    t = np.r_[0.0, 1.0, rng.uniform(0.0, 1.0, n - 2)]
    lat = LAT0 + t * LONG_SPAN_DEG
    m_per_deg_lon = M_PER_DEG_LAT * np.cos(np.radians(lat))
    # Unit normal of the link in metres: the link runs LONG_SPAN_DEG east and north.
    east, north = LONG_SPAN_DEG * m_per_deg_lon, np.full(n, LONG_SPAN_DEG * M_PER_DEG_LAT)
    length = np.hypot(east, north)
    offset_m = rng.uniform(-40.0, 40.0, n)
    lon = LON0 + t * LONG_SPAN_DEG + offset_m * (-north / length) / m_per_deg_lon
    lat = lat + offset_m * (east / length) / M_PER_DEG_LAT
    return lon, lat


def _link_entries(grid: spatial._Grid, layers: spatial.GeoLayers, feature_id: str) -> int:
    """Return how many (cell, edge) entries of the link grid belong to the link ``feature_id``."""
    assert layers._edges is not None
    row = int(np.flatnonzero(layers.links[c.FEATURE_ID].to_numpy() == feature_id)[0])
    edges = np.flatnonzero(layers._edges.link == row)
    return int(np.isin(grid.members, edges).sum())


# -- reference ---------------------------------------------------------------------------------


def _reference_links(lon: np.ndarray, lat: np.ndarray, layers: spatial.GeoLayers) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the nearest link row within the radius (-1), its geodesic distance (NaN) and
    whether the case is clear-cut (not within ``AMBIGUOUS_M`` of the radius or of another link)."""
    geoms = np.asarray(layers.links.geometry.array, dtype=object)
    pick = np.full(len(lon), -1)
    distance = np.full(len(lon), np.nan)
    clear = np.ones(len(lon), dtype=bool)
    group = np.floor(lon / GROUP_DEG) * 1e6 + np.floor(lat / GROUP_DEG)
    for key in np.unique(group):
        chosen = np.flatnonzero(group == key)
        x, y = lon[chosen], lat[chosen]
        clipped = shapely.clip_by_rect(geoms, x.min() - CLIP_DEG, y.min() - CLIP_DEG, x.max() + CLIP_DEG, y.max() + CLIP_DEG)
        near = np.flatnonzero(~shapely.is_empty(clipped))
        if len(near) == 0:
            continue
        local = f"+proj=aeqd +lat_0={float(y.mean())!r} +lon_0={float(x.mean())!r} +ellps=WGS84 +units=m"
        links = gpd.GeoSeries(shapely.segmentize(clipped[near], 1e-5), crs="EPSG:4326").to_crs(local)
        points = gpd.GeoSeries(shapely.points(x, y), crs="EPSG:4326").to_crs(local)
        per_link = shapely.distance(np.asarray(points.array, dtype=object)[:, None], np.asarray(links.array, dtype=object)[None, :])

        ordered = np.sort(per_link, axis=1)
        best = ordered[:, 0]
        second = ordered[:, 1] if len(near) > 1 else np.full(len(chosen), np.inf)
        within = best <= MAX_DISTANCE_M
        clear[chosen] = (np.abs(best - MAX_DISTANCE_M) > AMBIGUOUS_M) & ~(within & (second - best <= AMBIGUOUS_M))
        pick[chosen[within]] = near[per_link[within].argmin(axis=1)]
        distance[chosen[within]] = best[within]
    return pick, distance, clear


def _picked(layers: spatial.GeoLayers, column: str, pick: np.ndarray) -> list[object]:
    values = layers.links[column].astype(object).to_numpy()
    return [None if p < 0 else values[p] for p in pick]


def _column(joined: pd.DataFrame, column: str) -> list[object]:
    values = joined[column].astype(object).to_numpy()
    return [None if pd.isna(v) else v for v in values]


# -- tests -------------------------------------------------------------------------------------


class TestIndexSize:
    def test_long_diagonal_within_linear_bound(self) -> None:
        """One 3-degree diagonal edge spans about 1.0e4 by 1.3e4 cells of 25 m. Its bounding box
        would take 1.4e8 entries, and its pieces stay within ``6 * (cx + cy) + 12``."""
        rng = np.random.default_rng(1)
        layers = spatial.prepare_layers(_layer(_short_links(rng), {"long-diagonal": _long_diagonal()}), link_max_distance_m=MAX_DISTANCE_M)
        grid = layers.link_grid(MAX_DISTANCE_M)
        assert grid is not None
        cells_x = LONG_SPAN_DEG / grid.width_deg
        cells_y = LONG_SPAN_DEG / grid.height_deg

        entries = _link_entries(grid, layers, "long-diagonal")

        assert cells_x * cells_y > 1e8
        assert entries >= max(cells_x, cells_y)
        assert entries <= 6 * (cells_x + cells_y) + 12
        assert len(grid.members) < 300_000

    @pytest.mark.parametrize("shape", ["diagonal", "zigzag"])
    def test_entries_double_with_length(self, shape: str) -> None:
        """Doubling the length of a long link about doubles its entries (a bounding box would quadruple them)."""
        build = _long_diagonal if shape == "diagonal" else _long_zigzag
        entries = []
        for span_deg in (1.0, 2.0, 4.0):
            layers = spatial.prepare_layers(_layer([], {"long": build(span_deg)}), link_max_distance_m=MAX_DISTANCE_M)
            grid = layers.link_grid(MAX_DISTANCE_M)
            assert grid is not None
            entries.append(_link_entries(grid, layers, "long"))

        assert 1.8 < entries[1] / entries[0] < 2.2
        assert 1.8 < entries[2] / entries[1] < 2.2

    def test_axis_edge_fills_its_box(self) -> None:
        """An edge along a grid axis is registered in every cell of its padded box, once."""
        line = shapely.LineString([(LON0, LAT0), (LON0 + 1.0, LAT0)])
        layers = spatial.prepare_layers(_layer([], {"east-west": line}), link_max_distance_m=MAX_DISTANCE_M)
        grid = layers.link_grid(MAX_DISTANCE_M)
        assert grid is not None

        assert len(grid.members) == len(grid.keys)
        assert len(grid.members) == grid.n_columns * (int(grid.keys.max()) // grid.n_columns + 1)


class TestJoinBesideLongLink:
    def test_points_near_long_link_match_reference(self) -> None:
        rng = np.random.default_rng(2)
        layers = spatial.prepare_layers(_layer(_short_links(rng), {"long-diagonal": _long_diagonal()}), link_max_distance_m=MAX_DISTANCE_M)
        lon, lat = _points_beside_long_link(rng, 300)

        expected, expected_distance, clear = _reference_links(lon, lat, layers)
        joined = spatial.join_segments(_segments(lon, lat), layers, MAX_DISTANCE_M)
        pick, distance = spatial.nearest_links(lon, lat, layers, MAX_DISTANCE_M)

        long_row = int(np.flatnonzero(layers.links[c.FEATURE_ID].to_numpy() == "long-diagonal")[0])
        assert (expected == long_row).sum() > 150
        assert (expected < 0).sum() > 50
        assert clear.mean() > 0.97
        assert list(pick[clear]) == list(expected[clear])
        np.testing.assert_allclose(distance[clear], expected_distance[clear], rtol=0.0, atol=AMBIGUOUS_M)
        assert _column(joined, c.LINK_ID) == _picked(layers, c.FEATURE_ID, pick)
        assert _column(joined, c.ROAD_CLASS) == _picked(layers, c.ROAD_CLASS, pick)
        assert _column(joined, c.SPEED_LIMIT_KMH) == _picked(layers, c.SPEED_LIMIT_KMH, pick)
        assert np.array_equal(joined[c.LINK_DISTANCE_M].to_numpy(), distance, equal_nan=True)
        assert np.array_equal(joined[c.MATCHED].to_numpy(), pick >= 0)

    def test_points_near_short_links_match_reference(self) -> None:
        rng = np.random.default_rng(3)
        layers = spatial.prepare_layers(_layer(_short_links(rng), {"long-diagonal": _long_diagonal()}), link_max_distance_m=MAX_DISTANCE_M)
        lon = LON0 + rng.uniform(-100, 2100, 600) / M_PER_DEG_LON
        lat = LAT0 + rng.uniform(-100, 2100, 600) / M_PER_DEG_LAT

        expected, expected_distance, clear = _reference_links(lon, lat, layers)
        joined = spatial.join_segments(_segments(lon, lat), layers, MAX_DISTANCE_M)
        pick, distance = spatial.nearest_links(lon, lat, layers, MAX_DISTANCE_M)

        long_row = int(np.flatnonzero(layers.links[c.FEATURE_ID].to_numpy() == "long-diagonal")[0])
        assert ((expected >= 0) & (expected != long_row)).sum() > 100
        assert (expected == long_row).sum() > 5
        assert clear.mean() > 0.97
        assert list(pick[clear]) == list(expected[clear])
        np.testing.assert_allclose(distance[clear], expected_distance[clear], rtol=0.0, atol=AMBIGUOUS_M)
        assert _column(joined, c.LINK_ID) == _picked(layers, c.FEATURE_ID, pick)
        assert _column(joined, c.ROAD_CLASS) == _picked(layers, c.ROAD_CLASS, pick)

    def test_gradient_sign_along_long_link(self) -> None:
        """Travel along the drawn direction keeps the link's gradient, and travel against it flips the sign."""
        rng = np.random.default_rng(4)
        layers = spatial.prepare_layers(_layer([], {"long-diagonal": _long_diagonal()}), link_max_distance_m=MAX_DISTANCE_M)
        t = rng.uniform(0.05, 0.95, 50)
        lon = np.r_[LON0 + t * LONG_SPAN_DEG, LON0 + t * LONG_SPAN_DEG]
        lat = np.r_[LAT0 + t * LONG_SPAN_DEG, LAT0 + t * LONG_SPAN_DEG]
        sign = np.r_[np.ones(50), -np.ones(50)]

        joined = spatial.join_segments(_segments(lon, lat, 9.0 * sign, 11.0 * sign), layers, MAX_DISTANCE_M)

        assert joined[c.MATCHED].all()
        assert np.array_equal(joined[c.LINK_GRADIENT_PCT].to_numpy(), 2.5 * sign)

    def test_short_link_join_unchanged_by_far_long_link(self) -> None:
        """A long link far from the points changes the grid's extent and lookup, not their join."""
        rng = np.random.default_rng(5)
        short = _short_links(rng)
        far = shapely.LineString([(LON0 + 0.5, LAT0 + 0.2), (LON0 + 3.5, LAT0 + 3.2)])
        alone = spatial.prepare_layers(_layer(short, {}), link_max_distance_m=MAX_DISTANCE_M)
        with_far = spatial.prepare_layers(_layer(short, {"long-far": far}), link_max_distance_m=MAX_DISTANCE_M)
        lon = LON0 + rng.uniform(-100, 2100, 20_000) / M_PER_DEG_LON
        lat = LAT0 + rng.uniform(-100, 2100, 20_000) / M_PER_DEG_LAT
        east, north = rng.normal(0, 10, 20_000), rng.normal(0, 10, 20_000)

        expected = spatial.join_segments(_segments(lon, lat, east, north), alone, MAX_DISTANCE_M)
        actual = spatial.join_segments(_segments(lon, lat, east, north), with_far, MAX_DISTANCE_M)

        assert expected[c.MATCHED].sum() > 3000
        assert len(alone.link_grid(MAX_DISTANCE_M).dense) > 0
        assert len(with_far.link_grid(MAX_DISTANCE_M).dense) == 0
        for column in (c.LINK_ID, c.ROAD_CLASS):
            assert _column(actual, column) == _column(expected, column), column
        for column in (c.SPEED_LIMIT_KMH, c.LINK_GRADIENT_PCT, c.LINK_DISTANCE_M, c.MATCHED):
            assert np.array_equal(actual[column].to_numpy(), expected[column].to_numpy(), equal_nan=True), column


class TestGridBudget:
    def test_wider_cells_give_same_join(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # A budget far below the layer's entries at 25 m cells forces wider cells; the join must not change.
        rng = np.random.default_rng(8)
        geo = _layer(_short_links(rng, 2000), {"long-diagonal": _long_diagonal(0.3)})
        lon = LON0 + rng.uniform(0, 2000, 20_000) / M_PER_DEG_LON
        lat = LAT0 + rng.uniform(0, 2000, 20_000) / M_PER_DEG_LAT
        east, north = rng.normal(0, 10, 20_000), rng.normal(0, 10, 20_000)

        fine = spatial.prepare_layers(geo, link_max_distance_m=MAX_DISTANCE_M)
        fine_grid = fine.link_grid(MAX_DISTANCE_M)
        budget = len(fine_grid.members) // 10
        monkeypatch.setattr(spatial, "_MAX_LINK_GRID_ENTRIES", budget)
        coarse = spatial.prepare_layers(geo, link_max_distance_m=MAX_DISTANCE_M)
        coarse_grid = coarse.link_grid(MAX_DISTANCE_M)

        assert coarse_grid.width_deg > 2 * fine_grid.width_deg
        assert len(coarse_grid.members) <= budget
        expected = spatial.join_segments(_segments(lon, lat, east, north), fine, MAX_DISTANCE_M)
        joined = spatial.join_segments(_segments(lon, lat, east, north), coarse, MAX_DISTANCE_M)
        assert expected[c.MATCHED].mean() > 0.3
        pd.testing.assert_frame_equal(joined, expected)
