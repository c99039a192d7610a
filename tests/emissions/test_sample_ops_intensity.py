"""Catalog fuel economy of the sample day per vehicle class and fuel, against the g/km checks.

``compute.sample`` draws each vehicle's catalog value from the range of its class and fuel. The
``make run`` day must raise no ``intensity_out_of_range`` warning, and a catalog value at either
end of a range must give a distance-tier (T4) CO2 per km inside the class range of
``compute.plausibility``, which these tests take as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sample_piece import PieceInputs, build_piece_inputs

from compute import columns as c
from compute import sample
from compute.contract.schema import VEHICLE_CLASSES
from compute.emissions import estimate_trips
from compute.emissions.model import EmissionModel
from compute.plausibility import DayFacts, PlausibilitySettings, PlausibilityWarning, check_day

# The day of `make run` (500 trips of 60 vertices) without the defective trips that validate rejects.
MAKE_RUN_SPEC = sample.SampleSpec(trips=500, vertices_per_trip=60, defects=False)
RANGES_G_PER_KM = PlausibilitySettings().intensity_ranges_g_per_km
#: Fuels whose catalog value the model reads as km per unit of a fuel with tank-to-wheel CO2.
COMBUSTION_FUELS = ("gasoline", "diesel", "hybrid", "lpg", "cng")


def _pairs() -> list[tuple[str, str]]:
    """Every (class, fuel) the sample draws."""
    return [(name, fuel) for name in VEHICLE_CLASSES for fuel in sample._CLASS_TABLE[name].fuels]


def _t4_g_per_km(model: EmissionModel, vehicle_class: str, fuel: str, test_cycle: str, catalog: float) -> float:
    """CO2 per km of the catalog tier at the reference load: the catalog raised by its real-world gap."""
    powertrain = "hybrid" if fuel == "hybrid" else "conventional"
    gap = float(model.gap.loc[(test_cycle, powertrain), "catalog_gap"])
    kg_per_unit = float(model.fuel_factors.loc[(vehicle_class, fuel), "kg_co2_per_unit"])
    return 1000.0 * kg_per_unit * gap / catalog


class TestCatalogRanges:
    def test_every_drawn_pair_has_range(self) -> None:
        missing = [pair for pair in _pairs() if pair not in sample._CATALOG_FE_RANGES]
        assert not missing
        unused = set(sample._CATALOG_FE_RANGES) - set(_pairs())
        assert not unused

    @pytest.mark.parametrize(("vehicle_class", "fuel"), _pairs())
    def test_range_is_ordered(self, vehicle_class: str, fuel: str) -> None:
        low, high = sample._CATALOG_FE_RANGES[(vehicle_class, fuel)]
        assert 0 < low < high

    @pytest.mark.parametrize(("vehicle_class", "fuel"), [pair for pair in _pairs() if pair[1] in COMBUSTION_FUELS])
    def test_catalog_tier_within_class_range(self, model: EmissionModel, vehicle_class: str, fuel: str) -> None:
        low_g, high_g = RANGES_G_PER_KM[vehicle_class]
        cycle = sample._CLASS_TABLE[vehicle_class].test_cycle
        # The sample certifies 30 % of its JC08 vehicles on WLTC with the same catalog value.
        cycles = [cycle, "WLTC"] if cycle == "JC08" else [cycle]
        for test_cycle in cycles:
            for catalog in sample._CATALOG_FE_RANGES[(vehicle_class, fuel)]:
                value = _t4_g_per_km(model, vehicle_class, fuel, test_cycle, catalog)
                assert low_g <= value <= high_g, f"{vehicle_class}/{fuel} at {catalog} on {test_cycle}: {value:.0f} g/km"


@pytest.fixture(scope="module")
def make_run_piece(tmp_path_factory: pytest.TempPathFactory) -> PieceInputs:
    return build_piece_inputs(Path(tmp_path_factory.mktemp("make_run_day")), MAKE_RUN_SPEC)


@pytest.fixture(scope="module")
def make_run_warnings(make_run_piece: PieceInputs, model: EmissionModel) -> list[PlausibilityWarning]:
    piece = make_run_piece
    trips = estimate_trips(piece.segments, piece.trips, piece.vehicles, piece.tacho, model).trips
    return check_day(trips, piece.vehicles, DayFacts())


class TestMakeRunDay:
    def test_catalog_values_in_their_range(self, make_run_piece: PieceInputs) -> None:
        vehicles = make_run_piece.vehicles.dropna(subset=[c.CATALOG_FE])
        ranges = [sample._CATALOG_FE_RANGES[(name, fuel)] for name, fuel in zip(vehicles[c.VEHICLE_CLASS], vehicles[c.FUEL_TYPE], strict=True)]
        low = np.array([r[0] for r in ranges])
        high = np.array([r[1] for r in ranges])
        catalog = vehicles[c.CATALOG_FE].to_numpy(dtype="float64")
        outside = vehicles[(catalog < low) | (catalog > high)]
        assert outside.empty, outside[[c.VEHICLE_ID, c.VEHICLE_CLASS, c.FUEL_TYPE, c.CATALOG_FE]].to_dict("records")

    def test_has_rated_hybrid_buses(self, make_run_piece: PieceInputs) -> None:
        vehicles = make_run_piece.vehicles
        rated = vehicles[(vehicles[c.VEHICLE_CLASS] == "bus") & (vehicles[c.FUEL_TYPE] == "hybrid") & (vehicles[c.CATALOG_FE] > 0)]
        assert len(rated) >= 3

    def test_no_intensity_warnings(self, make_run_warnings: list[PlausibilityWarning]) -> None:
        out_of_range = [w for w in make_run_warnings if w.code == "intensity_out_of_range"]
        assert not out_of_range, pd.DataFrame([{"trip": w.key, **w.fields} for w in out_of_range]).to_dict("records")
