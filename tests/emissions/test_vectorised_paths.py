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
from compute import metrics, pipeline
from compute.emissions import estimate_trips, flags, profiles, resolve_vehicles
from compute.emissions import model as model_module
from compute.emissions.model import EmissionModel, resolve_trip_vehicles
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

    @pytest.mark.parametrize("dense", [True, False], ids=["dense-keys", "sorted-keys"])
    @pytest.mark.parametrize("categorical", [True, False], ids=["categorical", "object"])
    def test_matches_string_groupby(self, categorical: bool, dense: bool, monkeypatch: pytest.MonkeyPatch) -> None:
        if not dense:
            monkeypatch.setattr(metrics, "_DENSE_KEYS_MIN", -(1 << 40))
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

    def test_dense_and_sorted_keys_agree(self, monkeypatch: pytest.MonkeyPatch) -> None:
        rng = np.random.default_rng(7)
        n = 20_000
        trips = np.sort(rng.integers(0, 900, n))
        road = rng.choice(np.array(["motorway", "primary", "residential", None], dtype=object), n)
        area = rng.choice(np.array(["urban", "rural", None], dtype=object), n)
        segments = pd.DataFrame(
            {
                c.TRIP_ID: pd.Categorical([f"trip-{t:04d}" for t in trips]),
                c.ROAD_CLASS: pd.Series(road, dtype=object),
                c.AREA_TYPE: pd.Categorical(area),
                c.LENGTH_M: np.where(rng.random(n) < 0.01, np.nan, rng.uniform(0.0, 80.0, n)),
                c.CO2_TTW_KG: rng.uniform(0.0, 0.02, n),
            }
        )
        dense = metrics.breakdown(segments)
        monkeypatch.setattr(metrics, "_DENSE_KEYS_MIN", -(1 << 40))
        by_sort = metrics.breakdown(segments)
        pd.testing.assert_frame_equal(dense, by_sort, check_exact=True)
        expected = pd.concat([self._string_groupby(segments, name) for name in metrics.DEFAULT_DIMENSIONS], ignore_index=True)
        expected = expected[list(metrics.BREAKDOWN_DTYPES)].astype(metrics.BREAKDOWN_DTYPES)
        pd.testing.assert_frame_equal(dense, expected, check_exact=False, rtol=RELATIVE_TOLERANCE)

    def test_hour_of_a_missing_start_is_unmatched(self) -> None:
        segments = pd.DataFrame(
            {
                c.TRIP_ID: ["t1", "t1", "t2"],
                c.T_START: pd.Series(pd.to_datetime(["2026-01-05 22:30", None, "2026-01-05 03:00"], utc=True), dtype="datetime64[ms, UTC]"),
                c.LENGTH_M: [100.0, 50.0, 20.0],
                c.CO2_TTW_KG: [0.01, 0.02, 0.03],
            }
        )
        actual = metrics.breakdown(segments, ("hour_utc",))
        assert list(actual[c.CATEGORY]) == ["22", metrics.UNMATCHED, "03"]
        assert list(actual[c.DISTANCE_KM]) == [0.1, 0.05, 0.02]

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


class TestMatchedShare:
    """``metrics.add_matched_share`` equals the share computed with a pandas groupby."""

    @pytest.mark.parametrize("categorical", [True, False], ids=["categorical", "object"])
    def test_matches_groupby(self, categorical: bool) -> None:
        rng = np.random.default_rng(11)
        n = 5_000
        trip = np.array([f"t{t:03d}" for t in np.sort(rng.integers(0, 300, n))], dtype=object)
        length = np.where(rng.random(n) < 0.02, np.nan, rng.uniform(0.0, 50.0, n))
        length[trip == trip[0]] = 0.0  # a trip without length
        segments = pd.DataFrame(
            {
                c.TRIP_ID: pd.Categorical(trip) if categorical else pd.Series(trip, dtype=object),
                c.LENGTH_M: length,
                c.MATCHED: rng.random(n) < 0.7,
            }
        )
        trips = pd.DataFrame({c.TRIP_ID: np.r_[np.unique(trip)[::-1], ["no-segments"]].astype(object), "x": 1.0})

        actual = metrics.add_matched_share(trips, segments)

        frame = pd.DataFrame({c.TRIP_ID: trip, "length": length, "on_link": np.where(segments[c.MATCHED], length, 0.0)})
        sums = frame.groupby(c.TRIP_ID).sum()
        expected = (sums["on_link"] / sums["length"].where(sums["length"] > 0)).reindex(trips[c.TRIP_ID]).to_numpy()
        assert list(actual.columns) == [c.TRIP_ID, "x", c.MATCHED_SHARE]
        np.testing.assert_allclose(actual[c.MATCHED_SHARE].to_numpy(), expected, rtol=1e-12)
        assert np.isnan(actual[c.MATCHED_SHARE].iloc[-1])  # no segments
        assert np.isnan(actual.set_index(c.TRIP_ID).loc[trip[0], c.MATCHED_SHARE])  # no length
        assert actual[c.MATCHED_SHARE].notna().sum() == len(trips) - 2


