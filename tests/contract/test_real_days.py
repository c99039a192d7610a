"""The real public days: every dataset conforms, the balance holds, and known defects show up."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from compute.contract import (
    DATASETS,
    ContractSettings,
    ValidationContext,
    ValidationSummary,
    check_balance,
    conform_table,
    find_duplicate_keys,
    render_report,
    to_frame,
    validate_rows,
)

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"  # ../shared next to the clone
DAYS = sorted(p.name for p in REAL.iterdir()) if REAL.is_dir() else []

pytestmark = pytest.mark.skipif(not DAYS, reason=f"real days not found under {REAL}")


def _validate_day(day: Path) -> tuple[ValidationSummary, pd.DataFrame]:
    settings = ContractSettings()
    summary = ValidationSummary()
    frames = {ds: to_frame(ds, conform_table(ds, pq.read_table(day / ds), settings)) for ds in DATASETS}
    vehicles, vehicle_rejects = validate_rows("vehicles", frames["vehicles"], ValidationContext(settings=settings))
    rejects = [vehicle_rejects]
    summary.record("vehicles", len(frames["vehicles"]), vehicles, vehicle_rejects)
    for dataset in ("trajectories", "tachometer", "geo_attributes"):
        context = ValidationContext(
            known_vehicle_ids=vehicles["vehicle_id"].to_numpy(),
            duplicated_keys={dataset: find_duplicate_keys(dataset, [frames[dataset]])},
            settings=settings,
        )
        accepted, rejected = validate_rows(dataset, frames[dataset], context)
        summary.record(dataset, len(frames[dataset]), accepted, rejected)
        rejects.append(rejected)
    return summary, pd.concat(rejects, ignore_index=True)


@pytest.mark.parametrize("day", DAYS)
def test_real_day_balances(day):
    summary, rejects = _validate_day(REAL / day)
    check_balance(summary)
    for lang in ("ja", "en"):
        assert render_report(summary, lang, rejects).startswith("# ")
    # No real day has a dataset-level problem or a broken key.
    assert summary.ok
    assert not rejects["reason"].isin(["key_missing", "key_duplicated", "vehicle_not_in_master"]).any()


@pytest.mark.skipif("porto-20130701" not in DAYS, reason="porto day not present")
def test_porto_gps_jumps_rejected():
    summary, _rejects = _validate_day(REAL / "porto-20130701")
    trips = summary.datasets["trajectories"]
    assert trips.rows_in == 991
    assert set(trips.by_reason) == {"speed_implausible"}
    assert 0 < trips.rejected < 0.1 * trips.rows_in


@pytest.mark.skipif("helsinki-20210817" not in DAYS, reason="helsinki day not present")
def test_helsinki_land_use_area_types_flagged_not_rejected():
    summary, _rejects = _validate_day(REAL / "helsinki-20210817")
    geo = summary.datasets["geo_attributes"]
    assert geo.flags["area_type_unknown"] > 0
    assert geo.flags["geometry_repaired"] > 0
    assert set(geo.by_reason) <= {"geometry_invalid"}
