"""As-of alignment of tachograph records to trips, by vehicle and time.

A record belongs to the trip of the same vehicle whose ``[start_time, end_time]`` interval contains
its timestamp. When a vehicle's trips overlap in time, the record goes to the trip that started
last at or before it (the as-of rule), so each record belongs to at most one trip. Among trips
with the same start, the last one in trip order wins. Records outside every trip of their vehicle
are returned separately: they are valid data that no trip explains.

The alignment is one ``numpy.searchsorted`` over a combined (vehicle, time) key: vehicles are
turned into integer codes through the trips' vehicle ids, so no string is compared per record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from compute import columns as c

ALIGNED_COLUMNS: tuple[str, ...] = (c.TRIP_ID, c.VEHICLE_ID, c.TS, c.SPEED_KMH, c.ENGINE_RPM, c.FUEL_ML)
_MS = "datetime64[ms, UTC]"
# Bits of the combined key left for the time offset in ms: about 34 years from the earliest time.
_TIME_BITS = 40


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

    vehicle_codes, trip_vehicle_codes = encode_vehicles(tacho[c.VEHICLE_ID].to_numpy(dtype=object), trips[c.VEHICLE_ID].to_numpy(dtype=object))
    trip = assign_trips(
        vehicle_codes, _epoch_ms(tacho[c.TS]),
        trip_vehicle_codes, _epoch_ms(trips[c.START_TIME]), _epoch_ms(trips[c.END_TIME]),
    )
    inside = trip >= 0
    rows = np.flatnonzero(inside)
    order = np.lexsort((_epoch_ms(tacho[c.TS])[rows], trip[rows]))
    rows = rows[order]

    trip_ids = trips[c.TRIP_ID].to_numpy(dtype=object)
    picked = tacho.iloc[rows]
    aligned = pd.DataFrame(
        {
            c.TRIP_ID: trip_ids[trip[rows]],
            c.VEHICLE_ID: picked[c.VEHICLE_ID].to_numpy(dtype=object),
            c.TS: pd.to_datetime(picked[c.TS], utc=True).astype(_MS).to_numpy(),
            c.SPEED_KMH: pd.to_numeric(picked[c.SPEED_KMH], errors="coerce").to_numpy(dtype=np.float64),
            c.ENGINE_RPM: pd.to_numeric(picked[c.ENGINE_RPM], errors="coerce").to_numpy(dtype=np.float64),
            c.FUEL_ML: pd.to_numeric(picked[c.FUEL_ML], errors="coerce").to_numpy(dtype=np.float64),
        }
    )
    aligned[c.TS] = aligned[c.TS].astype(_MS)
    outside = tacho.iloc[np.flatnonzero(~inside)].reset_index(drop=True)
    return aligned, outside


@dataclass(frozen=True)
class TripKeys:
    """Trips sorted by their combined (vehicle, start) key, for :func:`assign_trips`.

    ``rows`` are the trip rows in key order and ``keys`` their keys, with start times counted from
    ``origin_ms``, the earliest start. Trips without a vehicle code or a start are left out.
    """

    origin_ms: float
    rows: np.ndarray
    keys: np.ndarray


def sort_trips(trip_vehicle_codes: np.ndarray, trip_start_ms: np.ndarray) -> TripKeys:
    """Sort the trips once for many calls of :func:`assign_trips`. A production day has 1M trips
    and about 400 alignment tasks, which would otherwise each sort them again."""
    usable_trip = (trip_vehicle_codes >= 0) & np.isfinite(trip_start_ms)
    trip_rows = np.flatnonzero(usable_trip)
    if trip_rows.size == 0:
        return TripKeys(origin_ms=0.0, rows=trip_rows.astype(np.int64), keys=np.zeros(0, np.int64))
    origin = float(np.min(trip_start_ms[trip_rows]))
    trip_key = _combined_key(trip_vehicle_codes[trip_rows], trip_start_ms[trip_rows], origin)
    order = np.lexsort((trip_rows, trip_key))  # equal starts keep trip order, so the last one wins
    return TripKeys(origin_ms=origin, rows=trip_rows[order].astype(np.int64), keys=trip_key[order])


def assign_trips(
    vehicle_codes: np.ndarray,
    ts_ms: np.ndarray,
    trip_vehicle_codes: np.ndarray,
    trip_start_ms: np.ndarray,
    trip_end_ms: np.ndarray,
    trip_keys: TripKeys | None = None,
) -> np.ndarray:
    """Return, per record, the row of its trip in the trip arrays, or -1 (the as-of rule).

    Parameters
    ----------
    vehicle_codes
        Integer vehicle code per record; -1 for a vehicle without trips.
    ts_ms
        Record time, epoch milliseconds (float; NaN never matches).
    trip_vehicle_codes, trip_start_ms, trip_end_ms
        Per trip: vehicle code, start and end in epoch milliseconds (NaN start never matches).
    trip_keys
        :func:`sort_trips` of the same trips, when the caller keeps it for many calls.

    Notes
    -----
    Cost is a sort of the trips (unless ``trip_keys`` is given) and one binary search per record.
    """
    n_records = len(ts_ms)
    out = np.full(n_records, -1, dtype=np.int64)
    sorted_trips = sort_trips(trip_vehicle_codes, trip_start_ms) if trip_keys is None else trip_keys
    if n_records == 0 or sorted_trips.rows.size == 0:
        return out
    origin = sorted_trips.origin_ms
    trip_rows, trip_key = sorted_trips.rows, sorted_trips.keys

    # A record before the earliest start belongs to no trip; leaving it out also keeps its time
    # offset from the origin non-negative.
    with np.errstate(invalid="ignore"):
        usable = (vehicle_codes >= 0) & np.isfinite(ts_ms) & (ts_ms >= origin)
    record_key = _combined_key(np.where(usable, vehicle_codes, 0), np.where(usable, ts_ms, origin), origin)
    position = np.searchsorted(trip_key, record_key, side="right") - 1
    candidate = trip_rows[np.maximum(position, 0)]
    same_vehicle = (position >= 0) & (trip_vehicle_codes[candidate] == vehicle_codes)
    with np.errstate(invalid="ignore"):
        before_end = ts_ms <= trip_end_ms[candidate]
    match = usable & same_vehicle & before_end
    out[match] = candidate[match]
    return out


def encode_vehicles(record_vehicles: np.ndarray, trip_vehicles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return integer codes for the vehicle ids of records and of trips, from one shared table.

    A record whose vehicle has no trip gets -1.
    """
    codes, uniques = pd.factorize(trip_vehicles)
    index = pd.Index(uniques)
    return index.get_indexer(record_vehicles).astype(np.int64), codes.astype(np.int64)


def _combined_key(vehicle_codes: np.ndarray, times_ms: np.ndarray, origin_ms: float) -> np.ndarray:
    offset = np.clip(np.floor(times_ms - origin_ms), 0, (1 << _TIME_BITS) - 1).astype(np.int64)
    return (vehicle_codes.astype(np.int64) << _TIME_BITS) | offset


def _epoch_ms(series: pd.Series) -> np.ndarray:
    values = pd.to_datetime(series, utc=True)
    out = values.astype(_MS).to_numpy(dtype="datetime64[ms]").astype(np.int64).astype(np.float64)
    out[values.isna().to_numpy()] = np.nan
    return out


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
