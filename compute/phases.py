"""The five phases of the daily batch as plain functions: fetch, validate, compute, output, publish.

Each phase reads and writes only through :mod:`compute.storage`, records a manifest with counts
and checksums, and writes its phase marker last. A phase whose marker exists is skipped unless
``force`` is set; a forced phase first removes what it wrote before, so a rerun never duplicates
or mixes rows. The Prefect flow in ``flows/daily.py`` calls these functions, one task each.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from distributed import Client

from compute import columns as c
from compute import contract, pipeline, spatial
from compute.settings import Settings, parse_run_date
from compute.storage import (
    MANIFEST_NAME,
    SUCCESS_NAME,
    Manifest,
    ObjectRecord,
    Store,
    StorageError,
    copy_tree,
    manifest_of,
    read_phase_marker,
    verify_read_back,
    write_phase_marker,
)

PHASES: tuple[str, ...] = ("fetch", "validate", "compute", "output", "publish")
EventSink = Callable[[str, dict[str, Any]], None]


@dataclass
class PhaseResult:
    """Outcome of one phase: its manifest, whether it was skipped, and how long it took."""

    phase: str
    skipped: bool
    seconds: float
    manifest: Manifest

    @property
    def counts(self) -> dict[str, Any]:
        return self.manifest.counts


@dataclass
class DailyRun:
    """Everything a phase needs to know about one run date."""

    settings: Settings
    run_date: dt.date
    force: bool = False
    on_event: EventSink = field(default=lambda event, fields: None)

    @classmethod
    def create(cls, settings: Settings, run_date: dt.date | str, *, force: bool = False, on_event: EventSink | None = None) -> DailyRun:
        return cls(settings=settings, run_date=parse_run_date(run_date), force=force, on_event=on_event or (lambda e, f: None))

    @property
    def day(self) -> str:
        return self.run_date.isoformat()

    def store(self, root: str) -> Store:
        write_only = root == "output" and self.settings.storage.output_write_only
        return Store(self.settings.url(root, self.run_date), self.settings.storage.options_for(root), write_only=write_only)

    def ref(self, root: str) -> pipeline.StoreRef:
        return pipeline.StoreRef(self.settings.url(root, self.run_date), self.settings.storage.options_for(root))

    @property
    def state(self) -> Store:
        """Where phase markers live: ``temp/`` (ours, readable, even when output is write-only)."""
        return self.store("temp")

    def completed(self, phase: str) -> Manifest | None:
        return None if self.force else read_phase_marker(self.state, phase)

    def versions(self) -> dict[str, str]:
        model = pipeline.model_for(self.settings)
        versions = dict(getattr(model, "versions", {}) or {})
        versions.setdefault("lm_co2", _package_version())
        return versions


def skipped(run: DailyRun, phase: str) -> PhaseResult:
    """Result of a phase that completed on an earlier run (its marker must exist)."""
    done = run.completed(phase)
    if done is None:
        raise RuntimeError(f"phase {phase!r} has no completion marker for {run.day}; run it instead of skipping it")
    run.on_event("phase_skipped", {"phase": phase, "run_date": run.day})
    return PhaseResult(phase, True, 0.0, done)


def run_phase(run: DailyRun, phase: str, body: Callable[[], Manifest]) -> PhaseResult:
    """Run ``body`` unless ``phase`` already completed; write its marker last."""
    started = time.perf_counter()
    if run.completed(phase) is not None:
        return skipped(run, phase)
    run.on_event("phase_started", {"phase": phase, "run_date": run.day})
    manifest = body()
    manifest.counts["seconds"] = round(time.perf_counter() - started, 3)
    write_phase_marker(run.state, manifest)
    run.on_event("phase_completed", {"phase": phase, "run_date": run.day, **_flat(manifest.counts)})
    return PhaseResult(phase, False, time.perf_counter() - started, manifest)


# -- 1 fetch -----------------------------------------------------------------------------------


def fetch(run: DailyRun) -> PhaseResult:
    """Copy the client's day from ``input/`` to ``raw/`` and verify every object."""

    def body() -> Manifest:
        source, destination = run.store("input"), run.store("raw")
        names = source.list()
        if not names:
            raise StorageError(
                f"no objects found in {source.url} for run date {run.day}; check that the client delivered the day "
                "or that the input root of the profile is right"
            )
        if run.force:
            destination.remove()
        destination.makedirs()
        manifest = copy_tree(
            source, destination, phase="fetch", run_date=run.day, retries=run.settings.transfer.retries,
            on_retry=lambda name, attempt, error: run.on_event("object_retry", {"phase": "fetch", "object": name, "attempt": attempt, "error": str(error)}),
        )
        manifest.counts["datasets"] = sorted({name.split("/", 1)[0] for name in names if "/" in name})
        return manifest

    return run_phase(run, "fetch", body)


