"""Driving cycles at 1 Hz and the kinematics the fuel model reads from them.

Cycle names used by the model:

* ``wltc_japan``: WLTC class 3 Low + Medium + High, the first 1477 s of ``wltc_3b.csv``.
* ``wltc_3b``: the full class 3b cycle (1800 s).
* ``wltc_low_medium``: the first 1022 s of ``wltc_3b.csv``. It is the default JC08 substitute,
  because its average speed (27.7 km/h) and maximum (76.6 km/h) are the closest of the shipped
  traces to JC08 (24.4 km/h, 81.6 km/h).
* ``udds``, ``hwfet``, ``us06``: the US EPA cycles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WLTC_JAPAN_END_S = 1477
WLTC_LOW_MEDIUM_END_S = 1022


@dataclass(frozen=True)
class Kinematics:
    """Intervals of a speed profile: the unit the fuel model integrates over.

    Attributes
    ----------
    speed_m_s : mean speed of each interval
    accel_m_s2 : speed change over each interval divided by its duration
    duration_s : interval duration
    inertia_speed_m_s : speed that multiplies the acceleration in the inertia term, chosen so
        that ``accel * inertia_speed * duration`` is the kinetic-energy change per unit mass
    """

    speed_m_s: np.ndarray
    accel_m_s2: np.ndarray
    duration_s: np.ndarray
    inertia_speed_m_s: np.ndarray

    @property
    def distance_m(self) -> float:
        """Distance covered by all intervals (m)."""
        return float(np.sum(self.speed_m_s * self.duration_s))


def select_cycle(traces_m_per_s: dict[str, np.ndarray], name: str) -> np.ndarray:
    """Return the 1 Hz speed samples (m/s) of the named cycle.

    Raises
    ------
    ValueError
        If ``name`` is not one of the cycles listed in this module's docstring.
    """
    wltc = traces_m_per_s["wltc_3b"]
    if name == "wltc_japan":
        return wltc[: WLTC_JAPAN_END_S + 1]
    if name == "wltc_low_medium":
        return wltc[: WLTC_LOW_MEDIUM_END_S + 1]
    if name in traces_m_per_s:
        return traces_m_per_s[name]
    known = sorted({"wltc_japan", "wltc_low_medium", *traces_m_per_s})
    raise ValueError(f"unknown cycle {name!r}; expected one of {known}")


def kinematics_from_samples(speed_m_s: np.ndarray, time_s: np.ndarray | None = None) -> Kinematics:
    """Turn speed samples into intervals between consecutive samples.

    Each interval has the mean of its two end speeds and the acceleration (v1 - v0) / dt, so that
    ``accel * speed * duration`` equals the kinetic-energy change per unit mass exactly.
    """
    speed = np.asarray(speed_m_s, dtype="float64")
    time = np.arange(speed.size, dtype="float64") if time_s is None else np.asarray(time_s, dtype="float64")
    duration = np.diff(time)
    mean_speed = 0.5 * (speed[1:] + speed[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        accel = np.where(duration > 0, np.diff(speed) / duration, 0.0)
    return Kinematics(speed_m_s=mean_speed, accel_m_s2=accel, duration_s=duration, inertia_speed_m_s=mean_speed)


def kinematics_from_vertices(speed_m_s: np.ndarray, interval_s: int) -> Kinematics:
    """Rebuild the kinematics a trajectory with one vertex every ``interval_s`` seconds shows.

    Segment speed is length / duration between the kept vertices and the acceleration is the
    change of segment speed from the previous segment over the segment duration (0 for the
    first), the same rule the segment builder applies to trajectories.
    """
    speed = np.asarray(speed_m_s, dtype="float64")
    position_m = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]))])
    kept = np.arange(0, speed.size, interval_s)
    if kept[-1] != speed.size - 1:
        kept = np.append(kept, speed.size - 1)
    duration = np.diff(kept).astype("float64")
    segment_speed = np.diff(position_m[kept]) / duration
    accel = np.concatenate([[0.0], np.diff(segment_speed) / duration[1:]])
    # Mean of this and the previous segment speed: the speed change happens between them.
    inertia_speed = np.maximum(segment_speed - 0.5 * accel * duration, 0.0)
    return Kinematics(speed_m_s=segment_speed, accel_m_s2=accel, duration_s=duration, inertia_speed_m_s=inertia_speed)


def accel_loss_table(
    traces_m_per_s: dict[str, np.ndarray], intervals_s: tuple[int, ...] = (1, 2, 3, 5, 10, 15, 20, 30, 60)
) -> tuple[np.ndarray, np.ndarray]:
    """Compute how much positive inertia work sparse vertices lose, per vertex interval.

    For each interval the cycles WLTC 3b, UDDS, HWFET and US06 are sampled at one vertex per
    interval. The factor is the positive inertia work per unit mass of 1 s vertices divided by
    the work the sparse segments show, averaged over the cycles, so it is 1 at 1 s.

    Returns
    -------
    intervals_s, factors
        Arrays for ``np.interp``.
    """
    factors = []
    for interval in intervals_s:
        ratios = []
        for name in ("wltc_3b", "udds", "hwfet", "us06"):
            speed = select_cycle(traces_m_per_s, name)
            truth = _positive_inertia_work(kinematics_from_vertices(speed, 1))
            sparse = _positive_inertia_work(kinematics_from_vertices(speed, interval))
            ratios.append(truth / max(sparse, 1e-9))
        factors.append(float(np.mean(ratios)))
    return np.asarray(intervals_s, dtype="float64"), np.asarray(factors)


def _positive_inertia_work(kin: Kinematics) -> float:
    return float(np.sum(np.maximum(kin.accel_m_s2 * kin.inertia_speed_m_s, 0.0) * kin.duration_s))
