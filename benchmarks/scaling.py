"""Scaling model of the compute phase: predict its wall time on more workers from one measured run.

The phase has three steps of tasks (``phases.compute``): the trip index (one task per piece),
the tachograph alignment (one task per tachograph file) and the pieces (one task per piece).
Between and beside them the client plans, prepares the layer and gathers results. A run records
how long each task computed, from Dask's task stream, and how long each step took as the client
saw it (the manifest's ``step_wall_seconds``).

The model replays the measured task durations on ``workers`` single-threaded workers. The Dask
scheduler gives each ready task to a free worker in submission order. The replay follows the
same rule: a greedy list schedule in the order the tasks started in the run. To that it adds
the client's share of each step, which is the step's wall time minus the span of its tasks.
During the alignment the client prepares the layer, the vehicles and the model, so that step
takes the longer of the two. A day ``scale`` times larger repeats every task ``scale`` times
and multiplies the client's share by ``scale``. The preparation is not scaled, since the layer
and the model do not grow with the trips.

The replay is valid while the piece plan stays the same. ``pipeline.plan_compute_pieces`` aims
at 4 pieces per worker, clamped to 100,000 to 1,000,000 vertices. On the 100k-trip benchmark
day (30M vertices) the plan is the same up to 7 workers. On a day ten times larger it is the
same up to 75 workers, because every piece is then at the 1M-vertex cap.

What the replay leaves out, each a reason the real phase may be slower: contention for
memory bandwidth between more workers on one node, object-store latency, and the scheduler's
per-task overhead with hundreds of workers. Tasks measured on this machine's 2 shared cores
already include some contention, so the 2-worker run is the conservative input.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dask.utils import key_split

#: Task function of each step of ``phases.compute``, by the step's name in ``step_wall_seconds``.
STEP_TASKS = {"trip_index": "trip_index_of_piece", "align": "align_tacho_piece", "pieces": "compute_piece"}


@dataclass(frozen=True)
class MeasuredPhase:
    """Task durations and client step walls of one run of the compute phase, in seconds."""

    #: Wall time of each client step: trip_index, prepare, align, pieces.
    steps: Mapping[str, float]
    #: Durations of each step's tasks, in the order they started.
    tasks: Mapping[str, Sequence[float]]
    #: Time from the first task start to the last task stop of each step.
    spans: Mapping[str, float]
    #: Phase wall time outside the steps: clearing temp/ folders, building the manifest.
    other: float

    @classmethod
    def from_task_stream(cls, records: Iterable[Mapping[str, Any]], steps: Mapping[str, float], phase_wall: float) -> MeasuredPhase:
        """Build from ``distributed.get_task_stream`` records and the manifest's step walls.

        A task's duration is the sum of its startstops: computing, plus fetching inputs from
        another worker and deserialising them, which a larger cluster also pays.
        """
        started: dict[str, list[tuple[float, float, float]]] = {step: [] for step in STEP_TASKS}
        by_function = {function: step for step, function in STEP_TASKS.items()}
        for record in records:
            step = by_function.get(key_split(record["key"]))
            startstops = record.get("startstops") or ()
            if step is None or not startstops:
                continue
            first = min(s["start"] for s in startstops)
            last = max(s["stop"] for s in startstops)
            started[step].append((first, last, sum(s["stop"] - s["start"] for s in startstops)))
        tasks = {step: [duration for _, _, duration in sorted(rows)] for step, rows in started.items()}
        spans = {step: (max(r[1] for r in rows) - min(r[0] for r in rows)) if rows else 0.0 for step, rows in started.items()}
        other = max(0.0, phase_wall - sum(steps.values()))
        return cls(steps=dict(steps), tasks=tasks, spans=spans, other=other)


def makespan(durations: Sequence[float], workers: int) -> float:
    """Return the finish time of ``durations`` given in order to the first free of ``workers`` workers."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    free_at = [0.0] * min(workers, max(len(durations), 1))
    for duration in durations:
        heapq.heapreplace(free_at, free_at[0] + duration)
    return max(free_at)


def predict_wall(phase: MeasuredPhase, workers: int, scale: int = 1) -> dict[str, float]:
    """Predict the compute phase's wall seconds on ``workers`` workers for a day ``scale`` times larger.

    Returns the prediction of each step and ``total``. Each step is its client share plus the
    replayed tasks. The alignment step is the longer of the replayed alignment and the client's
    preparation, plus the client's share after both.
    """
    if scale < 1:
        raise ValueError(f"scale must be at least 1, got {scale}")

    def replay(step: str) -> float:
        return makespan(list(phase.tasks.get(step, ())) * scale, workers)

    def client_share(step: str, wall: float) -> float:
        return max(0.0, wall - phase.spans.get(step, 0.0)) * scale

    trip_index = client_share("trip_index", phase.steps.get("trip_index", 0.0)) + replay("trip_index")
    prepare = phase.steps.get("prepare", 0.0)
    align_wall = prepare + phase.steps.get("align", 0.0)
    align_client = max(0.0, align_wall - max(prepare, phase.spans.get("align", 0.0))) * scale
    align = max(prepare, replay("align")) + align_client
    pieces = client_share("pieces", phase.steps.get("pieces", 0.0)) + replay("pieces")
    other = phase.other * scale
    return {"trip_index": trip_index, "align": align, "pieces": pieces, "other": other,
            "total": trip_index + align + pieces + other}
