"""Exact repeats of a row keep their first copy; copies of a key that differ are all rejected.

Unit cases run the row rules on tiny frames. The cluster cases run the real validate and
compute phases on a Dask LocalCluster, on a tachograph day with every tenth record sent again.
That day must give the same accepted records and the same measured fuel (tier T1) as the day
without the resends.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import contract_corpus as corpus
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
import pytest
import shapely
from distributed import Client, LocalCluster

from compute import columns as c
from compute import contract, phases, pipeline
from compute.contract import (
    ContractSettings,
    RepeatedKeys,
    ValidationContext,
    conform_table,
    content_hashes,
    find_duplicate_keys,
    rejected_vehicle_reasons,
    render_details,
    repeated_keys_in,
    to_frame,
    validate_rows,
)
from compute.emissions.model import FUEL_MEASURED
from compute.sample import SampleSpec, write_sample_day
from compute.settings import load_settings
from compute.storage import Store

RUN_DATE = dt.date(2026, 12, 1)
GOOD = corpus.GOOD_TRIP
OTHER_TRIP = {**GOOD, "trip_id": "T3"}
RECORDS = [{"s": 0, "speed": 0.0, "fuel": 0.5}, {"s": 1, "speed": 10.0, "fuel": 1.0}, {"s": 2, "speed": 20.0, "fuel": 1.5}]
BUILDERS = {"trajectories": corpus.trajectories, "vehicles": corpus.vehicles, "tachometer": corpus.tachometer}


def _conformed(dataset: str, rows: list[dict]) -> pa.Table:
    return conform_table(dataset, BUILDERS[dataset](rows), ContractSettings())


def _validate_day(dataset: str, parts: list[list[dict]]) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """Validate each part as one file of a day, with the day's repeated keys, and check the balance."""
    tables = [_conformed(dataset, rows) for rows in parts]
    files = [f"{dataset}/part-{index}.parquet" for index in range(len(tables))]
    context = ValidationContext(repeated_keys={dataset: repeated_keys_in(dataset, tables, files)})
    results = []
    for piece, table in enumerate(tables):
        frame = to_frame(dataset, table)
        accepted, rejects = validate_rows(dataset, frame, context, piece=piece)
        assert len(accepted) + len(rejects) == len(frame)
        results.append((accepted, rejects))
    return results


def _reasons(rejects: pd.DataFrame) -> list[str]:
    return list(rejects["reason"])


class TestExactRepeats:
    def test_second_copy_rejected_first_kept(self) -> None:
        [(accepted, rejects)] = _validate_day("trajectories", [[GOOD, GOOD, OTHER_TRIP]])

        assert list(accepted.index) == [0, 2]
        assert list(accepted["trip_id"]) == ["T1", "T3"]
        assert _reasons(rejects) == ["row_repeated"]
        assert list(rejects["row_key"]) == ["T1"]
        assert list(rejects["value"]) == ["T1"]

    def test_detail_names_kept_copy(self) -> None:
        [(_, rejects)] = _validate_day("trajectories", [[OTHER_TRIP, GOOD, GOOD]])

        assert rejects["detail_kind"].iloc[0] == "copy_of_file_row"
        assert rejects["detail"].iloc[0] == "the kept copy is row 1 of trajectories/part-0.parquet, counting from 0"
        assert render_details(rejects, "ja")["detail"].iloc[0] == (
            "採用した行は、trajectories/part-0.parquet の先頭を 0 として 1 行目です"
        )

    def test_triple_repeat_keeps_one(self) -> None:
        records = [*RECORDS, RECORDS[1], RECORDS[1]]
        [(accepted, rejects)] = _validate_day("tachometer", [records])

        assert len(accepted) == 3
        assert list(accepted.index) == [0, 1, 2]
        assert _reasons(rejects) == ["row_repeated", "row_repeated"]
        assert set(rejects["row_key"]) == {"V1@2026-07-25T17:20:01.000Z"}

    def test_vehicle_sent_twice_keeps_one(self) -> None:
        vehicle = {"vehicle_id": "V1", "vehicle_class": "light_truck", "fuel_type": "diesel"}
        [(accepted, rejects)] = _validate_day("vehicles", [[vehicle, vehicle]])

        assert list(accepted["vehicle_id"]) == ["V1"]
        assert _reasons(rejects) == ["row_repeated"]

    def test_kept_copy_meets_later_rules(self) -> None:
        too_fast = {"s": 5, "speed": 999.0, "fuel": 1.0}
        [(accepted, rejects)] = _validate_day("tachometer", [[*RECORDS, too_fast, too_fast, too_fast]])

        assert len(accepted) == 3
        assert _reasons(rejects) == ["speed_implausible", "row_repeated", "row_repeated"]

    def test_spaces_trimmed_before_comparing(self) -> None:
        [(accepted, rejects)] = _validate_day("trajectories", [[GOOD, {**GOOD, "trip_id": " T1 "}]])

        assert list(accepted["trip_id"]) == ["T1"]
        assert _reasons(rejects) == ["row_repeated"]


