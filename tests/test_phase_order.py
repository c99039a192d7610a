"""A phase runs only on what the phase before it made, and a rerun of a phase makes later ones stale.

Runs ``co2_daily`` under Prefect's test harness on a real LocalCluster and local folders.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from compute.i18n import OperatorError
from compute.phases import UpstreamMissingError
from compute.report import RunSummary, render_text
from compute.sample import SampleSpec, write_sample_day
from compute.storage import Store
from tests.conftest import RUN_DATE, write_profile

pytestmark = pytest.mark.slow

DAY = RUN_DATE.strftime("%Y%m%d")


def _day(root: Path, trips: int = 40) -> dict[str, Path]:
    profile = write_profile(root / "profile.yaml", root / "data")
    input_folder = root / "data" / "client" / "input" / DAY
    write_sample_day(Store(str(input_folder)), RUN_DATE, SampleSpec(trips=trips, vertices_per_trip=12, trips_per_file=20))
    return {
        "profile": profile,
        "input": input_folder,
        "markers": root / "data" / "lake" / "temp" / DAY / "_phases",
        "output": root / "data" / "client" / "output" / DAY,
    }


def _run(day: dict[str, Path], **kwargs: Any) -> Any:
    from flows.daily import co2_daily

    return co2_daily(run_date=RUN_DATE, profile=str(day["profile"]), **kwargs)


def _markers(day: dict[str, Path]) -> set[str]:
    return {p.stem for p in day["markers"].glob("*.json")}


@pytest.mark.parametrize(
    ("ran", "asked", "missing", "suggested"),
    [
        # Nothing ran: every phase before the asked ones, fetch included, since raw/ is empty.
        ((), ("output", "publish"), "compute", "fetch,validate,compute,output,publish"),
        (("fetch",), ("compute",), "validate", "validate,compute"),
        (("fetch",), ("compute", "output"), "validate", "validate,compute,output"),
    ],
)
def test_phase_without_its_input_stops(
    tmp_path: Path, prefect_harness: None, ran: tuple[str, ...], asked: tuple[str, ...], missing: str, suggested: str,
) -> None:
    day = _day(tmp_path)
    if ran:
        _run(day, phases=list(ran))

    state = _run(day, phases=list(asked), return_state=True)

    assert state.is_failed()
    with pytest.raises(UpstreamMissingError) as info:
        state.result()
    assert f"{missing} が完了していません" in info.value.message("ja")
    # The suggested command runs what is missing and every phase that was asked for.
    assert f"--phases {suggested}\n" in info.value.message("en") + "\n"
    assert not (day["output"] / "_SUCCESS").exists()
    assert _markers(day) == set(ran)


def test_validate_before_fetch_names_fetch(tmp_path: Path, prefect_harness: None) -> None:
    # The day was delivered but never fetched: raw/ is empty, and the fix is to fetch first.
    day = _day(tmp_path)

    state = _run(day, phases=["validate", "compute"], return_state=True)

    assert state.is_failed()
    with pytest.raises(OperatorError) as info:
        state.result()
    assert info.value.key == "phases.raw_empty"
    assert "--phases fetch,validate,compute" in info.value.message("ja")
    assert f"raw/{DAY}/" in info.value.message("en")
    assert _markers(day) == set()


def test_forced_earlier_phases_make_later_ones_run_again(tmp_path: Path, prefect_harness: None) -> None:
    day = _day(tmp_path, trips=40)
    first = _run(day)
    assert _markers(day) == {"fetch", "validate", "compute", "output", "publish"}
    delivered_before = pq.read_table(day["output"] / "trips.parquet").num_rows

    # A new delivery, rebuilt up to compute only: the old output and publish no longer match it.
    shutil.rmtree(day["input"])
    write_sample_day(Store(str(day["input"])), RUN_DATE, SampleSpec(trips=70, vertices_per_trip=12, trips_per_file=20))
    partial = _run(day, phases=["fetch", "validate", "compute"], force=True)
    assert _markers(day) == {"fetch", "validate", "compute"}
    assert partial["trips_out"] > first["trips_out"]
    # The summary reports that the client still has the earlier figures, and how to deliver the new ones.
    assert partial["delivery"]["status"] == "outdated"
    text = render_text(RunSummary.from_dict(partial), "ja")
    assert "前回の納品" in text
    assert "lm-co2 run --date 2026-12-01" in text

    again = _run(day)
    ran = {p["phase"]: p["skipped"] for p in again["phases"]}
    assert ran == {"fetch": True, "validate": True, "compute": True, "output": False, "publish": False}
    assert again["delivery"] is None
    delivered = pq.read_table(day["output"] / "trips.parquet").num_rows
    assert delivered == again["trips_out"] == partial["trips_out"] > delivered_before
    assert json.loads((day["output"] / "summary.json").read_text(encoding="utf-8"))["rows"]["trips"] == delivered


def test_skipped_fetch_reports_a_vanished_input(tmp_path: Path, prefect_harness: None) -> None:
    day = _day(tmp_path)
    _run(day)
    shutil.move(str(day["input"]), str(tmp_path / "moved-away"))

    summary = _run(day)

    assert all(p["skipped"] for p in summary["phases"])
    assert summary["input_check"]["status"] == "input_absent"


def test_litres_note_counts_come_from_compute(tmp_path: Path, prefect_harness: None) -> None:
    """The trips left out of the litres total are counted by compute already, the same way the
    report counts them after output."""
    day = _day(tmp_path, trips=60)
    partial = _run(day, phases=["fetch", "validate", "compute"])
    full = _run(day)

    assert partial["trips_without_fuel_l"] == full["trips_without_fuel_l"]
    assert sum(partial["trips_without_fuel_l"].values()) > 0
    trips = pq.read_table(day["output"] / "trips.parquet").to_pandas()
    assert sum(full["trips_without_fuel_l"].values()) == int(trips["fuel_l"].isna().sum())


def test_new_output_format_removes_the_old_files(tmp_path: Path, prefect_harness: None) -> None:
    """The local output allows deleting, so files of the earlier format go; the write-only case is in tests/production."""
    day = _day(tmp_path, trips=20)
    _run(day)
    assert (day["output"] / "trips.parquet").exists()

    as_csv = write_profile(tmp_path / "csv.yaml", tmp_path / "data", output={"format": "csv"})
    from flows.daily import co2_daily

    summary = co2_daily(run_date=RUN_DATE, profile=str(as_csv), phases=["output", "publish"], force=True)

    files = {p.relative_to(day["output"]).as_posix() for p in day["output"].rglob("*") if p.is_file()}
    assert not any(name.endswith(".parquet") for name in files), files
    assert {"trips.csv", "breakdown.csv", "rejects.csv", "manifest.json", "_SUCCESS"} <= files
    manifest = json.loads((day["output"] / "manifest.json").read_text(encoding="utf-8"))
    assert {o["path"] for o in manifest["objects"]} == files - {"manifest.json", "_SUCCESS"}
    assert "withdrawn" not in manifest
    assert summary["delivery"] is None
