"""The Dask graph of the validate and compute phases: pure functions mapped over partitions.

A partition ("piece") is a run of row groups of one Parquet file, sized from the data so that each
holds about ``target_vertices`` trajectory vertices. Every piece is processed by one task that
reads it with pyarrow, conforms it to the contract, runs the pure domain functions and writes its
own outputs under ``temp/`` with a deterministic name, so a retried or repeated task overwrites
rather than duplicates.

Stages
------
1. validate: dataset-level checks on every file footer (before any task runs); small datasets
   (vehicles, geo attributes) are validated on the client; trajectory and tachograph pieces on
   the cluster. Accepted rows go to ``temp/validated/``, rejects to ``temp/rejects/``.
2. compute: the trip index (trip, vehicle, interval, piece) is gathered and broadcast; tachograph
   pieces are aligned to trips and written per trajectory piece; each trajectory piece is then
   segmented, joined to the broadcast geo layers and estimated.

Memory per worker is bounded by the piece size (about 150 bytes per vertex while segmenting) plus
the broadcast layers and trip index, independent of the size of the day.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely
from distributed import Client

from compute import columns as c
from compute import contract, metrics, segments, spatial, tachograph
from compute.emissions import EmissionModel, estimate_trips, load_model
from compute.settings import Settings
from compute.storage import Store

VALIDATED = "validated"
REJECTS = "rejects"
SEGMENTS = "segments"
TRIPS = "trips"
BREAKDOWN = "breakdown"
TACHO_ALIGNED = "tacho_aligned"
TRIP_INDEX_COLUMNS = (c.TRIP_ID, c.VEHICLE_ID, c.START_TIME, c.END_TIME, "piece")


@dataclass(frozen=True)
class Piece:
    """One partition: some row groups of one Parquet file of a dataset."""

    dataset: str
    path: str
    row_groups: tuple[int, ...]
    rows: int
    index: int

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


def list_dataset_files(store: Store, dataset: str) -> list[str]:
    """Parquet files of ``dataset`` below ``store``, sorted."""
    return [name for name in store.list(dataset) if name.endswith(".parquet")]


def plan_pieces(store: Store, dataset: str, *, target_rows: int) -> list[Piece]:
    """Group the row groups of every file of ``dataset`` into pieces of about ``target_rows`` rows."""
    pieces: list[Piece] = []
    for path in list_dataset_files(store, dataset):
        with store.open(path) as handle:
            meta = pq.ParquetFile(handle).metadata
        group: list[int] = []
        rows = 0
        for rg in range(meta.num_row_groups):
            group.append(rg)
            rows += meta.row_group(rg).num_rows
            if rows >= target_rows:
                pieces.append(Piece(dataset, path, tuple(group), rows, len(pieces)))
                group, rows = [], 0
        if group or meta.num_row_groups == 0:
            pieces.append(Piece(dataset, path, tuple(group), rows, len(pieces)))
    return pieces


def target_rows_for(store: Store, dataset: str, *, n_workers: int, rows_per_piece_max: int, rows_per_piece_min: int) -> int:
    """Choose rows per piece from the day's size: a few pieces per worker, bounded for memory."""
    total = 0
    for path in list_dataset_files(store, dataset):
        with store.open(path) as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    wanted = math.ceil(total / max(1, 4 * n_workers)) if total else rows_per_piece_min
    return int(min(rows_per_piece_max, max(rows_per_piece_min, wanted)))


# -- reading and writing pieces ----------------------------------------------------------------


def read_piece(store: Store, piece: Piece, settings: contract.ContractSettings, columns: list[str] | None = None) -> pa.Table:
    """Read one piece and conform it to the contract."""
    with store.open(piece.path) as handle:
        parquet = pq.ParquetFile(handle)
        table = parquet.read_row_groups(list(piece.row_groups), columns=columns) if piece.row_groups else parquet.schema_arrow.empty_table()
        metadata = parquet.schema_arrow.metadata
    if metadata and not table.schema.metadata:
        table = table.replace_schema_metadata(metadata)
    return contract.conform_table(piece.dataset, table, settings)


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