class TestConflictingRepeats:
    def test_one_value_differs(self) -> None:
        records = [*RECORDS, {**RECORDS[1], "fuel": 2.0}]
        [(accepted, rejects)] = _validate_day("tachometer", [records])

        assert len(accepted) == 2
        assert _reasons(rejects) == ["key_duplicated", "key_duplicated"]

    def test_two_equal_one_different(self) -> None:
        rows = [GOOD, GOOD, {**GOOD, "load_kg": 600.0}]
        [(accepted, rejects)] = _validate_day("trajectories", [rows])

        assert accepted.empty
        assert _reasons(rejects) == ["key_duplicated"] * 3

    def test_one_timestamp_differs(self) -> None:
        [(accepted, rejects)] = _validate_day("trajectories", [[GOOD, {**GOOD, "times_s": [0, 11, 20]}]])

        assert accepted.empty
        assert _reasons(rejects) == ["key_duplicated", "key_duplicated"]

    def test_null_versus_value(self) -> None:
        [(accepted, rejects)] = _validate_day("trajectories", [[GOOD, {**GOOD, "load_kg": None}]])

        assert accepted.empty
        assert _reasons(rejects) == ["key_duplicated", "key_duplicated"]

    def test_same_line_other_wkb_bytes(self) -> None:
        # The same geometry written big-endian: equal shapes, different bytes.
        table = corpus.trajectories([GOOD, GOOD])
        big_endian = shapely.to_wkb(shapely.from_wkt(corpus.GOOD_LINE), byte_order=0)
        table = table.set_column(2, "geometry", pa.array([corpus.wkb(corpus.GOOD_LINE), big_endian], pa.binary()))
        conformed = conform_table("trajectories", table, ContractSettings())
        context = ValidationContext(repeated_keys={"trajectories": repeated_keys_in("trajectories", [conformed], ["part-0"])})

        accepted, rejects = validate_rows("trajectories", to_frame("trajectories", conformed), context)

        assert accepted.empty
        assert _reasons(rejects) == ["key_duplicated", "key_duplicated"]


class TestAcrossPieces:
    def test_copy_in_later_piece_rejected(self) -> None:
        (first_accepted, first_rejects), (second_accepted, second_rejects) = _validate_day(
            "tachometer", [RECORDS, [RECORDS[2], {"s": 3, "speed": 20.0, "fuel": 1.5}]]
        )

        assert len(first_accepted) == 3
        assert first_rejects.empty
        assert list(second_accepted.index) == [1]
        assert _reasons(second_rejects) == ["row_repeated"]
        assert second_rejects["detail"].iloc[0] == "the kept copy is row 2 of tachometer/part-0.parquet, counting from 0"

    def test_first_piece_keeps_copy(self) -> None:
        parts = [[OTHER_TRIP], [{**GOOD, "trip_id": "T4"}, GOOD, GOOD], [GOOD]]
        results = _validate_day("trajectories", parts)

        accepted_ids = [list(accepted["trip_id"]) for accepted, _ in results]
        assert accepted_ids == [["T3"], ["T4", "T1"], []]
        assert [_reasons(rejects) for _, rejects in results] == [[], ["row_repeated"], ["row_repeated"]]
        details = pd.concat([rejects for _, rejects in results])["detail"]
        assert set(details) == {"the kept copy is row 1 of trajectories/part-1.parquet, counting from 0"}

    def test_conflict_rejects_both(self) -> None:
        results = _validate_day("trajectories", [[GOOD], [{**GOOD, "vehicle_id": "V2"}]])

        assert all(accepted.empty for accepted, _ in results)
        assert [_reasons(rejects) for _, rejects in results] == [["key_duplicated"], ["key_duplicated"]]

    def test_column_order_ignored(self) -> None:
        table = _conformed("tachometer", RECORDS)
        reordered = table.select(list(reversed(table.column_names)))

        np.testing.assert_array_equal(content_hashes(table), content_hashes(reordered))


