"""The Dask graph of the validate and compute phases: pure functions mapped over partitions.

A partition ("piece") is a run of row groups of one Parquet file. One task processes each piece:
it reads the piece with pyarrow (only the columns the stage needs) and runs the pure domain
functions. It writes its own outputs under ``temp/`` with a deterministic name, so a retried or
repeated task overwrites rather than duplicates.

Stages
------
1. validate: dataset-level checks on every file footer (before any task runs); small datasets
   (vehicles, geo attributes) are validated on the client; trajectory and tachograph pieces on
   the cluster. Accepted rows go to ``temp/validated/`` (trajectories in row groups of about
   :data:`ROW_GROUP_VERTICES` vertices, with the vertex counts in the footer), rejects to
   ``temp/rejects/``.
2. compute: pieces of about equal vertex counts are planned from the footers; the trip index
   (trip, vehicle, interval, piece) is gathered and broadcast; each tachograph file is aligned to
   trips into one file with a row group per piece; each piece is then segmented, joined to the
   broadcast geo layers, given its tachograph row groups and estimated.

Memory per worker is bounded by the piece size (about 2.4 KB per vertex measured through the
emission estimate, at most 1,000,000 vertices per piece) plus the broadcast layers and trip
index, independent of the size of the day.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import geopandas as gpd
import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely
from distributed import Client, wait

from compute import columns as c
from compute import contract, metrics, segments, spatial, tachograph
from compute.emissions import TRIP_OUTPUT_DTYPES, EmissionModel, ResolvedVehicles, estimate_trips, load_model, resolve_vehicles
from compute.settings import Settings
from compute.storage import ObjectRecord, Store

VALIDATED = "validated"
REJECTS = "rejects"
SEGMENTS = "segments"
TRIPS = "trips"
BREAKDOWN = "breakdown"
TACHO_ALIGNED = "tacho_aligned"
TRIP_INDEX_COLUMNS = (c.TRIP_ID, c.VEHICLE_ID, c.START_TIME, c.END_TIME, "piece")
#: Vertices per row group of the validated trajectories; compute pieces are whole row groups.
ROW_GROUP_VERTICES = 131_072
#: Parquet key-value metadata of validated trajectories: vertices per row group (JSON list).
VERTICES_KEY = b"lmco2.row_group_vertices"


@dataclass(frozen=True)
class Piece:
    """One partition: some row groups of one Parquet file of a dataset."""

    dataset: str
    path: str
    row_groups: tuple[int, ...]
    rows: int
    index: int
    vertices: int = 0  # trajectory vertices (from the footer; 0 where unknown)
    #: Rows ``[start, stop)`` of the piece's only row group, when that row group is too large
    #: to be one piece; ``None`` for whole row groups.
    row_range: tuple[int, int] | None = None
    #: ``(path, row groups, rows)`` of each file of a piece made of several small files, in
    #: order; empty for a piece of one file. ``path`` and ``row_groups`` are then the first's.
    parts: tuple[tuple[str, tuple[int, ...], int], ...] = ()

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}.parquet"


@dataclass
class StoreRef:
    """Picklable reference to a store, rebuilt on the worker."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)

    def open(self) -> Store:
        return Store(self.url, self.options)


# -- planning ----------------------------------------------------------------------------------


def dask_setup(worker: Any) -> None:
    """Ignore SIGINT in a worker process of its own; Dask calls this when the worker preloads the module.

    Ctrl-C at a terminal sends SIGINT to every process of the foreground group, the workers of a
    LocalCluster included, and each printed a KeyboardInterrupt traceback while the command
    stopped the run in order (``flows.interrupt``). The workers then end with their cluster. A
    worker inside the command's own process (``processes=False``) leaves the signal alone.

    A worker process also drops the warning that a task "ended with CancelledError", which
    distributed 2026.8 logs for each task still running when the worker closes
    (``worker_state_machine``). A stopped run printed one such English line per task before the
    command's own message, to the stderr that the worker process shares with the command.

    The error that a heartbeat could not reach the scheduler keeps its line but loses its
    traceback. On a loaded machine it came when the scheduler closed before a worker at the end
    of a run that succeeded, and the operator read a traceback of a TCP read.
    """
    import multiprocessing
    import signal

    if multiprocessing.parent_process() is None:
        return
    logging.getLogger("distributed.worker.state_machine").addFilter(_drop_cancelled_instructions)
    logging.getLogger("distributed.worker").addFilter(_heartbeat_without_traceback)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # only the main thread may set handlers
        pass


def _drop_cancelled_instructions(record: logging.LogRecord) -> bool:
    """Return False for distributed's warning about a task cancelled while its worker closes."""
    return not (record.levelno == logging.WARNING and str(record.msg).endswith("ended with CancelledError"))


def _heartbeat_without_traceback(record: logging.LogRecord) -> bool:
    """Keep distributed's heartbeat error as one line: drop its traceback, keep every record."""
    if str(record.msg).startswith("Failed to communicate with scheduler during heartbeat"):
        record.exc_info = None
        record.exc_text = None
    return True


def list_dataset_files(store: Store, dataset: str) -> list[str]:
    """Parquet files of ``dataset`` below ``store``, sorted."""
    return [name for name in store.list(dataset) if name.endswith(".parquet")]


#: Files whose footer the client reads at once. On GCS or S3 a footer costs one or two small
#: ranged GETs, and their latency, tens of milliseconds, dominates: a day of 400 files per
#: dataset needs hundreds of footers per phase, which one thread reads one after another.
FOOTER_THREADS = 16

_T = TypeVar("_T")
_R = TypeVar("_R")


def in_threads(function: Callable[[_T], _R], items: Sequence[_T], *, threads: int = FOOTER_THREADS) -> list[_R]:
    """Return ``[function(item) for item in items]``, computed by up to ``threads`` threads.

    Meant for calls that wait on storage. Results keep the order of ``items``, and of several
    exceptions the one of the earliest item is raised.
    """
    if len(items) <= 1 or threads <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items)), thread_name_prefix="lmco2-footers") as pool:
        return list(pool.map(function, items))


def read_footers(store: Store, names: Sequence[str], *, threads: int = FOOTER_THREADS) -> list[pq.FileMetaData]:
    """Return the Parquet footer of each of ``names``, in order, read in threads (:func:`in_threads`)."""

    def footer(name: str) -> pq.FileMetaData:
        with store.open(name) as handle:
            return pq.ParquetFile(handle).metadata

    return in_threads(footer, names, threads=threads)


def plan_pieces(
    store: Store,
    dataset: str,
    *,
    target_rows: int,
    max_rows: int | None = None,
    max_vertices: int | None = None,
    vertex_columns: tuple[str, str] | None = None,
) -> list[Piece]:
    """Group the row groups of every file of ``dataset`` into pieces of about ``target_rows`` rows.

    A piece stays within ``max_rows`` rows and, for trajectories, within ``max_vertices``
    vertices. ``vertex_columns`` names the source columns of the timestamps and the geometry.
    The vertices come from the footer, so no data is read: the value count of the timestamps
    list, or without that column the WKB bytes of the geometry divided by 16 (two float64 per
    vertex). Clients' writers often put a whole file in one row group (pyarrow and
    geopandas write up to 1,048,576 rows per group by default). A row group above either bound
    becomes several pieces of equal row ranges (:attr:`Piece.row_range`), which
    :func:`read_piece` reads batch by batch.
    """
    pieces: list[Piece] = []
    paths = list_dataset_files(store, dataset)
    row_limit, vertex_limit = max_rows or math.inf, max_vertices or math.inf
    small: list[tuple[str, tuple[int, ...], int, int]] = []
    small_schema: tuple[pa.Schema, str | None] | None = None
    for path, meta in zip(paths, read_footers(store, paths), strict=True):
        counter = _vertex_counter(meta, *vertex_columns) if vertex_columns else _no_vertices
        file_pieces = list(_file_pieces(meta, counter, target_rows, row_limit, vertex_limit))
        groups, rows, vertices, row_range = file_pieces[0]
        arrow_schema = meta.schema.to_arrow_schema()
        # Same columns and types, and the same GeoParquet metadata (its CRS). Other metadata
        # differs from file to file: the index range that pandas records, and the bounding box
        # that geopandas writes per file.
        schema = (arrow_schema.remove_metadata(), _geo_without_bbox((arrow_schema.metadata or {}).get(b"geo")))
        if len(file_pieces) == 1 and row_range is None and rows < target_rows:
            # Small files of one schema share a piece, so a day of thousands of files does not
            # become thousands of tasks (and validated files) of a few rows each.
            if small and (schema != small_schema or sum(part[2] for part in small) + rows > row_limit
                          or sum(part[3] for part in small) + vertices > vertex_limit):
                pieces.append(_small_files_piece(dataset, small, len(pieces)))
                small = []
            small.append((path, groups, rows, vertices))
            small_schema = schema
            if sum(part[2] for part in small) >= target_rows:
                pieces.append(_small_files_piece(dataset, small, len(pieces)))
                small = []
            continue
        if small:
            pieces.append(_small_files_piece(dataset, small, len(pieces)))
            small = []
        for groups, rows, vertices, row_range in file_pieces:
            pieces.append(Piece(dataset, path, groups, rows, len(pieces), vertices, row_range))
    if small:
        pieces.append(_small_files_piece(dataset, small, len(pieces)))
    return pieces


