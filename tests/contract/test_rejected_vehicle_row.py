"""Trips and tachometer records of a vehicle whose own master row was rejected.

They are still rejected as ``vehicle_not_in_master``, because the vehicle is not among the
accepted vehicles. Their detail names the reason of the rejected master row, so the operator
corrects that row instead of adding a vehicle that is already in the master.
"""

from __future__ import annotations

import json

import contract_corpus as corpus
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from compute.contract import (
    ContractSettings,
    ValidationContext,
    ValidationSummary,
    conform_table,
    find_duplicate_keys,
    rejected_vehicle_reasons,
    render_details,
    render_report,
    to_frame,
    validate_rows,
)
from compute.i18n import message

SETTINGS = ContractSettings()
MASTER_ROWS = [
    {"vehicle_id": "V1", "vehicle_class": "light_truck", "fuel_type": "diesel"},
    {"vehicle_id": "V2", "vehicle_class": "passenger", "fuel_type": "hybrid", "model_year": 0},
    {"vehicle_id": "V3", "vehicle_class": "bus", "fuel_type": "diesel", "test_cycle": "WLTP"},
]
TRIPS = [
    corpus.GOOD_TRIP,
    {**corpus.GOOD_TRIP, "trip_id": "T2", "vehicle_id": "V2"},
    {**corpus.GOOD_TRIP, "trip_id": "T3", "vehicle_id": "V3"},
    {**corpus.GOOD_TRIP, "trip_id": "T4", "vehicle_id": "V404"},
]
RECORDS = [
    {"s": 0, "speed": 10.0, "vehicle_id": "V1"},
    {"s": 0, "speed": 10.0, "vehicle_id": "V2"},
    {"s": 1, "speed": 12.0, "vehicle_id": "V2"},
    {"s": 0, "speed": 10.0, "vehicle_id": "V404"},
]


