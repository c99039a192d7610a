"""The daily flow on the public real days: results, report images and plausibility warnings."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from compute import charts
from compute import columns as c
from compute.plausibility import DEFAULT_INTENSITY_RANGES_G_PER_KM, PlausibilitySettings
from tests.real.conftest import RealRun

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rebuild_report(run: RealRun) -> charts.RunReport:
    """Build the report again from the run's files through the public chart functions."""
    timezone = report_timezone(run)
    parts = [
        charts.aggregate_segments(pq.read_table(path, columns=list(charts.SEGMENT_REPORT_COLUMNS)), timezone)
        for path in sorted((run.temp / "segments").glob("*.parquet"))
    ]
    geo = pq.read_table(run.temp / "validated" / "geo_attributes", columns=list(charts.GEO_REPORT_COLUMNS))
    vehicles = pq.read_table(run.temp / "validated" / "vehicles", columns=[c.VEHICLE_ID, c.VEHICLE_CLASS]).to_pandas()
    inputs = charts.ReportInputs(
        run_date=run.run_date.isoformat(),
        trips=run.table("trips"),
        vehicles=vehicles,
        rejects=run.table("rejects"),
        segments=charts.merge_aggregates(parts, timezone),
        geo=geo,
    )
    delivered = json.loads((run.temp / "_phases" / "output.json").read_text())["counts"]["chart_language"]
    return charts.build_run_report(inputs, lang=delivered)


def report_timezone(run: RealRun) -> str:
    """The time zone whose hours the run's report counted, as its output record keeps it."""
    return str(json.loads((run.temp / "_phases" / "output.json").read_text())["counts"]["report_timezone"])


def vehicle_classes(run: RealRun) -> pd.Series:
    vehicles = pq.read_table(run.temp / "validated" / "vehicles").to_pandas()
    return vehicles.set_index(c.VEHICLE_ID)[c.VEHICLE_CLASS]


class TestPorto:
    def test_all_phases_ran(self, real_runs: dict[str, RealRun]) -> None:
        phases = real_runs["porto"].result["phases"]
        assert [p["phase"] for p in phases] == ["fetch", "validate", "compute", "output", "publish"]
        assert not any(p["skipped"] for p in phases)
        assert (real_runs["porto"].output / "_SUCCESS").exists()

    def test_trips_and_rejects(self, real_runs: dict[str, RealRun]) -> None:
        run = real_runs["porto"]
        trips, rejects = run.table("trips"), run.table("rejects")
        assert run.result["rows_in"]["trajectories"] == 991
        assert len(trips) + (rejects[c.DATASET] == "trajectories").sum() == 991
        assert set(rejects[c.REASON]) <= {"speed_implausible"}

    def test_most_distance_matched(self, real_runs: dict[str, RealRun]) -> None:
        assert real_runs["porto"].result["matched_share"] > 0.6

    def test_intensity_of_diesel_cars(self, real_runs: dict[str, RealRun]) -> None:
        run = real_runs["porto"]
        trips = run.table("trips")
        low, high = DEFAULT_INTENSITY_RANGES_G_PER_KM["passenger"]
        judged = trips[trips[c.DISTANCE_KM] >= PlausibilitySettings().min_trip_distance_km]
        in_range = judged[c.CO2_G_PER_KM].between(low, high)
        assert set(vehicle_classes(run)) == {"passenger"}
        assert low <= judged[c.CO2_G_PER_KM].median() <= high
        assert in_range.mean() >= 0.95

    def test_gps_jumps_replaced(self, real_runs: dict[str, RealRun]) -> None:
        trips = real_runs["porto"].table("trips")
        flagged = trips[trips[c.QUALITY_FLAGS].str.contains("gps_jump_replaced")]
        assert 0 < len(flagged) < len(trips)
        assert flagged[c.CO2_G_PER_KM][flagged[c.DISTANCE_KM] >= 0.5].median() < DEFAULT_INTENSITY_RANGES_G_PER_KM["passenger"][1]


