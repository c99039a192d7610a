"""Profile the compute task of one piece in this process, without a cluster.

It prepares what ``phases.compute`` broadcasts (layers, vehicles, model, trip index, aligned
tachograph). Then it runs ``pipeline.compute_piece`` on one piece, once to warm up and then
``--repeat`` times. It prints the stage CPU seconds of each call and a cProfile of one more call. Used to find
where the time of a piece goes; the whole-phase figures come from ``bench_compute.py``.

Example::

    .venv/bin/python benchmarks/profile_piece.py --bench-dir var/bench --size 10k --piece 0
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import pstats
import tempfile
from pathlib import Path

for _name, _value in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "AWS_EC2_METADATA_DISABLED": "true",
                      "NO_GCE_CHECK": "True", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}.items():
    os.environ.setdefault(_name, _value)

from compute import contract, phases, pipeline, spatial  # noqa: E402 - the environment above must be set first
from compute.settings import load_settings  # noqa: E402 - the environment above must be set first
from compute.storage import Store  # noqa: E402 - the environment above must be set first

RUN_DATE = dt.date(2026, 12, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description="Profile one compute piece in-process.")
    parser.add_argument("--bench-dir", default=os.environ.get("LMCO2_BENCH_DIR", "var/bench"))
    parser.add_argument("--size", default="10k", help="A day prepared by bench_compute.py.")
    parser.add_argument("--piece", type=int, default=0, help="Index of the piece to profile.")
    parser.add_argument("--repeat", type=int, default=2, help="Timed calls after the warm-up call.")
    parser.add_argument("--top", type=int, default=35, help="Rows of the cProfile table.")
    parser.add_argument("--dump", help="Also save the cProfile statistics to this file (for pstats).")
    args = parser.parse_args()

    settings = load_settings("local", environ={}, overrides={"data_dir": str(Path(args.bench_dir) / args.size)})
    run = phases.DailyRun.create(settings, RUN_DATE, force=True)
    source = run.store("temp")
    max_distance_m = settings.spatial.link_max_distance_m

    with tempfile.TemporaryDirectory(prefix="lmco2-profile-") as scratch:
        # Outputs go to a scratch folder that links to the validated inputs of the prepared day.
        store = Store(scratch)
        Path(scratch, pipeline.VALIDATED).symlink_to(source.path(pipeline.VALIDATED))
        ref = pipeline.StoreRef(url=scratch)

        vehicles = pipeline.VehicleMaster.of(pipeline.read_folder(store, f"{pipeline.VALIDATED}/vehicles").to_pandas())
        geo = contract.to_frame("geo_attributes", pipeline.read_folder(store, f"{pipeline.VALIDATED}/geo_attributes"))
        layers = spatial.prepare_layers(geo, link_max_distance_m=max_distance_m)
        pieces = pipeline.plan_compute_pieces(store, n_workers=1, vertices_min=100_000, vertices_max=1_000_000)
        index = pipeline.build_trip_index([pipeline.trip_index_of_piece(ref, p) for p in pieces])
        tacho_files = [n for n in store.list(f"{pipeline.VALIDATED}/tachometer") if n.endswith(".parquet")]
        aligned = [pipeline.align_tacho_piece(ref, name, index) for name in tacho_files]
        parts = pipeline.tacho_parts_by_piece(aligned)
        model = pipeline.model_for(settings)
        piece = pieces[args.piece]
        versions = run.versions()

        def call() -> pipeline.PieceResult:
            return pipeline.compute_piece(ref, piece, parts.get(piece.index, []), vehicles, layers, model, max_distance_m, versions)

        first = call()
        print(json.dumps({"piece": piece.name, "vertices": piece.vertices, "segments": first.segments, "trips": first.trips}))
        # The first call includes loading (or compiling) the numba loops and warming caches.
        print(json.dumps({"first_call": {k: round(v, 3) for k, v in first.seconds.items() if k.endswith("_cpu")}}))
        for _ in range(args.repeat):
            result = call()
            print(json.dumps({k: round(v, 3) for k, v in result.seconds.items() if k.endswith("_cpu")}))
        profiler = cProfile.Profile()
        profiler.enable()
        call()
        profiler.disable()
        if args.dump:
            profiler.dump_stats(args.dump)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
