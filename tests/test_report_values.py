"""Chart values written beside the charts, and the fuel figures of the run summary."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import shapely

from compute import charts
from compute import columns as c
from compute.plausibility import PlausibilitySettings
from compute.report import RunSummary, render_markdown, render_text

START = pd.Timestamp("2026-12-01 07:10:00", tz="UTC")
RANGED_CLASS = next(iter(PlausibilitySettings().intensity_ranges_g_per_km))


def _segments() -> pa.Table:
    """Three segments on link "a" inside area "z" and one off every link, along one street in Tokyo."""
    frame = pd.DataFrame(
        {
            c.LINK_ID: ["a", "a", "a", None],
            c.AREA_ID: ["z", "z", "z", None],
            c.ROAD_CLASS: ["primary", "primary", "primary", None],
            c.CO2_TTW_KG: [1.0, 2.0, 0.5, 4.0],
            c.LENGTH_M: [1000.0, 2000.0, 500.0, 4000.0],
            c.LON_MID: [139.700, 139.701, 139.702, 139.730],
            c.LAT_MID: [35.680, 35.680, 35.680, 35.690],
        }
    )
    frame[c.T_START] = pd.Series([START] * 4).astype("datetime64[ms, UTC]")
    return pa.Table.from_pandas(frame, preserve_index=False)


def _geo() -> pa.Table:
    link = shapely.LineString([(139.699, 35.680), (139.703, 35.680)])
    area = shapely.box(139.695, 35.675, 139.705, 35.685)
    return pa.table({c.FEATURE_ID: ["a", "z"], c.GEOMETRY: [shapely.to_wkb(link), shapely.to_wkb(area)]})


@pytest.fixture(scope="module")
def report() -> charts.RunReport:
    """Report of a petrol car, a CNG car and an electric car, each with one 5 km trip."""
    trips = pd.DataFrame(
        {
            c.TRIP_ID: ["t1", "t2", "t3"],
            c.VEHICLE_ID: ["petrol", "cng", "ev"],
            c.DISTANCE_KM: [5.0, 5.0, 5.0],
            c.CO2_TTW_KG: [1.0, 0.9, 0.0],
            c.CO2_G_PER_KM: [200.0, 180.0, 0.0],
            c.METHOD: ["gps_profile", "gps_profile", "gps_profile"],
            c.FUEL_L: [0.43, np.nan, np.nan],
        }
    )
    vehicles = pd.DataFrame(
        {
            c.VEHICLE_ID: ["petrol", "cng", "ev"],
            c.VEHICLE_CLASS: [RANGED_CLASS] * 3,
            c.FUEL_TYPE: ["gasoline", "cng", "electric"],
        }
    )
    inputs = charts.ReportInputs(
        run_date="2026-12-01", trips=trips, vehicles=vehicles,
        rejects=pd.DataFrame({c.DATASET: ["trajectories"], c.REASON: ["speed_implausible"]}),
        segments=charts.aggregate_segments(_segments()), geo=_geo(),
    )
    return charts.build_run_report(inputs, lang="en")


class TestChartValuesFile:
    def test_every_chart_has_values(self, report: charts.RunReport) -> None:
        written = json.loads(report.files()[charts.VALUES_FILE])
        assert set(written) == set(report.charts)
        assert {"co2_map", "co2_intensity"} <= set(written)
        for name, rows in written.items():
            assert rows, name

    def test_map_values_are_the_sums(self, report: charts.RunReport) -> None:
        rows = json.loads(report.files()[charts.VALUES_FILE])["co2_map"]
        by_layer = {(row["layer"], row["key"]): row["value"] for row in rows}
        assert by_layer[("link", "a")] == pytest.approx(3.5)
        assert by_layer[("area", "z")] == pytest.approx(3.5)
        cells = [row["value"] for row in rows if row["layer"] == "cell"]
        assert cells == [pytest.approx(4.0)]

    def test_histogram_counts_judged_trips(self, report: charts.RunReport) -> None:
        rows = json.loads(report.files()[charts.VALUES_FILE])["co2_intensity"]
        assert {row["vehicle_class"] for row in rows} == {RANGED_CLASS}
        assert sum(row["value"] for row in rows) == 2  # the electric trip is not judged
        assert all(row["bin_low"] < row["bin_high"] for row in rows)

    def test_files_round_trip(self, report: charts.RunReport) -> None:
        again = charts.RunReport.from_files(report.run_date, report.files())
        for name, chart in report.charts.items():
            assert again.charts[name].rows() == chart.rows(), name


class TestFuelCoverage:
    def test_figures_count_trips_without_litres(self, report: charts.RunReport) -> None:
        assert report.figures["trips_without_fuel_l"] == {"cng": 1, "electric": 1}
        assert report.figures["fuel_l"] == pytest.approx(0.43)

    @pytest.fixture()
    def summary(self) -> RunSummary:
        phases = [
            {"phase": "compute", "skipped": False, "seconds": 1.0, "trips": 3, "distance_km": 15.0, "fuel_l": 0.43, "co2_ttw_kg": 1.9},
            {"phase": "output", "skipped": False, "seconds": 1.0, "warnings": {}},
        ]
        figures = {"trips": 3, "trips_without_fuel_l": {"cng": 1, "electric": 1}}
        return RunSummary.from_phases("2026-12-01", phases, "/out/", figures)

    def test_text_says_litres_cover_liquid_fuels(self, summary: RunSummary) -> None:
        ja, en = render_text(summary, "ja"), render_text(summary, "en")
        assert "液体燃料のみ" in ja
        assert "L の合計に含まれないトリップ: 2 件（CNG 1、電気 1）" in ja
        assert "liquid fuels only" in en
        assert "Trips not in the litres total: 2 (CNG 1, electric 1)" in en

    def test_markdown_says_it_too(self, summary: RunSummary) -> None:
        assert "CNG 1、電気 1" in render_markdown(summary, "ja")
        assert "CNG 1, electric 1" in render_markdown(summary, "en")

    def test_stale_figures_are_ignored(self) -> None:
        phases = [{"phase": "compute", "trips": 5}, {"phase": "output"}]
        summary = RunSummary.from_phases("2026-12-01", phases, "/out/", {"trips": 3, "trips_without_fuel_l": {"cng": 1}})
        assert summary.trips_without_fuel_l is None
        assert "液体燃料のみ" in render_text(summary, "ja")

    def test_survives_the_json_round_trip(self, summary: RunSummary) -> None:
        again = RunSummary.from_dict(json.loads(json.dumps(summary.as_dict())))
        assert again.trips_without_fuel_l == {"cng": 1, "electric": 1}


class TestTableArtifactRows:
    """Table artifacts keep the largest values of a long chart; chart_values.json keeps all rows."""

    def test_short_chart_is_unchanged(self) -> None:
        from flows.artifacts import table_rows

        rows = [{"label": "a", "value": 1.0}, {"label": "b", "value": 3.0}]
        assert table_rows("co2_by_hour", rows, "ja") == (rows, "co2_by_hour")

    def test_long_chart_keeps_the_largest_values(self) -> None:
        from flows.artifacts import ARTIFACT_ROWS_MAX, table_rows

        n = ARTIFACT_ROWS_MAX * 3 + 7
        rows = [{"layer": "link", "key": f"L{i}", "value": float((i * 37) % n)} for i in range(n)]
        rows[5]["value"] = None
        rows[6]["value"] = float("nan")
        kept, description = table_rows("co2_map", rows, "en")
        assert len(kept) == ARTIFACT_ROWS_MAX
        values = [row["value"] for row in kept]
        assert values == sorted(values, reverse=True)
        assert values[0] == max(r["value"] for r in rows if isinstance(r["value"], float) and r["value"] == r["value"])
        assert f"{n:,} rows" in description
        assert "chart_values.json" in description
        _, japanese = table_rows("co2_map", rows, "ja")
        assert f"{n:,} 行" in japanese
