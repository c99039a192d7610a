"""``profiles._epoch_seconds`` gives seconds since 1970 for every kind of time column it meets."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from compute.emissions import profiles

_UTC_MS = pd.Series(pd.date_range("2026-12-01 23:59:58.250", periods=7, freq="750ms", tz="UTC").as_unit("ms")).where(
    lambda s: s.index != 3
)


@pytest.mark.parametrize(
    "times",
    [
        _UTC_MS,
        _UTC_MS.dt.tz_localize(None),
        _UTC_MS.astype("datetime64[ns, UTC]"),
        _UTC_MS.astype("datetime64[s, UTC]"),
        _UTC_MS.dt.tz_convert("Asia/Tokyo"),
        _UTC_MS.astype(object).where(_UTC_MS.notna(), None).map(lambda t: None if t is None else t.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")),
        pd.Series([], dtype="datetime64[ms, UTC]"),
        pd.Series([pd.NaT, pd.NaT], dtype="datetime64[us, UTC]"),
    ],
    ids=["utc ms with NaT", "naive ms", "utc ns", "utc s", "tokyo", "iso strings", "empty", "only NaT"],
)
def test_epoch_seconds_is_the_rounded_exact_value(times: pd.Series) -> None:
    utc = pd.to_datetime(times, utc=True)
    missing = utc.isna().to_numpy()
    # Exact seconds from the nanoseconds, rounded once to float64.
    exact = np.array([np.nan if m else float(Fraction(t.value, 10**9)) for t, m in zip(utc, missing, strict=True)], dtype=float)
    got = profiles._epoch_seconds(times)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(got), missing)
    # Nanosecond counts above 2**53 round once when they become floats, so 1 ulp is allowed.
    np.testing.assert_array_max_ulp(got[~missing], exact[~missing], maxulp=1)
    if len(times) and str(getattr(times.dtype, "unit", "")) in ("s", "ms"):
        np.testing.assert_array_equal(got, exact)