# -- 2 validate --------------------------------------------------------------------------------


def validate(run: DailyRun, client: Client) -> PhaseResult:
    """Check the day against the contract; write accepted rows and rejects under ``temp/``.

    Raises
    ------
    contract.ContractError
        On a dataset-level problem, before any row is validated.
    contract.BalanceError
        If rows in differ from rows accepted plus rows rejected for any dataset.
    """

    def body() -> Manifest:
        raw, temp = run.store("raw"), run.store("temp")
        temp.remove(pipeline.VALIDATED)
        temp.remove(pipeline.REJECTS)
        csettings = run.settings.contract
        summary = contract.ValidationSummary()

        # Dataset level: every file footer, before any task runs.
        sources = _dataset_sources(run, raw)
        for dataset, (store, files) in sources.items():
            if not files:
                if dataset in contract.REQUIRED_DATASETS:
                    raise contract.ContractError(
                        contract.ErrorCode.DATASET_MISSING, dataset, "", f"Parquet files under {dataset}/", f"no files in {raw.url}"
                    )
                summary.mark_absent(dataset)
                continue
            for name in files:
                with store.open(name) as handle:
                    schema = pq.read_schema(handle)
                contract.conform_table(dataset, schema.empty_table(), csettings)

        # Small datasets on the client: vehicles first, their ids feed the trip and tacho rules.
        vehicles = _validate_small(run, "vehicles", sources, summary, contract.ValidationContext(settings=csettings))
        known = vehicles[c.VEHICLE_ID].to_numpy(dtype=object) if len(vehicles) else np.array([], dtype=object)
        _validate_small(run, "geo_attributes", sources, summary, contract.ValidationContext(settings=csettings))

        # Large datasets on the cluster, with keys duplicated anywhere in the day.
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        raw_ref, temp_ref = run.ref("raw"), run.ref("temp")
        for dataset in ("trajectories", "tachometer"):
            store, files = sources[dataset]
            if not files:
                continue
            bounds = _PIECE_ROWS[dataset]
            target = pipeline.target_rows_for(store, dataset, n_workers=n_workers, rows_per_piece_max=bounds[1], rows_per_piece_min=bounds[0])
            pieces = pipeline.plan_pieces(store, dataset, target_rows=target)
            n = len(pieces)
            keys = pipeline.gather(client, client.map(pipeline.collect_keys, [raw_ref] * n, pieces, [csettings] * n, pure=False))
            context = contract.ValidationContext(
                settings=csettings, known_vehicle_ids=known, duplicated_keys={dataset: contract.find_duplicate_keys(dataset, keys)}
            )
            context_future = pipeline.scatter_broadcast(client, context)
            for part in pipeline.gather(client, client.map(
                pipeline.validate_piece, [raw_ref] * n, [temp_ref] * n, pieces, [csettings] * n, [context_future] * n, pure=False,
            )):
                summary.add(part)

        contract.check_balance(summary)
        manifest = manifest_of(temp, phase="validate", run_date=run.day)
        manifest.objects = [o for o in manifest.objects if o.path.startswith((pipeline.VALIDATED + "/", pipeline.REJECTS + "/"))]
        manifest.counts = {**summary.to_dict(), "objects": len(manifest.objects), "bytes": manifest.total_bytes}
        return manifest

    return run_phase(run, "validate", body)


