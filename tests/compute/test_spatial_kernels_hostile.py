"""The compiled joins of compute.spatial under hostile inputs, against brute-force references.

The area reference tests every point against every polygon with ``shapely.contains_xy`` and keeps
the first row that contains it (rows are in tie-break order). The link reference measures every
point against every straight edge of every link in the tangent plane of the point, with the
WGS 84 radii written out here, and keeps the smallest row among the nearest links. Neither uses
the grid, so a candidate that the grid loses shows up as a difference.
"""

from __future__ import annotations

import geopandas as gpd
import numba
import numpy as np
import pandas as pd
import pytest
import shapely
from numpy.typing import ArrayLike

from compute import columns as c
from compute import spatial

MAX_DISTANCE_M = 25.0
WGS84_A_M = 6_378_137.0
WGS84_F = 1.0 / 298.257223563
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)
#: Cell size of the test meshes in degrees: a power of two, so mesh edges are exact binary fractions.
MESH_DEG = 2.0**-9
#: (longitude, latitude) of each test site: Tokyo, Tromso (69 N), Santiago, beside the antimeridian.
SITES = {
    "tokyo": (139.69921875, 35.599609375),
    "69n": (18.953125, 69.6484375),
    "south": (-70.6484375, -33.44921875),
    "antimeridian": (179.9765625, -16.5),
}
#: Distances closer than this (m) to the search radius or to a second link are left to the rule tests.
AMBIGUOUS_M = 1e-6


# -- builders ----------------------------------------------------------------------------------


def _frame(geoms: list[shapely.Geometry], ids: list[str], **columns: object) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({c.FEATURE_ID: ids, **columns}, geometry=geoms, crs="EPSG:4326")


def _segments(lon: ArrayLike, lat: ArrayLike) -> pd.DataFrame:
    return pd.DataFrame({c.TRIP_ID: "T1", c.LON_MID: np.asarray(lon, dtype=float), c.LAT_MID: np.asarray(lat, dtype=float)})


