"""The tachograph distance check: T2 is used only when the distance of the tachograph speed agrees
with the GPS distance of the trip.

A tachograph that records 199 km/h while the GPS crawls through town at 30 km/h must not make T2
estimate the fuel of a motorway drive. Such a trip falls to the next tier and carries
``tacho_distance_mismatch``. A trip with measured fuel (T1) keeps its tier and gets the flag.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from emission_inputs import make_segments, make_tacho, make_trips, make_vehicles, read_cycle, segments_from_trace
from pydantic import ValidationError
from sample_piece import build_piece_inputs

from compute import columns as c
from compute.emissions import EmissionSettings, estimate_trips, load_model
from compute.emissions.flags import QUALITY_FLAGS
from compute.emissions.model import EmissionModel
from compute.plausibility import DayFacts, PlausibilitySettings, check_day
from compute.sample import SampleSpec

CAR = {"vehicle_id": "car", "vehicle_class": "passenger", "fuel_type": "gasoline", "catalog": 20.0, "test_cycle": "WLTC"}
FLAG = "tacho_distance_mismatch"
# Tachograph rows of the constant-speed trips: 1 Hz for 600 s.
ROWS = 601
SEGMENT_S = 10.0


def flags_of(row: pd.Series) -> list[str]:
    return str(row[c.QUALITY_FLAGS]).split(";")


def constant_trip(trip_id: str, gps_kmh: float, tacho_kmh: float, fuel_ml: float | None = None) -> dict[str, pd.DataFrame]:
    """Return the frames of one 600 s trip: GPS segments every 10 s at ``gps_kmh`` and a 1 Hz
    tachograph at ``tacho_kmh``, with ``fuel_ml`` per row when given."""
    n_segments = int((ROWS - 1) / SEGMENT_S)
    segments = make_segments(trip_id, "car", np.full(n_segments, SEGMENT_S), np.full(n_segments, gps_kmh / 3.6 * SEGMENT_S))
    fuel = None if fuel_ml is None else np.full(ROWS, fuel_ml)
    return {
        "segments": segments,
        "trips": make_trips([{"trip_id": trip_id, "vehicle_id": "car", "duration_s": ROWS - 1}]),
        "tacho": make_tacho(trip_id, "car", np.full(ROWS, tacho_kmh), fuel),
    }


def estimate(model: EmissionModel, *parts: dict[str, pd.DataFrame], with_tacho: bool = True) -> pd.DataFrame:
    """Estimate the trips of ``parts`` in one call, leaving out the tachograph rows unless ``with_tacho``."""
    frames = {name: pd.concat([part[name] for part in parts], ignore_index=True) for name in ("segments", "trips", "tacho")}
    tacho = frames["tacho"] if with_tacho else frames["tacho"].iloc[:0]
    result = estimate_trips(frames["segments"], frames["trips"], make_vehicles([CAR]), tacho, model)
    return result.trips.set_index(c.TRIP_ID)


class TestHostileTachograph:
    def test_199_kmh_falls_back_to_gps_profile(self, model: EmissionModel) -> None:
        trip = constant_trip("fast", gps_kmh=30.0, tacho_kmh=199.0)
        row = estimate(model, trip).loc["fast"]
        without_tacho = estimate(model, trip, with_tacho=False).loc["fast"]

        assert row[c.METHOD] == "gps_profile"
        assert FLAG in flags_of(row)
        assert row[c.FUEL_L] == pytest.approx(without_tacho[c.FUEL_L], rel=1e-12)
        assert row[c.DISTANCE_KM] == pytest.approx(5.0)

    def test_stuck_at_zero_idle_time_from_gps(self, model: EmissionModel) -> None:
        """The tachograph would count all 600 s as idle, but the GPS moves in every segment."""
        row = estimate(model, constant_trip("stuck", gps_kmh=30.0, tacho_kmh=0.0)).loc["stuck"]
        assert row[c.IDLE_S] == 0.0

    def test_stuck_at_zero_falls_back(self, model: EmissionModel) -> None:
        row = estimate(model, constant_trip("stuck", gps_kmh=30.0, tacho_kmh=0.0)).loc["stuck"]
        assert row[c.METHOD] == "gps_profile"
        assert FLAG in flags_of(row)

    def test_stuck_at_zero_kept_without_low_bound(self) -> None:
        lenient = load_model(EmissionSettings(min_tacho_gps_distance_ratio=0.0))
        row = estimate(lenient, constant_trip("stuck", gps_kmh=30.0, tacho_kmh=0.0)).loc["stuck"]
        assert row[c.METHOD] == "tacho_profile"
        assert FLAG not in flags_of(row)

    def test_untimed_gps_falls_to_catalog(self, model: EmissionModel) -> None:
        trip = constant_trip("untimed", gps_kmh=30.0, tacho_kmh=199.0)
        trip["trips"][c.TIME_SOURCE] = "interpolated"
        row = estimate(model, trip).loc["untimed"]
        assert row[c.METHOD] == "catalog_fe"
        assert FLAG in flags_of(row)

    def test_gps_standing_still_tacho_moving(self, model: EmissionModel) -> None:
        trip = constant_trip("parked", gps_kmh=0.0, tacho_kmh=60.0)
        row = estimate(model, trip).loc["parked"]
        assert row[c.METHOD] == "gps_profile"
        assert FLAG in flags_of(row)

    def test_flag_kept_with_tier_switched_off(self) -> None:
        no_t2 = load_model(EmissionSettings(enable_tacho_profile=False))
        row = estimate(no_t2, constant_trip("fast", gps_kmh=30.0, tacho_kmh=199.0)).loc["fast"]
        assert row[c.METHOD] == "gps_profile"
        assert FLAG in flags_of(row)


class TestMeasuredFuel:
    def test_t1_kept_with_flag(self, model: EmissionModel) -> None:
        row = estimate(model, constant_trip("metered", gps_kmh=30.0, tacho_kmh=199.0, fuel_ml=1.0)).loc["metered"]
        assert row[c.METHOD] == "fuel_measured"
        assert row[c.FUEL_L] == pytest.approx(ROWS * 1.0 / 1000.0)
        assert FLAG in flags_of(row)

    def test_t1_t2_ratio_empty_on_mismatch(self, model: EmissionModel) -> None:
        row = estimate(model, constant_trip("metered", gps_kmh=30.0, tacho_kmh=199.0, fuel_ml=1.0)).loc["metered"]
        assert np.isnan(row[c.T1_T2_RATIO])

    def test_t1_t2_ratio_kept_when_consistent(self, model: EmissionModel) -> None:
        row = estimate(model, constant_trip("metered", gps_kmh=30.0, tacho_kmh=31.0, fuel_ml=1.0)).loc["metered"]
        assert row[c.METHOD] == "fuel_measured"
        assert FLAG not in flags_of(row)
        assert row[c.T1_T2_RATIO] > 0


class TestHonestTrips:
    @pytest.mark.parametrize("every_s", [1, 15, 60])
    def test_wltc_along_gps_keeps_t2(self, model: EmissionModel, every_s: int) -> None:
        speed_m_s = read_cycle("wltc_japan")
        trip = {
            "segments": segments_from_trace("wltc", "car", speed_m_s, every_s=every_s),
            "trips": make_trips([{"trip_id": "wltc", "vehicle_id": "car", "duration_s": speed_m_s.size - 1}]),
            "tacho": make_tacho("wltc", "car", speed_m_s * 3.6, None),
        }
        row = estimate(model, trip).loc["wltc"]
        assert row[c.METHOD] == "tacho_profile"
        assert FLAG not in flags_of(row)

    def test_corner_cutting_keeps_t2(self, model: EmissionModel) -> None:
        """Sparse fixes at turns shorten the GPS line: 1.46 is the largest honest ratio of the sample days."""
        row = estimate(model, constant_trip("corners", gps_kmh=30.0, tacho_kmh=30.0 * 1.46)).loc["corners"]
        assert row[c.METHOD] == "tacho_profile"
        assert FLAG not in flags_of(row)

    def test_sample_day_has_no_mismatch(self, tmp_path: Path, model: EmissionModel) -> None:
        """A sample day with a tachograph in every vehicle has no flagged trip."""
        piece = build_piece_inputs(tmp_path, SampleSpec(trips=400, tacho_share=1.0, defects=False))
        out = estimate_trips(piece.segments, piece.trips, piece.vehicles, piece.tacho, model).trips
        tiers = out[c.METHOD].value_counts()
        assert tiers.get("tacho_profile", 0) + tiers.get("fuel_measured", 0) >= 300
        assert not out[c.QUALITY_FLAGS].str.contains(FLAG).any()


class TestBand:
    """Trips whose tachograph distance is a set multiple of the GPS distance (6 km of tachograph)."""

    @staticmethod
    def ratio_trip(trip_id: str, ratio: float) -> dict[str, pd.DataFrame]:
        return constant_trip(trip_id, gps_kmh=36.0 / ratio, tacho_kmh=36.0)

    @pytest.mark.parametrize(
        ("settings", "ratio", "mismatch"),
        [
            ({}, 1.99, False),
            ({}, 2.01, True),
            ({}, 0.51, False),
            ({}, 0.49, True),
            ({"max_tacho_gps_distance_ratio": 1.5}, 1.49, False),
            ({"max_tacho_gps_distance_ratio": 1.5}, 1.51, True),
            ({"min_tacho_gps_distance_ratio": 0.8}, 0.81, False),
            ({"min_tacho_gps_distance_ratio": 0.8}, 0.79, True),
            # 6 km of tachograph against 2.4 km of GPS differ by 3.6 km.
            ({"min_tacho_gps_distance_difference_m": 3_500.0}, 2.5, True),
            ({"min_tacho_gps_distance_difference_m": 3_700.0}, 2.5, False),
        ],
    )
    def test_ratio_bounds(self, settings: dict[str, float], ratio: float, mismatch: bool) -> None:
        model = load_model(EmissionSettings(**settings))
        row = estimate(model, self.ratio_trip("trip", ratio)).loc["trip"]
        assert (FLAG in flags_of(row)) is mismatch
        assert row[c.METHOD] == ("gps_profile" if mismatch else "tacho_profile")

    def test_short_trip_not_judged(self, model: EmissionModel) -> None:
        """100 s at 3x the GPS speed is 0.67 km apart, below the 1 km difference of the defaults."""
        segments = make_segments("short", "car", np.full(10, SEGMENT_S), np.full(10, 10.0 / 3.0 * SEGMENT_S))
        trip = {
            "segments": segments,
            "trips": make_trips([{"trip_id": "short", "vehicle_id": "car", "duration_s": 100}]),
            "tacho": make_tacho("short", "car", np.full(101, 36.0), None),
        }
        row = estimate(model, trip).loc["short"]
        assert row[c.METHOD] == "tacho_profile"
        assert FLAG not in flags_of(row)

    def test_one_call_equals_one_trip_at_a_time(self, model: EmissionModel) -> None:
        parts = [self.ratio_trip(f"r{ratio}", ratio) for ratio in (0.3, 0.9, 1.0, 1.4, 2.6, 6.0)]
        together = estimate(model, *parts)
        for part in parts:
            trip_id = part["trips"][c.TRIP_ID].iloc[0]
            alone = estimate(model, part)
            pd.testing.assert_series_equal(together.loc[trip_id], alone.loc[trip_id])

    @pytest.mark.parametrize(
        ("field", "value"),
        [("min_tacho_gps_distance_ratio", 1.2), ("min_tacho_gps_distance_ratio", -0.1),
         ("max_tacho_gps_distance_ratio", 0.9), ("min_tacho_gps_distance_difference_m", -1.0)],
    )
    def test_settings_reject_out_of_range(self, field: str, value: float) -> None:
        with pytest.raises(ValidationError, match=field):
            EmissionSettings(**{field: value})

    def test_flag_documented(self) -> None:
        assert FLAG in QUALITY_FLAGS
        assert list(QUALITY_FLAGS).index(FLAG) == list(QUALITY_FLAGS).index("tacho_speed_incomplete") + 1


class TestPlausibilityWarning:
    @staticmethod
    def day(model: EmissionModel, mismatched: int, consistent: int) -> pd.DataFrame:
        parts = [constant_trip(f"bad{i}", gps_kmh=30.0, tacho_kmh=199.0) for i in range(mismatched)]
        parts += [constant_trip(f"good{i}", gps_kmh=30.0, tacho_kmh=30.0) for i in range(consistent)]
        return estimate(model, *parts).reset_index()

    def test_vehicle_with_repeated_mismatch(self, model: EmissionModel) -> None:
        trips = self.day(model, mismatched=2, consistent=2)
        warnings = [w for w in check_day(trips, make_vehicles([CAR]), DayFacts()) if w.code == FLAG]
        assert len(warnings) == 1
        assert warnings[0].scope == "vehicle"
        assert warnings[0].fields == {"vehicle_id": "car", "mismatched": 2, "n_trips": 4}
        assert "2 of 4 trips" in warnings[0].text("en")
        assert "4 トリップのうち 2 件" in warnings[0].text("ja")

    def test_single_mismatch_not_warned(self, model: EmissionModel) -> None:
        trips = self.day(model, mismatched=1, consistent=0)
        assert not [w for w in check_day(trips, make_vehicles([CAR]), DayFacts()) if w.code == FLAG]

    def test_small_share_not_warned(self, model: EmissionModel) -> None:
        trips = self.day(model, mismatched=2, consistent=6)
        assert not [w for w in check_day(trips, make_vehicles([CAR]), DayFacts()) if w.code == FLAG]

    def test_thresholds_are_settings(self, model: EmissionModel) -> None:
        trips = self.day(model, mismatched=1, consistent=6)
        settings = PlausibilitySettings(min_tacho_mismatch_trips=1, max_tacho_mismatch_share=0.1)
        assert [w.key for w in check_day(trips, make_vehicles([CAR]), DayFacts(), settings) if w.code == FLAG] == ["car"]

    def test_longer_code_not_counted(self) -> None:
        trips = pd.DataFrame(
            {c.TRIP_ID: ["a", "b"], c.VEHICLE_ID: ["car", "car"], c.QUALITY_FLAGS: [f"{FLAG}_other", f"x;{FLAG}_other"]}
        )
        assert not [w for w in check_day(trips, make_vehicles([CAR]), DayFacts()) if w.code == FLAG]

    def test_without_flags_column(self) -> None:
        trips = pd.DataFrame({c.TRIP_ID: ["a"], c.VEHICLE_ID: ["car"]})
        assert not [w for w in check_day(trips, make_vehicles([CAR]), DayFacts()) if w.code == FLAG]


@pytest.mark.slow
def test_daily_phases_warn_per_vehicle(tmp_path: Path) -> None:
    """fetch to output on a LocalCluster: a tachograph reading four times too fast gives the vehicle warning."""
    import json

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from distributed import Client, LocalCluster

    from compute import phases, pipeline
    from compute.sample import write_sample_day
    from compute.settings import load_settings
    from compute.storage import Store
    from tests.conftest import RUN_DATE

    settings = load_settings("local", environ={}, overrides={"data_dir": str(tmp_path)})
    store = Store(settings.url("input", RUN_DATE))
    write_sample_day(store, RUN_DATE, SampleSpec(trips=40, vertices_per_trip=30))
    for name in pipeline.list_dataset_files(store, "tachometer"):
        table = pq.read_table(store.path(name))
        speed = table.schema.get_field_index(c.SPEED_KMH)
        pq.write_table(table.set_column(speed, c.SPEED_KMH, pc.multiply(table.column(c.SPEED_KMH), pa.scalar(4.0))), store.path(name))

    run = phases.DailyRun.create(settings, RUN_DATE, force=True)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        phases.fetch(run)
        phases.validate(run, client)
        phases.compute(run, client)
    phases.generate_output(run)

    trips = pipeline.read_folder(run.store("temp"), pipeline.TRIPS)
    assert trips is not None
    flagged = pc.sum(pc.match_substring(trips.column(c.QUALITY_FLAGS), "tacho_distance_mismatch")).as_py()
    assert flagged and flagged > 0
    summary = json.loads(run.store("processed").read_text("summary.json"))
    assert summary["warnings"]["counts"].get("tacho_distance_mismatch", 0) >= 1, summary["warnings"]
