"""Deterministic sample days in the input contract layout, from a few trips to millions.

The day is laid around central Tokyo. It has a grid road network (primary, secondary and
residential links with speed limits and some gradients) and a mesh of 1 km area polygons (urban,
suburban or rural by distance from the centre). Vehicles cover every class and fuel, trajectories
walk the grid with per-vertex timestamps and stops, and a fifth of the fleet has a 1 Hz tachograph.
Half of the tachographs also meter fuel. The metered fuel follows the road load of the vehicle's
class and its catalog value, so each vehicle's measured fuel (tier T1) stays within the 0.25
tolerance of the ``t1_t2_drift`` check around the modelled fuel (T2). No vehicle is meant to
drift, and the ``make run`` day raises no such warning.

Everything is generated with numpy arrays in chunks; no Python loop runs per trip or per vertex,
so a million trips take minutes, not hours. The same ``seed`` and sizes give byte-identical
files.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from compute import columns as c
from compute.contract.schema import VEHICLE_CLASSES
from compute.emissions import EmissionModel, load_model
from compute.emissions.parameters import CERTIFICATION_CYCLES
from compute.emissions.tonkm import fuel_l_per_km
from compute.storage import Store

CENTRE_LON = 139.767  # Tokyo Station
CENTRE_LAT = 35.681
_M_PER_DEG_LAT = 111_320.0
_M_PER_DEG_LON = _M_PER_DEG_LAT * np.cos(np.radians(CENTRE_LAT))


class _SampleClass(NamedTuple):
    """Fuels, test cycle, payload and cruise speed that the sample gives the vehicles of one class."""

    fuels: tuple[str, ...]
    test_cycle: str
    max_payload_kg: float
    cruise_kmh: float


_CLASS_TABLE: dict[str, _SampleClass] = {
    "kei_passenger": _SampleClass(("gasoline", "hybrid", "electric"), "WLTC", 200.0, 28.0),
    "passenger": _SampleClass(("gasoline", "hybrid", "diesel", "lpg", "electric"), "WLTC", 400.0, 32.0),
    "bus": _SampleClass(("diesel", "cng", "hybrid"), "JH25", 4000.0, 22.0),
    "kei_truck": _SampleClass(("gasoline",), "JC08", 350.0, 28.0),
    "light_truck": _SampleClass(("diesel", "gasoline", "hybrid"), "JC08", 2000.0, 30.0),
    "medium_truck": _SampleClass(("diesel",), "JH25", 4000.0, 30.0),
    "heavy_truck": _SampleClass(("diesel",), "JH25", 12000.0, 35.0),
}

# Catalog fuel economy (low, high) per class and fuel, on the class's test cycle: km/L for
# gasoline, diesel, hybrid and LPG, km/m³ for CNG and km/kWh for electric vehicles. The ranges are
# estimates of Japanese catalog values. A value at either end gives a catalog-tier CO2 per km inside
# the class range of ``compute.plausibility``. The ``make run`` day raises no
# ``intensity_out_of_range`` warning. tests/emissions/test_sample_ops_intensity.py checks both.
# NOTE: the hybrid bus range equals the diesel one, although Hino gave its hybrid city bus a 10
# to 20 % better fuel economy than its diesel one. The model reads a hybrid bus as a diesel hybrid
# that idles at 25 % of the diesel rate and returns 20 % of its braking work. It calibrates buses
# on a JH25 substitute driven 70 % at a constant 80 km/h. On the sample's stop-and-go trips a
# hybrid bus then burns 0.71 to 0.78 times the fuel per km of its catalog value. A diesel bus burns
# 0.97 to 1.06 times its catalog value (medians of 21 days of 1,500 trips, seeds 1 to 20 and
# 20261201). These days raise no intensity warning, and their lowest hybrid bus trip has 301 g/km.
# A hybrid bus range of 4.0 to 5.5 km/L raises warnings on 5 of 13 such days.
_CATALOG_FE_RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("kei_passenger", "gasoline"): (18.0, 23.0),
    ("kei_passenger", "hybrid"): (20.0, 26.0),
    ("kei_passenger", "electric"): (7.0, 8.5),
    ("passenger", "gasoline"): (12.0, 20.0),
    ("passenger", "hybrid"): (16.0, 25.0),
    ("passenger", "diesel"): (12.0, 19.0),
    ("passenger", "lpg"): (9.0, 15.0),
    ("passenger", "electric"): (5.5, 7.5),
    ("bus", "diesel"): (3.5, 5.0),
    ("bus", "cng"): (3.0, 4.2),
    ("bus", "hybrid"): (3.5, 5.0),
    ("kei_truck", "gasoline"): (14.0, 20.0),
    ("light_truck", "diesel"): (9.0, 14.0),
    ("light_truck", "gasoline"): (8.0, 11.0),
    ("light_truck", "hybrid"): (9.0, 13.0),
    ("medium_truck", "diesel"): (5.5, 8.0),
    ("heavy_truck", "diesel"): (3.0, 4.5),
}

# Half-width (s) of the centred moving average that turns the step changes of segment speed into
# the ramps a tachograph records. Heavier vehicles take longer: a step from a stop to 35 km/h
# becomes 1.4 m/s^2 for a car (7 s window) and 0.5 m/s^2 for a heavy truck (19 s window).
# The widths also keep fuel_ml under the contract's 150 L/h: the largest reading on 20,000-trip
# days with a tachograph in every vehicle was about 36 ml/s (129 L/h).
_RAMP_HALF_WIDTH_S: dict[str, int] = {
    "kei_passenger": 3,
    "passenger": 3,
    "bus": 6,
    "kei_truck": 4,
    "light_truck": 4,
    "medium_truck": 7,
    "heavy_truck": 9,
}
# Per-vehicle factor on the engine-load fuel for what differs between vehicles of equal catalog
# value (driver, auxiliaries, wear).
_VEHICLE_FACTOR_RANGE = (0.95, 1.05)
# Relative standard deviation of one fuel meter reading around the fuel actually burnt.
_METER_NOISE = 0.03
# Floor of the engine-load share of a vehicle's reference fuel per km, for a catalog value so
# efficient that the idle rate alone would reach it.
_MIN_ENGINE_LOAD_SHARE = 0.1


@dataclass(frozen=True)
class SampleSpec:
    """Size and shape of a sample day."""

    trips: int = 200
    vertices_per_trip: int = 60
    trips_per_vehicle: int = 4
    tacho_share: float = 0.2
    no_timestamp_share: float = 0.05
    grid_cells: int = 40
    grid_spacing_m: float = 250.0
    moves_per_link: int = 3
    trips_per_file: int = 20_000
    defects: bool = True
    seed: int = 20261201

    def __post_init__(self) -> None:
        # Checked here so that an invalid spec fails before write_sample_day removes or writes a file.
        minimums = {"trips": 1, "vertices_per_trip": 2, "trips_per_file": 1}
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if value < minimum:
                raise ValueError(f"SampleSpec.{name} must be at least {minimum}, got {value}")


def write_sample_day(store: Store, run_date: dt.date, spec: SampleSpec = SampleSpec()) -> dict[str, int]:
    """Write all four input datasets of one sample day below ``store`` and return row counts.

    Any earlier files of the four datasets below ``store`` are removed first.

    Parameters
    ----------
    store
        The day's input root (``input/YYYYMMDD/``); datasets become sub-folders.
    run_date
        Day the trips take place (UTC times during the Japanese working day).
    spec
        Sizes; equal specs give identical files.
    """
    rng = np.random.default_rng(spec.seed)
    for dataset in ("trajectories", "vehicles", "tachometer", "geo_attributes"):
        store.remove(dataset)  # a smaller day written over a larger one must not keep its extra files
    store.makedirs()
    counts: dict[str, int] = {}

    geo = _geo_attributes(spec, rng)
    _write(store, "geo_attributes/part-00000.parquet", geo)
    counts["geo_attributes"] = geo.num_rows

    n_vehicles = max(1, int(np.ceil(spec.trips / spec.trips_per_vehicle)))
    vehicles = _vehicles(n_vehicles, rng)
    _write(store, "vehicles/part-00000.parquet", vehicles)
    counts["vehicles"] = vehicles.num_rows

    classes = np.asarray(vehicles.column(c.VEHICLE_CLASS).to_numpy(zero_copy_only=False))
    tacho_vehicles = rng.random(n_vehicles) < spec.tacho_share
    physics = _vehicle_physics(vehicles, rng)
    counts["trajectories"] = 0
    counts["tachometer"] = 0
    day_start_ms = int(dt.datetime.combine(run_date, dt.time(23, 0), dt.UTC).timestamp() * 1000) - 86_400_000
    for part, first in enumerate(range(0, spec.trips, spec.trips_per_file)):
        n = min(spec.trips_per_file, spec.trips - first)
        chunk_rng = np.random.default_rng([spec.seed, part])
        traj, tacho = _trajectories(first, n, n_vehicles, classes, tacho_vehicles, physics, day_start_ms, spec, chunk_rng)
        _write(store, f"trajectories/part-{part:05d}.parquet", traj)
        counts["trajectories"] += traj.num_rows
        if tacho.num_rows or part == 0:
            _write(store, f"tachometer/part-{part:05d}.parquet", tacho)
            counts["tachometer"] += tacho.num_rows
    if spec.defects:
        defects = _defective_trajectories(day_start_ms)
        _write(store, "trajectories/part-defects.parquet", defects)
        counts["trajectories"] += defects.num_rows
    return counts


def _defective_trajectories(day_start_ms: int) -> pa.Table:
    """Build a few trips that break the contract in known ways, so every run shows its rejects.

    In order: a duplicate of trip ``T000000000``, a vehicle missing from the master, a single
    vertex, timestamps that go backwards, a vertex at (0, 0), and a missing trip id.
    """
    base = np.array([[0.0, 0.0], [300.0, 0.0], [600.0, 0.0]])
    line = _to_lonlat(base)
    lines = [line, line, line[:1], line, np.r_[line[:2], [[0.0, 0.0]]], line]
    times = [[0, 30_000, 60_000], [0, 30_000, 60_000], [0], [0, 60_000, 30_000], [0, 30_000, 60_000], [0, 30_000, 60_000]]
    geometries = [shapely.points(coords[0]) if len(coords) == 1 else shapely.linestrings(coords) for coords in lines]
    wkb = [bytes(shapely.to_wkb(g)) if len(coords) > 1 else bytes.fromhex("010200000001000000") + np.asarray(coords[0], "<f8").tobytes()
           for g, coords in zip(geometries, lines)]
    start = day_start_ms + 10 * 3600 * 1000
    return _with_geo_metadata(
        pa.table(
            {
                c.TRIP_ID: pa.array(["T000000000", "DEFECT-UNKNOWN-VEHICLE", "DEFECT-SINGLE-VERTEX", "DEFECT-BACKWARDS", "DEFECT-NULL-ISLAND", None], pa.string()),
                c.VEHICLE_ID: pa.array(["V0000000", "V9999999", "V0000000", "V0000000", "V0000000", "V0000000"], pa.string()),
                c.GEOMETRY: pa.array(wkb, pa.binary()),
                c.TIMESTAMPS: pa.array([[start + t for t in ts] for ts in times], pa.list_(pa.timestamp("ms", tz="UTC"))),
                c.START_TIME: pa.array([start] * 6, pa.timestamp("ms", tz="UTC")),
                c.END_TIME: pa.array([start + 60_000] * 6, pa.timestamp("ms", tz="UTC")),
                c.LOAD_KG: pa.array([None] * 6, pa.float64()),
            }
        ),
        ["LineString"],
        np.asarray([g for g in geometries], dtype=object),
    )


# -- datasets ----------------------------------------------------------------------------------


def _vehicles(n: int, rng: np.random.Generator) -> pa.Table:
    class_index = np.arange(n) % len(VEHICLE_CLASSES)
    rng.shuffle(class_index)
    classes = np.asarray(VEHICLE_CLASSES)[class_index]

    fuels = np.empty(n, dtype=object)
    position = np.empty(n)  # where a vehicle's catalog value lies in the range of its class and fuel, 0 to 1
    cycles = np.empty(n, dtype=object)
    payload = np.empty(n)
    for k, name in enumerate(VEHICLE_CLASSES):
        members = class_index == k
        sample_class = _CLASS_TABLE[name]
        fuels[members] = np.asarray(sample_class.fuels, dtype=object)[rng.integers(0, len(sample_class.fuels), members.sum())]
        position[members] = rng.random(members.sum())
        cycles[members] = sample_class.test_cycle
        payload[members] = sample_class.max_payload_kg

    # Electric vehicles take their position from a second draw. Dropping it would shift every later
    # draw of the day (missing catalog values, test cycles, model years, tachographs and meters).
    electric = fuels == "electric"
    position[electric] = rng.random(electric.sum())
    fe = _catalog_values(classes, fuels, position)
    unknown_fe = rng.random(n) < 0.1  # some vehicles have no catalog value
    fe[unknown_fe] = np.nan
    cycles[unknown_fe] = None
    wltc_share = (cycles == "JC08") & (rng.random(n) < 0.3)
    cycles[wltc_share] = "WLTC"

    return pa.table(
        {
            c.VEHICLE_ID: pa.array([f"V{i:07d}" for i in range(n)], pa.string()),
            c.VEHICLE_CLASS: pa.array(classes.tolist(), pa.string()),
            c.FUEL_TYPE: pa.array(fuels.tolist(), pa.string()),
            c.CATALOG_FE: pa.array(fe, pa.float64(), from_pandas=True),
            c.TEST_CYCLE: pa.array(cycles.tolist(), pa.string()),
            c.MAX_PAYLOAD_KG: pa.array(payload, pa.float64()),
            c.MODEL_YEAR: pa.array(rng.integers(2008, 2026, n), pa.int64()),
        }
    )


def _catalog_values(classes: np.ndarray, fuels: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Return catalog values at ``position`` (0 to 1) of each vehicle's class and fuel range, to 0.1."""
    ranges = np.asarray([_CATALOG_FE_RANGES[(name, fuel)] for name, fuel in zip(classes, fuels, strict=True)], dtype="float64")
    if len(ranges) == 0:
        return np.empty(0)
    return np.round(ranges[:, 0] + (ranges[:, 1] - ranges[:, 0]) * position, 1)


