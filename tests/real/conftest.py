"""Fixtures of the real-day tests: one flow run per public real day, shared by the session.

The real days are read from ``shared/data/real`` beside the repository; without that folder
every test here is skipped with the reason.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.conftest import REAL_DATA, write_profile

REAL_DAYS = {
    "porto": dt.date(2013, 7, 1),
    "liverpool": dt.date(2026, 1, 26),
    "helsinki": dt.date(2021, 8, 17),
    "chicago": dt.date(2007, 3, 13),
}
SKIP_REASON = f"real public data not found at {REAL_DATA}; clone the repository beside shared/ to run these tests"


@dataclass(frozen=True)
class RealRun:
    """Outputs of one flow run on a real day."""

    city: str
    run_date: dt.date
    result: dict[str, Any]
    data_dir: Path

    @property
    def day(self) -> str:
        return f"{self.run_date:%Y%m%d}"

    @property
    def processed(self) -> Path:
        return self.data_dir / "lake" / "processed" / self.day

    @property
    def temp(self) -> Path:
        return self.data_dir / "lake" / "temp" / self.day

    @property
    def output(self) -> Path:
        return self.data_dir / "client" / "output" / self.day

    def summary(self) -> dict[str, Any]:
        return json.loads((self.processed / "summary.json").read_text(encoding="utf-8"))

    def table(self, name: str) -> pd.DataFrame:
        return pq.read_table(self.processed / f"{name}.parquet").to_pandas()


def require_real_data() -> None:
    if not REAL_DATA.is_dir():
        pytest.skip(SKIP_REASON)


@pytest.fixture(scope="session")
def real_runs(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, RealRun]:
    """Run the daily flow once on each real day under Prefect's test harness (about 10 s per day)."""
    require_real_data()
    from flows.daily import co2_daily

    runs: dict[str, RealRun] = {}
    base = tmp_path_factory.mktemp("real")
    for city, run_date in REAL_DAYS.items():
        data_dir = base / city
        data_dir.mkdir()
        storage = {"input": str(REAL_DATA / f"{city}-{{yyyymmdd}}") + "/"}
        language = "ja" if city == "porto" else "en"
        profile = write_profile(base / f"{city}.yaml", data_dir, storage=storage, language=language)
        result = co2_daily(run_date=run_date, profile=str(profile))
        runs[city] = RealRun(city, run_date, result, data_dir)
    return runs
