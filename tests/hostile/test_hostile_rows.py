"""Hostile rows: each bad row lands in rejects with its reason code, and rows in = accepted + rejects."""

from __future__ import annotations

import warnings

import hostile_days as days
import numpy as np
import pyarrow as pa
import pytest
import shapely

from compute.contract import ContractSettings, ValidationContext, conform_table, to_frame, validate_rows


def _balanced(table: pa.Table, accepted, rejects) -> bool:  # type: ignore[no-untyped-def]
    return len(accepted) + len(rejects) == table.num_rows


def _line(*coords: tuple[float, ...]) -> shapely.LineString:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # shapely warns on NaN coordinates
        return shapely.LineString(coords)


class TestTrajectoryGeometry:
    def test_nan_and_inf_coordinates_rejected(self) -> None:
        table = days.trajectories(
            [
                _line((139.70, 35.68), (np.nan, 35.68), (139.702, 35.68)),
                _line((np.inf, 35.68), (139.70, 35.68), (139.702, 35.68)),
                days.LINE,
            ]
        )
        accepted, rejects = days.validate("trajectories", table)
        assert _balanced(table, accepted, rejects)
        assert days.reasons_by_key(rejects) == {"T0": "geometry_invalid", "T1": "geometry_invalid"}
        assert accepted["trip_id"].tolist() == ["T2"]

    def test_nan_z_kept_as_unknown_elevation(self) -> None:
        table = days.trajectories([_line((139.70, 35.68, np.nan), (139.701, 35.68, np.nan), (139.702, 35.68, 5.0))])
        accepted, rejects = days.validate("trajectories", table)
        assert len(rejects) == 0
        assert len(accepted) == 1

    def test_infinite_z_rejected(self) -> None:
        table = days.trajectories([_line((139.70, 35.68, 10.0), (139.701, 35.68, 11.0), (139.702, 35.68, np.inf))])
        accepted, rejects = days.validate("trajectories", table)
        assert _balanced(table, accepted, rejects)
        assert rejects["reason"].tolist() == ["geometry_invalid"]
        assert rejects["detail"].iloc[0] == "vertex 2: elevation is infinite"

    def test_non_linestring_types_rejected(self) -> None:
        table = days.trajectories(
            [
                shapely.MultiLineString([[(139.70, 35.68), (139.701, 35.68)], [(139.702, 35.68), (139.703, 35.68)]]),
                shapely.GeometryCollection([days.LINE]),
                shapely.Point(139.70, 35.68),
            ]
        )
        accepted, rejects = days.validate("trajectories", table)
        assert _balanced(table, accepted, rejects)
        assert set(rejects["reason"]) == {"geometry_wrong_type"}
        assert rejects["value"].tolist() == ["MultiLineString", "GeometryCollection", "Point"]

    def test_huge_coordinates_out_of_range(self) -> None:
        table = days.trajectories([_line((1e300, 1e300), (1e301, 1e301)), _line((139.7, 35.68), (139.7, 95.0))])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow in the length of 1e300 lines
            accepted, rejects = days.validate("trajectories", table)
        assert _balanced(table, accepted, rejects)
        assert set(rejects["reason"]) == {"coordinate_out_of_range"}

    def test_garbage_wkb_unreadable(self) -> None:
        truncated = days.encode(days.LINE)[:-5]
        table = days.trajectories([b"\x00\x01garbage", b"", truncated], times_s=[[0, 10]] * 3)
        accepted, rejects = days.validate("trajectories", table)
        assert _balanced(table, accepted, rejects)
        assert set(rejects["reason"]) == {"geometry_unreadable"}
        assert rejects["value"].iloc[0].startswith("0x0001")

    def test_ten_thousand_vertices_accepted(self) -> None:
        n_vertices = 10_000
        line = shapely.LineString(np.c_[139.7 + np.arange(n_vertices) * 1e-4, np.full(n_vertices, 35.68)])
        table = days.trajectories([line])
        accepted, rejects = days.validate("trajectories", table)
        assert len(rejects) == 0
        assert len(accepted) == 1