class TestJoinFlags:
    """``flags.join_flags`` joins the codes of each row in ``QUALITY_FLAGS`` order."""

    def test_matches_row_by_row_join(self) -> None:
        rng = np.random.default_rng(21)
        n = 3_000
        codes = list(flags.QUALITY_FLAGS)
        masks = {code: rng.random(n) < 0.2 for code in codes[::2]}
        masks[codes[1]] = np.bool_(True)  # a scalar applies to every row
        got = flags.join_flags(masks, n)
        expected = [";".join(code for code in codes if code in masks and bool(np.broadcast_to(masks[code], (n,))[row])) for row in range(n)]
        assert list(got) == expected
        assert got.dtype == object
        assert "" not in set(got)

    def test_no_flags_and_no_rows(self) -> None:
        assert list(flags.join_flags({next(iter(flags.QUALITY_FLAGS)): np.zeros(3, bool)}, 3)) == ["", "", ""]
        assert len(flags.join_flags({}, 0)) == 0

    def test_undocumented_code_raises(self) -> None:
        with pytest.raises(KeyError, match="not documented"):
            flags.join_flags({"made_up_code": np.ones(2, bool)}, 2)


class TestSegmentShares:
    """``profiles.segment_shares`` gives the shares of the bincount formulation it replaced."""

    @staticmethod
    def _reference(position: np.ndarray, timed: np.ndarray, physics: np.ndarray, distance: np.ndarray,
                   duration: np.ndarray, length: np.ndarray, n_trips: int) -> np.ndarray:
        valid = position >= 0
        safe = np.where(valid, position, 0)
        weight = np.where(valid, np.where(timed[safe], physics, distance), 0.0)
        for fallback in (duration, length, np.ones(len(position))):
            totals = np.bincount(safe, weights=weight, minlength=n_trips)
            weight = np.where(~(totals[safe] > 0) & valid, fallback, weight)
        totals = np.bincount(safe, weights=weight, minlength=n_trips)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(valid, weight / totals[safe], np.nan)

    def test_matches_bincount_formulation(self) -> None:
        rng = np.random.default_rng(31)
        n_trips, n = 200, 6_000
        position = np.sort(rng.integers(-1, n_trips, n))
        timed = rng.random(n_trips) < 0.5
        physics = rng.uniform(0.0, 0.01, n)
        distance = rng.uniform(0.0, 0.01, n)
        duration = rng.uniform(0.0, 10.0, n)
        length = rng.uniform(0.0, 50.0, n)
        for trip, spoil in ((3, "zero"), (4, "nan"), (5, "zero-duration"), (6, "all-zero")):
            rows = position == trip
            physics[rows] = distance[rows] = 0.0 if spoil != "nan" else np.nan
            if spoil in ("zero-duration", "all-zero"):
                duration[rows] = 0.0
            if spoil == "all-zero":
                length[rows] = 0.0

        got = profiles.segment_shares(position, timed, physics, distance, duration, length, n_trips)

        expected = self._reference(position, timed, physics, distance, duration, length, n_trips)
        np.testing.assert_allclose(got, expected, rtol=0, atol=0, equal_nan=True)
        assert np.isnan(got[position < 0]).all()
        sums = np.bincount(position[position >= 0], weights=got[position >= 0], minlength=n_trips)
        present = np.bincount(position[position >= 0], minlength=n_trips) > 0
        np.testing.assert_allclose(sums[present], 1.0, rtol=1e-12)

    def test_no_trips(self) -> None:
        got = profiles.segment_shares(np.full(3, -1), np.zeros(0, bool), np.ones(3), np.ones(3), np.ones(3), np.ones(3), 0)
        assert np.isnan(got).all()

    def test_spread_matches_gather_and_multiply(self) -> None:
        rng = np.random.default_rng(33)
        position = np.sort(rng.integers(-1, 50, 2_000))
        share = rng.uniform(0.0, 1.0, 2_000)
        trip_values = rng.uniform(0.0, 9.0, (4, 50))
        trip_values[2, ::3] = np.nan

        got = profiles.spread_to_segments(share, position, trip_values)

        expected = share * trip_values[:, np.maximum(position, 0)]
        expected[:, position < 0] = np.nan
        np.testing.assert_array_equal(got, expected)
        assert got.shape == (4, 2_000)


