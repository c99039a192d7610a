"""compute.spatial against plain geopandas (the eager unit of truth) and its documented rules."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from compute import columns as c
from compute import spatial

LON0, LAT0 = 139.70, 35.60
M_PER_DEG_LAT = 110_950.0
M_PER_DEG_LON = 90_600.0


def _lonlat(x_m: np.ndarray, y_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return LON0 + np.asarray(x_m) / M_PER_DEG_LON, LAT0 + np.asarray(y_m) / M_PER_DEG_LAT


def _layer(rng: np.random.Generator) -> gpd.GeoDataFrame:
    """Random road-like links (two edges of up to 150 m), a mesh of boxes, a nested box and a triangle."""
    n_links = 600
    x = rng.uniform(0, 2000, (n_links, 1)) + np.c_[np.zeros(n_links), np.cumsum(rng.uniform(-150, 150, (n_links, 2)), axis=1)]
    y = rng.uniform(0, 2000, (n_links, 1)) + np.c_[np.zeros(n_links), np.cumsum(rng.uniform(-150, 150, (n_links, 2)), axis=1)]
    lon, lat = _lonlat(x, y)
    links = shapely.linestrings(np.stack([lon, lat], axis=-1))
    edges = np.arange(0, 2000, 500.0)
    bx, by = np.meshgrid(edges, edges)
    lo = _lonlat(bx.ravel(), by.ravel())
    hi = _lonlat(bx.ravel() + 500, by.ravel() + 500)
    boxes = shapely.box(lo[0], lo[1], hi[0], hi[1])
    inner_lo, inner_hi = _lonlat(600, 600), _lonlat(800, 800)
    nested = shapely.box(inner_lo[0], inner_lo[1], inner_hi[0], inner_hi[1])
    tri = shapely.Polygon(np.c_[_lonlat(np.array([100, 1900, 1000.0]), np.array([100, 300, 1700.0]))])
    areas = [*boxes, nested, tri]
    return gpd.GeoDataFrame(
        {
            c.FEATURE_ID: [f"link-{i:04d}" for i in range(n_links)] + [f"area-{i:03d}" for i in range(len(areas))],
            c.ROAD_CLASS: ["primary"] * n_links + [None] * len(areas),
            c.SPEED_LIMIT_KMH: [50.0] * n_links + [np.nan] * len(areas),
            c.GRADIENT_PCT: list(rng.normal(0, 2, n_links)) + [np.nan] * len(areas),
            c.AREA_TYPE: [None] * n_links + ["urban"] * len(areas),
        },
        geometry=list(links) + areas,
        crs="EPSG:4326",
    )


def _segments(lon: np.ndarray, lat: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({c.TRIP_ID: "T1", c.LON_MID: lon, c.LAT_MID: lat})


def _expected_areas(points: gpd.GeoDataFrame, layers: spatial.GeoLayers) -> np.ndarray:
    areas = layers.areas.reset_index(drop=True)
    joined = gpd.sjoin(points, areas[[c.GEOMETRY]], how="inner", predicate="within")
    best = joined.groupby(level=0)["index_right"].min()
    out = np.full(len(points), -1)
    out[best.index.to_numpy()] = best.to_numpy()
    return out


def _expected_links(points: gpd.GeoDataFrame, layers: spatial.GeoLayers, max_distance_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest link with geopandas, in an azimuthal equidistant CRS centred on the test area."""
    local = f"+proj=aeqd +lat_0={LAT0 + 0.009} +lon_0={LON0 + 0.011} +ellps=WGS84 +units=m"
    links = layers.links.reset_index(drop=True)[[c.GEOMETRY]].to_crs(local)
    joined = gpd.sjoin_nearest(points.to_crs(local), links, how="inner", max_distance=max_distance_m, distance_col="d")
    joined = joined.reset_index().sort_values(["index", "d", "index_right"])
    first = joined.drop_duplicates("index")
    pick = np.full(len(points), -1)
    distance = np.full(len(points), np.nan)
    pick[first["index"].to_numpy()] = first["index_right"].to_numpy()
    distance[first["index"].to_numpy()] = first["d"].to_numpy()
    return pick, distance


def _ids(values: pd.Series) -> np.ndarray:
    """Text ids as an object array with None where missing."""
    out = values.astype(object).to_numpy()
    return np.where(pd.isna(out), None, out)


