"""Reruns against a changed or missing delivery, and sample days written over older ones."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from compute import phases
from compute.sample import SampleSpec, write_sample_day
from compute.settings import load_settings
from compute.storage import DeliveryError, Store
from tests.conftest import RUN_DATE, write_profile


def _run(tmp_path: Path, **kwargs: object) -> phases.DailyRun:
    profile = write_profile(tmp_path / "profile.yaml", tmp_path / "data")
    return phases.DailyRun.create(load_settings(str(profile)), RUN_DATE, **kwargs)  # type: ignore[arg-type]


def _input(tmp_path: Path) -> Path:
    return tmp_path / "data" / "client" / "input" / RUN_DATE.strftime("%Y%m%d")


class TestFetchGuards:
    def test_missing_delivery_explains_itself(self, tmp_path: Path) -> None:
        with pytest.raises(DeliveryError) as info:
            phases.fetch(_run(tmp_path))
        assert info.value.code == "delivery_missing"
        assert "2026-12-01" in info.value.message("ja")
        assert "納品が見つかりません" in info.value.message("ja")
        assert "No delivery found" in str(info.value)

    def test_changed_input_is_not_skipped(self, tmp_path: Path) -> None:
        write_sample_day(Store(str(_input(tmp_path))), RUN_DATE, SampleSpec(trips=12, vertices_per_trip=6))
        first = phases.fetch(_run(tmp_path))
        assert not first.skipped

        assert phases.fetch(_run(tmp_path)).skipped
        write_sample_day(Store(str(_input(tmp_path))), RUN_DATE, SampleSpec(trips=30, vertices_per_trip=6))
        with pytest.raises(DeliveryError, match="--force") as info:
            phases.fetch(_run(tmp_path))
        assert info.value.code == "input_changed"
        assert not phases.fetch(_run(tmp_path, force=True)).skipped


class TestSampleOverwrite:
    def test_smaller_day_replaces_larger(self, tmp_path: Path) -> None:
        store = Store(str(tmp_path / "day"))
        write_sample_day(store, dt.date(2026, 12, 1), SampleSpec(trips=40, vertices_per_trip=4, trips_per_file=15))
        assert len(store.list("trajectories")) == 4
        write_sample_day(store, dt.date(2026, 12, 1), SampleSpec(trips=10, vertices_per_trip=4, trips_per_file=15))
        assert sorted(store.list("trajectories")) == ["trajectories/part-00000.parquet", "trajectories/part-defects.parquet"]


@pytest.mark.slow
def test_missing_delivery_is_not_retried(tmp_path: Path, prefect_harness: None) -> None:
    from flows.daily import co2_daily

    profile = write_profile(tmp_path / "profile.yaml", tmp_path / "data")
    started = time.monotonic()
    state = co2_daily(run_date=RUN_DATE, profile=str(profile), return_state=True)
    assert state.is_failed()
    with pytest.raises(DeliveryError):
        state.result()
    assert time.monotonic() - started < 60  # no 10 s retry delay on top of the failure; generous bound
