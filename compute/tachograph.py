"""As-of alignment of tachograph records to trips, by vehicle and time.

A record belongs to the trip of the same vehicle whose ``[start_time, end_time]`` interval contains
its timestamp. When a vehicle's trips overlap in time, the record goes to the trip that started
last at or before it (the as-of rule), so each record belongs to at most one trip. Among trips
with the same start, the last one in trip order wins. Records outside every trip of their vehicle
are returned separately: they are valid data that no trip explains.

The alignment searches a combined (vehicle, time) key of the trips, sorted once: vehicles are
turned into integer codes through the trips' vehicle ids, so no string is compared per record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd

from compute import columns as c

ALIGNED_COLUMNS: tuple[str, ...] = (c.TRIP_ID, c.VEHICLE_ID, c.TS, c.SPEED_KMH, c.ENGINE_RPM, c.FUEL_ML)
_MS = "datetime64[ms, UTC]"
# Bits of the combined key left for the time offset in ms: about 34 years from the earliest time.
_TIME_BITS = 40
#: Largest trip vehicle code whose combined key stays a positive int64 (23 bits, 8,388,607).
VEHICLE_CODE_MAX = (1 << (63 - _TIME_BITS)) - 1


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
    and about 400 alignment tasks, which would otherwise each sort them again.

    Raises
    ------
    ValueError
        If a trip's vehicle code is above :data:`VEHICLE_CODE_MAX`. Its combined key would
        overflow and collide with the keys of another vehicle.
    """
    usable_trip = (trip_vehicle_codes >= 0) & np.isfinite(trip_start_ms)
    trip_rows = np.flatnonzero(usable_trip)
    if trip_rows.size == 0:
        return TripKeys(origin_ms=0.0, rows=trip_rows.astype(np.int64), keys=np.zeros(0, np.int64))
    largest_code = int(np.max(trip_vehicle_codes[trip_rows]))
    if largest_code > VEHICLE_CODE_MAX:
        raise ValueError(
            f"trip vehicle codes must be at most {VEHICLE_CODE_MAX:,} to fit the combined (vehicle, time) key, "
            f"got {largest_code:,}; number the vehicles from 0 with encode_vehicles"
        )
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
        Record time, epoch milliseconds (float; NaN never matches). A record is compared with
        trip starts in whole milliseconds after the earliest start, and with trip ends exactly.
        NOTE: a record less than 1 ms before a trip's start, in the same whole millisecond, can
        therefore belong to that trip. The pipeline passes whole milliseconds only.
    trip_vehicle_codes, trip_start_ms, trip_end_ms
        Per trip: vehicle code, start and end in epoch milliseconds (NaN start never matches).
    trip_keys
        :func:`sort_trips` of the same trips, when the caller keeps it for many calls.

    Raises
    ------
    ValueError
        From :func:`sort_trips`, if a trip's vehicle code is above :data:`VEHICLE_CODE_MAX`.

    Notes
    -----
    Cost is a sort of the trips (unless ``trip_keys`` is given) and one search per record, which
    starts at the previous record's result while the records come in key order.
    """
    n_records = len(ts_ms)
    out = np.full(n_records, -1, dtype=np.int64)
    sorted_trips = sort_trips(trip_vehicle_codes, trip_start_ms) if trip_keys is None else trip_keys
    if n_records == 0 or sorted_trips.rows.size == 0:
        return out
    _assign_sorted(
        np.ascontiguousarray(vehicle_codes, dtype=np.int64), np.ascontiguousarray(ts_ms, dtype=np.float64),
        sorted_trips.origin_ms, sorted_trips.rows, sorted_trips.keys,
        np.ascontiguousarray(trip_vehicle_codes, dtype=np.int64), np.ascontiguousarray(trip_end_ms, dtype=np.float64), out,
    )
    return out


@numba.njit(cache=True, nogil=True)
def _assign_sorted(
    vehicle_codes: np.ndarray,
    ts_ms: np.ndarray,
    origin_ms: float,
    trip_rows: np.ndarray,
    trip_key: np.ndarray,
    trip_vehicle_codes: np.ndarray,
    trip_end_ms: np.ndarray,
    out: np.ndarray,
) -> None:
    """Fill ``out`` with the trip row of every record that a trip contains (see :func:`assign_trips`).

    Per record: its key as :func:`_combined_key` builds it, the last trip whose key is not
    greater (``searchsorted(side="right") - 1``), then the vehicle and end checks. Records usually
    come sorted by vehicle and time. While the keys do not decrease, the search starts where the
    previous one ended and gallops forward, a few probes near the last hit. A binary search over
    the whole day's trips would miss the CPU caches on a day of 1M trips, whose keys take 8 MB.
    """
    n_trips = trip_key.size
    time_max = float((1 << _TIME_BITS) - 1)
    previous_key = -1
    previous_stop = 0
    for i in range(ts_ms.size):
        vehicle = vehicle_codes[i]
        time = ts_ms[i]
        # A record before the earliest start belongs to no trip; NaN and infinity match nothing.
        if vehicle < 0 or not origin_ms <= time < math.inf:
            continue
        key = (vehicle << _TIME_BITS) | np.int64(min(np.floor(time - origin_ms), time_max))
        low = previous_stop if key >= previous_key else 0
        high = n_trips
        probe = low
        step = 1
        while probe < n_trips:
            if trip_key[probe] <= key:
                low = probe + 1
                probe = low + step
                step <<= 1
            else:
                high = probe
                break
        while low < high:
            middle = (low + high) >> 1
            if trip_key[middle] <= key:
                low = middle + 1
            else:
                high = middle
        previous_key = key
        previous_stop = low  # the first trip key above this record's key
        if low == 0:
            continue
        candidate = trip_rows[low - 1]
        if trip_vehicle_codes[candidate] == vehicle and time <= trip_end_ms[candidate]:
            out[i] = candidate


def in_trip_time_order(rows: np.ndarray, trip: np.ndarray, ts_ms: np.ndarray) -> bool:
    """Tell whether records ``rows`` come in (trip, time) order: trip rows never decrease and, within
    a trip, times never decrease (equal times count as ordered). A NaN time is out of order.

    One pass, without gathering the records' trips and times into new arrays first.
    """
    return bool(_rows_in_order(
        np.ascontiguousarray(rows, dtype=np.int64), np.ascontiguousarray(trip, dtype=np.int64),
        np.ascontiguousarray(ts_ms, dtype=np.float64),
    ))


@numba.njit(cache=True, nogil=True)
def _rows_in_order(rows: np.ndarray, trip: np.ndarray, ts_ms: np.ndarray) -> bool:
    for k in range(rows.size - 1):
        a = rows[k]
        b = rows[k + 1]
        if trip[b] < trip[a] or (trip[b] == trip[a] and not ts_ms[b] >= ts_ms[a]):
            return False
    return True


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
