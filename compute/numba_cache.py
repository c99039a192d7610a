"""Compiled loops built into the image, so that a new pod does not compile them again.

numba compiles the ``@numba.njit(cache=True)`` loops of :mod:`compute.segments`,
:mod:`compute.spatial`, :mod:`compute.tachograph`, :mod:`compute.metrics` and
:mod:`compute.emissions.profiles` on their first call, about 8 s of CPU per process, and keeps
the machine code in ``NUMBA_CACHE_DIR``. Every pod of an ephemeral cluster starts with an empty
folder, so every worker used to pay that once per run.

The image now carries a cache built when the image is built (:func:`main`, with
``NUMBA_CACHE_DIR=/opt/numba-cache``), and :func:`seed` copies it into ``NUMBA_CACHE_DIR``
when the ``compute`` package is imported, before any loop runs. The copy is needed because
numba loads a cache only from a folder it can write to, and the pods' root file system is
read-only (``/tmp`` is an emptyDir).

A cached loop is used only when two things match the build:

* the source file (numba compares its modification time and size). The image builds the cache
  in its runtime stage, after the virtual environment is in place, so the files are the same;
* the CPU name. The image sets ``NUMBA_CPU_NAME=generic`` for the build and at run time, so
  machine code built on the build machine is valid on every x86-64 node. On the benchmark
  piece the generic code was as fast as code for the host CPU (docs/benchmarks.md).

When either does not match, numba compiles as before; nothing fails.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from compute.i18n import current_language, message, register

SEED_ENV = "LMCO2_NUMBA_CACHE_SEED"
#: Modules whose compiled loops the image carries.
COMPILED_MODULES = ("compute.segments", "compute.spatial", "compute.tachograph", "compute.metrics", "compute.emissions.profiles")

_log = logging.getLogger(__name__)

register(
    {
        "numba_cache.seed_not_copied": {
            "ja": "numba のキャッシュの種 {seed} をコピーできませんでした（{error}）。このプロセスでループをコンパイルします"
                  "（遅くなりますが結果は同じです）。",
            "en": "The numba cache seed {seed} was not copied ({error}), so this process compiles the loops itself "
                  "(slower, with the same results).",
        },
    }
)


def seed(environ: Mapping[str, str] = os.environ) -> int:
    """Copy the image's cache (``LMCO2_NUMBA_CACHE_SEED``) into ``NUMBA_CACHE_DIR``.

    Files already present are kept. Each file is written under a temporary name and renamed, so
    a second process of the same pod never reads a partial file. Returns the number of files
    copied; 0 when either variable is unset, the folders are the same or the seed is missing.
    """
    source = environ.get(SEED_ENV, "")
    target = environ.get("NUMBA_CACHE_DIR", "")
    if not source or not target or not os.path.isdir(source) or os.path.abspath(source) == os.path.abspath(target):
        return 0
    copied = 0
    target_real = os.path.realpath(target)
    try:
        for folder, subfolders, names in os.walk(source):
            # A cache folder inside the seed is not part of the seed.
            subfolders[:] = [name for name in subfolders if os.path.realpath(os.path.join(folder, name)) != target_real]
            destination = os.path.join(target, os.path.relpath(folder, source))
            os.makedirs(destination, exist_ok=True)
            for name in names:
                final = os.path.join(destination, name)
                if not os.path.exists(final):
                    _copy_atomically(os.path.join(folder, name), final)
                    copied += 1
    except OSError as error:
        # numba then compiles the loops itself, as without a seed: slower, never wrong.
        _log.warning(message("numba_cache.seed_not_copied", current_language(), seed=source, error=error),
                     extra={"event": "numba_cache_seed_failed", "seed": source, "cache_dir": target, "error": str(error)})
    return copied


def _copy_atomically(source: str, final: str) -> None:
    """Copy ``source`` to a temporary name beside ``final``, then rename it; remove it on failure."""
    handle, partial = tempfile.mkstemp(dir=os.path.dirname(final), prefix=f".{os.path.basename(final)}.")
    os.close(handle)
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise


def compiled_loops() -> Iterator[tuple[str, Any]]:
    """Yield ``(qualified name, dispatcher)`` of every compiled loop of :data:`COMPILED_MODULES`."""
    import importlib

    from numba.core.registry import CPUDispatcher

    for module_name in COMPILED_MODULES:
        module = importlib.import_module(module_name)
        for name, value in sorted(vars(module).items()):
            if isinstance(value, CPUDispatcher):
                yield f"{module_name}.{name}", value


def cache_stats() -> dict[str, dict[str, int]]:
    """Per compiled loop: signatures loaded from the cache (hits) and compiled here (misses)."""
    out = {}
    for name, dispatcher in compiled_loops():
        stats = dispatcher.stats
        out[name] = {"hits": int(sum(stats.cache_hits.values())), "misses": int(sum(stats.cache_misses.values()))}
    return out


def warm(root: Path) -> dict[str, dict[str, int]]:
    """Run fetch, validate and compute on a small sample day below ``root`` in this process.

    Every compiled loop then has the signatures of a real run and is in ``NUMBA_CACHE_DIR``.
    Returns :func:`cache_stats`.
    """
    from distributed import Client, LocalCluster

    from compute import phases
    from compute.sample import SampleSpec, write_sample_day
    from compute.settings import load_settings
    from compute.storage import Store

    run_date = dt.date(2026, 1, 5)
    settings = load_settings("local", environ={}, overrides={"data_dir": str(root)})
    write_sample_day(Store(settings.url("input", run_date)), run_date, SampleSpec(trips=60, vertices_per_trip=40, grid_cells=24))
    run = phases.DailyRun.create(settings, run_date, force=True)
    phases.fetch(run)
    # Threads in this process, so the loops are compiled (and cached) here.
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        phases.validate(run, client)
        phases.compute(run, client)
    return cache_stats()


def main() -> int:
    """Fill ``NUMBA_CACHE_DIR`` for the image.

    Run as ``python -c "from compute import numba_cache; numba_cache.main()"``; ``python -m``
    would import this module twice, because the package imports it to seed the cache. Loops
    that only other loops call show 0 and 0: they are compiled into their callers.
    """
    if not os.environ.get("NUMBA_CACHE_DIR"):
        print("NUMBA_CACHE_DIR is not set; set it to the folder the image should carry (e.g. /opt/numba-cache)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="lmco2-numba-warm-") as root:
        stats = warm(Path(root))
    for name, counts in sorted(stats.items()):
        print(f"{name}: {counts['misses']} compiled, {counts['hits']} loaded")
    return 0
