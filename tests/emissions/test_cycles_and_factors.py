"""Cycle facts, improved ton-km worked values and factor-table provenance."""

from __future__ import annotations

import numpy as np
import pytest

from compute.emissions.cycles import kinematics_from_samples, select_cycle
from compute.emissions.model import EmissionModel
from compute.emissions.tables import read_data_tables
from compute.emissions.tonkm import fuel_l_per_km, fuel_l_per_tkm


class TestCycleFacts:
    def test_wltc_japan_duration_and_distance(self, model: EmissionModel) -> None:
        kin = kinematics_from_samples(select_cycle(model.cycles_m_per_s, "wltc_japan"))
        assert kin.duration_s.sum() == 1477
        assert kin.distance_m / 1000 == pytest.approx(15.01, abs=0.01)

    def test_wltc_3b_duration_and_distance(self, model: EmissionModel) -> None:
        kin = kinematics_from_samples(select_cycle(model.cycles_m_per_s, "wltc_3b"))
        assert kin.duration_s.sum() == 1800
        assert kin.distance_m / 1000 == pytest.approx(23.27, abs=0.01)

    def test_unknown_cycle_rejected(self, model: EmissionModel) -> None:
        with pytest.raises(ValueError, match="unknown cycle 'jc08'"):
            select_cycle(model.cycles_m_per_s, "jc08")


class TestImprovedTonKm:
    """Diesel truck, 10 t payload, 50 % load: 0.0639 L/t-km, 3.13 km/L, 165 g/t-km at 2.58 kg/L."""

    def test_fuel_per_tonne_km(self, model: EmissionModel) -> None:
        row = model.tonkm.loc["diesel"]
        y = float(fuel_l_per_tkm(0.5, 10_000, row["a"], row["b"], row["c"]))
        assert y == pytest.approx(0.0639, abs=0.00005)

    def test_km_per_litre(self, model: EmissionModel) -> None:
        row = model.tonkm.loc["diesel"]
        km_per_l = 1.0 / float(fuel_l_per_km(0.5, 10_000, row["a"], row["b"], row["c"]))
        assert km_per_l == pytest.approx(3.13, abs=0.005)

    def test_co2_per_tonne_km(self, model: EmissionModel) -> None:
        row = model.tonkm.loc["diesel"]
        y = float(fuel_l_per_tkm(0.5, 10_000, row["a"], row["b"], row["c"]))
        assert y * 2.58 * 1000 == pytest.approx(165, abs=0.5)

    def test_full_load_uses_more_fuel_per_km(self, model: EmissionModel) -> None:
        row = model.tonkm.loc["diesel"]
        half = float(fuel_l_per_km(0.5, 10_000, row["a"], row["b"], row["c"]))
        full = float(fuel_l_per_km(1.0, 10_000, row["a"], row["b"], row["c"]))
        assert full / half == pytest.approx(2**0.188, rel=1e-6)


class TestFactorTables:
    def test_every_row_has_status_and_source(self) -> None:
        data = read_data_tables()
        for name, frame in data.tables.items():
            assert frame["status"].isin(["C", "S", "D", "U", "E"]).all(), name
            assert frame["source"].notna().all(), name

    @pytest.mark.parametrize(
        ("regime", "fuel", "expected"),
        [("legacy_2010", "gasoline", 2.32), ("legacy_2010", "diesel", 2.62), ("legacy_logistics", "diesel", 2.58)],
    )
    def test_legacy_co2_factors(self, regime: str, fuel: str, expected: float) -> None:
        table = read_data_tables().tables["co2_per_fuel"]
        value = table[(table["regime"] == regime) & (table["fuel"] == fuel)]["kg_co2_per_unit"]
        assert value.tolist() == [expected]

    def test_versions_exposed(self, model: EmissionModel) -> None:
        assert model.versions["factor_table_version"]
        assert model.versions["methodology_version"]
        assert len(model.versions["data_sha256"]) == 64
        assert model.versions["factor_regime"] == "legacy_2010"

    def test_cycles_match_shared_copy(self, model: EmissionModel) -> None:
        speeds = model.cycles_m_per_s["wltc_3b"]
        assert speeds.shape == (1801,)
        assert np.isfinite(speeds).all()
