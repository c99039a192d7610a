"""Broken days, one per reason code: each bad row lands in rejects with its reason and value."""

from __future__ import annotations

import struct

import contract_corpus as corpus
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import shapely

from compute.contract import (
    DETAIL_COLUMNS,
    REJECT_COLUMNS,
    ContractSettings,
    FlagCode,
    ReasonCode,
    ValidationContext,
    conform_table,
    find_duplicate_keys,
    repeated_keys_in,
    to_frame,
    validate_rows,
)

GOOD = corpus.GOOD_TRIP
LINE = corpus.GOOD_LINE


def _validate(dataset: str, table: pa.Table, known=("V1", "V2"), settings: ContractSettings | None = None):
    settings = settings or ContractSettings()
    conformed = conform_table(dataset, table, settings)
    frame = to_frame(dataset, conformed)
    context = ValidationContext(
        known_vehicle_ids=None if known is None else np.array(known, dtype=object),
        repeated_keys={dataset: repeated_keys_in(dataset, [conformed], [f"{dataset}/part-0.parquet"])},
        settings=settings,
    )
    accepted, rejects = validate_rows(dataset, frame, context)
    assert len(accepted) + len(rejects) == len(frame)
    return accepted, rejects


def _one_point_linestring_wkb() -> bytes:
    return struct.pack("<BII2d", 1, 2, 1, 139.7, 35.68)


TRAJECTORY_CASES = [
    # (case id, broken row, reason, value fragment)
    ("null key", {**GOOD, "trip_id": None}, ReasonCode.KEY_MISSING, "vehicle_id=V1"),
    ("blank key", {**GOOD, "trip_id": "  "}, ReasonCode.KEY_MISSING, None),
    ("missing vehicle id", {**GOOD, "trip_id": "B", "vehicle_id": None}, ReasonCode.VALUE_MISSING, None),
    ("vehicle not in master", {**GOOD, "trip_id": "B", "vehicle_id": "V404"}, ReasonCode.VEHICLE_NOT_IN_MASTER, "V404"),
    ("null geometry", {**GOOD, "trip_id": "B", "wkt": None}, ReasonCode.GEOMETRY_MISSING, None),
    (
        "point geometry",
        {**GOOD, "trip_id": "B", "wkt": "POINT (139.7 35.68)", "times_s": [0]},
        ReasonCode.GEOMETRY_WRONG_TYPE,
        "Point",
    ),
    ("empty line", {**GOOD, "trip_id": "B", "wkt": "LINESTRING EMPTY", "times_s": []}, ReasonCode.GEOMETRY_EMPTY, "EMPTY"),
    (
        "repeated single point",
        {**GOOD, "trip_id": "B", "wkt": "LINESTRING (139.7 35.68, 139.7 35.68)", "times_s": [0, 10]},
        ReasonCode.GEOMETRY_SINGLE_POINT,
        "LINESTRING",
    ),
    (
        "nan coordinate",
        {**GOOD, "trip_id": "B", "wkt": "LINESTRING (139.7 35.68, NaN NaN, 139.71 35.68)"},
        ReasonCode.GEOMETRY_INVALID,
        None,
    ),
    (
        "latitude above 90",
        {**GOOD, "trip_id": "B", "wkt": "LINESTRING (139.7 35.68, 139.7 95.0, 139.7 35.69)"},
        ReasonCode.COORDINATE_OUT_OF_RANGE,
        "(139.7, 95)",
    ),
    (
        "swapped axes",
        {**GOOD, "trip_id": "B", "wkt": "LINESTRING (35.68 139.7, 35.68 139.71, 35.68 139.72)"},
        ReasonCode.COORDINATE_OUT_OF_RANGE,
        "(35.68, 139.7)",
    ),
    (
        "null island vertex",
        {**GOOD, "trip_id": "B", "wkt": "LINESTRING (139.7 35.68, 0 0, 139.7 35.68001)"},
        ReasonCode.COORDINATE_NULL_ISLAND,
        "(0, 0)",
    ),
    ("no times at all", {**GOOD, "trip_id": "B", "times_s": None}, ReasonCode.TIME_MISSING, "start_time=NaT"),
    ("fewer timestamps", {**GOOD, "trip_id": "B", "times_s": [0, 10]}, ReasonCode.TIMESTAMP_COUNT_MISMATCH, "2"),
    ("backwards timestamps", {**GOOD, "trip_id": "B", "times_s": [0, 20, 10]}, ReasonCode.TIMESTAMP_BACKWARDS, "->"),
    (
        "end before start",
        {**GOOD, "trip_id": "B", "times_s": None, "start_ms": corpus.T0_MS + 60_000, "end_ms": corpus.T0_MS},
        ReasonCode.TIMESTAMP_BACKWARDS,
        "start_time=",
    ),
    (
        "gps jump",
        {**GOOD, "trip_id": "B", "wkt": "LINESTRING (139.7 35.68, 139.8 35.68, 139.8011 35.68)"},
        ReasonCode.SPEED_IMPLAUSIBLE,
        "km/h",
    ),
    (
        "average too fast without timestamps",
        {
            **GOOD,
            "trip_id": "B",
            "wkt": "LINESTRING (139.7 35.68, 139.9 35.68)",
            "times_s": None,
            "start_ms": corpus.T0_MS,
            "end_ms": corpus.T0_MS + 60_000,
        },
        ReasonCode.SPEED_IMPLAUSIBLE,
        "km/h",
    ),
    ("negative load", {**GOOD, "trip_id": "B", "load_kg": -5.0}, ReasonCode.VALUE_NEGATIVE, "-5"),
    ("huge load", {**GOOD, "trip_id": "B", "load_kg": 1e6}, ReasonCode.VALUE_OUT_OF_RANGE, "1e+06"),
]


