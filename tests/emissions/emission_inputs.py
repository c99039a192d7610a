"""Builders of tiny named inputs for the emission model tests.

Segments are built directly from 1 Hz speed traces (or from a list of speeds per segment), with
the same rules the segment builder applies to trajectories: speed = length / duration and
acceleration = change of segment speed from the previous segment over the duration.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from compute import columns as c

CYCLES_DIR = Path(__file__).resolve().parents[2] / "compute" / "data" / "cycles"
START = pd.Timestamp("2026-01-05 00:00:00", tz="UTC")
TIME_DTYPE = "datetime64[ms, UTC]"


def read_cycle(name: str) -> np.ndarray:
    """Return the 1 Hz speed samples (m/s) of a shipped cycle; wltc_japan is 0..1477 s."""
    if name == "wltc_japan":
        return read_cycle("wltc_3b")[:1478]
    frame = pd.read_csv(CYCLES_DIR / f"{name}.csv")
    return frame["speed_m_per_s"].to_numpy(dtype="float64")


def segments_from_trace(
    trip_id: str,
    vehicle_id: str,
    speed_m_s: np.ndarray,
    grade_pct: float | np.ndarray | None = 0.0,
    start: pd.Timestamp = START,
    every_s: int = 1,
) -> pd.DataFrame:
    """Build the segments of a trip whose vertices are the trace samples every ``every_s`` s."""
    position = np.concatenate([[0.0], np.cumsum(0.5 * (speed_m_s[1:] + speed_m_s[:-1]))])
    kept = np.arange(0, speed_m_s.size, every_s)
    if kept[-1] != speed_m_s.size - 1:
        kept = np.append(kept, speed_m_s.size - 1)
    duration = np.diff(kept).astype("float64")
    length = np.diff(position[kept])
    speed = length / duration
    accel = np.concatenate([[0.0], np.diff(speed) / duration[1:]])
    return make_segments(trip_id, vehicle_id, duration, length, accel, grade_pct, start, kept[:-1].astype(float))


def make_segments(
    trip_id: str,
    vehicle_id: str,
    duration_s: np.ndarray,
    length_m: np.ndarray,
    accel_m_s2: np.ndarray | None = None,
    grade_pct: float | np.ndarray | None = 0.0,
    start: pd.Timestamp = START,
    offsets_s: np.ndarray | None = None,
    road_class: list[str | None] | None = None,
    area_type: list[str | None] | None = None,
) -> pd.DataFrame:
    """Build a segments frame with the contract's columns and dtypes."""
    duration_s = np.asarray(duration_s, dtype="float64")
    length_m = np.asarray(length_m, dtype="float64")
    n = duration_s.size
    if offsets_s is None:
        offsets_s = np.concatenate([[0.0], np.cumsum(duration_s)[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        speed_kmh = np.where(duration_s > 0, length_m / duration_s * 3.6, np.nan)
    grade = np.full(n, np.nan) if grade_pct is None else np.broadcast_to(np.asarray(grade_pct, dtype="float64"), (n,))
    return pd.DataFrame(
        {
            c.TRIP_ID: pd.Series([trip_id] * n, dtype="str"),
            c.VEHICLE_ID: pd.Series([vehicle_id] * n, dtype="str"),
            c.SEG_INDEX: np.arange(n, dtype="int32"),
            c.T_START: (start + pd.to_timedelta(offsets_s, unit="s")).astype(TIME_DTYPE)
            if n
            else pd.Series([], dtype=TIME_DTYPE),
            c.DURATION_S: duration_s,
            c.LENGTH_M: length_m,
            c.SPEED_KMH: speed_kmh,
            c.ACCEL_M_S2: np.zeros(n) if accel_m_s2 is None else np.asarray(accel_m_s2, dtype="float64"),
            c.GRADE_PCT: grade,
            c.ROAD_CLASS: pd.Series(road_class if road_class is not None else [None] * n, dtype=object),
            c.AREA_TYPE: pd.Series(area_type if area_type is not None else [None] * n, dtype=object),
            c.SPEED_LIMIT_KMH: np.full(n, np.nan),
            c.LINK_GRADIENT_PCT: np.full(n, np.nan),
            c.MATCHED: np.zeros(n, dtype=bool),
        }
    )


def make_trips(rows: list[dict]) -> pd.DataFrame:
    """Build a trips frame; each row gives trip_id, vehicle_id, duration_s and optional fields."""
    frame = pd.DataFrame(
        {
            c.TRIP_ID: pd.Series([r["trip_id"] for r in rows], dtype="str"),
            c.VEHICLE_ID: pd.Series([r["vehicle_id"] for r in rows], dtype="str"),
            c.START_TIME: pd.Series([r.get("start", START) for r in rows], dtype=TIME_DTYPE),
            c.END_TIME: pd.Series(
                [r.get("start", START) + pd.Timedelta(seconds=r["duration_s"]) for r in rows], dtype=TIME_DTYPE
            ),
            c.LOAD_KG: pd.Series([r.get("load_kg", np.nan) for r in rows], dtype="float64"),
            c.N_VERTICES: pd.Series([r.get("n_vertices", 2) for r in rows], dtype="int64"),
            c.TIME_SOURCE: pd.Series([r.get("time_source", "vertex") for r in rows], dtype="str"),
        }
    )
    return frame


def make_vehicles(rows: list[dict]) -> pd.DataFrame:
    """Build a vehicle master; fields default to unknown."""
    return pd.DataFrame(
        {
            c.VEHICLE_ID: pd.Series([r["vehicle_id"] for r in rows], dtype="str"),
            c.VEHICLE_CLASS: pd.Series([r["vehicle_class"] for r in rows], dtype="str"),
            c.FUEL_TYPE: pd.Series([r["fuel_type"] for r in rows], dtype="str"),
            c.CATALOG_FE: pd.Series([r.get("catalog", np.nan) for r in rows], dtype="float64"),
            c.TEST_CYCLE: pd.Series([r.get("test_cycle") for r in rows], dtype=object),
            c.MAX_PAYLOAD_KG: pd.Series([r.get("max_payload_kg", np.nan) for r in rows], dtype="float64"),
            c.MODEL_YEAR: pd.Series([r.get("model_year", 2020) for r in rows], dtype="Int64"),
        }
    )


def make_tacho(
    trip_id: str,
    vehicle_id: str,
    speed_kmh: np.ndarray | None,
    fuel_ml: np.ndarray | None,
    n_rows: int | None = None,
    start: pd.Timestamp = START,
) -> pd.DataFrame:
    """Build 1 Hz tachograph rows for one trip; ``None`` makes a column all NaN."""
    n = n_rows
    if n is None:
        reference = speed_kmh if speed_kmh is not None else fuel_ml
        n = 0 if reference is None else len(reference)
    return pd.DataFrame(
        {
            c.TRIP_ID: pd.Series([trip_id] * n, dtype="str"),
            c.VEHICLE_ID: pd.Series([vehicle_id] * n, dtype="str"),
            c.TS: (start + pd.to_timedelta(np.arange(n), unit="s")).astype(TIME_DTYPE),
            c.SPEED_KMH: np.full(n, np.nan) if speed_kmh is None else np.asarray(speed_kmh, dtype="float64"),
            c.ENGINE_RPM: np.full(n, np.nan),
            c.FUEL_ML: np.full(n, np.nan) if fuel_ml is None else np.asarray(fuel_ml, dtype="float64"),
        }
    )


def empty_tacho() -> pd.DataFrame:
    """Return a tachograph frame with no rows and the contract's dtypes."""
    return make_tacho("x", "x", np.zeros(0), np.zeros(0), n_rows=0)
