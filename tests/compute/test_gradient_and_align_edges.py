"""Hostile inputs for signed link gradients, the tachograph alignment loop and the not-nullable
intermediate columns.

Links and trips are drawn in metres east and north of a point in Tokyo and converted to degrees
with one scale, so "drawn west to east" and "driving north" are exact directions.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import shapely

from compute import columns as c
from compute import pipeline, segments, spatial, tachograph
from compute.emissions import estimate_trips
from compute.emissions.model import EmissionModel
from compute.storage import Store

LON0, LAT0 = 139.70, 35.68
M_PER_DEG_LAT = 110_950.0
M_PER_DEG_LON = M_PER_DEG_LAT * np.cos(np.radians(LAT0))
T0 = pd.Timestamp("2026-12-01T00:00:00Z")
RADIUS_M = 25.0


# -- builders ----------------------------------------------------------------------------------


def _lonlat(x_m: object, y_m: object) -> np.ndarray:
    return np.c_[LON0 + np.asarray(x_m, dtype=float) / M_PER_DEG_LON, LAT0 + np.asarray(y_m, dtype=float) / M_PER_DEG_LAT]


def _line(points_m: list[tuple[float, ...]]) -> shapely.LineString:
    """A LineString from ``(x, y)`` or ``(x, y, z)`` points in metres (z is kept in metres)."""
    points = np.asarray(points_m, dtype=float)
    coords = _lonlat(points[:, 0], points[:, 1])
    return shapely.LineString(np.c_[coords, points[:, 2]] if points.shape[1] == 3 else coords)


def _links(geoms: list[shapely.Geometry], gradients: list[float | None]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {c.FEATURE_ID: [f"L{i}" for i in range(len(geoms))], c.ROAD_CLASS: ["primary"] * len(geoms),
         c.SPEED_LIMIT_KMH: [50.0] * len(geoms), c.GRADIENT_PCT: gradients},
        geometry=geoms, crs="EPSG:4326",
    )


def _trips(paths: list[shapely.LineString], seconds_per_segment: float | None = None) -> pd.DataFrame:
    """One trip per path. With ``seconds_per_segment``, every vertex gets a timestamp."""
    timestamps: list[object] = []
    ends = []
    for path in paths:
        n = len(path.coords)
        if seconds_per_segment is None:
            timestamps.append(None)
            ends.append(T0 + pd.Timedelta(minutes=5))
        else:
            times = pd.DatetimeIndex([T0 + pd.Timedelta(seconds=seconds_per_segment * k) for k in range(n)])
            timestamps.append(times.tz_localize(None).to_numpy().astype("datetime64[ms]"))
            ends.append(times[-1])
    return pd.DataFrame({
        c.TRIP_ID: [f"T{i}" for i in range(len(paths))], c.VEHICLE_ID: ["V"] * len(paths), c.GEOMETRY: paths,
        c.TIMESTAMPS: timestamps, c.START_TIME: [T0] * len(paths), c.END_TIME: ends, c.LOAD_KG: [np.nan] * len(paths),
    })


def _joined(links: gpd.GeoDataFrame, paths: list[shapely.LineString]) -> pd.DataFrame:
    segs, _ = segments.build_segments(_trips(paths))
    return spatial.join_segments(segs, spatial.prepare_layers(links, link_max_distance_m=RADIUS_M), RADIUS_M)


def _gradients(links: gpd.GeoDataFrame, paths_m: list[list[tuple[float, float]]]) -> list[float]:
    """The signed gradient of the single segment of each two-point path."""
    out = _joined(links, [_line(path) for path in paths_m])
    assert len(out) == len(paths_m)
    return out[c.LINK_GRADIENT_PCT].tolist()


# -- signed link gradients -----------------------------------------------------------------------


class TestRepeatedVertices:
    """A repeated vertex is a zero-length edge without a direction: it must never decide the sign."""

    def test_repeated_first_vertex(self) -> None:
        links = _links([_line([(0, 0), (0, 0), (500, 0)])], [4.0])
        # Beyond the start, and beside it: the nearest point is the first vertex.
        got = _gradients(links, [[(5, 3), (-5, 3)], [(-2, 3), (-12, 3)], [(-12, 3), (-2, 3)], [(-5, 3), (5, 3)]])
        assert got == [-4.0, -4.0, 4.0, 4.0]

    def test_repeated_last_vertex(self) -> None:
        links = _links([_line([(0, 0), (500, 0), (500, 0)])], [4.0])
        rng = np.random.default_rng(3)
        x = 500 + rng.uniform(0.1, 15, 100)
        y = rng.uniform(-20, 20, 100)
        westward = [[(xi + 3, yi), (xi - 3, yi)] for xi, yi in zip(x, y, strict=True)]
        eastward = [[(xi - 3, yi), (xi + 3, yi)] for xi, yi in zip(x, y, strict=True)]
        assert _gradients(links, westward) == [-4.0] * 100
        assert _gradients(links, eastward) == [4.0] * 100

    def test_repeated_middle_vertex_at_a_bend(self) -> None:
        # East to (250, 0), then north. The bend's vertex is given three times.
        links = _links([_line([(0, 0), (250, 0), (250, 0), (250, 0), (250, 300)])], [3.0])
        got = _gradients(links, [[(262, -6), (258, -14)], [(265, -5), (255, -5)], [(258, -14), (262, -6)], [(255, -5), (265, -5)]])
        assert got == [-3.0, -3.0, 3.0, 3.0]

    def test_point_like_link_and_part_still_match(self) -> None:
        """A link or MultiLineString part whose vertices all coincide keeps its distance, and has
        no direction: a segment beside it keeps the gradient as given, either way."""
        point_like = _line([(0, 0), (0, 0)])
        multi = shapely.MultiLineString([_line([(1000, 0), (1000, 0)]), _line([(1400, 0), (1600, 0)])])
        links = _links([point_like, multi], [2.0, 5.0])
        out = _joined(links, [_line(p) for p in ([(-3, 4), (3, 4)], [(3, 4), (-3, 4)], [(997, 4), (1003, 4)], [(1003, 4), (997, 4)])])
        assert out[c.LINK_ID].astype(str).tolist() == ["L0", "L0", "L1", "L1"]
        assert out[c.LINK_GRADIENT_PCT].tolist() == [2.0, 2.0, 5.0, 5.0]
        np.testing.assert_allclose(out[c.LINK_DISTANCE_M].to_numpy(), 4.0, rtol=1e-3)


class TestDirectionEdgeCases:
    def test_parts_drawn_opposite_ways_and_hairpin(self) -> None:
        """Away from the point where they are equally far, the nearest part or leg gives the sign."""
        multi = shapely.MultiLineString([_line([(0, 0), (500, 0)]), _line([(500, 20), (0, 20)])])
        hairpin = _line([(0, 1000), (500, 1000), (500, 1020), (0, 1020)])
        links = _links([multi, hairpin], [4.0, 6.0])
        got = _gradients(links, [
            [(100, 4), (200, 4)], [(100, 16), (200, 16)], [(200, 16), (100, 16)],
            [(100, 1004), (200, 1004)], [(100, 1016), (200, 1016)], [(200, 1016), (100, 1016)],
        ])
        assert got == [4.0, -4.0, 4.0, 6.0, -6.0, 6.0]

    def test_equidistant_legs_sign_consistently(self) -> None:
        """Midway between legs drawn opposite ways, the sign is that of one leg, whatever the
        order of the segments or the other segments of the piece."""
        hairpin = _line([(0, 0), (500, 0), (500, 20), (0, 20)])
        links = _links([hairpin], [4.0])
        paths = [_line([(x, 10), (x + 50, 10)]) for x in range(0, 400, 40)]
        alone = _joined(links, paths)[c.LINK_GRADIENT_PCT].to_numpy()
        reversed_order = _joined(links, paths[::-1])[c.LINK_GRADIENT_PCT].to_numpy()[::-1]
        assert set(alone) <= {4.0, -4.0}
        np.testing.assert_array_equal(alone, reversed_order)

    def test_perpendicular_segment_keeps_the_sign(self) -> None:
        # y = 0 and x = 100 give exactly equal degrees, so the dot product is exactly 0.
        links = _links([_line([(0, 0), (500, 0)])], [4.0])
        assert _gradients(links, [[(100, -10), (100, 10)], [(100, 10), (100, -10)]]) == [4.0, 4.0]

    def test_missing_gradients_stay_missing(self) -> None:
        links = _links([_line([(0, 0), (500, 0)]), _line([(0, 1000), (500, 1000)]), _line([(0, 2000), (500, 2000)])],
                       [None, np.nan, 0.0])
        got = _gradients(links, [[(200, 3), (100, 3)], [(100, 3), (200, 3)], [(200, 1003), (100, 1003)], [(200, 2003), (100, 2003)]])
        assert np.isnan(got[:3]).all()
        assert got[3] == 0.0

    @pytest.mark.filterwarnings("ignore:invalid value encountered in linestrings:RuntimeWarning")
    def test_nan_vertex_leaves_neighbours_signed(self) -> None:
        links = _links([_line([(0, 0), (500, 0)])], [4.0])
        path = shapely.LineString(np.r_[_lonlat([400, 300], [3, 3]), [[np.nan, np.nan]], _lonlat([200, 100], [3, 3])])
        out = _joined(links, [path])
        got = out[c.LINK_GRADIENT_PCT].to_numpy()
        assert got[0] == -4.0
        assert got[3] == -4.0
        assert np.isnan(got[1:3]).all()
        assert not out[c.MATCHED].iloc[1:3].any()

    def test_long_segments_are_signed_by_travel(self) -> None:
        """Segments of 1 km or more, whose length pyproj measures again, along a 6 km link."""
        links = _links([_line([(0, 0), (6000, 0)])], [2.5])
        out = _joined(links, [_line([(500, 5), (2500, 5), (5500, 5)]), _line([(5500, -5), (2000, -5), (400, -5)])])
        assert (out[c.LENGTH_M] >= segments.LOCAL_LENGTH_MAX_M).all()
        assert out[c.LINK_GRADIENT_PCT].tolist() == [2.5, 2.5, -2.5, -2.5]

    def test_3d_link_ignores_its_z(self) -> None:
        flat = _links([_line([(0, 0), (300, 0), (500, 100)])], [3.0])
        falling = _links([_line([(0, 0, 80.0), (300, 0, 40.0), (500, 100, 10.0)])], [3.0])
        paths = [[(100, 3), (200, 3)], [(200, 3), (100, 3)], [(380, 45), (420, 65)], [(420, 65), (380, 45)]]
        assert _gradients(falling, paths) == _gradients(flat, paths) == [3.0, -3.0, 3.0, -3.0]


class TestAntimeridian:
    """The link grid is built in plain longitude (a known limit). These pin what that means for
    the sign, and mark the two wrong results it gives."""

    @staticmethod
    def _crossing_link() -> gpd.GeoDataFrame:
        # Drawn eastward across the antimeridian, 0.002 degrees (about 213 m) long.
        return gpd.GeoDataFrame({c.FEATURE_ID: ["L0"], c.GRADIENT_PCT: [3.0]},
                                geometry=[shapely.LineString([(179.999, -16.5), (-179.999, -16.5)])], crs="EPSG:4326")

    def test_direction_across_the_antimeridian(self) -> None:
        """Inside the link's unwrapped box the wrapped edge gives the right sign on both sides."""
        paths = [
            shapely.LineString([(179.99905, -16.50002), (179.99915, -16.50002)]),
            shapely.LineString([(179.99915, -16.50002), (179.99905, -16.50002)]),
            shapely.LineString([(-179.99915, -16.50002), (-179.99905, -16.50002)]),
            shapely.LineString([(-179.99905, -16.50002), (-179.99915, -16.50002)]),
        ]
        out = _joined(self._crossing_link(), paths)
        assert out[c.MATCHED].all()
        assert out[c.LINK_GRADIENT_PCT].tolist() == [3.0, -3.0, 3.0, -3.0]

    @pytest.mark.xfail(strict=True, reason=(
        "A segment's midpoint is the plain mean of its longitudes, so a step across the antimeridian "
        "has its midpoint near longitude 0 and is joined to the links there instead of at 180 degrees."))
    def test_segment_across_the_antimeridian_matches_its_link(self) -> None:
        out = _joined(self._crossing_link(), [shapely.LineString([(179.9999, -16.50002), (-179.9999, -16.50002)])])
        assert abs(out[c.LON_MID].iloc[0]) > 179.0
        assert out[c.LINK_GRADIENT_PCT].tolist() == [3.0]

    @pytest.mark.xfail(strict=True, reason=(
        "A link across the antimeridian is registered along its unwrapped line, which runs the other "
        "way round the globe, and for a point within 0.001 degrees of longitude 0 its two ends wrap "
        "to opposite sides, so the edge runs the long way round through the point and matches it."))
    def test_link_across_the_antimeridian_is_far_from_greenwich(self) -> None:
        out = _joined(self._crossing_link(), [shapely.LineString([(-0.0003, -16.50002), (0.0003, -16.50002)])])
        assert not out[c.MATCHED].any()