class TestTrajectoryRejects:
    @pytest.mark.parametrize(("case", "row", "reason", "fragment"), TRAJECTORY_CASES, ids=[c[0] for c in TRAJECTORY_CASES])
    def test_broken_row(self, case, row, reason, fragment):
        accepted, rejects = _validate("trajectories", corpus.trajectories([GOOD, row]))
        assert list(accepted["trip_id"]) == ["T1"], case
        assert list(rejects.columns) == [*REJECT_COLUMNS, *DETAIL_COLUMNS]
        assert len(rejects) == 1
        reject = rejects.iloc[0]
        assert reject["reason"] == reason.value
        assert reject["dataset"] == "trajectories"
        if row.get("trip_id") not in (None, "  "):
            assert reject["row_key"] == row["trip_id"]
        if fragment is not None:
            assert fragment in reject["value"]

    def test_duplicated_key_rejects_every_copy(self):
        rows = [GOOD, {**GOOD, "load_kg": 600.0}, {**GOOD, "trip_id": "T3"}]
        accepted, rejects = _validate("trajectories", corpus.trajectories(rows))
        assert list(accepted["trip_id"]) == ["T3"]
        assert list(rejects["reason"]) == ["key_duplicated", "key_duplicated"]
        assert list(rejects["row_key"]) == ["T1", "T1"]

    def test_duplicate_across_partitions(self):
        part_a = to_frame("trajectories", conform_table("trajectories", corpus.trajectories([GOOD]), ContractSettings()))
        part_b = to_frame("trajectories", conform_table("trajectories", corpus.trajectories([GOOD]), ContractSettings()))
        duplicated = find_duplicate_keys("trajectories", [part_a, part_b])
        assert list(duplicated) == ["T1"]
        accepted, rejects = validate_rows("trajectories", part_a, ValidationContext(duplicated_keys={"trajectories": duplicated}))
        assert accepted.empty
        assert list(rejects["reason"]) == ["key_duplicated"]

    def test_one_vertex_wkb_is_single_point(self):
        table = corpus.trajectories([GOOD, {**GOOD, "trip_id": "B"}])
        geometry = pa.array([corpus.wkb(LINE), _one_point_linestring_wkb()], pa.binary())
        table = table.set_column(2, "geometry", geometry)
        _accepted, rejects = _validate("trajectories", table)
        assert list(rejects["reason"]) == ["geometry_single_point"]
        assert rejects["value"].iloc[0].startswith("0x01")

    def test_garbage_wkb_is_unreadable(self):
        table = corpus.trajectories([GOOD, {**GOOD, "trip_id": "B"}])
        table = table.set_column(2, "geometry", pa.array([corpus.wkb(LINE), b"\x01\x07garbage"], pa.binary()))
        _accepted, rejects = _validate("trajectories", table)
        assert list(rejects["reason"]) == ["geometry_unreadable"]
        assert "0x0107" in rejects["value"].iloc[0]

    def test_first_failing_rule_wins(self):
        # Unknown vehicle and a GPS jump: the vehicle rule runs first.
        row = {**GOOD, "trip_id": "B", "vehicle_id": "V404", "wkt": "LINESTRING (139.7 35.68, 139.8 35.68, 139.8011 35.68)"}
        _, rejects = _validate("trajectories", corpus.trajectories([row]))
        assert list(rejects["reason"]) == ["vehicle_not_in_master"]

    def test_speed_threshold_configurable(self):
        row = {**GOOD, "trip_id": "B", "times_s": [0, 1, 2]}  # about 100 m per second: 360 km/h
        _, rejects = _validate("trajectories", corpus.trajectories([row]))
        assert list(rejects["reason"]) == ["speed_implausible"]
        settings = ContractSettings(thresholds={"max_speed_kmh": 400})
        accepted, rejects = _validate("trajectories", corpus.trajectories([row]), settings=settings)
        assert rejects.empty
        assert list(accepted["trip_id"]) == ["B"]

    def test_same_timestamp_uses_min_interval(self):
        # 100 m in 0 s counts as 100 m in 1 s (360 km/h), so the trip is rejected, not divided by zero.
        row = {**GOOD, "trip_id": "B", "times_s": [0, 0, 10]}
        _, rejects = _validate("trajectories", corpus.trajectories([row]))
        assert list(rejects["reason"]) == ["speed_implausible"]
        assert "in 1.0 s" in rejects["detail"].iloc[0]

    def test_master_check_skipped_without_ids(self):
        accepted, rejects = _validate("trajectories", corpus.trajectories([{**GOOD, "vehicle_id": "V404"}]), known=None)
        assert rejects.empty
        assert len(accepted) == 1

    def test_accepted_has_flags_column(self):
        accepted, _ = _validate("trajectories", corpus.trajectories([GOOD]))
        assert "contract_flags" in accepted
        assert accepted["contract_flags"].isna().all()


