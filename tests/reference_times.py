"""Reference for the segment builder's spreading of repeated fix times, in plain Python.

It applies the rule of ``compute.segments._spread_repeated_times`` in the same arithmetic order,
so the two agree to the bit. A run of equal times goes up to the next different time in
proportion to length, or evenly without length. A run at the end of the trip goes back to the
time before it. A trip with one time on every vertex keeps it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def spread_trip_times(times: Sequence[float], lengths: Sequence[float]) -> list[float]:
    """Return one trip's vertex times with runs of repeated times spread."""
    out = [float(t) for t in times]
    n = len(out)
    k = 0
    while k < n - 1:
        if out[k + 1] != out[k]:
            k += 1
            continue
        last = k + 1
        while last + 1 < n and out[last + 1] == out[k]:
            last += 1
        if last + 1 < n:
            low, high = k, last + 1
        elif k > 0:
            low, high = k - 1, last
        else:
            break
        total = 0.0
        for j in range(low, high):
            total += float(lengths[j])
        if np.isfinite(total):
            along = 0.0
            for v in range(low + 1, high):
                along += float(lengths[v - 1])
                fraction = along / total if total > 0 else (v - low) / (high - low)
                out[v] = out[low] + fraction * (out[high] - out[low])
        k = last + 1
    return out


def spread_times(vertex_ms: np.ndarray, counts: np.ndarray, length_m: np.ndarray, timed: np.ndarray) -> np.ndarray:
    """Return ``vertex_ms`` of all trips with the runs of the ``timed`` trips spread.

    ``length_m`` contains the segment lengths of all trips in trip order, ``counts - 1`` per trip.
    """
    out = np.asarray(vertex_ms, dtype=np.float64).copy()
    vertex = segment = 0
    for trip, n in enumerate(np.asarray(counts).tolist()):
        n_segments = max(n - 1, 0)
        if timed[trip]:
            out[vertex:vertex + n] = spread_trip_times(out[vertex:vertex + n], length_m[segment:segment + n_segments])
        vertex += n
        segment += n_segments
    return out
