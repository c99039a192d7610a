"""Deterministic sample days in the input contract layout, from a few trips to millions.

The day is laid around central Tokyo. It has a grid road network (primary, secondary and
residential links with speed limits and some gradients) and a mesh of 1 km area polygons (urban,
suburban or rural by distance from the centre). Vehicles cover every class and fuel, trajectories
walk the grid with per-vertex timestamps and stops, and a fifth of the fleet has a 1 Hz tachograph.

Everything is generated with numpy arrays in chunks; no Python loop runs per trip or per vertex,
so a million trips take minutes, not hours. The same ``seed`` and sizes give byte-identical
files.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from compute import columns as c
from compute.contract.schema import VEHICLE_CLASSES
from compute.storage import Store

CENTRE_LON = 139.767  # Tokyo Station
CENTRE_LAT = 35.681
_M_PER_DEG_LAT = 111_320.0
_M_PER_DEG_LON = _M_PER_DEG_LAT * np.cos(np.radians(CENTRE_LAT))


# Plausible (class -> fuels, catalog km/L range, test cycle, payload kg, cruise km/h) for the sample.
_CLASS_TABLE: dict[str, tuple[tuple[str, ...], tuple[float, float], str, float, float]] = {
    "kei_passenger": (("gasoline", "hybrid", "electric"), (18.0, 26.0), "WLTC", 200.0, 28.0),
    "passenger": (("gasoline", "hybrid", "diesel", "lpg", "electric"), (11.0, 28.0), "WLTC", 400.0, 32.0),
    "bus": (("diesel", "cng", "hybrid"), (3.5, 6.0), "JH25", 4000.0, 22.0),
    "kei_truck": (("gasoline",), (14.0, 20.0), "JC08", 350.0, 28.0),
    "light_truck": (("diesel", "gasoline", "hybrid"), (9.0, 15.0), "JC08", 2000.0, 30.0),
    "medium_truck": (("diesel",), (5.5, 8.0), "JH25", 4000.0, 30.0),
    "heavy_truck": (("diesel",), (3.0, 4.5), "JH25", 12000.0, 35.0),
}


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
    counts["trajectories"] = 0
    counts["tachometer"] = 0
    day_start_ms = int(dt.datetime.combine(run_date, dt.time(23, 0), dt.UTC).timestamp() * 1000) - 86_400_000
    for part, first in enumerate(range(0, spec.trips, spec.trips_per_file)):
        n = min(spec.trips_per_file, spec.trips - first)
        chunk_rng = np.random.default_rng([spec.seed, part])
        traj, tacho = _trajectories(first, n, n_vehicles, classes, tacho_vehicles, day_start_ms, spec, chunk_rng)
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
    fe = np.empty(n)
    cycles = np.empty(n, dtype=object)
    payload = np.empty(n)
    for k, name in enumerate(VEHICLE_CLASSES):
        members = class_index == k
        options, (low, high), cycle, pay, _ = _CLASS_TABLE[name]
        fuels[members] = np.asarray(options, dtype=object)[rng.integers(0, len(options), members.sum())]
        fe[members] = np.round(rng.uniform(low, high, members.sum()), 1)
        cycles[members] = cycle
        payload[members] = pay

    electric = fuels == "electric"
    fe[electric] = np.round(rng.uniform(6.0, 8.0, electric.sum()), 1)  # km/kWh for electric vehicles
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
    day_start_ms: int,
    spec: SampleSpec,
    rng: np.random.Generator,
) -> tuple[pa.Table, pa.Table]:
    v = spec.vertices_per_trip
    trip_numbers = np.arange(first, first + n)
    vehicle_index = trip_numbers % n_vehicles
    cruise = np.array([_CLASS_TABLE[k][4] for k in classes[vehicle_index]])

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
                    np.round(rng.uniform(0.0, 1.0, n) * np.array([_CLASS_TABLE[k][3] for k in classes[vehicle_index]])), np.nan)

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
    return traj, _tachometer(t_ms, speed_ms, stop, vehicle_index, tacho_vehicles, classes, rng)


def _tachometer(
    t_ms: np.ndarray,
    speed_ms: np.ndarray,
    stop: np.ndarray,
    vehicle_index: np.ndarray,
    tacho_vehicles: np.ndarray,
    classes: np.ndarray,
    rng: np.random.Generator,
) -> pa.Table:
    """1 Hz speed (and for half of the equipped vehicles, fuel) over the trips of equipped vehicles."""
    chosen = np.nonzero(tacho_vehicles[vehicle_index])[0]
    if chosen.size == 0:
        return _empty_tacho()
    seg_speed = np.where(stop, 0.0, speed_ms)[chosen]  # m/s per segment
    seconds = ((t_ms[chosen, -1] - t_ms[chosen, 0]) // 1000).astype(np.int64) + 1
    trip_of = np.repeat(np.arange(chosen.size), seconds)
    offset = np.arange(seconds.sum()) - np.repeat(np.cumsum(seconds) - seconds, seconds)
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
    speed = seg_speed[trip_of, seg] * 3.6
    speed = np.clip(speed + rng.normal(0.0, 1.5, speed.shape) * (speed > 0), 0.0, None)
    with_fuel = (vehicle_index[chosen] % 2 == 0)[trip_of]
    heavy = np.isin(classes[vehicle_index[chosen]], ("bus", "medium_truck", "heavy_truck"))[trip_of]
    idle_ml_s = np.where(heavy, 0.35, 0.2)
    fuel = idle_ml_s + speed * np.where(heavy, 0.025, 0.006) + rng.normal(0.0, 0.02, speed.shape)
    fuel = np.where(with_fuel, np.clip(fuel, 0.05, None), np.nan)
    vehicles = np.asarray([f"V{i:07d}" for i in range(vehicle_index.max() + 1)], dtype=object)
    return pa.table(
        {
            c.VEHICLE_ID: pa.array(vehicles[vehicle_index[chosen]][trip_of].tolist(), pa.string()),
            c.TS: pa.array(ts, pa.timestamp("ms", tz="UTC")),
            c.SPEED_KMH: pa.array(np.round(speed, 2), pa.float64()),
            c.FUEL_ML: pa.array(np.round(fuel, 3), pa.float64(), from_pandas=True),
        }
    )


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
