"""The fuel that the sample day's tachographs meter, against the emission model.

``compute.sample`` meters fuel on half of the tachographs. Per vehicle, the measured fuel (tier
T1) and the modelled fuel on the same 1 Hz speed (T2) differ by less than ``PlausibilitySettings.t1_t2_tolerance``, the tolerance of the
``t1_t2_drift`` check. No sample vehicle is meant to drift, so the ``make run`` day raises none of
those warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sample_piece import PieceInputs, build_piece_inputs

from compute import columns as c
from compute import contract
from compute.emissions import estimate_trips
from compute.emissions.model import EmissionModel
from compute.plausibility import DayFacts, PlausibilitySettings, PlausibilityWarning, check_day
from compute.sample import SampleSpec

# The day of `make run` (500 trips of 60 vertices) without its defective trips, which the
# validate phase rejects before any estimate.
MAKE_RUN_SPEC = SampleSpec(trips=500, vertices_per_trip=60, defects=False)
# Every vehicle has a tachograph, so every class and liquid fuel has vehicles that meter fuel.
EVERY_CLASS_SPEC = SampleSpec(trips=1_000, vertices_per_trip=30, tacho_share=1.0, defects=False)
# The sample is not meant to show a drifting vehicle.
INTENDED_DRIFT_WARNINGS = 0
LIQUID_FUELS = {"gasoline", "diesel", "hybrid", "lpg"}
TOLERANCE = PlausibilitySettings().t1_t2_tolerance


@dataclass(frozen=True)
class EstimatedDay:
    """A sample day below ``root`` (datasets in ``root/validated``), its piece and estimate."""

    root: Path
    piece: PieceInputs
    trips: pd.DataFrame
    warnings: list[PlausibilityWarning]


def _estimate_day(root: Path, spec: SampleSpec, model: EmissionModel) -> EstimatedDay:
    piece = build_piece_inputs(root, spec)
    trips = estimate_trips(piece.segments, piece.trips, piece.vehicles, piece.tacho, model).trips
    return EstimatedDay(root, piece, trips, check_day(trips, piece.vehicles, DayFacts()))


def _vehicle_ratios(trips: pd.DataFrame) -> pd.Series:
    """Fuel-weighted T1/T2 ratio per vehicle, as the drift check computes it."""
    measured = trips[trips[c.T1_T2_RATIO].notna()]
    modelled = measured[c.FUEL_L] / measured[c.T1_T2_RATIO]
    sums = pd.DataFrame({c.VEHICLE_ID: measured[c.VEHICLE_ID], "t1": measured[c.FUEL_L], "t2": modelled}).groupby(c.VEHICLE_ID).sum()
    return sums["t1"] / sums["t2"]


def _drift_warnings(day: EstimatedDay) -> list[PlausibilityWarning]:
    return [warning for warning in day.warnings if warning.code == "t1_t2_drift"]


@pytest.fixture(scope="module")
def make_run_day(tmp_path_factory: pytest.TempPathFactory, model: EmissionModel) -> EstimatedDay:
    return _estimate_day(tmp_path_factory.mktemp("make_run_day"), MAKE_RUN_SPEC, model)


@pytest.fixture(scope="module")
def every_class_day(tmp_path_factory: pytest.TempPathFactory, model: EmissionModel) -> EstimatedDay:
    return _estimate_day(tmp_path_factory.mktemp("every_class_day"), EVERY_CLASS_SPEC, model)


class TestMeteredFuelMatchesModel:
    def test_make_run_median_ratio(self, make_run_day: EstimatedDay) -> None:
        ratios = make_run_day.trips[c.T1_T2_RATIO].dropna()
        assert len(ratios) >= 20, "too few trips with both tiers to judge the sample"
        assert abs(ratios.median() - 1.0) <= TOLERANCE, f"median T1/T2 {ratios.median():.3f}"

    def test_make_run_drift_warnings(self, make_run_day: EstimatedDay) -> None:
        drift = _drift_warnings(make_run_day)
        assert len(drift) == INTENDED_DRIFT_WARNINGS, [warning.fields for warning in drift]

    def test_every_class_within_tolerance(self, every_class_day: EstimatedDay) -> None:
        ratios = _vehicle_ratios(every_class_day.trips)
        classes = every_class_day.piece.vehicles.set_index(c.VEHICLE_ID)[c.VEHICLE_CLASS]
        assert set(classes.reindex(ratios.index)) == set(classes), "a class has no vehicle with both tiers"
        outside = ratios[(ratios - 1.0).abs() > TOLERANCE]
        assert outside.empty, outside.round(3).to_dict()
        assert len(_drift_warnings(every_class_day)) == INTENDED_DRIFT_WARNINGS


class TestSampleTachometer:
    def test_fuel_only_for_liquid_fuels(self, every_class_day: EstimatedDay) -> None:
        tacho = pq.read_table(every_class_day.root / "validated" / "tachometer").to_pandas()
        fuel_type = tacho[c.VEHICLE_ID].map(every_class_day.piece.vehicles.set_index(c.VEHICLE_ID)[c.FUEL_TYPE])
        metered = tacho[c.FUEL_ML].notna()
        assert set(fuel_type[metered]) == LIQUID_FUELS
        assert {"electric", "cng"} <= set(fuel_type), "the day has no electric or CNG vehicle with a tachograph"
        assert not metered[~fuel_type.isin(LIQUID_FUELS)].any()

    def test_tachometer_passes_contract(self, every_class_day: EstimatedDay) -> None:
        table = pq.read_table(every_class_day.root / "validated" / "tachometer")
        frame = contract.to_frame("tachometer", table)
        context = contract.ValidationContext(
            known_vehicle_ids=every_class_day.piece.vehicles[c.VEHICLE_ID].to_numpy(dtype=object),
            duplicated_keys={"tachometer": contract.find_duplicate_keys("tachometer", [frame])},
        )
        accepted, rejected = contract.validate_rows("tachometer", frame, context)
        assert len(rejected) == 0, rejected.head().to_dict()
        assert len(accepted) == table.num_rows
        assert np.nanmax(table.column(c.FUEL_ML).to_numpy(zero_copy_only=False)) > 0
