"""Benchmark of the compute phase against a pyarrow read floor and a DuckDB-spatial comparison.

For each day size the script prepares a sample day once (generate, fetch, validate; cached in
``--bench-dir``), then for each worker count and run:

* floor: read and decode the columns the compute phase reads (validated trajectories and
  tachograph) with pyarrow alone, in as many processes as workers;
* compute: ``compute.phases.compute`` on a fresh LocalCluster (cluster start timed apart);
* write floor: encode the segment intermediate that run wrote once more with pyarrow, with the
  phase's own options, in as many processes as workers (the read floor plus this one is the
  least I/O the phase does);
* duckdb: segments, area containment, nearest link within the search distance and per-trip sums
  in DuckDB with the spatial extension, with as many threads as workers.

It prints medians over ``--runs`` runs: wall and CPU seconds per stage, peak worker memory,
vertices per second per core, and ratios to the floor. It also replays each run's tasks, taken
from Dask's task stream, on other worker counts and on a 1M-trip day (``benchmarks/scaling.py``),
so a replay from the 1-worker run can be checked against the measured 2-worker run. Never run by
the tests.

Example::

    .venv/bin/python benchmarks/bench_compute.py --sizes 10k,100k --workers 1,2 --runs 3
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import math
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

for _name, _value in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "AWS_EC2_METADATA_DISABLED": "true",
                      "NO_GCE_CHECK": "True", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}.items():
    os.environ.setdefault(_name, _value)

import pyarrow.parquet as pq  # noqa: E402 - the environment above must be set first
import scaling  # noqa: E402 - the environment above must be set first
from distributed import get_task_stream  # noqa: E402 - the environment above must be set first

from compute import columns as c  # noqa: E402 - the environment above must be set first
from compute import phases, pipeline, segments  # noqa: E402 - the environment above must be set first
from compute.cluster import open_cluster  # noqa: E402 - the environment above must be set first
from compute.sample import SampleSpec, write_sample_day  # noqa: E402 - the environment above must be set first
from compute.settings import Settings, load_settings  # noqa: E402 - the environment above must be set first
from compute.storage import Store  # noqa: E402 - the environment above must be set first

RUN_DATE = dt.date(2026, 12, 1)
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
TACHO_COLUMNS = (c.VEHICLE_ID, c.TS, c.SPEED_KMH, c.FUEL_ML)
LINK_MAX_DISTANCE_M = 25.0
#: Worker counts of the scaling model: for the measured day (its piece plan holds up to 7 workers
#: on the 100k day), and for a 1M-trip day (the plan holds up to 75 workers).
MODEL_WORKERS = (1, 2, 4)
MODEL_WORKERS_1M = (2, 8, 16, 32, 64)


def main() -> None:
    args = _parse()
    bench_dir = Path(args.bench_dir)
    rows: list[dict[str, Any]] = []
    for size in args.sizes.split(","):
        settings = _prepare(bench_dir, size.strip().lower(), args.memory_limit)
        for workers in [int(w) for w in args.workers.split(",")]:
            runs = [_measure(settings, size.strip().lower(), workers, with_duckdb=not args.no_duckdb) for _ in range(args.runs)]
            row = _median_row(size, workers, runs)
            rows.append(row)
            print(json.dumps(row, sort_keys=True), flush=True)
    _print_table(rows)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the compute phase on sample days.")
    parser.add_argument("--sizes", default="10k,100k", help="Day sizes in trips: 10k, 100k, 1m (comma-separated).")
    parser.add_argument("--workers", default="1,2", help="Worker counts of the LocalCluster (comma-separated).")
    parser.add_argument("--runs", type=int, default=3, help="Runs per size and worker count; medians are printed.")
    parser.add_argument("--memory-limit", default="8GiB", help="Memory limit per worker (Dask size string).")
    parser.add_argument("--no-duckdb", action="store_true", help="Skip the DuckDB-spatial comparison.")
    parser.add_argument("--bench-dir", default=os.environ.get("LMCO2_BENCH_DIR", "var/bench"),
                        help="Folder for the generated days (reused between runs); var/ is ignored by git.")
    return parser.parse_args()


# -- data --------------------------------------------------------------------------------------


def _prepare(bench_dir: Path, size: str, memory_limit: str) -> Settings:
    """Generate, fetch and validate a sample day once; later calls reuse it."""
    trips = SIZES[size]
    settings = load_settings("local", environ={}, overrides={"data_dir": str(bench_dir / size), "cluster": {"memory_limit": memory_limit}})
    run = phases.DailyRun.create(settings, RUN_DATE)
    temp = Store(settings.url("temp", RUN_DATE))
    if run.completed("validate") is not None or (temp.list("validated/trajectories") and temp.list("validated/tachometer")):
        return settings
    started = time.perf_counter()
    spec = SampleSpec(trips=trips, vertices_per_trip=300, grid_cells=120, trips_per_file=2_500, moves_per_link=8)
    write_sample_day(Store(settings.url("input", RUN_DATE)), RUN_DATE, spec)
    phases.fetch(run)
    with open_cluster(settings.cluster) as client:
        phases.validate(run, client)
    print(json.dumps({"prepared": size, "seconds": round(time.perf_counter() - started, 1)}), flush=True)
    return settings


# -- measurements ------------------------------------------------------------------------------


def _measure(settings: Settings, size: str, workers: int, *, with_duckdb: bool) -> dict[str, Any]:
    temp = Store(settings.url("temp", RUN_DATE))
    out: dict[str, Any] = {}
    out.update(_floor(temp, workers))

    cluster_settings = settings.cluster.model_copy(update={"n_workers": workers, "threads_per_worker": 1})
    run_settings = settings.model_copy(update={"cluster": cluster_settings})
    run = phases.DailyRun.create(run_settings, RUN_DATE, force=True)
    started = time.perf_counter()
    with open_cluster(cluster_settings) as client:
        out["cluster_start_wall"] = time.perf_counter() - started
        before = client.run(_cpu_seconds)
        with get_task_stream(client) as task_stream:
            result = phases.compute(run, client)
        after = client.run(_cpu_seconds)
    # Process CPU of the workers: task threads plus pyarrow's decoding threads and Dask itself.
    out["worker_process_cpu"] = sum(after[w] - before.get(w, 0.0) for w in after)
    counts = result.counts
    out["compute_wall"] = result.seconds
    out["end_to_end_wall"] = time.perf_counter() - started
    out["vertices"] = counts["segments"] + counts["trips"]
    out["tacho_rows"] = counts["tachometer"]["rows"]
    out["pieces"] = counts["pieces"]
    out["worker_peak_rss_gib"] = counts["worker_peak_rss_bytes"] / 2**30
    stage_cpu = {k: v for k, v in counts["stage_seconds"].items() if k.endswith("_cpu")}
    out["compute_cpu"] = sum(stage_cpu.values())
    out.update({f"stage_{k}": v for k, v in counts["stage_seconds"].items()})
    out.update({f"step_{k}_wall": v for k, v in counts.get("step_wall_seconds", {}).items()})
    measured = scaling.MeasuredPhase.from_task_stream(task_stream.data, counts.get("step_wall_seconds", {}), result.seconds)
    out.update(_scaling_predictions(measured, size, workers, out["vertices"]))
    out.update(_write_floor(temp, workers))
    if with_duckdb:
        out.update(_duckdb(temp, workers))
    return out


def _scaling_predictions(measured: scaling.MeasuredPhase, size: str, workers: int, vertices: int) -> dict[str, float]:
    """Replay this run's tasks on more workers (``benchmarks/scaling.py``): this day on
    ``MODEL_WORKERS`` and a 1M-trip day on ``MODEL_WORKERS_1M``.

    A worker count is replayed only where the compute phase would plan the same pieces as in
    this run, since the replay reuses this run's tasks.
    """
    scale = SIZES["1m"] // SIZES[size]
    planned = _piece_target(vertices, workers)
    out = {f"model_w{n}": scaling.predict_wall(measured, n)["total"]
           for n in MODEL_WORKERS if _piece_target(vertices, n) == planned}
    for n in MODEL_WORKERS_1M:
        if _piece_target(vertices * scale, n) != planned:
            continue
        parts = scaling.predict_wall(measured, n, scale=scale)
        out[f"model_1m_w{n}"] = parts["total"]
        if n == MODEL_WORKERS_1M[-2]:
            # The steps of the production-size replay (32 workers), to see where its time goes.
            out.update({f"model_1m_w{n}_{step}": seconds for step, seconds in parts.items() if step != "total"})
    return out


def _piece_target(vertices: int, workers: int) -> int:
    """Vertices per piece that ``pipeline.plan_compute_pieces`` aims at (its default of 4 pieces per worker)."""
    low, high = phases._PIECE_ROWS["segments"]
    return int(min(high, max(low, math.ceil(vertices / (4 * workers)))))


def _floor(temp: Store, workers: int) -> dict[str, float]:
    """Read and decode the compute phase's input columns with pyarrow alone, in ``workers`` processes."""
    jobs = [(temp.path(name), list(segments.INPUT_COLUMNS)) for name in temp.list("validated/trajectories") if name.endswith(".parquet")]
    jobs += [(temp.path(name), list(TACHO_COLUMNS)) for name in temp.list("validated/tachometer") if name.endswith(".parquet")]
    started = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        pool.submit(_cpu_seconds).result()  # start the processes before timing the reads
        started = time.perf_counter()
        cpu = sum(pool.map(_read_columns, jobs))
    return {"floor_wall": time.perf_counter() - started, "floor_cpu": cpu}


