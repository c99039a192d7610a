"""Hostile days through the validate phase and the whole daily flow.

Dataset-level failures happen before the validate phase touches the cluster, so those tests
call ``phases.validate`` with no Dask client on files placed in ``raw/``. Two days run the whole
flow under Prefect's test harness: a day whose files have no rows, and a day of hostile rows.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import hostile_days as days
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from compute import phases
from compute.contract import ContractError, ErrorCode
from compute.settings import load_settings
from tests.conftest import RUN_DATE, write_profile

YYYYMMDD = RUN_DATE.strftime("%Y%m%d")


def _raw_day(root: Path, tables: dict[str, pa.Table]) -> phases.DailyRun:
    profile = write_profile(root / "profile.yaml", root / "data")
    days.write_day(root / "data" / "lake" / "raw" / YYYYMMDD, tables)
    return phases.DailyRun.create(load_settings(profile), RUN_DATE, force=True)


class TestValidatePhaseStops:
    def test_duplicate_column(self, tmp_path: Path) -> None:
        day = days.good_day()
        trips = day["trajectories"]
        day["trajectories"] = pa.Table.from_arrays(
            [*trips.columns, trips.column("vehicle_id")], names=[*trips.column_names, "vehicle_id"]
        ).replace_schema_metadata(trips.schema.metadata)
        run = _raw_day(tmp_path, day)
        with pytest.raises(ContractError) as info:
            phases.validate(run, client=None)  # type: ignore[arg-type]
        assert info.value.code is ErrorCode.COLUMN_DUPLICATED
        assert (info.value.dataset, info.value.column) == ("trajectories", "vehicle_id")

    def test_truncated_parquet(self, tmp_path: Path) -> None:
        run = _raw_day(tmp_path, days.good_day())
        folder = tmp_path / "data" / "lake" / "raw" / YYYYMMDD / "tachometer"
        good = (folder / "part-0.parquet").read_bytes()
        (folder / "part-1.parquet").write_bytes(good[: len(good) // 2])
        with pytest.raises(ContractError) as info:
            phases.validate(run, client=None)  # type: ignore[arg-type]
        assert info.value.code is ErrorCode.FILE_UNREADABLE
        assert "tachometer/part-1.parquet" in info.value.actual

    def test_every_missing_dataset_named(self, tmp_path: Path) -> None:
        day = days.good_day()
        run = _raw_day(tmp_path, {"vehicles": day["vehicles"], "geo_attributes": day["geo_attributes"]})
        with pytest.raises(ContractError) as info:
            phases.validate(run, client=None)  # type: ignore[arg-type]
        assert info.value.code is ErrorCode.DATASET_MISSING
        assert info.value.dataset == "trajectories, tachometer"
        for lang, separator in (("ja", "、"), ("en", ", ")):
            text = info.value.message(lang)
            assert f"trajectories{separator}tachometer" in text
            assert f"{YYYYMMDD}/trajectories/*.parquet" in text
            assert f"{YYYYMMDD}/tachometer/*.parquet" in text


def _hostile_rows_day() -> dict[str, pa.Table]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        nan_x = shapely.LineString([(139.70, 35.68), (np.nan, 35.68), (139.702, 35.68)])
    nan_z = shapely.LineString([(139.70, 35.68, np.nan), (139.701, 35.68, np.nan), (139.702, 35.68, 3.0)])
    inf_z = shapely.LineString([(139.70, 35.68, 1.0), (139.701, 35.68, np.inf), (139.702, 35.68, 3.0)])
    long_line = shapely.LineString(np.c_[139.7 + np.arange(2000) * 1e-4, np.full(2000, 35.68)])
    trips = days.trajectories(
        [days.LINE, nan_z, inf_z, nan_x, shapely.MultiLineString([days.LINE.coords]), b"garbage", long_line, days.LINE, days.LINE],
        trip_ids=["ok", "nan-z", "inf-z", "nan-x", "multi", "garbage", "long", "トリップ", "ghost"],
        vehicle_ids=["V1"] * 8 + ["GHOST"],
    )
    tacho = days.tachometer(
        [
            {"s": 2, "speed": 10.0, "fuel": 1.0},
            {"s": 1, "speed": 10.0, "fuel": 1.0},
            {"s": 3, "speed": -1.0},
            {"s": 4, "speed": 10.0, "fuel": float("nan")},
            {"s": 5, "speed": 10.0, "vehicle_id": "GHOST"},
        ]
    )
    geo = days.geo_attributes(
        [
            ("over-1", days.AREA, {"area_type": "urban"}),
            ("over-2", days.AREA, {"area_type": "rural"}),
            ("point", shapely.Point(139.7, 35.68), {}),
            ("link", days.LINK, {"road_class": "primary", "speed_limit_kmh": 50.0}),
        ]
    )
    return {"trajectories": trips, "vehicles": days.vehicles(), "tachometer": tacho, "geo_attributes": geo}


@pytest.mark.slow
class TestDailyFlowHostile:
    def _run(self, root: Path, tables: dict[str, pa.Table]) -> tuple[dict[str, Any], Path]:
        from flows.daily import co2_daily

        profile = write_profile(root / "profile.yaml", root / "data")
        days.write_day(root / "data" / "client" / "input" / YYYYMMDD, tables)
        result = co2_daily(run_date=RUN_DATE, profile=str(profile))
        return result, root / "data" / "client" / "output" / YYYYMMDD

    def test_day_of_empty_files(self, tmp_path: Path, prefect_harness: None) -> None:
        empty = {dataset: table.slice(0, 0) for dataset, table in days.good_day().items()}
        result, output = self._run(tmp_path, empty)
        assert result["trips_out"] == 0
        assert pq.read_table(output / "trips.parquet").num_rows == 0
        assert pq.read_table(output / "rejects.parquet").num_rows == 0
        assert (output / "_SUCCESS").exists()

    def test_day_of_hostile_rows(self, tmp_path: Path, prefect_harness: None) -> None:
        result, output = self._run(tmp_path, _hostile_rows_day())
        trips = pq.read_table(output / "trips.parquet").to_pandas()
        rejects = pq.read_table(output / "rejects.parquet").to_pandas()
        trip_rows = rejects.loc[rejects["dataset"] == "trajectories"]
        trip_rejects = dict(zip(trip_rows["row_key"], trip_rows["reason"], strict=True))
        assert trip_rejects == {
            "inf-z": "geometry_invalid",
            "nan-x": "geometry_invalid",
            "multi": "geometry_wrong_type",
            "garbage": "geometry_unreadable",
            "ghost": "vehicle_not_in_master",
        }
        assert sorted(trips["trip_id"]) == sorted(["ok", "nan-z", "long", "トリップ"])
        assert result["trips_out"] == 4
        assert np.isfinite(trips["co2_ttw_kg"]).all()
        # Overlapping areas give each segment one area, so no trip is counted twice.
        assert trips["trip_id"].is_unique

        validated = json.loads((tmp_path / "data" / "lake" / "temp" / YYYYMMDD / "_phases" / "validate.json").read_text())
        counts = validated["counts"]["datasets"]
        for dataset, rows_in in (("trajectories", 9), ("tachometer", 5), ("geo_attributes", 4), ("vehicles", 2)):
            assert counts[dataset]["rows_in"] == rows_in
            assert counts[dataset]["rows_in"] == counts[dataset]["accepted"] + counts[dataset]["rejected"]
