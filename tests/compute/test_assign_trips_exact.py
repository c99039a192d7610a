"""``tachograph.assign_trips`` gives the rows of the array formulation it replaced, on any input."""

from __future__ import annotations

import numpy as np
import pytest

from compute import tachograph

_TIME_BITS = 40


def _reference(vehicle_codes, ts_ms, trip_vehicle_codes, trip_start_ms, trip_end_ms) -> np.ndarray:
    """The previous formulation: one ``numpy.searchsorted`` over the combined keys."""
    out = np.full(len(ts_ms), -1, dtype=np.int64)
    keys = tachograph.sort_trips(trip_vehicle_codes, trip_start_ms)
    if len(ts_ms) == 0 or keys.rows.size == 0:
        return out
    origin = keys.origin_ms

    def combined(codes, times):
        offset = np.clip(np.floor(times - origin), 0, (1 << _TIME_BITS) - 1).astype(np.int64)
        return (codes.astype(np.int64) << _TIME_BITS) | offset

    with np.errstate(invalid="ignore"):
        usable = (vehicle_codes >= 0) & np.isfinite(ts_ms) & (ts_ms >= origin)
    position = np.searchsorted(keys.keys, combined(np.where(usable, vehicle_codes, 0), np.where(usable, ts_ms, origin)), side="right") - 1
    candidate = keys.rows[np.maximum(position, 0)]
    with np.errstate(invalid="ignore"):
        match = usable & (position >= 0) & (trip_vehicle_codes[candidate] == vehicle_codes) & (ts_ms <= trip_end_ms[candidate])
    out[match] = candidate[match]
    return out


def _day(seed: int, n_trips: int, n_records: int, order: str):
    """Build random trips and records (codes, times, trip vehicles, starts, ends) in ``order``."""
    rng = np.random.default_rng(seed)
    n_vehicles = max(1, n_trips // 3)
    trip_vehicle = rng.integers(-1, n_vehicles, n_trips)
    start = 1.8e12 + rng.integers(0, 86_400, n_trips) * 1_000.0
    start[rng.integers(0, n_trips, max(1, n_trips // 50))] = np.nan
    end = start + rng.integers(0, 7_200, n_trips) * 1_000.0
    end[rng.integers(0, n_trips, max(1, n_trips // 50))] = np.nan

    # Some trips share a vehicle and a start: the last one in trip order wins.
    twins = rng.integers(0, n_trips, max(1, n_trips // 20))
    trip_vehicle[twins[1:]] = trip_vehicle[twins[:-1]]
    start[twins[1:]] = start[twins[:-1]]

    codes = rng.integers(-1, n_vehicles + 2, n_records)
    ts = 1.8e12 + rng.uniform(-3_600, 90_000, n_records) * 1_000.0
    special = rng.integers(0, n_records, max(1, n_records // 20))
    ts[special[0::4]] = np.nan
    ts[special[1::4]] = np.inf
    ts[special[2::4]] = -np.inf
    ts[special[3::4]] = 1e300  # far beyond the 40 bits of time in the key

    if order == "sorted":
        keep = np.lexsort((ts, codes))
        codes, ts = codes[keep], ts[keep]
    elif order == "descending":
        keep = np.lexsort((ts, codes))[::-1]
        codes, ts = codes[keep], ts[keep]
    elif order == "sorted runs":  # files written vehicle by vehicle, restarted at random points
        keep = np.lexsort((ts, codes))
        cuts = np.sort(rng.integers(0, n_records, 5))
        keep = np.concatenate(np.split(keep, cuts)[::-1])
        codes, ts = codes[keep], ts[keep]
    return codes, ts, trip_vehicle, start, end


@pytest.mark.parametrize("order", ["random", "sorted", "descending", "sorted runs"])
@pytest.mark.parametrize(("n_trips", "n_records"), [(1, 50), (7, 300), (400, 20_000), (5_000, 60_000)])
def test_rows_equal_the_searchsorted_formulation(order: str, n_trips: int, n_records: int) -> None:
    codes, ts, trip_vehicle, start, end = _day(n_trips * 7 + n_records, n_trips, n_records, order)
    expected = _reference(codes, ts, trip_vehicle, start, end)
    got = tachograph.assign_trips(codes, ts, trip_vehicle, start, end)
    np.testing.assert_array_equal(got, expected)
    again = tachograph.assign_trips(codes, ts, trip_vehicle, start, end, tachograph.sort_trips(trip_vehicle, start))
    np.testing.assert_array_equal(again, expected)
    if n_trips >= 400:
        assert (expected >= 0).sum() > n_records // 20  # the case aligns records, not only rejects them


def test_no_trip_or_no_record_assigns_nothing() -> None:
    empty_f, empty_i = np.zeros(0), np.zeros(0, np.int64)
    assert tachograph.assign_trips(np.array([0, 1]), np.array([1.0, 2.0]), empty_i, empty_f, empty_f).tolist() == [-1, -1]
    assert tachograph.assign_trips(empty_i, empty_f, np.array([0]), np.array([0.0]), np.array([5.0])).tolist() == []
    # Trips without a usable start are no trips.
    assert tachograph.assign_trips(np.array([0]), np.array([1.0]), np.array([0]), np.array([np.nan]), np.array([5.0])).tolist() == [-1]


def test_input_dtypes_are_converted() -> None:
    codes32 = np.array([0, 0, 1], dtype=np.int32)
    ts = np.array([1_000, 2_000, 1_500], dtype=np.int64)
    got = tachograph.assign_trips(codes32, ts, np.array([0, 1], dtype=np.int16), np.array([500.0, 1_000.0]), np.array([1_500.0, 2_000.0]))
    assert got.tolist() == [0, -1, 1]
