"""A worker that runs out of memory with the broadcast data gets an error naming memory.

Without it the operator saw only Dask's ``CommClosedError ... Stream is closed``, which reads like
a network fault. The test sends 640 MB to a real worker limited to 400 MiB, which Dask's nanny
restarts, as a country-wide geo layer did to 4 GiB workers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compute import phases, spatial
from compute.cluster import open_cluster
from compute.contract import ContractSettings, conform_table, to_frame
from compute.i18n import OperatorError
from compute.settings import ClusterSettings, load_settings
from tests.conftest import RUN_DATE, write_profile
from tests.hostile.hostile_days import geo_attributes

pytestmark = pytest.mark.slow


def _run_and_layer(tmp_path: Path, memory_limit: str) -> tuple[phases.DailyRun, spatial.GeoLayers]:
    """Return a run whose profile has one worker of ``memory_limit``, and a small prepared geo layer."""
    profile = write_profile(tmp_path / "profile.yaml", tmp_path / "data", cluster={"n_workers": 1, "memory_limit": memory_limit})
    run = phases.DailyRun.create(load_settings(str(profile)), RUN_DATE)
    geo = to_frame("geo_attributes", conform_table("geo_attributes", geo_attributes(), ContractSettings()))
    return run, spatial.prepare_layers(geo, link_max_distance_m=25.0)


def test_worker_out_of_memory_named(tmp_path: Path) -> None:
    run, layers = _run_and_layer(tmp_path, "400MiB")

    # The flow's own LocalCluster: a nanny that restarts a worker sets the same allocator
    # variables in this process as the other tests' clusters do.
    with open_cluster(ClusterSettings(n_workers=1, memory_limit="400MiB")) as client:
        with pytest.raises(OperatorError) as info:
            phases._broadcast(run, client, [np.ones(80_000_000), layers], layers, phases._size_mb([np.ones(80_000_000), layers]))

    assert info.value.key == "compute.broadcast_failed"
    for lang in ("ja", "en"):
        text = info.value.message(lang)
        assert "cluster.memory_limit" in text
        assert "400MiB" in text
        assert "640 MB" in text
    assert "メモリ不足" in info.value.message("ja")


def _grow(shared: np.ndarray) -> float:
    """Allocate 1.6 GB beside the shared array: more than a 1 GiB worker can hold."""
    extra = np.ones(200_000_000)
    return float(shared[0] + extra[0])


def test_worker_lost_during_tasks_named(tmp_path: Path) -> None:
    # 1 GiB: the worker with its preloaded modules and the shared array stays below the 80 % at
    # which Dask pauses it, because a paused worker rejects the broadcast. The task goes far above.
    run, layers = _run_and_layer(tmp_path, "1GiB")

    with open_cluster(ClusterSettings(n_workers=1, memory_limit="1GiB")) as client:
        shared = client.scatter(np.ones(10_000_000), broadcast=True, hash=False)
        with pytest.raises(OperatorError) as info, phases._worker_loss_named(run, client, "80", layers):
            client.gather(client.map(_grow, [shared] * 3, pure=False))

    assert info.value.key == "compute.worker_lost"
    assert "cluster.memory_limit" in info.value.message("en")
    assert "メモリ不足" in info.value.message("ja")


def test_cancel_without_lost_worker_raised_as_is(tmp_path: Path) -> None:
    # An operator's stop cancels the tasks while every worker is alive: that is no memory error.
    from concurrent.futures import CancelledError

    run, layers = _run_and_layer(tmp_path, "2GiB")

    with open_cluster(ClusterSettings(n_workers=1, memory_limit="1GiB")) as client:
        future = client.submit(__import__("time").sleep, 30, pure=False)
        with pytest.raises(CancelledError), phases._worker_loss_named(run, client, "1", layers):
            client.cancel([future])
            future.result()
