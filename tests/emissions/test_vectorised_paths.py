"""The vectorised per-piece paths give the results of their row-expanding formulations.

``data/estimate_sample_piece.json`` contains ``estimate_trips`` and ``metrics.breakdown`` of the
first piece of a ``compute.sample`` day (see ``GOLDEN_SPEC``), computed by the formulation that
copied every trip column onto every segment and tachograph interval and grouped the breakdown on
strings. Regenerate it only when a change of the model is meant to change results, with
``LMCO2_WRITE_GOLDEN=1 .venv/bin/python -m pytest tests/emissions/test_vectorised_paths.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sample_piece import PieceInputs, build_piece_inputs

from compute import columns as c
from compute import metrics
from compute.emissions import estimate_trips
from compute.emissions.model import EmissionModel
from compute.emissions.profiles import _grade_at
from compute.sample import SampleSpec

GOLDEN_PATH = Path(__file__).parent / "data" / "estimate_sample_piece.json"
GOLDEN_SPEC = SampleSpec(trips=60, vertices_per_trip=30, grid_cells=24, trips_per_file=1_000, defects=False, tacho_share=0.5)
SEGMENT_COLUMNS = (c.TRIP_ID, c.SEG_INDEX, c.FUEL_L, c.CO2_TTW_KG)
RELATIVE_TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def sample_piece(tmp_path_factory: pytest.TempPathFactory) -> PieceInputs:
    return build_piece_inputs(tmp_path_factory.mktemp("sample_day"), GOLDEN_SPEC)


def _column_values(frame: pd.DataFrame, name: str) -> list[Any]:
    values = frame[name]
    if values.dtype.kind == "f":
        return [None if np.isnan(x) else float(x) for x in values.to_numpy()]
    return [None if x is None or x != x else str(x) for x in values.astype(object)]


def _snapshot(sample_piece: PieceInputs, model: EmissionModel) -> dict[str, dict[str, list[Any]]]:
    result = estimate_trips(sample_piece.segments, sample_piece.trips, sample_piece.vehicles, sample_piece.tacho, model)
    breakdown = metrics.breakdown(result.segments)
    return {
        "trips": {name: _column_values(result.trips, name) for name in result.trips.columns},
        "segments": {name: _column_values(result.segments, name) for name in SEGMENT_COLUMNS},
        "breakdown": {name: _column_values(breakdown, name) for name in breakdown.columns},
    }


def _assert_same_column(expected: list[Any], actual: list[Any], where: str) -> None:
    assert len(actual) == len(expected), f"{where}: {len(actual)} rows, expected {len(expected)}"
    if not any(isinstance(value, float) for value in expected):
        assert actual == expected, f"{where}: values differ"
        return
    want = np.array([np.nan if v is None else v for v in expected], dtype="float64")
    got = np.array([np.nan if v is None else v for v in actual], dtype="float64")
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{where}: missing values differ"
    np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=RELATIVE_TOLERANCE, atol=0.0, err_msg=where)


class TestSamplePieceMatchesGolden:
    def test_sample_piece_covers_tiers(self, sample_piece: PieceInputs, model: EmissionModel) -> None:
        result = estimate_trips(sample_piece.segments, sample_piece.trips, sample_piece.vehicles, sample_piece.tacho, model)
        methods = set(result.trips[c.METHOD])
        assert {"fuel_measured", "tacho_profile", "gps_profile"} <= methods
        assert len(sample_piece.tacho) > 0

    def test_estimate_and_breakdown_match(self, sample_piece: PieceInputs, model: EmissionModel) -> None:
        actual = _snapshot(sample_piece, model)
        if os.environ.get("LMCO2_WRITE_GOLDEN") == "1":
            GOLDEN_PATH.write_text(json.dumps(actual, separators=(",", ":")))
        expected = json.loads(GOLDEN_PATH.read_text())

        assert sorted(actual) == sorted(expected)
        for part, columns in expected.items():
            assert list(actual[part]) == list(columns), f"{part}: columns differ"
            for name, values in columns.items():
                _assert_same_column(values, actual[part][name], f"{part}.{name}")


class TestGradeAt:
    """``_grade_at`` follows a backward ``pandas.merge_asof`` by trip."""

    @staticmethod
    def _merge_asof_grade(start_s: np.ndarray, interval_trip: np.ndarray, segments: pd.DataFrame, trip_ids: list[str], limit: float) -> np.ndarray:
        position = pd.Index(trip_ids).get_indexer(segments[c.TRIP_ID])
        grade = segments[c.LINK_GRADIENT_PCT].astype("float64").fillna(segments[c.GRADE_PCT].astype("float64")).fillna(0.0)
        t = ((segments[c.T_START] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype="float64")
        right = pd.DataFrame({"trip": position, "t": t, "grade": grade.to_numpy()})
        right = right[right["trip"] >= 0].sort_values("t", kind="stable")
        left = pd.DataFrame({"trip": interval_trip, "t": start_s, "order": np.arange(start_s.size)}).sort_values("t", kind="stable")
        joined = pd.merge_asof(left, right, on="t", by="trip", direction="backward").sort_values("order")
        return np.clip(joined["grade"].fillna(0.0).to_numpy(), -limit, limit)

    def test_ties_unknown_trips_and_early_starts(self, model: EmissionModel) -> None:
        start = pd.Timestamp("2026-01-05 00:00:00", tz="UTC")
        trip_ids = ["a", "b", "c"]
        seconds = [0, 10, 10, 20, 5, 5, 15, 0]
        segments = pd.DataFrame(
            {
                # Two segments of "a" and two of "b" start at the same time; "x" is no trip of the frame.
                c.TRIP_ID: pd.Categorical(["a", "a", "a", "a", "b", "b", "b", "x"], categories=["x", "b", "a"]),
                c.T_START: pd.Series([start + pd.Timedelta(seconds=s) for s in seconds], dtype="datetime64[ms, UTC]"),
                c.LINK_GRADIENT_PCT: [1.0, np.nan, 3.0, 4.0, 5.0, 6.0, np.nan, 8.0],
                c.GRADE_PCT: [0.5, 2.0, 0.5, 0.5, 0.5, 0.5, np.nan, 0.5],
            }
        )
        trip_frame = pd.DataFrame({c.TRIP_ID: trip_ids})
        epoch_s = (start - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
        start_s = epoch_s + np.array([-1.0, 0.0, 9.999, 10.0, 25.0, 4.0, 5.0, 30.0, 3.0])
        interval_trip = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2])

        expected = self._merge_asof_grade(start_s, interval_trip, segments, trip_ids, model.settings.max_abs_grade_pct)
        actual = _grade_at(start_s, interval_trip, segments, trip_frame, model)

        np.testing.assert_array_equal(actual, expected)
        assert actual[3] == 3.0  # the last of the two segments that start at 10 s
        assert actual[6] == 6.0
        assert actual[0] == 0.0  # before the first segment of its trip
        assert actual[8] == 0.0  # trip without segments


class TestBreakdownCodes:
    """``metrics.breakdown`` equals a groupby on the category strings."""

    @staticmethod
    def _string_groupby(segments: pd.DataFrame, name: str) -> pd.DataFrame:
        category = metrics.BREAKDOWN_DIMENSIONS[name](segments).astype(object)
        frame = pd.DataFrame(
            {
                c.TRIP_ID: segments[c.TRIP_ID].astype(object).to_numpy(),
                c.CATEGORY: category.where(category.notna(), metrics.UNMATCHED).to_numpy(),
                c.DISTANCE_KM: segments[c.LENGTH_M].to_numpy(dtype="float64") / 1000.0,
                c.CO2_TTW_KG: segments[c.CO2_TTW_KG].to_numpy(dtype="float64"),
            }
        )
        summed = frame.groupby([c.TRIP_ID, c.CATEGORY], sort=True, dropna=False).sum().reset_index()
        summed.insert(1, c.DIMENSION, name)
        return summed

    @pytest.mark.parametrize("categorical", [True, False], ids=["categorical", "object"])
    def test_matches_string_groupby(self, categorical: bool) -> None:
        trip = ["t10", "t2", "t2", "t10", "t2", "t1", "t1"]
        road = ["primary", None, "unmatched", "motorway", "primary", None, "Primary"]
        segments = pd.DataFrame(
            {
                c.TRIP_ID: pd.Categorical(trip, categories=["t2", "t10", "t1", "t9"]) if categorical else pd.Series(trip, dtype=object),
                c.ROAD_CLASS: pd.Categorical(road) if categorical else pd.Series(road, dtype=object),
                c.AREA_TYPE: pd.Categorical([None] * 7, categories=["urban"]) if categorical else pd.Series([None] * 7, dtype=object),
                c.T_START: pd.Series(pd.date_range("2026-01-05 22:30", periods=7, freq="20min", tz="UTC"), dtype="datetime64[ms, UTC]"),
                c.LENGTH_M: [100.0, 250.0, 30.0, 1200.0, 5.0, 77.0, 8.0],
                c.CO2_TTW_KG: [0.01, 0.02, np.nan, 0.3, 0.001, 0.004, 0.002],
            }
        )
        dimensions = (c.ROAD_CLASS, c.AREA_TYPE, "hour_utc")

        actual = metrics.breakdown(segments, dimensions)
        expected = pd.concat([self._string_groupby(segments, name) for name in dimensions], ignore_index=True)
        expected = expected[list(metrics.BREAKDOWN_DTYPES)].astype(metrics.BREAKDOWN_DTYPES)

        pd.testing.assert_frame_equal(actual, expected, check_exact=False, rtol=RELATIVE_TOLERANCE)
        assert list(actual.loc[actual[c.DIMENSION] == c.ROAD_CLASS, c.CATEGORY])[:3] == ["Primary", "unmatched", "motorway"]

    def test_empty_segments(self) -> None:
        segments = pd.DataFrame(
            {
                c.TRIP_ID: pd.Series([], dtype=object),
                c.ROAD_CLASS: pd.Series([], dtype=object),
                c.AREA_TYPE: pd.Series([], dtype=object),
                c.LENGTH_M: pd.Series([], dtype="float64"),
                c.CO2_TTW_KG: pd.Series([], dtype="float64"),
            }
        )
        actual = metrics.breakdown(segments)
        assert actual.empty
        assert list(actual.columns) == list(metrics.BREAKDOWN_DTYPES)