class TestPartitions:
    def test_join_independent_of_partitioning(self) -> None:
        """Split, shuffled or joined against a pickled copy of the layer (as sent to workers), every
        segment gets the same link, distance and signed gradient."""
        rng = np.random.default_rng(11)
        geoms: list[shapely.Geometry] = []
        for i in range(40):
            start = rng.uniform(0, 3000, 2)
            steps = rng.uniform(-150, 150, (3, 2))
            vertices = np.vstack([start, start + np.cumsum(steps, axis=0)])
            if i % 4 == 0:
                vertices = np.insert(vertices, 2, vertices[1], axis=0)  # a repeated vertex
            if i % 5 == 0:
                geoms.append(shapely.MultiLineString([_line([tuple(v) for v in vertices[:2]]), _line([tuple(v) for v in vertices[:1:-1]])]))
            else:
                geoms.append(_line([(*v, 10.0 * k) for k, v in enumerate(vertices)]))
        links = _links(geoms, list(rng.uniform(-6, 6, len(geoms))))
        paths = [_line([tuple(p) for p in rng.uniform(0, 3000, 2) + np.cumsum(rng.uniform(-40, 40, (8, 2)), axis=0)]) for _ in range(300)]
        segs, _ = segments.build_segments(_trips(paths))
        layers = spatial.prepare_layers(links, link_max_distance_m=RADIUS_M)
        whole = spatial.join_segments(segs, layers, RADIUS_M)
        assert whole[c.MATCHED].sum() > 100
        assert (whole[c.LINK_GRADIENT_PCT] < 0).sum() > 20
        assert (whole[c.LINK_GRADIENT_PCT] > 0).sum() > 20

        shipped = pickle.loads(pickle.dumps(layers))
        for n_pieces in (2, 7, 50):
            order = rng.permutation(len(segs))
            pieces = [spatial.join_segments(segs.iloc[part], shipped, RADIUS_M) for part in np.array_split(order, n_pieces)]
            again = pd.concat(pieces).sort_index()
            for name in (c.LINK_ID, c.LINK_DISTANCE_M, c.LINK_GRADIENT_PCT, c.MATCHED):
                pd.testing.assert_series_equal(again[name], whole[name], check_exact=True, obj=f"{name} in {n_pieces} pieces")


