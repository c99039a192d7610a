"""Balance of rows, the manifest form of the summary, and the ja/en report."""

from __future__ import annotations

from pathlib import Path

import contract_corpus as corpus
import pandas as pd
import pytest

from compute.contract import (
    BalanceError,
    ContractError,
    ContractSettings,
    DatasetSummary,
    ErrorCode,
    FlagCode,
    ReasonCode,
    ValidationContext,
    ValidationSummary,
    check_balance,
    conform_table,
    render_detail,
    render_details,
    render_report,
    to_frame,
    validate_rows,
)
from compute.i18n import message

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _broken_day_summary() -> tuple[ValidationSummary, pd.DataFrame]:
    summary = ValidationSummary()
    rejects = []
    rows = [corpus.GOOD_TRIP, {**corpus.GOOD_TRIP, "trip_id": "T9", "vehicle_id": "V404"}]
    tables = {**corpus.good_day(), "trajectories": corpus.trajectories(rows)}
    for dataset, table in tables.items():
        frame = to_frame(dataset, conform_table(dataset, table, ContractSettings()))
        accepted, rejected = validate_rows(dataset, frame, ValidationContext(known_vehicle_ids={"V1", "V2"}))
        summary.record(dataset, len(frame), accepted, rejected)
        rejects.append(rejected)
    return summary, pd.concat(rejects, ignore_index=True)


class TestBalance:
    def test_holds_for_a_validated_day(self):
        summary, _ = _broken_day_summary()
        check_balance(summary)
        counts = summary.datasets["trajectories"]
        assert (counts.rows_in, counts.accepted, counts.rejected) == (2, 1, 1)
        assert counts.by_reason == {"vehicle_not_in_master": 1}

    def test_lost_row_raises(self):
        summary = ValidationSummary()
        summary.add(DatasetSummary("tachometer", rows_in=10, accepted=8, rejected=1, by_reason={"fuel_negative": 1}))
        with pytest.raises(BalanceError, match=r"tachometer: 10 rows in, but 8 accepted \+ 1 rejected = 9"):
            check_balance(summary)

    def test_reason_counts_must_match(self):
        summary = ValidationSummary()
        summary.add(DatasetSummary("vehicles", rows_in=3, accepted=1, rejected=2, by_reason={"fuel_type_unknown": 1}))
        with pytest.raises(BalanceError, match=r"vehicles: 2 rows rejected, but the reasons count 1"):
            check_balance(summary)

    def test_partitions_add_up(self):
        summary = ValidationSummary()
        summary.add(DatasetSummary("vehicles", rows_in=3, accepted=2, rejected=1, by_reason={"key_missing": 1}))
        summary.add(DatasetSummary("vehicles", rows_in=2, accepted=1, rejected=1, by_reason={"key_missing": 1}))
        assert summary.datasets["vehicles"].by_reason == {"key_missing": 2}
        assert summary.datasets["vehicles"].rows_in == 5
        check_balance(summary)

    def test_manifest_round_trip(self):
        summary, _ = _broken_day_summary()
        summary.mark_absent("geo_attributes")
        summary.add_error(ContractError(ErrorCode.DATASET_MISSING, "vehicles", "", "vehicles/ with Parquet files", "no files"))
        data = summary.to_dict()
        assert data["ok"] is False
        assert data["datasets"]["trajectories"]["balanced"] is True
        back = ValidationSummary.from_dict(data)
        assert back.to_dict() == data


class TestReport:
    @pytest.mark.parametrize("lang", ["ja", "en"])
    def test_lists_reason_with_example_and_fix(self, lang):
        summary, rejects = _broken_day_summary()
        text = render_report(summary, lang, render_details(rejects, lang))
        assert "`vehicle_not_in_master`" in text
        assert "`T9`" in text
        assert f"`V404 ({render_detail('vehicle_unknown', {'accepted_vehicles': 2}, lang)})`" in text
        assert message("contract.reason.vehicle_not_in_master.action", lang) in text
        assert message("contract.report.title", lang) in text

    def test_dataset_error_first(self):
        summary = ValidationSummary()
        summary.add_error(
            ContractError(ErrorCode.COLUMN_MISSING, "vehicles", "fuel_type", "fuel_type (string)", "['vehicle_id']")
        )
        text = render_report(summary, "ja")
        assert "データセット単位のエラー" in text
        assert "必須の列 fuel_type がありません" in text

    def test_flags_and_absent_dataset(self):
        summary = ValidationSummary()
        rows = [{"feature_id": "r", "wkt": corpus.URBAN_AREA, "area_type": "retail"}]
        frame = to_frame("geo_attributes", conform_table("geo_attributes", corpus.geo_attributes(rows), ContractSettings()))
        accepted, rejects = validate_rows("geo_attributes", frame, ValidationContext())
        summary.record("geo_attributes", len(frame), accepted, rejects)
        summary.mark_absent("tachometer")
        text = render_report(summary, "en", rejects)
        assert "| tachometer | absent |" in text
        assert "`area_type_unknown` | 1 |" in text
        assert "`r`" in text

    def test_pipe_in_value_escaped(self):
        summary = ValidationSummary()
        summary.add(DatasetSummary("vehicles", rows_in=1, accepted=0, rejected=1, by_reason={"fuel_type_unknown": 1}))
        examples = pd.DataFrame(
            {"dataset": ["vehicles"], "row_key": ["V|1"], "reason": ["fuel_type_unknown"], "value": ["a|b"], "detail": [None]}
        )
        text = render_report(summary, "en", examples)
        assert "`V\\|1`" in text
        assert "`a\\|b`" in text


class TestCatalogue:
    @pytest.mark.parametrize("lang", ["ja", "en"])
    def test_every_code_has_texts(self, lang):
        for code in ReasonCode:
            assert message(f"contract.reason.{code.value}.meaning", lang)
            assert message(f"contract.reason.{code.value}.action", lang)
        for flag in FlagCode:
            assert message(f"contract.flag.{flag.value}.meaning", lang)
        for error in ErrorCode:
            assert message(f"contract.error.{error.value}.hint", lang, dataset="d", column="c", expected="e", actual="a")

    @pytest.mark.parametrize("path", ["contract.md", "ja/contract.md"])
    def test_docs_list_every_code(self, path):
        text = (DOCS / path).read_text(encoding="utf-8")
        for code in [*ReasonCode, *FlagCode, *ErrorCode]:
            assert f"`{code.value}`" in text, f"{path} does not document {code.value}"
