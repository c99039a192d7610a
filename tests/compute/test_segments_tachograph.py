"""compute.segments (Arrow and pandas paths, geodesic length) and compute.tachograph (as-of rule)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyproj
import pytest
import shapely

from compute import columns as c
from compute import segments, tachograph
from tests.reference_times import spread_times

T0_MS = 1_796_000_000_000


def _trajectories() -> pa.Table:
    """Three trips: timed 3D, untimed 2D with a stop, timed 2D; WKB as shapely writes it."""
    lines = [
        shapely.LineString([(139.70, 35.60, 10.0), (139.701, 35.60, 12.0), (139.701, 35.601, 11.0)]),
        shapely.LineString([(139.71, 35.61), (139.71, 35.61), (139.712, 35.611), (139.713, 35.613)]),
        shapely.LineString([(139.72, 35.62), (139.721, 35.621)]),
    ]
    ts = pa.array([[T0_MS, T0_MS + 10_000, T0_MS + 25_000], None, [T0_MS, T0_MS + 7_000]], pa.list_(pa.timestamp("ms", tz="UTC")))
    return pa.table({
        c.TRIP_ID: ["T1", "T2", "T3"],
        c.VEHICLE_ID: ["V1", "V2", "V1"],
        c.GEOMETRY: pa.array(shapely.to_wkb(np.array(lines[:1] + lines[1:], dtype=object), include_srid=False), pa.binary()),
        c.TIMESTAMPS: ts,
        c.START_TIME: pa.array([T0_MS, T0_MS + 1_000, T0_MS], pa.timestamp("ms", tz="UTC")),
        c.END_TIME: pa.array([T0_MS + 25_000, T0_MS + 61_000, T0_MS + 7_000], pa.timestamp("ms", tz="UTC")),
        c.LOAD_KG: [100.0, None, 0.0],
    })


def _as_frame(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas(ignore_metadata=True)
    frame[c.GEOMETRY] = shapely.from_wkb(frame[c.GEOMETRY].to_numpy())
    return frame


class TestBuildSegments:
    def test_arrow_and_frame_paths_equal(self) -> None:
        table = _trajectories()
        segs_a, trips_a = segments.build_segments_from_arrow(table)
        segs_f, trips_f = segments.build_segments(_as_frame(table))
        pd.testing.assert_frame_equal(segs_a, segs_f)
        pd.testing.assert_frame_equal(trips_a, trips_f)

    def test_given_and_interpolated_times(self) -> None:
        segs, trips = segments.build_segments_from_arrow(_trajectories())
        assert list(trips[c.TIME_SOURCE]) == ["vertex", "interpolated", "vertex"]
        t1 = segs[segs[c.TRIP_ID] == "T1"]
        assert list(t1[c.DURATION_S]) == [10.0, 15.0]
        t2 = segs[segs[c.TRIP_ID] == "T2"]
        assert t2[c.DURATION_S].sum() == pytest.approx(60.0)
        assert t2[c.LENGTH_M].iloc[0] == 0.0
        assert list(segs[c.SEG_INDEX]) == [0, 1, 0, 1, 2, 0]

    def test_grade_from_z(self) -> None:
        segs, _ = segments.build_segments_from_arrow(_trajectories())
        t1 = segs[segs[c.TRIP_ID] == "T1"]
        assert t1[c.GRADE_PCT].iloc[0] == pytest.approx(200.0 / t1[c.LENGTH_M].iloc[0])
        assert segs[segs[c.TRIP_ID] == "T3"][c.GRADE_PCT].isna().all()

    def test_timestamp_count_mismatch_raises(self) -> None:
        table = _trajectories()
        bad = pa.array([[T0_MS], None, [T0_MS, T0_MS + 7_000]], pa.list_(pa.timestamp("ms", tz="UTC")))
        table = table.set_column(table.column_names.index(c.TIMESTAMPS), c.TIMESTAMPS, bad)
        with pytest.raises(ValueError, match="trip 'T1' has 1 timestamps for 3 vertices"):
            segments.build_segments_from_arrow(table)

    def test_big_endian_wkb_falls_back_to_shapely(self) -> None:
        table = _trajectories()
        big = shapely.to_wkb(shapely.from_wkb(table.column(c.GEOMETRY).to_numpy(zero_copy_only=False)), byte_order=0)
        swapped = table.set_column(table.column_names.index(c.GEOMETRY), c.GEOMETRY, pa.array(big, pa.binary()))
        pd.testing.assert_frame_equal(segments.build_segments_from_arrow(swapped)[0], segments.build_segments_from_arrow(table)[0])


def _reference_segments(coords: np.ndarray, counts: np.ndarray, vertex_ms: np.ndarray) -> dict[str, np.ndarray]:
    """Segment columns from array expressions, the formulation the compiled loops replaced."""
    owner = np.repeat(np.arange(len(counts)), counts)
    a = np.flatnonzero(owner[:-1] == owner[1:])
    b = a + 1
    length = segments.geodesic_length_m(coords[a, 0], coords[a, 1], coords[b, 0], coords[b, 1])
    vertex_ms = spread_times(vertex_ms, counts, length, np.ones(len(counts), dtype=bool))
    duration = (vertex_ms[b] - vertex_ms[a]) / 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = np.where(duration > 0, length / duration, np.nan)
        grade = np.where(length > 0.5, 100.0 * (coords[b, 2] - coords[a, 2]) / length, np.nan)
        seg_index = a - (np.cumsum(counts) - counts)[owner[a]]
        dv = speed[1:] - speed[:-1]
        dt = 0.5 * (duration[1:] + duration[:-1])
        value = np.where((dt > 0) & np.isfinite(dv), dv / dt, 0.0)
    accel = np.zeros(len(a))
    accel[1:] = np.where(seg_index[1:] > 0, value, 0.0)
    return {
        c.SEG_INDEX: seg_index, c.LENGTH_M: length, c.DURATION_S: duration, c.SPEED_KMH: speed * 3.6, c.ACCEL_M_S2: accel,
        c.GRADE_PCT: grade, c.LON_MID: (coords[a, 0] + coords[b, 0]) / 2.0, c.LAT_MID: (coords[a, 1] + coords[b, 1]) / 2.0,
    }


class TestCompiledSegmentLoops:
    """``_segment_geometry`` and ``_segment_kinematics`` give what the array expressions gave."""

    def test_random_trips_match_array_reference(self) -> None:
        rng = np.random.default_rng(17)
        counts = rng.integers(2, 60, 400)
        counts[::37] = 2
        n = int(counts.sum())
        lon = np.repeat(rng.uniform(-179.9, 179.9, len(counts)), counts) + np.cumsum(rng.normal(0, 2e-4, n))
        lat = np.repeat(rng.uniform(-70, 70, len(counts)), counts) + np.cumsum(rng.normal(0, 2e-4, n))
        lon[5] = lon[4]  # a zero-length segment
        lat[5] = lat[4]
        lon[100] += 0.5  # a jump over 1 km, measured by pyproj
        lon = (lon + 180.0) % 360.0 - 180.0  # some trips cross the antimeridian
        z = rng.uniform(0, 30, n)
        z[:200] = np.nan  # 2D vertices
        steps = rng.choice([0, 1_000, 1_000, 2_000], n).astype(np.float64)  # includes 0 s segments
        ms = T0_MS + np.cumsum(steps)
        coords = np.column_stack([lon, lat, z])
        offsets = np.r_[0, np.cumsum(counts)]
        lines = [shapely.LineString(coords[lo:hi]) for lo, hi in zip(offsets[:-1], offsets[1:], strict=True)]
        table = pa.table({
            c.TRIP_ID: [f"T{i}" for i in range(len(counts))],
            c.VEHICLE_ID: ["V"] * len(counts),
            c.GEOMETRY: pa.array(shapely.to_wkb(np.array(lines, dtype=object), include_srid=False, output_dimension=3), pa.binary()),
            c.TIMESTAMPS: pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)),
                                                   pa.array(ms.astype(np.int64)).cast(pa.timestamp("ms", tz="UTC"))),
            c.START_TIME: pa.array(ms[offsets[:-1]].astype(np.int64), pa.timestamp("ms", tz="UTC")),
            c.END_TIME: pa.array(ms[offsets[1:] - 1].astype(np.int64), pa.timestamp("ms", tz="UTC")),
        })

        segs, trips = segments.build_segments_from_arrow(table)

        expected = _reference_segments(coords, counts, ms)
        assert len(segs) == n - len(counts)
        for name, values in expected.items():
            np.testing.assert_allclose(segs[name].to_numpy(dtype=np.float64), values, rtol=1e-12, atol=0, equal_nan=True, err_msg=name)
        assert (segs[c.DURATION_S] == 0).any()
        assert segs[c.SPEED_KMH].isna().any()
        assert segs[c.GRADE_PCT].isna().any()
        assert segs[c.LENGTH_M].max() > segments.LOCAL_LENGTH_MAX_M
        owner = np.repeat(np.arange(len(counts)), counts)
        first_vertex_of_segment = np.flatnonzero(owner[:-1] == owner[1:])
        start_ms = segs[c.T_START].dt.tz_localize(None).to_numpy().astype("datetime64[ms]").astype(np.int64)
        # Repeated given times are spread, so a segment may start at a fraction of a millisecond.
        spread = spread_times(ms, counts, expected[c.LENGTH_M], np.ones(len(counts), dtype=bool))
        np.testing.assert_array_equal(start_ms, np.floor(spread[first_vertex_of_segment]).astype(np.int64))
        assert list(trips[c.N_VERTICES]) == list(counts)


class TestGeodesicLength:
    @pytest.mark.parametrize("distance_m", [1.0, 30.0, 400.0, 999.0, 5_000.0, 300_000.0])
    def test_matches_pyproj(self, distance_m: float) -> None:
        rng = np.random.default_rng(3)
        geod = pyproj.Geod(ellps="WGS84")
        lon1, lat1 = rng.uniform(-179, 179, 2_000), rng.uniform(-70, 70, 2_000)
        lon2, lat2, _ = geod.fwd(lon1, lat1, rng.uniform(0, 360, 2_000), np.full(2_000, distance_m))
        got = segments.geodesic_length_m(lon1, lat1, np.asarray(lon2), np.asarray(lat2))
        assert np.abs(got - distance_m).max() < 1e-4


def _reference_alignment(tacho: pd.DataFrame, trips: pd.DataFrame) -> pd.Series:
    """The as-of rule with pandas.merge_asof: last trip started at or before, if not ended."""
    left = tacho.assign(_row=np.arange(len(tacho))).sort_values(c.TS, kind="mergesort")
    right = trips.sort_values(c.START_TIME, kind="mergesort")
    joined = pd.merge_asof(left, right, left_on=c.TS, right_on=c.START_TIME, by=c.VEHICLE_ID, direction="backward")
    inside = joined[c.TRIP_ID].notna() & (joined[c.TS] <= joined[c.END_TIME])
    out = pd.Series(None, index=range(len(tacho)), dtype=object)
    out[joined.loc[inside, "_row"].to_numpy()] = joined.loc[inside, c.TRIP_ID].to_numpy()
    return out


def _epoch_ms(times: pd.Series) -> np.ndarray:
    return times.astype("datetime64[ms, UTC]").astype("int64").to_numpy().astype(float)


class TestAlignToTrips:
    def test_random_overlapping_trips_match_merge_asof(self) -> None:
        rng = np.random.default_rng(11)
        n_trips, n_rows = 400, 20_000
        start = T0_MS + rng.integers(0, 3_600, n_trips) * 1_000
        trips = pd.DataFrame({
            c.TRIP_ID: [f"T{i:04d}" for i in range(n_trips)],
            c.VEHICLE_ID: [f"V{i % 37:03d}" for i in range(n_trips)],
            c.START_TIME: pd.to_datetime(start, unit="ms", utc=True).astype("datetime64[ms, UTC]"),
            c.END_TIME: pd.to_datetime(start + rng.integers(0, 900, n_trips) * 1_000, unit="ms", utc=True).astype("datetime64[ms, UTC]"),
        })
        tacho = pd.DataFrame({
            c.VEHICLE_ID: [f"V{i:03d}" for i in rng.integers(0, 40, n_rows)],
            c.TS: pd.to_datetime(T0_MS + rng.integers(-60, 4_600, n_rows) * 1_000, unit="ms", utc=True).astype("datetime64[ms, UTC]"),
            c.SPEED_KMH: rng.uniform(0, 60, n_rows),
        })
        aligned, outside = tachograph.align_to_trips(tacho, trips)
        expected = _reference_alignment(tacho, trips)
        assert len(aligned) == int(expected.notna().sum())
        assert len(outside) == int(expected.isna().sum())
        codes, trip_codes = tachograph.encode_vehicles(tacho[c.VEHICLE_ID].to_numpy(object), trips[c.VEHICLE_ID].to_numpy(object))
        rows = tachograph.assign_trips(
            codes, _epoch_ms(tacho[c.TS]), trip_codes, _epoch_ms(trips[c.START_TIME]), _epoch_ms(trips[c.END_TIME])
        )
        got = np.where(rows >= 0, trips[c.TRIP_ID].to_numpy()[np.maximum(rows, 0)], None)
        assert np.array_equal(got, np.where(expected.isna(), None, expected.to_numpy()))
        # The trips sorted once, as the broadcast trip index carries them, give the same rows.
        keys = tachograph.sort_trips(trip_codes, _epoch_ms(trips[c.START_TIME]))
        again = tachograph.assign_trips(
            codes, _epoch_ms(tacho[c.TS]), trip_codes, _epoch_ms(trips[c.START_TIME]), _epoch_ms(trips[c.END_TIME]), keys
        )
        np.testing.assert_array_equal(again, rows)
        assert (_epoch_ms(tacho[c.TS]) < keys.origin_ms).any()  # some records precede every trip

    def test_record_after_trip_end_is_outside(self) -> None:
        trips = pd.DataFrame({
            c.TRIP_ID: ["A"], c.VEHICLE_ID: ["V"],
            c.START_TIME: pd.to_datetime([T0_MS], unit="ms", utc=True), c.END_TIME: pd.to_datetime([T0_MS + 5_000], unit="ms", utc=True),
        })
        tacho = pd.DataFrame({c.VEHICLE_ID: ["V", "V", "W"], c.TS: pd.to_datetime([T0_MS + 5_000, T0_MS + 5_001, T0_MS], unit="ms", utc=True), c.SPEED_KMH: [1.0, 2.0, 3.0]})
        aligned, outside = tachograph.align_to_trips(tacho, trips)
        assert list(aligned[c.SPEED_KMH]) == [1.0]
        assert list(outside[c.SPEED_KMH]) == [2.0, 3.0]