class TestRoundTripFuel:
    @pytest.mark.parametrize(("vehicle_class", "fuel_type"), [("heavy_truck", "diesel"), ("passenger", "gasoline")])
    def test_round_trip_between_its_legs(self, model: EmissionModel, vehicle_class: str, fuel_type: str) -> None:
        """Up a 5 % link and back down again uses less than twice the climb and more than twice the descent."""
        links = _links([_line([(0, 0), (2000, 0)])], [5.0])
        xs = list(np.arange(0.0, 1801.0, 100.0))
        up, down = _line([(x, 3) for x in xs]), _line([(x, 3) for x in xs[::-1]])
        round_trip = _line([(x, 3) for x in xs + xs[-2::-1]])
        segs, trips = segments.build_segments(_trips([up, down, round_trip], seconds_per_segment=10.0))
        segs = spatial.join_segments(segs, spatial.prepare_layers(links, link_max_distance_m=RADIUS_M), RADIUS_M)
        vehicles = pd.DataFrame({
            c.VEHICLE_ID: ["V"], c.VEHICLE_CLASS: [vehicle_class], c.FUEL_TYPE: [fuel_type], c.CATALOG_FE: [np.nan],
            c.TEST_CYCLE: [None], c.MAX_PAYLOAD_KG: [10_000.0 if vehicle_class == "heavy_truck" else np.nan],
            c.MODEL_YEAR: pd.array([2020], dtype="Int64"),
        })
        tacho = pd.DataFrame({
            c.TRIP_ID: pd.Series([], dtype=object), c.VEHICLE_ID: pd.Series([], dtype=object),
            c.TS: pd.Series([], dtype="datetime64[ms, UTC]"), c.SPEED_KMH: pd.Series([], dtype=float),
            c.ENGINE_RPM: pd.Series([], dtype=float), c.FUEL_ML: pd.Series([], dtype=float),
        })

        fuel = estimate_trips(segs, trips, vehicles, tacho, model).trips.set_index(c.TRIP_ID)[c.FUEL_L]

        assert segs.groupby(segs[c.TRIP_ID].astype(str))[c.LINK_GRADIENT_PCT].agg(lambda s: sorted(set(s))).to_dict() == {
            "T0": [5.0], "T1": [-5.0], "T2": [-5.0, 5.0]}
        assert fuel["T0"] > fuel["T1"]
        assert fuel["T2"] < 2 * fuel["T0"]
        assert fuel["T2"] > 2 * fuel["T1"]


