"""Faster key paths of tachometer validation give what the text keys gave.

Tachometer keys are ``vehicle@time`` text. Building that text with numpy and finding repeated
keys on it took most of validating a tachometer piece. The time is now formatted from tables,
and repeats are found on integer codes; both are compared here with the text formulation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from compute import columns as c
from compute.contract import key_hashes, validate
from compute.contract.frames import iso_ms_text, row_keys


def _numpy_iso(values: np.ndarray) -> list[str | None]:
    return [None if np.isnat(v) else f"{np.datetime_as_string(v, unit='ms')}Z" for v in values]


@pytest.mark.parametrize(
    ("low_ms", "high_ms"),
    [
        (1_764_547_200_000, 1_764_633_600_000),  # one day of 2025
        (-30_610_224_000_000, 253_402_300_799_999),  # years 1000 to 9999: the table path
        (-62_135_596_800_000, 400_000_000_000_000),  # years 1 to 14645: numpy's path
    ],
    ids=["one-day", "years-1000-9999", "outside-4-digit-years"],
)
def test_iso_text_equals_numpy(low_ms: int, high_ms: int) -> None:
    rng = np.random.default_rng(low_ms % 1000)
    values = rng.integers(low_ms, high_ms, 50_000).astype("datetime64[ms]")
    values[::11] = np.datetime64("NaT")
    assert iso_ms_text(values).to_pylist() == _numpy_iso(values)


def test_iso_text_of_no_values() -> None:
    assert iso_ms_text(np.array([], dtype="datetime64[ms]")).to_pylist() == []


def _tachometer(rng: np.random.Generator, n: int) -> pd.DataFrame:
    vehicles = np.array(["V1", "V2", "V@3", "", None], dtype=object)[rng.integers(0, 5, n)]
    # About 3,000 records over 4 x 3,000 (vehicle, second) pairs: some keys repeat, most do not.
    ms = 1_764_547_200_000 + rng.integers(0, 3_000, n) * 1000
    ts = pd.Series(pd.to_datetime(ms, unit="ms", utc=True), index=np.arange(n) * 2 + 7)
    ts[rng.random(n) < 0.05] = pd.NaT
    return pd.DataFrame({c.VEHICLE_ID: pd.array(vehicles, dtype="string"), c.TS: ts}, index=ts.index)


@pytest.mark.parametrize("seed", range(5))
def test_tachometer_keys_equal_text(seed: int) -> None:
    frame = _tachometer(np.random.default_rng(seed), 3_000)
    times = pd.to_datetime(frame[c.TS], utc=True)
    text = pd.Series(np.datetime_as_string(times.to_numpy(dtype="datetime64[ms]"), unit="ms"), index=frame.index, dtype="string") + "Z"
    expected = (frame[c.VEHICLE_ID].astype("string") + "@" + text.mask(times.isna())).rename(c.ROW_KEY)

    keys = row_keys("tachometer", frame)

    pd.testing.assert_series_equal(keys, expected)


@pytest.mark.parametrize("seed", range(5))
def test_tachometer_repeats_equal_text(seed: int) -> None:
    frame = _tachometer(np.random.default_rng(seed), 3_000)
    keys = row_keys("tachometer", frame)
    with_key = keys.notna().to_numpy(dtype=bool)

    found = validate._duplicated("tachometer", frame, keys)

    # Rows without a key fail key_missing first; the others must match the text keys exactly.
    expected = keys.duplicated(keep=False).to_numpy(dtype=bool)
    np.testing.assert_array_equal(found[with_key], expected[with_key])
    assert 0 < found[with_key].sum() < with_key.sum()


@pytest.mark.parametrize("seed", range(3))
def test_tachometer_hashes_group_keys(seed: int) -> None:
    frame = _tachometer(np.random.default_rng(seed), 3_000)
    keys = row_keys("tachometer", frame)

    rows, hashes = key_hashes("tachometer", frame)

    np.testing.assert_array_equal(rows, np.flatnonzero(keys.notna().to_numpy(dtype=bool)))
    # Same key, same hash; different keys, different hashes (no collision among 3,000 keys).
    by_key = pd.Series(hashes, index=keys.iloc[rows].to_numpy(dtype=object)).groupby(level=0).nunique()
    assert (by_key == 1).all()
    assert len(np.unique(hashes)) == len(by_key)
    # Another partition with the same keys hashes them the same.
    _, again = key_hashes("tachometer", frame.iloc[::-1])
    np.testing.assert_array_equal(np.sort(again), np.sort(hashes))