class TestReportFiles:
    def test_images_delivered_and_listed(self, real_runs: dict[str, RealRun]) -> None:
        run = real_runs["porto"]
        manifest = json.loads((run.output / "manifest.json").read_text(encoding="utf-8"))
        listed = {record["path"] for record in manifest["objects"]}
        for name in charts.CHART_ORDER:
            path = run.output / "report" / f"{name}.png"
            assert path.read_bytes().startswith(PNG_MAGIC), name
            assert f"report/{name}.png" in listed
        assert {"report/report.ja.md", "report/report.en.md"} <= listed

    def test_pages_link_every_image(self, real_runs: dict[str, RealRun]) -> None:
        run = real_runs["porto"]
        page = (run.processed / "report" / "report.ja.md").read_text(encoding="utf-8")
        assert page.startswith("# lm-co2 日次レポート 2013-07-01")
        for name in charts.CHART_ORDER:
            assert f"({name}.png)" in page

    def test_artifact_from_delivered_files(self, real_runs: dict[str, RealRun]) -> None:
        folder = real_runs["porto"].processed / "report"
        report = charts.RunReport.from_files("2013-07-01", {p.name: p.read_bytes() for p in folder.iterdir()})
        inline = report.artifact_markdown("ja")
        assert sorted(report.charts) == sorted(charts.CHART_ORDER)
        assert inline.count("data:image/png;base64,") == len(charts.CHART_ORDER)

    def test_chart_language_follows_font(self, real_runs: dict[str, RealRun]) -> None:
        output_marker = json.loads((real_runs["porto"].temp / "_phases" / "output.json").read_text(encoding="utf-8"))
        expected = "ja" if charts.find_japanese_font() else "en"
        assert output_marker["counts"]["chart_language"] == expected


@pytest.fixture(scope="module")
def porto(real_runs: dict[str, RealRun]) -> tuple[RealRun, charts.RunReport]:
    """The Porto run and its report rebuilt from the run's files."""
    return real_runs["porto"], rebuild_report(real_runs["porto"])


class TestReportContent:
    """Plotted values against aggregates computed another way from the delivered outputs."""

    def test_by_hour_equals_segments(self, porto: tuple[RealRun, charts.RunReport]) -> None:
        run, report = porto
        segments = pd.concat(pd.read_parquet(p) for p in (run.temp / "segments").glob("*.parquet"))
        hours = segments[c.T_START].dt.tz_convert(report_timezone(run)).dt.hour
        expected = segments.groupby(hours)[c.CO2_TTW_KG].sum().reindex(range(24), fill_value=0.0)
        plotted = report.charts["co2_by_hour"].values
        np.testing.assert_allclose(plotted["value"].to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-9)
        assert plotted["value"].sum() == pytest.approx(run.table("trips")[c.CO2_TTW_KG].sum(), rel=1e-9)

    def test_by_road_class_equals_breakdown(self, porto: tuple[RealRun, charts.RunReport]) -> None:
        run, report = porto
        breakdown = run.table("breakdown")
        expected = breakdown[breakdown[c.DIMENSION] == c.ROAD_CLASS].groupby(c.CATEGORY)[c.CO2_TTW_KG].sum()
        plotted = report.charts["co2_by_road_class"].values.set_index("label")["value"]
        pd.testing.assert_series_equal(plotted.sort_index(), expected.sort_index(), check_names=False, rtol=1e-9)

    def test_by_vehicle_class_equals_trips(self, porto: tuple[RealRun, charts.RunReport]) -> None:
        run, report = porto
        trips = run.table("trips")
        expected = trips.groupby(trips[c.VEHICLE_ID].map(vehicle_classes(run)))[c.CO2_TTW_KG].sum()
        plotted = report.charts["co2_by_vehicle_class"].values.set_index("label")["value"]
        pd.testing.assert_series_equal(plotted.sort_index(), expected.sort_index(), check_names=False, rtol=1e-9)

    def test_methods_and_rejects_counted(self, porto: tuple[RealRun, charts.RunReport]) -> None:
        run, report = porto
        methods = report.charts["methods"].values.set_index("label")["value"]
        assert methods.to_dict() == {k: float(v) for k, v in run.table("trips")[c.METHOD].value_counts().items()}
        rejects = report.charts["rejects"].values
        assert rejects["value"].sum() == len(run.table("rejects"))

    def test_matched_share_equals_compute(self, porto: tuple[RealRun, charts.RunReport]) -> None:
        run, report = porto
        values = report.charts["matched_share"].values.set_index("label")["value"]
        assert values["matched"] / values.sum() == pytest.approx(run.result["matched_share"], abs=1e-5)
        assert values.sum() == pytest.approx(run.table("trips")[c.DISTANCE_KM].sum(), rel=1e-6)

    def test_intensity_counts_trips(self, porto: tuple[RealRun, charts.RunReport]) -> None:
        run, report = porto
        trips = run.table("trips")
        judged = trips[trips[c.DISTANCE_KM] >= PlausibilitySettings().min_trip_distance_km]
        assert report.charts["co2_intensity"].values["value"].sum() == len(judged)

    def test_map_colours_links_by_co2(self, porto: tuple[RealRun, charts.RunReport]) -> None:
        run, report = porto
        segments = pd.concat(pd.read_parquet(p, columns=[c.LINK_ID, c.CO2_TTW_KG]) for p in (run.temp / "segments").glob("*.parquet"))
        per_link = segments.dropna(subset=[c.LINK_ID]).groupby(c.LINK_ID)[c.CO2_TTW_KG].sum()
        drawn = report.charts["co2_map"].values
        links = drawn[drawn["layer"] == "link"].set_index("key")["value"]
        assert len(links) == len(per_link)
        np.testing.assert_allclose(links.sort_index().to_numpy(), per_link.sort_index().to_numpy(), rtol=1e-9)

    def test_delivered_png_is_this_chart(self, porto: tuple[RealRun, charts.RunReport]) -> None:
        run, report = porto
        assert report.chart_language == json.loads((run.temp / "_phases" / "output.json").read_text())["counts"]["chart_language"]
        assert (run.processed / "report" / "co2_by_hour.png").read_bytes() == report.charts["co2_by_hour"].png

    def test_days_give_different_images(self, real_runs: dict[str, RealRun]) -> None:
        for name in ("co2_by_hour", "co2_map", "co2_intensity"):
            porto = (real_runs["porto"].processed / "report" / f"{name}.png").read_bytes()
            helsinki = (real_runs["helsinki"].processed / "report" / f"{name}.png").read_bytes()
            assert porto != helsinki, name