class TestGroupMedian:
    """``profiles._group_median`` gives the medians of a pandas groupby, in both of its paths."""

    @staticmethod
    def _reference(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
        return pd.Series(values).groupby(groups).median().reindex(range(n_groups)).to_numpy(dtype="float64")

    @pytest.mark.parametrize("ordered", [True, False])
    def test_matches_pandas_groupby(self, ordered: bool) -> None:
        rng = np.random.default_rng(7)
        n_groups, n = 300, 9_000
        groups = rng.integers(0, n_groups, n)
        groups[groups == 11] = 12  # group 11 has no value at all
        values = np.round(rng.uniform(0.5, 4.0, n), 1)  # many ties, odd and even counts
        values[groups == 20] = np.nan  # a group of NaN only
        values[rng.random(n) < 0.05] = np.nan
        if ordered:
            order = np.argsort(groups, kind="stable")
            groups, values = groups[order], values[order]

        got = profiles._group_median(groups, values, n_groups)

        expected = self._reference(groups, values, n_groups)
        np.testing.assert_array_equal(got, expected)
        assert np.isnan(got[[11, 20]]).all()
        assert np.isfinite(got[[0, 1, 2]]).all()

    def test_even_count_averages_the_middle_values(self) -> None:
        got = profiles._group_median(np.array([0, 0, 0, 0, 1]), np.array([4.0, 1.0, 3.0, 2.0, 5.0]), 3)
        np.testing.assert_array_equal(got, [2.5, 5.0, np.nan])

    def test_no_values(self) -> None:
        assert np.isnan(profiles._group_median(np.zeros(0, np.int64), np.zeros(0), 2)).all()


class TestSortedCheck:
    @pytest.mark.parametrize(
        ("position", "seconds", "expected"),
        [
            ([0, 0, 1, 1], [5.0, 6.0, 1.0, 1.0], True),
            ([0, 0, 1, 1], [6.0, 5.0, 1.0, 2.0], False),
            ([1, 0], [0.0, 9.0], False),
            ([0, 0], [np.nan, 1.0], False),
            ([0, 1], [np.nan, 1.0], True),
            ([], [], True),
        ],
    )
    def test_trip_then_time_order(self, position: list[int], seconds: list[float], expected: bool) -> None:
        assert profiles._is_sorted_by_trip_and_time(np.array(position, dtype=np.int64), np.array(seconds)) is expected


class TestResolvedVehicles:
    """Resolving the master once and attaching it per trip gives the frame of one merge per trip."""

    @staticmethod
    def _merge_formulation(trips: pd.DataFrame, vehicles: pd.DataFrame, model: EmissionModel) -> pd.DataFrame:
        """The per-trip formulation that the two stages replaced: master and parameters merged
        onto the trips, then the load, gap, distance fuel and calibration columns."""
        settings = model.settings
        columns = [c.VEHICLE_ID, c.VEHICLE_CLASS, c.FUEL_TYPE, c.CATALOG_FE, c.TEST_CYCLE, c.MAX_PAYLOAD_KG]
        master = vehicles[columns].drop_duplicates(c.VEHICLE_ID, keep="first")
        frame = trips.reset_index(drop=True).merge(master, on=c.VEHICLE_ID, how="left")
        frame = frame.merge(model.vehicle_params, on=[c.VEHICLE_CLASS, c.FUEL_TYPE], how="left")
        frame["vehicle_found"] = frame["empty_mass_kg"].notna()

        load_kg = frame[c.LOAD_KG].astype("float64")
        payload_known = frame[c.MAX_PAYLOAD_KG].astype("float64") > 0
        frame["payload_kg"] = frame[c.MAX_PAYLOAD_KG].astype("float64").where(payload_known, frame["default_max_payload_kg"])
        frame["mass_kg"] = frame["empty_mass_kg"] + load_kg.where(load_kg.notna(), frame["default_load_kg"])
        known_factor = (load_kg / frame["payload_kg"]).where(load_kg.notna() & (frame["payload_kg"] > 0))
        frame["load_factor"] = known_factor.fillna(frame["default_load_factor"]).clip(settings.min_load_factor, 1.0)
        frame["load_unknown"] = frame["is_truck"].fillna(False).astype(bool) & load_kg.isna()
        frame["payload_default"] = frame["is_truck"].fillna(False).astype(bool) & ~payload_known
        frame = model_module._attach_tonkm(frame, model)

        catalog = frame[c.CATALOG_FE].astype("float64")
        cycle = frame[c.TEST_CYCLE].astype(object).where(frame[c.TEST_CYCLE].notna(), None)
        frame["catalog_present"] = catalog > 0
        frame["catalog_usable"] = frame["catalog_present"] & cycle.isin(["WLTC", "JC08", "JH25"])
        powertrain = np.where(frame[c.FUEL_TYPE] == "hybrid", "hybrid", "conventional")
        gap = model.gap.reindex(pd.MultiIndex.from_arrays([cycle.fillna(""), powertrain]))
        frame["catalog_gap"] = np.where(frame["catalog_usable"], gap["catalog_gap"].to_numpy(), 1.0)
        explained = gap["explained_by_profile"].to_numpy()
        frame["residual_gap"] = np.where(frame["catalog_usable"], np.maximum(frame["catalog_gap"] - explained, 1.0), 1.0)
        frame["gap_confirmed"] = np.where(frame["catalog_usable"], gap["confirmed"].fillna(False).to_numpy(dtype=bool), True)

        default_per_km = model_module._default_fuel_per_km(frame)
        catalog_load = model_module._load_multiplier(frame, settings.catalog_reference_load_factor)
        frame["default_fuel_per_km"] = default_per_km
        frame["distance_fuel_per_km"] = np.where(frame["catalog_usable"], frame["catalog_gap"] / catalog * catalog_load, default_per_km)
        return model_module._calibrate(frame, cycle, model)

    @staticmethod
    def _hostile(sample_piece: PieceInputs) -> tuple[pd.DataFrame, pd.DataFrame]:
        rng = np.random.default_rng(17)
        trips = sample_piece.trips.copy()
        n = len(trips)
        ids = trips[c.VEHICLE_ID].to_numpy(dtype=object).copy()
        ids[::7] = "not-in-master"
        ids[1] = None
        trips[c.VEHICLE_ID] = ids
        load = rng.uniform(0.0, 3_000.0, n)
        load[::3] = np.nan
        load[::11] = 0.0
        load[::13] = 1e9
        trips[c.LOAD_KG] = load
        vehicles = sample_piece.vehicles.copy()
        m = len(vehicles)
        vehicles[c.MAX_PAYLOAD_KG] = np.where(np.arange(m) % 4 == 0, 0.0, np.where(np.arange(m) % 5 == 0, np.nan, vehicles[c.MAX_PAYLOAD_KG]))
        vehicles[c.CATALOG_FE] = np.where(np.arange(m) % 6 == 0, np.nan, vehicles[c.CATALOG_FE])
        cycles = vehicles[c.TEST_CYCLE].to_numpy(dtype=object).copy()
        cycles[::5] = "NEDC"
        vehicles[c.TEST_CYCLE] = cycles
        duplicate = vehicles.iloc[:3].assign(**{c.VEHICLE_CLASS: "bus", c.FUEL_TYPE: "diesel"})
        return trips, pd.concat([vehicles, duplicate], ignore_index=True)

    @staticmethod
    def _assert_same_frame(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
        assert sorted(actual.columns) == sorted(expected.columns)
        pd.testing.assert_frame_equal(actual[list(expected.columns)], expected, check_exact=True)

    @pytest.mark.parametrize("case", ["clean", "hostile", "no master"])
    def test_matches_merge_formulation(self, sample_piece: PieceInputs, model: EmissionModel, case: str) -> None:
        trips, vehicles = sample_piece.trips, sample_piece.vehicles
        if case == "hostile":
            trips, vehicles = self._hostile(sample_piece)
        elif case == "no master":
            vehicles = vehicles.iloc[:0]

        expected = self._merge_formulation(trips, vehicles, model)

        self._assert_same_frame(resolve_trip_vehicles(trips, vehicles, model), expected)
        self._assert_same_frame(resolve_trip_vehicles(trips, resolve_vehicles(vehicles, model), model), expected)
        if case == "hostile":
            assert not expected["vehicle_found"].all()
            assert expected["load_unknown"].any()

    def test_master_resolves_once_per_model(self, sample_piece: PieceInputs, model: EmissionModel, model_no_gap: EmissionModel) -> None:
        trips, vehicles = self._hostile(sample_piece)
        master = pipeline.VehicleMaster.of(vehicles)

        first = master.resolved(model)

        assert master.resolved(model) is first
        self._assert_same_frame(resolve_trip_vehicles(trips, first, model), self._merge_formulation(trips, vehicles, model))
        assert master.resolved(model_no_gap) is not first
        assert master.resolved(model_no_gap).frame["residual_gap"].tolist() != first.frame["residual_gap"].tolist()