def _geo_without_bbox(geo: bytes | None) -> str | None:
    """Return GeoParquet metadata as canonical JSON without the per-file ``bbox`` of its columns."""
    if geo is None:
        return None
    try:
        data = json.loads(geo)
    except ValueError:
        return geo.decode("utf-8", errors="replace")
    if isinstance(data, dict) and isinstance(data.get("columns"), dict):
        for column in data["columns"].values():
            if isinstance(column, dict):
                column.pop("bbox", None)
    return json.dumps(data, sort_keys=True)


def _small_files_piece(dataset: str, files: list[tuple[str, tuple[int, ...], int, int]], index: int) -> Piece:
    """Return one piece of whole small files, given as ``(path, row groups, rows, vertices)``."""
    path, groups, rows, vertices = files[0]
    if len(files) == 1:
        return Piece(dataset, path, groups, rows, index, vertices)
    parts = tuple((part_path, part_groups, part_rows) for part_path, part_groups, part_rows, _ in files)
    return Piece(dataset, path, groups, sum(part[2] for part in files), index, sum(part[3] for part in files), None, parts)


def _file_pieces(
    meta: pq.FileMetaData, vertices_of: Callable[[pq.RowGroupMetaData], int], target_rows: int, max_rows: float, max_vertices: float
) -> Iterator[tuple[tuple[int, ...], int, int, tuple[int, int] | None]]:
    """Yield ``(row groups, rows, vertices, row range)`` of the pieces of one file (:func:`plan_pieces`)."""
    if meta.num_row_groups == 0:
        yield (), 0, 0, None
        return
    group: list[int] = []
    rows = vertices = 0
    for rg in range(meta.num_row_groups):
        rg_rows = meta.row_group(rg).num_rows
        rg_vertices = vertices_of(meta.row_group(rg))
        if group and (rg_rows > max_rows or vertices + rg_vertices > max_vertices):
            yield tuple(group), rows, vertices, None
            group, rows, vertices = [], 0, 0
        if rg_rows > max_rows or rg_vertices > max_vertices:
            n_ranges = math.ceil(max(rg_rows / max_rows, rg_vertices / max_vertices))
            bounds = [int(x) for x in np.linspace(0, rg_rows, n_ranges + 1).round()]
            for start, stop in itertools.pairwise(bounds):
                yield (rg,), stop - start, round(rg_vertices * (stop - start) / rg_rows), (start, stop)
            continue
        group.append(rg)
        rows += rg_rows
        vertices += rg_vertices
        if rows >= target_rows:
            yield tuple(group), rows, vertices, None
            group, rows, vertices = [], 0, 0
    if group:
        yield tuple(group), rows, vertices, None


def _vertex_counter(meta: pq.FileMetaData, timestamps: str, geometry: str) -> Callable[[pq.RowGroupMetaData], int]:
    """Return a function that counts (or, from the WKB bytes, bounds) the vertices of a row group."""
    leaves: dict[str, list[int]] = {}
    for j in range(meta.num_columns):
        leaves.setdefault(meta.schema.column(j).path.split(".")[0], []).append(j)
    if len(leaves.get(timestamps, ())) == 1:
        leaf = leaves[timestamps][0]
        return lambda group: int(group.column(leaf).num_values)
    if len(leaves.get(geometry, ())) == 1:
        leaf = leaves[geometry][0]
        return lambda group: int(group.column(leaf).total_uncompressed_size) // 16
    return _no_vertices


def _no_vertices(group: pq.RowGroupMetaData) -> int:
    return 0


def target_rows_for(store: Store, dataset: str, *, n_workers: int, rows_per_piece_max: int, rows_per_piece_min: int) -> int:
    """Choose rows per piece from the day's size: a few pieces per worker, bounded for memory."""
    total = sum(meta.num_rows for meta in read_footers(store, list_dataset_files(store, dataset)))
    wanted = math.ceil(total / max(1, 4 * n_workers)) if total else rows_per_piece_min
    return int(min(rows_per_piece_max, max(rows_per_piece_min, wanted)))


# -- reading and writing pieces ----------------------------------------------------------------


def read_piece(store: Store, piece: Piece, settings: contract.ContractSettings, columns: list[str] | None = None) -> pa.Table:
    """Read one piece and conform it to the contract."""
    if piece.parts:
        # The files of one piece have one schema (see plan_pieces), so their rows concatenate as read.
        tables = [_read_raw_of(store, piece.dataset, path, groups, None, columns) for path, groups, _ in piece.parts]
        return contract.conform_table(piece.dataset, pa.concat_tables(tables), settings)
    table = _read_raw_of(store, piece.dataset, piece.path, piece.row_groups, piece.row_range, columns)
    return contract.conform_table(piece.dataset, table, settings)


def _read_raw_of(
    store: Store, dataset: str, path: str, row_groups: tuple[int, ...], row_range: tuple[int, int] | None, columns: list[str] | None,
) -> pa.Table:
    """Read as :func:`_read_raw` does; a file whose data cannot be decoded raises the contract's ``file_unreadable``.

    Its footer was read when the pieces were planned, so this is a damaged data page (a byte
    changed after the fetch, say), which pyarrow reports as a decompression or decoding error
    that names no file.
    """
    try:
        return _read_raw(store, path, row_groups, row_range, columns)
    except (OSError, pa.ArrowException) as error:
        raise contract.file_unreadable(dataset, path, error) from error


def _read_raw(store: Store, path: str, row_groups: tuple[int, ...], row_range: tuple[int, int] | None, columns: list[str] | None) -> pa.Table:
    """Read row groups (or a row range of one) of one file as they are, with the file's schema metadata."""
    with store.open(path) as handle:
        if row_range is not None:
            parquet = pq.ParquetFile(handle, buffer_size=RANGE_BUFFER_BYTES, pre_buffer=False)
            table = _read_row_range(parquet, row_groups[0], row_range, columns)
        else:
            parquet = pq.ParquetFile(handle)
            table = parquet.read_row_groups(list(row_groups), columns=columns) if row_groups else parquet.schema_arrow.empty_table()
        metadata = parquet.schema_arrow.metadata
    if metadata and not table.schema.metadata:
        table = table.replace_schema_metadata(metadata)
    return table


#: Read buffer of a row range: the column chunks stream through it instead of being loaded whole.
RANGE_BUFFER_BYTES = 8 << 20


