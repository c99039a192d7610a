"""A day whose every trip is rejected still delivers trips and breakdown files with their full columns.

Runs ``co2_daily`` under Prefect's test harness on a real LocalCluster and local folders.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from compute import pipeline
from compute.sample import SampleSpec, write_sample_day
from compute.storage import Store
from tests.conftest import RUN_DATE, write_profile

pytestmark = pytest.mark.slow

DAY = RUN_DATE.strftime("%Y%m%d")


def _deliver(root: Path) -> tuple[Path, Path]:
    root.mkdir()
    profile = write_profile(root / "profile.yaml", root / "data")
    input_folder = root / "data" / "client" / "input" / DAY
    write_sample_day(Store(str(input_folder)), RUN_DATE, SampleSpec(trips=20, vertices_per_trip=12, trips_per_file=20))
    return profile, root / "data" / "client" / "output" / DAY


def _schema(path: Path) -> list[tuple[str, str]]:
    return [(field.name, str(field.type)) for field in pq.read_schema(path)]


def test_all_trips_rejected_keeps_columns(tmp_path: Path, prefect_harness: None) -> None:
    from flows.daily import co2_daily

    normal_profile, normal_output = _deliver(tmp_path / "normal")
    co2_daily(run_date=RUN_DATE, profile=str(normal_profile))

    empty_profile, empty_output = _deliver(tmp_path / "empty")
    # Every trajectories file delivered twice with another vehicle id: every trip id repeats with
    # differing content, so every trip is rejected (identical copies would keep one).
    trajectories = empty_profile.parent / "data" / "client" / "input" / DAY / "trajectories"
    originals = sorted(trajectories.glob("*.parquet"))
    assert originals
    for original in originals:
        table = pq.read_table(original)
        column = table.schema.get_field_index("vehicle_id")
        other = pc.binary_join_element_wise(table.column("vehicle_id"), pa.scalar("-copy", table.schema.field(column).type), "")
        pq.write_table(table.set_column(column, "vehicle_id", other), trajectories / f"copy-{original.name}")
    co2_daily(run_date=RUN_DATE, profile=str(empty_profile))

    assert pq.read_metadata(empty_output / "trips.parquet").num_rows == 0
    assert pq.read_metadata(normal_output / "trips.parquet").num_rows > 0
    for name in ("trips.parquet", "breakdown.parquet"):
        assert _schema(empty_output / name) == _schema(normal_output / name), name
    assert (empty_output / "_SUCCESS").exists()


def test_empty_result_tables_match_declared_columns() -> None:
    trips = pipeline.empty_result_table(pipeline.TRIPS)
    assert trips.num_rows == 0
    assert trips.column_names == list(pipeline.TRIPS_FILE_DTYPES)
    assert pa.types.is_large_string(trips.schema.field("trip_id").type)
    assert trips.schema.field("co2_ttw_kg").type == "double"
    breakdown = pipeline.empty_result_table(pipeline.BREAKDOWN)
    assert breakdown.column_names == ["trip_id", "dimension", "category", "distance_km", "co2_ttw_kg"]
