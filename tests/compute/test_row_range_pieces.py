"""Row groups too large for one piece are validated in row ranges, with the result of whole reads.

pyarrow and geopandas write up to 1,048,576 rows per row group by default, so a client's file of
100,000 trips often is one row group of 30M vertices. Validating that as one piece took 4.1 GiB
in a worker. The planner now cuts it into row ranges, which each task decodes batch by batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import shapely
from distributed import Client, LocalCluster

from compute import contract, phases, pipeline
from compute.sample import SampleSpec, write_sample_day
from compute.settings import load_settings
from compute.storage import Store

RUN_DATE = dt.date(2026, 12, 1)
START = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _trajectories(n_trips: int, rng: np.random.Generator, *, with_timestamps: bool = True) -> pa.Table:
    lengths = rng.integers(2, 40, n_trips)
    lines = [shapely.LineString(np.column_stack([np.arange(n) * 1e-4 + 139.7, np.full(n, 35.6) + i * 1e-3])) for i, n in enumerate(lengths)]
    columns: dict[str, pa.Array] = {
        "trip_id": pa.array([f"T{i:05d}" for i in range(n_trips)]),
        "geometry": pa.array(shapely.to_wkb(lines), pa.binary()),
    }
    if with_timestamps:
        columns["timestamps"] = pa.array(
            [[START + dt.timedelta(seconds=s) for s in range(n)] for n in lengths], pa.list_(pa.timestamp("ms", tz="UTC"))
        )
    return pa.table(columns)


def _write(root: Path, dataset: str, table: pa.Table, name: str = "part-0.parquet") -> Store:
    (root / dataset).mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / dataset / name, row_group_size=max(1, len(table)))
    return Store(str(root))


def _read_pieces(store: Store, pieces: list[pipeline.Piece]) -> pa.Table:
    """Read every piece's rows as :func:`pipeline.read_piece` does, before conforming, and concatenate them."""
    tables = []
    for piece in pieces:
        parquet = pq.ParquetFile(store.path(piece.path))
        if piece.row_range is None:
            tables.append(parquet.read_row_groups(list(piece.row_groups)))
        else:
            tables.append(pipeline._read_row_range(parquet, piece.row_groups[0], piece.row_range, None))
    return pa.concat_tables(tables)


