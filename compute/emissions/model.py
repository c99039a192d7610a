"""Tiered fuel and CO2 model: ``load_model`` once, then ``estimate_trips`` per partition.

Fuel comes first, emissions second. For each trip the highest tier whose inputs pass
validation sets the fuel (or electric energy):

* T1 ``fuel_measured``: sum of tachograph ``fuel_ml``.
* T2 ``tacho_profile``: road-load model driven by the 1 Hz tachograph speed, when the distance of
  that speed agrees with the GPS distance (``_tacho_distance_mismatch``).
* T3 ``gps_profile``: the same model driven by segment speed and acceleration from vertex times.
* T4 ``catalog_fe``: distance / (catalog fuel economy / real-world gap of its test cycle).
* T5 ``default_table``: class and fuel defaults (improved ton-km formula for trucks).

Grade, load, idle and the optional cold start act per segment (per tachograph interval for T2).
CO2 is fuel x the factor of the selected regime for the fuel burnt, which depends on the class for
fuel type hybrid. CO2e adds CH4 and N2O per km; WTW adds the well-to-tank factor (grid factor for
electricity).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from compute import columns as c
from compute import metrics
from compute.emissions import profiles
from compute.emissions.cycles import accel_loss_table
from compute.emissions.flags import join_flags
from compute.emissions.parameters import build_cycle_statistics, build_vehicle_parameters
from compute.emissions.settings import EmissionSettings
from compute.emissions.tables import CONFIRMED_TAGS, DataTables, read_data_tables
from compute.emissions.tonkm import fuel_l_per_km

FUEL_MEASURED = "fuel_measured"
TACHO_PROFILE = "tacho_profile"
GPS_PROFILE = "gps_profile"
CATALOG_FE = "catalog_fe"
DEFAULT_TABLE = "default_table"
UNAVAILABLE = "unavailable"
METHODS = (FUEL_MEASURED, TACHO_PROFILE, GPS_PROFILE, CATALOG_FE, DEFAULT_TABLE)

_UNIT_COLUMNS = {"l": c.FUEL_L, "m3": c.FUEL_M3, "kwh": c.ENERGY_KWH}

TRIP_OUTPUT_DTYPES: dict[str, str] = {
    c.TRIP_ID: "str",
    c.VEHICLE_ID: "str",
    c.DISTANCE_KM: "float64",
    c.DURATION_S: "float64",
    c.IDLE_S: "float64",
    c.AVG_SPEED_KMH: "float64",
    c.FUEL_L: "float64",
    c.FUEL_M3: "float64",
    c.ENERGY_KWH: "float64",
    c.CO2_TTW_KG: "float64",
    c.CO2E_TTW_KG: "float64",
    c.CO2E_WTW_KG: "float64",
    c.CO2_G_PER_KM: "float64",
    c.CO2_G_PER_TKM: "float64",
    c.METHOD: "str",
    c.UNCERTAINTY_PCT: "float64",
    c.QUALITY_FLAGS: "str",
    c.T1_T2_RATIO: "float64",
    c.FACTOR_VERSION: "str",
    c.METHODOLOGY_VERSION: "str",
}
SEGMENT_OUTPUT_COLUMNS = (c.FUEL_L, c.FUEL_M3, c.ENERGY_KWH, c.CO2_TTW_KG)


@dataclass(frozen=True)
class EmissionModel:
    """Settings, factor tables and precomputed calibration statistics; picklable.

    Attributes
    ----------
    settings : the settings the model was loaded with
    vehicle_params : one row per (vehicle_class, fuel_type) with road load, idle rate,
        powertrain and default fuel economy
    cycle_stats : time and wheel work per km of each certification cycle per (class, fuel)
    fuel_factors : per (vehicle_class, fuel_type): unit, the fuel burnt (factor_fuel), CO2, WTT
        and their confirmation status
    ch4_n2o : per (vehicle_class, fuel_type): CH4 and N2O (kg/km) and confirmation status
    gap : per (test_cycle, powertrain): catalog gap and the part a profile explains
    tonkm : improved ton-km coefficients per fuel
    versions : factor_table_version, methodology_version, data_sha256 and the selections
    """

    settings: EmissionSettings
    vehicle_params: pd.DataFrame
    cycle_stats: pd.DataFrame
    fuel_factors: pd.DataFrame
    ch4_n2o: pd.DataFrame
    gwp_ch4: float
    gwp_n2o: float
    gwp_confirmed: bool
    gap: pd.DataFrame
    tonkm: pd.DataFrame
    tier_uncertainty_pct: dict[str, float]
    accel_intervals_s: np.ndarray
    accel_factors: np.ndarray
    cycles_m_per_s: dict[str, np.ndarray] = field(repr=False)
    versions: dict[str, str]


@dataclass(frozen=True)
class EstimateResult:
    """Per-trip and per-segment estimates of one partition."""

    trips: pd.DataFrame
    segments: pd.DataFrame


def load_model(settings: EmissionSettings | None = None) -> EmissionModel:
    """Load the factor tables and precompute the calibration statistics for ``settings``.

    Parameters
    ----------
    settings
        Model settings; ``None`` uses the defaults.

    Returns
    -------
    EmissionModel
        Picklable; ship it to every Dask worker once.

    Raises
    ------
    ValueError
        If ``settings.factor_table_version`` differs from the shipped table version, or the
        selected regime, GWP set or grid factor has no rows in the data files.
    """
    settings = settings or EmissionSettings()
    data = read_data_tables()

    shipped = data.versions["factor_table_version"]
    if settings.factor_table_version not in (None, shipped):
        raise ValueError(
            f"settings.factor_table_version is {settings.factor_table_version!r} but the shipped "
            f"factor tables are version {shipped!r}; install the matching lm-co2 release or clear the setting"
        )

    vehicle_params = build_vehicle_parameters(data)
    cycle_stats = build_cycle_statistics(vehicle_params, data, settings)
    intervals_s, factors = accel_loss_table(data.cycles_m_per_s)
    gwp_ch4, gwp_n2o, gwp_confirmed = _select_gwp(data, settings)

    versions = dict(data.versions)
    versions.update(factor_regime=settings.factor_regime, gwp_set=settings.gwp_set, grid_factor=settings.grid_factor)
    return EmissionModel(
        settings=settings,
        vehicle_params=vehicle_params,
        cycle_stats=cycle_stats,
        fuel_factors=_select_fuel_factors(data, settings, vehicle_params),
        ch4_n2o=_select_ch4_n2o(data, vehicle_params),
        gwp_ch4=gwp_ch4,
        gwp_n2o=gwp_n2o,
        gwp_confirmed=gwp_confirmed,
        gap=_select_gap(data, settings),
        tonkm=data.tables["tonkm"].set_index("fuel"),
        tier_uncertainty_pct=dict(
            zip(data.tables["tier_uncertainty"]["method"], data.tables["tier_uncertainty"]["uncertainty_pct"], strict=True)
        ),
        accel_intervals_s=intervals_s,
        accel_factors=factors,
        cycles_m_per_s=data.cycles_m_per_s,
        versions=versions,
    )


def estimate_trips(
    segments: pd.DataFrame,
    trips: pd.DataFrame,
    vehicles: pd.DataFrame | ResolvedVehicles,
    tacho: pd.DataFrame,
    model: EmissionModel,
) -> EstimateResult:
    """Estimate fuel, energy and emissions per trip and per segment for one partition.

    Parameters
    ----------
    segments
        One row per pair of consecutive vertices, ordered by trip then seg_index.
    trips
        One row per trip; every output row belongs to one of these trip_ids.
    vehicles
        Vehicle master; may contain vehicles no trip uses. Or the master already resolved for
        ``model`` by :func:`resolve_vehicles`, which a worker keeps for all of its pieces.
    tacho
        Tachograph rows aligned to the trips; may be empty.
    model
        The result of ``load_model``.

    Returns
    -------
    EstimateResult
        ``trips``: one row per input trip, in input order, with the columns of
        ``TRIP_OUTPUT_DTYPES``. ``segments``: the input segments plus fuel_l, fuel_m3,
        energy_kwh and co2_ttw_kg, which sum per trip to the trip values.

    Notes
    -----
    Pure and vectorised: numpy over segments and tachograph rows, ``np.bincount`` and pandas
    groupby per trip; no Python loop per trip, vertex or row.
    """
    settings = model.settings

    trip_frame = resolve_trip_vehicles(trips, vehicles, model)
    n_trips = len(trip_frame)

    columns = profiles.segment_columns(segments, trip_frame)
    seg = profiles.segment_profile(segments, trip_frame, model, columns)
    tach = profiles.tacho_profile(tacho, segments, trip_frame, model, columns)

    # A tachograph speed that disagrees with the GPS distance is not used for T2 or idle time.
    distance_mismatch = _tacho_distance_mismatch(tach, seg, settings)
    speed_usable = tach.speed_valid & ~distance_mismatch

    # Tier totals in the fuel unit of each vehicle.
    found = trip_frame["vehicle_found"].to_numpy()
    t1_valid = found & tach.fuel_valid & settings.enable_fuel_measured
    t2_valid = found & speed_usable & settings.enable_tacho_profile
    t3_valid = found & seg.gps_valid & settings.enable_gps_profile
    t4_valid = found & trip_frame["catalog_usable"].to_numpy() & settings.enable_catalog_fe
    t2_fuel = tach.model_fuel
    t3_fuel = seg.trip_physics_fuel
    distance_fuel = seg.trip_distance_fuel

    method = np.select(
        [t1_valid, t2_valid, t3_valid, t4_valid, found],
        [FUEL_MEASURED, TACHO_PROFILE, GPS_PROFILE, CATALOG_FE, DEFAULT_TABLE],
        default=UNAVAILABLE,
    )
    fuel = np.select(
        [t1_valid, t2_valid, t3_valid, found],
        [tach.measured_fuel, t2_fuel, t3_fuel, distance_fuel],
        default=np.nan,
    )
    fuel = np.where(np.isnan(fuel), np.nan, np.maximum(fuel, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t1_t2_ratio = np.where(t1_valid & t2_valid & (t2_fuel > 0), tach.measured_fuel / t2_fuel, np.nan)

    # Distance, duration and idle time.
    has_segments = seg.trip_segment_count > 0
    distance_km = np.where(has_segments, seg.trip_length_m / 1000.0, tach.distance_m / 1000.0)
    duration_s = (
        (trip_frame[c.END_TIME] - trip_frame[c.START_TIME]).dt.total_seconds().to_numpy(dtype="float64")
        if n_trips
        else np.zeros(0)
    )
    idle_s = np.where(speed_usable, tach.idle_s, np.where(seg.timed_trip, seg.trip_idle_s, np.nan))

    # Emissions.
    out = _assemble_trip_frame(trip_frame, model, fuel, method, distance_km, duration_s, idle_s, t1_t2_ratio)
    out[c.QUALITY_FLAGS] = join_flags(
        _collect_flags(trip_frame, model, method, seg, tach, distance_km, t1_valid, distance_mismatch), n_trips
    )
    out = metrics.compute_trip_metrics(out, trip_frame[c.LOAD_KG].to_numpy(dtype="float64"))
    out = out[list(TRIP_OUTPUT_DTYPES)].astype(TRIP_OUTPUT_DTYPES)

    segments_out = _distribute_to_segments(segments, seg, trip_frame, out)
    return EstimateResult(trips=out.reset_index(drop=True), segments=segments_out)


@dataclass(frozen=True)
class ResolvedVehicles:
    """Vehicle master joined to its class parameters, gap and T2/T3 calibration.

    Everything :func:`resolve_trip_vehicles` attaches that does not depend on the trip's load.
    ``frame`` has one row per distinct vehicle id, in the order of ``ids``. ``unknown`` is the
    one row that a trip of a vehicle missing from the master takes: every master column missing.
    """

    frame: pd.DataFrame
    unknown: pd.DataFrame
    ids: pd.Index


#: Columns of the vehicle master that the model reads.
_VEHICLE_COLUMNS = [c.VEHICLE_ID, c.VEHICLE_CLASS, c.FUEL_TYPE, c.CATALOG_FE, c.TEST_CYCLE, c.MAX_PAYLOAD_KG]


def resolve_trip_vehicles(
    trips: pd.DataFrame, vehicles: pd.DataFrame | ResolvedVehicles, model: EmissionModel
) -> pd.DataFrame:
    """Attach vehicle attributes, class parameters and the T2/T3 calibration to every trip.

    ``vehicles`` is the vehicle master, or the result of :func:`resolve_vehicles` for this model
    (a worker resolves its master once and reuses it for every piece).

    Returns
    -------
    pandas.DataFrame
        One row per trip in input order (RangeIndex). Besides the vehicle columns it has mass_kg,
        load_factor, fuel_per_kj, residual_gap, catalog_gap, distance_fuel_per_km (T4 or T5
        base), variable_share, positive_force_n, calibration flags and confirmation flags.
    """
    resolved = vehicles if isinstance(vehicles, ResolvedVehicles) else resolve_vehicles(vehicles, model)
    trips = trips.reset_index(drop=True)
    trip_vehicles = trips[c.VEHICLE_ID].to_numpy(dtype=object)
    rows = resolved.ids.get_indexer(trip_vehicles)
    rows[pd.isna(trip_vehicles)] = -1  # a missing id is no vehicle, however it is spelled
    source = resolved.frame
    if (rows < 0).any():
        # Concatenating the unknown row widens the dtypes (bool to object, int to float) as the
        # left merge of a master without the vehicle does.
        source = pd.concat([source, resolved.unknown], ignore_index=True)
        rows = np.where(rows >= 0, rows, len(source) - 1)
    vehicle = source.drop(columns=[c.VEHICLE_ID]).take(rows).reset_index(drop=True)
    frame = pd.concat([trips, vehicle], axis=1)
    _attach_load(frame, model)
    return frame


def resolve_vehicles(vehicles: pd.DataFrame, model: EmissionModel) -> ResolvedVehicles:
    """Resolve every vehicle of the master for ``model``: the load-independent part of
    :func:`resolve_trip_vehicles`. The first row of a repeated vehicle id wins."""
    master = vehicles[_VEHICLE_COLUMNS].drop_duplicates(c.VEHICLE_ID, keep="first").reset_index(drop=True)
    frame = _resolve_master(master, model)
    unknown = _resolve_master(master.iloc[:0].reindex([0]), model)
    return ResolvedVehicles(frame=frame, unknown=unknown, ids=pd.Index(frame[c.VEHICLE_ID].to_numpy(dtype=object)))


def _resolve_master(master: pd.DataFrame, model: EmissionModel) -> pd.DataFrame:
    frame = master.merge(model.vehicle_params, on=[c.VEHICLE_CLASS, c.FUEL_TYPE], how="left")
    frame["vehicle_found"] = frame["empty_mass_kg"].notna()

    # Payload.
    payload_known = frame[c.MAX_PAYLOAD_KG].astype("float64") > 0
    frame["payload_kg"] = frame[c.MAX_PAYLOAD_KG].astype("float64").where(payload_known, frame["default_max_payload_kg"])
    frame["payload_default"] = frame["is_truck"].fillna(False).astype(bool) & ~payload_known
    frame = _attach_tonkm(frame, model)

    # Catalog and gap.
    catalog = frame[c.CATALOG_FE].astype("float64")
    cycle = frame[c.TEST_CYCLE].astype(object).where(frame[c.TEST_CYCLE].notna(), None)
    frame["catalog_present"] = catalog > 0
    frame["catalog_usable"] = frame["catalog_present"] & cycle.isin(["WLTC", "JC08", "JH25"])
    powertrain = np.where(frame[c.FUEL_TYPE] == "hybrid", "hybrid", "conventional")
    gap = model.gap.reindex(pd.MultiIndex.from_arrays([cycle.fillna(""), powertrain]))
    frame["catalog_gap"] = np.where(frame["catalog_usable"], gap["catalog_gap"].to_numpy(), 1.0)
    explained = gap["explained_by_profile"].to_numpy()
    frame["residual_gap"] = np.where(frame["catalog_usable"], np.maximum(frame["catalog_gap"] - explained, 1.0), 1.0)
    frame["gap_confirmed"] = np.where(frame["catalog_usable"], gap["confirmed"].fillna(False).to_numpy(dtype=bool), True)

    return _calibrate(frame, cycle, model)


def _attach_load(frame: pd.DataFrame, model: EmissionModel) -> None:
    """Add the columns that depend on the trip's load: mass, load factor, the T5 (defaults) and T4
    (catalog) fuel per km before the grade and idle corrections. Numpy on whole columns."""
    settings = model.settings
    load_kg = _floats(frame, c.LOAD_KG)
    payload_kg = _floats(frame, "payload_kg")
    known = ~np.isnan(load_kg)
    is_truck = frame["is_truck"].fillna(False).to_numpy(dtype=bool)
    frame["mass_kg"] = _floats(frame, "empty_mass_kg") + np.where(known, load_kg, _floats(frame, "default_load_kg"))
    with np.errstate(divide="ignore", invalid="ignore"):
        known_factor = np.where(known & (payload_kg > 0), load_kg / payload_kg, np.nan)
    load_factor = np.clip(np.where(np.isnan(known_factor), _floats(frame, "default_load_factor"), known_factor),
                          settings.min_load_factor, 1.0)
    frame["load_factor"] = load_factor
    frame["load_unknown"] = is_truck & ~known

    default_per_km = _default_fuel_per_km(frame).to_numpy(dtype="float64")
    catalog_load = _load_multiplier(frame, settings.catalog_reference_load_factor).to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        catalog_per_km = _floats(frame, "catalog_gap") / _floats(frame, c.CATALOG_FE) * catalog_load
    frame["default_fuel_per_km"] = default_per_km
    frame["distance_fuel_per_km"] = np.where(frame["catalog_usable"].to_numpy(dtype=bool), catalog_per_km, default_per_km)


def _floats(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy(dtype="float64", na_value=np.nan)


def _calibrate(frame: pd.DataFrame, cycle: pd.Series, model: EmissionModel) -> pd.DataFrame:
    """Fit the T2/T3 scale k per trip from (class, fuel, catalog, cycle), vectorised."""
    from compute.emissions.physics import solve_fuel_per_kj

    settings = model.settings
    calibration_cycle = cycle.where(frame["catalog_usable"], frame["certification_cycle"]).fillna("WLTC")
    stats = model.cycle_stats.set_index([c.VEHICLE_CLASS, c.FUEL_TYPE, c.TEST_CYCLE]).reindex(
        pd.MultiIndex.from_arrays([frame[c.VEHICLE_CLASS], frame[c.FUEL_TYPE], calibration_cycle])
    )
    catalog = frame[c.CATALOG_FE].astype("float64")
    hot_adjust = np.where(
        calibration_cycle == "JC08", 1.0 + settings.jc08_cold_weight * settings.jc08_cold_excess_pct / 100.0, 1.0
    )
    reference_default = _default_fuel_per_km(frame, reference_load=True)
    target = np.where(frame["catalog_usable"], 1.0 / (catalog * hot_adjust), reference_default)

    fuel_per_kj, clamped = solve_fuel_per_kj(
        target,
        frame["idle_rate_per_s"].to_numpy(dtype="float64"),
        stats["time_s_per_km"].to_numpy(),
        stats["work_kj_per_km"].to_numpy(),
    )
    frame["fuel_per_kj"] = fuel_per_kj
    frame["calibration_clamped"] = clamped & frame["vehicle_found"].to_numpy()
    frame["calibrated_on_default"] = ~frame["catalog_usable"]
    frame["calibration_substitute"] = calibration_cycle.isin(["JC08", "JH25"]).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["variable_share"] = np.clip(fuel_per_kj * stats["work_kj_per_km"].to_numpy() / target, 0.0, 1.0)
    # The real-world residual acts on the power-dependent fuel only, so idle keeps the ECCJ rate.
    # It is scaled so that the certification cycle total rises by exactly the residual.
    residual = frame["residual_gap"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        variable_residual = np.where(frame["variable_share"] > 0, 1.0 + (residual - 1.0) / frame["variable_share"], 1.0)
    frame["profile_fuel_per_kj"] = fuel_per_kj * variable_residual
    frame["positive_force_n"] = stats["positive_work_kj_per_km"].to_numpy()
    frame["traction_distance_share"] = stats["traction_distance_share"].to_numpy()
    return frame


def _attach_tonkm(frame: pd.DataFrame, model: EmissionModel) -> pd.DataFrame:
    coefficients = model.tonkm.reindex(frame["tonkm_fuel"])
    for name in ("a", "b", "c"):
        frame[f"tonkm_{name}"] = coefficients[name].to_numpy()
    # Fuel per vehicle-km scales with the load factor to the power 1 - b.
    frame["load_exponent"] = (1.0 - frame["tonkm_b"]).fillna(0.0)
    return frame


def _load_multiplier(frame: pd.DataFrame, reference_load_factor: float | pd.Series) -> pd.Series:
    is_truck = frame["is_truck"].fillna(False).astype(bool)
    ratio = frame["load_factor"] / reference_load_factor
    return ratio.pow(frame["load_exponent"]).where(is_truck, 1.0).fillna(1.0)


def _default_fuel_per_km(frame: pd.DataFrame, reference_load: bool = False) -> pd.Series:
    """Return the T5 fuel per km: improved ton-km for trucks where defined, else the table."""
    load_factor = frame["default_load_factor"] if reference_load else frame["load_factor"]
    tonkm = pd.Series(
        fuel_l_per_km(load_factor, frame["payload_kg"], frame["tonkm_a"], frame["tonkm_b"], frame["tonkm_c"]),
        index=frame.index,
    )
    use_tonkm = (frame["basis"] == "improved_ton_km") & tonkm.notna()
    table_load = 1.0 if reference_load else _load_multiplier(frame, frame["default_load_factor"])
    table = table_load / frame["km_per_unit"]
    return tonkm.where(use_tonkm, table)


def _assemble_trip_frame(
    trip_frame: pd.DataFrame,
    model: EmissionModel,
    fuel: np.ndarray,
    method: np.ndarray,
    distance_km: np.ndarray,
    duration_s: np.ndarray,
    idle_s: np.ndarray,
    t1_t2_ratio: np.ndarray,
) -> pd.DataFrame:
    vehicle_keys = pd.MultiIndex.from_arrays([trip_frame[c.VEHICLE_CLASS], trip_frame[c.FUEL_TYPE]])
    factors = model.fuel_factors.reindex(vehicle_keys)
    unit = factors["unit"].to_numpy(dtype=object)
    ch4_n2o = model.ch4_n2o.reindex(vehicle_keys)

    out = pd.DataFrame({c.TRIP_ID: trip_frame[c.TRIP_ID].to_numpy(), c.VEHICLE_ID: trip_frame[c.VEHICLE_ID].to_numpy()})
    out[c.DISTANCE_KM] = distance_km
    out[c.DURATION_S] = duration_s
    out[c.IDLE_S] = idle_s
    for unit_name, column in _UNIT_COLUMNS.items():
        out[column] = np.where(unit == unit_name, fuel, np.nan)

    co2 = fuel * factors["kg_co2_per_unit"].to_numpy(dtype="float64")
    other_gases = distance_km * (
        ch4_n2o["ch4_kg_per_km"].to_numpy(dtype="float64") * model.gwp_ch4
        + ch4_n2o["n2o_kg_per_km"].to_numpy(dtype="float64") * model.gwp_n2o
    )
    out[c.CO2_TTW_KG] = co2
    out[c.CO2E_TTW_KG] = co2 + other_gases
    out[c.CO2E_WTW_KG] = out[c.CO2E_TTW_KG] + fuel * factors["wtt_kg_co2e_per_unit"].to_numpy(dtype="float64")
    out[c.METHOD] = method
    out[c.UNCERTAINTY_PCT] = pd.Series(method).map(model.tier_uncertainty_pct).to_numpy(dtype="float64")
    out[c.T1_T2_RATIO] = t1_t2_ratio
    out[c.FACTOR_VERSION] = model.versions["factor_table_version"]
    out[c.METHODOLOGY_VERSION] = model.versions["methodology_version"]
    return out


def _collect_flags(
    trip_frame: pd.DataFrame,
    model: EmissionModel,
    method: np.ndarray,
    seg: profiles.SegmentProfile,
    tach: profiles.TachoProfile,
    distance_km: np.ndarray,
    t1_valid: np.ndarray,
    distance_mismatch: np.ndarray,
) -> dict[str, np.ndarray]:
    found = trip_frame["vehicle_found"].to_numpy(dtype=bool)
    profile = np.isin(method, [TACHO_PROFILE, GPS_PROFILE])
    modelled = np.isin(method, [TACHO_PROFILE, GPS_PROFILE, CATALOG_FE, DEFAULT_TABLE])
    uses_catalog = np.isin(method, [TACHO_PROFILE, GPS_PROFILE, CATALOG_FE]) & trip_frame["catalog_usable"].to_numpy()
    vehicle_keys = pd.MultiIndex.from_arrays([trip_frame[c.VEHICLE_CLASS], trip_frame[c.FUEL_TYPE]])
    factors = model.fuel_factors.reindex(vehicle_keys)
    ch4_n2o = model.ch4_n2o.reindex(vehicle_keys)
    electric = (trip_frame[c.FUEL_TYPE] == "electric").to_numpy()
    truck = trip_frame["is_truck"].fillna(False).to_numpy(dtype=bool)
    tonkm_used = (method == DEFAULT_TABLE) & (trip_frame["basis"] == "improved_ton_km").to_numpy() | (
        modelled & truck & ~np.isin(method, [TACHO_PROFILE, GPS_PROFILE])
    )
    catalog_present = trip_frame["catalog_present"].to_numpy(dtype=bool)
    timed = seg.timed_trip

    return {
        "vehicle_not_found": ~found,
        "no_segments": seg.trip_segment_count == 0,
        "zero_distance": ~(distance_km > 0),
        "interpolated_times": (trip_frame[c.TIME_SOURCE] != "vertex").to_numpy(),
        "sparse_vertices": timed & ~seg.gps_valid & seg.sparse,
        "tacho_fuel_incomplete": tach.has_fuel_rows & ~t1_valid,
        "tacho_speed_incomplete": tach.has_speed_rows & ~tach.speed_valid,
        "tacho_distance_mismatch": distance_mismatch,
        "tacho_rows_rejected": tach.rejected_rows > 0,
        "no_catalog_fe": found & ~catalog_present,
        "no_test_cycle": found & catalog_present & ~trip_frame["catalog_usable"].to_numpy(dtype=bool),
        "calibrated_on_class_default": profile & trip_frame["calibrated_on_default"].to_numpy(dtype=bool),
        "calibration_clamped": profile & trip_frame["calibration_clamped"].to_numpy(dtype=bool),
        "gps_accel_corrected": (method == GPS_PROFILE) & (seg.trip_accel_factor > 1.001),
        "gps_jump_replaced": (method == GPS_PROFILE) & seg.trip_gps_jump,
        "gps_standstill": seg.trip_standstill,
        "no_grade": modelled & ~(method == FUEL_MEASURED) & seg.trip_missing_grade,
        "grade_clipped": seg.trip_grade_clipped,
        "load_unknown": modelled & trip_frame["load_unknown"].to_numpy(dtype=bool),
        "payload_default": modelled & trip_frame["payload_default"].to_numpy(dtype=bool),
        "tonkm_coefficients_2006": tonkm_used & trip_frame["tonkm_a"].notna().to_numpy(),
        "cold_start_applied": model.settings.cold_start & modelled,
        "electric_ttw_zero": electric & found,
        "unconfirmed_co2_factor": found & ~factors["co2_confirmed"].fillna(True).to_numpy(dtype=bool),
        "unconfirmed_ch4_n2o": found & ~ch4_n2o["confirmed"].fillna(True).to_numpy(dtype=bool),
        "unconfirmed_gwp": found & ~electric & (not model.gwp_confirmed),
        "unconfirmed_wtt": found & ~factors["wtt_confirmed"].fillna(True).to_numpy(dtype=bool),
        "unconfirmed_grid": found & electric & ~factors["wtt_confirmed"].fillna(True).to_numpy(dtype=bool),
        "unconfirmed_gap": uses_catalog & ~trip_frame["gap_confirmed"].to_numpy(dtype=bool),
        "unconfirmed_idle_rate": modelled & ~trip_frame["idle_confirmed"].fillna(True).to_numpy(dtype=bool),
        "unconfirmed_road_load": profile & ~trip_frame["road_load_confirmed"].fillna(True).to_numpy(dtype=bool),
        "unconfirmed_default_fe": (
            ((method == DEFAULT_TABLE) | (profile & trip_frame["calibrated_on_default"].to_numpy(dtype=bool)))
            & ~trip_frame["default_fe_confirmed"].fillna(True).to_numpy(dtype=bool)
        ),
        "unconfirmed_cycle_substitute": profile & trip_frame["calibration_substitute"].to_numpy(dtype=bool),
    }


def _tacho_distance_mismatch(
    tach: profiles.TachoProfile, seg: profiles.SegmentProfile, settings: EmissionSettings
) -> np.ndarray:
    """Mark the trips whose distance from the tachograph speed disagrees with the GPS distance.

    Only a trip with segments and a valid speed profile is judged. It mismatches when the ratio
    of tachograph to GPS distance lies outside the band of the settings and the two distances
    also differ by more than ``min_tacho_gps_distance_difference_m``. A GPS distance of 0 gives
    an infinite ratio.
    """
    tacho_m = tach.distance_m
    gps_m = seg.trip_length_m
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = tacho_m / gps_m
    outside = (ratio < settings.min_tacho_gps_distance_ratio) | (ratio > settings.max_tacho_gps_distance_ratio)
    apart = np.abs(tacho_m - gps_m) > settings.min_tacho_gps_distance_difference_m
    return tach.speed_valid & (seg.trip_segment_count > 0) & outside & apart


def _distribute_to_segments(
    segments: pd.DataFrame, seg: profiles.SegmentProfile, trip_frame: pd.DataFrame, trips_out: pd.DataFrame
) -> pd.DataFrame:
    """Split each trip's fuel and CO2 over its segments in proportion to the segment model."""
    out = segments.copy(deep=False)  # new columns only; the input columns are shared, not copied
    position = np.ascontiguousarray(seg.trip_position, dtype=np.int64)
    n_trips = len(trip_frame)
    share = profiles.segment_shares(
        position, np.ascontiguousarray(seg.timed_trip, dtype=np.bool_), np.ascontiguousarray(seg.physics_fuel, dtype=np.float64),
        np.ascontiguousarray(seg.distance_fuel, dtype=np.float64), np.ascontiguousarray(seg.duration_s, dtype=np.float64),
        np.ascontiguousarray(seg.length_m, dtype=np.float64), n_trips,
    )

    trip_values = np.vstack([trips_out[column].to_numpy(dtype="float64") for column in SEGMENT_OUTPUT_COLUMNS])
    spread = profiles.spread_to_segments(share, position, trip_values)
    for row, column in enumerate(SEGMENT_OUTPUT_COLUMNS):
        # A Series on the frame's index is stored without the copy that a bare array gets.
        out[column] = pd.Series(spread[row], index=out.index, copy=False)
    return out