@dataclass(frozen=True)
class _VehiclePhysics:
    """Physical parameters that the sample's fuel meters follow, one array entry per vehicle number.

    Fuel is in the vehicle's fuel unit (L for gasoline, diesel, hybrid and LPG). Each vehicle burns
    fuel on a Willans line: its idle rate, plus ``fuel_per_kj`` per kJ of positive wheel work.
    """

    metered: np.ndarray
    idle_rate_per_s: np.ndarray
    fuel_per_kj: np.ndarray
    empty_mass_kg: np.ndarray
    default_load_kg: np.ndarray
    rolling_kw_s_per_m_per_t: np.ndarray
    road_load_b_kw_s2_per_m2: np.ndarray
    aero_kw_s3_per_m3: np.ndarray
    inertia_factor: np.ndarray
    regen_share: np.ndarray
    ramp_half_width_s: np.ndarray


def _vehicle_physics(vehicles: pa.Table, rng: np.random.Generator) -> _VehiclePhysics:
    """Derive each vehicle's Willans line from its class, fuel and catalog value.

    Road load, mass, idle rate, regeneration share, real-world gap and the certification-cycle
    statistics are the emission model's public class parameters. The engine-load slope is the one
    at which the vehicle burns its reference fuel per km on its certification cycle, times a
    per-vehicle factor in ``_VEHICLE_FACTOR_RANGE``. The reference is the catalog value raised by
    the real-world gap that a speed trace does not explain. A vehicle without a usable catalog
    value is a typical vehicle of its class, so it burns the class default.
    """
    model = load_model()
    master = vehicles.select([c.VEHICLE_CLASS, c.FUEL_TYPE, c.CATALOG_FE, c.TEST_CYCLE, c.MAX_PAYLOAD_KG]).to_pandas()
    vehicle_class = master[c.VEHICLE_CLASS].to_numpy(dtype=object)
    fuel = master[c.FUEL_TYPE].to_numpy(dtype=object)
    params = model.vehicle_params.set_index([c.VEHICLE_CLASS, c.FUEL_TYPE]).reindex(
        pd.MultiIndex.from_arrays([vehicle_class, fuel])
    )

    def column(name: str) -> np.ndarray:
        return params[name].to_numpy(dtype="float64")

    catalog = master[c.CATALOG_FE].to_numpy(dtype="float64", na_value=np.nan)
    rated = (catalog > 0) & master[c.TEST_CYCLE].isin(CERTIFICATION_CYCLES).to_numpy()
    cycle = np.where(rated, master[c.TEST_CYCLE].to_numpy(dtype=object), params["certification_cycle"].to_numpy(dtype=object))
    stats = model.cycle_stats.set_index([c.VEHICLE_CLASS, c.FUEL_TYPE, c.TEST_CYCLE]).reindex(
        pd.MultiIndex.from_arrays([vehicle_class, fuel, cycle])
    )
    powertrain = np.where(fuel == "hybrid", "hybrid", "conventional")
    gap = model.gap.reindex(pd.MultiIndex.from_arrays([cycle, powertrain]))
    catalog_gap = gap["catalog_gap"].to_numpy(dtype="float64")
    unexplained_gap = np.maximum(catalog_gap - gap["explained_by_profile"].to_numpy(dtype="float64"), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        reference_per_km = np.where(rated, unexplained_gap / catalog, _class_default_per_km(params, master, model))

    idle_rate_per_s = column("idle_rate_per_s")
    engine_per_km = np.maximum(
        reference_per_km - idle_rate_per_s * stats["time_s_per_km"].to_numpy(dtype="float64"),
        _MIN_ENGINE_LOAD_SHARE * reference_per_km,
    )
    factor = rng.uniform(*_VEHICLE_FACTOR_RANGE, len(master))
    return _VehiclePhysics(
        metered=(params["unit"] == "l").to_numpy(),
        idle_rate_per_s=idle_rate_per_s,
        fuel_per_kj=engine_per_km / stats["work_kj_per_km"].to_numpy(dtype="float64") * factor,
        empty_mass_kg=column("empty_mass_kg"),
        default_load_kg=column("default_load_kg"),
        rolling_kw_s_per_m_per_t=column("rolling_kw_s_per_m_per_t"),
        road_load_b_kw_s2_per_m2=column("road_load_b_kw_s2_per_m2"),
        aero_kw_s3_per_m3=column("aero_kw_s3_per_m3"),
        inertia_factor=column("inertia_factor"),
        regen_share=column("regen_share"),
        ramp_half_width_s=master[c.VEHICLE_CLASS].map(_RAMP_HALF_WIDTH_S).to_numpy(dtype=np.int64),
    )


def _class_default_per_km(params: pd.DataFrame, master: pd.DataFrame, model: EmissionModel) -> np.ndarray:
    """Return the class default fuel per km: the improved ton-km formula at the class default load
    factor where the default table names that basis, else the table's fuel economy."""
    coefficients = model.tonkm.reindex(params["tonkm_fuel"])
    payload_kg = master[c.MAX_PAYLOAD_KG].to_numpy(dtype="float64", na_value=np.nan)
    payload_kg = np.where(payload_kg > 0, payload_kg, params["default_max_payload_kg"].to_numpy(dtype="float64"))
    ton_km = fuel_l_per_km(
        params["default_load_factor"].to_numpy(dtype="float64"),
        payload_kg,
        coefficients["a"].to_numpy(dtype="float64"),
        coefficients["b"].to_numpy(dtype="float64"),
        coefficients["c"].to_numpy(dtype="float64"),
    )
    by_ton_km = (params["basis"] == "improved_ton_km").to_numpy() & np.isfinite(ton_km)
    return np.where(by_ton_km, ton_km, 1.0 / params["km_per_unit"].to_numpy(dtype="float64"))


def _geo_attributes(spec: SampleSpec, rng: np.random.Generator) -> pa.Table:
    half = spec.grid_cells // 2
    ticks = np.arange(-half, half + 1) * spec.grid_spacing_m
    xs, ys = np.meshgrid(ticks, ticks)
    # Horizontal and vertical links between neighbouring grid nodes.
    starts = np.concatenate([np.c_[xs[:, :-1].ravel(), ys[:, :-1].ravel()], np.c_[xs[:-1, :].ravel(), ys[:-1, :].ravel()]])
    ends = np.concatenate([np.c_[xs[:, 1:].ravel(), ys[:, 1:].ravel()], np.c_[xs[1:, :].ravel(), ys[1:, :].ravel()]])
    along = np.concatenate([np.rint(ys[:, :-1].ravel() / spec.grid_spacing_m), np.rint(xs[:-1, :].ravel() / spec.grid_spacing_m)]).astype(int)
    road_class = np.where(along % 8 == 0, "primary", np.where(along % 4 == 0, "secondary", "residential"))
    limit = np.select([road_class == "primary", road_class == "secondary"], [60.0, 50.0], 30.0)
    gradient = np.where(rng.random(len(starts)) < 0.2, np.round(rng.normal(0, 2.0, len(starts)), 1), np.nan)
    links = shapely.linestrings(
        np.stack([_to_lonlat(starts), _to_lonlat(ends)], axis=1)
    )

    # Area mesh of 1 km cells over the same extent.
    cell = 1000.0
    edge = np.arange(-half * spec.grid_spacing_m, half * spec.grid_spacing_m, cell)
    cx, cy = np.meshgrid(edge, edge)
    cx, cy = cx.ravel(), cy.ravel()
    boxes = shapely.box(*_to_lonlat(np.c_[cx, cy]).T, *_to_lonlat(np.c_[cx + cell, cy + cell]).T)
    radius = np.hypot(cx + cell / 2, cy + cell / 2)
    area_type = np.where(radius < 2500, "urban", np.where(radius < 4000, "suburban", "rural"))

    n_links, n_areas = len(links), len(boxes)
    geometry = np.concatenate([links, boxes])
    return _with_geo_metadata(
        pa.table(
            {
                c.FEATURE_ID: pa.array([f"link-{i:06d}" for i in range(n_links)] + [f"mesh-{i:05d}" for i in range(n_areas)], pa.string()),
                c.SOURCE: pa.array(["osm"] * n_links + ["mesh"] * n_areas, pa.string()),
                c.GEOMETRY: pa.array(shapely.to_wkb(geometry), pa.binary()),
                c.ROAD_CLASS: pa.array(road_class.tolist() + [None] * n_areas, pa.string()),
                c.SPEED_LIMIT_KMH: pa.array(np.r_[limit, np.full(n_areas, np.nan)], pa.float64(), from_pandas=True),
                c.GRADIENT_PCT: pa.array(np.r_[gradient, np.full(n_areas, np.nan)], pa.float64(), from_pandas=True),
                c.AREA_TYPE: pa.array([None] * n_links + area_type.tolist(), pa.string()),
            }
        ),
        ["LineString", "Polygon"],
        geometry,
    )


def _trajectories(
    first: int,
    n: int,
    n_vehicles: int,
    classes: np.ndarray,
    tacho_vehicles: np.ndarray,
    physics: _VehiclePhysics,
    day_start_ms: int,
    spec: SampleSpec,
    rng: np.random.Generator,
) -> tuple[pa.Table, pa.Table]:
    v = spec.vertices_per_trip
    trip_numbers = np.arange(first, first + n)
    vehicle_index = trip_numbers % n_vehicles
    cruise = np.array([_CLASS_TABLE[k].cruise_kmh for k in classes[vehicle_index]])

    # Walk along grid lines: each move is 1/moves_per_link of a grid cell, and turns happen only at
    # grid nodes, so vehicles stay on the road links. Stops are moves of length 0.
    half = spec.grid_cells // 2
    origin = rng.integers(-half + 4, half - 4, size=(n, 2)) * spec.grid_spacing_m
    stop = rng.random((n, v - 1)) < 0.06
    moves = np.cumsum(~stop, axis=1) - 1
    at_node = (~stop) & (moves % spec.moves_per_link == 0)
    turn = at_node & (rng.random((n, v - 1)) < 0.35)
    direction = np.cumsum(np.where(turn, rng.choice([1, 3], (n, v - 1)), 0), axis=1) + rng.integers(0, 4, (n, 1))
    unit = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=float)[direction % 4]
    step_m = np.where(stop, 0.0, spec.grid_spacing_m / spec.moves_per_link)
    xy = np.concatenate([origin[:, None, :], origin[:, None, :] + np.cumsum(unit * step_m[..., None], axis=1)], axis=1)
    xy += rng.normal(0.0, 3.0, xy.shape) * (np.arange(v) > 0)[None, :, None]  # GPS noise, metres

    speed_ms = np.clip(rng.normal(cruise[:, None], cruise[:, None] * 0.3, (n, v - 1)), 5.0, 90.0) / 3.6
    dwell_s = np.where(stop, rng.uniform(10.0, 60.0, (n, v - 1)), 0.0)
    dt_s = np.maximum(np.rint(np.where(stop, dwell_s, step_m / speed_ms)), 1.0)
    # A vehicle's trips follow each other: trip k of a vehicle starts in the k-th slot of the day.
    slot = (trip_numbers // n_vehicles) % spec.trips_per_vehicle
    slot_s = 14 * 3600 // spec.trips_per_vehicle
    max_trip_s = int(dt_s.sum(axis=1).max()) + 1
    start_ms = day_start_ms + (slot * slot_s + rng.integers(0, max(1, slot_s - max_trip_s), n)) * 1000  # 08:00-22:00 JST
    t_ms = start_ms[:, None] + np.concatenate([np.zeros((n, 1)), np.cumsum(dt_s, axis=1)], axis=1).astype(np.int64) * 1000

    lonlat = _to_lonlat(xy.reshape(-1, 2))
    offsets = np.arange(0, n * v + 1, v, dtype=np.int32)
    geoms = shapely.linestrings(lonlat, indices=np.repeat(np.arange(n), v))
    no_ts = rng.random(n) < spec.no_timestamp_share
    ts_values = pa.array(t_ms.ravel(), pa.timestamp("ms", tz="UTC"))
    timestamps = pa.ListArray.from_arrays(pa.array(offsets), ts_values, mask=pa.array(no_ts))
    load = np.where(np.isin(classes[vehicle_index], ("light_truck", "medium_truck", "heavy_truck", "kei_truck")),
                    np.round(rng.uniform(0.0, 1.0, n) * np.array([_CLASS_TABLE[k].max_payload_kg for k in classes[vehicle_index]])), np.nan)

    traj = _with_geo_metadata(
        pa.table(
            {
                c.TRIP_ID: pa.array([f"T{i:09d}" for i in trip_numbers], pa.string()),
                c.VEHICLE_ID: pa.array([f"V{i:07d}" for i in vehicle_index], pa.string()),
                c.GEOMETRY: pa.array(shapely.to_wkb(geoms), pa.binary()),
                c.TIMESTAMPS: timestamps,
                c.START_TIME: pa.array(t_ms[:, 0], pa.timestamp("ms", tz="UTC")),
                c.END_TIME: pa.array(t_ms[:, -1], pa.timestamp("ms", tz="UTC")),
                c.LOAD_KG: pa.array(load, pa.float64(), from_pandas=True),
            }
        ),
        ["LineString"],
        geoms,
    )
    return traj, _tachometer(t_ms, speed_ms, stop, vehicle_index, tacho_vehicles, load, physics, rng)


def _tachometer(
    t_ms: np.ndarray,
    speed_ms: np.ndarray,
    stop: np.ndarray,
    vehicle_index: np.ndarray,
    tacho_vehicles: np.ndarray,
    load_kg: np.ndarray,
    physics: _VehiclePhysics,
    rng: np.random.Generator,
) -> pa.Table:
    """Build 1 Hz speed over the trips of equipped vehicles, and fuel for half of those vehicles.

    The speed ramps between the segment speeds of the trajectory (see ``_ramp_speeds``). Even
    vehicle numbers with a liquid fuel also meter fuel: the fuel that ``_burnt_fuel`` gives for
    that speed, read with a small meter noise. Electric and CNG vehicles have no fuel in ml.
    """
    chosen = np.nonzero(tacho_vehicles[vehicle_index])[0]
    if chosen.size == 0:
        return _empty_tacho()
    seg_speed = np.where(stop, 0.0, speed_ms)[chosen]  # m/s per segment
    seconds = ((t_ms[chosen, -1] - t_ms[chosen, 0]) // 1000).astype(np.int64) + 1
    first_row = np.cumsum(seconds) - seconds
    trip_of = np.repeat(np.arange(chosen.size), seconds)
    offset = np.arange(seconds.sum()) - np.repeat(first_row, seconds)
    ts = np.repeat(t_ms[chosen, 0], seconds) + offset * 1000
    # Segment index of every second: how many of the trip's later vertex times it has passed.
    # Keys trip * span + seconds keep all trips in one sorted array, so one searchsorted does it
    # in memory linear in the number of seconds (no seconds x vertices matrix).
    rel = (t_ms[chosen] - t_ms[chosen, :1]) // 1000
    span = int(rel.max()) + 2
    n_later = rel.shape[1] - 1
    vertex_keys = (np.arange(chosen.size)[:, None] * span + rel[:, 1:]).ravel()
    seg = np.searchsorted(vertex_keys, trip_of * span + offset, side="right") - trip_of * n_later
    seg = np.minimum(seg, seg_speed.shape[1] - 1)

    vehicle = vehicle_index[chosen]
    speed_m_s = _ramp_speeds(seg_speed[trip_of, seg], trip_of, first_row, seconds, physics.ramp_half_width_s[vehicle])
    fuel_l = _burnt_fuel(speed_m_s, trip_of, first_row, vehicle, load_kg[chosen], physics)  # litres where metered

    metered = ((vehicle % 2 == 0) & physics.metered[vehicle])[trip_of]
    reading_ml = fuel_l * 1000.0 * (1.0 + rng.normal(0.0, _METER_NOISE, fuel_l.shape))
    fuel_ml = np.where(metered, np.clip(reading_ml, 0.0, None), np.nan)
    vehicles = np.asarray([f"V{i:07d}" for i in range(vehicle_index.max() + 1)], dtype=object)
    return pa.table(
        {
            c.VEHICLE_ID: pa.array(vehicles[vehicle][trip_of].tolist(), pa.string()),
            c.TS: pa.array(ts, pa.timestamp("ms", tz="UTC")),
            c.SPEED_KMH: pa.array(np.round(speed_m_s * 3.6, 2), pa.float64()),
            c.FUEL_ML: pa.array(np.round(fuel_ml, 3), pa.float64(), from_pandas=True),
        }
    )


def _ramp_speeds(
    step_m_s: np.ndarray, trip_of: np.ndarray, first_row: np.ndarray, seconds: np.ndarray, half_width_s: np.ndarray
) -> np.ndarray:
    """Smooth each trip's step speeds with a centred moving average cut at the trip's ends.

    ``half_width_s`` is per trip. A step between two segment speeds becomes a linear ramp of
    ``2 * half_width_s + 1`` seconds, so the acceleration stays within what the class can do.
    One cumulative sum serves every trip and every window width.
    """
    row = np.arange(step_m_s.size)
    trip_start = first_row[trip_of]
    trip_end = trip_start + seconds[trip_of]
    half = half_width_s[trip_of]
    low = np.maximum(row - half, trip_start)
    high = np.minimum(row + half + 1, trip_end)
    running = np.concatenate([[0.0], np.cumsum(step_m_s)])
    return np.clip((running[high] - running[low]) / (high - low), 0.0, None)


def _burnt_fuel(
    speed_m_s: np.ndarray,
    trip_of: np.ndarray,
    first_row: np.ndarray,
    vehicle_of_trip: np.ndarray,
    load_kg_of_trip: np.ndarray,
    physics: _VehiclePhysics,
) -> np.ndarray:
    """Return the fuel burnt in the second that ends at each row, in the vehicle's fuel unit.

    Each second is the interval from the previous row: mean speed, acceleration (v1 - v0) / 1 s.
    Wheel power is the road load of the class at the trip's mass without grade, and fuel is the
    idle rate plus ``fuel_per_kj`` per kJ of positive wheel work. The first row of a trip ends a
    second spent idling before the start.

    NOTE: the meters leave out the gradient that T2 takes from the road links, and that gap
    spreads heavy hybrids most: per-vehicle T1/T2 from 0.79 to 1.17 for hybrid buses on a
    20,000-trip day with a tachograph in every vehicle. A meter that follows the gradient needs
    the link under each second of the trajectory.
    """
    vehicle = vehicle_of_trip[trip_of]
    previous = np.concatenate([speed_m_s[:1], speed_m_s[:-1]])
    previous[first_row] = speed_m_s[first_row]
    mean_m_s = 0.5 * (previous + speed_m_s)
    accel_m_s2 = speed_m_s - previous
    load_kg = np.where(np.isnan(load_kg_of_trip), physics.default_load_kg[vehicle_of_trip], load_kg_of_trip)
    mass_t = ((physics.empty_mass_kg[vehicle_of_trip] + load_kg) / 1000.0)[trip_of]

    power_kw = (
        physics.rolling_kw_s_per_m_per_t[vehicle] * mass_t * mean_m_s
        + physics.road_load_b_kw_s2_per_m2[vehicle] * mean_m_s**2
        + physics.aero_kw_s3_per_m3[vehicle] * mean_m_s**3
        + physics.inertia_factor[vehicle] * mass_t * accel_m_s2 * mean_m_s
    )
    power_kw[first_row] = 0.0
    traction_kj = np.maximum(power_kw, 0.0)
    braking_kj = np.maximum(-power_kw, 0.0)

    # A hybrid returns regen_share of its braking work to the wheels later in the same trip, so
    # its engine supplies that much less of the traction work. The share is spread over the trip.
    n_trips = first_row.size
    traction_per_trip = np.bincount(trip_of, traction_kj, minlength=n_trips)
    recovered_per_trip = physics.regen_share[vehicle_of_trip] * np.bincount(trip_of, braking_kj, minlength=n_trips)
    with np.errstate(divide="ignore", invalid="ignore"):
        engine_share = np.where(traction_per_trip > 0, 1.0 - recovered_per_trip / traction_per_trip, 1.0)
    engine_share = np.clip(engine_share, 0.0, 1.0)

    engine_kj = traction_kj * engine_share[trip_of]
    return physics.idle_rate_per_s[vehicle] + physics.fuel_per_kj[vehicle] * engine_kj


def _empty_tacho() -> pa.Table:
    return pa.table(
        {
            c.VEHICLE_ID: pa.array([], pa.string()),
            c.TS: pa.array([], pa.timestamp("ms", tz="UTC")),
            c.SPEED_KMH: pa.array([], pa.float64()),
            c.FUEL_ML: pa.array([], pa.float64()),
        }
    )


# -- helpers -----------------------------------------------------------------------------------


def _to_lonlat(xy_m: np.ndarray) -> np.ndarray:
    """Offsets in metres from the centre -> lon/lat degrees (local equirectangular, fine at 10 km)."""
    xy_m = np.asarray(xy_m, dtype=float)
    return np.c_[CENTRE_LON + xy_m[..., 0] / _M_PER_DEG_LON, CENTRE_LAT + xy_m[..., 1] / _M_PER_DEG_LAT]


def _with_geo_metadata(table: pa.Table, geometry_types: list[str], geometry: np.ndarray) -> pa.Table:
    """Attach GeoParquet 1.1 metadata (WKB, lon/lat WGS 84) to ``table``.

    The metadata has no "crs" member: GeoParquet reads an absent CRS as OGC:CRS84.
    """
    bounds = shapely.total_bounds(geometry) if len(geometry) else [0.0, 0.0, 0.0, 0.0]
    column: dict[str, object] = {"encoding": "WKB", "geometry_types": geometry_types, "bbox": [float(b) for b in bounds]}
    geo = {"version": "1.1.0", "primary_column": c.GEOMETRY, "columns": {c.GEOMETRY: column}}
    metadata = dict(table.schema.metadata or {})
    metadata[b"geo"] = json.dumps(geo).encode("utf-8")
    return table.replace_schema_metadata(metadata)


def _write(store: Store, relative: str, table: pa.Table) -> None:
    with store.open(relative, "wb") if store.protocol not in ("file", "local") else _local_open(store, relative) as handle:
        pq.write_table(table, handle, compression="zstd", row_group_size=50_000)


def _local_open(store: Store, relative: str):  # type: ignore[no-untyped-def]
    path = store.path(relative)
    store.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    return store.fs.open(path, "wb")