def _write_floor(temp: Store, workers: int) -> dict[str, float]:
    """Encode the segment intermediate this run wrote once more, with its own options, in ``workers`` processes.

    Each process reads its share of the files and times only the encoding (pyarrow, in memory);
    the wall figure is the slowest process's encoding time. Together with the read floor it is
    the least I/O work the phase must do: decode its inputs, encode this output.
    """
    paths = [temp.path(name) for name in temp.list(pipeline.SEGMENTS) if name.endswith(".parquet")]
    shares = [paths[i::workers] for i in range(workers)]
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        timings = list(pool.map(_encode_segments, shares))
    return {"write_floor_wall": max(wall for _, wall in timings), "write_floor_cpu": sum(cpu for cpu, _ in timings)}


def _encode_segments(paths: list[str]) -> tuple[float, float]:
    """Read each file, then encode it; return the CPU and wall seconds of the encoding alone."""
    cpu = wall = 0.0
    for path in paths:
        table = pq.read_table(path)
        before_cpu, before_wall = _cpu_seconds(), time.perf_counter()
        pipeline.parquet_bytes(table, **pipeline.SEGMENT_WRITE_OPTIONS)
        cpu += _cpu_seconds() - before_cpu
        wall += time.perf_counter() - before_wall
    return cpu, wall