def _select_fuel_factors(data: DataTables, settings: EmissionSettings, vehicle_params: pd.DataFrame) -> pd.DataFrame:
    """Build the unit, CO2 and WTT factors per (class, fuel type) from the fuel it burns (``factor_fuel``)."""
    co2 = data.tables["co2_per_fuel"]
    co2 = co2[co2["regime"] == settings.factor_regime].set_index("fuel")
    if co2.empty:
        raise ValueError(f"factor regime {settings.factor_regime!r} has no rows in co2_per_fuel.csv")
    wtt = data.tables["wtt"].set_index("fuel")
    grid = data.tables["grid"].set_index("grid_factor")
    if settings.grid_factor not in grid.index:
        raise ValueError(f"grid_factor {settings.grid_factor!r} not found; expected one of {sorted(grid.index)}")
    burnt = vehicle_params["factor_fuel"]
    for table, name in ((co2, f"co2_per_fuel.csv (regime {settings.factor_regime!r})"), (wtt, "wtt.csv")):
        absent = sorted(set(burnt) - set(table.index))
        if absent:
            raise ValueError(f"{name} has no row for the burnt fuels {absent} that powertrain.csv names in factor_fuel")

    factors = vehicle_params[[c.VEHICLE_CLASS, c.FUEL_TYPE, "unit", "factor_fuel"]].set_index([c.VEHICLE_CLASS, c.FUEL_TYPE])
    factor_rows = co2.reindex(burnt)
    factors["kg_co2_per_unit"] = factor_rows["kg_co2_per_unit"].to_numpy(dtype="float64")
    factors["co2_confirmed"] = factor_rows["status"].isin(CONFIRMED_TAGS).to_numpy()
    wtt_rows = wtt.reindex(burnt)
    factors["wtt_kg_co2e_per_unit"] = wtt_rows["wtt_kg_co2e_per_unit"].to_numpy(dtype="float64")
    factors["wtt_confirmed"] = wtt_rows["status"].isin(CONFIRMED_TAGS).to_numpy()

    # Electricity's upstream emissions are the grid factor that the settings select.
    grid_row = grid.loc[settings.grid_factor]
    electric = (factors["factor_fuel"] == "electric").to_numpy()
    factors.loc[electric, "wtt_kg_co2e_per_unit"] = float(grid_row["kg_co2e_per_kwh"])
    factors.loc[electric, "wtt_confirmed"] = grid_row["status"] in CONFIRMED_TAGS
    return factors