VEHICLE_CASES = [
    (
        "unknown class",
        {"vehicle_id": "V3", "vehicle_class": "truck", "fuel_type": "diesel"},
        ReasonCode.VEHICLE_CLASS_UNKNOWN,
        "truck",
    ),
    ("null class", {"vehicle_id": "V3", "vehicle_class": None, "fuel_type": "diesel"}, ReasonCode.VEHICLE_CLASS_UNKNOWN, None),
    (
        "unknown fuel",
        {"vehicle_id": "V3", "vehicle_class": "bus", "fuel_type": "kerosene"},
        ReasonCode.FUEL_TYPE_UNKNOWN,
        "kerosene",
    ),
    (
        "unknown cycle",
        {"vehicle_id": "V3", "vehicle_class": "bus", "fuel_type": "diesel", "test_cycle": "NEDC"},
        ReasonCode.TEST_CYCLE_UNKNOWN,
        "NEDC",
    ),
    (
        "negative economy",
        {"vehicle_id": "V3", "vehicle_class": "bus", "fuel_type": "diesel", "fe": -3.0},
        ReasonCode.VALUE_NEGATIVE,
        "-3",
    ),
    (
        "negative payload",
        {"vehicle_id": "V3", "vehicle_class": "bus", "fuel_type": "diesel", "payload": -1.0},
        ReasonCode.VALUE_NEGATIVE,
        "-1",
    ),
    (
        "zero economy",
        {"vehicle_id": "V3", "vehicle_class": "bus", "fuel_type": "diesel", "fe": 0.0},
        ReasonCode.VALUE_OUT_OF_RANGE,
        "0",
    ),
    (
        "model year 1800",
        {"vehicle_id": "V3", "vehicle_class": "bus", "fuel_type": "diesel", "model_year": 1800},
        ReasonCode.VALUE_OUT_OF_RANGE,
        "1800",
    ),
    ("null key", {"vehicle_id": None, "vehicle_class": "bus", "fuel_type": "diesel"}, ReasonCode.KEY_MISSING, None),
]