def _read_columns(job: tuple[str, list[str]]) -> float:
    path, columns = job
    before = _cpu_seconds()
    parquet = pq.ParquetFile(path)
    present = [name for name in columns if name in parquet.schema_arrow.names]
    table = parquet.read(columns=present, use_threads=False)
    table.combine_chunks()
    return _cpu_seconds() - before


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _duckdb(temp: Store, workers: int) -> dict[str, float]:
    """Segments, area containment, nearest link and per-trip sums in DuckDB-spatial."""
    import duckdb

    extension = Path(duckdb.__file__).parent.parent / "duckdb_ext" / "extensions" / f"v{duckdb.__version__}" / "linux_amd64" / "spatial.duckdb_extension"
    traj = temp.path("validated/trajectories/*.parquet")
    geo = temp.path("validated/geo_attributes/*.parquet")
    con = duckdb.connect()
    con.execute(f"SET threads = {workers}")
    con.execute("SET enable_progress_bar = false")
    # DuckDB spills to ./.tmp by default. The spill goes next to the benchmark day instead, with a
    # cap, so a 100k run cannot fill the disk of the working tree.
    spill = Path(temp.path("duckdb-spill"))
    con.execute(f"SET temp_directory = '{spill}'")
    con.execute("SET max_temp_directory_size = '20GiB'")
    con.execute(f"LOAD '{extension}'")
    before = _cpu_seconds()
    started = time.perf_counter()
    con.execute(f"""
        CREATE TEMP TABLE links AS
        SELECT feature_id, ST_Transform(g, 'EPSG:4326', 'EPSG:32654', always_xy := true) AS g
        FROM (SELECT feature_id, ST_GeomFromWKB(geometry) AS g FROM read_parquet('{geo}'))
        WHERE ST_GeometryType(g) = 'LINESTRING';
        CREATE TEMP TABLE areas AS
        SELECT feature_id, area_type, g, ST_Area(ST_Transform(g, 'EPSG:4326', 'EPSG:32654', always_xy := true)) AS size_m2
        FROM (SELECT feature_id, area_type, ST_GeomFromWKB(geometry) AS g FROM read_parquet('{geo}'))
        WHERE ST_GeometryType(g) = 'POLYGON';
        CREATE TEMP TABLE segs AS
        WITH v AS (
            SELECT trip_id, i, ST_X(ST_PointN(g, i::INTEGER)) AS x1, ST_Y(ST_PointN(g, i::INTEGER)) AS y1,
                   ST_X(ST_PointN(g, (i + 1)::INTEGER)) AS x2, ST_Y(ST_PointN(g, (i + 1)::INTEGER)) AS y2
            FROM (SELECT trip_id, geometry AS g FROM read_parquet('{traj}')) t,
                 range(1, ST_NPoints(g)) r(i)
        )
        SELECT trip_id, i, ST_Distance_Spheroid(ST_Point(y1, x1), ST_Point(y2, x2)) AS length_m,
               ST_Point((x1 + x2) / 2, (y1 + y2) / 2) AS mid
        FROM v;
    """)
    segments_done = time.perf_counter()
    con.execute(f"""
        CREATE TEMP TABLE area_pick AS
        SELECT s.trip_id, s.i, arg_min(a.area_type, (a.size_m2, a.feature_id)) AS area_type
        FROM segs s JOIN areas a ON ST_Within(s.mid, a.g) GROUP BY s.trip_id, s.i;
        CREATE TEMP TABLE link_pick AS
        WITH p AS (SELECT trip_id, i, ST_Transform(mid, 'EPSG:4326', 'EPSG:32654', always_xy := true) AS m FROM segs)
        SELECT p.trip_id, p.i, min(ST_Distance(p.m, l.g)) AS d
        FROM p JOIN links l ON ST_DWithin(p.m, l.g, {LINK_MAX_DISTANCE_M}) GROUP BY p.trip_id, p.i;
        CREATE TEMP TABLE per_trip AS
        SELECT s.trip_id, sum(s.length_m) AS length_m,
               sum(CASE WHEN l.d IS NOT NULL THEN s.length_m ELSE 0 END) / nullif(sum(s.length_m), 0) AS matched_share,
               sum(CASE WHEN a.area_type = 'urban' THEN s.length_m ELSE 0 END) / nullif(sum(s.length_m), 0) AS urban_share
        FROM segs s LEFT JOIN area_pick a USING (trip_id, i) LEFT JOIN link_pick l USING (trip_id, i)
        GROUP BY s.trip_id;
    """)
    n_trips = con.execute("SELECT count(*) FROM per_trip").fetchone()
    wall = time.perf_counter() - started
    con.close()
    return {
        "duckdb_wall": wall,
        "duckdb_segments_wall": segments_done - started,
        "duckdb_cpu": _cpu_seconds() - before,
        "duckdb_trips": float(n_trips[0]) if n_trips else 0.0,
    }


