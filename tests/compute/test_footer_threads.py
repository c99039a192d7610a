"""Footers and schemas read in threads come back in file order, with the first error in that order."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from compute import pipeline
from compute.storage import Store


def test_results_keep_the_order_of_the_items() -> None:
    seen_threads: set[str] = set()

    def slow_square(value: int) -> int:
        seen_threads.add(threading.current_thread().name)
        time.sleep(0.002 * (value % 5))  # later items often finish first
        return value * value

    assert pipeline.in_threads(slow_square, list(range(40)), threads=8) == [v * v for v in range(40)]
    assert len(seen_threads) > 1


def test_first_error_in_item_order_is_raised() -> None:
    def fail_on_odd(value: int) -> int:
        # Item 7 fails at once, item 3 fails later: the error of item 3 must win.
        time.sleep(0.05 if value == 3 else 0.0)
        if value in (3, 7):
            raise ValueError(f"item {value}")
        return value

    with pytest.raises(ValueError, match="item 3"):
        pipeline.in_threads(fail_on_odd, list(range(10)), threads=4)


def test_one_thread_and_empty_input() -> None:
    assert pipeline.in_threads(str, [1, 2], threads=1) == ["1", "2"]
    assert pipeline.in_threads(str, []) == []


def _write_files(root: Path, sizes: list[int]) -> tuple[Store, list[str]]:
    store = Store(str(root))
    names = []
    for index, rows in enumerate(sizes):
        buffer = io.BytesIO()
        pq.write_table(pa.table({"x": list(range(rows))}), buffer, row_group_size=7)
        name = f"trajectories/part-{index:05d}.parquet"
        store.write_bytes(name, buffer.getvalue())
        names.append(name)
    return store, names


def test_footers_equal_those_read_one_by_one(tmp_path: Path) -> None:
    store, names = _write_files(tmp_path, [5, 30, 0, 71, 14, 1, 22, 9])
    threaded = pipeline.read_footers(store, names, threads=4)
    serial = pipeline.read_footers(store, names, threads=1)

    assert [m.num_rows for m in threaded] == [5, 30, 0, 71, 14, 1, 22, 9]
    assert [m.num_row_groups for m in threaded] == [m.num_row_groups for m in serial]
    assert all(a.equals(b) for a, b in zip(threaded, serial, strict=True))


def test_plans_use_every_file_in_order(tmp_path: Path) -> None:
    store, _ = _write_files(tmp_path, [5, 30, 0, 71, 14])
    pieces = pipeline.plan_pieces(store, "trajectories", target_rows=20)

    assert [p.path.rsplit("/", 1)[-1] for p in pieces] == [
        "part-00000.parquet", "part-00001.parquet", "part-00001.parquet", "part-00002.parquet",
        "part-00003.parquet", "part-00003.parquet", "part-00003.parquet", "part-00003.parquet", "part-00004.parquet",
    ]
    assert sum(p.rows for p in pieces) == 120
    assert [p.index for p in pieces] == list(range(len(pieces)))
    assert pipeline.target_rows_for(store, "trajectories", n_workers=1, rows_per_piece_max=1_000, rows_per_piece_min=1) == 30
