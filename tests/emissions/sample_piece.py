"""One compute piece of a ``compute.sample`` day, built with the compute path's own functions.

The sample is written as if it were validated (``defects=False``), then segmented, joined and
aligned to the tachograph the way ``pipeline.compute_piece`` does it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from compute import contract, pipeline, segments, spatial
from compute.sample import SampleSpec, write_sample_day
from compute.storage import Store

RUN_DATE = dt.date(2026, 12, 1)
LINK_MAX_DISTANCE_M = 25.0


@dataclass(frozen=True)
class PieceInputs:
    """The four frames ``estimate_trips`` reads for one piece."""

    segments: pd.DataFrame
    trips: pd.DataFrame
    vehicles: pd.DataFrame
    tacho: pd.DataFrame


def build_piece_inputs(root: Path, spec: SampleSpec) -> PieceInputs:
    """Write the sample day below ``root`` and return the inputs of its first compute piece."""
    write_sample_day(Store(str(root / "validated")), RUN_DATE, spec)
    ref = pipeline.StoreRef(str(root))
    store = ref.open()
    pieces = pipeline.plan_compute_pieces(store, n_workers=1, vertices_min=1, vertices_max=10**9)
    index = pipeline.build_trip_index([pipeline.trip_index_of_piece(ref, piece) for piece in pieces])
    tacho_files = [name for name in store.list(f"{pipeline.VALIDATED}/tachometer") if name.endswith(".parquet")]
    parts = pipeline.tacho_parts_by_piece([pipeline.align_tacho_piece(ref, name, index) for name in tacho_files])

    piece = pieces[0]
    table = pipeline._read_row_groups(store, piece, list(segments.INPUT_COLUMNS))
    segs, trips = segments.build_segments_from_arrow(table)
    geo = contract.to_frame("geo_attributes", pipeline.read_folder(store, f"{pipeline.VALIDATED}/geo_attributes"))
    layers = spatial.prepare_layers(geo, link_max_distance_m=LINK_MAX_DISTANCE_M)
    segs = spatial.join_segments(segs, layers, LINK_MAX_DISTANCE_M)
    tacho = pipeline._read_aligned_tacho(store, parts.get(piece.index, []), trips)
    vehicles = pipeline.read_folder(store, f"{pipeline.VALIDATED}/vehicles").to_pandas()
    return PieceInputs(segs, trips, vehicles, tacho)