# Rows per piece (minimum, maximum): trajectories carry hundreds of vertices per row.
_PIECE_ROWS = {"trajectories": (500, 20_000), "tachometer": (50_000, 2_000_000)}


def _dataset_sources(run: DailyRun, raw: Store) -> dict[str, tuple[Store, list[str]]]:
    """Files of each dataset; geo attributes fall back to the reference location of the profile."""
    sources: dict[str, tuple[Store, list[str]]] = {}
    for dataset in contract.DATASETS:
        files = pipeline.list_dataset_files(raw, dataset)
        store = raw
        if dataset == "geo_attributes" and not files and run.settings.storage.reference_geo:
            store = Store(run.settings.storage.reference_geo, run.settings.storage.options_for("reference_geo"))
            files = [n for n in store.list() if n.endswith(".parquet")]
        sources[dataset] = (store, files)
    return sources


def _validate_small(
    run: DailyRun,
    dataset: str,
    sources: dict[str, tuple[Store, list[str]]],
    summary: contract.ValidationSummary,
    context: contract.ValidationContext,
) -> pd.DataFrame:
    """Validate a small dataset in this process and return its accepted rows."""
    store, files = sources[dataset]
    temp = run.store("temp")
    frames = []
    for index, name in enumerate(files):
        piece = pipeline.Piece(dataset, name, tuple(range(_row_groups(store, name))), 0, index)
        table = pipeline.read_piece(store, piece, run.settings.contract)
        frame = contract.to_frame(dataset, table)
        accepted, rejects = contract.validate_rows(dataset, frame, context)
        pipeline.write_accepted(temp, dataset, piece.name, table, accepted)
        pipeline.write_table(temp, f"{pipeline.REJECTS}/{dataset}/{piece.name}", pipeline.rejects_table(rejects))
        summary.record(dataset, len(frame), accepted, rejects)
        frames.append(accepted)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[c.VEHICLE_ID])


def _row_groups(store: Store, name: str) -> int:
    with store.open(name) as handle:
        return pq.ParquetFile(handle).metadata.num_row_groups


# -- 3 compute ---------------------------------------------------------------------------------


