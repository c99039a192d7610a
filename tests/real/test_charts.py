"""Segment aggregation and chart values on tiny named segments, without a flow run."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from compute import charts
from compute import columns as c

START = pd.Timestamp("2026-12-01 07:10:00", tz="UTC")


def segments(rows: list[tuple[str | None, str | None, float, float, int]]) -> pa.Table:
    """Segments from (link_id, road_class, co2_ttw_kg, length_m, hour) rows, all in one street."""
    frame = pd.DataFrame(rows, columns=[c.LINK_ID, c.ROAD_CLASS, c.CO2_TTW_KG, c.LENGTH_M, "hour"])
    frame[c.T_START] = (START.normalize() + pd.to_timedelta(frame.pop("hour"), unit="h")).astype("datetime64[ms, UTC]")
    frame[c.LON_MID] = 139.70 + 0.001 * frame.index
    frame[c.LAT_MID] = 35.68
    return pa.Table.from_pandas(frame, preserve_index=False)


ROWS = [("a", "primary", 1.0, 100.0, 7), ("a", "primary", 2.0, 200.0, 8), ("b", "residential", 0.5, 50.0, 8), (None, None, 4.0, 400.0, 9)]


class TestAggregate:
    def test_sums_by_link_and_hour(self) -> None:
        result = charts.aggregate_segments(segments(ROWS))
        by_link = result.by_link.to_pandas().set_index(c.LINK_ID)[c.CO2_TTW_KG].to_dict()
        by_hour = result.by_hour.to_pandas().set_index("hour")[c.CO2_TTW_KG].to_dict()
        assert by_link == {"a": 3.0, "b": 0.5}
        assert by_hour == {7: 1.0, 8: 2.5, 9: 4.0}
        assert result.matched_length_m == 350.0
        assert result.length_m == 750.0

    def test_hours_on_the_fleet_clock(self) -> None:
        utc = charts.aggregate_segments(segments(ROWS)).by_hour.to_pandas().set_index("hour")[c.CO2_TTW_KG].to_dict()
        tokyo = charts.aggregate_segments(segments(ROWS), "Asia/Tokyo")
        assert tokyo.timezone == "Asia/Tokyo"
        # Japan keeps no daylight saving time: its hours are the UTC hours plus 9.
        assert tokyo.by_hour.to_pandas().set_index("hour")[c.CO2_TTW_KG].to_dict() == {(h + 9) % 24: v for h, v in utc.items()}
        merged = charts.merge_aggregates([tokyo, charts.aggregate_segments(segments(ROWS[:1]), "Asia/Tokyo")])
        assert merged.timezone == "Asia/Tokyo"
        with pytest.raises(ValueError, match="one time zone"):
            charts.merge_aggregates([tokyo, charts.aggregate_segments(segments(ROWS))])
        assert charts.merge_aggregates([], "Asia/Tokyo").timezone == "Asia/Tokyo"

    def test_parts_merge_like_one(self) -> None:
        whole = charts.aggregate_segments(segments(ROWS))
        merged = charts.merge_aggregates([charts.aggregate_segments(segments(ROWS[:2])), charts.aggregate_segments(segments(ROWS[2:]))])
        for name in ("by_link", "by_hour", "by_road_class", "by_cell"):
            left = getattr(whole, name).to_pandas().sort_values(list(getattr(whole, name).column_names)).reset_index(drop=True)
            right = getattr(merged, name).to_pandas().sort_values(list(getattr(merged, name).column_names)).reset_index(drop=True)
            pd.testing.assert_frame_equal(left, right, check_dtype=False)

    def test_missing_area_column_accepted(self) -> None:
        assert charts.aggregate_segments(segments(ROWS)).by_area.num_rows == 0


@pytest.fixture(scope="module")
def report() -> charts.RunReport:
    """Report of two short trips with the segments of ROWS."""
    trips = pd.DataFrame(
        {c.TRIP_ID: ["t1", "t2"], c.VEHICLE_ID: ["car", "car"], c.DISTANCE_KM: [0.35, 0.4], c.CO2_TTW_KG: [3.5, 4.0],
         c.CO2_G_PER_KM: [10000.0, 10000.0], c.METHOD: ["gps_profile", "catalog_fe"]}
    )
    inputs = charts.ReportInputs(
        run_date="2026-12-01", trips=trips, vehicles=pd.DataFrame({c.VEHICLE_ID: ["car"], c.VEHICLE_CLASS: ["passenger"]}),
        rejects=pd.DataFrame({c.DATASET: ["trajectories"], c.REASON: ["speed_implausible"]}),
        segments=charts.aggregate_segments(segments(ROWS)),
    )
    return charts.build_run_report(inputs, lang="ja")


class TestReport:

    def test_bars_are_the_sums(self, report: charts.RunReport) -> None:
        hours = report.charts["co2_by_hour"].values.set_index("label")["value"]
        assert hours[["07", "08", "09"]].to_list() == [1.0, 2.5, 4.0]
        assert hours.drop(["07", "08", "09"]).eq(0.0).all()
        assert report.charts["co2_by_road_class"].values.set_index("label")["value"].to_dict() == {
            "unmatched": 4.0, "primary": 3.0, "residential": 0.5,
        }

    def test_short_trips_leave_no_histogram(self, report: charts.RunReport) -> None:
        assert "co2_intensity" not in report.charts

    def test_japanese_labels_need_a_font(self, report: charts.RunReport) -> None:
        assert report.chart_language == ("ja" if charts.find_japanese_font() else "en")
        if report.chart_language == "en":
            assert "日本語フォントが見つからない" in report.markdown["ja"]

    def test_artifact_inlines_images(self, report: charts.RunReport) -> None:
        inline = report.artifact_markdown("en")
        assert "(co2_by_hour.png)" in report.markdown["en"]
        assert "data:image/png;base64," in inline
        assert "(co2_by_hour.png)" not in inline
