"""Plausibility warnings on tiny named days."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from compute import columns as c
from compute.plausibility import DayFacts, PlausibilitySettings, check_day, count_codes, summarise_warnings

VEHICLES = pd.DataFrame({c.VEHICLE_ID: ["car", "bus", "van"], c.VEHICLE_CLASS: ["passenger", "bus", "unlisted_class"]})


def trips(rows: list[tuple[str, str, float, float]], ratio: list[float] | None = None) -> pd.DataFrame:
    """Per-trip output from (trip_id, vehicle_id, distance_km, co2_g_per_km) rows."""
    frame = pd.DataFrame(rows, columns=[c.TRIP_ID, c.VEHICLE_ID, c.DISTANCE_KM, c.CO2_G_PER_KM])
    frame[c.FUEL_L] = frame[c.DISTANCE_KM] / 12.0
    frame[c.T1_T2_RATIO] = ratio if ratio is not None else np.nan
    return frame


class TestIntensity:
    def test_far_outside_flagged(self) -> None:
        day = trips([("ok", "car", 5.0, 250.0), ("high", "car", 5.0, 900.0), ("low", "car", 5.0, 40.0)])
        warnings = check_day(day, VEHICLES, DayFacts())
        assert [w.key for w in warnings if w.code == "intensity_out_of_range"] == ["high", "low"]

    def test_edge_of_tolerance_kept(self) -> None:
        settings = PlausibilitySettings()
        high = settings.intensity_ranges_g_per_km["passenger"][1]
        day = trips([("edge", "car", 5.0, high * settings.far_outside_factor)])
        assert check_day(day, VEHICLES, DayFacts(), settings) == []

    def test_short_trip_not_judged(self) -> None:
        day = trips([("parked", "car", 0.001, 90000.0)])
        warnings = check_day(day, VEHICLES, DayFacts())
        assert count_codes(warnings) == {"trip_too_short": 1}

    def test_unlisted_class_not_judged(self) -> None:
        assert check_day(trips([("x", "van", 5.0, 5000.0)]), VEHICLES, DayFacts()) == []

    def test_range_order_checked(self) -> None:
        with pytest.raises(ValidationError, match="must satisfy 0 <= low < high"):
            PlausibilitySettings(intensity_ranges_g_per_km={"passenger": (300.0, 100.0)})


class TestDayLevel:
    def test_low_match_share(self) -> None:
        warnings = check_day(trips([("a", "car", 5.0, 250.0)]), VEHICLES, DayFacts(matched_share=0.2))
        assert count_codes(warnings) == {"match_share_low": 1}

    def test_disjoint_geo_extent(self) -> None:
        facts = DayFacts(trip_bbox=(-3.0, 53.4, -2.9, 53.5), geo_bbox=(24.9, 60.1, 25.0, 60.2))
        warnings = check_day(trips([("a", "car", 5.0, 250.0)]), VEHICLES, facts)
        assert "geo_no_overlap" in count_codes(warnings)

    def test_no_trips_explained(self) -> None:
        facts = DayFacts(tacho_rows=10, tacho_outside_trips=10)
        warnings = check_day(trips([]), VEHICLES, facts)
        assert count_codes(warnings) == {"no_trips": 1, "tacho_outside_trips": 1}
        assert "10 of 10 tachometer records" in warnings[1].text("en")
        assert "タコグラフ記録" in warnings[1].text("ja")


class TestT1T2:
    def test_drift_flagged(self) -> None:
        day = trips([("a", "car", 5.0, 250.0), ("b", "car", 5.0, 250.0), ("c", "bus", 5.0, 900.0), ("d", "bus", 5.0, 900.0)],
                    ratio=[1.6, 1.4, 1.05, 0.95])
        warnings = [w for w in check_day(day, VEHICLES, DayFacts()) if w.code == "t1_t2_drift"]
        assert [w.key for w in warnings] == ["car"]
        assert warnings[0].fields["value"] == pytest.approx(1.493, abs=1e-3)

    def test_single_trip_not_judged(self) -> None:
        day = trips([("a", "car", 5.0, 250.0)], ratio=[3.0])
        assert check_day(day, VEHICLES, DayFacts()) == []


class TestSummary:
    def test_trip_list_capped(self) -> None:
        day = trips([(f"t{i}", "car", 5.0, 2000.0) for i in range(5)])
        summary = summarise_warnings(check_day(day, VEHICLES, DayFacts(matched_share=0.1)), PlausibilitySettings(max_listed_trips=2))
        assert summary["counts"] == {"intensity_out_of_range": 5, "match_share_low": 1}
        assert [item["code"] for item in summary["items"]] == ["match_share_low", "intensity_out_of_range", "intensity_out_of_range"]
