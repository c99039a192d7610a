"""The scaling model of benchmarks/scaling.py: list-schedule replay and task-stream parsing."""

from __future__ import annotations

import importlib.util
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from distributed import Client, LocalCluster, get_task_stream


def _load_scaling() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "scaling.py"
    spec = importlib.util.spec_from_file_location("lmco2_bench_scaling", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


scaling = _load_scaling()


# Task bodies named as the compute phase's tasks, so the model files them under its steps.
def trip_index_of_piece(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def compute_piece(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as dask_client:
        yield dask_client


def test_makespan_in_order() -> None:
    # 3 and 3 start at once; each 2 goes to the first free worker: 3+2, 3+2, then 5+2.
    assert scaling.makespan([3.0, 3.0, 2.0, 2.0, 2.0], 2) == 7.0
    assert scaling.makespan([3.0, 3.0, 2.0, 2.0, 2.0], 1) == 12.0
    assert scaling.makespan([3.0, 3.0, 2.0, 2.0, 2.0], 10) == 3.0


def test_makespan_keeps_submission_order() -> None:
    # The long task submitted last is not moved forward, as Dask would not move it.
    assert scaling.makespan([1.0, 1.0, 4.0], 2) == 5.0
    assert scaling.makespan([4.0, 1.0, 1.0], 2) == 4.0


def test_makespan_empty_and_invalid() -> None:
    assert scaling.makespan([], 4) == 0.0
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        scaling.makespan([1.0], 0)


def test_predict_adds_client_shares() -> None:
    phase = scaling.MeasuredPhase(
        steps={"trip_index": 1.5, "prepare": 2.0, "align": 1.0, "pieces": 9.0},
        tasks={"trip_index": [0.5, 0.5], "align": [1.0, 1.0, 1.0], "pieces": [2.0] * 4},
        spans={"trip_index": 0.5, "align": 2.5, "pieces": 8.0},
        other=0.5,
    )
    one_worker = scaling.predict_wall(phase, 1)
    assert one_worker["trip_index"] == pytest.approx(1.0 + 1.0)  # 1.0 of client plus 2 x 0.5
    assert one_worker["align"] == pytest.approx(3.0 + 0.5)  # alignment (3.0) outlasts prepare (2.0); 0.5 after both
    assert one_worker["pieces"] == pytest.approx(1.0 + 8.0)
    assert one_worker["total"] == pytest.approx(2.0 + 3.5 + 9.0 + 0.5)

    four_workers = scaling.predict_wall(phase, 4)
    assert four_workers["align"] == pytest.approx(2.0 + 0.5)  # prepare (2.0) now outlasts the alignment (1.0)
    assert four_workers["pieces"] == pytest.approx(1.0 + 2.0)


def test_predict_scales_tasks_and_client() -> None:
    phase = scaling.MeasuredPhase(
        steps={"trip_index": 1.0, "prepare": 1.0, "align": 0.0, "pieces": 5.0},
        tasks={"trip_index": [], "align": [], "pieces": [2.0, 2.0]},
        spans={"trip_index": 0.0, "align": 0.0, "pieces": 4.0},
        other=0.0,
    )
    ten_times_larger = scaling.predict_wall(phase, 2, scale=10)
    assert ten_times_larger["trip_index"] == pytest.approx(10.0)
    assert ten_times_larger["align"] == pytest.approx(1.0)  # the preparation is not scaled
    assert ten_times_larger["pieces"] == pytest.approx(10.0 + 20.0)
    with pytest.raises(ValueError, match="scale must be at least 1, got 0"):
        scaling.predict_wall(phase, 2, scale=0)


def _record(function: str, *startstops: tuple[str, float, float]) -> dict:
    # Keys as Dask names mapped tasks: the function, then a token.
    return {"key": f"{function}-{uuid.uuid4().hex}", "startstops": [{"action": action, "start": start, "stop": stop} for action, start, stop in startstops]}


def test_from_task_stream_records() -> None:
    records = [
        _record("compute_piece", ("transfer", 10.0, 10.5), ("compute", 10.5, 12.5)),
        _record("compute_piece", ("compute", 9.0, 10.0)),
        _record("trip_index_of_piece", ("compute", 1.0, 1.25)),
        _record("abs", ("compute", 0.0, 99.0)),  # not a step of the phase
        {"key": f"compute_piece-{uuid.uuid4().hex}", "startstops": []},  # erred before it ran
    ]
    phase = scaling.MeasuredPhase.from_task_stream(records, {"trip_index": 0.5, "prepare": 0.0, "align": 0.0, "pieces": 3.0}, 4.0)

    # Ordered by start; a transfer counts towards the task's duration.
    assert phase.tasks["pieces"] == [1.0, 2.5]
    assert phase.tasks["trip_index"] == [0.25]
    assert phase.tasks["align"] == []
    assert phase.spans == {"trip_index": 0.25, "align": 0.0, "pieces": 3.5}
    assert phase.other == pytest.approx(0.5)


def test_from_task_stream_of_local_cluster(client: Client) -> None:
    # Real records from a LocalCluster, so a change in distributed's format fails here. Only lower
    # bounds on times: a loaded machine makes a sleeping task take longer, never shorter.
    with get_task_stream(client) as stream:
        client.gather(client.map(trip_index_of_piece, [0.05, 0.05], pure=False))
        client.gather(client.map(compute_piece, [0.2, 0.1, 0.1], pure=False))
        client.gather(client.map(abs, [-1, -2], pure=False))  # not a step of the phase
    phase = scaling.MeasuredPhase.from_task_stream(stream.data, {"trip_index": 0.3, "prepare": 0.0, "align": 0.0, "pieces": 0.5}, 1.0)

    assert len(phase.tasks["trip_index"]) == 2
    assert len(phase.tasks["pieces"]) == 3
    assert phase.tasks["align"] == []
    assert min(phase.tasks["trip_index"]) >= 0.05 - 0.005
    assert sorted(phase.tasks["pieces"])[0] >= 0.1 - 0.005
    assert max(phase.tasks["pieces"]) >= 0.2 - 0.005
    assert phase.spans["pieces"] >= max(phase.tasks["pieces"]) - 0.005
    assert phase.other == pytest.approx(0.2)
