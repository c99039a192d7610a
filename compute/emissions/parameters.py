"""Per (vehicle class, fuel) parameters and certification-cycle statistics, built once per model.

Calibration of tiers T2/T3 needs, for every class, fuel and certification cycle, the time per km
and the wheel work per km of the cycle at the test mass. Those numbers do not depend on the
vehicle's catalog value, so they are computed here once for all 7 x 6 x 3 combinations. Fitting
``k`` for a vehicle is then one vectorised division (``physics.solve_fuel_per_kj``).
"""

from __future__ import annotations

from collections import Counter
from itertools import product

import numpy as np
import pandas as pd

from compute.contract.schema import FUEL_TYPES, VEHICLE_CLASSES
from compute.emissions.cycles import Kinematics, kinematics_from_samples, select_cycle
from compute.emissions.physics import effective_work_kj, wheel_power_kw
from compute.emissions.settings import EmissionSettings
from compute.emissions.tables import CONFIRMED_TAGS, DataTables, data_file_path

CERTIFICATION_CYCLES = ("WLTC", "JC08", "JH25")
_INTERURBAN_DURATION_S = 600

#: ``vehicle_class`` of a powertrain row that applies to every class without a row of its own.
ANY_VEHICLE_CLASS = "*"


def build_vehicle_parameters(data: DataTables) -> pd.DataFrame:
    """Join road load, idle rate, powertrain and default fuel economy per (class, fuel).

    Returns
    -------
    pandas.DataFrame
        One row per (vehicle_class, fuel_type) with the status of each source as a boolean
        ``*_confirmed`` column.

    Raises
    ------
    ValueError
        If a (class, fuel) combination lacks a row in one of the tables.
    """
    grid = pd.MultiIndex.from_product([VEHICLE_CLASSES, FUEL_TYPES], names=["vehicle_class", "fuel_type"])
    params = pd.DataFrame(index=grid).reset_index()

    road = data.tables["road_load"].rename(columns={"status": "road_load_status"}).drop(columns="source")
    idle = data.tables["idle_rates"].rename(columns={"fuel": "fuel_type", "status": "idle_status", "unit": "idle_unit"})
    power = resolve_powertrains(data.tables["powertrain"]).rename(columns={"status": "powertrain_status"})
    default_fe = data.tables["default_fe"].rename(columns={"fuel": "fuel_type", "status": "default_fe_status"})

    params = params.merge(road, on="vehicle_class", how="left")
    params = params.merge(idle.drop(columns="source"), on=["vehicle_class", "fuel_type"], how="left")
    params = params.merge(power.drop(columns="source"), on=["vehicle_class", "fuel_type"], how="left")
    params = params.merge(default_fe.drop(columns="source"), on=["vehicle_class", "fuel_type"], how="left")

    required = ["empty_mass_kg", "idle_rate_per_h", "unit", "basis"]
    incomplete = params[params[required].isna().any(axis=1)]
    if not incomplete.empty:
        pairs = list(zip(incomplete["vehicle_class"], incomplete["fuel_type"], strict=True))
        raise ValueError(f"vehicle data files lack rows for (class, fuel) {pairs}; add them to compute/data/vehicles")

    for column in ("road_load_status", "idle_status", "default_fe_status"):
        params[column.replace("_status", "_confirmed")] = params[column].isin(CONFIRMED_TAGS)
    params["idle_rate_per_s"] = params["idle_rate_per_h"] / 3600.0
    params["is_truck"] = params["default_max_payload_kg"].notna()
    return params


def resolve_powertrains(table: pd.DataFrame) -> pd.DataFrame:
    """Pick the powertrain row of every (vehicle class, fuel) pair of the contract.

    A row whose ``vehicle_class`` names the class wins over the ``*`` row of the same fuel. So a
    fuel whose engine depends on the class has one row per class: ``hybrid`` is a gasoline hybrid
    in cars and kei vehicles but a diesel hybrid in trucks and buses. A fuel burnt alike in every
    class has a single ``*`` row.

    Parameters
    ----------
    table
        The rows of ``compute/data/vehicles/powertrain.csv``.

    Returns
    -------
    pandas.DataFrame
        One row per pair of ``VEHICLE_CLASSES`` x ``FUEL_TYPES``, in that order, with the table's
        columns; ``fuel`` is renamed ``fuel_type`` and ``vehicle_class`` names the class.

    Raises
    ------
    ValueError
        If a row names a class or fuel outside the contract, a (class, fuel) pair has more than
        one row, or a pair has neither its own row nor a ``*`` row of its fuel.
    """
    path = data_file_path("powertrain")
    classes = table["vehicle_class"].astype(str)
    fuels = table["fuel"].astype(str)

    unknown_classes = sorted(set(classes) - {ANY_VEHICLE_CLASS, *VEHICLE_CLASSES})
    unknown_fuels = sorted(set(fuels) - set(FUEL_TYPES))
    if unknown_classes or unknown_fuels:
        raise ValueError(
            f"{path} names vehicle classes {unknown_classes} and fuels {unknown_fuels} outside the contract. "
            f"Expected vehicle_class in {list(VEHICLE_CLASSES)} or {ANY_VEHICLE_CLASS!r} and fuel in {list(FUEL_TYPES)}"
        )
    keys = list(zip(classes, fuels, strict=True))
    repeated = sorted(key for key, count in Counter(keys).items() if count > 1)
    if repeated:
        raise ValueError(f"{path} has more than one row for (vehicle_class, fuel) {repeated}. Keep one row per pair")

    row_of = {key: position for position, key in enumerate(keys)}
    pairs = list(product(VEHICLE_CLASSES, FUEL_TYPES))
    rows = [row_of.get(pair, row_of.get((ANY_VEHICLE_CLASS, pair[1]))) for pair in pairs]
    missing = [pair for pair, row in zip(pairs, rows, strict=True) if row is None]
    if missing:
        raise ValueError(
            f"{path} has no row for (vehicle_class, fuel) {missing}. Add a row for the class "
            f"or a {ANY_VEHICLE_CLASS!r} row for the fuel"
        )

    resolved = table.iloc[[row for row in rows if row is not None]].rename(columns={"fuel": "fuel_type"})
    resolved = resolved.reset_index(drop=True)
    resolved["vehicle_class"] = [vehicle_class for vehicle_class, _ in pairs]
    return resolved


