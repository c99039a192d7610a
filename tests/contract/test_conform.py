"""Conforming client tables: mappings that pass, and dataset-level errors that stop the run."""

from __future__ import annotations

import json

import contract_corpus as corpus
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyproj
import pytest
import shapely

from compute.contract import (
    DATASETS,
    SCHEMAS,
    ContractError,
    ContractSettings,
    ErrorCode,
    ValidationContext,
    conform_table,
    to_frame,
    validate_rows,
)


def _canonical(table: pa.Table, dataset: str) -> pa.Table:
    return table.select(SCHEMAS[dataset].names)


class TestWellFormedVariants:
    def test_good_day_keeps_schema(self, tmp_path):
        corpus.write_day(tmp_path, corpus.good_day())
        for dataset in DATASETS:
            table = conform_table(dataset, pq.read_table(tmp_path / dataset), ContractSettings())
            assert _canonical(table, dataset).schema.equals(SCHEMAS[dataset]), dataset

    def test_geo_metadata_written_for_4326(self):
        table = conform_table("trajectories", corpus.good_day()["trajectories"], ContractSettings())
        crs = json.loads(table.schema.metadata[b"geo"])["columns"]["geometry"]["crs"]
        assert pyproj.CRS.from_json_dict(crs).to_epsg() == 4326

    def test_empty_null_typed_table(self):
        table = pa.table(
            {name: pa.array([], pa.null()) for name in ["trip_id", "vehicle_id", "geometry", "start_time", "end_time"]}
        )
        table = corpus.with_geo(table)
        conformed = conform_table("trajectories", table, ContractSettings())
        assert conformed.num_rows == 0
        assert _canonical(conformed, "trajectories").schema.equals(SCHEMAS["trajectories"])
        accepted, rejects = validate_rows("trajectories", to_frame("trajectories", conformed), ValidationContext())
        assert len(accepted) == 0
        assert len(rejects) == 0

    def test_timestamps_column_absent(self):
        trip = {**corpus.GOOD_TRIP, "times_s": None, "start_ms": corpus.T0_MS, "end_ms": corpus.T0_MS + 20_000}
        table = corpus.trajectories([trip]).drop_columns(["timestamps"])
        conformed = conform_table("trajectories", table, ContractSettings())
        assert conformed.column("timestamps").null_count == 1
        accepted, rejects = validate_rows("trajectories", to_frame("trajectories", conformed), ValidationContext())
        assert list(accepted["trip_id"]) == ["T1"]
        assert rejects.empty

    def test_z_coordinates_kept(self):
        line_z = "LINESTRING Z (139.7000 35.6800 12, 139.7011 35.6800 13, 139.7022 35.6800 15)"
        conformed = conform_table("trajectories", corpus.trajectories([{**corpus.GOOD_TRIP, "wkt": line_z}]), ContractSettings())
        frame = to_frame("trajectories", conformed)
        assert shapely.has_z(frame.geometry.iloc[0])
        accepted, rejects = validate_rows("trajectories", frame, ValidationContext())
        assert len(accepted) == 1
        assert rejects.empty

    def test_extra_columns_dropped_or_kept(self):
        table = corpus.trajectories([corpus.GOOD_TRIP]).append_column("driver", pa.array(["d1"]))
        assert "driver" not in conform_table("trajectories", table, ContractSettings()).column_names
        settings = ContractSettings(trajectories={"keep_extra_columns": True})
        assert "driver" in conform_table("trajectories", table, settings).column_names
        geo = conform_table("geo_attributes", corpus.geo_attributes(), ContractSettings())
        assert "name" in geo.column_names

    def test_client_mapping_tripid_ms_epoch_and_projected_crs(self):
        # Client writes tripId, epoch milliseconds, speed in m/s and JGD2011 plane rectangular IX (EPSG:6677).
        to_plane = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:6677", always_xy=True)
        line = shapely.from_wkt(corpus.GOOD_LINE)
        projected = shapely.transform(line, lambda xy: np.column_stack(to_plane.transform(xy[:, 0], xy[:, 1])))
        table = pa.table(
            {
                "tripId": ["T1"],
                "vehicleId": ["V1"],
                "geom": pa.array([shapely.to_wkb(projected)], pa.binary()),
                "timestamps": pa.array([[corpus.T0_MS, corpus.T0_MS + 10_000, corpus.T0_MS + 20_000]], pa.list_(pa.int64())),
            }
        )
        table = corpus.with_geo(table, "EPSG:6677", column="geom")
        settings = ContractSettings(
            trajectories={
                "rename": {"tripId": "trip_id", "vehicleId": "vehicle_id", "geom": "geometry"},
                "units": {"timestamps": "epoch_ms"},
            }
        )
        conformed = conform_table("trajectories", table, settings)
        frame = to_frame("trajectories", conformed)
        back = shapely.get_coordinates(frame.geometry.iloc[0])
        np.testing.assert_allclose(back, shapely.get_coordinates(line), atol=1e-7)
        assert conformed.column("timestamps").type == pa.list_(pa.timestamp("ms", tz="UTC"))
        assert conformed.column("timestamps")[0].values[1].value == corpus.T0_MS + 10_000

    def test_tachometer_speed_in_m_per_s(self):
        table = pa.table({"vehicle_id": ["V1"], "ts_ms": pa.array([corpus.T0_MS], pa.int64()), "speed_ms": [10.0]})
        settings = ContractSettings(
            tachometer={"rename": {"ts_ms": "ts", "speed_ms": "speed_kmh"}, "units": {"ts": "epoch_ms", "speed_kmh": "m/s"}}
        )
        conformed = conform_table("tachometer", table, settings)
        assert conformed.column("speed_kmh").to_pylist() == [pytest.approx(36.0)]
        assert conformed.column("ts").type == pa.timestamp("ms", tz="UTC")

    def test_web_mercator_from_mapping_without_metadata(self):
        to_mercator = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
        x, y = to_mercator.transform(139.7, 35.68)
        polygon = shapely.box(x - 100, y - 100, x + 100, y + 100)
        table = pa.table({"feature_id": ["f1"], "source": ["CSR"], "geometry": pa.array([shapely.to_wkb(polygon)], pa.binary())})
        settings = ContractSettings(geo_attributes={"geometry_encoding": "WKB", "crs": "EPSG:3857"})
        frame = to_frame("geo_attributes", conform_table("geo_attributes", table, settings))
        centroid = frame.geometry.iloc[0].centroid
        assert centroid.x == pytest.approx(139.7, abs=1e-6)
        assert centroid.y == pytest.approx(35.68, abs=1e-6)
        assert frame["source"].iloc[0] == "csr"

    def test_naive_local_times_and_iso_text(self):
        table = pa.table({"vehicle_id": ["V1"], "ts": ["2026-07-26T02:20:00"], "speed_kmh": pa.array([5], pa.int32())})
        settings = ContractSettings(tachometer={"naive_time_zone": "Asia/Tokyo"})
        conformed = conform_table("tachometer", table, settings)
        assert conformed.column("ts")[0].value == corpus.T0_MS
        assert conformed.column("speed_kmh").type == pa.float64()

    def test_value_map_and_case(self):
        table = corpus.vehicles(
            [{"vehicle_id": "V9", "vehicle_class": " Light_Truck ", "fuel_type": "軽油", "test_cycle": "wltc"}]
        )
        settings = ContractSettings(vehicles={"values": {"fuel_type": {"軽油": "diesel"}}})
        conformed = conform_table("vehicles", table, settings)
        assert conformed.column("vehicle_class").to_pylist() == ["light_truck"]
        assert conformed.column("fuel_type").to_pylist() == ["diesel"]
        assert conformed.column("test_cycle").to_pylist() == ["WLTC"]

    def test_fuel_consumption_l_per_100km(self):
        table = corpus.vehicles([{"vehicle_id": "V9", "vehicle_class": "bus", "fuel_type": "diesel", "fe": 25.0}])
        settings = ContractSettings(vehicles={"units": {"catalog_fuel_economy_km_per_l": "l/100km"}})
        conformed = conform_table("vehicles", table, settings)
        assert conformed.column("catalog_fuel_economy_km_per_l").to_pylist() == [pytest.approx(4.0)]


