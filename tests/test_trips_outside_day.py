"""Trips that start on another date than the run date are counted and named in a day warning.

The flow test runs ``co2_daily`` under Prefect's test harness on a real LocalCluster and local folders.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from compute import plausibility
from compute.sample import SampleSpec, write_sample_day
from compute.storage import Store
from tests.conftest import RUN_DATE, write_profile

DAY = RUN_DATE.strftime("%Y%m%d")
SHIFT_MS = 11 * 86_400_000


def _shifted(table: pa.Table) -> pa.Table:
    """Move every time of ``table`` 11 days earlier."""
    for name in ("start_time", "end_time"):
        index = table.column_names.index(name)
        moved = pc.subtract(table.column(name).cast(pa.int64()), SHIFT_MS).cast(table.schema.field(name).type)
        table = table.set_column(index, name, moved)
    index = table.column_names.index("timestamps")
    timestamps = table.column("timestamps").combine_chunks()
    values = pc.subtract(timestamps.values.cast(pa.int64()), SHIFT_MS).cast(timestamps.type.value_type)
    return table.set_column(index, "timestamps", pa.ListArray.from_arrays(timestamps.offsets, values))


@pytest.mark.slow
def test_trips_of_another_day_warned(tmp_path: Path, prefect_harness: None) -> None:
    from flows.daily import co2_daily

    profile = write_profile(tmp_path / "profile.yaml", tmp_path / "data")
    input_folder = tmp_path / "data" / "client" / "input" / DAY
    write_sample_day(Store(str(input_folder)), RUN_DATE, SampleSpec(trips=20, vertices_per_trip=12, trips_per_file=10))
    moved_file = input_folder / "trajectories" / "part-00001.parquet"
    moved = _shifted(pq.read_table(moved_file))
    pq.write_table(moved, moved_file)

    co2_daily(run_date=RUN_DATE, profile=str(profile))

    summary = json.loads((tmp_path / "data" / "client" / "output" / DAY / "summary.json").read_text())
    assert summary["warnings"]["counts"].get("trips_outside_day") == 1
    item = next(i for i in summary["warnings"]["items"] if i["code"] == "trips_outside_day")
    shifted_day = (pd.Timestamp(RUN_DATE) - pd.Timedelta(days=11)).date().isoformat()
    assert 1 <= item["fields"]["outside"] <= moved.num_rows
    assert item["fields"]["dates"].startswith(f"{shifted_day} (")
    assert item["fields"]["day"] == RUN_DATE.isoformat()
    assert item["fields"]["timezone"] == "Asia/Tokyo"


def test_warning_text_in_both_languages() -> None:
    facts = plausibility.DayFacts(trips_outside_day=3, outside_day_dates="2026-11-20 (2), 2027-06-01 (1)", run_day="2026-12-01",
                                  timezone="Asia/Tokyo")
    warnings = plausibility.check_day(pd.DataFrame({"trip_id": ["a"]}), pd.DataFrame(), facts)
    found = [w for w in warnings if w.code == "trips_outside_day"]
    assert len(found) == 1
    assert "3 件" in found[0].text("ja")
    assert "2026-12-01（Asia/Tokyo）" in found[0].text("ja")
    assert "3 accepted trips start on a date other than the run date 2026-12-01 (Asia/Tokyo): 2026-11-20 (2), 2027-06-01 (1)." in found[0].text("en")


def test_no_warning_for_trips_of_the_day() -> None:
    facts = plausibility.DayFacts(trips_outside_day=0, run_day="2026-12-01", timezone="Asia/Tokyo")
    warnings = plausibility.check_day(pd.DataFrame({"trip_id": ["a"]}), pd.DataFrame(), facts)
    assert all(w.code != "trips_outside_day" for w in warnings)
