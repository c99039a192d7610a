"""Wording of the run report pages and chart titles: phase-time note, day warnings, method order."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest

from compute import charts, i18n
from compute import columns as c
from compute.plausibility import PlausibilityWarning

START = pd.Timestamp("2026-12-01 07:10:00", tz="UTC")
PHASES = [
    {"phase": "fetch", "seconds": 0.5, "skipped": False},
    {"phase": "validate", "seconds": 1.0, "skipped": False},
    {"phase": "compute", "seconds": 2.0, "skipped": False},
]
DAY_WARNING = PlausibilityWarning("tacho_outside_trips", "day", "", {"outside": 3, "rows": 10})


def _segments() -> pa.Table:
    frame = pd.DataFrame(
        {
            c.LINK_ID: ["a", None], c.AREA_ID: ["z", None], c.ROAD_CLASS: ["primary", None],
            c.CO2_TTW_KG: [1.0, 0.5], c.LENGTH_M: [1000.0, 500.0], c.LON_MID: [139.70, 139.71], c.LAT_MID: [35.68, 35.69],
        }
    )
    frame[c.T_START] = pd.Series([START] * 2).astype("datetime64[ms, UTC]")
    return pa.Table.from_pandas(frame, preserve_index=False)


def _report(warnings: list[PlausibilityWarning]) -> charts.RunReport:
    trips = pd.DataFrame(
        {
            c.TRIP_ID: ["t1", "t2", "t3"], c.VEHICLE_ID: ["v", "v", "v"], c.DISTANCE_KM: [5.0, 5.0, 5.0],
            c.CO2_TTW_KG: [0.5, 0.5, 0.5], c.CO2_G_PER_KM: [100.0, 100.0, 100.0],
            c.METHOD: ["default_table", "fuel_measured", "catalog_fe"], c.FUEL_L: [0.2, 0.2, 0.2],
        }
    )
    vehicles = pd.DataFrame({c.VEHICLE_ID: ["v"], c.VEHICLE_CLASS: ["passenger"], c.FUEL_TYPE: ["gasoline"]})
    inputs = charts.ReportInputs(
        run_date="2026-12-01", trips=trips, vehicles=vehicles,
        rejects=pd.DataFrame({c.DATASET: pd.Series([], dtype="str"), c.REASON: pd.Series([], dtype="str")}),
        segments=charts.aggregate_segments(_segments()), phases=PHASES, warnings=warnings,
    )
    return charts.build_run_report(inputs, lang="en")


@pytest.fixture(scope="module")
def quiet_day() -> charts.RunReport:
    return _report([])


class TestPhaseTable:
    @pytest.mark.parametrize(
        ("lang", "expected"),
        [("ja", "出力生成（output）と納品（publish）はこのレポートを書いた後に実行されるため"),
         ("en", "The output and publish phases run after this report is written")],
    )
    def test_note_on_later_phases(self, quiet_day: charts.RunReport, lang: str, expected: str) -> None:
        page = quiet_day.markdown[lang]

        heading_at = page.index(f"## {i18n.message('report.phases', lang)}")
        assert expected in page[heading_at:]


class TestNoWarningsLine:
    def test_no_day_warning_means_no_reference(self, quiet_day: charts.RunReport) -> None:
        assert "トリップ・車両単位の警告はありません。" in quiet_day.markdown["ja"]
        assert "日単位の警告は上に記載" not in quiet_day.markdown["ja"]
        assert "day warnings are listed above" not in quiet_day.markdown["en"]

    def test_day_warning_is_referred_to(self) -> None:
        report = _report([DAY_WARNING])

        assert "（日単位の警告は上に記載）" in report.markdown["ja"]
        assert "(day warnings are listed above)" in report.markdown["en"]


class TestTitles:
    def test_road_class_title(self) -> None:
        assert i18n.message("chart.road_class.title", "ja") == "道路種別ごとの CO2"

    def test_no_doubled_betsu(self) -> None:
        doubled = [key for key in i18n.keys() if "別別" in i18n.message(key, "ja")]

        assert doubled == []


class TestMethodChart:
    def test_bars_in_tier_order(self, quiet_day: charts.RunReport) -> None:
        values = json.loads(quiet_day.files()[charts.VALUES_FILE])["methods"]

        assert [row["label"] for row in values] == ["fuel_measured", "catalog_fe", "default_table"]

    def test_japanese_tick_names(self) -> None:
        labels = charts.category_labels(["fuel_measured", "unavailable"], "ja")

        assert labels == ["T1 実測燃料（fuel_measured）", "算定不能（unavailable）"]
