"""The printed run summary: method tiers, the note under the litres total, times of skipped phases."""

from __future__ import annotations

from typing import Any

import pytest

from compute.report import RunSummary, render_markdown, render_text

COMPUTE_RECORD: dict[str, Any] = {
    "phase": "compute", "skipped": False, "seconds": 1.5, "trips": 109, "distance_km": 10.0, "fuel_l": 5.0,
    "co2_ttw_kg": 12.0, "matched_share": 0.9,
    # Sorted by code, as the compute manifest stores them.
    "methods": {"catalog_fe": 19, "default_table": 5, "fuel_measured": 40, "gps_profile": 5, "tacho_profile": 40},
}


def _summary(*records: dict[str, Any], figures: dict[str, Any] | None = None) -> RunSummary:
    return RunSummary.from_phases("2026-12-01", list(records), "var/client/output/20261201/", figures)


class TestMethodsInTierOrder:
    def test_japanese_names_in_tier_order(self) -> None:
        text = render_text(_summary(COMPUTE_RECORD), "ja")

        line = next(line for line in text.splitlines() if "算定手法" in line)
        assert line.endswith(
            "T1 実測燃料（fuel_measured） 40, T2 タコグラフ速度（tacho_profile） 40, T3 GPS 走行（gps_profile） 5, "
            "T4 カタログ燃費（catalog_fe） 19, T5 既定値表（default_table） 5"
        )

    def test_english_names_in_tier_order(self) -> None:
        text = render_text(_summary(COMPUTE_RECORD), "en")

        line = next(line for line in text.splitlines() if "method tier" in line)
        assert line.endswith(
            "T1 measured fuel (fuel_measured) 40, T2 tachograph speed (tacho_profile) 40, T3 GPS speed profile (gps_profile) 5, "
            "T4 catalog fuel economy (catalog_fe) 19, T5 default table (default_table) 5"
        )

    def test_unknown_code_goes_last(self) -> None:
        record = {**COMPUTE_RECORD, "methods": {"a_new_method": 2, "unavailable": 1, "catalog_fe": 3}}

        line = next(line for line in render_text(_summary(record), "en").splitlines() if "method tier" in line)

        assert line.endswith("T4 catalog fuel economy (catalog_fe) 3, not estimated (unavailable) 1, a_new_method 2")

    def test_json_keeps_codes(self) -> None:
        methods = _summary(COMPUTE_RECORD).as_dict()["methods"]

        assert methods == COMPUTE_RECORD["methods"]

    def test_markdown_table_in_tier_order(self) -> None:
        markdown = render_markdown(_summary(COMPUTE_RECORD), "ja")

        assert markdown.index("T1 実測燃料（fuel_measured）") < markdown.index("T4 カタログ燃費（catalog_fe）")
        assert markdown.index("T4 カタログ燃費（catalog_fe）") < markdown.index("T5 既定値表（default_table）")


class TestFuelNote:
    @pytest.mark.parametrize("lang", ["ja", "en"])
    def test_note_without_output_figures(self, lang: str) -> None:
        # A run of --phases validate,compute: output has not counted the CNG and electric trips.
        text = render_text(_summary(COMPUTE_RECORD), lang)

        lines = text.splitlines()
        fuel_at = next(i for i, line in enumerate(lines) if " L" in line and ("燃料" in line or "fuel" in line))
        expected = "L の合計に含まれません" if lang == "ja" else "not in the litres total"
        assert expected in lines[fuel_at + 1]

    def test_note_with_output_figures(self) -> None:
        output = {"phase": "output", "skipped": True, "seconds": 2.0}
        figures = {"trips": 109, "trips_without_fuel_l": {"cng": 16, "electric": 32}}

        lines = render_text(_summary(COMPUTE_RECORD, output, figures=figures), "ja").splitlines()

        fuel_at = next(i for i, line in enumerate(lines) if line.strip().startswith("総燃料消費量"))
        assert lines[fuel_at + 1].strip().startswith("L の合計に含まれないトリップ: 48 件（CNG 16、電気 32）")

    def test_note_when_no_trip_is_left_out(self) -> None:
        output = {"phase": "output", "skipped": False, "seconds": 2.0}
        figures = {"trips": 109, "trips_without_fuel_l": {}}

        lines = render_text(_summary(COMPUTE_RECORD, output, figures=figures), "en").splitlines()

        fuel_at = next(i for i, line in enumerate(lines) if line.strip().startswith("Total fuel"))
        assert lines[fuel_at + 1].strip() == "Every trip is in the litres total (no CNG or electric trip)"

    def test_count_from_compute_record(self) -> None:
        record = {**COMPUTE_RECORD, "trips_without_fuel_l": {"cng": 3}}

        summary = _summary(record)

        assert summary.trips_without_fuel_l == {"cng": 3}
        assert "3 件（CNG 3）" in render_text(summary, "ja")

    def test_markdown_has_note(self) -> None:
        markdown = render_markdown(_summary(COMPUTE_RECORD), "en")

        assert "CNG and electric trips are not in the litres total" in markdown