class TestVehicleRejects:
    @pytest.mark.parametrize(("case", "row", "reason", "fragment"), VEHICLE_CASES, ids=[c[0] for c in VEHICLE_CASES])
    def test_broken_row(self, case, row, reason, fragment):
        good = {"vehicle_id": "V1", "vehicle_class": "light_truck", "fuel_type": "diesel"}
        accepted, rejects = _validate("vehicles", corpus.vehicles([good, row]))
        assert list(accepted["vehicle_id"]) == ["V1"], case
        assert list(rejects["reason"]) == [reason.value]
        if fragment is not None:
            assert fragment in rejects["value"].iloc[0]

    def test_null_economy_and_cycle_accepted(self):
        row = {"vehicle_id": "V3", "vehicle_class": "passenger", "fuel_type": "electric", "fe": None, "test_cycle": None}
        accepted, rejects = _validate("vehicles", corpus.vehicles([row]))
        assert rejects.empty
        assert list(accepted["vehicle_id"]) == ["V3"]


TACHOMETER_CASES = [
    ("null time", {"s": None, "speed": 5.0}, ReasonCode.KEY_MISSING, None),
    ("duplicated record", {"s": 1, "speed": 5.0}, ReasonCode.KEY_DUPLICATED, "V1@"),
    ("vehicle not in master", {"vehicle_id": "V404", "s": 5, "speed": 5.0}, ReasonCode.VEHICLE_NOT_IN_MASTER, "V404"),
    ("time before min_time", {"s": -1_000_000_000, "speed": 5.0}, ReasonCode.TIMESTAMP_OUT_OF_RANGE, "1994-"),
    ("null speed", {"s": 5, "speed": None}, ReasonCode.VALUE_MISSING, None),
    ("negative speed", {"s": 5, "speed": -4.0}, ReasonCode.VALUE_NEGATIVE, "-4"),
    ("speed above limit", {"s": 5, "speed": 250.0}, ReasonCode.SPEED_IMPLAUSIBLE, "250"),
    ("rpm above limit", {"s": 5, "speed": 50.0, "rpm": 20000.0}, ReasonCode.VALUE_OUT_OF_RANGE, "20000"),
    ("negative fuel", {"s": 5, "speed": 50.0, "fuel": -2.0}, ReasonCode.FUEL_NEGATIVE, "-2"),
    ("running total sent as fuel", {"s": 3, "speed": 50.0, "fuel": 250.0}, ReasonCode.FUEL_IMPLAUSIBLE, "250"),
]