class TestTrajectoryTimes:
    def test_one_timestamp_for_two_vertices(self) -> None:
        table = days.trajectories([_line((139.70, 35.68), (139.701, 35.68))], times_s=[[0]])
        accepted, rejects = days.validate("trajectories", table)
        assert _balanced(table, accepted, rejects)
        assert rejects["reason"].tolist() == ["timestamp_count_mismatch"]

    def test_equal_timestamps_use_min_interval(self) -> None:
        # 90 m with both fixes at the same second counts as 90 m in 1 s: 324 km/h.
        table = days.trajectories([_line((139.70, 35.68), (139.701, 35.68))], times_s=[[5, 5]])
        accepted, rejects = days.validate("trajectories", table)
        assert _balanced(table, accepted, rejects)
        assert rejects["reason"].tolist() == ["speed_implausible"]
        assert "in 1.0 s" in rejects["detail"].iloc[0]

    def test_tokyo_time_zone_converted_to_utc(self) -> None:
        table = days.trajectories([days.LINE])
        tokyo = table.column("timestamps").cast(pa.list_(pa.timestamp("ms", tz="Asia/Tokyo")))
        conformed = conform_table("trajectories", table.set_column(3, "timestamps", tokyo), ContractSettings())
        assert conformed.column("timestamps").type == pa.list_(days.TS)
        assert conformed.column("timestamps").to_pylist() == table.column("timestamps").to_pylist()

    def test_naive_nanoseconds_read_as_utc(self) -> None:
        table = days.trajectories([days.LINE])
        naive_ns = table.column("timestamps").cast(pa.list_(pa.timestamp("ns")))
        conformed = conform_table("trajectories", table.set_column(3, "timestamps", naive_ns), ContractSettings())
        assert conformed.column("timestamps").to_pylist() == table.column("timestamps").to_pylist()

    def test_nan_epoch_becomes_null_vertex_time(self) -> None:
        table = days.trajectories([days.LINE])
        epochs = pa.array([[float(days.T0_MS), np.nan, float(days.T0_MS + 20_000)]], pa.list_(pa.float64()))
        settings = ContractSettings(trajectories={"units": {"timestamps": "epoch_ms"}})
        accepted, rejects = days.validate("trajectories", table.set_column(3, "timestamps", epochs), settings=settings)
        assert rejects["reason"].tolist() == ["timestamp_count_mismatch"]
        assert "a timestamp is null" in rejects["detail"].iloc[0]


    def test_far_timestamps_out_of_range(self) -> None:
        table = days.trajectories([days.LINE, days.LINE])
        far = pa.array([[-(2**62), 0, 2**62], [days.T0_MS, days.T0_MS + 10_000, days.T0_MS + 20_000]], pa.list_(pa.int64()))
        accepted, rejects = days.validate("trajectories", table.set_column(3, "timestamps", far.cast(pa.list_(days.TS))))
        assert _balanced(table, accepted, rejects)
        assert days.reasons_by_key(rejects) == {"T0": "timestamp_out_of_range"}
        assert rejects["detail"].iloc[0].startswith("vertex 0; min_time 2000-01-01")

    def test_trip_times_out_of_range(self) -> None:
        table = days.trajectories([days.LINE]).drop_columns(["timestamps"])
        table = table.append_column("start_time", pa.array([0], pa.int64()).cast(days.TS))
        table = table.append_column("end_time", pa.array([60_000], pa.int64()).cast(days.TS))
        accepted, rejects = days.validate("trajectories", table)
        assert rejects["reason"].tolist() == ["timestamp_out_of_range"]

    def test_time_window_from_settings(self) -> None:
        table = days.trajectories([days.LINE])
        settings = ContractSettings(thresholds={"min_time": "2027-01-01", "max_time": "2028-01-01"})
        accepted, rejects = days.validate("trajectories", table, settings=settings)
        assert rejects["reason"].tolist() == ["timestamp_out_of_range"]
        assert "min_time 2027-01-01T00:00:00+00:00" in rejects["detail"].iloc[0]