class TestSkippedPhaseSeconds:
    def test_skipped_phase_spent_no_time(self) -> None:
        # The record of a skipped phase carries the counts of its marker, seconds included.
        fetch = {"phase": "fetch", "skipped": True, "seconds": 12.5, "objects": 4}
        validate = {"phase": "validate", "skipped": False, "seconds": 3.25}

        phases = _summary(fetch, validate).as_dict()["phases"]

        assert phases[0] == {"phase": "fetch", "skipped": True, "seconds": 0.0, "earlier_run_seconds": 12.5}
        assert phases[1] == {"phase": "validate", "skipped": False, "seconds": 3.25}

    def test_round_trip_through_dict(self) -> None:
        fetch = {"phase": "fetch", "skipped": True, "seconds": 12.5}

        again = RunSummary.from_dict(_summary(fetch).as_dict())

        assert again.as_dict()["phases"] == [{"phase": "fetch", "skipped": True, "seconds": 0.0, "earlier_run_seconds": 12.5}]

    def test_marker_without_seconds(self) -> None:
        fetch = {"phase": "fetch", "skipped": True, "seconds": 0.0}

        phases = _summary(fetch).as_dict()["phases"]

        assert phases == [{"phase": "fetch", "skipped": True, "seconds": 0.0, "earlier_run_seconds": None}]


class TestDeliveryNotes:
    FETCH = {"phase": "fetch", "skipped": False, "seconds": 0.4}
    VALIDATE = {"phase": "validate", "skipped": False, "seconds": 1.0,
                "datasets": {"trajectories": {"rows_in": 10, "rejected": 1}}}

    def test_rows_left_out_without_validate(self) -> None:
        text = render_text(_summary(self.FETCH), "ja")
        assert "入力行数" not in text
        assert "入力行数: 10" in render_text(_summary(self.FETCH, self.VALIDATE), "ja")

    @pytest.mark.parametrize(("lang", "words"), [("ja", "前回の納品（2026-12-02T03:40:00+00:00）"), ("en", "earlier delivery (2026-12-02T03:40:00+00:00)")])
    def test_outdated_delivery_named_first(self, lang: str, words: str) -> None:
        summary = _summary(self.FETCH)
        summary.delivery = {"status": "outdated", "url": "s3://out/20261201/", "delivered_at": "2026-12-02T03:40:00+00:00"}
        lines = render_text(RunSummary.from_dict(summary.as_dict()), lang).splitlines()
        assert words in lines[1]
        assert "lm-co2 run --date 2026-12-01" in lines[1]
        assert words in render_markdown(summary, lang)

    def test_stopped_redelivery(self) -> None:
        summary = _summary(self.FETCH)
        summary.delivery = {"status": "incomplete", "url": "s3://out/20261201/", "delivered_at": ""}
        assert "redelivering" in render_text(summary, "en").splitlines()[1]

    def test_withdrawn_files_counted(self) -> None:
        publish = {"phase": "publish", "skipped": False, "seconds": 0.3, "withdrawn": 3}
        summary = RunSummary.from_dict(_summary(self.FETCH, publish).as_dict())
        assert "以前のファイルが 3 件残っています" in render_text(summary, "ja")
        assert summary.withdrawn_files() == 3

    @pytest.mark.parametrize(("lang", "words"), [("ja", "以前のファイル 2 件を出力先から削除しました"), ("en", "2 files of an earlier delivery")])
    def test_deleted_files_named(self, lang: str, words: str) -> None:
        publish = {"phase": "publish", "skipped": False, "seconds": 0.3, "deleted": 2}
        summary = RunSummary.from_dict(_summary(self.FETCH, publish).as_dict())
        assert words in render_text(summary, lang)
        assert summary.deleted_files() == 2