def write_table(store: Store, relative: str, table: pa.Table, metadata: dict[str, str] | None = None) -> None:
    """Write ``table`` as one Parquet object in one PUT, with optional ``lmco2`` metadata."""
    if metadata:
        existing = dict(table.schema.metadata or {})
        existing[b"lmco2"] = json.dumps(metadata, sort_keys=True).encode("utf-8")
        table = table.replace_schema_metadata(existing)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    store.write_bytes(relative, buffer.getvalue())


def from_frame(frame: pd.DataFrame) -> pa.Table:
    """Convert a validated frame back to Arrow, geometry as WKB."""
    if isinstance(frame, gpd.GeoDataFrame) and c.GEOMETRY in frame.columns:
        plain = pd.DataFrame(frame.drop(columns=[c.GEOMETRY]))
        table = pa.Table.from_pandas(plain, preserve_index=False)
        wkb = shapely.to_wkb(np.asarray(frame.geometry.array, dtype=object))
        return table.append_column(c.GEOMETRY, pa.array(wkb, pa.binary()))
    return pa.Table.from_pandas(frame, preserve_index=False)


# -- validate ----------------------------------------------------------------------------------


def validate_piece(
    raw: StoreRef,
    temp: StoreRef,
    piece: Piece,
    settings: contract.ContractSettings,
    context: contract.ValidationContext,
) -> contract.DatasetSummary:
    """Validate one piece; write accepted rows and rejects under ``temp/`` (task body)."""
    table = read_piece(raw.open(), piece, settings)
    frame = contract.to_frame(piece.dataset, table)
    accepted, rejects = contract.validate_rows(piece.dataset, frame, context)
    temp_store = temp.open()
    write_accepted(temp_store, piece.dataset, piece.name, table, accepted)
    write_table(temp_store, f"{REJECTS}/{piece.dataset}/{piece.name}", rejects_table(rejects))
    return contract.summarize_partition(piece.dataset, len(frame), accepted, rejects)


def write_accepted(store: Store, dataset: str, name: str, table: pa.Table, accepted: pd.DataFrame) -> None:
    """Write accepted rows; untouched rows are taken from the Arrow table, repaired ones re-encoded."""
    if dataset == "geo_attributes":
        out = from_frame(accepted)
    else:
        out = table.take(pa.array(accepted.index.to_numpy(dtype=np.int64)))
    write_table(store, f"{VALIDATED}/{dataset}/{name}", out)


def rejects_table(rejects: pd.DataFrame) -> pa.Table:
    frame = rejects.reindex(columns=list(contract.REJECT_COLUMNS))
    return pa.Table.from_pandas(frame.astype({col: "string" for col in contract.REJECT_COLUMNS}).astype(object), preserve_index=False,
                                schema=pa.schema([(col, pa.string()) for col in contract.REJECT_COLUMNS]))


def collect_keys(raw: StoreRef, piece: Piece, settings: contract.ContractSettings) -> pd.Series:
    """Key of every row of one piece, as text (for the global duplicate check)."""
    table = read_piece(raw.open(), piece, settings, columns=None)
    keys = list(contract.KEY_COLUMNS[piece.dataset])
    return contract.row_keys(piece.dataset, table.select(keys).to_pandas())


# -- compute -----------------------------------------------------------------------------------


def trip_index_of_piece(temp: StoreRef, piece_index: int) -> pd.DataFrame:
    """Trip intervals of one validated trajectory piece: first and last vertex time, or start/end."""
    name = f"part-{piece_index:05d}.parquet"
    table = read_table(temp.open(), f"{VALIDATED}/trajectories/{name}")
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
            c.TRIP_ID: table.column(c.TRIP_ID).to_numpy(zero_copy_only=False),
            c.VEHICLE_ID: table.column(c.VEHICLE_ID).to_numpy(zero_copy_only=False),
            c.START_TIME: pd.Series(start.to_pandas()).astype("datetime64[ms, UTC]").to_numpy(),
            c.END_TIME: pd.Series(end.to_pandas()).astype("datetime64[ms, UTC]").to_numpy(),
            "piece": np.full(table.num_rows, piece_index, dtype=np.int32),
        }
    )