class TestWithoutDayKeys:
    def test_partition_taken_as_whole_day(self) -> None:
        frame = to_frame("tachometer", _conformed("tachometer", [*RECORDS, RECORDS[0]]))

        accepted, rejects = validate_rows("tachometer", frame, ValidationContext())

        assert len(accepted) == 3
        assert _reasons(rejects) == ["row_repeated"]
        assert rejects["detail_kind"].iloc[0] == "copy_of_partition_row"
        assert rejects["detail"].iloc[0] == "the kept copy is row 0 of the partition, counting from 0"
        assert render_details(rejects, "ja")["detail"].iloc[0] == "採用した行は、パーティションの先頭を 0 として 0 行目です"

    def test_geometry_compared_as_wkb_in_frame(self) -> None:
        frame = to_frame("trajectories", _conformed("trajectories", [GOOD, GOOD, {**GOOD, "wkt": "LINESTRING (139.7 35.68, 139.71 35.68, 139.72 35.68)"}]))

        accepted, rejects = validate_rows("trajectories", frame, ValidationContext())

        assert accepted.empty
        assert _reasons(rejects) == ["key_duplicated"] * 3

    def test_listed_duplicated_keys_reject_every_copy(self) -> None:
        frame = to_frame("trajectories", _conformed("trajectories", [GOOD, GOOD]))
        context = ValidationContext(duplicated_keys={"trajectories": find_duplicate_keys("trajectories", [frame])})

        accepted, rejects = validate_rows("trajectories", frame, context)

        assert accepted.empty
        assert _reasons(rejects) == ["key_duplicated", "key_duplicated"]


class TestContentHashes:
    def test_null_differs_from_empty_text(self) -> None:
        table = pa.table({"text": pa.array(["", None], pa.string())})
        first, second = content_hashes(table)
        assert first != second

    def test_list_order_counts(self) -> None:
        table = pa.table({"times": pa.array([[1, 2], [2, 1], [1, 2]], pa.list_(pa.int64()))})
        hashes = content_hashes(table)
        assert hashes[0] != hashes[1]
        assert hashes[0] == hashes[2]

    def test_long_lists_compared_whole(self) -> None:
        values = list(range(5_000))
        changed = [*values[:2_500], -1, *values[2_501:]]
        hashes = content_hashes(pa.table({"times": pa.array([values, changed], pa.list_(pa.int64()))}))
        assert hashes[0] != hashes[1]

    def test_slice_hashes_like_whole(self) -> None:
        table = _conformed("trajectories", [OTHER_TRIP, GOOD, {**GOOD, "times_s": None}])
        np.testing.assert_array_equal(content_hashes(table)[1:], content_hashes(table.slice(1)))


def test_vehicle_reason_from_kept_copy() -> None:
    vehicle = {"vehicle_id": "V1", "vehicle_class": "light_truck", "fuel_type": "kerosene"}
    [(accepted, rejects)] = _validate_day("vehicles", [[vehicle, vehicle]])

    assert accepted.empty
    assert _reasons(rejects) == ["fuel_type_unknown", "row_repeated"]
    assert rejected_vehicle_reasons(rejects.iloc[::-1]) == {"V1": "fuel_type_unknown"}


def test_no_repeats_gives_empty_keys() -> None:
    repeated = repeated_keys_in("tachometer", [_conformed("tachometer", RECORDS)], ["tachometer/part-0.parquet"])
    assert isinstance(repeated, RepeatedKeys)
    assert len(repeated.keys) == 0
    assert repeated.kept.empty


# -- on a LocalCluster ---------------------------------------------------------------------------

# Rows per tachograph row group and per validate piece, so that a file spans several pieces and
# the resent copies lie in other pieces than their first copies.
ROWS_PER_GROUP = 400


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as dask_client:
        yield dask_client


def _tachometer_files(store: Store) -> dict[str, pa.Table]:
    return {name: pq.read_table(store.path(name)) for name in pipeline.list_dataset_files(store, "tachometer")}


def _write_tachometer(store: Store, tables: dict[str, pa.Table]) -> None:
    store.remove("tachometer")
    for name, table in tables.items():
        Path(store.path(name)).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, store.path(name), row_group_size=ROWS_PER_GROUP)