# -- report ------------------------------------------------------------------------------------


def _median_row(size: str, workers: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = sorted({k for r in runs for k in r})
    row: dict[str, Any] = {"size": size, "workers": workers, "runs": len(runs)}
    for key in keys:
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        if values:
            row[key] = round(statistics.median(values), 3)
    row["vertices_per_s_per_core"] = round(row["vertices"] / row["compute_wall"] / workers) if row.get("compute_wall") else None
    row["compute_to_floor_wall"] = round(row["compute_wall"] / row["floor_wall"], 2)
    row["compute_to_floor_cpu"] = round(row["compute_cpu"] / row["floor_cpu"], 2)
    if "write_floor_wall" in row:
        row["io_floor_wall"] = round(row["floor_wall"] + row["write_floor_wall"], 3)
        row["compute_to_io_floor_wall"] = round(row["compute_wall"] / row["io_floor_wall"], 2)
    if "duckdb_wall" in row:
        row["duckdb_to_compute_wall"] = round(row["duckdb_wall"] / row["compute_wall"], 2)
    return row


def _print_table(rows: list[dict[str, Any]]) -> None:
    stages = sorted({k[len("stage_"):-len("_wall")] for r in rows for k in r if k.startswith("stage_") and k.endswith("_wall")})
    header = ["size", "workers", "floor_wall", "write_floor_wall", "compute_wall", "compute_to_floor_wall", "compute_to_io_floor_wall",
              "cluster_start_wall", "duckdb_wall",
              "compute_cpu", "worker_process_cpu", "floor_cpu", "worker_peak_rss_gib", "vertices_per_s_per_core", "pieces"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(str(r.get(h, "")) for h in header) + " |")
    steps = [k[len("step_"):-len("_wall")] for k in rows[0] if k.startswith("step_") and k.endswith("_wall")] if rows else []
    if steps:
        print()
        print("| size | workers | " + " | ".join(f"{s} wall" for s in steps) + " |")
        print("|" + "---|" * (len(steps) + 2))
        for r in rows:
            print(f"| {r['size']} | {r['workers']} | " + " | ".join(str(r.get(f"step_{s}_wall", "")) for s in steps) + " |")
    _print_model_table(rows)
    print()
    print("| size | workers | " + " | ".join(f"{s} wall / cpu" for s in stages) + " |")
    print("|" + "---|" * (len(stages) + 2))
    for r in rows:
        cells = [f"{r.get(f'stage_{s}_wall', '')} / {r.get(f'stage_{s}_cpu', '')}" for s in stages]
        print(f"| {r['size']} | {r['workers']} | " + " | ".join(cells) + " |")


def _print_model_table(rows: list[dict[str, Any]]) -> None:
    """Measured compute wall beside the scaling model's replay of the same run on other worker counts."""
    model = [f"w{n}" for n in MODEL_WORKERS] + [f"1m_w{n}" for n in MODEL_WORKERS_1M]
    print()
    print("| size | measured on workers | compute_wall | " + " | ".join(f"model {m}" for m in model) + " |")
    print("|" + "---|" * (len(model) + 3))
    for r in rows:
        cells = [str(r.get(f"model_{m}", "")) for m in model]
        print(f"| {r['size']} | {r['workers']} | {r.get('compute_wall', '')} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