def build_cycle_statistics(params: pd.DataFrame, data: DataTables, settings: EmissionSettings) -> pd.DataFrame:
    """Compute time and wheel work per km of each certification cycle per (class, fuel).

    WLTC is Japan's Low + Medium + High. JC08 is the substitute trace chosen in the settings.
    JH25 (heavy-vehicle mode) is a distance-weighted mix of the urban substitute and a flat
    constant-speed interurban part, driven at the test payload of the settings.

    Returns
    -------
    pandas.DataFrame
        Columns vehicle_class, fuel_type, test_cycle, time_s_per_km, work_kj_per_km,
        positive_work_kj_per_km (the mean positive tractive force in N) and
        traction_distance_share (share of the distance driven with positive wheel power).
    """
    urban = kinematics_from_samples(select_cycle(data.cycles_m_per_s, "wltc_japan"))
    jc08 = kinematics_from_samples(select_cycle(data.cycles_m_per_s, settings.jc08_substitute))
    jh25_urban = kinematics_from_samples(select_cycle(data.cycles_m_per_s, "wltc_low_medium"))
    interurban = _constant_speed_kinematics(settings.jh25_interurban_speed_kmh / 3.6)

    light_mass = params["empty_mass_kg"] + params["default_load_kg"]
    payload = params["default_max_payload_kg"]
    heavy_mass = params["empty_mass_kg"] + np.where(
        payload.notna(), settings.jh25_test_load_factor * payload.fillna(0.0), params["default_load_kg"]
    )

    frames = []
    for cycle, kin, mass in (("WLTC", urban, light_mass), ("JC08", jc08, light_mass)):
        frames.append(_cycle_frame(params, cycle, _stats_per_km(params, kin, mass.to_numpy())))

    share = settings.jh25_urban_distance_share
    urban_stats = _stats_per_km(params, jh25_urban, heavy_mass)
    interurban_stats = _stats_per_km(params, interurban, heavy_mass)
    mixed = {key: share * urban_stats[key] + (1.0 - share) * interurban_stats[key] for key in urban_stats}
    frames.append(_cycle_frame(params, "JH25", mixed))
    return pd.concat(frames, ignore_index=True)


def cycle_fuel_per_km(
    kin: Kinematics,
    mass_kg: float,
    row: pd.Series,
    fuel_per_kj: float,
    grade_pct: float = 0.0,
) -> float:
    """Evaluate the fuel per km of one vehicle on one cycle (checks and documentation)."""
    power = wheel_power_kw(
        kin.speed_m_s,
        kin.accel_m_s2,
        np.full(kin.speed_m_s.shape, grade_pct),
        mass_kg,
        row["rolling_kw_s_per_m_per_t"],
        row["road_load_b_kw_s2_per_m2"],
        row["aero_kw_s3_per_m3"],
        row["inertia_factor"],
    )
    work = effective_work_kj(power, kin.duration_s, row["regen_share"])
    fuel = row["idle_rate_per_s"] * kin.duration_s.sum() + fuel_per_kj * work.sum()
    return float(fuel / (kin.distance_m / 1000.0))


def _stats_per_km(params: pd.DataFrame, kin: Kinematics, mass_kg: np.ndarray) -> dict[str, np.ndarray]:
    def column(name: str) -> np.ndarray:
        return params[name].to_numpy(dtype="float64")[:, None]

    power = wheel_power_kw(
        kin.speed_m_s[None, :],
        kin.accel_m_s2[None, :],
        np.zeros((1, kin.speed_m_s.size)),
        np.asarray(mass_kg, dtype="float64")[:, None],
        column("rolling_kw_s_per_m_per_t"),
        column("road_load_b_kw_s2_per_m2"),
        column("aero_kw_s3_per_m3"),
        column("inertia_factor"),
    )
    distance_km = kin.distance_m / 1000.0
    work = effective_work_kj(power, kin.duration_s[None, :], column("regen_share")).sum(axis=1)
    positive = (np.maximum(power, 0.0) * kin.duration_s[None, :]).sum(axis=1)
    step_m = kin.speed_m_s * kin.duration_s
    traction_m = ((power > 0) * step_m[None, :]).sum(axis=1)
    return {
        "time_s_per_km": np.full(len(params), kin.duration_s.sum() / distance_km),
        "work_kj_per_km": work / distance_km,
        "positive_work_kj_per_km": positive / distance_km,
        "traction_distance_share": traction_m / kin.distance_m,
    }


def _cycle_frame(params: pd.DataFrame, cycle: str, stats: dict[str, np.ndarray]) -> pd.DataFrame:
    frame = params[["vehicle_class", "fuel_type"]].copy()
    frame["test_cycle"] = cycle
    for key, values in stats.items():
        frame[key] = values
    return frame


def _constant_speed_kinematics(speed_m_s: float) -> Kinematics:
    return Kinematics(
        speed_m_s=np.full(_INTERURBAN_DURATION_S, speed_m_s),
        accel_m_s2=np.zeros(_INTERURBAN_DURATION_S),
        duration_s=np.ones(_INTERURBAN_DURATION_S),
        inertia_speed_m_s=np.full(_INTERURBAN_DURATION_S, speed_m_s),
    )
