"""Japanese road class names on the charts, while the chart values keep the OSM codes."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest

from compute import charts
from compute import columns as c

START = pd.Timestamp("2026-12-01 07:10:00", tz="UTC")

#: The OSM ``highway`` values that the road links of the sample day and of the real public days carry.
ROAD_CLASSES = (
    "motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link", "secondary", "secondary_link",
    "tertiary", "tertiary_link", "unclassified", "residential", "living_street", "service", "road",
)


def _segments(road_classes: list[str | None]) -> pa.Table:
    """One 1 km segment per road class, each with 1 kg CO2 more than the one before."""
    n = len(road_classes)
    frame = pd.DataFrame(
        {
            c.LINK_ID: [f"L{i}" if road_class else None for i, road_class in enumerate(road_classes)],
            c.AREA_ID: [None] * n,
            c.ROAD_CLASS: road_classes,
            c.CO2_TTW_KG: [float(i + 1) for i in range(n)],
            c.LENGTH_M: [1000.0] * n,
            c.LON_MID: [139.70 + 0.001 * i for i in range(n)],
            c.LAT_MID: [35.68] * n,
        }
    )
    frame[c.T_START] = pd.Series([START] * n).astype("datetime64[ms, UTC]")
    return pa.Table.from_pandas(frame, preserve_index=False)


class TestRoadClassNames:
    @pytest.mark.parametrize("code", ROAD_CLASSES)
    def test_named_in_japanese(self, code: str) -> None:
        (label,) = charts.category_labels([code], "ja")
        name, bracketed = label.removesuffix("）").split("（")
        assert bracketed == code
        assert not name.isascii(), f"{code} has no Japanese name: {label}"

    def test_usual_terms(self) -> None:
        labels = charts.category_labels(["motorway", "trunk", "primary", "secondary", "residential", "motorway_link"], "ja")
        assert labels == [
            "高速道路（motorway）", "主要幹線道路（trunk）", "幹線道路（primary）", "補助幹線道路（secondary）",
            "生活道路（residential）", "高速道路の連絡路（motorway_link）",
        ]

    def test_names_are_distinct(self) -> None:
        names = [label.split("（")[0] for label in charts.category_labels(list(ROAD_CLASSES), "ja")]
        assert len(set(names)) == len(names)

    def test_english_keeps_codes(self) -> None:
        assert charts.category_labels(list(ROAD_CLASSES), "en") == list(ROAD_CLASSES)

    def test_unknown_code_unchanged(self) -> None:
        assert charts.category_labels(["construction"], "ja") == ["construction"]


@pytest.fixture(scope="module")
def report() -> charts.RunReport:
    """Japanese report of one heavy truck trip over a motorway, a residential street, a trunk ramp and no link."""
    trips = pd.DataFrame(
        {
            c.TRIP_ID: ["t1"], c.VEHICLE_ID: ["v1"], c.DISTANCE_KM: [4.0], c.CO2_TTW_KG: [10.0],
            c.CO2_G_PER_KM: [2500.0], c.METHOD: ["gps_profile"], c.FUEL_L: [4.0],
        }
    )
    vehicles = pd.DataFrame({c.VEHICLE_ID: ["v1"], c.VEHICLE_CLASS: ["heavy_truck"], c.FUEL_TYPE: ["diesel"]})
    inputs = charts.ReportInputs(
        run_date="2026-12-01", trips=trips, vehicles=vehicles, rejects=pd.DataFrame(),
        segments=charts.aggregate_segments(_segments(["motorway", "residential", "trunk_link", None])),
    )
    return charts.build_run_report(inputs, lang="ja")


class TestRoadClassChartValues:
    def test_values_file_keeps_codes(self, report: charts.RunReport) -> None:
        rows = json.loads(report.files()[charts.VALUES_FILE])["co2_by_road_class"]
        assert [row["label"] for row in rows] == ["unmatched", "trunk_link", "residential", "motorway"]
        assert [row["value"] for row in rows] == [4.0, 3.0, 2.0, 1.0]