class TestOtherDays:
    def test_liverpool_no_overlap_explained(self, real_runs: dict[str, RealRun]) -> None:
        run = real_runs["liverpool"]
        summary = run.summary()
        assert run.result["trips_out"] == 16
        assert summary["report"]["matched_share"] == 0.0
        assert {"geo_no_overlap", "match_share_low"} <= set(summary["warnings"]["counts"])
        assert "do not overlap the driven area" in (run.processed / "report" / "report.en.md").read_text(encoding="utf-8")

    def test_liverpool_buses_in_range(self, real_runs: dict[str, RealRun]) -> None:
        trips = real_runs["liverpool"].table("trips")
        low, high = DEFAULT_INTENSITY_RANGES_G_PER_KM["bus"]
        assert trips[c.CO2_G_PER_KM].between(low, high).all()

    def test_helsinki_tiny_trips_not_judged(self, real_runs: dict[str, RealRun]) -> None:
        run = real_runs["helsinki"]
        summary = run.summary()
        trips = run.table("trips")
        assert len(trips) == 11
        assert summary["warnings"]["counts"].get("trip_too_short") == 1
        assert summary["report"]["trips_judged"] == int((trips[c.DISTANCE_KM] >= 0.5).sum())
        assert "intensity_out_of_range" not in summary["warnings"]["counts"]

    def test_chicago_explains_no_trips(self, real_runs: dict[str, RealRun]) -> None:
        run = real_runs["chicago"]
        summary = run.summary()
        page = (run.processed / "report" / "report.en.md").read_text(encoding="utf-8")
        assert run.result["trips_out"] == 0
        assert set(summary["warnings"]["counts"]) >= {"no_trips", "tacho_outside_trips"}
        assert "tachometer records fall outside every trip" in page
        assert "With no trip, there is no map" in page
        assert not (run.processed / "report" / "co2_map.png").exists()
