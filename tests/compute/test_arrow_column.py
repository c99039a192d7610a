"""``pipeline.arrow_column`` builds the arrays that ``pyarrow.array`` builds from pandas columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from compute import pipeline

_LINKS = pd.Index([f"L{i:05d}" for i in range(300)], dtype=object)


def _columns() -> dict[str, pd.Series]:
    rng = np.random.default_rng(5)
    n = 1_001  # not a multiple of 8, so the last validity byte is partly used
    floats = rng.normal(size=n)
    floats[rng.random(n) < 0.3] = np.nan
    times = pd.Series(pd.date_range("2026-12-01", periods=n, freq="s", tz="UTC").as_unit("ms"))
    times[rng.random(n) < 0.1] = pd.NaT
    codes = rng.integers(-1, len(_LINKS), n)
    wide = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    return {
        "floats with NaN": pd.Series(floats),
        "floats without NaN": pd.Series(rng.normal(size=n)),
        "only NaN": pd.Series(np.full(n, np.nan)),
        "float32": pd.Series(floats.astype(np.float32)),
        "column of a 2-D block": wide["b"],
        "every other row": pd.Series(floats[::2]),
        "utc times with NaT": times,
        "naive times": pd.Series(pd.date_range("2026-12-01", periods=n, freq="min")),
        "categorical with missing": pd.Series(pd.Categorical.from_codes(codes, categories=_LINKS)),
        "categorical all missing": pd.Series(pd.Categorical.from_codes(np.full(n, -1), categories=_LINKS)),
        "categorical of strings": pd.Series(pd.Categorical(["b", "a", None, "b"] * 5)),
        "ordered categorical": pd.Series(pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True)),
        "booleans": pd.Series(rng.random(n) < 0.5),
        "int32": pd.Series(rng.integers(0, 1_000, n).astype(np.int32)),
        "strings": pd.Series(["x", None, "y"] * 7),
        "empty floats": pd.Series([], dtype=np.float64),
        "empty categorical": pd.Series(pd.Categorical.from_codes(np.zeros(0, np.int8), categories=["a"])),
    }


@pytest.mark.parametrize("name", list(_columns()))
def test_matches_pyarrow_array(name: str) -> None:
    values = _columns()[name]

    got = pipeline.arrow_column(values)

    expected = pa.array(values)
    assert got.type == expected.type
    assert got.null_count == expected.null_count
    assert got.equals(expected), f"{name}: {got.to_pylist()[:5]} != {expected.to_pylist()[:5]}"
    got.validate(full=True)


def test_dictionary_follows_the_categories_object() -> None:
    """The kept dictionary of one categories object is never used for another one."""
    first = pd.Series(pd.Categorical.from_codes([0, 1, 2], categories=pd.Index(["a", "b", "c"], dtype=object)))
    second = pd.Series(pd.Categorical.from_codes([0, 1, 2], categories=pd.Index(["x", "y", "z"], dtype=object)))
    for _ in range(2):
        assert pipeline.arrow_column(first).to_pylist() == ["a", "b", "c"]
        assert pipeline.arrow_column(second).to_pylist() == ["x", "y", "z"]
    for _ in range(pipeline._DICTIONARIES_KEPT + 2):  # more objects than are kept: the cache starts over
        fresh = pd.Series(pd.Categorical.from_codes([1], categories=pd.Index(["p", "q"], dtype=object)))
        assert pipeline.arrow_column(fresh).to_pylist() == ["q"]
    assert len(pipeline._DICTIONARIES) <= pipeline._DICTIONARIES_KEPT


# -- required columns ---------------------------------------------------------------------------


def _aligned_table(ts_ms: list[int | None]) -> pa.Table:
    return pa.table({
        "trip_row": pa.array(np.arange(len(ts_ms), dtype=np.int32)),
        "ts": pa.array(ts_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "speed_kmh": pa.array(np.linspace(0.0, 50.0, len(ts_ms))),
        "fuel_ml": pa.array([None] * len(ts_ms), pa.float64()),
    })


def test_required_null_stays_nullable(tmp_path) -> None:
    from compute.storage import Store

    complete = pipeline.with_required_fields(_aligned_table([0, 1_000, 2_000]), ("trip_row", "ts"))
    holed = pipeline.with_required_fields(_aligned_table([3_000, None]), ("trip_row", "ts"))
    assert [f.nullable for f in complete.schema] == [False, False, True, True]
    assert [f.nullable for f in holed.schema] == [False, True, True, True]

    store = Store(str(tmp_path))
    for name, table in (("a.parquet", complete), ("b.parquet", holed)):
        pipeline._write_grouped(store, f"aligned/{name}", table, np.zeros(table.num_rows, np.int64))
    frame = pipeline._read_aligned_tacho(
        store,
        [pipeline.TachoRowGroups("aligned/a.parquet", (0,)), pipeline.TachoRowGroups("aligned/b.parquet", (0,))],
        pd.DataFrame({"trip_id": [f"t{i}" for i in range(3)]}),
    )
    assert frame["ts"].isna().tolist() == [False, False, False, False, True]
    assert frame["trip_id"].astype(str).tolist() == ["t0", "t1", "t2", "t0", "t1"]

    folder = pipeline.read_folder(store, "aligned")
    assert folder is not None
    assert folder.column("ts").null_count == 1
    assert folder.num_rows == 5