def compute(run: DailyRun, client: Client) -> PhaseResult:
    """Segment, join, align and estimate every accepted trip on the cluster."""

    def body() -> Manifest:
        temp = run.store("temp")
        for folder in (pipeline.SEGMENTS, pipeline.TRIPS, pipeline.BREAKDOWN, pipeline.TACHO_ALIGNED):
            temp.remove(folder)
        temp_ref = run.ref("temp")
        versions = run.versions()

        vehicles_table = pipeline.read_folder(temp, f"{pipeline.VALIDATED}/vehicles")
        vehicles = vehicles_table.to_pandas() if vehicles_table is not None else pd.DataFrame(columns=[c.VEHICLE_ID, c.VEHICLE_CLASS, c.FUEL_TYPE, c.CATALOG_FE])
        geo_table = pipeline.read_folder(temp, f"{pipeline.VALIDATED}/geo_attributes")
        geo = contract.to_frame("geo_attributes", geo_table) if geo_table is not None else None
        layers = spatial.prepare_layers(geo if geo is not None else _empty_geo())

        traj_parts = sorted(int(n.rsplit("-", 1)[1].split(".")[0]) for n in temp.list(f"{pipeline.VALIDATED}/trajectories") if n.endswith(".parquet"))
        tacho_parts = [n for n in temp.list(f"{pipeline.VALIDATED}/tachometer") if n.endswith(".parquet")]

        # Stage 1: trip index, gathered and broadcast.
        indexes = pipeline.gather(client, client.map(pipeline.trip_index_of_piece, [temp_ref] * len(traj_parts), traj_parts, pure=False))
        trip_index = pd.concat(indexes, ignore_index=True) if indexes else pd.DataFrame(columns=list(pipeline.TRIP_INDEX_COLUMNS))

        # Stage 2: tachograph records aligned to trips, written per trajectory piece.
        tacho_counts = {"rows": 0, "aligned": 0, "outside_trips": 0}
        if tacho_parts and len(trip_index):
            index_future = pipeline.scatter_broadcast(client, trip_index)
            tacho_pieces = [pipeline.Piece("tachometer", n, (), 0, int(n.rsplit("-", 1)[1].split(".")[0])) for n in tacho_parts]
            for r in pipeline.gather(client, client.map(pipeline.align_tacho_piece, [temp_ref] * len(tacho_pieces), tacho_pieces, [index_future] * len(tacho_pieces), pure=False)):
                for k in tacho_counts:
                    tacho_counts[k] += r[k]
        elif tacho_parts:
            for n in tacho_parts:
                rows = pq.read_metadata(temp.open(n)).num_rows
                tacho_counts["rows"] += rows
                tacho_counts["outside_trips"] += rows

        # Stage 3: one task per trajectory piece.
        model = pipeline.model_for(run.settings)
        shared = [pipeline.scatter_broadcast(client, x) for x in (vehicles, layers, model)]
        results = pipeline.gather(client, client.map(
            pipeline.compute_piece, [temp_ref] * len(traj_parts), traj_parts,
            *[[s] * len(traj_parts) for s in shared],
            [run.settings.spatial.link_max_distance_m] * len(traj_parts), [versions] * len(traj_parts), pure=False,
        ))

        methods: dict[str, int] = {}
        for r in results:
            for k, v in r.methods.items():
                methods[k] = methods.get(k, 0) + v
        length_m = sum(r.length_m for r in results)
        manifest = manifest_of(temp, phase="compute", run_date=run.day)
        manifest.objects = [o for o in manifest.objects if o.path.startswith((pipeline.SEGMENTS + "/", pipeline.TRIPS + "/", pipeline.BREAKDOWN + "/"))]
        manifest.versions = versions
        manifest.counts = {
            "trips": sum(r.trips for r in results),
            "segments": sum(r.segments for r in results),
            "pieces": len(results),
            "fuel_l": round(sum(r.fuel_l for r in results), 6),
            "co2_ttw_kg": round(sum(r.co2_ttw_kg for r in results), 6),
            "distance_km": round(length_m / 1000.0, 6),
            "matched_share": round(sum(r.matched_m for r in results) / length_m, 6) if length_m else None,
            "methods": dict(sorted(methods.items())),
            "tachometer": tacho_counts,
            "objects": len(manifest.objects),
        }
        return manifest

    return run_phase(run, "compute", body)


def _empty_geo() -> Any:
    import geopandas as gpd

    return gpd.GeoDataFrame({c.FEATURE_ID: pd.Series([], dtype=object)}, geometry=gpd.GeoSeries([], crs="EPSG:4326"), crs="EPSG:4326")


# -- 4 output ----------------------------------------------------------------------------------

_EXTENSIONS = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}


def generate_output(run: DailyRun, summary_extra: dict[str, Any] | None = None) -> PhaseResult:
    """Write the client's files to ``processed/``: trips, breakdown, rejects and a summary."""

    def body() -> Manifest:
        temp, processed = run.store("temp"), run.store("processed")
        processed.remove()
        processed.makedirs()
        fmt = run.settings.output.format
        versions = run.versions()
        written: list[ObjectRecord] = []
        rows: dict[str, int] = {}

        tables = {"trips": pipeline.read_folder(temp, pipeline.TRIPS)}
        if run.settings.output.include_breakdown:
            tables["breakdown"] = pipeline.read_folder(temp, pipeline.BREAKDOWN)
        if run.settings.output.include_rejects:
            tables["rejects"] = pipeline.read_folder(temp, pipeline.REJECTS)
        for name, table in tables.items():
            if table is None:
                table = _empty_output(name)
            if name == "trips" and table.num_rows:
                table = table.sort_by([(c.TRIP_ID, "ascending")])
            rows[name] = table.num_rows
            written.append(processed.write_bytes(f"{name}.{_EXTENSIONS[fmt]}", _encode(table, fmt, run.settings.output.compression, versions)))

        summary = {"run_date": run.day, "rows": rows, "versions": versions, **(summary_extra or {})}
        written.append(processed.write_text("summary.json", json.dumps(summary, ensure_ascii=False, indent=2, sort_keys=True, default=str)))
        manifest = Manifest(phase="output", run_date=run.day, root=processed.url, objects=written, versions=versions)
        manifest.counts = {"rows": rows, "format": fmt, "objects": len(written), "bytes": manifest.total_bytes}
        return manifest

    return run_phase(run, "output", body)