def _select_ch4_n2o(data: DataTables, vehicle_params: pd.DataFrame) -> pd.DataFrame:
    table = data.tables["ch4_n2o"].set_index(["fuel_group", "vehicle_class"])
    keys = pd.MultiIndex.from_arrays([vehicle_params["ch4_n2o_group"], vehicle_params["vehicle_class"]])
    rows = table.reindex(keys)
    frame = pd.DataFrame(
        {
            "ch4_kg_per_km": rows["ch4_kg_per_km"].fillna(0.0).to_numpy(),
            "n2o_kg_per_km": rows["n2o_kg_per_km"].fillna(0.0).to_numpy(),
            # Fuels without a group (electric) have no exhaust: 0 is exact there.
            "confirmed": (
                rows["status"].isin(CONFIRMED_TAGS).to_numpy() | (vehicle_params["ch4_n2o_group"] == "none").to_numpy()
            ),
        },
        index=pd.MultiIndex.from_arrays(
            [vehicle_params["vehicle_class"], vehicle_params["fuel_type"]], names=[c.VEHICLE_CLASS, c.FUEL_TYPE]
        ),
    )
    return frame


def _select_gwp(data: DataTables, settings: EmissionSettings) -> tuple[float, float, bool]:
    gwp = data.tables["gwp"]
    rows = gwp[gwp["gwp_set"] == settings.gwp_set].set_index("gas")
    missing = {"CH4", "N2O"} - set(rows.index)
    if missing:
        raise ValueError(f"GWP set {settings.gwp_set!r} lacks {sorted(missing)} in gwp.csv")
    confirmed = bool(rows.loc[["CH4", "N2O"], "status"].isin(CONFIRMED_TAGS).all())
    return float(rows.loc["CH4", "gwp_100"]), float(rows.loc["N2O", "gwp_100"]), confirmed


def _select_gap(data: DataTables, settings: EmissionSettings) -> pd.DataFrame:
    gap = data.tables["gap"].copy()
    gap["confirmed"] = gap["status"].isin(CONFIRMED_TAGS)
    overrides = {
        ("WLTC", "conventional"): settings.gap_wltc,
        ("WLTC", "hybrid"): settings.gap_wltc_hybrid,
        ("JC08", "conventional"): settings.gap_jc08,
        ("JC08", "hybrid"): settings.gap_jc08_hybrid,
        ("JH25", "conventional"): settings.gap_jh25,
        ("JH25", "hybrid"): settings.gap_jh25,
    }
    gap = gap.set_index(["test_cycle", "powertrain"])
    for key, value in overrides.items():
        if value is not None:
            # A configured value is the operator's choice: it counts as confirmed.
            gap.loc[key, "catalog_gap"] = value
            gap.loc[key, "confirmed"] = True
    if settings.gap_explained_by_profile is not None:
        gap["explained_by_profile"] = settings.gap_explained_by_profile
    return gap