class TestDatasetErrors:
    def test_missing_required_column(self):
        table = corpus.trajectories([corpus.GOOD_TRIP]).drop_columns(["vehicle_id"])
        with pytest.raises(ContractError, match=r"Dataset trajectories has no required column vehicle_id") as info:
            conform_table("trajectories", table, ContractSettings())
        assert info.value.code is ErrorCode.COLUMN_MISSING
        assert info.value.column == "vehicle_id"
        assert "contract.trajectories.rename" in str(info.value)

    def test_missing_column_names_rename_source(self):
        settings = ContractSettings(trajectories={"rename": {"tripId": "trip_id"}})
        table = corpus.trajectories([corpus.GOOD_TRIP]).drop_columns(["trip_id"])
        with pytest.raises(ContractError, match=r"renamed from 'tripId'"):
            conform_table("trajectories", table, settings)

    def test_no_time_columns(self):
        table = corpus.trajectories([corpus.GOOD_TRIP]).drop_columns(["timestamps", "end_time"])
        with pytest.raises(ContractError, match=r"has no time columns") as info:
            conform_table("trajectories", table, ContractSettings())
        assert info.value.code is ErrorCode.TIME_COLUMNS_MISSING

    def test_uncastable_type(self):
        table = corpus.tachometer().set_column(2, "speed_kmh", pa.array(["fast", "slow", "x"]))
        with pytest.raises(
            ContractError, match=r"Column speed_kmh of dataset tachometer cannot be cast: expected double, found string"
        ) as info:
            conform_table("tachometer", table, ContractSettings())
        assert info.value.expected == "double"

    def test_epoch_unit_needs_numbers(self):
        settings = ContractSettings(tachometer={"units": {"ts": "epoch_ms"}})
        with pytest.raises(ContractError, match=r"needs numeric epochs"):
            conform_table("tachometer", corpus.tachometer(), settings)

    def test_integer_time_without_unit(self):
        table = corpus.tachometer().set_column(1, "ts", pa.array([1, 2, 3], pa.int64()))
        with pytest.raises(ContractError, match=r"declare an epoch unit"):
            conform_table("tachometer", table, ContractSettings())

    def test_no_geo_metadata(self):
        table = corpus.trajectories([corpus.GOOD_TRIP]).replace_schema_metadata(None)
        with pytest.raises(ContractError, match=r"has no GeoParquet 'geo' metadata") as info:
            conform_table("trajectories", table, ContractSettings())
        assert info.value.code is ErrorCode.GEO_METADATA_MISSING

    def test_null_crs_is_unknown(self):
        table = corpus.trajectories([corpus.GOOD_TRIP]).replace_schema_metadata({b"geo": corpus.geo_metadata(None)})
        with pytest.raises(ContractError, match=r"CRS of column geometry in dataset trajectories is unknown") as info:
            conform_table("trajectories", table, ContractSettings())
        assert info.value.code is ErrorCode.CRS_UNKNOWN

    def test_unparseable_crs(self):
        meta = json.loads(corpus.geo_metadata())
        meta["columns"]["geometry"]["crs"] = "EPSG:999999"
        table = corpus.trajectories([corpus.GOOD_TRIP]).replace_schema_metadata({b"geo": json.dumps(meta).encode()})
        with pytest.raises(ContractError, match=r"EPSG:999999"):
            conform_table("trajectories", table, ContractSettings())

    def test_geoarrow_encoding_rejected(self):
        table = corpus.trajectories([corpus.GOOD_TRIP]).replace_schema_metadata(
            {b"geo": corpus.geo_metadata(encoding="linestring")}
        )
        with pytest.raises(ContractError, match=r"expected encoding WKB, found encoding 'linestring'"):
            conform_table("trajectories", table, ContractSettings())

    def test_message_in_japanese(self):
        table = corpus.trajectories([corpus.GOOD_TRIP]).drop_columns(["vehicle_id"])
        with pytest.raises(ContractError) as info:
            conform_table("trajectories", table, ContractSettings())
        text = info.value.message("ja")
        assert "必須の列 vehicle_id がありません" in text
        assert "contract.trajectories.rename" in text

    def test_error_survives_pickle(self):
        import pickle

        error = ContractError(ErrorCode.COLUMN_MISSING, "vehicles", "fuel_type", "fuel_type (string)", "[]")
        copy = pickle.loads(pickle.dumps(error))
        assert str(copy) == str(error)
        assert copy.column == "fuel_type"


class TestSettings:
    def test_rename_to_unknown_column(self):
        with pytest.raises(ValueError, match=r"maps 'tripId' to 'trip'"):
            ContractSettings(trajectories={"rename": {"tripId": "trip"}})

    def test_unit_not_allowed(self):
        with pytest.raises(ValueError, match=r"unit 'furlong'"):
            ContractSettings(tachometer={"units": {"speed_kmh": "furlong"}})

    def test_encoding_needs_crs(self):
        with pytest.raises(ValueError, match=r"geometry_encoding is set but crs is not"):
            ContractSettings(geo_attributes={"geometry_encoding": "WKB"})

    def test_unknown_crs_in_settings(self):
        with pytest.raises(ValueError, match=r"not a CRS pyproj knows"):
            ContractSettings(trajectories={"crs": "EPSG:0"})
