"""The cluster context manager closes its cluster whatever ends the block."""

from __future__ import annotations

import pytest
from distributed.core import Status

from compute.cluster import WORKER_MALLOC_ENV, open_cluster
from compute.settings import ClusterSettings

pytestmark = pytest.mark.slow


def test_cluster_closes_on_error() -> None:
    events: list[str] = []
    seen = {}
    with pytest.raises(RuntimeError, match="boom"):
        with open_cluster(ClusterSettings(n_workers=1, memory_limit="1GiB"), on_event=lambda e, f: events.append(e)) as client:
            seen["cluster"] = client.cluster
            assert client.submit(sum, [1, 2]).result() == 3
            raise RuntimeError("boom")
    assert seen["cluster"].status == Status.closed
    assert events == ["cluster_started", "cluster_closed"]


def test_cluster_closes_on_keyboard_interrupt() -> None:
    seen = {}
    with pytest.raises(KeyboardInterrupt):
        with open_cluster(ClusterSettings(n_workers=1, memory_limit="1GiB")) as client:
            seen["cluster"] = client.cluster
            raise KeyboardInterrupt
    assert seen["cluster"].status == Status.closed


def test_worker_allocator_and_profiler() -> None:
    """Worker processes start with WORKER_MALLOC_ENV, not the nanny's 64 KiB trim threshold, and
    without the statistical profiler."""
    import os

    import dask

    with open_cluster(ClusterSettings(n_workers=1, memory_limit="1GiB")) as client:
        seen = client.run(lambda: {k: os.environ.get(k) for k in WORKER_MALLOC_ENV})
        profiling = client.run(lambda: dask.config.get("distributed.worker.profile.enabled"))
    assert list(seen.values()) == [WORKER_MALLOC_ENV]
    assert WORKER_MALLOC_ENV["MALLOC_TRIM_THRESHOLD_"] != "65536"
    assert list(profiling.values()) == [False]
    assert dask.config.get("distributed.worker.profile.enabled") is True  # only the workers change

    with open_cluster(ClusterSettings(n_workers=1, memory_limit="1GiB", worker_profiling=True)) as client:
        profiling = client.run(lambda: dask.config.get("distributed.worker.profile.enabled"))
    assert list(profiling.values()) == [True]


def test_workers_import_the_task_module_while_starting() -> None:
    """The preload imports ``compute.pipeline`` in every worker before any task is sent."""
    import sys

    from compute.cluster import WORKER_PRELOAD

    with open_cluster(ClusterSettings(n_workers=1, memory_limit="1GiB")) as client:
        loaded = client.run(lambda: sorted(m for m in (WORKER_PRELOAD, "geopandas", "numba") if m in sys.modules))
    assert list(loaded.values()) == [sorted([WORKER_PRELOAD, "geopandas", "numba"])]