class TestKeys:
    def test_blank_and_spaced_trip_ids(self) -> None:
        ids = ["", "   ", "\t", "T1 ", "T1", "x" * 5000, "トリップ🚚"]
        table = days.trajectories([days.LINE] * len(ids), trip_ids=ids)
        accepted, rejects = days.validate("trajectories", table)
        assert _balanced(table, accepted, rejects)
        assert rejects["reason"].value_counts().to_dict() == {"key_missing": 3, "key_duplicated": 2}
        assert sorted(accepted["trip_id"], key=len) == ["トリップ🚚", "x" * 5000]

    def test_integer_trip_ids_read_as_text(self) -> None:
        table = days.trajectories([days.LINE, days.LINE], trip_ids=[1, 2])
        accepted, rejects = days.validate("trajectories", table)
        assert len(rejects) == 0
        assert accepted["trip_id"].tolist() == ["1", "2"]

    def test_all_trips_rejected(self) -> None:
        table = days.trajectories([days.LINE] * 3, vehicle_ids=["GHOST"] * 3)
        accepted, rejects = days.validate("trajectories", table)
        assert len(accepted) == 0
        assert rejects["reason"].tolist() == ["vehicle_not_in_master"] * 3


class TestVehicles:
    def test_hostile_master_rows(self) -> None:
        rows = [
            {"vehicle_id": "V1", "vehicle_class": "LIGHT_TRUCK", "fuel_type": "Diesel"},
            {"vehicle_id": "V1", "vehicle_class": "bus", "fuel_type": "diesel"},
            {"vehicle_id": "V2", "vehicle_class": "普通乗用車", "fuel_type": "hybrid"},
            {"vehicle_id": "V3", "vehicle_class": " Passenger ", "fuel_type": "GASOLINE", "fe": -1.0},
            {"vehicle_id": "V4", "vehicle_class": "passenger", "fuel_type": "gasoline", "fe": 0.0},
            {"vehicle_id": "V5", "vehicle_class": "passenger", "fuel_type": "gasoline", "fe": float("nan")},
            {"vehicle_id": "V6", "vehicle_class": "passenger", "fuel_type": "gasoline", "model_year": 0},
            {"vehicle_id": "V7", "vehicle_class": "passenger", "fuel_type": "gasoline", "fe": float("inf")},
            {"vehicle_id": "V8", "vehicle_class": "Passenger", "fuel_type": "gasoline", "test_cycle": "wltc"},
        ]
        table = days.vehicles(rows)
        accepted, rejects = days.validate("vehicles", table, known=None)
        assert _balanced(table, accepted, rejects)
        assert days.reasons_by_key(rejects) == {
            "V1": "key_duplicated",
            "V2": "vehicle_class_unknown",
            "V3": "value_negative",
            "V4": "value_out_of_range",
            "V6": "value_out_of_range",
            "V7": "value_out_of_range",
        }
        assert accepted["vehicle_id"].tolist() == ["V5", "V8"]
        assert accepted["catalog_fuel_economy_km_per_l"].isna().tolist() == [True, False]
        assert accepted["test_cycle"].tolist() == ["WLTC", "WLTC"]

    def test_float_model_year_with_nan(self) -> None:
        table = days.vehicles().set_column(6, "model_year", pa.array([2020.0, np.nan]))
        accepted, rejects = days.validate("vehicles", table, known=None)
        assert len(rejects) == 0
        assert accepted["model_year"].isna().tolist() == [False, True]

    def test_integer_ids_match_across_datasets(self) -> None:
        master = days.vehicles().set_column(0, "vehicle_id", pa.array([1, 2], pa.int32()))
        accepted_vehicles, _ = days.validate("vehicles", master, known=None)
        trips = days.trajectories([days.LINE]).set_column(1, "vehicle_id", pa.array([1], pa.int64()))
        accepted, rejects = days.validate("trajectories", trips, known=accepted_vehicles["vehicle_id"].tolist())
        assert len(rejects) == 0
        assert accepted["vehicle_id"].tolist() == ["1"]