# -- tachograph alignment --------------------------------------------------------------------------


def _brute_force(codes: np.ndarray, ts: np.ndarray, trip_codes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The as-of rule written out: the trip of the vehicle that started last at or before the
    record (the last such row on equal starts), if the record is not after its end."""
    out = np.full(len(ts), -1, dtype=np.int64)
    for i, (code, time) in enumerate(zip(codes, ts, strict=True)):
        best = -1
        for row in range(len(trip_codes)):
            if code >= 0 and trip_codes[row] == code and np.isfinite(starts[row]) and starts[row] <= time:
                if best < 0 or starts[row] >= starts[best]:
                    best = row
        if best >= 0 and time <= ends[best]:
            out[i] = best
    return out


class TestAssignTripsHostile:
    def test_small_days_follow_the_as_of_rule(self) -> None:
        """Exhaustive small cases with shared starts, NaN and records in and out of key order."""
        rng = np.random.default_rng(17)
        for _ in range(3000):
            n_trips, n_records = int(rng.integers(1, 6)), int(rng.integers(0, 10))
            trip_codes = rng.integers(-1, 3, n_trips)
            starts = rng.integers(0, 6, n_trips).astype(float)
            ends = starts + rng.integers(0, 4, n_trips)
            starts[rng.random(n_trips) < 0.1] = np.nan
            ends[rng.random(n_trips) < 0.1] = np.nan
            codes = rng.integers(-1, 4, n_records)
            ts = rng.integers(-1, 10, n_records).astype(float)
            ts[rng.random(n_records) < 0.1] = np.nan
            if rng.random() < 0.5:
                keep = np.lexsort((ts, codes))
                codes, ts = codes[keep], ts[keep]
            got = tachograph.assign_trips(codes, ts, trip_codes, starts, ends)
            np.testing.assert_array_equal(got, _brute_force(codes, ts, trip_codes, starts, ends))

    def test_start_and_end_are_inside(self) -> None:
        # Trip 0 [100, 200], trip 1 [200, 300] of the same vehicle: at 200 the later start wins.
        got = tachograph.assign_trips(np.zeros(6, np.int64), np.array([99.0, 100.0, 199.0, 200.0, 300.0, 301.0]),
                                      np.array([0, 0]), np.array([100.0, 200.0]), np.array([200.0, 300.0]))
        assert got.tolist() == [-1, 0, 0, 1, 1, -1]

    def test_vehicle_codes_up_to_the_key_limit(self) -> None:
        largest = tachograph.VEHICLE_CODE_MAX
        trip_codes = np.array([0, largest, largest - 1])
        starts, ends = np.array([100.0, 50.0, 0.0]), np.array([200.0, 300.0, 400.0])
        got = tachograph.assign_trips(np.array([largest, 0, largest - 1, largest]), np.array([150.0, 150.0, 150.0, 301.0]), trip_codes, starts, ends)
        assert got.tolist() == [1, 0, 2, -1]

    @pytest.mark.parametrize("code", [tachograph.VEHICLE_CODE_MAX + 1, 1 << 24, 1 << 40])
    def test_vehicle_code_beyond_the_key_is_rejected(self, code: int) -> None:
        # Code 2**24 shifted by 40 bits is 2**64, the key of vehicle 0: it used to align nothing.
        with pytest.raises(ValueError, match=rf"at most 8,388,607 .* got {code:,}"):
            tachograph.assign_trips(np.array([code]), np.array([150.0]), np.array([0, code]), np.array([100.0, 50.0]), np.array([200.0, 300.0]))

    def test_unsigned_code_beyond_int64_is_rejected(self) -> None:
        trip_codes = np.array([0, np.iinfo(np.uint64).max], dtype=np.uint64)
        with pytest.raises(ValueError, match="got 18,446,744,073,709,551,615"):
            tachograph.sort_trips(trip_codes, np.array([1.0, 2.0]))

    def test_record_codes_beyond_the_key_match_nothing(self) -> None:
        """Record codes no trip has, however large, never take another vehicle's trip."""
        codes = np.array([0, 1 << 24, 1 << 40, (1 << 63) - 1, 1, 1])
        got = tachograph.assign_trips(codes, np.full(6, 150.0), np.array([0, 1]), np.array([100.0, 120.0]), np.array([200.0, 200.0]))
        assert got.tolist() == [0, -1, -1, -1, 1, 1]
        unsigned = np.array([0, np.iinfo(np.uint64).max, 1], dtype=np.uint64)
        assert tachograph.assign_trips(unsigned, np.full(3, 150.0), np.array([0, 1]), np.array([100.0, 120.0]), np.array([200.0, 200.0])).tolist() == [0, -1, 1]

    @pytest.mark.parametrize(("code_type", "time_type"), [(np.int32, np.int64), (np.uint16, np.float32), (np.int8, np.uint64)])
    def test_narrow_and_unsigned_types(self, code_type: type, time_type: type) -> None:
        codes = np.array([0, 1, 1, 2], dtype=code_type)
        ts = np.array([150, 150, 260, 150], dtype=time_type)
        got = tachograph.assign_trips(codes, ts, np.array([0, 1], dtype=code_type), np.array([100, 120], dtype=time_type),
                                      np.array([200, 250], dtype=time_type))
        assert got.tolist() == [0, 1, -1, -1]

    def test_strided_and_read_only_inputs(self) -> None:
        """Views with strides and read-only arrays (numba compiles each writeable flag apart) give
        the rows of plain arrays, also through read-only sorted trip keys."""
        rng = np.random.default_rng(2)
        n_trips, n_records = 50, 2000
        trip_codes = rng.integers(0, 10, n_trips)
        starts = rng.integers(0, 10_000, n_trips).astype(float)
        ends = starts + rng.integers(0, 2_000, n_trips)
        codes = rng.integers(-1, 11, 2 * n_records)
        ts = rng.uniform(-100, 12_000, 2 * n_records)
        expected = tachograph.assign_trips(codes[::2].copy(), ts[::2].copy(), trip_codes, starts, ends)
        assert (expected >= 0).sum() > 100

        strided = tachograph.assign_trips(codes[::2], ts[::2], trip_codes, starts, ends)
        frozen = [array.copy() for array in (codes[::2], ts[::2], trip_codes, starts, ends)]
        for array in frozen:
            array.flags.writeable = False
        keys = tachograph.sort_trips(frozen[2], frozen[3])
        keys.rows.flags.writeable = False
        keys.keys.flags.writeable = False
        read_only = tachograph.assign_trips(*frozen, keys)

        np.testing.assert_array_equal(strided, expected)
        np.testing.assert_array_equal(read_only, expected)

    def test_trips_without_usable_keys_take_no_records(self) -> None:
        codes, ts = np.array([0, 1, -1]), np.array([1.0, 2.0, 3.0])
        assert tachograph.assign_trips(codes, ts, np.array([-1, -1]), np.array([0.0, 0.0]), np.array([9.0, 9.0])).tolist() == [-1, -1, -1]
        assert tachograph.assign_trips(codes, ts, np.array([0, 1]), np.array([np.nan, np.nan]), np.array([9.0, 9.0])).tolist() == [-1, -1, -1]
        empty = tachograph.sort_trips(np.zeros(0, np.int64), np.zeros(0))
        assert tachograph.assign_trips(codes, ts, np.array([0]), np.array([0.0]), np.array([9.0]), empty).tolist() == [-1, -1, -1]


# -- not-nullable intermediate columns -------------------------------------------------------------


def _parquet_round_trip(table: pa.Table) -> pa.Table:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    buffer.seek(0)
    return pq.read_table(buffer)


class TestRequiredFields:
    def test_empty_piece_intermediate_is_written(self, tmp_path: Path) -> None:
        """An empty piece's trip ids are an empty dictionary of Arrow's null type, which Parquet
        cannot store as not nullable."""
        links = _links([_line([(0, 0), (500, 0)])], [1.0])
        joined = spatial.join_segments(segments.empty_segments(), spatial.prepare_layers(links), RADIUS_M)
        table = pipeline._segment_intermediate(joined)

        pipeline.write_table(Store(str(tmp_path)), "segments/piece-00000.parquet", table, md5=False, **pipeline.SEGMENT_WRITE_OPTIONS)

        again = pipeline.read_table(Store(str(tmp_path)), "segments/piece-00000.parquet")
        assert again.num_rows == 0
        assert not again.schema.field(c.LENGTH_M).nullable
        assert again.schema.field(c.TRIP_ID).nullable

    @pytest.mark.parametrize("values", [
        pa.nulls(0), pa.nulls(3), pa.DictionaryArray.from_arrays(pa.array([], pa.int8()), pa.array([], pa.null())),
    ])
    def test_null_type_stays_nullable(self, values: pa.Array) -> None:
        table = pipeline.with_required_fields(pa.table({"x": values, "y": pa.array([1] * len(values), pa.int64())}), ["x", "y"])
        assert table.schema.field("x").nullable
        assert not table.schema.field("y").nullable
        assert _parquet_round_trip(table).num_rows == len(values)

    def test_required_columns_with_nulls_stay_nullable(self) -> None:
        table = pa.table({
            "chunked": pa.chunked_array([pa.array([1, 2]), pa.array([3])]),
            "with null": pa.chunked_array([pa.array([1.0, 2.0]), pa.array([None], pa.float64())]),
            "nan": pa.array([np.nan, 1.0, 2.0]),
        }).replace_schema_metadata({"lmco2": "kept"})
        marked = pipeline.with_required_fields(table, ["chunked", "with null", "nan", "absent"])
        assert [f.nullable for f in marked.schema] == [False, True, False]
        assert marked.schema.metadata == {b"lmco2": b"kept"}
        again = _parquet_round_trip(marked)
        assert again.schema.equals(marked.schema)
        pd.testing.assert_frame_equal(again.to_pandas(), marked.to_pandas())


def _aligned_file(store: Store, name: str, trip_rows: list[int | None], ts_ms: list[int | None]) -> pipeline.TachoRowGroups:
    """Write an aligned tachograph file as ``align_tacho_piece`` does, in one row group."""
    table = pa.table({
        "trip_row": pa.array(trip_rows, pa.int32()),
        c.TS: pa.array(ts_ms, pa.timestamp("ms", tz="UTC")),
        c.SPEED_KMH: pa.array([10.0] * len(ts_ms)),
        c.FUEL_ML: pa.array([1.0] * len(ts_ms)),
    })
    pipeline.write_table(store, f"{pipeline.TACHO_ALIGNED}/{name}", pipeline.with_required_fields(table, ("trip_row", c.TS)), md5=False)
    return pipeline.TachoRowGroups(f"{pipeline.TACHO_ALIGNED}/{name}", (0,))


class TestMixedNullability:
    """Files of one folder where a required column is not nullable in one and contains a null in another."""

    @pytest.fixture
    def folder(self, tmp_path: Path) -> tuple[Store, list[pipeline.TachoRowGroups]]:
        store = Store(str(tmp_path))
        t = int(T0.value // 1_000_000)
        required = _aligned_file(store, "a.parquet", [0, 1], [t, t + 1_000])
        nullable = _aligned_file(store, "b.parquet", [1, 0], [t + 2_000, None])
        return store, [required, nullable]

    @pytest.mark.parametrize("order", [(0, 1), (1, 0)])
    def test_aligned_reader_concatenates_both(self, folder: tuple[Store, list[pipeline.TachoRowGroups]], order: tuple[int, int]) -> None:
        store, parts = folder
        trips = pd.DataFrame({c.TRIP_ID: ["T0", "T1"]})
        frame = pipeline._read_aligned_tacho(store, [parts[i] for i in order], trips)
        assert len(frame) == 4
        assert frame[c.TS].isna().sum() == 1
        assert sorted(frame[c.TRIP_ID].astype(str)) == ["T0", "T0", "T1", "T1"]

    def test_dataset_pandas_and_duckdb_read_every_value(self, folder: tuple[Store, list[pipeline.TachoRowGroups]]) -> None:
        store, _ = folder
        path = store.path(pipeline.TACHO_ALIGNED)
        assert not pq.read_schema(f"{path}/a.parquet").field(c.TS).nullable

        table = ds.dataset(path, format="parquet").to_table()
        assert table.num_rows == 4
        assert table.column(c.TS).null_count == 1
        assert table.to_pandas()[c.TS].isna().sum() == 1

        frame = pd.read_parquet(path)
        assert len(frame) == 4
        assert frame[c.TS].isna().sum() == 1

        rows, times, trip_rows = duckdb.sql(f"select count(*), count(ts), count(trip_row) from read_parquet('{path}/*.parquet')").fetchone()
        assert (rows, times, trip_rows) == (4, 3, 4)

        permissive = pipeline.read_folder(store, pipeline.TACHO_ALIGNED)
        assert permissive is not None
        assert permissive.schema.field(c.TS).nullable
        assert permissive.column(c.TS).null_count == 1
