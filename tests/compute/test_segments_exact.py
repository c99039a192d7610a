"""compute.segments returns the same bits as the implementation its single-pass loops replaced.

``_previous_build`` below is that implementation. It decoded WKB with a numpy byte mask, and its
geometry loop returned per-segment vertex and trip arrays for a kinematics loop over them. It
flattened timestamps with ``ListArray.flatten`` and built the frame from a dict of columns.
Every column of both frames is compared bit for bit (float bit patterns, NaT integers,
categorical codes, code dtypes and categories), on tables built to reach each branch of the new
code.
"""

from __future__ import annotations

from types import SimpleNamespace

import numba
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import shapely

from compute import columns as c
from compute import segments
from tests.reference_times import spread_times

T0_MS = 1_796_000_000_000
_RADIANS = np.pi / 180.0
_WGS84_A_M = 6_378_137.0
_WGS84_F = 1.0 / 298.257223563
_WGS84_E2 = _WGS84_F * (2.0 - _WGS84_F)
_UTC_MS = pa.timestamp("ms", tz="UTC")

# shapely warns when it builds the hostile trips, because they have NaN coordinates on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


# -- the previous implementation -----------------------------------------------------------


@numba.njit(error_model="numpy")
def _previous_geometry(coords: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n_segments = 0
    for t in range(counts.shape[0]):
        if counts[t] > 1:
            n_segments += counts[t] - 1
    first = np.empty(n_segments, dtype=np.int64)
    trip = np.empty(n_segments, dtype=np.int64)
    index = np.empty(n_segments, dtype=np.int32)
    length = np.empty(n_segments, dtype=np.float64)
    s = 0
    vertex = 0
    for t in range(counts.shape[0]):
        for k in range(counts[t] - 1):
            i = vertex + k
            lon1 = coords[i, 0]
            lat1 = coords[i, 1]
            lon2 = coords[i + 1, 0]
            lat2 = coords[i + 1, 1]
            lat_mid = (0.5 * (lat1 + lat2)) * _RADIANS
            sin_mid = np.sin(lat_mid)
            w = np.sqrt(1.0 - _WGS84_E2 * sin_mid * sin_mid)
            meridian_m = _WGS84_A_M * (1.0 - _WGS84_E2) / (w * w * w)
            prime_vertical_m = _WGS84_A_M / w
            dlon = ((lon2 - lon1 + 180.0) % 360.0 - 180.0) * _RADIANS
            length[s] = np.hypot(prime_vertical_m * np.cos(lat_mid) * dlon, meridian_m * ((lat2 - lat1) * _RADIANS))
            first[s] = i
            trip[s] = t
            index[s] = k
            s += 1
        vertex += counts[t]
    return first, trip, index, length


@numba.njit(error_model="numpy")
def _previous_kinematics(
    coords: np.ndarray, vertex_ms: np.ndarray, first: np.ndarray, seg_index: np.ndarray, length_m: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = first.shape[0]
    start_ms = np.empty(n, dtype=np.float64)
    duration_s = np.empty(n, dtype=np.float64)
    speed_kmh = np.empty(n, dtype=np.float64)
    accel = np.zeros(n, dtype=np.float64)
    grade_pct = np.empty(n, dtype=np.float64)
    lon_mid = np.empty(n, dtype=np.float64)
    lat_mid = np.empty(n, dtype=np.float64)

    previous_speed = np.nan
    previous_duration = np.nan
    for s in range(n):
        a = first[s]
        b = a + 1
        start = vertex_ms[a]
        duration = (vertex_ms[b] - start) / 1000.0
        length = length_m[s]
        speed = length / duration if duration > 0 else np.nan
        if s > 0 and seg_index[s] > 0:
            dv = speed - previous_speed
            dt = 0.5 * (duration + previous_duration)
            if dt > 0 and np.isfinite(dv):
                accel[s] = dv / dt
        start_ms[s] = start
        duration_s[s] = duration
        speed_kmh[s] = speed * 3.6
        grade_pct[s] = 100.0 * (coords[b, 2] - coords[a, 2]) / length if length > 0.5 else np.nan
        lon_mid[s] = (coords[a, 0] + coords[b, 0]) / 2.0
        lat_mid[s] = (coords[a, 1] + coords[b, 1]) / 2.0
        previous_speed = speed
        previous_duration = duration
    return start_ms, duration_s, speed_kmh, accel, grade_pct, lon_mid, lat_mid


@numba.njit(error_model="numpy")
def _previous_spread_times(
    counts: np.ndarray, length_m: np.ndarray, start_ms: np.ndarray, end_ms: np.ndarray, missing: np.ndarray, vertex_ms: np.ndarray,
) -> None:
    vertex = 0
    segment = 0
    for t in range(counts.shape[0]):
        n_vertices = counts[t]
        n_segments = n_vertices - 1 if n_vertices > 1 else 0
        if missing[t]:
            total = 0.0
            for j in range(n_segments):
                total += length_m[segment + j]
            along = 0.0
            for k in range(n_vertices):
                if k > 0:
                    along += length_m[segment + k - 1]
                fraction = along / total if total > 0 else 0.0
                vertex_ms[vertex + k] = start_ms[t] + fraction * (end_ms[t] - start_ms[t])
        vertex += n_vertices
        segment += n_segments


def _previous_decode(geometry: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    offset_type = np.int64 if pa.types.is_large_binary(geometry.type) else np.int32
    offsets = np.frombuffer(geometry.buffers()[1], dtype=offset_type)[geometry.offset: geometry.offset + len(geometry) + 1].astype(np.int64)
    data = np.frombuffer(geometry.buffers()[2], dtype=np.uint8)
    start = offsets[:-1]
    fields = data[start[:, None] + np.arange(1, 9)].copy().view("<u4")
    counts = fields[:, 1].astype(np.int64)
    width = 3 if np.isin(fields[0, 0], segments._WKB_LINESTRING_3D) else 2
    keep = np.zeros(len(data), dtype=bool)
    keep[start[0]: int(offsets[-1])] = True
    keep[(start[:, None] + np.arange(9)).ravel()] = False
    flat = data[keep].view("<f8").reshape(-1, width)
    coords = np.full((len(flat), 3), np.nan)
    coords[:, :width] = flat
    return coords, counts


def _previous_timestamps(timestamps: pa.Array | None, n_trips: int) -> tuple[np.ndarray | None, np.ndarray]:
    if timestamps is None or len(timestamps) == 0 or timestamps.null_count == len(timestamps):
        return None, np.zeros(n_trips, dtype=bool)
    present = timestamps.is_valid().to_numpy(zero_copy_only=False)
    epoch_ms = pc.cast(timestamps.flatten(), pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64)
    return epoch_ms, present


def _previous_to_timestamps(epoch_ms: np.ndarray) -> pd.DatetimeIndex:
    values = np.full(len(epoch_ms), np.datetime64("NaT"), dtype="datetime64[ms]")
    finite = np.isfinite(epoch_ms)
    values[finite] = np.floor(epoch_ms[finite]).astype(np.int64).astype("datetime64[ms]")
    return pd.DatetimeIndex(values).tz_localize("UTC")


def _previous_categorical(values: np.ndarray, positions: np.ndarray) -> pd.Categorical:
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return pd.Categorical.from_codes(codes[positions], categories=pd.Index(uniques, dtype=object))


def _previous_build(table: pa.Table) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The previous ``build_segments_from_arrow`` for little-endian WKB LineStrings of one dimension."""
    geometry = table.column(c.GEOMETRY).combine_chunks()
    coords, counts = _previous_decode(geometry)
    timestamps = table.column(c.TIMESTAMPS).combine_chunks() if c.TIMESTAMPS in table.column_names else None
    given_ms, has_times = _previous_timestamps(timestamps, len(counts))
    trip_ids = table.column(c.TRIP_ID).to_numpy(zero_copy_only=False).astype(object)
    vehicle_ids = table.column(c.VEHICLE_ID).to_numpy(zero_copy_only=False).astype(object)
    start_ms = segments._arrow_epoch_ms(table.column(c.START_TIME))
    end_ms = segments._arrow_epoch_ms(table.column(c.END_TIME))
    load = table.column(c.LOAD_KG).cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)

    first_vertex = np.cumsum(counts) - counts
    a, trip_of_segment, seg_index, length_m = _previous_geometry(coords, counts)
    far = ~(length_m < segments.LOCAL_LENGTH_MAX_M)
    if far.any():
        b = a[far] + 1
        _, _, exact = segments._GEOD.inv(coords[a[far], 0], coords[a[far], 1], coords[b, 0], coords[b, 1])
        length_m[far] = np.abs(np.asarray(exact, dtype=np.float64))

    if given_ms is not None and has_times.all():
        vertex_ms = given_ms.astype(np.float64)
    else:
        owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        vertex_ms = np.empty(int(counts.sum()), dtype=np.float64)
        if given_ms is not None:
            vertex_ms[has_times[owner]] = given_ms
        _previous_spread_times(counts, length_m, start_ms, end_ms, ~has_times, vertex_ms)
    vertex_ms = spread_times(vertex_ms, counts, length_m, has_times)

    start, duration_s, speed_kmh, accel, grade_pct, lon_mid, lat_mid = _previous_kinematics(coords, vertex_ms, a, seg_index, length_m)
    segs = pd.DataFrame({
        c.TRIP_ID: _previous_categorical(trip_ids, trip_of_segment),
        c.VEHICLE_ID: _previous_categorical(vehicle_ids, trip_of_segment),
        c.SEG_INDEX: seg_index,
        c.T_START: _previous_to_timestamps(start),
        c.DURATION_S: duration_s,
        c.LENGTH_M: length_m,
        c.SPEED_KMH: speed_kmh,
        c.ACCEL_M_S2: accel,
        c.GRADE_PCT: grade_pct,
        c.LON_MID: lon_mid,
        c.LAT_MID: lat_mid,
    })
    # The trip frame helper did not change. It reads these attributes only.
    v = SimpleNamespace(trip_ids=trip_ids, vehicle_ids=vehicle_ids, load_kg=load, counts=counts, has_times=has_times)
    trips = segments._trip_frame(v, vertex_ms[first_vertex], vertex_ms[first_vertex + counts - 1])
    return segs, trips


# -- comparison ----------------------------------------------------------------------------


def _assert_same_bits(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == list(expected.columns)
    assert type(got.index) is type(expected.index)
    assert got.index.equals(expected.index)
    for name in expected.columns:
        left, right = got[name], expected[name]
        assert str(left.dtype) == str(right.dtype), name
        if isinstance(right.dtype, pd.CategoricalDtype):
            assert left.cat.categories.equals(right.cat.categories), name
            assert left.cat.categories.dtype == right.cat.categories.dtype, name
            assert left.cat.codes.dtype == right.cat.codes.dtype, name
            assert np.array_equal(left.cat.codes.to_numpy(), right.cat.codes.to_numpy()), name
        elif isinstance(right.dtype, pd.DatetimeTZDtype):
            assert np.array_equal(left.array.asi8, right.array.asi8), name
        elif right.dtype == np.float64:
            assert np.array_equal(left.to_numpy().view(np.int64), right.to_numpy().view(np.int64)), name
        else:
            assert left.equals(right), name


def _assert_same_as_previous(table: pa.Table) -> tuple[pd.DataFrame, pd.DataFrame]:
    segs, trips = segments.build_segments_from_arrow(table)
    expected_segs, expected_trips = _previous_build(table)
    # One change on purpose: a trip without vertices keeps its given start and end. The previous
    # code read the vertex times of its neighbours there, or indexed past the last vertex.
    empty = (expected_trips[c.N_VERTICES] == 0).to_numpy()
    if empty.any():
        for name in (c.START_TIME, c.END_TIME):
            given_times = pd.Series(table.column(name).to_pandas().to_numpy()[empty]).astype(expected_trips[name].dtype)
            expected_trips.loc[empty, name] = given_times.to_numpy()
    # The direction columns are new: the previous code had none. They are checked on their own.
    # The standstill rule is off by default, so no segment is marked.
    assert not segs[c.STANDSTILL].any()
    _assert_same_bits(segs.drop(columns=[c.EAST_M, c.NORTH_M, c.STANDSTILL]), expected_segs)
    _assert_same_bits(trips, expected_trips)
    _assert_direction_legs(segs, table)
    return segs, trips


def _assert_direction_legs(segs: pd.DataFrame, table: pa.Table) -> None:
    """East and north are the legs of the local length, with the sign of the coordinate steps."""
    east, north = segs[c.EAST_M].to_numpy(), segs[c.NORTH_M].to_numpy()
    length = segs[c.LENGTH_M].to_numpy()
    local = length < segments.LOCAL_LENGTH_MAX_M
    assert np.array_equal(np.hypot(east, north)[local].view(np.int64), length[local].view(np.int64))
    coords, counts = _previous_decode(table.column(c.GEOMETRY).combine_chunks())
    starts = np.cumsum(counts) - counts
    first = np.concatenate([start + np.arange(max(n - 1, 0)) for start, n in zip(starts, counts, strict=True)]).astype(np.int64) if len(counts) else np.zeros(0, np.int64)
    step_lon = (coords[first + 1, 0] - coords[first, 0] + 180.0) % 360.0 - 180.0
    step_lat = coords[first + 1, 1] - coords[first, 1]
    # Where the midpoint latitude is a valid one (cos > 0), the legs have the signs of the steps.
    valid = np.abs(segs[c.LAT_MID].to_numpy()) < 90.0
    assert np.array_equal(np.sign(east[valid]), np.sign(step_lon[valid]), equal_nan=True)
    assert np.array_equal(np.sign(north[valid]), np.sign(step_lat[valid]), equal_nan=True)


# -- tables ------------------------------------------------------------------------------------


def _hostile_table(rng: np.random.Generator, n_trips: int, *, with_z: bool) -> pa.Table:
    """Random trips with the cases the loops branch on (``n_trips`` >= 2).

    Trip T0 steps across the antimeridian and back, then by -179.9998, +180, -180, -180 and +360
    degrees of longitude. Trip T1 has a zero-length segment, a jump over 1 km and a NaN latitude.
    Trip T2 takes steps of about 180 degrees of longitude 5 m from the North Pole, which stay
    under 1 km, so the local length of a step across the antimeridian is kept. Segments
    of 0 s occur at random. About 30 % of the trips, the last one included, have a null timestamp
    list with values behind it. The first of them also has a null start time. T1 has a null
    vehicle id.
    """
    counts = rng.integers(2, 40, n_trips)
    counts[:3] = (8, 40, 4)
    n = int(counts.sum())
    lon = np.repeat(rng.uniform(-179.9, 179.9, n_trips), counts) + np.cumsum(rng.normal(0, 2e-4, n))
    lat = np.repeat(rng.uniform(-70, 70, n_trips), counts) + np.cumsum(rng.normal(0, 2e-4, n))
    lon = np.where(np.abs(lon) > 180.0, (lon + 180.0) % 360.0 - 180.0, lon)
    lon[:8] = (179.9999, -179.9999, 179.9998, 0.0, 180.0, 0.0, -180.0, 180.0)
    lat[:8] = 35.0
    lon[9], lat[9] = lon[8], lat[8]
    lon[48:52] = (179.9, -0.5, 179.8, 0.0)
    lat[48:52] = 89.99995
    lon[20] += 0.5
    lat[30] = np.nan
    z = rng.uniform(0, 30, n)
    z[40] = np.nan
    ms = T0_MS + np.cumsum(rng.choice([0, 1_000, 1_000, 2_000], n)).astype(np.int64)

    offsets = np.r_[0, np.cumsum(counts)]
    coords = np.column_stack((lon, lat, z) if with_z else (lon, lat))
    lines = [shapely.LineString(coords[lo:hi]) for lo, hi in zip(offsets[:-1], offsets[1:], strict=True)]
    wkb = shapely.to_wkb(np.array(lines, dtype=object), include_srid=False, output_dimension=3 if with_z else 2)

    untimed = rng.random(n_trips) < 0.3
    untimed[0] = False
    untimed[-1] = True
    null_start = np.arange(n_trips) == int(np.flatnonzero(untimed)[0])
    vehicle_ids: list[str | None] = [f"V{i % 7}" for i in range(n_trips)]
    vehicle_ids[1] = None
    return pa.table({
        c.TRIP_ID: [f"T{i}" for i in range(n_trips)],
        c.VEHICLE_ID: pa.array(vehicle_ids, pa.string()),
        c.GEOMETRY: pa.array(wkb, pa.binary()),
        c.TIMESTAMPS: pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(ms, _UTC_MS), mask=pa.array(untimed)),
        c.START_TIME: pa.array(ms[offsets[:-1]], _UTC_MS, mask=null_start),
        c.END_TIME: pa.array(ms[offsets[1:] - 1] + 5_000, _UTC_MS),
        c.LOAD_KG: pa.array(rng.uniform(0, 1_000, n_trips)),
    })


class TestSameBitsAsPrevious:
    @pytest.mark.parametrize("n_trips", [3, 4, 400, 401])
    @pytest.mark.parametrize("with_z", [False, True])
    def test_hostile_trips(self, n_trips: int, with_z: bool) -> None:
        table = _hostile_table(np.random.default_rng(n_trips), n_trips, with_z=with_z)
        segs, trips = _assert_same_as_previous(table)
        assert len(segs) == int((trips[c.N_VERTICES] - 1).sum())
        assert segs[c.GRADE_PCT].notna().any() == with_z

    def test_branches_reached(self) -> None:
        table = _hostile_table(np.random.default_rng(401), 401, with_z=True)
        segs, trips = _assert_same_as_previous(table)
        assert (segs[c.LENGTH_M] > segments.LOCAL_LENGTH_MAX_M).any()
        assert segs[c.LENGTH_M].isna().any()
        assert (segs[c.DURATION_S] == 0).any()
        assert segs[c.T_START].isna().any()  # the untimed trip with a null start time
        assert (trips[c.TIME_SOURCE] == "interpolated").any()
        assert segs[c.VEHICLE_ID].isna().any()
        crossing = segs[segs[c.TRIP_ID] == "T0"][c.LENGTH_M].to_numpy()
        assert crossing[0] < 50.0  # 0.0002 degrees across the antimeridian, not 360 degrees
        assert crossing[-1] == 0.0  # +360 degrees is the same place
        polar = segs[segs[c.TRIP_ID] == "T2"][c.LENGTH_M]
        assert polar.between(1.0, segments.LOCAL_LENGTH_MAX_M).all()

    def test_nan_length_without_far_segments(self) -> None:
        line = np.array([139.7, 35.6, 139.7001, np.nan, 139.7002, 35.6002]).tobytes()
        table = pa.table({
            c.TRIP_ID: ["A"], c.VEHICLE_ID: ["V"],
            c.GEOMETRY: pa.array([b"\x01\x02\x00\x00\x00\x03\x00\x00\x00" + line], pa.binary()),
            c.TIMESTAMPS: pa.array([[T0_MS, T0_MS + 1_000, T0_MS + 2_000]], pa.list_(_UTC_MS)),
            c.START_TIME: pa.array([T0_MS], _UTC_MS), c.END_TIME: pa.array([T0_MS + 2_000], _UTC_MS), c.LOAD_KG: [1.0],
        })
        segs, _ = _assert_same_as_previous(table)
        assert segs[c.LENGTH_M].isna().all()

    def test_sliced_table(self) -> None:
        table = _hostile_table(np.random.default_rng(5), 60, with_z=False).slice(7, 40)
        assert table.column(c.GEOMETRY).chunk(0).offset == 7
        _assert_same_as_previous(table)

    def test_several_chunks(self) -> None:
        rng = np.random.default_rng(6)
        first = _hostile_table(rng, 30, with_z=True)
        second = _hostile_table(rng, 31, with_z=True)
        second = second.set_column(0, c.TRIP_ID, pa.array([f"U{i}" for i in range(31)]))
        table = pa.concat_tables([first, second])
        assert table.column(c.GEOMETRY).num_chunks == 2
        _assert_same_as_previous(table)

    def test_large_binary_and_large_list(self) -> None:
        table = _hostile_table(np.random.default_rng(8), 50, with_z=False)
        schema = table.schema.set(table.schema.get_field_index(c.GEOMETRY), pa.field(c.GEOMETRY, pa.large_binary()))
        schema = schema.set(schema.get_field_index(c.TIMESTAMPS), pa.field(c.TIMESTAMPS, pa.large_list(_UTC_MS)))
        _assert_same_as_previous(table.cast(schema))

    def test_null_timestamp_inside_a_list(self) -> None:
        table = _hostile_table(np.random.default_rng(9), 20, with_z=False)
        column = table.column(c.TIMESTAMPS).combine_chunks()
        values = pc.cast(column.values, pa.int64()).to_numpy()
        third_value_null = pa.array(values, _UTC_MS, mask=np.arange(len(values)) == 2)
        with_null = pa.ListArray.from_arrays(column.offsets, third_value_null, mask=column.is_null())
        table = table.set_column(table.column_names.index(c.TIMESTAMPS), c.TIMESTAMPS, with_null)
        segs, _ = _assert_same_as_previous(table)
        assert pd.isna(segs[c.T_START].iloc[2])  # T0 starts its third segment at the null timestamp
        assert np.isnan(segs[c.DURATION_S].iloc[1])

    def test_single_vertex_and_empty_trips(self) -> None:
        lines = [
            shapely.LineString([(139.7, 35.6), (139.701, 35.6)]),
            shapely.LineString(),
            shapely.Point(139.7, 35.6),
            shapely.LineString([(139.7, 35.6), (139.7, 35.601), (139.702, 35.601)]),
        ]
        wkb = shapely.to_wkb(np.array(lines, dtype=object), include_srid=False)
        # shapely does not build a LineString of one vertex, so its WKB replaces the point's.
        wkb[2] = b"\x01\x02\x00\x00\x00\x01\x00\x00\x00" + np.array([139.7, 35.6], dtype="<f8").tobytes()
        ms = [[T0_MS, T0_MS + 1_000], [], None, [T0_MS, T0_MS + 3_000, T0_MS + 4_000]]
        table = pa.table({
            c.TRIP_ID: ["A", "B", "C", "D"], c.VEHICLE_ID: ["V", "V", "W", "W"],
            c.GEOMETRY: pa.array(wkb, pa.binary()), c.TIMESTAMPS: pa.array(ms, pa.list_(_UTC_MS)),
            c.START_TIME: pa.array([T0_MS] * 4, _UTC_MS), c.END_TIME: pa.array([T0_MS + 4_000] * 4, _UTC_MS),
            c.LOAD_KG: [1.0, 2.0, 3.0, 4.0],
        })
        segs, trips = _assert_same_as_previous(table)
        assert list(segs[c.TRIP_ID]) == ["A", "D", "D"]
        assert list(trips[c.N_VERTICES]) == [2, 0, 1, 3]

    def test_frame_entry_point_same_bits(self) -> None:
        table = _hostile_table(np.random.default_rng(12), 80, with_z=False)
        frame = table.to_pandas(ignore_metadata=True)
        frame[c.GEOMETRY] = shapely.from_wkb(frame[c.GEOMETRY].to_numpy())
        segs, trips = segments.build_segments(frame)
        expected_segs, expected_trips = segments.build_segments_from_arrow(table)
        _assert_same_bits(segs, expected_segs)
        _assert_same_bits(trips, expected_trips)


class TestFloorEpochMs:
    @pytest.mark.parametrize(("value_ms", "expected"), [
        (1.5, 1), (-1.5, -2), (-0.0, 0), (float(T0_MS) + 0.999, T0_MS), (9.0e15, 9_000_000_000_000_000),
    ])
    def test_floors_finite_values(self, value_ms: float, expected: int) -> None:
        assert segments._floor_epoch_ms(value_ms) == expected

    @pytest.mark.parametrize("value_ms", [np.nan, np.inf, -np.inf, 1e19, -1e19])
    def test_non_finite_or_outside_int64_is_nat(self, value_ms: float) -> None:
        assert segments._floor_epoch_ms(value_ms) == np.iinfo(np.int64).min
