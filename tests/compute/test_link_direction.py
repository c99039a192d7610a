"""The gradient of a matched link is signed by the direction of travel along the link."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from compute import columns as c
from compute import segments, spatial

LON0, LAT0 = 139.70, 35.68
M_PER_DEG_LAT = 110_950.0
M_PER_DEG_LON = M_PER_DEG_LAT * np.cos(np.radians(LAT0))
T0 = pd.Timestamp("2026-12-01T00:00:00Z")


def _lonlat(x_m, y_m):
    return LON0 + np.asarray(x_m, dtype=float) / M_PER_DEG_LON, LAT0 + np.asarray(y_m, dtype=float) / M_PER_DEG_LAT


def _links(lines_m: list[list[tuple[float, float]]], gradients: list[float]) -> gpd.GeoDataFrame:
    geoms = [shapely.LineString(np.c_[_lonlat(*np.asarray(line).T)]) for line in lines_m]
    return gpd.GeoDataFrame(
        {
            c.FEATURE_ID: [f"L{i}" for i in range(len(geoms))],
            c.ROAD_CLASS: ["primary"] * len(geoms),
            c.SPEED_LIMIT_KMH: [50.0] * len(geoms),
            c.GRADIENT_PCT: gradients,
            c.AREA_TYPE: [None] * len(geoms),
        },
        geometry=geoms,
        crs="EPSG:4326",
    )


def _trips(paths_m: list[list[tuple[float, float]]]) -> pd.DataFrame:
    geoms = [shapely.LineString(np.c_[_lonlat(*np.asarray(path).T)]) for path in paths_m]
    return pd.DataFrame({
        c.TRIP_ID: [f"T{i}" for i in range(len(geoms))],
        c.VEHICLE_ID: ["V"] * len(geoms),
        c.GEOMETRY: geoms,
        c.TIMESTAMPS: [None] * len(geoms),
        c.START_TIME: [T0] * len(geoms),
        c.END_TIME: [T0 + pd.Timedelta(minutes=5)] * len(geoms),
        c.LOAD_KG: [np.nan] * len(geoms),
    })


def _joined_gradients(links: gpd.GeoDataFrame, paths_m: list[list[tuple[float, float]]]) -> pd.DataFrame:
    segs, _ = segments.build_segments(_trips(paths_m))
    layers = spatial.prepare_layers(links, link_max_distance_m=25.0)
    return spatial.join_segments(segs, layers, 25.0)


def test_driving_against_the_drawn_direction_flips_the_gradient() -> None:
    # L0 is drawn west to east and rises 4 %; L1 is drawn north to south and rises 3 %, with a
    # bend; L2 is a MultiLineString whose second part is drawn back to the west.
    links = _links([[(0, 0), (500, 0)], [(1000, 600), (1000, 300), (1050, 0)]], [4.0, 3.0])
    multi = shapely.MultiLineString([np.c_[_lonlat([0, 400], [1000, 1000])], np.c_[_lonlat([900, 500], [1000, 1000])]])
    links = pd.concat([links, gpd.GeoDataFrame(
        {c.FEATURE_ID: ["L2"], c.ROAD_CLASS: ["primary"], c.SPEED_LIMIT_KMH: [50.0], c.GRADIENT_PCT: [-2.0], c.AREA_TYPE: [None]},
        geometry=[multi], crs="EPSG:4326")], ignore_index=True)
    paths = [
        [(10, 3), (200, 3), (400, 2)],  # east along L0
        [(400, -2), (200, -3), (10, -3)],  # west along L0
        [(1002, 590), (1002, 400)],  # south along L1 (drawn direction)
        [(1002, 400), (1002, 590)],  # north along L1
        [(100, 1002), (300, 1002)],  # east along the first part of L2 (drawn direction)
        [(600, 1002), (800, 1002)],  # east along the second part of L2 (against its drawing)
    ]
    out = _joined_gradients(links, paths)
    by_trip = out.groupby(out[c.TRIP_ID].astype(str), observed=True)
    assert all(by_trip[c.MATCHED].all())
    got = by_trip[c.LINK_GRADIENT_PCT].agg(lambda s: sorted(set(s)))
    assert got.to_dict() == {"T0": [4.0], "T1": [-4.0], "T2": [3.0], "T3": [-3.0], "T4": [-2.0], "T5": [2.0]}


def test_straight_links_sign_by_position_change() -> None:
    """On straight links, the sign is the one of the change of position along the link."""
    rng = np.random.default_rng(8)
    n = 300
    start = rng.uniform(0, 3000, (n, 2)) + np.arange(n)[:, None] * [0, 4000]  # links far apart
    angle = rng.uniform(0, 2 * np.pi, n)
    end = start + 400 * np.c_[np.cos(angle), np.sin(angle)]
    gradient = rng.uniform(0.5, 8, n)
    links = _links([[tuple(a), tuple(b)] for a, b in zip(start, end, strict=True)], list(gradient))
    # Each trip runs along its link, offset sideways by up to 10 m, forwards or backwards, at an
    # angle to it of at most 60 degrees.
    forward = rng.random(n) < 0.5
    tilt = rng.uniform(-np.pi / 3, np.pi / 3, n)
    heading = angle + np.where(forward, 0.0, np.pi) + tilt
    middle = (start + end) / 2 + rng.uniform(-10, 10, (n, 2))
    half = 40 * np.c_[np.cos(heading), np.sin(heading)]
    paths = [[tuple(m - h), tuple(m + h)] for m, h in zip(middle, half, strict=True)]
    out = _joined_gradients(links, paths)
    assert out[c.MATCHED].all()
    trip = out[c.TRIP_ID].astype(str).str[1:].astype(int).to_numpy()
    assert np.array_equal(out[c.LINK_ID].astype(str).to_numpy(), np.array([f"L{i}" for i in trip]))
    line = shapely.linestrings(np.stack([np.c_[_lonlat(*start[trip].T)], np.c_[_lonlat(*end[trip].T)]], axis=1))
    a = shapely.points(np.c_[_lonlat(*(middle - half)[trip].T)])
    b = shapely.points(np.c_[_lonlat(*(middle + half)[trip].T)])
    along = shapely.line_locate_point(line, b) - shapely.line_locate_point(line, a)
    expected = np.where(along < 0, -gradient[trip], gradient[trip])
    np.testing.assert_array_equal(out[c.LINK_GRADIENT_PCT].to_numpy(), expected)
    assert (expected < 0).sum() > n // 4
    assert (expected > 0).sum() > n // 4


def test_no_direction_keeps_sign() -> None:
    links = _links([[(0, 0), (500, 0)]], [4.0])
    # A stationary segment (two equal vertices) has no direction: it keeps the link's sign.
    out = _joined_gradients(links, [[(100, 2), (100, 2), (60, 2)]])
    assert out[c.LINK_GRADIENT_PCT].tolist() == [4.0, -4.0]
    # A segments frame without the direction columns (built elsewhere) joins unsigned.
    segs, _ = segments.build_segments(_trips([[(300, 2), (100, 2)]]))
    layers = spatial.prepare_layers(links, link_max_distance_m=25.0)
    plain = spatial.join_segments(segs.drop(columns=[c.EAST_M, c.NORTH_M]), layers, 25.0)
    assert plain[c.LINK_GRADIENT_PCT].tolist() == [4.0]