def align_tacho_piece(temp: StoreRef, piece: Piece, trip_index: pd.DataFrame) -> dict[str, int]:
    """Align one validated tachograph piece to trips; write its rows per trajectory piece."""
    store = temp.open()
    table = read_table(store, f"{VALIDATED}/tachometer/{piece.name}")
    tacho = table.to_pandas()
    aligned, outside = tachograph.align_to_trips(tacho, trip_index)
    aligned = aligned.merge(trip_index[[c.TRIP_ID, "piece"]], on=c.TRIP_ID, how="left")
    for target, rows in aligned.groupby("piece", sort=True):
        write_table(store, f"{TACHO_ALIGNED}/piece-{int(target):05d}/from-{piece.index:05d}.parquet",
                    pa.Table.from_pandas(rows.drop(columns=["piece"]), preserve_index=False))
    return {"rows": len(tacho), "aligned": len(aligned), "outside_trips": len(outside)}


@dataclass
class PieceResult:
    """Totals of one computed trajectory piece."""

    index: int
    trips: int
    segments: int
    fuel_l: float
    co2_ttw_kg: float
    matched_m: float
    length_m: float
    methods: dict[str, int]


def compute_piece(
    temp: StoreRef,
    piece_index: int,
    vehicles: pd.DataFrame,
    layers: spatial.GeoLayers,
    model: EmissionModel,
    link_max_distance_m: float,
    versions: dict[str, str],
) -> PieceResult:
    """Segment, join and estimate one validated trajectory piece (task body)."""
    store = temp.open()
    name = f"part-{piece_index:05d}.parquet"
    table = read_table(store, f"{VALIDATED}/trajectories/{name}")
    trajectories = contract.to_frame("trajectories", table)

    segs, trips = segments.build_segments(trajectories)
    segs = spatial.join_segments(segs, layers, link_max_distance_m)
    tacho_table = read_folder(store, f"{TACHO_ALIGNED}/piece-{piece_index:05d}")
    tacho = tacho_table.to_pandas() if tacho_table is not None else tachograph.align_to_trips(pd.DataFrame(columns=[c.VEHICLE_ID, c.TS, c.SPEED_KMH]), trips.iloc[:0])[0]
    result = estimate_trips(segs, trips, vehicles, tacho, model)

    trips_out = metrics.add_join_metrics(result.trips, result.segments) if hasattr(metrics, "add_join_metrics") else _add_matched_share(result.trips, result.segments)
    breakdown = metrics.breakdown(result.segments) if hasattr(metrics, "breakdown") else pd.DataFrame()
    write_table(store, f"{SEGMENTS}/{name}", pa.Table.from_pandas(result.segments, preserve_index=False), versions)
    write_table(store, f"{TRIPS}/{name}", pa.Table.from_pandas(trips_out, preserve_index=False), versions)
    write_table(store, f"{BREAKDOWN}/{name}", pa.Table.from_pandas(breakdown, preserve_index=False), versions)

    seg_out = result.segments
    return PieceResult(
        index=piece_index,
        trips=len(trips_out),
        segments=len(seg_out),
        fuel_l=float(np.nansum(trips_out.get(c.FUEL_L, pd.Series(dtype=float)))),
        co2_ttw_kg=float(np.nansum(trips_out.get(c.CO2_TTW_KG, pd.Series(dtype=float)))),
        matched_m=float(seg_out.loc[seg_out[c.MATCHED], c.LENGTH_M].sum()) if len(seg_out) else 0.0,
        length_m=float(seg_out[c.LENGTH_M].sum()) if len(seg_out) else 0.0,
        methods={str(k): int(v) for k, v in trips_out[c.METHOD].value_counts().items()} if len(trips_out) else {},
    )


def _add_matched_share(trips: pd.DataFrame, segs: pd.DataFrame) -> pd.DataFrame:
    matched = segs[c.LENGTH_M].where(segs[c.MATCHED], 0.0).groupby(segs[c.TRIP_ID]).sum()
    total = segs.groupby(c.TRIP_ID)[c.LENGTH_M].sum()
    share = (matched / total.where(total > 0)).rename(c.MATCHED_SHARE)
    return trips.merge(share, left_on=c.TRIP_ID, right_index=True, how="left")


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


def gather(client: Client, futures: Iterable[Any]) -> list[Any]:
    """Wait for ``futures`` and return their results in order (raises the first task error)."""
    return list(client.gather(list(futures)))


def scatter_broadcast(client: Client, value: Any) -> Any:
    """Send one copy of ``value`` to every worker and return its future."""
    return client.scatter(value, broadcast=True, hash=False)


def model_for(settings: Settings) -> EmissionModel:
    return load_model(settings.emission)
