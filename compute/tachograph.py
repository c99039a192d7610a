"""As-of alignment of tachograph records to trips, by vehicle and time.

A record belongs to the trip of the same vehicle whose ``[start_time, end_time]`` interval contains
its timestamp. When a vehicle's trips overlap in time, the record goes to the trip that started
last before it (the as-of rule), so each record belongs to at most one trip. Records outside every
trip of their vehicle are returned separately: they are valid data that no trip explains.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from compute import columns as c

ALIGNED_COLUMNS: tuple[str, ...] = (c.TRIP_ID, c.VEHICLE_ID, c.TS, c.SPEED_KMH, c.ENGINE_RPM, c.FUEL_ML)
_MS = "datetime64[ms, UTC]"


def align_to_trips(tacho: pd.DataFrame, trips: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Attach ``trip_id`` to each tachograph record and split off records outside every trip.

    Parameters
    ----------
    tacho
        Accepted tachograph records: ``vehicle_id``, ``ts``, ``speed_kmh``, optional
        ``engine_rpm`` and ``fuel_ml``.
    trips
        One row per trip with ``trip_id``, ``vehicle_id``, ``start_time``, ``end_time``.

    Returns
    -------
    aligned
        Records inside a trip, columns :data:`ALIGNED_COLUMNS`, sorted by trip and time.
    outside
        Records of no trip, with the input columns.
    """
    tacho = _with_optional_columns(tacho)
    if len(tacho) == 0 or len(trips) == 0:
        return _empty_aligned(), tacho.reset_index(drop=True)

    left = tacho.assign(_row=np.arange(len(tacho)))
    left[c.VEHICLE_ID] = left[c.VEHICLE_ID].astype(object)  # merge_asof needs identical key dtypes
    left[c.TS] = left[c.TS].astype(_MS)
    left = left.sort_values([c.TS], kind="mergesort")
    right = trips[[c.TRIP_ID, c.VEHICLE_ID, c.START_TIME, c.END_TIME]].copy()
    right[c.VEHICLE_ID] = right[c.VEHICLE_ID].astype(object)
    right[c.START_TIME] = right[c.START_TIME].astype(_MS)
    right[c.END_TIME] = right[c.END_TIME].astype(_MS)
    right = right.dropna(subset=[c.START_TIME]).sort_values([c.START_TIME], kind="mergesort")

    joined = pd.merge_asof(
        left, right, left_on=c.TS, right_on=c.START_TIME, by=c.VEHICLE_ID, direction="backward", allow_exact_matches=True
    )
    inside = joined[c.TRIP_ID].notna().to_numpy() & (joined[c.TS] <= joined[c.END_TIME]).fillna(False).to_numpy()
    aligned = joined.loc[inside, list(ALIGNED_COLUMNS)].sort_values([c.TRIP_ID, c.TS], kind="mergesort").reset_index(drop=True)
    outside_rows = np.sort(joined.loc[~inside, "_row"].to_numpy())
    outside = tacho.iloc[outside_rows].reset_index(drop=True)
    return aligned, outside


def _with_optional_columns(tacho: pd.DataFrame) -> pd.DataFrame:
    out = tacho.copy()
    for column in (c.ENGINE_RPM, c.FUEL_ML):
        if column not in out.columns:
            out[column] = np.nan
    return out


def _empty_aligned() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c.TRIP_ID: pd.Series([], dtype=object),
            c.VEHICLE_ID: pd.Series([], dtype=object),
            c.TS: pd.Series([], dtype=_MS),
            c.SPEED_KMH: pd.Series([], dtype=np.float64),
            c.ENGINE_RPM: pd.Series([], dtype=np.float64),
            c.FUEL_ML: pd.Series([], dtype=np.float64),
        }
    )