class TestPlan:
    def test_large_row_group_becomes_ranges(self, tmp_path: Path) -> None:
        table = pa.table({"vehicle_id": pa.array([f"V{i % 7}" for i in range(1_003)]), "speed_kmh": pa.array(np.arange(1_003.0))})
        store = _write(tmp_path, "tachometer", table)

        pieces = pipeline.plan_pieces(store, "tachometer", target_rows=100, max_rows=100)

        assert len(pieces) == 11
        assert [p.index for p in pieces] == list(range(11))
        assert all(p.row_groups == (0,) and p.row_range is not None for p in pieces)
        starts = [p.row_range[0] for p in pieces]
        stops = [p.row_range[1] for p in pieces]
        assert starts[0] == 0
        assert stops[-1] == 1_003
        assert starts[1:] == stops[:-1]
        assert all(0 < p.rows == p.row_range[1] - p.row_range[0] <= 100 for p in pieces)
        assert _read_pieces(store, pieces).equals(table)

    def test_vertices_from_timestamps_list(self, tmp_path: Path) -> None:
        table = _trajectories(400, np.random.default_rng(1))
        store = _write(tmp_path, "trajectories", table)
        total = int(pc.sum(pc.list_value_length(table["timestamps"])).as_py())

        pieces = pipeline.plan_pieces(store, "trajectories", target_rows=10_000, max_rows=10_000, max_vertices=1_000,
                                      vertex_columns=("timestamps", "geometry"))

        assert len(pieces) == -(-total // 1_000)
        assert sum(p.rows for p in pieces) == 400
        # Equal row ranges carry about equal vertex counts; the plan's share is proportional.
        assert abs(sum(p.vertices for p in pieces) - total) <= len(pieces)
        assert _read_pieces(store, pieces).equals(table)

    def test_wkb_bytes_bound_vertices(self, tmp_path: Path) -> None:
        table = _trajectories(300, np.random.default_rng(2), with_timestamps=False)
        store = _write(tmp_path, "trajectories", table)
        vertices = int(shapely.get_num_coordinates(shapely.from_wkb(table["geometry"].to_numpy(zero_copy_only=False))).sum())

        pieces = pipeline.plan_pieces(store, "trajectories", target_rows=10_000, max_rows=10_000, max_vertices=1_000,
                                      vertex_columns=("timestamps", "geometry"))

        # 16 bytes per 2-D vertex plus each row's header: the estimate is at least the true count.
        assert sum(p.vertices for p in pieces) >= vertices
        assert len(pieces) >= -(-vertices // 1_000)
        assert _read_pieces(store, pieces).equals(table)

    def test_small_row_groups_stay_whole(self, tmp_path: Path) -> None:
        table = _trajectories(90, np.random.default_rng(3))
        (tmp_path / "trajectories").mkdir()
        pq.write_table(table, tmp_path / "trajectories" / "part-0.parquet", row_group_size=10)
        store = Store(str(tmp_path))

        pieces = pipeline.plan_pieces(store, "trajectories", target_rows=30, max_rows=1_000, max_vertices=10**9,
                                      vertex_columns=("timestamps", "geometry"))

        assert [p.row_groups for p in pieces] == [(0, 1, 2), (3, 4, 5), (6, 7, 8)]
        assert all(p.row_range is None for p in pieces)

    def test_vertex_limit_closes_group(self, tmp_path: Path) -> None:
        table = _trajectories(90, np.random.default_rng(4))
        (tmp_path / "trajectories").mkdir()
        pq.write_table(table, tmp_path / "trajectories" / "part-0.parquet", row_group_size=10)
        store = Store(str(tmp_path))
        group_vertices = [sum(len(x) for x in table["timestamps"].to_pylist()[i:i + 10]) for i in range(0, 90, 10)]
        limit = max(group_vertices) + 1

        pieces = pipeline.plan_pieces(store, "trajectories", target_rows=10**6, max_rows=10**6, max_vertices=limit,
                                      vertex_columns=("timestamps", "geometry"))

        assert all(p.vertices <= limit for p in pieces)
        assert [g for p in pieces for g in p.row_groups] == list(range(9))
        assert all(p.vertices == sum(group_vertices[g] for g in p.row_groups) for p in pieces)

    def test_empty_range_and_empty_file(self, tmp_path: Path) -> None:
        table = _trajectories(5, np.random.default_rng(5))
        store = _write(tmp_path, "trajectories", table)
        empty = pipeline._read_row_range(pq.ParquetFile(store.path("trajectories/part-0.parquet")), 0, (3, 3), None)
        assert empty.num_rows == 0
        assert empty.schema.equals(table.schema)
        _write(tmp_path, "tachometer", pa.table({"vehicle_id": pa.array([], pa.string())}))
        assert [(p.row_groups, p.rows) for p in pipeline.plan_pieces(store, "tachometer", target_rows=1, max_rows=1)] == [((0,), 0)]


# -- the validate phase on a real cluster --------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    # Threads in this process, so the bounds patched below reach the planner.
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as dask_client:
        yield dask_client


def _day_in_one_row_group(tmp_path: Path) -> phases.DailyRun:
    """A sample day (with its planted defects) whose trajectory and tachograph files hold one row group each."""
    settings = load_settings("local", environ={}, overrides={"data_dir": str(tmp_path)})
    inputs = Store(settings.url("input", RUN_DATE))
    write_sample_day(inputs, RUN_DATE, SampleSpec(trips=80, vertices_per_trip=30, grid_cells=24, trips_per_file=1_000))
    for dataset in ("trajectories", "tachometer"):
        for name in pipeline.list_dataset_files(inputs, dataset):
            table = pq.read_table(inputs.path(name))
            pq.write_table(table, inputs.path(name), row_group_size=max(1, len(table)))
    run = phases.DailyRun.create(settings, RUN_DATE, force=True)
    phases.fetch(run)
    return run


def _validated(run: phases.DailyRun) -> tuple[dict, dict[str, pd.DataFrame]]:
    temp = run.store("temp")
    out = {}
    for folder, keys in ((f"{pipeline.VALIDATED}/trajectories", ["trip_id"]), (f"{pipeline.VALIDATED}/tachometer", ["vehicle_id", "ts"]),
                         (f"{pipeline.REJECTS}/trajectories", ["row_key", "reason", "detail"]),
                         (f"{pipeline.REJECTS}/tachometer", ["row_key", "reason", "detail"])):
        table = pipeline.read_folder(temp, folder)
        assert table is not None
        frame = table.to_pandas(ignore_metadata=True)
        frame = frame.astype({name: object for name in frame.columns if isinstance(frame[name].dtype, pd.CategoricalDtype)})
        out[folder] = frame.sort_values(keys, kind="mergesort").reset_index(drop=True)
    return out


def test_row_ranges_validate_as_whole(tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _day_in_one_row_group(tmp_path)
    whole = phases.validate(run, client)
    whole_rows = _validated(run)

    monkeypatch.setitem(phases._PIECE_ROWS, "trajectories", (7, 7))
    monkeypatch.setitem(phases._PIECE_ROWS, "tachometer", (500, 500))
    monkeypatch.setattr(phases, "_VALIDATE_VERTICES_MAX", 200)
    raw = run.store("raw")
    ranged = {dataset: pipeline.plan_pieces(raw, dataset, target_rows=phases._PIECE_ROWS[dataset][0], max_rows=phases._PIECE_ROWS[dataset][1],
                                            **phases._vertex_bound(run.settings.contract, dataset))
              for dataset in ("trajectories", "tachometer")}
    # The file of planted defects (6 trips) stays one piece; the others are cut into ranges.
    assert all(sum(p.row_range is not None for p in pieces) >= 10 for pieces in ranged.values())
    assert all(p.vertices <= 200 * 1.2 for p in ranged["trajectories"] if p.row_range is not None)

    split = phases.validate(run, client)
    split_rows = _validated(run)

    assert split.counts["datasets"] == whole.counts["datasets"]
    assert whole.counts["datasets"]["trajectories"]["rejected"] > 0
    assert whole.counts["datasets"]["tachometer"]["rows_in"] >= 500 * 10
    for folder, frame in whole_rows.items():
        pd.testing.assert_frame_equal(split_rows[folder], frame, check_dtype=False, obj=folder)
    # Repeated rows name the file and row of the kept copy; the ranges must keep that row.
    details = split_rows[f"{pipeline.REJECTS}/trajectories"]["detail"].astype(str)
    assert details.str.contains("row").any()


# -- small files share a piece ---------------------------------------------------------------------


def _small_file(root: Path, name: str, rows: int, *, extra: bool = False, pandas_meta: bytes = b"") -> None:
    columns = {"vehicle_id": pa.array([f"V{i}" for i in range(rows)]), "speed_kmh": pa.array(np.arange(rows, dtype=np.float64))}
    if extra:
        columns["driver_note"] = pa.array(["x"] * rows)
    table = pa.table(columns)
    if pandas_meta:
        table = table.replace_schema_metadata({b"pandas": pandas_meta})
    (root / "tachometer").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / "tachometer" / name)


class TestSmallFiles:
    def test_files_of_one_schema_share_pieces(self, tmp_path: Path) -> None:
        for i in range(10):
            _small_file(tmp_path, f"part-{i:02d}.parquet", 3, pandas_meta=f'{{"stop": {i}}}'.encode())

        pieces = pipeline.plan_pieces(Store(str(tmp_path)), "tachometer", target_rows=8, max_rows=100)

        assert [[path for path, _, _ in p.parts] for p in pieces] == [
            [f"tachometer/part-{i:02d}.parquet" for i in range(start, min(start + 3, 10))] for start in (0, 3, 6)
        ] + [[]]
        assert [p.rows for p in pieces] == [9, 9, 9, 3]
        assert pieces[-1].path == "tachometer/part-09.parquet"
        assert [p.index for p in pieces] == [0, 1, 2, 3]

    def test_other_schema_starts_piece(self, tmp_path: Path) -> None:
        _small_file(tmp_path, "part-0.parquet", 3)
        _small_file(tmp_path, "part-1.parquet", 3, extra=True)
        _small_file(tmp_path, "part-2.parquet", 3, extra=True)
        _small_file(tmp_path, "part-3.parquet", 50)
        _small_file(tmp_path, "part-4.parquet", 3)

        pieces = pipeline.plan_pieces(Store(str(tmp_path)), "tachometer", target_rows=20, max_rows=100)

        assert [(p.path, len(p.parts), p.rows) for p in pieces] == [
            ("tachometer/part-0.parquet", 0, 3),
            ("tachometer/part-1.parquet", 2, 6),
            ("tachometer/part-3.parquet", 0, 50),
            ("tachometer/part-4.parquet", 0, 3),
        ]

    def test_geopandas_files_grouped_by_crs(self, tmp_path: Path) -> None:
        (tmp_path / "trajectories").mkdir()
        for i in range(5):
            lines = [shapely.LineString([(139.7 + i * 0.01 + k * 1e-3, 35.6), (139.71 + i * 0.01 + k * 1e-3, 35.61)]) for k in range(3)]
            frame = gpd.GeoDataFrame({"trip_id": [f"T{i}-{k}" for k in range(3)]}, geometry=lines, crs="EPSG:4326")
            if i == 4:
                frame = frame.to_crs("EPSG:6677")
            # geopandas writes each file's own bounding box into the GeoParquet metadata.
            frame.to_parquet(tmp_path / "trajectories" / f"part-{i}.parquet")

        pieces = pipeline.plan_pieces(Store(str(tmp_path)), "trajectories", target_rows=100, max_rows=1_000)

        assert [[path for path, _, _ in p.parts] for p in pieces] == [[f"trajectories/part-{i}.parquet" for i in range(4)], []]
        assert pieces[1].path == "trajectories/part-4.parquet"

    def test_sources_name_each_file(self, tmp_path: Path) -> None:
        for i in range(3):
            _small_file(tmp_path, f"part-{i}.parquet", 4)
        pieces = pipeline.plan_pieces(Store(str(tmp_path)), "tachometer", target_rows=100, max_rows=100)
        sources = pipeline._piece_sources(pieces)

        assert sources == {0: [("tachometer/part-0.parquet", 0, 0), ("tachometer/part-1.parquet", 0, 4), ("tachometer/part-2.parquet", 0, 8)]}
        repeated = contract.RepeatedKeys(sources=sources)
        details = repeated.kept_copy_details(np.array([0, 0, 0]), np.array([0, 5, 11]))
        assert [(d.params["file"], d.params["row"]) for d in details] == [
            ("tachometer/part-0.parquet", 0), ("tachometer/part-1.parquet", 1), ("tachometer/part-2.parquet", 3)
        ]


def test_grouped_files_validate_alike(tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """40 files of 2 trips, with a copy of a trip of file 3 in file 30: grouped pieces give the file-by-file result."""
    settings = load_settings("local", environ={}, overrides={"data_dir": str(tmp_path)})
    inputs = Store(settings.url("input", RUN_DATE))
    write_sample_day(inputs, RUN_DATE, SampleSpec(trips=80, vertices_per_trip=20, grid_cells=24, trips_per_file=1_000))
    whole = pq.read_table(inputs.path("trajectories/part-00000.parquet"))
    Path(inputs.path("trajectories/part-00000.parquet")).unlink()
    for i in range(40):
        part = whole.slice(2 * i, 2)
        if i == 30:
            part = pa.concat_tables([part, whole.slice(7, 1)])
        pq.write_table(part, inputs.path(f"trajectories/part-{i:05d}.parquet"))
    run = phases.DailyRun.create(settings, RUN_DATE, force=True)
    phases.fetch(run)

    grouped = phases.validate(run, client)
    grouped_rows = _validated(run)
    raw = run.store("raw")
    assert any(p.parts for p in pipeline.plan_pieces(raw, "trajectories", target_rows=500, max_rows=20_000))

    # Every file its own piece, as before small files were grouped.
    monkeypatch.setattr(pipeline, "target_rows_for", lambda *args, **kwargs: 1)
    by_file = phases.validate(run, client)
    by_file_rows = _validated(run)

    assert grouped.counts["datasets"] == by_file.counts["datasets"]
    for folder, frame in by_file_rows.items():
        pd.testing.assert_frame_equal(grouped_rows[folder], frame, check_dtype=False, obj=folder)
    repeated = by_file_rows[f"{pipeline.REJECTS}/trajectories"]
    copy = repeated[repeated["reason"] == "row_repeated"]
    assert copy["detail"].tolist() == ["the kept copy is row 1 of trajectories/part-00003.parquet, counting from 0"]
