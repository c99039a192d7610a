"""Benchmark of the validate phase on the sample days of ``bench_compute.py``.

It links the client input of a day that ``bench_compute.py`` prepared into a folder of its own
and fetches it there once, so run ``bench_compute.py`` first, with the same ``--bench-dir``. Then it
runs ``compute.phases.validate`` on a fresh LocalCluster per worker count and run. It prints
medians of wall seconds, worker process CPU seconds, peak worker memory, and records per second
per core (trips, tachograph records and vehicles together).

``--layout one-row-group`` first rewrites the trajectories and the tachometer records into one
file each with a single row group, as pyarrow and geopandas write a table by default. The phase
then reads them in row ranges (docs/benchmarks.md, section 1). Never run by the tests.

Example::

    .venv/bin/python benchmarks/bench_validate.py --size 100k --workers 2 --runs 3 --bench-dir DIR
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

for _name, _value in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "AWS_EC2_METADATA_DISABLED": "true",
                      "NO_GCE_CHECK": "True", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}.items():
    os.environ.setdefault(_name, _value)

import pyarrow as pa  # noqa: E402 - the environment above must be set first
import pyarrow.parquet as pq  # noqa: E402 - the environment above must be set first

from compute import phases  # noqa: E402 - the environment above must be set first
from compute.cluster import open_cluster  # noqa: E402 - the environment above must be set first
from compute.settings import load_settings  # noqa: E402 - the environment above must be set first

RUN_DATE = dt.date(2026, 12, 1)
DAY = RUN_DATE.strftime("%Y%m%d")


def main() -> None:
    args = _parse()
    source = Path(args.bench_dir) / args.size / "client" / "input" / DAY
    if not source.is_dir():
        raise SystemExit(f"{source} does not exist; run benchmarks/bench_compute.py --sizes {args.size} --bench-dir {args.bench_dir} first")
    root = Path(args.bench_dir) / f"validate-{args.size}-{args.layout}"
    _prepare(source, root, args.layout)
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        runs = [_measure(root, workers, args.memory_limit) for _ in range(args.runs)]
        row = {"size": args.size, "layout": args.layout, "workers": workers, "runs": len(runs)}
        for key in runs[0]:
            values = [run[key] for run in runs]
            row[key] = round(statistics.median(values), 3) if isinstance(values[0], float) else values[0]
        rows.append(row)
        print(json.dumps(row, sort_keys=True), flush=True)
    print("| size | layout | workers | wall s | worker CPU s | records/s/core | worker peak RSS GiB |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['size']} | {row['layout']} | {row['workers']} | {row['wall']:.1f} | {row['worker_cpu']:.1f} | "
              f"{row['records_per_s_per_core']:,.0f} | {row['worker_peak_rss_gib']:.2f} |")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the validate phase on a sample day.")
    parser.add_argument("--size", default="10k", help="Day size prepared by bench_compute.py: 10k, 100k or 1m.")
    parser.add_argument("--workers", default="2", help="Worker counts of the LocalCluster (comma-separated).")
    parser.add_argument("--runs", type=int, default=3, help="Runs per worker count; medians are printed.")
    parser.add_argument("--layout", choices=("as-written", "one-row-group"), default="as-written",
                        help="Files as the sample wrote them (2,500 trips each), or one file with one row group per dataset.")
    parser.add_argument("--memory-limit", default="4GiB", help="Memory limit per worker (Dask size string); 4GiB is the default profile's.")
    parser.add_argument("--bench-dir", default=os.environ.get("LMCO2_BENCH_DIR", "var/bench"), help="Folder of bench_compute.py's days.")
    return parser.parse_args()


def _settings(root: Path, workers: int = 2, memory_limit: str = "4GiB") -> Any:
    return load_settings("local", environ={}, overrides={
        "data_dir": str(root), "cluster": {"n_workers": workers, "threads_per_worker": 1, "memory_limit": memory_limit,
                                            "compute_timeout_s": 10_800},
    })


def _prepare(source: Path, root: Path, layout: str) -> None:
    """Link the client input under ``root`` (rewritten for ``one-row-group``) and fetch it once."""
    settings = _settings(root)
    if phases.DailyRun.create(settings, RUN_DATE).completed("fetch") is not None:
        return
    day = root / "client" / "input" / DAY
    shutil.rmtree(root, ignore_errors=True)
    day.mkdir(parents=True)
    for dataset in sorted(p.name for p in source.iterdir() if p.is_dir()):
        files = sorted((source / dataset).glob("*.parquet"))
        (day / dataset).mkdir()
        if layout == "one-row-group" and dataset in ("trajectories", "tachometer"):
            table = pa.concat_tables([pq.read_table(f) for f in files])
            pq.write_table(table, day / dataset / "part-00000.parquet", row_group_size=max(1, table.num_rows), compression="zstd")
            continue
        for file in files:
            os.link(file, day / dataset / file.name)
    phases.fetch(phases.DailyRun.create(settings, RUN_DATE, force=True))


def _measure(root: Path, workers: int, memory_limit: str) -> dict[str, Any]:
    settings = _settings(root, workers, memory_limit)
    run = phases.DailyRun.create(settings, RUN_DATE, force=True)
    with open_cluster(settings.cluster) as client:
        before = client.run(_cpu_seconds)
        started = time.perf_counter()
        result = phases.validate(run, client)
        wall = time.perf_counter() - started
        after = client.run(_cpu_seconds)
        peaks = client.run(_peak_rss_gib)
    datasets = result.counts["datasets"]
    records = sum(int(datasets[name]["rows_in"]) for name in ("trajectories", "tachometer", "vehicles") if name in datasets)
    worker_cpu = sum(after[w] - before.get(w, 0.0) for w in after)
    return {
        "wall": wall,
        "worker_cpu": worker_cpu,
        "records": records,
        "records_per_s_per_core": records / wall / workers,
        "worker_peak_rss_gib": max(peaks.values()),
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_gib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return 0.0


if __name__ == "__main__":
    main()