def _metres_per_degree(lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return east-west (N cos(lat)) and north-south (M) metres per degree on the WGS 84 ellipsoid."""
    phi = np.radians(lat)
    w2 = 1.0 - WGS84_E2 * np.sin(phi) ** 2
    prime_vertical_m = WGS84_A_M / np.sqrt(w2)
    meridian_m = WGS84_A_M * (1.0 - WGS84_E2) / w2**1.5
    return prime_vertical_m * np.cos(phi) * np.pi / 180.0, meridian_m * np.pi / 180.0


def _hostile_layer(site: str, rng: np.random.Generator) -> gpd.GeoDataFrame:
    """Build links and areas of every awkward kind around ``site``, in shuffled row order.

    Links: polylines, MultiLineStrings, exact duplicates under other ids, repeated vertices
    (zero-length edges) and a zero-length line. Areas: a mesh of boxes whose edges fall on grid
    lines, three nested boxes, two identical boxes, a triangle, a diamond, a box with a hole
    (and a box inside that hole) and a MultiPolygon of two boxes.
    """
    lon0, lat0 = SITES[site]
    kx, ky = (float(v[0]) for v in _metres_per_degree(np.array([lat0])))
    geoms: list[shapely.Geometry] = []
    ids: list[str] = []

    def add(geom: shapely.Geometry, name: str) -> None:
        geoms.append(geom)
        ids.append(name)

    def lonlat(x_m: ArrayLike, y_m: ArrayLike) -> np.ndarray:
        return np.c_[lon0 + np.asarray(x_m) / kx, lat0 + np.asarray(y_m) / ky]

    span_m = 4 * MESH_DEG * ky
    for i in range(120):
        start = rng.uniform(0, span_m, 2)
        steps = rng.uniform(-120, 120, (2, 2))
        vertices = np.vstack([start, start + np.cumsum(steps, axis=0)])
        add(shapely.LineString(lonlat(vertices[:, 0], vertices[:, 1])), f"link-{i:04d}")
    for i in range(15):
        start = rng.uniform(0, span_m, 2)
        far = start + rng.uniform(-300, 300, 2)
        part_a = lonlat([start[0], start[0] + 40], [start[1], start[1] + 10])
        part_b = lonlat([far[0], far[0] + 40], [far[1], far[1] - 30])
        add(shapely.MultiLineString([part_a, part_b]), f"multi-{i:03d}")
    for i, name in enumerate(["link-0003", "link-0010", "link-0057"]):
        add(geoms[ids.index(name)], f"dup-{i}")
    for i in range(4):
        start = rng.uniform(0, span_m, 2)
        vertices = np.vstack([start, start, start + [30.0, -20.0], start + [30.0, -20.0], start + [60.0, 0.0]])
        add(shapely.LineString(lonlat(vertices[:, 0], vertices[:, 1])), f"repeat-{i}")
    point = rng.uniform(0, span_m, 2)
    add(shapely.LineString(lonlat([point[0], point[0]], [point[1], point[1]])), "zero-length")

    # Areas in degrees, built on the mesh so that their edges are exact binary fractions.
    for row in range(4):
        for column in range(4):
            x, y = lon0 + column * MESH_DEG, lat0 + row * MESH_DEG
            add(shapely.box(x, y, x + MESH_DEG, y + MESH_DEG), f"mesh-{row}{column}")
    x, y = lon0 + MESH_DEG, lat0 + MESH_DEG
    for level, size in enumerate([MESH_DEG / 2, MESH_DEG / 4, MESH_DEG / 8]):
        add(shapely.box(x, y, x + size, y + size), f"nested-{level}")
    x, y = lon0 + 2 * MESH_DEG + MESH_DEG / 4, lat0 + 2 * MESH_DEG + MESH_DEG / 4
    add(shapely.box(x, y, x + MESH_DEG / 4, y + MESH_DEG / 4), "twin-b")
    add(shapely.box(x, y, x + MESH_DEG / 4, y + MESH_DEG / 4), "twin-a")
    add(shapely.Polygon([(lon0, lat0), (lon0 + 3 * MESH_DEG, lat0 + MESH_DEG / 2), (lon0 + MESH_DEG, lat0 + 3 * MESH_DEG)]), "triangle")
    cx, cy, half = lon0 + 3.5 * MESH_DEG, lat0 + 0.5 * MESH_DEG, MESH_DEG / 2
    add(shapely.Polygon([(cx - half, cy), (cx, cy - half), (cx + half, cy), (cx, cy + half)]), "diamond")
    x, y = lon0 + 3 * MESH_DEG, lat0 + 3 * MESH_DEG
    hole = [(x + MESH_DEG / 4, y + MESH_DEG / 4), (x + 3 * MESH_DEG / 4, y + MESH_DEG / 4),
            (x + 3 * MESH_DEG / 4, y + 3 * MESH_DEG / 4), (x + MESH_DEG / 4, y + 3 * MESH_DEG / 4)]
    add(shapely.Polygon(shapely.box(x, y, x + MESH_DEG, y + MESH_DEG).exterior.coords, holes=[hole]), "holed")
    add(shapely.box(x + 3 * MESH_DEG / 8, y + 3 * MESH_DEG / 8, x + 5 * MESH_DEG / 8, y + 5 * MESH_DEG / 8), "in-hole")
    x, y = lon0 + MESH_DEG / 8, lat0 + 2 * MESH_DEG + MESH_DEG / 8
    add(shapely.MultiPolygon([shapely.box(x, y, x + MESH_DEG / 4, y + MESH_DEG / 4),
                              shapely.box(x + MESH_DEG / 2, y, x + 3 * MESH_DEG / 4, y + MESH_DEG / 4)]), "multipolygon")

    order = rng.permutation(len(geoms))
    return _frame([geoms[i] for i in order], [ids[i] for i in order], **{c.AREA_TYPE: ["urban"] * len(geoms)})


def _hostile_points(layers: spatial.GeoLayers, rng: np.random.Generator, site: str) -> tuple[np.ndarray, np.ndarray]:
    """Return random points, then every vertex, edge midpoint, box corner and edge point, and grid-line points."""
    lon0, lat0 = SITES[site]
    lon: list[np.ndarray] = [rng.uniform(lon0 - MESH_DEG / 2, lon0 + 4.5 * MESH_DEG, 3000)]
    lat: list[np.ndarray] = [rng.uniform(lat0 - MESH_DEG / 2, lat0 + 4.5 * MESH_DEG, 3000)]

    link_xy = shapely.get_coordinates(np.asarray(layers.links.geometry.array, dtype=object))
    lon.append(link_xy[:, 0])
    lat.append(link_xy[:, 1])
    lon.append(0.5 * (link_xy[1:, 0] + link_xy[:-1, 0]))
    lat.append(0.5 * (link_xy[1:, 1] + link_xy[:-1, 1]))

    # Box corners and edge midpoints: all on boundaries, none inside the box they bound.
    area_xy = shapely.get_coordinates(np.asarray(layers.areas.geometry.array, dtype=object))
    lon.append(area_xy[:, 0])
    lat.append(area_xy[:, 1])
    lon.append(0.5 * (area_xy[1:, 0] + area_xy[:-1, 0]))
    lat.append(0.5 * (area_xy[1:, 1] + area_xy[:-1, 1]))

    # Points whose cell coordinate is a whole number in the area grid and in the link grid.
    for grid in (layers._area_grid, layers.link_grid(MAX_DISTANCE_M)):
        assert grid is not None
        columns = np.arange(0, grid.n_columns + 2)
        rows = np.arange(0, 40)
        gx = grid.x0 + columns * grid.width_deg
        gy = grid.y0 + rows * grid.height_deg
        lon.append(gx)
        lat.append(rng.uniform(lat0, lat0 + 4 * MESH_DEG, gx.size))
        lon.append(rng.uniform(lon0, lon0 + 4 * MESH_DEG, gy.size))
        lat.append(gy)
        mesh_x, mesh_y = np.meshgrid(gx[::3], gy[::3])
        lon.append(mesh_x.ravel())
        lat.append(mesh_y.ravel())
    return np.concatenate(lon), np.concatenate(lat)


# -- references --------------------------------------------------------------------------------


def _reference_areas(lon: np.ndarray, lat: np.ndarray, layers: spatial.GeoLayers) -> np.ndarray:
    """Return the row of the first area (tie-break order) whose interior contains each point, or -1."""
    geoms = np.asarray(layers.areas.geometry.array, dtype=object)
    if len(geoms) == 0:
        return np.full(len(lon), -1)
    with np.errstate(invalid="ignore"):
        inside = shapely.contains_xy(geoms[None, :], lon[:, None], lat[:, None])
    return np.where(inside.any(axis=1), inside.argmax(axis=1), -1)


def _wrap_degrees(delta: np.ndarray) -> np.ndarray:
    """Wrap longitude differences into [-180, 180). Differences already in range are kept bit for bit."""
    inside = (delta >= -180.0) & (delta < 180.0)
    return np.where(inside, delta, (delta + 180.0) % 360.0 - 180.0)


def _reference_link_distances(lon: np.ndarray, lat: np.ndarray, layers: spatial.GeoLayers) -> np.ndarray:
    """Return the tangent-plane distance (m) of every point to every link row, shape (points, links)."""
    geoms = np.asarray(layers.links.geometry.array, dtype=object)
    starts, ends, owners = [], [], []
    for row, geom in enumerate(geoms):
        for part in shapely.get_parts(geom):
            xy = shapely.get_coordinates(part)
            starts.append(xy[:-1])
            ends.append(xy[1:])
            owners.append(np.full(len(xy) - 1, row))
    a = np.concatenate(starts)
    b = np.concatenate(ends)
    owner = np.concatenate(owners)

    kx, ky = _metres_per_degree(lat)
    with np.errstate(invalid="ignore"):
        ax = _wrap_degrees(a[None, :, 0] - lon[:, None]) * kx[:, None]
        ay = (a[None, :, 1] - lat[:, None]) * ky[:, None]
        dx = _wrap_degrees(b[None, :, 0] - lon[:, None]) * kx[:, None] - ax
        dy = (b[None, :, 1] - lat[:, None]) * ky[:, None] - ay
        squared = dx * dx + dy * dy
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(squared > 0, np.clip(-(ax * dx + ay * dy) / squared, 0.0, 1.0), 0.0)
    edge_distance = np.hypot(ax + t * dx, ay + t * dy)

    per_link = np.full((len(lon), len(geoms)), np.inf)
    for row in range(len(geoms)):
        mine = owner == row
        if mine.any():
            per_link[:, row] = np.min(edge_distance[:, mine], axis=1)
    return np.where(np.isnan(per_link), np.inf, per_link)


def _reference_links(lon: np.ndarray, lat: np.ndarray, layers: spatial.GeoLayers, max_distance_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the nearest link row within the radius (-1), its distance (NaN) and whether the case is clear-cut.

    A case is not clear-cut when the best distance is within ``AMBIGUOUS_M`` of the radius or of
    another link, where float rounding in a different formulation may decide it the other way.
    """
    per_link = _reference_link_distances(lon, lat, layers)
    best = per_link.min(axis=1)
    pick = np.where(best <= max_distance_m, per_link.argmin(axis=1), -1)
    distance = np.where(pick >= 0, best, np.nan)
    second = np.sort(per_link, axis=1)[:, 1] if per_link.shape[1] > 1 else np.full(len(lon), np.inf)
    clear = (np.abs(best - max_distance_m) > AMBIGUOUS_M) & ~((second - best <= AMBIGUOUS_M) & (best <= max_distance_m))
    return pick, distance, clear


def _ids(values: pd.Series) -> list[object]:
    out = values.astype(object).to_numpy()
    return list(np.where(pd.isna(out), None, out))


# -- tests -------------------------------------------------------------------------------------


class TestAgainstBruteForce:
    @pytest.mark.parametrize("site", list(SITES))
    def test_areas_match_contains_xy(self, site: str) -> None:
        rng = np.random.default_rng(20)
        layers = spatial.prepare_layers(_hostile_layer(site, rng), link_max_distance_m=MAX_DISTANCE_M)
        lon, lat = _hostile_points(layers, rng, site)

        expected = _reference_areas(lon, lat, layers)
        actual = spatial.locate_areas(lon, lat, layers)

        assert (expected >= 0).sum() > 2000
        assert (expected < 0).sum() > 500
        assert not layers._area_is_box.all()
        mismatch = np.flatnonzero(actual != expected)
        assert mismatch.size == 0, f"{mismatch.size} points differ, first at ({lon[mismatch[0]]!r}, {lat[mismatch[0]]!r})"

    @pytest.mark.parametrize("site", list(SITES))
    def test_links_match_tangent_plane(self, site: str) -> None:
        rng = np.random.default_rng(21)
        layers = spatial.prepare_layers(_hostile_layer(site, rng), link_max_distance_m=MAX_DISTANCE_M)
        lon, lat = _hostile_points(layers, rng, site)

        expected, expected_distance, clear = _reference_links(lon, lat, layers, MAX_DISTANCE_M)
        actual, actual_distance = spatial.nearest_links(lon, lat, layers, MAX_DISTANCE_M)

        assert (expected >= 0).sum() > 1000
        assert clear.mean() > 0.95
        mismatch = np.flatnonzero(clear & (actual != expected))
        assert mismatch.size == 0, f"{mismatch.size} picks differ, first at ({lon[mismatch[0]]!r}, {lat[mismatch[0]]!r})"
        np.testing.assert_allclose(actual_distance[clear], expected_distance[clear], rtol=1e-12, atol=1e-9)
        # Near ties and the radius: a pick must still be a link at the best distance.
        per_link = _reference_link_distances(lon, lat, layers)
        unclear = np.flatnonzero(~clear & (actual >= 0))
        best = per_link[unclear].min(axis=1)
        assert np.all(per_link[unclear, actual[unclear]] - best <= AMBIGUOUS_M)

    @pytest.mark.parametrize("radius_m", [1e-300, 1e-6, 0.5, 3.0])
    def test_small_radii_build_and_match(self, radius_m: float) -> None:
        """Radii far below the grid's smallest cell: the layer still indexes and matches exactly."""
        rng = np.random.default_rng(23)
        layers = spatial.prepare_layers(_hostile_layer("tokyo", rng), link_max_distance_m=radius_m)
        lon, lat = _hostile_points(layers, rng, "tokyo")
        vertices = shapely.get_coordinates(np.asarray(layers.links.geometry.array, dtype=object))[:200]
        lon, lat = np.r_[lon, vertices[:, 0]], np.r_[lat, vertices[:, 1]]  # points exactly on a link

        expected, expected_distance, clear = _reference_links(lon, lat, layers, radius_m)
        actual, actual_distance = spatial.nearest_links(lon, lat, layers, radius_m)

        assert (actual[-200:] >= 0).all()
        assert (actual_distance[-200:] == 0.0).all()
        mismatch = np.flatnonzero(clear & (actual != expected))
        assert mismatch.size == 0, f"{mismatch.size} picks differ, first at ({lon[mismatch[0]]!r}, {lat[mismatch[0]]!r})"
        np.testing.assert_allclose(actual_distance[clear], expected_distance[clear], rtol=1e-12, atol=1e-9)

    def test_links_at_69n_match_geodesic_nearest(self) -> None:
        """Compare with sjoin_nearest in an azimuthal equidistant CRS centred on the site (geodesic distances).

        The links are densified to 1e-5 degree steps first, because an edge that is straight in
        degrees bows by up to 1.3 mm (in this layer) against the straight edge between its
        projected ends.
        """
        rng = np.random.default_rng(22)
        layers = spatial.prepare_layers(_hostile_layer("69n", rng), link_max_distance_m=MAX_DISTANCE_M)
        lon, lat = _hostile_points(layers, rng, "69n")
        # The tangent plane and the geodesic differ by about tan(lat) * d / M relative (0.26 mm at 25 m here).
        per_link = _reference_link_distances(lon, lat, layers)
        ordered = np.sort(per_link, axis=1)
        clear = (np.abs(ordered[:, 0] - MAX_DISTANCE_M) > 1e-2) & (ordered[:, 1] - ordered[:, 0] > 1e-2)

        lon0, lat0 = SITES["69n"]
        local = f"+proj=aeqd +lat_0={lat0 + 2 * MESH_DEG} +lon_0={lon0 + 2 * MESH_DEG} +ellps=WGS84 +units=m"
        geoms = np.asarray(layers.links.geometry.array, dtype=object)
        has_length = shapely.length(geoms) > 0
        geoms[has_length] = shapely.segmentize(geoms[has_length], 1e-5)
        links = gpd.GeoDataFrame(geometry=geoms, crs="EPSG:4326").to_crs(local)
        points = gpd.GeoDataFrame(geometry=shapely.points(lon[clear], lat[clear]), crs="EPSG:4326").to_crs(local)
        joined = gpd.sjoin_nearest(points, links, how="inner", max_distance=MAX_DISTANCE_M, distance_col="d")
        joined = joined.reset_index().sort_values(["index", "d", "index_right"]).drop_duplicates("index")
        expected = np.full(int(clear.sum()), -1)
        expected_distance = np.full(int(clear.sum()), np.nan)
        expected[joined["index"].to_numpy()] = joined["index_right"].to_numpy()
        expected_distance[joined["index"].to_numpy()] = joined["d"].to_numpy()

        actual, actual_distance = spatial.nearest_links(lon[clear], lat[clear], layers, MAX_DISTANCE_M)

        assert (expected >= 0).sum() > 1000
        assert np.array_equal(actual, expected)
        np.testing.assert_allclose(actual_distance, expected_distance, rtol=0.0, atol=3e-4)

    def test_areas_match_sjoin_within(self) -> None:
        rng = np.random.default_rng(23)
        layers = spatial.prepare_layers(_hostile_layer("tokyo", rng))
        lon, lat = _hostile_points(layers, rng, "tokyo")
        points = gpd.GeoDataFrame(geometry=shapely.points(lon, lat), crs="EPSG:4326")

        joined = gpd.sjoin(points, layers.areas[[c.GEOMETRY]].reset_index(drop=True), how="inner", predicate="within")
        first = joined.groupby(level=0)["index_right"].min()
        expected = np.full(len(lon), -1)
        expected[first.index.to_numpy()] = first.to_numpy()

        assert np.array_equal(spatial.locate_areas(lon, lat, layers), expected)


class TestCellLookup:
    def test_dense_and_searched_lookup_identical(self, monkeypatch: pytest.MonkeyPatch) -> None:
        rng = np.random.default_rng(30)
        geo = _hostile_layer("tokyo", rng)
        dense_layers = spatial.prepare_layers(geo, link_max_distance_m=MAX_DISTANCE_M)
        lon, lat = _hostile_points(dense_layers, rng, "tokyo")
        lon = np.r_[lon, np.nan, np.inf, -np.inf, 139.7, 139.7, -200.0, 400.0]
        lat = np.r_[lat, 35.6, 35.6, 35.6, np.nan, -np.inf, 35.6, 35.6]
        monkeypatch.setattr(spatial, "_MAX_DENSE_CELLS", 0)
        searched_layers = spatial.prepare_layers(geo, link_max_distance_m=MAX_DISTANCE_M)

        grids = [dense_layers._area_grid, dense_layers.link_grid(MAX_DISTANCE_M)]
        searched_grids = [searched_layers._area_grid, searched_layers.link_grid(MAX_DISTANCE_M)]
        for dense_grid, searched_grid in zip(grids, searched_grids):
            assert dense_grid is not None and searched_grid is not None
            assert len(dense_grid.dense) > 0
            assert len(searched_grid.dense) == 0
        with np.errstate(invalid="ignore"):
            dense = spatial.join_segments(_segments(lon, lat), dense_layers, MAX_DISTANCE_M)
            searched = spatial.join_segments(_segments(lon, lat), searched_layers, MAX_DISTANCE_M)
        assert dense[c.MATCHED].sum() > 1000
        assert dense[c.AREA_ID].notna().sum() > 2000
        pd.testing.assert_frame_equal(dense, searched)

    def test_grid_line_points_inside_boxes(self) -> None:
        """Box edges on grid lines: interior points on grid lines read the cell before them too."""
        x0, y0 = 139.5, 35.5
        boxes = [shapely.box(x0 + i * MESH_DEG, y0, x0 + (i + 1) * MESH_DEG, y0 + MESH_DEG) for i in range(3)]
        layers = spatial.prepare_layers(_frame(boxes, ["a", "b", "c"]))
        grid = layers._area_grid
        assert grid is not None
        assert grid.width_deg == MESH_DEG / 4
        steps = np.arange(0, 13)
        lon = np.repeat(x0 + steps * grid.width_deg, len(steps))
        lat = np.tile(y0 + steps * grid.height_deg / 3, len(steps))

        actual = spatial.locate_areas(lon, lat, layers)

        # Box edges lie on every fourth grid column and on the first and last row of points.
        on_edge = np.repeat(steps % 4 == 0, len(steps)) | np.isin(lat, [y0, y0 + MESH_DEG])
        box_number = np.minimum((lon - x0) // MESH_DEG, 2).astype(int)
        expected_ids = np.where(on_edge, None, np.array(["a", "b", "c"], dtype=object)[box_number])
        actual_ids = np.where(actual >= 0, layers.areas[c.FEATURE_ID].to_numpy()[np.maximum(actual, 0)], None)
        assert list(actual_ids) == list(expected_ids)
        assert np.array_equal(actual, _reference_areas(lon, lat, layers))
        assert (actual >= 0).sum() > 80


    @pytest.mark.parametrize("notched", [False, True], ids=["rectangles", "notched"])
    def test_just_inside_edge_reads_cell_before(self, notched: bool) -> None:
        """Near 0 degrees, a point one float inside a box can divide to the same whole cell
        coordinate as the box edge. The box is registered only up to the cell before that line,
        so the point must read that cell too. Rectangles take the compiled loop, and the notched
        polygons take ``_Grid.pairs`` and GEOS."""
        # Mesh origin and size where the right edge of column 1 is at cell coordinate 8 exactly.
        x0, size = -0.006369616873214543, 0.002770888466262316
        edges = x0 + np.arange(9) * size
        cut = size / 10
        polygons = []
        for i in range(8):
            for j in range(8):
                left, right, bottom, top = edges[i], edges[i + 1], edges[j], edges[j + 1]
                if notched:
                    polygons.append(shapely.Polygon([(left, bottom), (right, bottom), (right, top), (left + cut, top), (left, top - cut)]))
                else:
                    polygons.append(shapely.box(left, bottom, right, top))
        layers = spatial.prepare_layers(_frame(polygons, [f"cell-{i:02d}" for i in range(64)]))
        grid = layers._area_grid
        assert grid is not None
        assert bool(layers._area_is_box.any()) is not notched
        inside_x = np.nextafter(edges[2], -np.inf)
        assert (inside_x - grid.x0) / grid.width_deg == (edges[2] - grid.x0) / grid.width_deg == 8.0
        centres = 0.5 * (edges[1:] + edges[:-1])
        lon = np.r_[np.nextafter(edges[1:], -np.inf), np.full(8, centres[3])]
        lat = np.r_[np.full(8, centres[3]), np.nextafter(edges[1:], -np.inf)]

        actual = spatial.locate_areas(lon, lat, layers)

        expected = _reference_areas(lon, lat, layers)
        assert (expected >= 0).all()
        assert np.array_equal(actual, expected)


class TestAreaRules:
    def test_box_boundary_is_not_inside(self) -> None:
        layers = spatial.prepare_layers(_frame([shapely.box(139.5, 35.5, 139.5 + MESH_DEG, 35.5 + MESH_DEG)], ["box"]))
        x1, y1 = 139.5 + MESH_DEG, 35.5 + MESH_DEG
        lon = np.array([139.5, x1, 139.5, x1, 139.5 + MESH_DEG / 2, 139.5 + MESH_DEG / 2, 139.5, x1, 139.5 + MESH_DEG / 2])
        lat = np.array([35.5, 35.5, y1, y1, 35.5, y1, 35.5 + MESH_DEG / 2, 35.5 + MESH_DEG / 2, 35.5 + MESH_DEG / 2])

        actual = spatial.locate_areas(lon, lat, layers)

        assert list(actual[:-1]) == [-1] * 8
        assert actual[-1] == 0
        # Just inside each edge is inside.
        inner_lon = np.array([np.nextafter(139.5, 140.0), np.nextafter(x1, 0.0), 139.5 + MESH_DEG / 2, 139.5 + MESH_DEG / 2])
        inner_lat = np.array([35.5 + MESH_DEG / 2, 35.5 + MESH_DEG / 2, np.nextafter(35.5, 36.0), np.nextafter(y1, 0.0)])
        assert list(spatial.locate_areas(inner_lon, inner_lat, layers)) == [0, 0, 0, 0]

    def test_polygon_and_hole_boundaries(self) -> None:
        x, y, s = 139.5, 35.5, MESH_DEG
        hole = [(x + s / 4, y + s / 4), (x + 3 * s / 4, y + s / 4), (x + 3 * s / 4, y + 3 * s / 4), (x + s / 4, y + 3 * s / 4)]
        holed = shapely.Polygon(shapely.box(x, y, x + s, y + s).exterior.coords, holes=[hole])
        outer = shapely.box(x - s, y - s, x + 2 * s, y + 2 * s)
        layers = spatial.prepare_layers(_frame([outer, holed], ["outer", "holed"]))
        assert list(layers.areas[c.FEATURE_ID]) == ["holed", "outer"]
        lon = np.array([x + s / 8, x + s / 2, x + s / 4, x + s / 2, x, x + 3 * s])
        lat = np.array([y + s / 2, y + s / 2, y + s / 2, y + s / 4, y + s / 2, y])

        actual = spatial.locate_areas(lon, lat, layers)

        # Ring interior, hole interior, hole edge (twice), outer edge of the holed polygon, outside all.
        assert list(actual) == [0, 1, 1, 1, 1, -1]

    def test_multipolygon_parts_and_gap(self) -> None:
        x, y, s = 139.5, 35.5, MESH_DEG
        multi = shapely.MultiPolygon([shapely.box(x, y, x + s, y + s), shapely.box(x + 2 * s, y, x + 3 * s, y + s)])
        layers = spatial.prepare_layers(_frame([multi], ["multi"]))
        assert not layers._area_is_box[0]
        lon = np.array([x + s / 2, x + 1.5 * s, x + 2.5 * s, x + s, x + 2 * s])
        lat = np.full(5, y + s / 2)
        assert list(spatial.locate_areas(lon, lat, layers)) == [0, -1, 0, -1, -1]

    def test_nested_boxes_smallest_wins(self) -> None:
        x, y = 139.5, 35.5
        sizes = [MESH_DEG, MESH_DEG / 2, MESH_DEG / 4]
        geoms = [shapely.box(x, y, x + s, y + s) for s in sizes]
        layers = spatial.prepare_layers(_frame(geoms, ["big", "mid", "small"]))
        lon = np.array([x + MESH_DEG / 8, x + 3 * MESH_DEG / 8, x + 3 * MESH_DEG / 4, x + MESH_DEG / 4])
        lat = np.array([y + MESH_DEG / 8, y + 3 * MESH_DEG / 8, y + 3 * MESH_DEG / 4, y + MESH_DEG / 8])

        joined = spatial.join_segments(_segments(lon, lat), layers, MAX_DISTANCE_M)

        # The last point lies on the edge of "small" and inside "mid".
        assert _ids(joined[c.AREA_ID]) == ["small", "mid", "big", "mid"]

    def test_identical_areas_smallest_feature_id(self) -> None:
        box = shapely.box(139.5, 35.5, 139.5 + MESH_DEG, 35.5 + MESH_DEG)
        triangle = shapely.Polygon([(139.6, 35.6), (139.6 + MESH_DEG, 35.6), (139.6, 35.6 + MESH_DEG)])
        geo = _frame([box, box, triangle, triangle], ["box-z", "box-a", "tri-q", "tri-b"])
        layers = spatial.prepare_layers(geo)
        lon = np.array([139.5 + MESH_DEG / 2, 139.6 + MESH_DEG / 4])
        lat = np.array([35.5 + MESH_DEG / 2, 35.6 + MESH_DEG / 4])
        assert _ids(spatial.join_segments(_segments(lon, lat), layers, MAX_DISTANCE_M)[c.AREA_ID]) == ["box-a", "tri-b"]

    @pytest.mark.parametrize("polygon_smaller", [True, False], ids=["polygon-smaller", "box-smaller"])
    def test_box_against_polygon_by_size(self, polygon_smaller: bool) -> None:
        x, y, s = 139.5, 35.5, MESH_DEG
        big_triangle = shapely.Polygon([(x - s, y - s), (x + 3 * s, y - s), (x - s, y + 3 * s)])
        small_triangle = shapely.Polygon([(x, y), (x + s, y), (x, y + s)])
        triangle = small_triangle if polygon_smaller else big_triangle
        geo = _frame([shapely.box(x, y, x + s, y + s), triangle], ["box", "triangle"])
        layers = spatial.prepare_layers(geo)
        got = _ids(spatial.join_segments(_segments([x + s / 4], [y + s / 4]), layers, MAX_DISTANCE_M)[c.AREA_ID])
        assert got == ["triangle" if polygon_smaller else "box"]

    def test_only_non_rectangular_polygons(self) -> None:
        rng = np.random.default_rng(31)
        centres = np.c_[rng.uniform(139.5, 139.52, 40), rng.uniform(35.5, 35.52, 40)]
        geoms = [shapely.Point(x, y).buffer(rng.uniform(0.0005, 0.003), quad_segs=4) for x, y in centres]
        layers = spatial.prepare_layers(_frame(geoms, [f"disc-{i:02d}" for i in range(40)]))
        assert not layers._area_is_box.any()
        lon, lat = rng.uniform(139.497, 139.523, 4000), rng.uniform(35.497, 35.523, 4000)

        expected = _reference_areas(lon, lat, layers)

        assert (expected >= 0).sum() > 1000
        assert np.array_equal(spatial.locate_areas(lon, lat, layers), expected)


class TestLinkRules:
    def test_point_on_vertex_has_zero_distance(self) -> None:
        line = shapely.LineString([(139.5, 35.5), (139.5003, 35.5002), (139.5001, 35.5005)])
        layers = spatial.prepare_layers(_frame([line], ["link-a"]))
        xy = shapely.get_coordinates(line)

        pick, distance = spatial.nearest_links(xy[:, 0], xy[:, 1], layers, MAX_DISTANCE_M)

        assert list(pick) == [0, 0, 0]
        assert list(distance) == [0.0, 0.0, 0.0]

    @pytest.mark.parametrize("lat0", [35.6, 69.65, -33.4, 0.0])
    def test_max_distance_is_inclusive(self, lat0: float) -> None:
        """A point exactly at the radius matches. With the radius one float smaller it does not."""
        rng = np.random.default_rng(40)
        for trial in range(12):
            x, y = 139.5 + rng.uniform(0, 0.01), lat0 + rng.uniform(-0.01, 0.01)
            end = (x + rng.uniform(-0.001, 0.001), y + rng.uniform(-0.001, 0.001))
            layers = spatial.prepare_layers(_frame([shapely.LineString([(x, y), end])], ["link-a"]))
            px, py = np.array([x + rng.uniform(-0.0015, 0.0015)]), np.array([y + rng.uniform(-0.0015, 0.0015)])
            _, measured = spatial.nearest_links(px, py, layers, 1000.0)
            radius = float(measured[0])
            assert radius > 0, f"trial {trial}"

            at_pick, at_distance = spatial.nearest_links(px, py, layers, radius)
            below_pick, below_distance = spatial.nearest_links(px, py, layers, float(np.nextafter(radius, 0.0)))

            assert at_pick[0] == 0, f"trial {trial}: radius {radius!r} m"
            assert at_distance[0] == radius
            assert below_pick[0] == -1, f"trial {trial}: radius {radius!r} m"
            assert np.isnan(below_distance[0])

    @pytest.mark.parametrize("north_id, south_id", [("link-a", "link-b"), ("link-b", "link-a")])
    def test_exact_tie_smallest_feature_id(self, north_id: str, south_id: str) -> None:
        """Two links mirrored about the point at a binary-fraction offset are exactly equally far."""
        offset = 2.0**-13
        north = shapely.LineString([(139.5, 35.5 + offset), (139.51, 35.5 + offset)])
        south = shapely.LineString([(139.5, 35.5 - offset), (139.51, 35.5 - offset)])
        layers = spatial.prepare_layers(_frame([north, south], [north_id, south_id], **{c.ROAD_CLASS: ["north", "south"]}))
        per_link = _reference_link_distances(np.array([139.505]), np.array([35.5]), layers)
        assert per_link[0, 0] == per_link[0, 1] < MAX_DISTANCE_M

        joined = spatial.join_segments(_segments([139.505], [35.5]), layers, MAX_DISTANCE_M)

        assert _ids(joined[c.LINK_ID]) == ["link-a"]
        assert _ids(joined[c.ROAD_CLASS]) == ["north" if north_id == "link-a" else "south"]

    def test_duplicate_links_smallest_feature_id(self) -> None:
        line = shapely.LineString([(139.5, 35.5), (139.5, 35.6)])
        geo = _frame([line, line, line], ["link-c", "link-a", "link-b"], **{c.GRADIENT_PCT: [3.0, 1.0, 2.0]})
        joined = spatial.join_segments(_segments([139.5001, 139.6], [35.55, 35.55]), spatial.prepare_layers(geo), MAX_DISTANCE_M)
        assert _ids(joined[c.LINK_ID]) == ["link-a", None]
        assert joined[c.LINK_GRADIENT_PCT].iloc[0] == 1.0
        assert np.isnan(joined[c.LINK_GRADIENT_PCT].iloc[1])

    def test_zero_length_edges(self) -> None:
        repeated = shapely.LineString([(139.5, 35.5), (139.5, 35.5), (139.5002, 35.5), (139.5002, 35.5)])
        point_like = shapely.LineString([(139.6, 35.6), (139.6, 35.6)])
        layers = spatial.prepare_layers(_frame([repeated, point_like], ["repeated", "point-like"]))
        lon = np.array([139.5, 139.4999, 139.5001, 139.6, 139.6001, 139.61])
        lat = np.array([35.5, 35.5, 35.5001, 35.6, 35.6001, 35.6])

        pick, distance = spatial.nearest_links(lon, lat, layers, MAX_DISTANCE_M)
        expected, expected_distance, clear = _reference_links(lon, lat, layers, MAX_DISTANCE_M)

        assert clear.all()
        assert list(pick) == list(expected)
        assert list(pick) == [1, 1, 1, 0, 0, -1]
        np.testing.assert_allclose(distance, expected_distance, rtol=1e-12, equal_nan=True)
        assert np.all(np.isfinite(distance[:5]))

    def test_multilinestring_gap_is_not_an_edge(self) -> None:
        """The straight line from the end of one part to the start of the next is no part of the link."""
        multi = shapely.MultiLineString([[(139.5, 35.5), (139.5, 35.5001)], [(139.501, 35.5), (139.501, 35.5001)]])
        layers = spatial.prepare_layers(_frame([multi], ["multi"]))
        lon = np.array([139.5005, 139.5005, 139.50001, 139.50099])
        lat = np.array([35.50005, 35.5, 35.50005, 35.50005])

        pick, distance = spatial.nearest_links(lon, lat, layers, MAX_DISTANCE_M)

        assert list(pick) == [-1, -1, 0, 0]
        assert distance[2] == pytest.approx(0.01 * 1e-3 * 90_600.0, rel=0.01)


@numba.njit(cache=False)
def _count_limit_misses(ex: np.ndarray, ey: np.ndarray) -> tuple[int, int]:
    """Count the offsets whose squared sum exceeds ``hypot ** 2``, and those whose sum exceeds
    ``_squared_limit(hypot)``, computed with the operations of ``_nearest_edges``."""
    above_square = 0
    above_limit = 0
    for i in range(ex.shape[0]):
        d = np.hypot(ex[i], ey[i])
        squared = ex[i] * ex[i] + ey[i] * ey[i]
        if squared > d * d:
            above_square += 1
        if squared > spatial._squared_limit(d):
            above_limit += 1
    return above_square, above_limit


class TestHypotSkip:
    """``_nearest_edges`` skips ``np.hypot`` for a candidate whose squared distance is above
    ``_squared_limit`` of the radius or of the best distance so far."""

    def test_candidate_at_limit_is_never_skipped(self) -> None:
        rng = np.random.default_rng(70)
        n = 200_000
        angle = rng.uniform(0.0, 2.0 * np.pi, 2 * n)
        length_m = np.r_[rng.uniform(0.0, 30.0, n), 10.0 ** rng.uniform(-149.0, 150.0, n)]

        above_square, above_limit = _count_limit_misses(length_m * np.cos(angle), length_m * np.sin(angle))

        # About a quarter of the sums round above hypot ** 2, so a limit without margin would skip them.
        assert above_square > 1000
        assert above_limit == 0

    @pytest.mark.parametrize("distance_m", [0.0, 1e-151, np.nan, np.inf, 1e200])
    def test_no_limit_outside_normal_squares(self, distance_m: float) -> None:
        assert spatial._squared_limit(distance_m) == np.inf

    def test_near_ties_match_single_link_distances(self) -> None:
        """Two links mirrored about each point are equally far up to rounding. The result with both
        links must be the smaller of the distances measured to each link alone (smaller row on a tie)."""
        rng = np.random.default_rng(71)
        n = 400
        lon = 139.5 + 0.01 * np.arange(n) + rng.uniform(-1e-3, 1e-3, n)
        lat = 35.5 + rng.uniform(-0.2, 0.2, n)
        angle = rng.uniform(0.0, np.pi, n)
        offset_deg = rng.uniform(2e-5, 2e-4, n)
        to_line_x, to_line_y = -np.sin(angle) * offset_deg, np.cos(angle) * offset_deg
        half_x, half_y = np.cos(angle) * 5e-4, np.sin(angle) * 5e-4

        def lines(sign: float) -> list[shapely.Geometry]:
            x = lon + sign * to_line_x
            y = lat + sign * to_line_y
            return list(shapely.linestrings(np.stack([np.c_[x - half_x, x + half_x], np.c_[y - half_y, y + half_y]], axis=-1)))

        ids_a = [f"p{i:04d}-a" for i in range(n)]
        ids_b = [f"p{i:04d}-b" for i in range(n)]
        both = spatial.prepare_layers(_frame(lines(1.0) + lines(-1.0), ids_a + ids_b))
        _, distance_a = spatial.nearest_links(lon, lat, spatial.prepare_layers(_frame(lines(1.0), ids_a)), 100.0)
        _, distance_b = spatial.nearest_links(lon, lat, spatial.prepare_layers(_frame(lines(-1.0), ids_b)), 100.0)

        pick, distance = spatial.nearest_links(lon, lat, both, 100.0)

        assert (distance_a == distance_b).sum() > 50
        assert (distance_a != distance_b).sum() > 50
        expected_ids = np.where(distance_b < distance_a, np.array(ids_b), np.array(ids_a))
        assert list(both.links[c.FEATURE_ID].to_numpy()[pick]) == list(expected_ids)
        assert np.array_equal(distance, np.minimum(distance_a, distance_b))


class TestNonFiniteAndEmpty:
    def test_nan_and_inf_points_match_nothing(self) -> None:
        geo = _hostile_layer("tokyo", np.random.default_rng(50))
        layers = spatial.prepare_layers(geo, link_max_distance_m=MAX_DISTANCE_M)
        lon0, lat0 = SITES["tokyo"]
        lon = np.array([np.nan, np.inf, -np.inf, lon0, lon0, lon0, np.nan, np.inf, 1e300, lon0, -1e300])
        lat = np.array([lat0, lat0, lat0, np.nan, np.inf, -np.inf, np.nan, np.inf, lat0, 1e300, -1e300])

        with np.errstate(invalid="ignore"):
            joined = spatial.join_segments(_segments(lon, lat), layers, MAX_DISTANCE_M)

        assert not joined[c.MATCHED].any()
        assert joined[c.LINK_ID].isna().all()
        assert joined[c.AREA_ID].isna().all()
        assert np.isnan(joined[c.LINK_DISTANCE_M]).all()

    @pytest.mark.parametrize("kinds", [(), ("links",), ("areas",), ("links", "areas")])
    def test_empty_points_and_partial_layers(self, kinds: tuple[str, ...]) -> None:
        geoms: list[shapely.Geometry] = []
        ids: list[str] = []
        if "links" in kinds:
            geoms.append(shapely.LineString([(139.5, 35.5), (139.5, 35.6)]))
            ids.append("link-a")
        if "areas" in kinds:
            geoms.append(shapely.box(139.4, 35.4, 139.6, 35.6))
            ids.append("area-a")
        geoms.append(shapely.Point(139.5, 35.55))
        ids.append("point-ignored")
        layers = spatial.prepare_layers(_frame(geoms, ids, **{c.AREA_TYPE: ["urban"] * len(ids)}), link_max_distance_m=MAX_DISTANCE_M)

        empty = spatial.join_segments(_segments(np.zeros(0), np.zeros(0)), layers, MAX_DISTANCE_M)
        single = spatial.join_segments(_segments([139.50001], [35.55]), layers, MAX_DISTANCE_M)

        assert len(empty) == 0
        assert set(spatial.JOIN_COLUMNS) <= set(empty.columns)
        assert bool(single[c.MATCHED].iloc[0]) is ("links" in kinds)
        assert _ids(single[c.AREA_ID]) == (["area-a"] if "areas" in kinds else [None])
        assert _ids(single[c.AREA_TYPE]) == (["urban"] if "areas" in kinds else [None])


class TestAntimeridianAndPoles:
    def test_high_latitude_grid_keeps_candidates(self) -> None:
        """At 85 N a degree of longitude is 9.7 km: the grid cells must widen accordingly."""
        line = shapely.LineString([(10.0, 85.0), (10.0, 85.001)])
        layers = spatial.prepare_layers(_frame([line], ["link-a"]))
        kx, _ = _metres_per_degree(np.array([85.0005]))
        offsets_m = np.array([1.0, 10.0, 24.9, 25.1])
        lon = 10.0 + offsets_m / kx[0]
        lat = np.full(4, 85.0005)

        pick, distance = spatial.nearest_links(lon, lat, layers, MAX_DISTANCE_M)

        assert list(pick) == [0, 0, 0, -1]
        np.testing.assert_allclose(distance[:3], offsets_m[:3], rtol=1e-9)

    @pytest.mark.xfail(
        strict=True,
        reason=(
            "The link grid is built in plain longitude and does not wrap, so a link 2.2 m away across "
            "the antimeridian is never a candidate, although _nearest_edges wraps longitude differences."
        ),
    )
    def test_link_across_antimeridian_matches(self) -> None:
        line = shapely.LineString([(-179.99999, -16.5), (-179.99999, -16.4)])
        layers = spatial.prepare_layers(_frame([line], ["link-a"]))
        pick, distance = spatial.nearest_links(np.array([179.99999]), np.array([-16.45]), layers, MAX_DISTANCE_M)
        expected = _reference_link_distances(np.array([179.99999]), np.array([-16.45]), layers)[0, 0]
        assert expected < 3.0
        assert pick[0] == 0
        assert distance[0] == pytest.approx(expected, rel=1e-9)

    @pytest.mark.xfail(
        strict=True,
        reason=(
            "_build_edge_grid caps the latitude that sets the cell width at 89.9 degrees, so above it a "
            "point within the radius can fall outside the cells its link is registered in."
        ),
    )
    def test_link_near_pole_matches(self) -> None:
        line = shapely.LineString([(0.0, 89.95), (0.0, 89.96)])
        layers = spatial.prepare_layers(_frame([line], ["link-a"]))
        lon = np.linspace(0.0, 0.2, 5)
        lat = np.full(5, 89.955)
        expected, expected_distance, _ = _reference_links(lon, lat, layers, MAX_DISTANCE_M)
        assert list(expected) == [0, 0, 0, 0, 0]

        pick, distance = spatial.nearest_links(lon, lat, layers, MAX_DISTANCE_M)

        assert list(pick) == list(expected)
        np.testing.assert_allclose(distance, expected_distance, rtol=1e-9)