def _validate(dataset: str, table: pa.Table, context: ValidationContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = to_frame(dataset, conform_table(dataset, table, SETTINGS))
    context.duplicated_keys = {dataset: find_duplicate_keys(dataset, [frame])}
    accepted, rejects = validate_rows(dataset, frame, context)
    assert len(accepted) + len(rejects) == len(frame)
    return accepted, rejects


def _master_context(rows: list[dict]) -> ValidationContext:
    """Validate a vehicles master and return the context of the trips and records, as a daily run builds it."""
    accepted, rejects = _validate("vehicles", corpus.vehicles(rows), ValidationContext(settings=SETTINGS))
    return ValidationContext(
        known_vehicle_ids=accepted["vehicle_id"].to_numpy(dtype=object),
        rejected_vehicle_reasons=rejected_vehicle_reasons(rejects),
        settings=SETTINGS,
    )


def _by_key(rejects: pd.DataFrame) -> dict[str, pd.Series]:
    return {row["row_key"]: row for _, row in rejects.iterrows()}


class TestRejectedVehicleReasons:
    def test_reason_per_rejected_row(self) -> None:
        _, rejects = _validate("vehicles", corpus.vehicles(MASTER_ROWS), ValidationContext(settings=SETTINGS))

        assert rejected_vehicle_reasons(rejects) == {"V2": "value_out_of_range", "V3": "test_cycle_unknown"}

    def test_duplicated_and_null_keys(self) -> None:
        rows = [
            {"vehicle_id": "V1", "vehicle_class": "light_truck", "fuel_type": "diesel"},
            {"vehicle_id": "V1", "vehicle_class": "bus", "fuel_type": "diesel"},
            {"vehicle_id": None, "vehicle_class": "bus", "fuel_type": "diesel"},
        ]
        _, rejects = _validate("vehicles", corpus.vehicles(rows), ValidationContext(settings=SETTINGS))

        assert len(rejects) == 3
        assert rejected_vehicle_reasons(rejects) == {"V1": "key_duplicated"}

    def test_no_rejects(self) -> None:
        _, rejects = _validate("vehicles", corpus.vehicles(), ValidationContext(settings=SETTINGS))

        assert rejected_vehicle_reasons(rejects) == {}


class TestTripsOfRejectedVehicle:
    def test_reason_code_kept(self) -> None:
        accepted, rejects = _validate("trajectories", corpus.trajectories(TRIPS), _master_context(MASTER_ROWS))

        assert accepted["trip_id"].tolist() == ["T1"]
        assert rejects.set_index("row_key")["reason"].to_dict() == {
            "T2": "vehicle_not_in_master",
            "T3": "vehicle_not_in_master",
            "T4": "vehicle_not_in_master",
        }

    def test_detail_names_master_reason(self) -> None:
        _, rejects = _validate("trajectories", corpus.trajectories(TRIPS), _master_context(MASTER_ROWS))
        by_key = _by_key(rejects)

        assert by_key["T2"]["detail_kind"] == "vehicle_row_rejected"
        assert json.loads(by_key["T2"]["detail_params"]) == {"master_reason": "value_out_of_range"}
        assert json.loads(by_key["T3"]["detail_params"]) == {"master_reason": "test_cycle_unknown"}
        assert by_key["T2"]["detail"] == (
            "the vehicle's row in vehicles was rejected as value_out_of_range; correct that row of the vehicles master"
        )

    def test_japanese_detail_says_correct_the_row(self) -> None:
        _, rejects = _validate("trajectories", corpus.trajectories(TRIPS), _master_context(MASTER_ROWS))
        japanese = dict(zip(rejects["row_key"], render_details(rejects, "ja")["detail"], strict=True))

        assert japanese["T3"] == (
            "vehicles (車両マスタ) にあるこの車両の行は、理由コード test_cycle_unknown で除外されました。vehicles のその行を直してください"
        )
        assert "追加" not in japanese["T3"]

    def test_missing_vehicle_keeps_count_detail(self) -> None:
        _, rejects = _validate("trajectories", corpus.trajectories(TRIPS), _master_context(MASTER_ROWS))
        missing = _by_key(rejects)["T4"]

        assert missing["detail_kind"] == "vehicle_unknown"
        assert missing["detail"] == "not among the 1 accepted vehicles"

    def test_context_without_rejected_rows(self) -> None:
        context = ValidationContext(known_vehicle_ids=np.array(["V1"], dtype=object), settings=SETTINGS)
        _, rejects = _validate("trajectories", corpus.trajectories(TRIPS), context)

        assert set(rejects["detail_kind"]) == {"vehicle_unknown"}


class TestRecordsOfRejectedVehicle:
    def test_detail_names_master_reason(self) -> None:
        accepted, rejects = _validate("tachometer", corpus.tachometer(RECORDS), _master_context(MASTER_ROWS))

        assert accepted["vehicle_id"].tolist() == ["V1"]
        assert rejects["reason"].tolist() == ["vehicle_not_in_master"] * 3
        assert rejects["detail_kind"].tolist() == ["vehicle_row_rejected", "vehicle_row_rejected", "vehicle_unknown"]
        assert rejects["detail"].iloc[0].startswith("the vehicle's row in vehicles was rejected as value_out_of_range")


class TestReportOfRejectedVehicle:
    @pytest.mark.parametrize("lang", ["ja", "en"])
    def test_report_shows_master_reason(self, lang: str) -> None:
        context = _master_context(MASTER_ROWS)
        table = corpus.trajectories([{**corpus.GOOD_TRIP, "trip_id": "T2", "vehicle_id": "V2"}])
        accepted, rejects = _validate("trajectories", table, context)
        summary = ValidationSummary()
        summary.record("trajectories", table.num_rows, accepted, rejects)

        text = render_report(summary, lang, render_details(rejects, lang))

        assert render_details(rejects, lang)["detail"].iloc[0] in text
        assert message("contract.reason.vehicle_not_in_master.action", lang) in text

    def test_action_covers_rejected_row(self) -> None:
        assert "vehicles のその行を直して" in message("contract.reason.vehicle_not_in_master.action", "ja")
        assert "correct that row of vehicles" in message("contract.reason.vehicle_not_in_master.action", "en")
        assert "除外" in message("contract.reason.vehicle_not_in_master.meaning", "ja")
        assert "rejected" in message("contract.reason.vehicle_not_in_master.meaning", "en")
