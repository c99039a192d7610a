"""Plausible range of the catalog fuel economy in the vehicles master, lower bound included."""

from __future__ import annotations

import json

import contract_corpus as corpus
import pytest
from pydantic import ValidationError

from compute.contract import (
    ContractSettings,
    ContractThresholds,
    ValidationContext,
    conform_table,
    render_details,
    to_frame,
    validate_rows,
)

BUS = {"vehicle_id": "V3", "vehicle_class": "bus", "fuel_type": "diesel", "test_cycle": "JH25"}


def _validate_vehicles(rows: list[dict], settings: ContractSettings | None = None):  # type: ignore[no-untyped-def]
    settings = settings or ContractSettings()
    table = corpus.vehicles(rows)
    frame = to_frame("vehicles", conform_table("vehicles", table, settings))
    accepted, rejects = validate_rows("vehicles", frame, ValidationContext(settings=settings))
    assert len(accepted) + len(rejects) == table.num_rows
    return accepted, rejects


class TestCatalogFloor:
    def test_default_floor(self) -> None:
        assert ContractThresholds().min_catalog_fuel_economy_km_per_l == 0.5

    def test_tiny_economy_rejected(self) -> None:
        accepted, rejects = _validate_vehicles([{**BUS, "fe": 0.001}])

        assert accepted.empty
        reject = rejects.iloc[0]
        assert reject["reason"] == "value_out_of_range"
        assert reject["value"] == "0.001"
        assert reject["detail_kind"] == "outside_range"
        assert json.loads(reject["detail_params"]) == {"column": "catalog_fuel_economy_km_per_l", "lower": 0.5, "upper": 60.0}

    def test_detail_states_range_in_both_languages(self) -> None:
        _, rejects = _validate_vehicles([{**BUS, "fe": 0.001}])

        assert rejects["detail"].iloc[0] == "catalog_fuel_economy_km_per_l outside [0.5, 60]"
        assert render_details(rejects, "ja")["detail"].iloc[0] == "catalog_fuel_economy_km_per_l が範囲 [0.5, 60] の外です"

    @pytest.mark.parametrize("economy", [0.0, -0.0, 0.499, 60.5])
    def test_outside_range_rejected(self, economy: float) -> None:
        _, rejects = _validate_vehicles([{**BUS, "fe": economy}])

        assert rejects["reason"].tolist() == ["value_out_of_range"]

    @pytest.mark.parametrize(
        ("vehicle_class", "fuel_type", "economy"),
        [
            ("heavy_truck", "diesel", 2.0),
            ("heavy_truck", "electric", 0.9),
            ("bus", "electric", 0.5),
            ("passenger", "hybrid", 60.0),
        ],
    )
    def test_real_vehicles_accepted(self, vehicle_class: str, fuel_type: str, economy: float) -> None:
        row = {"vehicle_id": "V3", "vehicle_class": vehicle_class, "fuel_type": fuel_type, "fe": economy}
        accepted, rejects = _validate_vehicles([row])

        assert rejects.empty
        assert accepted["catalog_fuel_economy_km_per_l"].tolist() == [economy]

    def test_null_economy_accepted(self) -> None:
        accepted, rejects = _validate_vehicles([{**BUS, "fe": None, "test_cycle": None}])

        assert rejects.empty
        assert accepted["catalog_fuel_economy_km_per_l"].isna().tolist() == [True]

    def test_floor_is_a_setting(self) -> None:
        settings = ContractSettings(thresholds={"min_catalog_fuel_economy_km_per_l": 1.0})
        _, rejects = _validate_vehicles([{**BUS, "fe": 0.9}], settings)

        assert rejects["reason"].tolist() == ["value_out_of_range"]
        assert rejects["detail"].iloc[0] == "catalog_fuel_economy_km_per_l outside [1, 60]"


class TestCatalogRangeSetting:
    def test_floor_above_maximum_rejected(self) -> None:
        with pytest.raises(
            ValidationError, match=r"min_catalog_fuel_economy_km_per_l 70\.0 is not below max_catalog_fuel_economy_km_per_l 60\.0"
        ):
            ContractThresholds(min_catalog_fuel_economy_km_per_l=70.0)

    def test_zero_floor_rejected(self) -> None:
        with pytest.raises(ValidationError, match=r"min_catalog_fuel_economy_km_per_l"):
            ContractThresholds(min_catalog_fuel_economy_km_per_l=0.0)