class TestTachometerRejects:
    @pytest.mark.parametrize(("case", "row", "reason", "fragment"), TACHOMETER_CASES, ids=[c[0] for c in TACHOMETER_CASES])
    def test_broken_row(self, case, row, reason, fragment):
        good = [{"s": 0, "speed": 0.0, "fuel": 0.5}, {"s": 1, "speed": 10.0, "fuel": 1.0}]
        accepted, rejects = _validate("tachometer", corpus.tachometer(good + [row]))
        expected_rejects = 2 if reason is ReasonCode.KEY_DUPLICATED else 1
        assert len(rejects) == expected_rejects, case
        assert set(rejects["reason"]) == {reason.value}
        assert len(accepted) == 3 - expected_rejects
        if fragment is not None:
            assert any(fragment in str(value) for value in rejects["value"])

    def test_row_key_is_vehicle_at_time(self):
        _, rejects = _validate("tachometer", corpus.tachometer([{"s": 0, "speed": 999.0}]))
        assert rejects["row_key"].iloc[0] == "V1@2026-07-25T17:20:00.000Z"

    def test_fuel_rate_uses_previous_record_of_same_vehicle(self):
        # 40 ml in 1 s is 144 l/h (accepted); 40 ml in 0.5 s counts as 1 s.
        rows = [
            {"s": 0, "speed": 50.0, "fuel": 1.0},
            {"s": 1, "speed": 50.0, "fuel": 40.0},
            {"s": 1.5, "speed": 50.0, "fuel": 40.0},
        ]
        accepted, rejects = _validate("tachometer", corpus.tachometer(rows))
        assert rejects.empty
        assert len(accepted) == 3


GEO_CASES = [
    ("null feature id", {"feature_id": None, "wkt": corpus.ROAD_LINK}, ReasonCode.KEY_MISSING, None),
    ("null source", {"feature_id": "b", "source": None, "wkt": corpus.ROAD_LINK}, ReasonCode.VALUE_MISSING, None),
    ("point feature", {"feature_id": "b", "wkt": "POINT (139.7 35.68)"}, ReasonCode.GEOMETRY_WRONG_TYPE, "Point"),
    ("empty polygon", {"feature_id": "b", "wkt": "POLYGON EMPTY"}, ReasonCode.GEOMETRY_EMPTY, None),
    (
        "collapsed polygon",
        {"feature_id": "b", "wkt": "POLYGON ((139.7 35.68, 139.71 35.68, 139.72 35.68, 139.7 35.68))"},
        ReasonCode.GEOMETRY_INVALID,
        "POLYGON",
    ),
    ("link at null island", {"feature_id": "b", "wkt": "LINESTRING (0 0, 0.001 0)"}, ReasonCode.COORDINATE_NULL_ISLAND, "(0, 0)"),
    ("speed limit 0", {"feature_id": "b", "wkt": corpus.ROAD_LINK, "speed_limit_kmh": 0.0}, ReasonCode.VALUE_OUT_OF_RANGE, "0"),
    ("gradient 80 %", {"feature_id": "b", "wkt": corpus.ROAD_LINK, "gradient_pct": 80.0}, ReasonCode.VALUE_OUT_OF_RANGE, "80"),
]


class TestGeoAttributeRejects:
    @pytest.mark.parametrize(("case", "row", "reason", "fragment"), GEO_CASES, ids=[c[0] for c in GEO_CASES])
    def test_broken_row(self, case, row, reason, fragment):
        good = {"feature_id": "a", "wkt": corpus.URBAN_AREA, "area_type": "urban"}
        accepted, rejects = _validate("geo_attributes", corpus.geo_attributes([good, row]))
        assert list(accepted["feature_id"]) == ["a"], case
        assert list(rejects["reason"]) == [reason.value]
        if fragment is not None:
            assert fragment in rejects["value"].iloc[0]

    def test_bowtie_repaired_and_flagged(self):
        bowtie = "POLYGON ((139.70 35.68, 139.71 35.69, 139.71 35.68, 139.70 35.69, 139.70 35.68))"
        accepted, rejects = _validate("geo_attributes", corpus.geo_attributes([{"feature_id": "b", "wkt": bowtie}]))
        assert rejects.empty
        geometry = accepted.geometry.iloc[0]
        assert shapely.is_valid(geometry)
        assert geometry.geom_type == "MultiPolygon"
        assert geometry.area == pytest.approx(0.00005, rel=1e-6)
        assert accepted["contract_flags"].iloc[0] == FlagCode.GEOMETRY_REPAIRED.value

    def test_unknown_area_type_kept_with_flag(self):
        rows = [{"feature_id": "r", "wkt": corpus.URBAN_AREA, "area_type": "Retail"}]
        accepted, rejects = _validate("geo_attributes", corpus.geo_attributes(rows))
        assert rejects.empty
        assert accepted["area_type"].iloc[0] == "retail"
        assert accepted["contract_flags"].iloc[0] == "area_type_unknown"

    def test_multilinestring_link_accepted(self):
        rows = [{"feature_id": "m", "wkt": "MULTILINESTRING ((139.70 35.68, 139.71 35.68), (139.71 35.68, 139.72 35.68))"}]
        accepted, rejects = _validate("geo_attributes", corpus.geo_attributes(rows))
        assert rejects.empty
        assert len(accepted) == 1