class TestTachometer:
    def test_hostile_records(self) -> None:
        rows = [
            {"s": 2, "speed": 10.0, "fuel": 1.0},
            {"s": 1, "speed": 10.0, "fuel": 1.0},
            {"s": 1, "speed": 11.0, "fuel": 1.0},
            {"s": 3, "speed": -5.0},
            {"s": 4, "speed": 1e9},
            {"s": 5, "speed": 10.0, "fuel": -1.0},
            {"s": 6, "speed": 10.0, "fuel": float("nan")},
            {"s": 7, "speed": 10.0, "fuel": 1e12},
            {"s": 8, "speed": float("nan")},
            {"s": 9, "speed": float("inf")},
            {"s": None, "speed": 10.0},
            {"s": 12, "speed": 10.0, "vehicle_id": "GHOST"},
        ]
        table = days.tachometer(rows)
        accepted, rejects = days.validate("tachometer", table)
        assert _balanced(table, accepted, rejects)
        assert rejects["reason"].value_counts().to_dict() == {
            "key_duplicated": 2,
            "speed_implausible": 2,
            "value_negative": 1,
            "fuel_negative": 1,
            "fuel_implausible": 1,
            "value_missing": 1,
            "key_missing": 1,
            "vehicle_not_in_master": 1,
        }
        # Out of order is fine; a NaN fuel_ml is read as null and kept.
        assert accepted["speed_kmh"].tolist() == [10.0, 10.0]
        assert accepted["fuel_ml"].isna().tolist() == [False, True]

    def test_out_of_range_epoch_rejected_as_key_missing(self) -> None:
        table = days.tachometer().set_column(1, "ts", pa.array([2**62, days.T0_MS // 1000], pa.int64()))
        settings = ContractSettings(tachometer={"units": {"ts": "epoch_s"}})
        accepted, rejects = days.validate("tachometer", table, settings=settings)
        assert _balanced(table, accepted, rejects)
        assert rejects["reason"].tolist() == ["key_missing"]


class TestGeoAttributes:
    def test_hostile_features(self) -> None:
        bowtie = shapely.Polygon([(139.70, 35.68), (139.71, 35.69), (139.71, 35.68), (139.70, 35.69)])
        flat = shapely.Polygon([(139.70, 35.68), (139.71, 35.68), (139.72, 35.68)])
        features = [
            ("point", shapely.Point(139.7, 35.68), {}),
            ("bowtie", bowtie, {}),
            ("empty", shapely.Polygon(), {}),
            ("flat", flat, {}),
            ("over-1", days.AREA, {"area_type": "urban"}),
            ("over-2", days.AREA, {"area_type": "rural"}),
            ("collection", shapely.GeometryCollection([days.AREA]), {}),
            ("link", days.LINK, {"speed_limit_kmh": float("nan"), "gradient_pct": float("inf")}),
        ]
        table = days.geo_attributes(features)
        accepted, rejects = days.validate("geo_attributes", table, known=None)
        assert _balanced(table, accepted, rejects)
        assert days.reasons_by_key(rejects) == {
            "point": "geometry_wrong_type",
            "empty": "geometry_empty",
            "flat": "geometry_invalid",
            "collection": "geometry_wrong_type",
            "link": "value_out_of_range",
        }
        assert accepted["feature_id"].tolist() == ["bowtie", "over-1", "over-2"]
        assert accepted["contract_flags"].tolist()[0] == "geometry_repaired"

    def test_reprojected_from_3857(self) -> None:
        table = days.geo_attributes([("far", shapely.box(1.555e7, 4.25e6, 1.556e7, 4.26e6), {})])
        table = table.replace_schema_metadata({b"geo": days.geo_metadata("EPSG:3857")})
        accepted, rejects = days.validate("geo_attributes", table, known=None)
        assert len(rejects) == 0
        assert 139 < accepted.geometry.iloc[0].centroid.x < 140


class TestEmptyInput:
    @pytest.mark.parametrize("dataset", ["trajectories", "vehicles", "tachometer", "geo_attributes"])
    def test_zero_rows_with_schema(self, dataset: str) -> None:
        table = days.good_day()[dataset].slice(0, 0)
        accepted, rejects = days.validate(dataset, table, known=None)
        assert len(accepted) == 0
        assert len(rejects) == 0

    def test_empty_geo_frame_is_geodataframe(self) -> None:
        table = conform_table("geo_attributes", days.geo_attributes().slice(0, 0), ContractSettings())
        frame = to_frame("geo_attributes", table)
        assert frame.crs == "EPSG:4326"
        accepted, _ = validate_rows("geo_attributes", frame, ValidationContext())
        assert accepted.geometry.name == "geometry"