def _with_resends(tables: dict[str, pa.Table]) -> tuple[dict[str, pa.Table], int]:
    """Return the files with every tenth record sent again, and the number of resent records.

    Records of even positions among the resent are appended to their own file, the others go to
    a file of their own that sorts after the others.
    """
    out: dict[str, pa.Table] = {}
    later: list[pa.Table] = []
    resent = 0
    for name, table in tables.items():
        again = table.take(pa.array(np.arange(0, table.num_rows, 10)))
        resent += again.num_rows
        same_file = again.take(pa.array(np.arange(0, again.num_rows, 2)))
        later.append(again.take(pa.array(np.arange(1, again.num_rows, 2))))
        out[name] = pa.concat_tables([table, same_file])
    out["tachometer/resent.parquet"] = pa.concat_tables(later)
    return out, resent


def _with_conflicts(tables: dict[str, pa.Table], every: int, own_file: bool = False) -> tuple[dict[str, pa.Table], int]:
    """Return the files with every ``every``-th record sent again with 1 ml more fuel, and the number of such keys.

    The copies go to the end of their record's file, or with ``own_file`` to a file of their own.
    """
    out: dict[str, pa.Table] = {}
    copies: list[pa.Table] = []
    conflicts = 0
    for name, table in tables.items():
        again = table.take(pa.array(np.arange(0, table.num_rows, every)))
        fuel = again.schema.get_field_index(c.FUEL_ML)
        again = again.set_column(fuel, again.schema.field(fuel), pa.compute.add(again.column(fuel), 1.0).cast(again.schema.field(fuel).type))
        conflicts += again.num_rows
        if own_file:
            out[name] = table
            copies.append(again)
        else:
            out[name] = pa.concat_tables([table, again])
    if copies:
        out["tachometer/copies.parquet"] = pa.concat_tables(copies)
    return out, conflicts


def _run_day(root: Path, client: Client, resend: bool = False, conflict_every: int = 0, copies_apart: bool = False) -> dict:
    settings = load_settings("local", environ={}, overrides={"data_dir": str(root)})
    store = Store(settings.url("input", RUN_DATE))
    write_sample_day(store, RUN_DATE, SampleSpec(trips=60, vertices_per_trip=30, grid_cells=24, trips_per_file=30))
    tables = _tachometer_files(store)
    resent = 0
    if resend:
        tables, resent = _with_resends(tables)
    conflicts = 0
    if conflict_every:
        tables, conflicts = _with_conflicts(tables, conflict_every, own_file=copies_apart)
    _write_tachometer(store, tables)

    run = phases.DailyRun.create(settings, RUN_DATE, force=True)
    phases.fetch(run)
    validated = phases.validate(run, client)
    phases.compute(run, client)

    temp = run.store("temp")
    trips = pipeline.read_folder(temp, pipeline.TRIPS)
    accepted = pipeline.read_folder(temp, f"{pipeline.VALIDATED}/tachometer")
    assert trips is not None
    assert accepted is not None
    return {
        "counts": validated.counts["datasets"]["tachometer"],
        "resent": resent,
        "conflicts": conflicts,
        "accepted": accepted.to_pandas().sort_values([c.VEHICLE_ID, c.TS], kind="stable").reset_index(drop=True),
        "trips": trips.to_pandas(),
    }


@pytest.fixture(scope="module")
def tacho_days(tmp_path_factory: pytest.TempPathFactory, client: Client) -> dict[str, dict]:
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setitem(phases._PIECE_ROWS, "tachometer", (ROWS_PER_GROUP, ROWS_PER_GROUP))
    try:
        return {
            "plain": _run_day(tmp_path_factory.mktemp("plain-day"), client),
            "resent": _run_day(tmp_path_factory.mktemp("resent-day"), client, resend=True),
            # 1 record in 30 leaves T1 within its 95 % coverage, 1 in 10 does not.
            "conflict_sparse": _run_day(tmp_path_factory.mktemp("sparse-conflict-day"), client, conflict_every=30),
            "conflict_dense": _run_day(tmp_path_factory.mktemp("dense-conflict-day"), client, conflict_every=10),
            "conflict_apart": _run_day(tmp_path_factory.mktemp("apart-conflict-day"), client, conflict_every=30, copies_apart=True),
        }
    finally:
        monkeypatch.undo()


