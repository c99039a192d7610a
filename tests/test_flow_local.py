"""End to end: ``co2_daily`` on the local profile under Prefect's test harness, real LocalCluster."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from compute.sample import SampleSpec, write_sample_day
from compute.storage import Store
from tests.conftest import RUN_DATE, write_profile

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("local-day")
    profile = write_profile(root / "profile.yaml", root / "data")
    input_url = str(root / "data" / "client" / "input" / RUN_DATE.strftime("%Y%m%d"))
    write_sample_day(Store(input_url), RUN_DATE, SampleSpec(trips=150, vertices_per_trip=40, trips_per_file=60))
    output = root / "data" / "client" / "output" / RUN_DATE.strftime("%Y%m%d")
    return {"root": root, "profile": str(profile), "input": Path(input_url), "output": output, "runs": []}


def _run(day: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    from flows.daily import co2_daily

    result = co2_daily(run_date=RUN_DATE, profile=day["profile"], **kwargs)
    day["runs"].append(result)
    return result


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, _sha256(p)) for p in folder.rglob("*") if p.is_file()}


def _input_trip_ids(folder: Path) -> Counter[Any]:
    ids: Counter[Any] = Counter()
    for file in sorted((folder / "trajectories").glob("*.parquet")):
        ids.update(pq.read_table(file, columns=["trip_id"]).column("trip_id").to_pylist())
    return ids


class TestDailyFlowLocal:
    def test_first_run_accounts_for_every_trip(self, day: dict[str, Any]) -> None:
        result = _run(day)

        trips = pq.read_table(day["output"] / "trips.parquet").to_pandas()
        rejects = pq.read_table(day["output"] / "rejects.parquet").to_pandas()
        rejected_ids = rejects.loc[rejects["dataset"] == "trajectories", "row_key"]
        accounted = Counter(trips["trip_id"].tolist()) + Counter(None if pd.isna(k) else k for k in rejected_ids)
        assert accounted == _input_trip_ids(day["input"])
        assert trips["trip_id"].is_unique
        assert result["trips_out"] == len(trips)
        assert result["rejected"]["trajectories"] == len(rejected_ids) == 7
        assert set(rejects.loc[rejects["dataset"] == "trajectories", "reason"]) >= {"key_duplicated", "vehicle_not_in_master", "timestamp_backwards"}

    def test_every_trip_has_fuel_and_co2(self, day: dict[str, Any]) -> None:
        trips = pq.read_table(day["output"] / "trips.parquet").to_pandas()
        burns_fuel = trips["fuel_l"].notna()
        assert (trips.loc[burns_fuel, "fuel_l"] > 0).all()
        assert (trips["co2_ttw_kg"] >= 0).all()
        assert trips["method"].notna().all()
        assert trips["distance_km"].sum() > 0

    def test_summary_counts_trips_without_litres(self, day: dict[str, Any]) -> None:
        trips = pq.read_table(day["output"] / "trips.parquet").to_pandas()
        vehicles = pq.read_table(day["input"] / "vehicles").to_pandas().drop_duplicates("vehicle_id")
        missing = trips[trips["fuel_l"].isna()].merge(vehicles[["vehicle_id", "fuel_type"]], on="vehicle_id", how="left")
        expected = {str(k): int(v) for k, v in missing["fuel_type"].fillna("unmatched").value_counts().items()}
        assert {"cng", "electric"} <= set(expected)
        assert day["runs"][0]["trips_without_fuel_l"] == expected

    def test_manifest_matches_files(self, day: dict[str, Any]) -> None:
        output: Path = day["output"]
        manifest = json.loads((output / "manifest.json").read_text())
        listed = {o["path"]: o for o in manifest["objects"]}
        present = {p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file()} - {"manifest.json", "_SUCCESS"}
        assert set(listed) == present
        for name, record in listed.items():
            assert (output / name).stat().st_size == record["size"], name
            assert _sha256(output / name) == record["sha256"], name
        success = json.loads((output / "_SUCCESS").read_text())
        assert success["manifest_sha256"] == _sha256(output / "manifest.json")

    def test_validate_marker_balances(self, day: dict[str, Any]) -> None:
        marker = day["root"] / "data" / "lake" / "temp" / RUN_DATE.strftime("%Y%m%d") / "_phases" / "validate.json"
        counts = json.loads(marker.read_text())["counts"]["datasets"]
        for dataset, figures in counts.items():
            assert figures["rows_in"] == figures["accepted"] + figures["rejected"], dataset
        assert counts["trajectories"]["rows_in"] == sum(_input_trip_ids(day["input"]).values())

    def test_second_run_is_a_noop(self, day: dict[str, Any]) -> None:
        before = _snapshot(day["output"])
        result = _run(day)
        after = _snapshot(day["output"])
        assert all(phase["skipped"] for phase in result["phases"])
        assert [p["phase"] for p in result["phases"]] == ["fetch", "validate", "compute", "output", "publish"]
        assert after == before
        assert "report/co2_map.png" in after

    def test_force_reproduces_identical_output(self, day: dict[str, Any]) -> None:
        first = pq.read_table(day["output"] / "trips.parquet").to_pandas()
        first_sha = _sha256(day["output"] / "trips.parquet")
        result = _run(day, force=True)
        again = pq.read_table(day["output"] / "trips.parquet").to_pandas()
        assert not any(phase["skipped"] for phase in result["phases"])
        pd.testing.assert_frame_equal(again, first)
        assert _sha256(day["output"] / "trips.parquet") == first_sha

    def test_forced_later_phase_reports_the_earlier_counts(self, day: dict[str, Any]) -> None:
        # The phases before the one forced now made its inputs: the summary keeps their counts.
        first = day["runs"][0]
        result = _run(day, force=True, phases=["output"])
        assert [(p["phase"], p["skipped"]) for p in result["phases"]] == [
            ("fetch", True), ("validate", True), ("compute", True), ("output", False),
        ]
        assert result["rows_in"] == first["rows_in"]
        assert sum(result["rows_in"].values()) > 0
        assert result["rejected"] == first["rejected"]
        assert result["trips_out"] == first["trips_out"]


class TestDailyFlowFailures:
    def test_missing_dataset_fails_before_compute(self, tmp_path: Path, prefect_harness: None) -> None:
        from flows.daily import co2_daily

        profile = write_profile(tmp_path / "profile.yaml", tmp_path / "data")
        input_url = tmp_path / "data" / "client" / "input" / RUN_DATE.strftime("%Y%m%d")
        write_sample_day(Store(str(input_url)), RUN_DATE, SampleSpec(trips=20, vertices_per_trip=10))
        for file in (input_url / "vehicles").iterdir():
            file.unlink()

        state = co2_daily(run_date=RUN_DATE, profile=str(profile), return_state=True)

        assert state.is_failed()
        with pytest.raises(Exception, match="vehicles"):
            state.result()
        temp = tmp_path / "data" / "lake" / "temp" / RUN_DATE.strftime("%Y%m%d")
        assert (temp / "_phases" / "fetch.json").exists()
        assert not (temp / "_phases" / "validate.json").exists()
        assert not (temp / "segments").exists()