def _read_row_range(parquet: pq.ParquetFile, row_group: int, row_range: tuple[int, int], columns: list[str] | None) -> pa.Table:
    """Return rows ``[start, stop)`` of one row group, decoded batch by batch.

    Parquet has no index from rows to pages that pyarrow exposes, so the batches before
    ``start`` are decoded and dropped. Memory stays near the range's own size. The cost is
    decoding: a row group cut into k ranges is decoded about (k + 1) / 2 times.
    """
    start, stop = row_range
    batch_rows = max(1, min(65_536, (stop - start) // 8))
    parts: list[pa.RecordBatch] = []
    schema = None
    seen = 0
    for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[row_group], columns=columns, use_threads=False):
        schema = batch.schema
        lo, seen = seen, seen + batch.num_rows
        if seen > start and lo < stop:
            parts.append(batch.slice(max(0, start - lo), min(seen, stop) - max(lo, start)))
        if seen >= stop:
            break
    if schema is None:
        return parquet.read_row_groups([row_group], columns=columns).slice(0, 0)
    return pa.Table.from_batches(parts, schema=schema).combine_chunks()


def read_table(store: Store, relative: str) -> pa.Table:
    with store.open(relative) as handle:
        return pq.read_table(handle)


def read_folder(store: Store, relative: str) -> pa.Table | None:
    """Concatenate every Parquet file below ``relative``; None if there is none."""
    names = [n for n in store.list(relative) if n.endswith(".parquet")]
    if not names:
        return None
    tables = [read_table(store, n) for n in names]
    return pa.concat_tables(tables, promote_options="permissive")


def write_table(
    store: Store,
    relative: str,
    table: pa.Table,
    metadata: dict[str, str] | None = None,
    compression: str = "zstd",
    statistics: bool = True,
    md5: bool = True,
    split_floats: bool = False,
) -> ObjectRecord:
    """Write ``table`` as one Parquet object in one PUT, with optional ``lmco2`` metadata.

    Returns the object's record (size and checksums of the bytes written), so a manifest can be
    built without reading the object back.

    Only text and dictionary columns are dictionary-encoded: trying it on float columns costs
    more CPU than it saves bytes. ``statistics=False`` skips column min/max for intermediates
    that are always read whole (together about 2.5x less write CPU on a 750k-segment piece).
    ``split_floats=True`` stores float columns with the ``BYTE_STREAM_SPLIT`` encoding, which
    lets lz4 compress measured values, whose high bytes repeat, to fewer bytes in less time.
    It also stores timestamps as ``DELTA_BINARY_PACKED`` without compression: times that mostly
    step by a few seconds pack into a few bits each, in less time than lz4 takes on the plain
    values. (``BYTE_STREAM_SPLIT`` would suit timestamps too, but DuckDB 1.4 reads it only for
    floats.)
    """
    if metadata:
        existing = dict(table.schema.metadata or {})
        existing[b"lmco2"] = json.dumps(metadata, sort_keys=True).encode("utf-8")
        table = table.replace_schema_metadata(existing)
    data = parquet_bytes(table, compression=compression, statistics=statistics, split_floats=split_floats)
    return store.write_bytes(relative, data, md5=md5)


def parquet_bytes(table: pa.Table, *, compression: str = "zstd", statistics: bool = True, split_floats: bool = False) -> memoryview:
    """Encode ``table`` as one Parquet file in memory, with the options of :func:`write_table`.

    The bytes are those of an Arrow buffer (see :func:`_arrow_sink`).
    """
    textual = [f.name for f in table.schema if pa.types.is_dictionary(f.type) or pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    buffer = pa.BufferOutputStream()
    encodings: dict[str, str] | None = None
    codecs: str | dict[str, str] = compression
    if split_floats:
        # float32 and float64 only: DuckDB 1.4 rejects BYTE_STREAM_SPLIT on float16.
        encodings = {f.name: "BYTE_STREAM_SPLIT" for f in table.schema if pa.types.is_float32(f.type) or pa.types.is_float64(f.type)}
        times = [f.name for f in table.schema if pa.types.is_timestamp(f.type)]
        encodings.update({name: "DELTA_BINARY_PACKED" for name in times})
        codecs = {f.name: "none" if f.name in times else compression for f in table.schema}
    pq.write_table(table, buffer, compression=codecs, use_dictionary=textual, write_statistics=statistics, column_encoding=encodings)
    return _arrow_sink(buffer)


def _arrow_sink(buffer: pa.BufferOutputStream) -> memoryview:
    """Return the bytes written to ``buffer`` without copying them.

    The Parquet writer writes to an Arrow output stream in C++. A Python ``io.BytesIO`` costs a
    call and a copy per page, and its final ``getvalue`` another copy: about a third of the CPU
    of encoding a 750k-segment piece.
    """
    return memoryview(buffer.getvalue())


def from_frame(frame: pd.DataFrame) -> pa.Table:
    """Convert a validated frame back to Arrow, geometry as WKB."""
    if isinstance(frame, gpd.GeoDataFrame) and c.GEOMETRY in frame.columns:
        plain = pd.DataFrame(frame.drop(columns=[c.GEOMETRY]))
        table = pa.Table.from_pandas(plain, preserve_index=False)
        wkb = shapely.to_wkb(np.asarray(frame.geometry.array, dtype=object))
        return table.append_column(c.GEOMETRY, pa.array(wkb, pa.binary()))
    return pa.Table.from_pandas(frame, preserve_index=False)


# -- validate ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidatedPiece:
    """Counts of one validated piece, and the records (size, checksums) of the files it wrote."""

    summary: contract.DatasetSummary
    objects: list[ObjectRecord]


def validate_piece(
    raw: StoreRef,
    temp: StoreRef,
    piece: Piece,
    settings: contract.ContractSettings,
    context: contract.ValidationContext,
) -> ValidatedPiece:
    """Validate one piece; write accepted rows and rejects under ``temp/`` (task body)."""
    table = read_piece(raw.open(), piece, settings)
    frame = contract.to_frame(piece.dataset, table, max_vertices=settings.thresholds.max_vertices_per_trip)
    accepted, rejects = contract.validate_rows(piece.dataset, frame, context, piece=piece.index)
    temp_store = temp.open()
    objects = [
        write_accepted(temp_store, piece.dataset, piece.name, table, accepted),
        write_table(temp_store, f"{REJECTS}/{piece.dataset}/{piece.name}", rejects_table(rejects)),
    ]
    return ValidatedPiece(contract.summarize_partition(piece.dataset, len(frame), accepted, rejects), objects)


def write_accepted(store: Store, dataset: str, name: str, table: pa.Table, accepted: pd.DataFrame) -> ObjectRecord:
    """Write accepted rows; untouched rows are taken from the Arrow table, repaired ones re-encoded."""
    if dataset == "geo_attributes":
        out = from_frame(accepted)
    else:
        out = table.take(pa.array(accepted.index.to_numpy(dtype=np.int64)))
    if dataset == "trajectories":
        return write_trajectories(store, f"{VALIDATED}/{dataset}/{name}", out)
    return write_table(store, f"{VALIDATED}/{dataset}/{name}", out)


def write_trajectories(store: Store, relative: str, table: pa.Table) -> ObjectRecord:
    """Write trajectories in row groups of about :data:`ROW_GROUP_VERTICES` vertices.

    The vertex count of every row group goes to the metadata key :data:`VERTICES_KEY`, so the
    compute phase sizes its pieces from the footers alone.
    """
    counts = segments.vertex_counts(table.column(c.GEOMETRY)) if c.GEOMETRY in table.column_names else np.ones(table.num_rows, np.int64)
    mean = max(1.0, float(counts.mean())) if len(counts) else 1.0
    rows_per_group = max(1, int(ROW_GROUP_VERTICES // mean))
    sums = np.add.reduceat(counts, np.arange(0, len(counts), rows_per_group)) if len(counts) else np.zeros(0, np.int64)
    metadata = dict(table.schema.metadata or {})
    metadata[VERTICES_KEY] = json.dumps([int(v) for v in sums]).encode("utf-8")
    buffer = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(metadata), buffer, compression="zstd", row_group_size=rows_per_group)
    return store.write_bytes(relative, _arrow_sink(buffer))


def rejects_table(rejects: pd.DataFrame) -> pa.Table:
    frame = rejects.reindex(columns=list(contract.REJECT_COLUMNS))
    return pa.Table.from_pandas(frame.astype({col: "string" for col in contract.REJECT_COLUMNS}).astype(object), preserve_index=False,
                                schema=pa.schema([(col, pa.string()) for col in contract.REJECT_COLUMNS]))


def duplicate_keys(
    client: Client, raw: StoreRef, pieces: list[Piece], settings: contract.ContractSettings, timeout_s: float | None = None
) -> np.ndarray:
    """Keys that occur more than once anywhere in the day, whether their copies are identical or not.

    See :func:`repeated_keys`, which also separates identical copies from conflicting ones.
    """
    return repeated_keys(client, raw, pieces, settings, timeout_s).keys


def repeated_keys(
    client: Client, raw: StoreRef, pieces: list[Piece], settings: contract.ContractSettings, timeout_s: float | None = None
) -> contract.RepeatedKeys:
    """Keys that occur more than once anywhere in the day, found without gathering every key.

    Pass 1 hashes the keys of each piece into buckets that stay on the workers; one task per
    bucket finds the hashes seen twice. Pass 2 returns, for the rows whose key hash repeats
    only, the key text, a hash of the row's content and the row's position (piece index, row).
    :func:`contract.find_repeated_keys` confirms the keys on the real key text, so a collision
    of key hashes cannot reject a row. It then keeps the first of identical copies and marks
    the keys of differing copies as conflicting. The client receives only the rows whose key
    hash repeats, never all keys of the day.

    Returns
    -------
    contract.RepeatedKeys
        Sources name each piece's file and the row of that file where the piece starts, so
        ``row_repeated`` details name the file and row of the kept copy.
    """
    sources = _piece_sources(pieces)
    if not pieces:
        return contract.RepeatedKeys(sources=sources)
    n = len(pieces)
    # Pieces times buckets selection tasks: a day of 3,000 small files made 192,000 of them, and
    # submitting them one by one took longer than validating. At most about 4,096, in one map.
    n_buckets = max(1, min(n, 64, 4_096 // n))
    hashed = client.map(_key_hash_buckets, [raw] * n, pieces, [settings] * n, [n_buckets] * n, pure=False)
    selected = client.map(operator.getitem, [part for part in hashed for _ in range(n_buckets)], list(range(n_buckets)) * n, pure=False)
    repeated = [client.submit(_repeated_hashes, *selected[bucket::n_buckets], pure=False) for bucket in range(n_buckets)]
    suspects = np.concatenate(gather(client, repeated, timeout_s)) if repeated else np.array([], dtype=np.uint64)
    del hashed
    if suspects.size == 0:
        return contract.RepeatedKeys(sources=sources)
    suspects_future = scatter_broadcast(client, suspects)
    occurrences = gather(
        client, client.map(_occurrences_with_hashes, [raw] * n, pieces, [settings] * n, [suspects_future] * n, pure=False), timeout_s
    )
    return contract.find_repeated_keys(occurrences, sources)


def _piece_sources(pieces: list[Piece]) -> dict[int, list[tuple[str, int, int]]]:
    """Return per piece index ``(file, row of the file, row of the piece)`` where each of its files starts."""
    sources: dict[int, list[tuple[str, int, int]]] = {}
    rows_before: dict[str, int] = {}
    for piece in sorted(pieces, key=lambda p: p.index):
        if piece.parts:
            starts = itertools.accumulate((rows for _, _, rows in piece.parts[:-1]), initial=0)
            sources[piece.index] = [(path, 0, start) for (path, _, _), start in zip(piece.parts, starts, strict=True)]
            continue
        first_row = rows_before.get(piece.path, 0)
        sources[piece.index] = [(piece.path, first_row, 0)]
        rows_before[piece.path] = first_row + piece.rows
    return sources


def _table_key_hashes(dataset: str, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Return the positions of the rows of ``table`` that have a key, and the hash of each of those keys."""
    return contract.key_hashes(dataset, table.select(list(contract.KEY_COLUMNS[dataset])).to_pandas())


def _key_hash_buckets(raw: StoreRef, piece: Piece, settings: contract.ContractSettings, n_buckets: int) -> list[np.ndarray]:
    _, hashes = _table_key_hashes(piece.dataset, read_piece(raw.open(), piece, settings, columns=None))
    bucket = (hashes % np.uint64(n_buckets)).astype(np.int64)
    order = np.argsort(bucket, kind="stable")
    bounds = np.cumsum(np.bincount(bucket, minlength=n_buckets))[:-1]
    return np.split(hashes[order], bounds)


def _repeated_hashes(*parts: np.ndarray) -> np.ndarray:
    values, counts = np.unique(np.concatenate(parts) if parts else np.array([], dtype=np.uint64), return_counts=True)
    return values[counts > 1]


def _occurrences_with_hashes(raw: StoreRef, piece: Piece, settings: contract.ContractSettings, suspects: np.ndarray) -> pd.DataFrame:
    """Return key, content hash and position of the rows of one piece whose key hash is in ``suspects``."""
    table = read_piece(raw.open(), piece, settings, columns=None)
    rows, hashes = _table_key_hashes(piece.dataset, table)
    return contract.key_occurrences(piece.dataset, table, piece.index, rows[np.isin(hashes, suspects)])


# -- compute -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TripIndex:
    """Every accepted trip of the day with its interval and the compute piece that contains it.

    Broadcast to the tachograph alignment tasks; about 60 bytes per trip plus the ids.
    """

    trip_ids: np.ndarray  # object, in piece order, then row order within the piece
    vehicle_ids: pd.Index  # unique vehicle ids of the trips
    vehicle_codes: np.ndarray  # per trip, position in vehicle_ids
    start_ms: np.ndarray  # per trip, epoch ms (float, NaN when unknown)
    end_ms: np.ndarray
    piece: np.ndarray  # per trip, compute piece index
    row: np.ndarray  # per trip, row within its piece

    @property
    def n_trips(self) -> int:
        return len(self.trip_ids)

    @functools.cached_property
    def pieces_ascending(self) -> bool:
        """Whether the trips are numbered in piece order, checked once (a pass over every trip)."""
        return bool(np.all(np.diff(self.piece) >= 0))

    @functools.cached_property
    def trip_keys(self) -> tachograph.TripKeys:
        """The trips sorted for :func:`tachograph.assign_trips`, once for all alignment tasks."""
        return tachograph.sort_trips(self.vehicle_codes, self.start_ms)


#: Serialises :meth:`VehicleMaster.resolved` within a worker process (a lock cannot be pickled
#: with the broadcast master, so it lives here).
_RESOLVE_LOCK = threading.Lock()


@dataclass(frozen=True)
class VehicleMaster:
    """The vehicle master as broadcast to the compute tasks: one row per vehicle id, first row kept.

    The object stays in the worker's memory between tasks. The first task that calls
    :meth:`resolved` joins every vehicle to its class parameters and calibration, and the
    following pieces only look up their trips' vehicles in that result. Resolving per piece cost
    about 50 ms of pandas operations for 2,499 trips, a cost set by the number of operations more
    than by the rows. The lookup costs about 10 ms, and resolving the 25,000 vehicles of the
    100k-trip benchmark day once about 0.1 s.
    """

    frame: pd.DataFrame
    ids: pd.Index
    _resolved: dict[int, tuple[EmissionModel, ResolvedVehicles]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, vehicles: pd.DataFrame) -> VehicleMaster:
        """Build the master from the validated vehicles, keeping the first row of a repeated id."""
        frame = vehicles.drop_duplicates(c.VEHICLE_ID, keep="first").reset_index(drop=True)
        return cls(frame, pd.Index(frame[c.VEHICLE_ID].to_numpy(dtype=object)))

    def resolved(self, model: EmissionModel) -> ResolvedVehicles:
        """Return every vehicle resolved for ``model``, computed on the first call and kept.

        Only the latest model is kept. The entry keeps a reference to the model, so its id cannot
        be reused by another model while the entry exists.
        """
        entry = self._resolved.get(id(model))
        if entry is None or entry[0] is not model:
            # Threads of one worker that start at once resolve once; the others wait for it.
            with _RESOLVE_LOCK:
                entry = self._resolved.get(id(model))
                if entry is None or entry[0] is not model:
                    self._resolved.clear()
                    entry = (model, resolve_vehicles(self.frame, model))
                    self._resolved[id(model)] = entry
        return entry[1]


@dataclass(frozen=True)
class TachoRowGroups:
    """Aligned tachograph rows of one compute piece inside one aligned file: its row groups."""

    path: str
    row_groups: tuple[int, ...]


@dataclass
class AlignResult:
    """Counts and the row-group directory of one aligned tachograph file."""

    rows: int
    aligned: int
    outside_trips: int
    path: str
    row_groups_by_piece: dict[int, list[int]]
    seconds: dict[str, float]


@dataclass
class PieceResult:
    """Totals and stage timings of one computed trajectory piece."""

    index: int
    trips: int
    segments: int
    fuel_l: float
    co2_ttw_kg: float
    matched_m: float
    length_m: float
    methods: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_bytes: int = 0  # largest resident memory of the worker process so far (VmHWM on Linux)
    objects: list[ObjectRecord] = field(default_factory=list)  # what the task wrote, for the manifest
    #: Trips without a litres figure by fuel type (CNG, electric), for the note under the litres total.
    trips_without_fuel_l: dict[str, int] = field(default_factory=dict)


def plan_compute_pieces(store: Store, *, n_workers: int, vertices_min: int, vertices_max: int, pieces_per_worker: int = 4) -> list[Piece]:
    """Group the row groups of the validated trajectories into pieces of about equal vertex counts.

    The target is the day's vertex count spread over ``pieces_per_worker`` pieces per worker, kept
    between ``vertices_min`` (task overhead) and ``vertices_max`` (memory per worker).
    """
    paths = list_dataset_files(store, f"{VALIDATED}/trajectories")
    layout = [(path, *groups) for path, groups in zip(paths, in_threads(lambda path: _row_group_layout(store, path), paths), strict=True)]
    total = sum(int(sum(groups)) for _, _, groups in layout)
    wanted = math.ceil(total / max(1, pieces_per_worker * n_workers)) if total else vertices_min
    target = int(min(vertices_max, max(vertices_min, wanted)))

    pieces: list[Piece] = []
    for path, rows, groups in layout:
        # A file of V vertices gives ceil(V / target) pieces of about equal size: row groups are
        # cut where the running vertex count passes each multiple of V / pieces. A file whose
        # rows were all rejected gives no piece.
        file_vertices = int(sum(groups))
        if file_vertices == 0 or sum(rows) == 0:
            continue
        n_pieces = max(1, math.ceil(file_vertices / target))
        running = np.cumsum(np.asarray(groups, dtype=np.int64))
        cut_at = np.searchsorted(running, np.arange(1, n_pieces) * file_vertices / n_pieces, side="left") + 1
        bounds = sorted({0, *[int(x) for x in cut_at if 0 < x < len(groups)], len(groups)})
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
            chosen = list(range(lo, hi))
            pieces.append(Piece("trajectories", path, tuple(chosen), sum(rows[g] for g in chosen), len(pieces),
                                int(sum(groups[g] for g in chosen))))
    return pieces


def trip_index_of_piece(temp: StoreRef, piece: Piece) -> pd.DataFrame:
    """Trip intervals of one compute piece: first and last vertex time, else start/end time."""
    wanted = [c.TRIP_ID, c.VEHICLE_ID, c.START_TIME, c.END_TIME, c.TIMESTAMPS]
    table = _read_row_groups(temp.open(), piece, wanted)
    start = table.column(c.START_TIME)
    end = table.column(c.END_TIME)
    if c.TIMESTAMPS in table.column_names and table.num_rows:
        ts = table.column(c.TIMESTAMPS)
        first = _list_first(ts)
        last = _list_last(ts)
        start = pc.coalesce(first, start.cast(first.type))
        end = pc.coalesce(last, end.cast(last.type))
    return pd.DataFrame(
        {
            c.TRIP_ID: table.column(c.TRIP_ID).to_numpy().astype(object),
            c.VEHICLE_ID: table.column(c.VEHICLE_ID).to_numpy().astype(object),
            c.START_TIME: _epoch_ms_of(start),
            c.END_TIME: _epoch_ms_of(end),
            "piece": np.full(table.num_rows, piece.index, dtype=np.int32),
        }
    )


def build_trip_index(parts: list[pd.DataFrame]) -> TripIndex:
    """Combine the per-piece trip intervals (in piece order) into one :class:`TripIndex`."""
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(TRIP_INDEX_COLUMNS))
    codes, vehicles = pd.factorize(frame[c.VEHICLE_ID].to_numpy(dtype=object))
    piece = frame["piece"].to_numpy(dtype=np.int64)
    sizes = np.bincount(piece, minlength=int(piece.max()) + 1 if len(piece) else 0)
    row = np.arange(len(piece), dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    index = TripIndex(
        trip_ids=frame[c.TRIP_ID].to_numpy(dtype=object),
        vehicle_ids=pd.Index(vehicles),
        vehicle_codes=codes.astype(np.int64),
        start_ms=frame[c.START_TIME].to_numpy(dtype=np.float64),
        end_ms=frame[c.END_TIME].to_numpy(dtype=np.float64),
        piece=piece,
        row=row,
    )
    # Filled before the index is broadcast, so every worker receives them computed.
    _ = index.trip_keys, index.pieces_ascending
    return index


#: Overlap of two trips of one vehicle that counts: consecutive trips often share their boundary
#: second or a few seconds of GPS fixes, which is not a second vehicle driving.
OVERLAP_TOLERANCE_S = 60.0


def overlapping_trips(index: TripIndex) -> dict[str, int]:
    """Count trips that start more than :data:`OVERLAP_TOLERANCE_S` before an earlier trip of their vehicle ends.

    A vehicle drives one trip at a time, so such trips point at a trip split twice or at two
    vehicles sharing an id. Tachograph records in the overlap are aligned to one of the trips only.
    """
    if index.n_trips == 0:
        return {"trips": 0, "vehicles": 0}
    order = np.lexsort((index.start_ms, index.vehicle_codes))
    vehicle = index.vehicle_codes[order]
    # Latest end among the vehicle's earlier trips (by start).
    latest_end = pd.Series(index.end_ms[order]).groupby(vehicle).cummax().groupby(vehicle).shift(1).to_numpy(dtype=np.float64)
    overlap = index.start_ms[order] < latest_end - OVERLAP_TOLERANCE_S * 1000.0
    return {"trips": int(overlap.sum()), "vehicles": int(np.unique(vehicle[overlap]).size)}


def align_tacho_piece(temp: StoreRef, relative: str, index: TripIndex) -> AlignResult:
    """Align one validated tachograph file to trips; write one file sorted by compute piece (task body).

    The output ``tacho_aligned/<name>`` contains one row group per compute piece that has rows in
    it, with the columns the emission model reads (``trip_row`` is the trip's row within its
    piece). Its directory of row groups is returned, so each compute task reads only its own
    row groups: one object per tachograph file instead of one per (file, piece) pair.
    """
    clock = _StageClock()
    store = temp.open()
    with store.open(relative) as handle:
        parquet = pq.ParquetFile(handle, read_dictionary=[c.VEHICLE_ID])
        present = set(parquet.schema_arrow.names)
        columns = [name for name in (c.VEHICLE_ID, c.TS, c.SPEED_KMH, c.FUEL_ML) if name in present]
        table = parquet.read(columns=columns)
    records = table.num_rows
    holes = rejected_tacho_records(store, f"{REJECTS}/tachometer/{relative.rsplit('/', 1)[-1]}")
    if holes.num_rows:
        filler = {field.name: pa.nulls(holes.num_rows, field.type) for field in table.schema}
        filler[c.VEHICLE_ID] = holes.column(c.VEHICLE_ID).cast(table.schema.field(c.VEHICLE_ID).type)
        filler[c.TS] = holes.column(c.TS).cast(table.schema.field(c.TS).type)
        table = pa.concat_tables([table, pa.table(filler, schema=table.schema)]).unify_dictionaries()
    clock.lap("read")

    vehicles = table.column(c.VEHICLE_ID).combine_chunks()
    if not pa.types.is_dictionary(vehicles.type):
        vehicles = vehicles.dictionary_encode()
    dictionary_codes = index.vehicle_ids.get_indexer(vehicles.dictionary.to_numpy(zero_copy_only=False).astype(object))
    indices = vehicles.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    vehicle_codes = np.where(vehicles.is_valid().to_numpy(zero_copy_only=False), dictionary_codes[indices], -1) if len(dictionary_codes) else np.full(len(indices), -1)
    ts_ms = _epoch_ms_of(table.column(c.TS))
    trip = tachograph.assign_trips(vehicle_codes, ts_ms, index.vehicle_codes, index.start_ms, index.end_ms, index.trip_keys)
    clock.lap("align")

    candidates = np.flatnonzero(trip >= 0)
    rows = _in_piece_trip_time_order(candidates, trip, ts_ms, index)
    # Every record aligned and already in order (a file written by vehicle and time): the
    # columns are written as read, without a copy through ``take``.
    whole = rows is candidates and len(rows) == table.num_rows
    take = pa.array(rows) if not whole else None

    def aligned_column(name: str) -> pa.ChunkedArray:
        values = table.column(name)
        return values if take is None else values.take(take)

    trip_of_row = trip if whole else trip[rows]
    target = index.piece[trip_of_row]
    columns_out = {
        "trip_row": pa.array(index.row[trip_of_row].astype(np.int32)),
        c.TS: aligned_column(c.TS).cast(pa.timestamp("ms", tz="UTC")),
        c.SPEED_KMH: aligned_column(c.SPEED_KMH).cast(pa.float64()),
        c.FUEL_ML: aligned_column(c.FUEL_ML).cast(pa.float64()) if c.FUEL_ML in present else pa.nulls(len(rows), pa.float64()),
    }
    # Only a file with rejected records in trips has the column.
    is_hole = rows >= records
    if is_hole.any():
        columns_out[c.TACHO_REJECTED] = pa.array(is_hole)
    aligned = pa.table(columns_out)
    out_path = f"{TACHO_ALIGNED}/{relative.rsplit('/', 1)[-1]}"
    directory = _write_grouped(store, out_path, with_required_fields(aligned, ("trip_row", c.TS)), target)
    clock.lap("write")
    aligned_records = len(rows) - int(is_hole.sum())
    return AlignResult(records, aligned_records, records - aligned_records, out_path, directory, clock.seconds)


#: Reasons that keep a rejected tachograph record out of T1's count of records. A resent copy
#: (``row_repeated``) is not a gap, because its first copy was accepted.
_TACHO_REJECTS_NOT_GAPS = frozenset({contract.ReasonCode.ROW_REPEATED.value})


def rejected_tacho_records(store: Store, relative: str) -> pa.Table:
    """Return the vehicle and time of each rejected tachograph record of one validated file, one row per key.

    A record rejected for its values (copies of one key that differ, an implausible speed or
    fuel) was still sent for that second, so its fuel is missing from the trip's sum. The
    alignment places such records in their trips with null speed and fuel, and T1 counts them
    as records without fuel. The key text of the rejects file (``vehicle@time``) gives vehicle
    and time. Rejects without a readable key give no record. A missing rejects file gives none.
    """
    empty = pa.table({c.VEHICLE_ID: pa.array([], pa.string()), c.TS: pa.array([], pa.timestamp("ms", tz="UTC"))})
    if not store.exists(relative):
        return empty
    with store.open(relative) as handle:
        rejects = pq.read_table(handle, columns=[c.ROW_KEY, c.REASON]).to_pandas()
    rejects = rejects[~rejects[c.REASON].isin(_TACHO_REJECTS_NOT_GAPS)].dropna(subset=[c.ROW_KEY])
    keys = pd.unique(rejects[c.ROW_KEY].to_numpy(dtype=object))
    if not len(keys):
        return empty
    parts = pd.Series(keys, dtype="string").str.rpartition("@")
    times = pd.to_datetime(parts[2], utc=True, errors="coerce", format="ISO8601")
    readable = (parts[1] == "@").to_numpy() & times.notna().to_numpy()
    return pa.table({
        c.VEHICLE_ID: pa.array(parts[0][readable].to_numpy(dtype=object), pa.string()),
        c.TS: pa.array(times[readable].to_numpy(dtype="datetime64[ms]"), pa.timestamp("ms", tz="UTC")),
    })


#: Encoding options of ``temp/segments`` (see :func:`write_table`), also used by the benchmark's write floor.
SEGMENT_WRITE_OPTIONS: dict[str, Any] = {"compression": "lz4", "statistics": False, "split_floats": True}
_SEGMENT_INTERMEDIATE_COLUMNS = (
    c.TRIP_ID, c.SEG_INDEX, c.T_START, c.LENGTH_M, c.LON_MID, c.LAT_MID, c.AREA_ID, c.LINK_ID, c.ROAD_CLASS, c.MATCHED,
    c.FUEL_L, c.FUEL_M3, c.ENERGY_KWH, c.CO2_TTW_KG,
)
#: Columns of ``temp/segments`` that every segment has by construction (written as not nullable).
_SEGMENT_REQUIRED_COLUMNS = (c.TRIP_ID, c.SEG_INDEX, c.T_START, c.LENGTH_M, c.LON_MID, c.LAT_MID, c.MATCHED)


def compute_piece(
    temp: StoreRef,
    piece: Piece,
    tacho_parts: list[TachoRowGroups],
    vehicles: VehicleMaster,
    layers: spatial.GeoLayers,
    model: EmissionModel,
    link_max_distance_m: float,
    versions: dict[str, str],
) -> PieceResult:
    """Segment, join and estimate one compute piece of validated trajectories (task body)."""
    clock = _StageClock()
    store = temp.open()
    table = _read_row_groups(store, piece, list(segments.INPUT_COLUMNS))
    clock.lap("read")

    standstill = segments.StandstillRule(model.settings.standstill_radius_m, model.settings.standstill_min_duration_s)
    segs, trips = segments.build_segments_from_arrow(table, standstill)
    del table
    clock.lap("segments")
    segs = spatial.join_segments(segs, layers, link_max_distance_m)
    clock.lap("spatial")
    tacho = _read_aligned_tacho(store, tacho_parts, trips)
    clock.lap("tacho_read")
    result = estimate_trips(segs, trips, vehicles.resolved(model), tacho, model)
    del segs, tacho
    clock.lap("estimate")

    trips_out = metrics.add_matched_share(result.trips, result.segments)
    breakdown = metrics.breakdown(result.segments)
    clock.lap("metrics")
    seg_out = result.segments
    # The segment intermediate is the largest object. lz4 writes it about twice as fast as zstd
    # for 10 % more bytes; splitting the bytes of float columns makes it smaller and faster still
    # (measured on the 300-vertex sample trips, docs/benchmarks.md).
    objects = [
        write_table(store, f"{SEGMENTS}/{piece.name}", _segment_intermediate(seg_out), versions, md5=False, **SEGMENT_WRITE_OPTIONS),
        write_table(store, f"{TRIPS}/{piece.name}", pa.Table.from_pandas(trips_out, preserve_index=False), versions, md5=False),
        write_table(store, f"{BREAKDOWN}/{piece.name}", pa.Table.from_pandas(breakdown, preserve_index=False), versions, md5=False),
    ]
    clock.lap("write")

    matched = seg_out[c.MATCHED].to_numpy(dtype=bool) if len(seg_out) else np.zeros(0, bool)
    length = seg_out[c.LENGTH_M].to_numpy(dtype=np.float64) if len(seg_out) else np.zeros(0)
    return PieceResult(
        index=piece.index,
        trips=len(trips_out),
        segments=len(seg_out),
        fuel_l=float(np.nansum(trips_out.get(c.FUEL_L, pd.Series(dtype=float)))),
        co2_ttw_kg=float(np.nansum(trips_out.get(c.CO2_TTW_KG, pd.Series(dtype=float)))),
        matched_m=float(length[matched].sum()),
        length_m=float(length.sum()),
        methods={str(k): int(v) for k, v in trips_out[c.METHOD].value_counts().items()} if len(trips_out) else {},
        seconds=clock.seconds,
        peak_rss_bytes=clock.max_rss_bytes,
        objects=objects,
        trips_without_fuel_l=_trips_without_litres(trips_out, vehicles),
    )


#: Columns of ``temp/trips`` as :func:`compute_piece` writes them: the estimate's trip columns,
#: then the matched share that ``metrics.add_matched_share`` appends.
TRIPS_FILE_DTYPES = {**TRIP_OUTPUT_DTYPES, c.MATCHED_SHARE: "float64"}


def empty_result_table(folder: str) -> pa.Table:
    """Return the table of ``temp/trips`` or ``temp/breakdown`` for a day without trips, with the
    columns and Arrow types those files have on a day with trips.

    It is converted from an empty frame of the same dtypes, as :func:`compute_piece` converts
    its frames, so text columns get the same Arrow type (``large_string`` with pandas 3).
    """
    dtypes = TRIPS_FILE_DTYPES if folder == TRIPS else metrics.BREAKDOWN_DTYPES
    frame = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in dtypes.items()})
    return pa.Table.from_pandas(frame, preserve_index=False)


def _trips_without_litres(trips_out: pd.DataFrame, vehicles: VehicleMaster) -> dict[str, int]:
    """Count a piece's trips without litres by the fuel type of their vehicle in the master."""
    if not len(trips_out) or c.FUEL_L not in trips_out:
        return {}
    if c.FUEL_TYPE not in vehicles.frame:
        return metrics.trips_without_litres(trips_out[c.FUEL_L], None)
    position = vehicles.ids.get_indexer(trips_out[c.VEHICLE_ID].to_numpy(dtype=object))
    types = vehicles.frame[c.FUEL_TYPE].to_numpy(dtype=object)
    fuel_type = pd.Series(np.where(position >= 0, types[np.maximum(position, 0)] if len(types) else None, None), index=trips_out.index)
    return metrics.trips_without_litres(trips_out[c.FUEL_L], fuel_type)


def _segment_intermediate(seg_out: pd.DataFrame) -> pa.Table:
    """Select the columns of ``temp/segments``: segment identity, what the run report reads
    (``charts.SEGMENT_REPORT_COLUMNS``), the match flag and the emission shares.

    Trip-level copies (vehicle_id) and the kinematics and link attributes that only the emission
    model reads are left out, which halves the bytes written per segment.
    """
    # Column by column: selecting the columns as a frame first would copy every one of them.
    present = [name for name in _SEGMENT_INTERMEDIATE_COLUMNS if name in seg_out.columns]
    return with_required_fields(pa.table({name: arrow_column(seg_out[name]) for name in present}), _SEGMENT_REQUIRED_COLUMNS)


def with_required_fields(table: pa.Table, required: Iterable[str]) -> pa.Table:
    """Mark the ``required`` columns of ``table`` as not nullable, where they hold no null.

    The Parquet writer then stores no definition level per value for them: on a 750k-segment
    piece the segment intermediate took about a fifth less CPU to encode. A required column that
    does hold a null (which the validated input should rule out) stays nullable, so its values
    are kept. So does a column of Arrow's null type (an empty text column, or the empty
    dictionary of an empty piece's trip ids), which Parquet cannot store as not nullable.

    NOTE: ``pyarrow.dataset`` and ``pyarrow.parquet.read_table`` of a folder take the first
    file's schema. They read the nulls of a later nullable file, but the table then declares a
    column not nullable that contains nulls, and writing it to Parquet again fails. The frame of
    ``pandas.read_parquet`` and a DuckDB query over the folder hold the nulls correctly.
    """
    required_names = set(required)
    fields = [
        field.with_nullable(False) if field.name in required_names and _can_be_required(field, table.column(i)) else field
        for i, field in enumerate(table.schema)
    ]
    if all(f.nullable == old.nullable for f, old in zip(fields, table.schema, strict=True)):
        return table
    return pa.Table.from_arrays(table.columns, schema=pa.schema(fields, metadata=table.schema.metadata))


def _can_be_required(field: pa.Field, values: pa.ChunkedArray) -> bool:
    """Tell whether a column can be written as not nullable: it contains no null, and neither it
    nor its dictionary values are of Arrow's null type."""
    value_type = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
    return values.null_count == 0 and not pa.types.is_null(value_type)


def arrow_column(values: pd.Series) -> pa.Array:
    """Convert a column to Arrow as ``pyarrow.array(values)`` does, with less work per value.

    Missing values (NaN, NaT, a category code of -1) become nulls, and the type is the one
    pyarrow infers. Floats, timestamps and category codes keep their numpy buffer, with a
    validity bitmap packed by numpy, and numpy packs booleans too. pyarrow's own conversion
    inspects every value. The dictionary of a categorical is converted once per categories object
    and kept (:func:`_arrow_dictionary`), because every piece of a run shares the layer's 29,040
    link ids, for example. Other columns go through ``pyarrow.array``.
    """
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        # Big-endian values are swapped to native order first (pyarrow rejects them).
        numbers = values.to_numpy().astype(dtype.newbyteorder("="), copy=False)
        return _with_validity(numbers, np.isnan(numbers), pa.from_numpy_dtype(numbers.dtype))
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        ticks = pd.DatetimeIndex(values).asi8
        return _with_validity(ticks, ticks == np.iinfo(np.int64).min, pa.array(values.iloc[:0]).type)
    if isinstance(dtype, pd.CategoricalDtype) and _plain_categories(dtype.categories):
        codes = np.asarray(values.array.codes)
        arrow_type, dictionary = _arrow_dictionary(values)
        indices = _with_validity(codes, codes < 0, arrow_type.index_type)
        # pandas codes lie inside the categories, so the bounds check of every index is skipped.
        # The flag comes from the column: as_ordered() keeps the categories object of the cache key.
        return pa.DictionaryArray.from_arrays(indices, dictionary, ordered=bool(dtype.ordered), safe=False)
    if isinstance(dtype, np.dtype) and dtype.kind == "b":
        flags = values.to_numpy()
        return pa.Array.from_buffers(pa.bool_(), len(flags), [None, pa.py_buffer(np.packbits(flags, bitorder="little"))])
    return pa.array(values)


def _plain_categories(categories: pd.Index) -> bool:
    """Tell whether categories are text or numpy numbers; others (intervals, periods) go to pyarrow."""
    dtype = categories.dtype
    return isinstance(dtype, pd.StringDtype) or (isinstance(dtype, np.dtype) and dtype.kind in "OUifb")


#: Arrow dictionaries of recent categories objects: ``id -> (categories, type, dictionary)``.
_DICTIONARIES: dict[int, tuple[pd.Index, pa.DictionaryType, pa.Array]] = {}
_DICTIONARIES_KEPT = 16


def _arrow_dictionary(values: pd.Series) -> tuple[pa.DictionaryType, pa.Array]:
    """Return the Arrow type and dictionary of a categorical column, converted once per categories
    object. The cache keeps the object itself, so its id cannot be reused while it is kept."""
    categories = values.cat.categories
    entry = _DICTIONARIES.get(id(categories))
    if entry is not None and entry[0] is categories:
        return entry[1], entry[2]
    arrow_type = pa.array(values.iloc[:0]).type
    dictionary = pa.array(categories.to_numpy(dtype=object), type=arrow_type.value_type)
    if len(_DICTIONARIES) >= _DICTIONARIES_KEPT:
        _DICTIONARIES.clear()
    _DICTIONARIES[id(categories)] = (categories, arrow_type, dictionary)
    return arrow_type, dictionary


def _with_validity(numbers: np.ndarray, missing: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """Wrap the buffer of ``numbers`` (fixed width, matching ``arrow_type``) as an Arrow array, null
    where ``missing``."""
    numbers = np.ascontiguousarray(numbers)
    n_missing = int(np.count_nonzero(missing))
    validity = pa.py_buffer(np.packbits(~missing, bitorder="little")) if n_missing else None
    return pa.Array.from_buffers(arrow_type, len(numbers), [validity, pa.py_buffer(numbers)], null_count=n_missing)


def tacho_parts_by_piece(results: Iterable[AlignResult]) -> dict[int, list[TachoRowGroups]]:
    """Invert the directories of the aligned files: per compute piece, where its rows are."""
    parts: dict[int, list[TachoRowGroups]] = {}
    for result in sorted(results, key=lambda r: r.path):
        for piece, groups in sorted(result.row_groups_by_piece.items()):
            parts.setdefault(piece, []).append(TachoRowGroups(result.path, tuple(groups)))
    return parts


def _read_row_groups(store: Store, piece: Piece, columns: list[str]) -> pa.Table:
    with store.open(piece.path) as handle:
        parquet = pq.ParquetFile(handle)
        present = [name for name in columns if name in parquet.schema_arrow.names]
        if not piece.row_groups:
            return parquet.schema_arrow.empty_table().select(present)
        return parquet.read_row_groups(list(piece.row_groups), columns=present)


def _read_aligned_tacho(store: Store, parts: list[TachoRowGroups], trips: pd.DataFrame) -> pd.DataFrame:
    """Aligned tachograph rows of one piece as the frame the emission model reads."""
    tables = []
    for part in parts:
        with store.open(part.path) as handle:
            tables.append(pq.ParquetFile(handle).read_row_groups(list(part.row_groups)))
    # Files may differ in the nullability of a column (with_required_fields), never in its type.
    table = pa.concat_tables(tables, promote_options="default") if tables else None
    trip_ids = pd.Index(trips[c.TRIP_ID].to_numpy(dtype=object))
    if table is None or table.num_rows == 0:
        return pd.DataFrame({
            c.TRIP_ID: pd.Categorical.from_codes(np.zeros(0, np.int64), categories=trip_ids),
            c.TS: pd.Series([], dtype="datetime64[ms, UTC]"),
            c.SPEED_KMH: pd.Series([], dtype=np.float64),
            c.FUEL_ML: pd.Series([], dtype=np.float64),
        })
    frame = pd.DataFrame({
        c.TRIP_ID: pd.Categorical.from_codes(table.column("trip_row").to_numpy().astype(np.int64), categories=trip_ids),
        c.TS: table.column(c.TS).cast(pa.timestamp("ms", tz="UTC")).to_pandas(),
        c.SPEED_KMH: table.column(c.SPEED_KMH).to_numpy(),
        c.FUEL_ML: table.column(c.FUEL_ML).to_numpy(),
    })
    if c.TACHO_REJECTED in table.column_names:
        # Files without rejected records lack the column, and their rows are null here.
        frame[c.TACHO_REJECTED] = table.column(c.TACHO_REJECTED).fill_null(False).to_numpy()
    return frame


def _in_piece_trip_time_order(rows: np.ndarray, trip: np.ndarray, ts_ms: np.ndarray, index: TripIndex) -> np.ndarray:
    """Return the aligned ``rows`` sorted by (compute piece, trip, time), equal times in file order.

    Trips are numbered in piece order, so sorting by (trip, time) sorts by piece too. Each row's
    time lies inside its trip, so one int64 key (trip, ms since the trip's start) orders them.
    A tachograph file written by vehicle and time is often in that order already and is then
    kept without sorting. Otherwise a stable sort of the key (or of the three columns, when the
    key does not fit) puts the rows in order.
    """
    if len(rows) == 0:
        return rows
    if index.pieces_ascending and tachograph.in_trip_time_order(rows, trip, ts_ms):
        return rows
    trip_of_row = trip[rows]
    since_start = ts_ms[rows] - index.start_ms[trip_of_row]
    fits = bool(index.n_trips < (1 << 31) and index.pieces_ascending
                and since_start.min() >= 0 and since_start.max() < (1 << 32))
    if not fits:
        return rows[np.lexsort((ts_ms[rows], trip_of_row, index.piece[trip_of_row]))]
    key = (trip_of_row.astype(np.int64) << 32) | since_start.astype(np.int64)
    if np.all(key[1:] >= key[:-1]):
        return rows
    return rows[np.argsort(key, kind="stable")]


def _write_grouped(store: Store, relative: str, table: pa.Table, group: np.ndarray) -> dict[int, list[int]]:
    """Write ``table`` (sorted by ``group``) with one row group per group value; return the directory."""
    buffer = pa.BufferOutputStream()
    directory: dict[int, list[int]] = {}
    bounds = np.flatnonzero(np.r_[True, group[1:] != group[:-1], True]) if len(group) else np.array([0])
    # An intermediate read whole by row group: lz4, no column statistics, no MD5 (as the segments).
    # Timestamps are delta-encoded without compression (see parquet_bytes); the other columns keep
    # dictionaries, which suit the repeated speeds and fuel readings of a tachograph.
    times = [f.name for f in table.schema if pa.types.is_timestamp(f.type)]
    others = [f.name for f in table.schema if f.name not in times]
    with pq.ParquetWriter(
        buffer, table.schema, compression={name: "none" if name in times else "lz4" for name in table.schema.names},
        use_dictionary=others, column_encoding=dict.fromkeys(times, "DELTA_BINARY_PACKED"), write_statistics=False,
    ) as writer:
        for number, (first, stop) in enumerate(itertools.pairwise(bounds)):
            writer.write_table(table.slice(int(first), int(stop - first)), row_group_size=int(stop - first))
            directory[int(group[first])] = [number]
    store.write_bytes(relative, _arrow_sink(buffer), md5=False)
    return directory


def _row_group_layout(store: Store, relative: str) -> tuple[list[int], list[int]]:
    """Rows and vertices per row group: vertices from the metadata this module writes, else estimated."""
    with store.open(relative) as handle:
        meta = pq.ParquetFile(handle).metadata
    rows = [meta.row_group(rg).num_rows for rg in range(meta.num_row_groups)]
    stored = (meta.metadata or {}).get(VERTICES_KEY)
    if stored is not None and len(json.loads(stored)) == len(rows):
        return rows, [int(v) for v in json.loads(stored)]
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    geometry = names.index(c.GEOMETRY) if c.GEOMETRY in names else None
    counts = []
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        if geometry is None:
            counts.append(group.num_rows)
            continue
        # A 2D WKB LineString is 9 header bytes plus 16 bytes per vertex.
        counts.append(max(group.num_rows, (group.column(geometry).total_uncompressed_size - 9 * group.num_rows) // 16))
    return rows, counts


class _StageClock:
    """Wall and CPU seconds of consecutive stages of one task, and the largest RSS seen at a lap."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.max_rss_bytes = _rss_bytes()
        self._wall = time.perf_counter()
        self._cpu = time.thread_time()

    def lap(self, stage: str) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        self.seconds[f"{stage}_wall"] = self.seconds.get(f"{stage}_wall", 0.0) + wall - self._wall
        self.seconds[f"{stage}_cpu"] = self.seconds.get(f"{stage}_cpu", 0.0) + cpu - self._cpu
        self.max_rss_bytes = max(self.max_rss_bytes, _rss_bytes())
        self._wall, self._cpu = wall, cpu


def _rss_bytes() -> int:
    """Largest resident memory of this worker process so far (Linux), else its memory now.

    ``getrusage`` high-water marks are not used: Linux keeps them across ``exec``, so a worker
    started from a large parent process reports the parent's peak. ``VmHWM`` in
    ``/proc/self/status`` belongs to the process's own address space and starts again at exec.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except OSError:
        pass
    return int(psutil.Process().memory_info().rss)


def _epoch_ms_of(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Epoch milliseconds of a timestamp column as float64, NaN where null."""
    values = pc.cast(column.cast(pa.timestamp("ms", tz="UTC")), pa.int64()).cast(pa.float64())
    return np.asarray(values.fill_null(np.nan).to_numpy(), dtype=np.float64)


def _list_first(values: pa.ChunkedArray) -> pa.ChunkedArray:
    return pa.chunked_array([_list_at(chunk, first=True) for chunk in values.chunks], type=values.type.value_type)


def _list_last(values: pa.ChunkedArray) -> pa.ChunkedArray:
    return pa.chunked_array([_list_at(chunk, first=False) for chunk in values.chunks], type=values.type.value_type)


def _list_at(chunk: pa.ListArray, *, first: bool) -> pa.Array:
    """First or last element of each list; null for null or empty lists."""
    offsets = chunk.offsets.to_numpy()
    lengths = np.diff(offsets)
    valid = chunk.is_valid().to_numpy(zero_copy_only=False) & (lengths > 0)
    position = offsets[:-1] if first else offsets[1:] - 1
    position = np.where(valid, position, 0)
    flat = chunk.values
    if len(flat) == 0:
        return pa.nulls(len(chunk), type=chunk.type.value_type)
    taken = flat.take(pa.array(position))
    return pc.if_else(pa.array(valid), taken, pa.nulls(len(chunk), type=chunk.type.value_type))


# -- orchestration helpers used by compute.phases ----------------------------------------------


def gather(client: Client, futures: Iterable[Any], timeout_s: float | None = None) -> list[Any]:
    """Wait for ``futures`` and return their results in order (raises the first task error).

    Raises
    ------
    TimeoutError
        If the tasks have not finished after ``timeout_s`` seconds; the tasks are cancelled.
    """
    futures = list(futures)
    if timeout_s is not None:
        try:
            wait(futures, timeout=timeout_s)
        except TimeoutError as error:
            client.cancel(futures)
            raise TimeoutError(
                f"{len(futures)} Dask tasks did not finish within {timeout_s:.0f} s; the cluster is too small for the day "
                "or a worker is stuck: add workers or raise cluster.compute_timeout_s, then rerun the phase"
            ) from error
    return list(client.gather(futures))


def scatter_broadcast(client: Client, value: Any) -> Any:
    """Send one copy of ``value`` to every worker and return its future."""
    return client.scatter(value, broadcast=True, hash=False)


def model_for(settings: Settings) -> EmissionModel:
    return load_model(settings.emission)