@pytest.mark.slow
class TestResentTachographDay:
    def test_resent_copies_rejected_as_repeated(self, tacho_days: dict[str, dict]) -> None:
        plain, resent = tacho_days["plain"], tacho_days["resent"]

        assert resent["resent"] > 0
        assert resent["counts"]["by_reason"].get("row_repeated") == resent["resent"]
        assert "key_duplicated" not in resent["counts"]["by_reason"]
        assert resent["counts"]["rows_in"] == plain["counts"]["rows_in"] + resent["resent"]

    def test_counts_balance(self, tacho_days: dict[str, dict]) -> None:
        for day in tacho_days.values():
            counts = day["counts"]
            assert counts["balanced"]
            assert counts["rows_in"] == counts["accepted"] + counts["rejected"]
            assert sum(counts["by_reason"].values()) == counts["rejected"]

    def test_same_records_accepted(self, tacho_days: dict[str, dict]) -> None:
        plain, resent = tacho_days["plain"], tacho_days["resent"]

        assert resent["counts"]["accepted"] == plain["counts"]["accepted"]
        pd.testing.assert_frame_equal(resent["accepted"], plain["accepted"])

    def test_same_measured_fuel(self, tacho_days: dict[str, dict]) -> None:
        def measured(trips: pd.DataFrame) -> pd.Series:
            t1 = trips[trips[c.METHOD] == FUEL_MEASURED]
            return t1.set_index(c.TRIP_ID)[c.FUEL_L].sort_index()

        plain, resent = measured(tacho_days["plain"]["trips"]), measured(tacho_days["resent"]["trips"])

        assert len(plain) > 0
        assert plain.sum() > 0
        pd.testing.assert_series_equal(resent, plain)


def _flagged(trips: pd.DataFrame, flag: str) -> pd.Series:
    return trips.set_index(c.TRIP_ID)[c.QUALITY_FLAGS].fillna("").str.split(";").map(lambda codes: flag in codes).sort_index()


@pytest.mark.slow
class TestConflictingTachographDay:
    """Copies of one second that differ are all rejected, and T1 counts their seconds as records without fuel."""

    def test_all_copies_rejected(self, tacho_days: dict[str, dict]) -> None:
        for name in ("conflict_sparse", "conflict_dense"):
            day = tacho_days[name]
            assert day["conflicts"] > 0
            # A copy that breaks an earlier rule (the sample day has such records) keeps that reason.
            assert day["conflicts"] < day["counts"]["by_reason"]["key_duplicated"] <= 2 * day["conflicts"]
            assert day["counts"]["rows_in"] == day["counts"]["accepted"] + day["counts"]["rejected"]

    def test_sparse_gaps_keep_t1_with_flag(self, tacho_days: dict[str, dict]) -> None:
        plain = tacho_days["plain"]["trips"].set_index(c.TRIP_ID).sort_index()
        sparse = tacho_days["conflict_sparse"]["trips"].set_index(c.TRIP_ID).sort_index()
        flagged = _flagged(tacho_days["conflict_sparse"]["trips"], "tacho_rows_rejected")
        t1_before = plain[c.METHOD] == FUEL_MEASURED

        still_t1 = sparse[c.METHOD] == FUEL_MEASURED
        changed = sparse[c.METHOD] != plain[c.METHOD]

        # A trip changes tier only through its rejected seconds.
        assert flagged[changed].all()
        # A flagged trip that keeps T1 lost the fuel of its rejected seconds.
        lost = flagged & t1_before & still_t1
        assert lost.any()
        assert (sparse.loc[lost, c.FUEL_L] < plain.loc[lost, c.FUEL_L]).all()
        # Trips without rejected seconds keep their tier and fuel.
        unflagged = ~flagged
        assert unflagged.any()
        pd.testing.assert_series_equal(sparse.loc[unflagged, c.METHOD], plain.loc[unflagged, c.METHOD])
        pd.testing.assert_series_equal(sparse.loc[unflagged, c.FUEL_L], plain.loc[unflagged, c.FUEL_L])

    def test_dense_gaps_leave_t1(self, tacho_days: dict[str, dict]) -> None:
        plain = tacho_days["plain"]["trips"].set_index(c.TRIP_ID).sort_index()
        dense = tacho_days["conflict_dense"]["trips"].set_index(c.TRIP_ID).sort_index()
        flagged = _flagged(tacho_days["conflict_dense"]["trips"], "tacho_rows_rejected")
        incomplete = _flagged(tacho_days["conflict_dense"]["trips"], "tacho_fuel_incomplete")
        t1_before = plain[c.METHOD] == FUEL_MEASURED

        assert t1_before.sum() > 0
        assert flagged[t1_before].all()
        assert incomplete[t1_before].all()
        assert not (dense.loc[t1_before, c.METHOD] == FUEL_MEASURED).any()

    def test_copies_apart_match_copies_together(self, tacho_days: dict[str, dict]) -> None:
        """Copies in a file of their own give the trips of copies at the end of their record's file.

        In both days the copies land in other validation pieces than their first records, so
        both pieces' rejects hold each key (test_rejected_tacho_records checks that a second
        placed twice counts once).
        """
        together = tacho_days["conflict_sparse"]["trips"].set_index(c.TRIP_ID).sort_index()
        apart = tacho_days["conflict_apart"]["trips"].set_index(c.TRIP_ID).sort_index()

        assert tacho_days["conflict_apart"]["conflicts"] == tacho_days["conflict_sparse"]["conflicts"]
        pd.testing.assert_series_equal(apart[c.METHOD], together[c.METHOD])
        pd.testing.assert_series_equal(apart[c.FUEL_L], together[c.FUEL_L])
        pd.testing.assert_series_equal(apart[c.QUALITY_FLAGS], together[c.QUALITY_FLAGS])

    def test_resent_day_has_no_flag(self, tacho_days: dict[str, dict]) -> None:
        assert not _flagged(tacho_days["resent"]["trips"], "tacho_rows_rejected").any()