def test_every_reason_code_has_a_case():
    covered = {case[2] for case in TRAJECTORY_CASES + VEHICLE_CASES + TACHOMETER_CASES + GEO_CASES}
    # row_repeated is pinned in test_repeated_rows.py.
    covered |= {ReasonCode.KEY_DUPLICATED, ReasonCode.ROW_REPEATED, ReasonCode.GEOMETRY_UNREADABLE, ReasonCode.GEOMETRY_SINGLE_POINT}
    # geometry_too_large is pinned in test_vertex_limit.py.
    covered |= {ReasonCode.GEOMETRY_TOO_LARGE}
    assert set(ReasonCode) - covered == set()


def test_missing_key_names_file_row_or_partition_row():
    table = corpus.trajectories([GOOD, {**GOOD, "trip_id": None}])
    _, with_files = _validate("trajectories", table)
    assert with_files["detail"].tolist() == ["row 1 of trajectories/part-0.parquet, counting from 0"]

    settings = ContractSettings()
    frame = to_frame("trajectories", conform_table("trajectories", table, settings))
    _, without_files = validate_rows("trajectories", frame, ValidationContext(known_vehicle_ids=np.array(["V1"], dtype=object), settings=settings))
    assert without_files["detail"].tolist() == ["row 1 of the partition"]


def test_rejects_frame_is_writable_text(tmp_path):
    _, rejects = _validate("trajectories", corpus.trajectories([{**GOOD, "vehicle_id": "V404"}]))
    path = tmp_path / "rejects.parquet"
    rejects.to_parquet(path)
    back = pd.read_parquet(path)
    assert list(back.columns) == [*REJECT_COLUMNS, *DETAIL_COLUMNS]
    assert back["reason"].iloc[0] == "vehicle_not_in_master"


@pytest.mark.parametrize(
    ("dataset", "table", "column"),
    [
        ("trajectories", corpus.trajectories([{**GOOD, "vehicle_id": None}]), "vehicle_id"),
        ("tachometer", corpus.tachometer([{"s": 5, "speed": None}]), "speed_kmh"),
        ("geo_attributes", corpus.geo_attributes([{"feature_id": "b", "source": None, "wkt": corpus.ROAD_LINK}]), "source"),
    ],
    ids=["trajectories", "tachometer", "geo_attributes"],
)
def test_missing_value_named_in_detail(dataset, table, column):
    _, rejects = _validate(dataset, table)
    assert rejects["reason"].tolist() == ["value_missing"]
    assert rejects["value"].isna().all()
    assert rejects["detail"].tolist() == [f"{column} is null or blank"]
    assert rejects["detail_params"].tolist() == [f'{{"column": "{column}"}}']


def test_plain_pandas_with_wkb_bytes():
    table = conform_table(
        "trajectories", corpus.trajectories([GOOD, {**GOOD, "trip_id": "B", "vehicle_id": "V404"}]), ContractSettings()
    )
    frame = table.to_pandas(ignore_metadata=True)
    accepted, rejects = validate_rows("trajectories", frame, ValidationContext(known_vehicle_ids={"V1"}))
    assert list(accepted["trip_id"]) == ["T1"]
    assert accepted.geometry.iloc[0].geom_type == "LineString"
    assert list(rejects["reason"]) == ["vehicle_not_in_master"]