def _empty_output(name: str) -> pa.Table:
    if name == "rejects":
        return pa.table({col: pa.array([], pa.string()) for col in contract.REJECT_COLUMNS})
    return pa.table({c.TRIP_ID: pa.array([], pa.string())})


def _encode(table: pa.Table, fmt: str, compression: str | None, versions: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    if fmt == "parquet":
        metadata = dict(table.schema.metadata or {})
        metadata[b"lmco2"] = json.dumps(versions, sort_keys=True).encode("utf-8")
        pq.write_table(table.replace_schema_metadata(metadata), buffer, compression=compression or "none")
    elif fmt == "csv":
        pacsv.write_csv(_flatten_for_text(table), buffer)
    else:
        frame = _flatten_for_text(table).to_pandas()
        frame.to_json(buffer, orient="records", lines=True, force_ascii=False, date_format="iso")
    return buffer.getvalue()


def _flatten_for_text(table: pa.Table) -> pa.Table:
    columns = []
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_list(column.type) or pa.types.is_struct(column.type) or pa.types.is_map(column.type):
            column = pa.array([json.dumps(v, default=str) for v in column.to_pylist()], pa.string())
        columns.append(column)
    return pa.table(columns, names=table.column_names)


# -- 5 publish ---------------------------------------------------------------------------------


def publish(run: DailyRun, notify: Callable[[dict[str, Any]], None] | None = None) -> PhaseResult:
    """Copy ``processed/`` to the client's ``output/``; ``manifest.json`` then ``_SUCCESS`` go last."""

    def body() -> Manifest:
        processed, output = run.store("processed"), run.store("output")
        output.makedirs()
        verify = None if not output.write_only else _verify_upload_response
        names = [n for n in processed.list() if n not in (MANIFEST_NAME, SUCCESS_NAME)]
        manifest = copy_tree(processed, output, phase="publish", run_date=run.day, relatives=names,
                             retries=run.settings.transfer.retries, verify=verify,
                             on_retry=lambda name, attempt, error: run.on_event("object_retry", {"phase": "publish", "object": name, "attempt": attempt, "error": str(error)}))
        manifest.versions = run.versions()
        manifest.counts = {"objects": len(manifest.objects), "bytes": manifest.total_bytes}
        body_text = manifest.to_json()
        record = output.write_text(MANIFEST_NAME, body_text)
        if not output.write_only:
            verify_read_back(output, record)
        output.write_text(SUCCESS_NAME, json.dumps({"run_date": run.day, "manifest_sha256": record.sha256}))
        if notify is not None:
            notify({"run_date": run.day, "output": output.url, "objects": len(manifest.objects), "manifest_sha256": record.sha256})
        return manifest

    return run_phase(run, "publish", body)


def _verify_upload_response(destination: Store, record: ObjectRecord) -> None:
    """Write-only destinations cannot be read back; the copy itself is trusted here."""
    # NOTE: proving each upload by its Content-MD5 header lives in compute.transfer for S3.
    return None


def _flat(counts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in counts.items() if isinstance(v, (int, float, str)) or v is None}


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("lm-co2")
    except Exception:  # noqa: BLE001 - running from a source tree without installation
        return "0+unknown"


def phase_records(results: list[PhaseResult]) -> list[dict[str, Any]]:
    """Plain dicts of phase results for summaries and artifacts."""
    return [{"phase": r.phase, "skipped": r.skipped, "seconds": round(r.seconds, 3), **{k: v for k, v in r.counts.items()}} for r in results]


__all__ = ["DailyRun", "PHASES", "PhaseResult", "compute", "fetch", "generate_output", "phase_records", "publish", "validate"]
