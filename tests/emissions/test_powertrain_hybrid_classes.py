"""Fuel type ``hybrid`` burns gasoline in cars and kei vehicles and diesel in trucks and buses.

``compute/data/vehicles/powertrain.csv`` gives one row per (class, fuel) where the engine depends
on the class, and a ``*`` row for the other fuels. These tests check the lookup rule and follow
the hybrid's fuel through CO2, CH4/N2O and WTT. Expected values come from the factor tables.
"""

from __future__ import annotations

import dataclasses
from itertools import product

import numpy as np
import pandas as pd
import pytest
from emission_inputs import empty_tacho, make_segments, make_tacho, make_trips, make_vehicles

from compute import columns as c
from compute.contract.schema import FUEL_TYPES, VEHICLE_CLASSES
from compute.emissions import EmissionSettings, estimate_trips, load_model
from compute.emissions.model import EmissionModel
from compute.emissions.parameters import resolve_powertrains
from compute.emissions.tables import read_data_tables

DIESEL_HYBRID_CLASSES = ("light_truck", "medium_truck", "heavy_truck", "bus")
GASOLINE_HYBRID_CLASSES = ("kei_passenger", "passenger", "kei_truck")
POWERTRAIN_FILE = "compute/data/vehicles/powertrain.csv"

# Ten segments of 60 s and 1 km: 10 km at 60 km/h with no idling, so T4 fuel is distance / catalog x gap.
SEGMENT_COUNT = 10
SEGMENT_S = 60.0
SEGMENT_M = 1000.0


def _co2_factor(regime: str, fuel: str) -> float:
    table = read_data_tables().tables["co2_per_fuel"]
    rows = table[(table["regime"] == regime) & (table["fuel"] == fuel)]
    assert len(rows) == 1, f"co2_per_fuel.csv has {len(rows)} rows for {regime}/{fuel}"
    return float(rows["kg_co2_per_unit"].iloc[0])


def _wtt_factor(fuel: str) -> float:
    table = read_data_tables().tables["wtt"].set_index("fuel")
    return float(table.loc[fuel, "wtt_kg_co2e_per_unit"])


def _hybrid(vehicle_class: str, **fields: object) -> dict[str, object]:
    """A hybrid with a catalog value on the class's usual cycle (JH25 above 3.5 t, else WLTC)."""
    cycle = "JH25" if vehicle_class in ("medium_truck", "heavy_truck", "bus") else "WLTC"
    return {"vehicle_id": f"hv_{vehicle_class}", "vehicle_class": vehicle_class, "fuel_type": "hybrid",
            "catalog": 5.0, "test_cycle": cycle, **fields}


def _catalog_trip(model: EmissionModel, vehicle: dict[str, object]) -> pd.Series:
    """Drive the fixed segment set with interpolated times, so the catalog tier (T4) sets the fuel."""
    vehicle_id = str(vehicle["vehicle_id"])
    segments = make_segments("t", vehicle_id, np.full(SEGMENT_COUNT, SEGMENT_S), np.full(SEGMENT_COUNT, SEGMENT_M))
    trips = make_trips([{"trip_id": "t", "vehicle_id": vehicle_id, "duration_s": SEGMENT_COUNT * SEGMENT_S,
                         "time_source": "interpolated"}])
    return estimate_trips(segments, trips, make_vehicles([vehicle]), empty_tacho(), model).trips.iloc[0]


def _measured_trip(model: EmissionModel, vehicle: dict[str, object], fuel_ml_per_s: float) -> pd.Series:
    """Drive the fixed segment set with a 1 Hz tachograph fuel meter, so the trip takes the measured fuel (T1)."""
    vehicle_id = str(vehicle["vehicle_id"])
    n = int(SEGMENT_COUNT * SEGMENT_S) + 1
    tacho = make_tacho("t", vehicle_id, np.full(n, 60.0), np.full(n, fuel_ml_per_s))
    segments = make_segments("t", vehicle_id, np.full(SEGMENT_COUNT, SEGMENT_S), np.full(SEGMENT_COUNT, SEGMENT_M))
    trips = make_trips([{"trip_id": "t", "vehicle_id": vehicle_id, "duration_s": n - 1}])
    return estimate_trips(segments, trips, make_vehicles([vehicle]), tacho, model).trips.iloc[0]


def _with_gasoline_bus_hybrid(model: EmissionModel) -> EmissionModel:
    """Return ``model`` with gasoline's CO2 and WTT factors for the hybrid bus, as for a gasoline hybrid bus."""
    factors = model.fuel_factors.copy()
    factors.loc[("bus", "hybrid")] = factors.loc[("passenger", "hybrid")]
    return dataclasses.replace(model, fuel_factors=factors)


