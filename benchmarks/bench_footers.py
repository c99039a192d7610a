"""Footer reads of a day's Parquet files from an S3-compatible server, one thread against many.

The client reads the footer of every input file several times per run (schemas, piece plans).
On GCS or S3 each footer is one or two small ranged GETs whose latency, not their bytes, sets
the time. This script starts a moto S3 server on 127.0.0.1 with a fixed delay per request (a
stand-in for the network round trip, which a server on the same machine lacks). It writes small
Parquet files and reads their footers with ``pipeline.read_footers`` at several thread counts,
printing footers per second and the speedup over one thread.

    .venv/bin/python benchmarks/bench_footers.py --files 200 --latency-ms 0,20,50 --threads 1,4,16

Nothing leaves 127.0.0.1; the credentials are moto's test values.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

for _name, _value in {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_GCE_CHECK": "True",
}.items():
    os.environ.setdefault(_name, _value)

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from compute import pipeline  # noqa: E402
from compute.storage import Store  # noqa: E402

BUCKET = "footers"
KEYS = {"key": "testing", "secret": "testing"}


class _Delay:
    """WSGI middleware that waits ``seconds`` before it passes each request on."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.seconds = 0.0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self.seconds:
            time.sleep(self.seconds)
        return self.app(environ, start_response)


def _start_server() -> tuple[str, _Delay, Any]:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    delay = _Delay(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, delay, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", delay, server


def _write_files(store: Store, n_files: int) -> list[str]:
    table = pa.table({"trip_id": [f"t{i}" for i in range(1_000)], "value": [float(i) for i in range(1_000)]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=250)
    data = buffer.getvalue()
    names = [f"trajectories/part-{i:05d}.parquet" for i in range(n_files)]
    pipeline.in_threads(lambda name: store.write_bytes(name, data, md5=False), names)
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200, help="Parquet files to write and read (default 200).")
    parser.add_argument("--latency-ms", default="0,20,50", help="Delays per request to measure, comma-separated.")
    parser.add_argument("--threads", default="1,4,16", help="Thread counts to measure, comma-separated.")
    parser.add_argument("--runs", type=int, default=3, help="Runs per setting; the median is printed.")
    args = parser.parse_args()

    endpoint, delay, server = _start_server()
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
        store = Store(f"s3://{BUCKET}/day/", {"endpoint_url": endpoint, **KEYS})
        names = _write_files(store, args.files)
        rows = []
        for latency_ms in (float(x) for x in args.latency_ms.split(",")):
            delay.seconds = latency_ms / 1000.0
            one_thread = None
            for threads in (int(x) for x in args.threads.split(",")):
                walls = []
                for _ in range(args.runs):
                    started = time.perf_counter()
                    footers = pipeline.read_footers(store, names, threads=threads)
                    walls.append(time.perf_counter() - started)
                    assert sum(meta.num_rows for meta in footers) == 1_000 * len(names)
                wall = statistics.median(walls)
                one_thread = wall if one_thread is None else one_thread
                row = {"files": len(names), "latency_ms": latency_ms, "threads": threads, "wall_s": round(wall, 3),
                       "footers_per_s": round(len(names) / wall, 1), "speedup": round(one_thread / wall, 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        print("\n| latency ms | threads | wall s | footers/s | speedup |\n|---|---|---|---|---|")
        for row in rows:
            print(f"| {row['latency_ms']:g} | {row['threads']} | {row['wall_s']} | {row['footers_per_s']} | {row['speedup']} x |")
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
