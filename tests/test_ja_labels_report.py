"""Japanese labels of the run report: class names, axis names, alt texts, brackets and reject meanings."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from matplotlib.figure import Figure

from compute import charts, i18n, plausibility
from compute import columns as c
from compute.plausibility import DayFacts, PlausibilityWarning
from compute.report import RunSummary, render_text
from tests.test_report_page_wording import _segments

OUTSIDE_DAY = PlausibilityWarning(
    "trips_outside_day", "day", "",
    {"outside": 3, "day": "2026-12-01", "timezone": "Asia/Tokyo", "dates": "2026-11-20 (2), 2027-06-01 (1)"},
)


def _inputs(rejected_reasons: list[str], warnings: list[PlausibilityWarning]) -> charts.ReportInputs:
    """Return the inputs of a day with two heavy-truck trips in range, the given trajectory rejects and warnings."""
    trips = pd.DataFrame(
        {
            c.TRIP_ID: ["t1", "t2"], c.VEHICLE_ID: ["v", "v"], c.DISTANCE_KM: [5.0, 8.0], c.CO2_TTW_KG: [4.0, 6.4],
            c.CO2_G_PER_KM: [800.0, 800.0], c.METHOD: ["gps_profile", "gps_profile"], c.FUEL_L: [1.5, 2.4],
        }
    )
    vehicles = pd.DataFrame({c.VEHICLE_ID: ["v"], c.VEHICLE_CLASS: ["heavy_truck"], c.FUEL_TYPE: ["diesel"]})
    rejects = pd.DataFrame({c.DATASET: ["trajectories"] * len(rejected_reasons), c.REASON: rejected_reasons}, dtype="str")
    return charts.ReportInputs(
        run_date="2026-12-01", trips=trips, vehicles=vehicles, rejects=rejects,
        segments=charts.aggregate_segments(_segments(), "Asia/Tokyo"), warnings=warnings,
    )


def _drawn_figure(monkeypatch: pytest.MonkeyPatch, draw: Any, inputs: charts.ReportInputs, lang: str) -> Figure:
    """Run one chart function and return the figure it handed to ``_png``."""
    figures: list[Figure] = []

    def keep(figure: Figure, font: str | None) -> bytes:
        figures.append(figure)
        return b""

    monkeypatch.setattr(charts, "_png", keep)
    draw(inputs, charts._trips_with_class(inputs.trips, inputs.vehicles), lang, None)
    assert len(figures) == 1
    return figures[0]


@pytest.fixture(scope="module")
def report() -> charts.RunReport:
    inputs = _inputs(["key_duplicated", "key_duplicated", "not_a_contract_code"], [OUTSIDE_DAY])
    return charts.build_run_report(inputs, lang="en")


class TestIntensityPanels:
    def test_japanese_title_names_class(self, monkeypatch: pytest.MonkeyPatch) -> None:
        figure = _drawn_figure(monkeypatch, charts._chart_intensity, _inputs([], []), "ja")

        assert figure.axes[0].get_title() == "大型貨物車（heavy_truck）：2 トリップ"

    def test_english_title_unchanged(self, monkeypatch: pytest.MonkeyPatch) -> None:
        figure = _drawn_figure(monkeypatch, charts._chart_intensity, _inputs([], []), "en")

        assert figure.axes[0].get_title() == "heavy_truck (n=2)"


class TestHourAxis:
    @pytest.mark.parametrize(("lang", "expected"), [("ja", "時刻（時）"), ("en", "Hour")])
    def test_x_axis_is_named(self, monkeypatch: pytest.MonkeyPatch, lang: str, expected: str) -> None:
        figure = _drawn_figure(monkeypatch, charts._chart_by_hour, _inputs([], []), lang)

        assert figure.axes[0].get_xlabel() == expected

    def test_bar_chart_without_axis_name(self) -> None:
        figure, _ = charts._draw_bar_chart(["a", "b"], [1.0, 2.0], "Title", "Rows", horizontal=True)

        assert figure.axes[0].get_ylabel() == ""


class TestReportPage:
    def test_alt_texts_are_titles(self, report: charts.RunReport) -> None:
        page = report.markdown["ja"]

        assert "![時間帯別 CO2（Asia/Tokyo）](co2_by_hour.png)" in page
        assert "![除外行の理由別件数](rejects.png)" in page
        assert "![co2_" not in page
        assert "![CO2 by hour (Asia/Tokyo)](co2_by_hour.png)" in report.markdown["en"]

    @pytest.mark.parametrize("lang", ["ja", "en"])
    def test_phase_note_names_run_day(self, report: charts.RunReport, lang: str) -> None:
        page = report.markdown[lang]

        assert "temp/20261201/_phases/output.json" in page
        assert "YYYYMMDD" not in page

    def test_day_warning_code_in_full_width(self, report: charts.RunReport) -> None:
        page = report.markdown["ja"]

        assert "。（`trips_outside_day`）" in page
        assert " (`trips_outside_day`)" not in page
        assert "確認してください。 (`trips_outside_day`)" not in page

    def test_day_warning_code_in_english(self, report: charts.RunReport) -> None:
        assert "check the dates of the delivery. (`trips_outside_day`)" in report.markdown["en"]

    def test_reject_row_has_japanese_meaning(self, report: charts.RunReport) -> None:
        meaning = i18n.message("contract.reason.key_duplicated.meaning", "ja")

        assert "| データセット | 理由コード | 意味 | 件数 |" in report.markdown["ja"]
        assert f"| trajectories | `key_duplicated` | {meaning} | 2 |" in report.markdown["ja"]

    def test_reject_row_has_english_meaning(self, report: charts.RunReport) -> None:
        meaning = i18n.message("contract.reason.key_duplicated.meaning", "en")

        assert f"| trajectories | `key_duplicated` | {meaning} | 2 |" in report.markdown["en"]

    def test_unknown_reason_has_empty_meaning(self, report: charts.RunReport) -> None:
        assert "| trajectories | `not_a_contract_code` |  | 1 |" in report.markdown["ja"]


class TestWarningTexts:
    def _out_of_range(self, vehicle_class: str) -> PlausibilityWarning:
        trips = pd.DataFrame(
            {c.TRIP_ID: ["t1"], c.VEHICLE_ID: ["v"], c.DISTANCE_KM: [10.0], c.CO2_G_PER_KM: [2000.0]}
        )
        vehicles = pd.DataFrame({c.VEHICLE_ID: ["v"], c.VEHICLE_CLASS: [vehicle_class]})
        settings = plausibility.PlausibilitySettings(intensity_ranges_g_per_km={vehicle_class: (100.0, 380.0)})
        (warning,) = [w for w in plausibility.check_day(trips, vehicles, DayFacts(), settings) if w.code == "intensity_out_of_range"]
        return warning

    def test_intensity_names_class_in_japanese(self) -> None:
        warning = self._out_of_range("passenger")

        assert "車両区分 乗用車（passenger） の想定範囲 100.0–380.0 g/km" in warning.text("ja")
        assert "of vehicle class passenger." in warning.text("en")
        assert warning.fields["vehicle_class"] == "passenger"

    def test_class_without_name_stays_code(self) -> None:
        warning = self._out_of_range("tractor")

        assert "車両区分 tractor の想定範囲" in warning.text("ja")

    def test_outside_day_dates_in_japanese(self) -> None:
        text = OUTSIDE_DAY.text("ja")

        assert "ではありません（2026-11-20 に 2 件、2027-06-01 に 1 件）。" in text
        assert "(" not in text
        assert OUTSIDE_DAY.fields["dates"] == "2026-11-20 (2), 2027-06-01 (1)"

    def test_unlisted_dates_counted(self) -> None:
        fields = {**OUTSIDE_DAY.fields, "outside": 1234, "dates": "2026-11-20 (1,200), 2026-11-21 (30), … (+2)"}
        warning = PlausibilityWarning("trips_outside_day", "day", "", fields)

        assert "（2026-11-20 に 1,200 件、2026-11-21 に 30 件、ほか 2 日）" in warning.text("ja")
        assert ": 2026-11-20 (1,200), 2026-11-21 (30), … (+2)." in warning.text("en")

    def test_dates_of_other_form_unchanged(self) -> None:
        warning = PlausibilityWarning("trips_outside_day", "day", "", {**OUTSIDE_DAY.fields, "dates": "2026-11-20"})

        assert "（2026-11-20）" in warning.text("ja")

    @pytest.mark.parametrize(("lang", "expected"), [("ja", "大型貨物車（heavy_truck）"), ("en", "heavy_truck")])
    def test_class_label_matches_charts(self, lang: str, expected: str) -> None:
        assert plausibility.vehicle_class_label("heavy_truck", lang) == expected
        assert charts.category_labels(["heavy_truck"], lang) == [expected]


class TestSummaryBrackets:
    PHASES = [{"phase": "validate", "seconds": 1.0, "skipped": False,
               "datasets": {"trajectories": {"rows_in": 1200, "rejected": 3}, "vehicles": {"rows_in": 5, "rejected": 0}}}]

    def test_japanese_counts_full_width(self) -> None:
        text = render_text(RunSummary.from_phases("2026-12-01", self.PHASES, ""), "ja")

        assert "入力行数: 1,205（trajectories 1,200、vehicles 5）" in text
        assert "除外行数（rejects）: 3（trajectories 3、vehicles 0）" in text

    def test_english_counts_unchanged(self) -> None:
        text = render_text(RunSummary.from_phases("2026-12-01", self.PHASES, ""), "en")

        assert "Rows in: 1,205  (trajectories 1,200, vehicles 5)" in text


class TestClusterLogLabels:
    @pytest.mark.parametrize("event", ["cluster_started", "cluster_closed", "cluster_cleanup", "cluster_cleanup_failed"])
    def test_japanese_label_spelling(self, event: str) -> None:
        from flows.daily import EVENT_LABELS

        label = EVENT_LABELS[event]["ja"]
        assert "クラスタ" in label
        assert "クラスター" not in label