class TestPowertrainLookup:
    @pytest.mark.parametrize(("vehicle_class", "fuel"), list(product(VEHICLE_CLASSES, FUEL_TYPES)))
    def test_every_contract_pair_resolves(self, model: EmissionModel, vehicle_class: str, fuel: str) -> None:
        params = model.vehicle_params.set_index([c.VEHICLE_CLASS, c.FUEL_TYPE])
        row = params.loc[(vehicle_class, fuel)]
        for column in ("unit", "factor_fuel", "regen_share", "tonkm_fuel", "ch4_n2o_group", "powertrain_status"):
            assert pd.notna(row[column]), column
        assert np.isfinite(model.fuel_factors.loc[(vehicle_class, fuel), "kg_co2_per_unit"])
        assert np.isfinite(model.fuel_factors.loc[(vehicle_class, fuel), "wtt_kg_co2e_per_unit"])

    @pytest.mark.parametrize("vehicle_class", DIESEL_HYBRID_CLASSES)
    def test_truck_and_bus_hybrids_burn_diesel(self, model: EmissionModel, vehicle_class: str) -> None:
        row = model.vehicle_params.set_index([c.VEHICLE_CLASS, c.FUEL_TYPE]).loc[(vehicle_class, "hybrid")]
        assert row["factor_fuel"] == "diesel"
        assert row["tonkm_fuel"] == "diesel"
        assert row["ch4_n2o_group"] == "diesel"
        assert row["unit"] == "l"
        assert 0 < row["regen_share"] < 1

    @pytest.mark.parametrize("vehicle_class", GASOLINE_HYBRID_CLASSES)
    def test_car_and_kei_hybrids_burn_gasoline(self, model: EmissionModel, vehicle_class: str) -> None:
        row = model.vehicle_params.set_index([c.VEHICLE_CLASS, c.FUEL_TYPE]).loc[(vehicle_class, "hybrid")]
        assert row["factor_fuel"] == "gasoline"
        assert row["tonkm_fuel"] == "gasoline"
        assert row["ch4_n2o_group"] == "spark"
        assert row["unit"] == "l"

    def test_class_row_wins_over_any_class_row(self) -> None:
        table = _table([("*", "hybrid", "gasoline"), ("bus", "hybrid", "diesel")])
        resolved = resolve_powertrains(table).set_index(["vehicle_class", "fuel_type"])
        assert resolved.loc[("bus", "hybrid"), "factor_fuel"] == "diesel"
        assert resolved.loc[("passenger", "hybrid"), "factor_fuel"] == "gasoline"
        assert len(resolved) == len(VEHICLE_CLASSES) * len(FUEL_TYPES)

    def test_missing_pair_names_class_fuel_and_file(self) -> None:
        table = _table([("passenger", "hybrid", "gasoline")])
        with pytest.raises(ValueError, match=r"no row for \(vehicle_class, fuel\)") as raised:
            resolve_powertrains(table)
        assert "('bus', 'hybrid')" in str(raised.value)
        assert POWERTRAIN_FILE in str(raised.value)

    def test_repeated_pair_rejected(self) -> None:
        table = _table([("*", "hybrid", "gasoline"), ("bus", "hybrid", "diesel"), ("bus", "hybrid", "gasoline")])
        with pytest.raises(ValueError, match=r"more than one row .*\('bus', 'hybrid'\)"):
            resolve_powertrains(table)

    def test_unknown_class_rejected(self) -> None:
        table = _table([("*", "hybrid", "gasoline"), ("coach", "hybrid", "diesel")])
        with pytest.raises(ValueError, match=r"vehicle classes \['coach'\] .* outside the contract"):
            resolve_powertrains(table)