@pytest.mark.slow
def test_cluster_matches_in_memory_keys(client: Client, tmp_path: Path) -> None:
    """The two hashing passes on the cluster keep the same copies as the in-memory search."""
    store = Store(str(tmp_path))
    tables, _ = _with_resends({"tachometer/part-0.parquet": corpus.tachometer([{"s": s, "speed": 10.0, "fuel": 1.0} for s in range(50)])})
    tables["tachometer/part-1.parquet"] = corpus.tachometer([{"s": 7, "speed": 10.0, "fuel": 1.0}, {"s": 9, "speed": 12.0, "fuel": 1.0}])
    for name, table in tables.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp_path / name, row_group_size=7)
    pieces = pipeline.plan_pieces(store, "tachometer", target_rows=7)
    assert len(pieces) > len(tables)

    on_cluster = pipeline.repeated_keys(client, pipeline.StoreRef(str(tmp_path)), pieces, ContractSettings())

    names = pipeline.list_dataset_files(store, "tachometer")
    conformed = [contract.conform_table("tachometer", pq.read_table(tmp_path / name), ContractSettings()) for name in names]
    in_memory = repeated_keys_in("tachometer", conformed, names)
    np.testing.assert_array_equal(on_cluster.conflicting, in_memory.conflicting)
    assert list(on_cluster.conflicting) == ["V1@2026-07-25T17:20:09.000Z"]
    located = {
        key: on_cluster.kept_copy_details(np.array([piece]), np.array([row]))[0].params
        for key, piece, row in on_cluster.kept.itertuples()
    }
    expected = {
        key: in_memory.kept_copy_details(np.array([piece]), np.array([row]))[0].params
        for key, piece, row in in_memory.kept.itertuples()
    }
    assert located == expected
    assert len(located) == 6


@pytest.mark.slow
def test_vehicle_copies_across_files(client: Client, tmp_path: Path) -> None:
    """The daily validate phase compares vehicle keys across files, as ``lm-co2 validate`` does."""
    settings = load_settings("local", environ={}, overrides={"data_dir": str(tmp_path)})
    store = Store(settings.url("input", RUN_DATE))
    write_sample_day(store, RUN_DATE, SampleSpec(trips=20, vertices_per_trip=10))
    (name,) = pipeline.list_dataset_files(store, "vehicles")
    master = pq.read_table(store.path(name))
    identical = master.slice(0, 3)
    changed = master.slice(3, 1)
    economy = changed.schema.get_field_index(c.CATALOG_FE)
    changed = changed.set_column(economy, c.CATALOG_FE, pa.array([changed.column(c.CATALOG_FE)[0].as_py() + 1.0]))
    pq.write_table(pa.concat_tables([identical, changed]), store.path("vehicles/part-00001.parquet"))

    run = phases.DailyRun.create(settings, RUN_DATE, force=True)
    phases.fetch(run)
    counts = phases.validate(run, client).counts["datasets"]["vehicles"]

    assert counts["rows_in"] == master.num_rows + 4
    assert counts["by_reason"].get("row_repeated") == 3
    assert counts["by_reason"].get("key_duplicated") == 2
    assert counts["accepted"] == master.num_rows - 1
    assert counts["rows_in"] == counts["accepted"] + counts["rejected"]
