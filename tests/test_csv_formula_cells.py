"""Text cells that a spreadsheet would run as a formula are counted in CSV output, and escaped on request."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from compute.phases import guard_csv_formulas
from compute.sample import SampleSpec, write_sample_day
from compute.settings import OutputSettings
from compute.storage import Store
from tests.conftest import RUN_DATE, write_profile

CELLS = ["=HYPERLINK(\"http://x\",\"y\")", "@SUM(A1)", "+1+cmd|' /C calc'!A0", "-2+3", "\tTAB", "trip-001", "-12.5", "+3", "1e5", None]
FORMULAS = {0, 1, 2, 3, 4}


def _table() -> pa.Table:
    return pa.table({"trip_id": pa.array(CELLS, pa.string()), "co2_kg": pa.array([1.0] * len(CELLS))})


def test_formula_cells_counted_and_kept() -> None:
    table, count = guard_csv_formulas(_table(), escape=False)
    assert count == len(FORMULAS)
    assert table.column("trip_id").to_pylist() == CELLS


@pytest.mark.parametrize("text_type", [pa.string(), pa.large_string()])
def test_escape_prefixes_only_formula_cells(text_type: pa.DataType) -> None:
    table, count = guard_csv_formulas(_table().cast(pa.schema([("trip_id", text_type), ("co2_kg", pa.float64())])), escape=True)
    assert count == len(FORMULAS)
    expected = [("'" + v if i in FORMULAS else v) for i, v in enumerate(CELLS)]
    assert table.column("trip_id").to_pylist() == expected
    assert table.column("co2_kg").to_pylist() == [1.0] * len(CELLS)
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer)
    assert "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"" in buffer.getvalue().decode()


@pytest.mark.parametrize("value", ["-0.5", "+10", "-3e-2", "trip=1", "a@b"])
def test_numbers_are_not_formulas(value: str) -> None:
    assert guard_csv_formulas(pa.table({"v": pa.array([value])}), escape=False)[1] == 0


def test_setting_is_off_by_default() -> None:
    assert OutputSettings().csv_escape_formulas is False


@pytest.mark.slow
def test_flow_escapes_a_formula_trip_id(tmp_path: Path, prefect_harness: None) -> None:
    from flows.daily import co2_daily

    day = RUN_DATE.strftime("%Y%m%d")
    folder = tmp_path / "data" / "client" / "input" / day
    write_sample_day(Store(str(folder)), RUN_DATE, SampleSpec(trips=12, vertices_per_trip=8))
    part = sorted((folder / "trajectories").glob("*.parquet"))[0]
    table = pq.read_table(part)
    hostile = '=HYPERLINK("http://127.0.0.1/x","open")'
    first = table.column("trip_id")[0].as_py()
    ids = pc.if_else(pc.equal(table.column("trip_id"), first), pa.scalar(hostile), table.column("trip_id"))
    pq.write_table(table.set_column(table.schema.get_field_index("trip_id"), "trip_id", ids), part)
    profile = write_profile(tmp_path / "csv.yaml", tmp_path / "data", output={"format": "csv", "csv_escape_formulas": True})

    co2_daily(run_date=RUN_DATE, profile=str(profile))

    trips = pacsv.read_csv(tmp_path / "data" / "client" / "output" / day / "trips.csv")
    assert "'" + hostile in trips.column("trip_id").to_pylist()
    assert hostile not in trips.column("trip_id").to_pylist()
    counts = json.loads((tmp_path / "data" / "lake" / "temp" / day / "_phases" / "output.json").read_text())["counts"]
    assert counts["csv_formula_cells"] >= 1