def _table(hybrid_rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Build a powertrain table: the shipped rows of every fuel except hybrid, plus ``hybrid_rows``."""
    shipped = read_data_tables().tables["powertrain"]
    others = shipped[shipped["fuel"] != "hybrid"]
    template = shipped[shipped["fuel"] == "hybrid"].iloc[0]
    added = pd.DataFrame(
        [{**template.to_dict(), "vehicle_class": name, "fuel": fuel, "factor_fuel": burnt} for name, fuel, burnt in hybrid_rows]
    )
    return pd.concat([others, added], ignore_index=True)


class TestHybridFactors:
    @pytest.mark.parametrize("regime", ["legacy_2010", "legacy_logistics"])
    @pytest.mark.parametrize("vehicle_class", DIESEL_HYBRID_CLASSES)
    def test_heavy_hybrid_diesel_co2_per_litre(self, vehicle_class: str, regime: str) -> None:
        model = load_model(EmissionSettings(factor_regime=regime))
        row = _catalog_trip(model, _hybrid(vehicle_class))
        assert row[c.METHOD] == "catalog_fe"
        assert row[c.FUEL_L] > 0
        assert row[c.CO2_TTW_KG] / row[c.FUEL_L] == pytest.approx(_co2_factor(regime, "diesel"), rel=1e-12)

    @pytest.mark.parametrize("vehicle_class", GASOLINE_HYBRID_CLASSES)
    def test_car_hybrid_keeps_gasoline(self, model: EmissionModel, vehicle_class: str) -> None:
        row = _catalog_trip(model, _hybrid(vehicle_class, catalog=20.0))
        assert row[c.METHOD] == "catalog_fe"
        assert row[c.CO2_TTW_KG] / row[c.FUEL_L] == pytest.approx(_co2_factor("legacy_2010", "gasoline"), rel=1e-12)

    def test_bus_hybrid_wtt_and_other_gases_of_diesel(self, model: EmissionModel) -> None:
        row = _catalog_trip(model, _hybrid("bus"))
        ch4_n2o = read_data_tables().tables["ch4_n2o"].set_index(["fuel_group", "vehicle_class"]).loc[("diesel", "bus")]
        other_gases = row[c.DISTANCE_KM] * (ch4_n2o["ch4_kg_per_km"] * model.gwp_ch4 + ch4_n2o["n2o_kg_per_km"] * model.gwp_n2o)
        assert row[c.CO2E_TTW_KG] - row[c.CO2_TTW_KG] == pytest.approx(other_gases, rel=1e-9)
        assert (row[c.CO2E_WTW_KG] - row[c.CO2E_TTW_KG]) / row[c.FUEL_L] == pytest.approx(_wtt_factor("diesel"), rel=1e-9)


class TestBusHybridCo2Change:
    """The same hybrid bus trip with diesel factors and with gasoline factors."""

    def test_measured_fuel_scales_by_factor_ratio(self, model: EmissionModel) -> None:
        bus = _hybrid("bus")
        diesel = _measured_trip(model, bus, fuel_ml_per_s=4.0)
        gasoline = _measured_trip(_with_gasoline_bus_hybrid(model), bus, fuel_ml_per_s=4.0)
        assert diesel[c.METHOD] == gasoline[c.METHOD] == "fuel_measured"
        assert diesel[c.FUEL_L] == gasoline[c.FUEL_L] == pytest.approx(601 * 4.0 / 1000)
        ratio = _co2_factor("legacy_2010", "diesel") / _co2_factor("legacy_2010", "gasoline")
        assert diesel[c.CO2_TTW_KG] / gasoline[c.CO2_TTW_KG] == pytest.approx(ratio, rel=1e-12)

    def test_catalog_fuel_scales_by_factor_ratio(self, model: EmissionModel) -> None:
        bus = _hybrid("bus", catalog=4.0)
        diesel = _catalog_trip(model, bus)
        gasoline = _catalog_trip(_with_gasoline_bus_hybrid(model), bus)
        gap = float(model.gap.loc[("JH25", "hybrid"), "catalog_gap"])
        assert diesel[c.FUEL_L] == gasoline[c.FUEL_L] == pytest.approx(SEGMENT_COUNT * SEGMENT_M / 1000 / 4.0 * gap)
        ratio = _co2_factor("legacy_2010", "diesel") / _co2_factor("legacy_2010", "gasoline")
        assert diesel[c.CO2_TTW_KG] / gasoline[c.CO2_TTW_KG] == pytest.approx(ratio, rel=1e-12)

    def test_car_and_bus_co2_ratio(self, model: EmissionModel) -> None:
        car = _measured_trip(model, _hybrid("passenger", catalog=20.0), fuel_ml_per_s=4.0)
        bus = _measured_trip(model, _hybrid("bus"), fuel_ml_per_s=4.0)
        assert car[c.FUEL_L] == bus[c.FUEL_L]
        ratio = _co2_factor("legacy_2010", "diesel") / _co2_factor("legacy_2010", "gasoline")
        assert bus[c.CO2_TTW_KG] / car[c.CO2_TTW_KG] == pytest.approx(ratio, rel=1e-12)