class TestAgainstGeopandas:
    def test_random_points_match_eager_geopandas(self) -> None:
        rng = np.random.default_rng(7)
        layers = spatial.prepare_layers(_layer(rng), link_max_distance_m=25.0)
        lon, lat = _lonlat(rng.uniform(-100, 2100, 20_000), rng.uniform(-100, 2100, 20_000))
        points = gpd.GeoDataFrame(geometry=shapely.points(lon, lat), crs="EPSG:4326")

        joined = spatial.join_segments(_segments(lon, lat), layers, 25.0)
        expected_area = _expected_areas(points, layers)
        expected_link, expected_distance = _expected_links(points, layers, 25.0)

        area_ids = layers.areas[c.FEATURE_ID].to_numpy()
        link_ids = layers.links[c.FEATURE_ID].to_numpy()
        got_area = _ids(joined[c.AREA_ID])
        got_link = _ids(joined[c.LINK_ID])
        assert (expected_area >= 0).sum() > 15_000
        assert (expected_link >= 0).sum() > 3_000
        assert np.array_equal(np.where(expected_area >= 0, area_ids[np.maximum(expected_area, 0)], None), got_area)
        assert np.array_equal(np.where(expected_link >= 0, link_ids[np.maximum(expected_link, 0)], None), got_link)
        assert np.array_equal(joined[c.MATCHED].to_numpy(), expected_link >= 0)
        got_distance = joined[c.LINK_DISTANCE_M].to_numpy()
        assert np.allclose(got_distance, expected_distance, atol=1e-3, equal_nan=True)


    def test_dense_and_searched_cell_lookup_agree(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Grids too large for the offset table search the cell keys instead: same result."""
        rng = np.random.default_rng(11)
        geo = _layer(rng)
        lon, lat = _lonlat(rng.uniform(-100, 2100, 5_000), rng.uniform(-100, 2100, 5_000))
        dense_layers = spatial.prepare_layers(geo, link_max_distance_m=25.0)
        monkeypatch.setattr(spatial, "_MAX_DENSE_CELLS", 0)
        searched_layers = spatial.prepare_layers(geo, link_max_distance_m=25.0)
        assert len(dense_layers.link_grid(25.0).dense) > 0
        assert len(searched_layers.link_grid(25.0).dense) == 0
        dense = spatial.join_segments(_segments(lon, lat), dense_layers, 25.0)
        searched = spatial.join_segments(_segments(lon, lat), searched_layers, 25.0)
        assert dense[c.MATCHED].sum() > 500
        pd.testing.assert_frame_equal(dense, searched)


class TestRules:
    def test_nested_area_smallest_wins(self) -> None:
        layers = spatial.prepare_layers(_layer(np.random.default_rng(1)))
        lon, lat = _lonlat(np.array([700.0]), np.array([700.0]))
        joined = spatial.join_segments(_segments(lon, lat), layers, 25.0)
        assert _ids(joined[c.AREA_ID])[0] == "area-016"

    def test_point_on_shared_edge_has_no_area(self) -> None:
        geo = gpd.GeoDataFrame(
            {c.FEATURE_ID: ["west", "east"], c.AREA_TYPE: ["urban", "rural"]},
            geometry=[shapely.box(139.5, 35.5, 139.5 + 2.0**-7, 35.5 + 2.0**-7), shapely.box(139.5 + 2.0**-7, 35.5, 139.5 + 2.0**-6, 35.5 + 2.0**-7)],
            crs="EPSG:4326",
        )
        layers = spatial.prepare_layers(geo)
        lon = np.array([139.5 + 2.0**-7, 139.5 + 2.0**-8, 139.5 + 3 * 2.0**-8])
        lat = np.full(3, 35.5 + 2.0**-8)
        joined = spatial.join_segments(_segments(lon, lat), layers, 25.0)
        assert list(_ids(joined[c.AREA_ID])) == [None, "west", "east"]
        assert list(_ids(joined[c.AREA_TYPE])) == [None, "urban", "rural"]

    def test_equal_distance_smallest_feature_id(self) -> None:
        geo = gpd.GeoDataFrame(
            {c.FEATURE_ID: ["link-b", "link-a"], c.ROAD_CLASS: ["secondary", "primary"]},
            geometry=[shapely.LineString([(139.5, 35.5), (139.5, 35.6)]), shapely.LineString([(139.5002, 35.5), (139.5002, 35.6)])],
            crs="EPSG:4326",
        )
        layers = spatial.prepare_layers(geo)
        joined = spatial.join_segments(_segments(np.array([139.5001]), np.array([35.55])), layers, 25.0)
        assert joined[c.LINK_ID].astype(object).iloc[0] == "link-a"
        assert joined[c.ROAD_CLASS].astype(object).iloc[0] == "primary"

    @pytest.mark.parametrize("offset_m, matched", [(24.0, True), (26.0, False)])
    def test_max_distance_bounds_match(self, offset_m: float, matched: bool) -> None:
        geo = gpd.GeoDataFrame({c.FEATURE_ID: ["link-a"]}, geometry=[shapely.LineString([(139.5, 35.5), (139.5, 35.6)])], crs="EPSG:4326")
        layers = spatial.prepare_layers(geo)
        lon = 139.5 + offset_m / (np.cos(np.radians(35.55)) * 111_320.0 * 1.0017)
        joined = spatial.join_segments(_segments(np.array([lon]), np.array([35.55])), layers, 25.0)
        assert bool(joined[c.MATCHED].iloc[0]) is matched

    def test_distance_close_to_geodesic(self) -> None:
        import pyproj

        geo = gpd.GeoDataFrame({c.FEATURE_ID: ["link-a"]}, geometry=[shapely.LineString([(139.5, 35.0), (139.5, 36.0)])], crs="EPSG:4326")
        layers = spatial.prepare_layers(geo)
        lon = np.array([139.5001, 139.5002])
        joined = spatial.join_segments(_segments(lon, np.array([35.5, 35.5])), layers, 25.0)
        _, _, geodesic = pyproj.Geod(ellps="WGS84").inv(np.full(2, 139.5), np.full(2, 35.5), lon, np.full(2, 35.5))
        assert np.allclose(joined[c.LINK_DISTANCE_M].to_numpy(), geodesic, atol=1e-4)

    def test_empty_layers_leave_segments_unmatched(self) -> None:
        empty = gpd.GeoDataFrame({c.FEATURE_ID: pd.Series([], dtype=object)}, geometry=gpd.GeoSeries([], crs="EPSG:4326"), crs="EPSG:4326")
        joined = spatial.join_segments(_segments(np.array([139.5]), np.array([35.5])), spatial.prepare_layers(empty), 25.0)
        assert not joined[c.MATCHED].iloc[0]
        assert _ids(joined[c.AREA_ID])[0] is None

    def test_other_crs_raises(self) -> None:
        geo = gpd.GeoDataFrame({c.FEATURE_ID: ["a"]}, geometry=[shapely.Point(0, 0)], crs="EPSG:3857")
        with pytest.raises(ValueError, match="EPSG:4326"):
            spatial.prepare_layers(geo)


class TestJoinedColumns:
    def test_columns_hold_picked_rows(self) -> None:
        """Each joined column contains the value of the picked area or link row, missing where none."""
        rng = np.random.default_rng(12)
        geo = _layer(rng)
        is_link = geo[c.FEATURE_ID].str.startswith("link-").to_numpy()
        geo[c.ROAD_CLASS] = np.where(is_link, rng.choice(np.array(["primary", "secondary", None], dtype=object), len(geo)), None)
        speeds = rng.choice(np.array([30.0, 50.0, np.nan, "unknown"], dtype=object), len(geo))
        geo[c.SPEED_LIMIT_KMH] = pd.Series(speeds, dtype=object)
        geo = geo.drop(columns=[c.GRADIENT_PCT])
        layers = spatial.prepare_layers(geo)
        lon, lat = _lonlat(rng.uniform(-100, 2100, 5_000), rng.uniform(-100, 2100, 5_000))

        joined = spatial.join_segments(_segments(lon, lat), layers, 25.0)
        area_pick = spatial.locate_areas(lon, lat, layers)
        link_pick, distance = spatial.nearest_links(lon, lat, layers, 25.0)

        def picked(frame: pd.DataFrame, column: str, pick: np.ndarray) -> list[object]:
            values = frame[column].astype(object).to_numpy()
            return [None if p < 0 or pd.isna(values[p]) else values[p] for p in pick]

        assert (link_pick >= 0).sum() > 500
        assert (link_pick < 0).sum() > 500
        assert list(_ids(joined[c.AREA_ID])) == picked(layers.areas, c.FEATURE_ID, area_pick)
        assert list(_ids(joined[c.AREA_TYPE])) == picked(layers.areas, c.AREA_TYPE, area_pick)
        assert list(_ids(joined[c.LINK_ID])) == picked(layers.links, c.FEATURE_ID, link_pick)
        assert list(_ids(joined[c.ROAD_CLASS])) == picked(layers.links, c.ROAD_CLASS, link_pick)
        speed = pd.to_numeric(layers.links[c.SPEED_LIMIT_KMH], errors="coerce").to_numpy(dtype=float)
        expected_speed = np.where(link_pick >= 0, speed[np.maximum(link_pick, 0)], np.nan)
        assert np.array_equal(joined[c.SPEED_LIMIT_KMH].to_numpy(), expected_speed, equal_nan=True)
        assert joined[c.LINK_GRADIENT_PCT].isna().all()
        assert np.array_equal(joined[c.LINK_DISTANCE_M].to_numpy(), distance, equal_nan=True)
        assert np.array_equal(joined[c.MATCHED].to_numpy(), link_pick >= 0)
        for column in (c.AREA_ID, c.AREA_TYPE, c.LINK_ID, c.ROAD_CLASS):
            assert isinstance(joined[column].dtype, pd.CategoricalDtype), column

    def test_editing_output_leaves_next_join_unchanged(self) -> None:
        """The joined columns share no memory with the tables the layers keep for the next piece."""
        rng = np.random.default_rng(13)
        layers = spatial.prepare_layers(_layer(rng))
        lon, lat = _lonlat(rng.uniform(-100, 2100, 2_000), rng.uniform(-100, 2100, 2_000))
        segments = _segments(lon, lat)
        first = spatial.join_segments(segments, layers, 25.0)
        expected = first.copy(deep=True)

        for column in (c.SPEED_LIMIT_KMH, c.LINK_GRADIENT_PCT, c.LINK_DISTANCE_M, c.LON_MID):
            first.loc[:, column] = -1.0
        for column in (c.AREA_ID, c.AREA_TYPE, c.LINK_ID, c.ROAD_CLASS):
            first.loc[:, column] = None
        second = spatial.join_segments(segments, layers, 25.0)

        pd.testing.assert_frame_equal(second, expected)
        assert np.array_equal(segments[c.LON_MID].to_numpy(), lon)


def test_large_polygon_prepared_exact() -> None:
    """A star of 40,000 vertices: locate_areas prepares it on the worker and agrees with plain GEOS."""
    angle = np.linspace(0, 2 * np.pi, 40_000, endpoint=False)
    radius = 700 + 250 * np.sin(angle * 37)
    lon, lat = _lonlat(1000 + radius * np.cos(angle), 1000 + radius * np.sin(angle))
    star = shapely.Polygon(np.c_[lon, lat])
    geo = gpd.GeoDataFrame(
        {c.FEATURE_ID: ["star"], c.ROAD_CLASS: [None], c.SPEED_LIMIT_KMH: [np.nan], c.GRADIENT_PCT: [np.nan],
         c.AREA_TYPE: ["urban"], c.SOURCE: ["test"]},
        geometry=[star], crs="EPSG:4326",
    )
    layers = spatial.prepare_layers(geo)
    rng = np.random.default_rng(3)
    px, py = _lonlat(rng.uniform(0, 2000, 5_000), rng.uniform(0, 2000, 5_000))
    # A copy made from WKB is a new, unprepared geometry: the reference uses no prepared index.
    expected = np.where(shapely.contains_xy(shapely.from_wkb(shapely.to_wkb(star)), px, py), 0, -1)

    assert not shapely.is_prepared(layers.areas.geometry.iloc[0])
    actual = spatial.locate_areas(px, py, layers)

    assert shapely.is_prepared(layers.areas.geometry.iloc[0])
    np.testing.assert_array_equal(actual, expected)
    assert 1_000 < (actual == 0).sum() < 4_000
