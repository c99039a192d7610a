"""The five phases of the daily batch as plain functions: fetch, validate, compute, output, publish.

Each phase reads and writes only through :mod:`compute.storage` and :mod:`compute.transfer`, records a manifest with counts
and checksums, and writes its phase marker last. A phase whose marker exists is skipped unless
``force`` is set. A forced phase first removes what it wrote before, so a rerun never duplicates
or mixes rows. The Prefect flow in ``flows/daily.py`` calls these functions, one task each.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import io
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from distributed import Client

from compute import charts, contract, pipeline, plausibility, spatial, transfer
from compute import columns as c
from compute.i18n import OperatorError, message, register
from compute.settings import Settings, parse_run_date
from compute.storage import (
    MANIFEST_NAME,
    DeliveryError,
    Manifest,
    ObjectRecord,
    StorageError,
    Store,
    clear_phase_marker,
    manifest_from_records,
    read_phase_marker,
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
    #: For a fetch skipped as done: how the client's input compared with the fetched copy.
    input_check: InputCheck | None = None

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
    #: The phases the operator requested, in order, or empty for all. Commands suggested in errors repeat them.
    phases: tuple[str, ...] = ()

    @classmethod
    def create(
        cls, settings: Settings, run_date: dt.date | str, *, force: bool = False, on_event: EventSink | None = None,
        phases: Iterable[str] = (),
    ) -> DailyRun:
        return cls(settings=settings, run_date=parse_run_date(run_date), force=force, on_event=on_event or (lambda e, f: None),
                   phases=tuple(phases))

    def phases_from(self, *first: str) -> str:
        """Return ``first`` and the requested phases after the last of them, joined for ``--phases``."""
        requested = self.phases or PHASES
        start = PHASES.index(first[-1])
        return ",".join([*first, *[p for p in requested if PHASES.index(p) > start]])

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
        return None if self.force else read_phase_marker(self.state, phase, self.day)

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


def _deadline(run: DailyRun) -> Callable[[], float]:
    """Seconds left of the phase's client-side deadline (``cluster.compute_timeout_s``), at least 1."""
    end = time.monotonic() + run.settings.cluster.compute_timeout_s
    return lambda: max(1.0, end - time.monotonic())


#: The phase whose results each phase reads, which must have completed before it runs. Validate
#: reads raw/, which a transfer outside lm-co2 may also fill; an empty raw/ stops it on its own.
UPSTREAM: dict[str, str] = {"compute": "validate", "output": "compute", "publish": "output"}

register(
    {
        "phases.upstream_missing": {
            "ja": "{run_date} の {phase} を実行できません。{phase} が読む {upstream} の結果がありません（{upstream} が完了していません）。"
                  "{upstream} を含めて、例えば次のように実行してください。\n  {lm_co2} run --date {run_date} --phases {phases}",
            "en": "Cannot run {phase} for {run_date}: {upstream}, whose results it reads, has not completed. Run it together "
                  "with {upstream}, for example:\n  {lm_co2} run --date {run_date} --phases {phases}",
        },
        "compute.broadcast_failed": {
            "ja": "{run_date} の compute で、ワーカーに共有データ（ジオ属性のリンク {links} 本とエリア {areas} 件、車両マスタ、モデル。"
                  "約 {size_mb} MB）を送る途中でワーカーが止まりました（{error}）。多くはワーカーのメモリ不足です。ワーカーは受け取る間"
                  "この約 2 倍のメモリを使います。cluster.memory_limit（現在 {memory_limit}）を上げるか、ジオ属性を車両が走る地域に"
                  "絞ってから再実行してください。",
            "en": "compute for {run_date}: a worker stopped while receiving the shared data (geo layer of {links} links and "
                  "{areas} areas, vehicle master, model; about {size_mb} MB): {error}. This is most often a worker out of memory; "
                  "a worker needs about twice that size while it receives it. Raise cluster.memory_limit (now {memory_limit}) or "
                  "cut the geo attributes to the region the fleet drives in, then run again.",
        },
        "compute.worker_lost": {
            "ja": "{run_date} の compute で、タスクの途中でワーカーが止まり、共有データ（ジオ属性のリンク {links} 本とエリア {areas} 件、"
                  "車両マスタ、モデル。約 {size_mb} MB）が失われました（{error}）。多くはワーカーのメモリ不足です。各ワーカーは"
                  "共有データと計算中の区間を同時に持ちます。cluster.memory_limit（現在 {memory_limit}）を上げるか、ジオ属性を車両が走る"
                  "地域に絞ってから再実行してください。",
            "en": "compute for {run_date}: a worker stopped during the tasks and the shared data (geo layer of {links} links and "
                  "{areas} areas, vehicle master, model; about {size_mb} MB) was lost: {error}. This is most often a worker out of "
                  "memory; each worker keeps the shared data and the piece it computes. Raise cluster.memory_limit (now "
                  "{memory_limit}) or cut the geo attributes to the region the fleet drives in, then run again.",
        },
        "phases.raw_changed": {
            "ja": "{run_date} の validate を実行できません。{path} の内容が fetch で確認したコピーと違います"
                  "（追加: {added}、欠落: {missing}、サイズ変更: {resized}）。クライアントの入力から取り直してください。例:\n"
                  "  {lm_co2} run --date {run_date} --force --phases {phases}",
            "en": "Cannot run validate for {run_date}: {path} differs from the copy fetch verified (added: {added}; missing: "
                  "{missing}; size changed: {resized}). Fetch the client's input again, for example:\n"
                  "  {lm_co2} run --date {run_date} --force --phases {phases}",
        },
        "phases.raw_empty": {
            "ja": "{run_date} の validate を実行できません。取得先 {path} にファイルがありません（fetch が実行されていないか、"
                  "外部からの転送が終わっていません）。fetch を含めて、例えば次のように実行してください。\n"
                  "  {lm_co2} run --date {run_date} --phases {phases}",
            "en": "Cannot run validate for {run_date}: {path} holds no files (fetch has not run, or a transfer from outside "
                  "lm-co2 has not finished). Run it together with fetch, for example:\n  {lm_co2} run --date {run_date} --phases {phases}",
        },
    }
)


class UpstreamMissingError(OperatorError):
    """A phase was asked to run on a day where the phase it reads from has not completed."""

    def __init__(self, phase: str, upstream: str, run_date: str, phases: str = "") -> None:
        super().__init__("phases.upstream_missing", phase=phase, upstream=upstream, run_date=run_date, phases=phases or f"{upstream},{phase}")


def _missing_before(run: DailyRun, upstream: str) -> list[str]:
    """Return ``upstream`` and the phases before it that have not completed either, oldest first.

    Validate reads ``raw/`` rather than a marker, so fetch joins the list when ``raw/`` is empty:
    the suggested command then works when copied.
    """
    missing = [upstream]
    while (before := UPSTREAM.get(missing[0])) is not None and read_phase_marker(run.state, before, run.day) is None:
        missing.insert(0, before)
    if missing[0] == "validate" and not run.store("raw").list():
        missing.insert(0, "fetch")
    return missing


#: Callables run with the phase name before each phase starts. ``lm-co2 run`` adds one that
#: raises when a stop signal arrived but its exception was lost: Python discards an exception
#: raised while a weakref callback runs, and the run went on to deliver (``flows.interrupt``).
PHASE_START_HOOKS: list[Callable[[str], None]] = []


def run_phase(run: DailyRun, phase: str, body: Callable[[], Manifest]) -> PhaseResult:
    """Run ``body`` unless ``phase`` already completed; write its marker last.

    A phase that runs first needs the marker of the phase it reads (:data:`UPSTREAM`). It then
    clears its own marker and those of every later phase: their results were made from what
    this phase is about to replace, so a later run must not skip them, nor this phase if it fails.
    """
    for hook in PHASE_START_HOOKS:
        hook(phase)
    started = time.perf_counter()
    if run.completed(phase) is not None:
        return skipped(run, phase)
    upstream = UPSTREAM.get(phase)
    if upstream is not None and read_phase_marker(run.state, upstream, run.day) is None:
        raise UpstreamMissingError(phase, upstream, run.day, run.phases_from(*_missing_before(run, upstream), phase))
    for later in PHASES[PHASES.index(phase):]:
        clear_phase_marker(run.state, later)
    run.on_event("phase_started", {"phase": phase, "run_date": run.day})
    manifest = body()
    manifest.counts["seconds"] = round(time.perf_counter() - started, 3)
    write_phase_marker(run.state, manifest)
    run.on_event("phase_completed", {"phase": phase, "run_date": run.day, **_flat(manifest.counts)})
    return PhaseResult(phase, False, time.perf_counter() - started, manifest)


# -- 1 fetch -----------------------------------------------------------------------------------


def fetch(run: DailyRun, transfer_client: Any = None) -> PhaseResult:
    """Copy the client's day from ``input/`` to ``raw/``, verify every object and repair what differs.

    Parameters
    ----------
    run
        The run; ``settings.transfer.mode`` picks Storage Transfer Service (``sts``) or the object
        by object copy through fsspec (``fsspec``).
    transfer_client
        Storage Transfer Service client for ``sts``; created with application-default credentials
        when omitted.
    """

    check = _check_input_unchanged(run)
    if run.force and not transfer.list_input(run.store("input"), run.day):
        # Checked before the phase starts: a forced rerun of a day whose input is gone stops
        # with the missing delivery and keeps the verified raw copy and every phase marker.
        raise DeliveryError("delivery_missing", run.store("input").url, run.day)

    def body() -> Manifest:
        source, destination = run.store("input"), run.store("raw")
        if run.force:
            destination.remove()
        return transfer.fetch_day(
            source, destination, run_date=run.day, mode=run.settings.transfer.mode, retries=run.settings.transfer.retries,
            run_transfer=_transfer_runner(run, transfer_client), on_event=_phase_events(run, "fetch"),
        )

    result = run_phase(run, "fetch", body)
    if result.skipped and check is not None:
        result.input_check = check
    return result


def _check_input_unchanged(run: DailyRun) -> InputCheck | None:
    """Raise if the day was fetched before and its input objects changed since (see :meth:`InputChanges.compare`).

    An input with no objects left is no change: the client removed the delivered day, and the
    raw copy is the verified copy of it. The fetch is skipped as done, with an
    ``input_unchecked`` event, as in a run without fetch. Returns the comparison for a fetch
    that will be skipped, None for one that will run.
    """
    done = run.completed("fetch")
    if done is None:
        return None
    source = run.store("input")
    current = transfer.list_input(source, run.day)
    if not current:
        check = InputCheck("input_absent", source.url)
        run.on_event("input_unchecked", {"phase": "fetch", **check.as_dict()})
        return check
    changes = InputChanges.compare(done, current, source)
    if changes:
        raise InputChangedError(source.url, run.day, changes, True)
    return InputCheck("unchanged", source.url)


register(
    {
        "phases.input_changed": {
            "ja": "{run_date} の入力 {url} が前回の取得（fetch）の後に変わりました（{detail}）。"
                  "新しい入力で作り直すには、例えば次のように --force で再実行してください。\n  {lm_co2} run --date {run_date} --force",
            "en": "The input of {run_date} in {url} changed after it was fetched ({detail}). Rerun with --force to rebuild "
                  "the day from the new input, for example:\n  {lm_co2} run --date {run_date} --force",
        },
        "phases.raw_outdated": {
            "ja": (
                "{run_date} の入力 {url} が取得（fetch）の後に変わったため、raw のコピーは古くなっています（{detail}）。"
                "fetch を含めて、例えば次のように --force で再実行してください。\n  {lm_co2} run --date {run_date} --force"
            ),
            "en": (
                "The input of {run_date} in {url} changed after it was fetched ({detail}), so the raw copy is out of date. "
                "Rerun with the fetch phase and --force, for example:\n  {lm_co2} run --date {run_date} --force"
            ),
        },
        "phases.change.added": {"ja": "追加 {count} 件: {path}", "en": "{count} new: {path}"},
        "phases.change.removed": {"ja": "削除 {count} 件: {path}", "en": "{count} gone: {path}"},
        "phases.change.resized": {"ja": "サイズ変更 {count} 件: {path}", "en": "{count} resized: {path}"},
        "phases.change.modified": {"ja": "内容変更 {count} 件: {path}", "en": "{count} rewritten: {path}"},
        "phases.change.more": {"ja": "{path} ほか", "en": "{path} and others"},
        "phases.change.separator": {"ja": "、", "en": ", "},
    }
)


@dataclass(frozen=True)
class InputChanges:
    """Objects of the client's input that differ from the fetched copy, by relative path."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    resized: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()

    @classmethod
    def between(cls, fetched: Manifest, current: dict[str, int]) -> InputChanges:
        """Compare the objects fetch recorded with the input listed now (``{path: size}``)."""
        before = {o.path: o.size for o in fetched.objects}
        return cls(
            added=tuple(sorted(set(current) - set(before))),
            removed=tuple(sorted(set(before) - set(current))),
            resized=tuple(sorted(p for p in set(current) & set(before) if current[p] != before[p])),
        )

    @classmethod
    def compare(cls, fetched: Manifest, current: dict[str, tuple[int, str]], source: Store) -> InputChanges:
        """Compare names and sizes, then the content of objects whose version token changed.

        ``current`` is the input listed now with version tokens (:meth:`Store.list_versions`).
        An object of the same size whose token differs from the one fetch recorded is read once,
        and counts as rewritten only if its SHA-256 differs from the copied object's. So a
        rewrite of the same size is found, while reading costs nothing for an input that stayed
        as it was. A fetch marker without tokens (written before they were recorded) is compared
        by names and sizes only.
        """
        sizes = cls.between(fetched, {path: size for path, (size, _) in current.items()})
        recorded = {o.path: o for o in fetched.objects}
        suspects = [
            path for path, (size, token) in current.items()
            if path in recorded and size == recorded[path].size and fetched.sources.get(path, token) != token
        ]
        modified = tuple(path for path in suspects if source.checksums(path)[1] != recorded[path].sha256)
        return replace(sizes, modified=modified)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.resized or self.modified)

    def describe(self, lang: str) -> str:
        """Return the counts of new, gone, resized and rewritten objects with the first path of each, in ``lang``."""
        parts = []
        for kind, paths in (("added", self.added), ("removed", self.removed), ("resized", self.resized), ("modified", self.modified)):
            if not paths:
                continue
            path = paths[0] if len(paths) == 1 else message("phases.change.more", lang, path=paths[0])
            parts.append(message(f"phases.change.{kind}", lang, count=len(paths), path=path))
        return message("phases.change.separator", lang).join(parts)


class InputChangedError(DeliveryError):
    """The client's input differs from the objects fetch copied (names or sizes), so retrying does not help.

    ``fetch_selected`` chooses the advice. With fetch in the run, the advice is a rerun with
    ``--force``. Without it, the raw copy is out of date and the rerun must include fetch.
    """

    def __init__(self, url: str, run_date: str, changes: InputChanges, fetch_selected: bool) -> None:
        self.changes = changes
        self.fetch_selected = fetch_selected
        super().__init__("input_changed", url, run_date, changes.describe("en"))

    def message(self, lang: str = "ja") -> str:
        key = "phases.input_changed" if self.fetch_selected else "phases.raw_outdated"
        return message(key, lang, url=self.url, run_date=self.run_date, detail=self.changes.describe(lang))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.url, self.run_date, self.changes, self.fetch_selected))


InputCheckStatus = Literal["unchanged", "unreachable", "input_absent", "not_fetched"]


@dataclass(frozen=True)
class InputCheck:
    """Outcome of comparing the client's input with the raw copy, for a run without fetch.

    ``status`` is one of:

    - ``unchanged``: names, sizes and contents match the fetch marker (:meth:`InputChanges.compare`).
    - ``unreachable``: listing the input failed, and ``detail`` contains the error.
    - ``input_absent``: the input has no objects left.
    - ``not_fetched``: no fetch marker exists to compare with.
    """

    status: InputCheckStatus
    url: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        """Return the fields for a log record or the summary.

        ``detail`` is left out when it is empty, so a record does not end in an empty ``detail=``.
        """
        return {"status": self.status, "url": self.url, **({"detail": self.detail} if self.detail else {})}


def check_raw_copy_current(run: DailyRun) -> InputCheck:
    """Compare the client's input with the objects fetch copied to ``raw/``, for runs without fetch.

    Validate reads ``raw/`` and the later phases read what validate wrote, so a run that leaves
    fetch out would otherwise report figures of an older delivery. The check reads the fetch
    marker even with ``force``, and compares the objects like the check in :func:`fetch`.

    Returns
    -------
    InputCheck
        ``unchanged``, or why the input could not be compared. An input that cannot be listed or
        has no objects left does not stop the run: the raw copy is the verified copy of what was
        delivered, and the caller reports that the check was not possible.

    Raises
    ------
    InputChangedError
        If objects were added, removed, resized or rewritten since the fetch.
    """
    source = run.store("input")
    fetched = read_phase_marker(run.state, "fetch", run.day)
    if fetched is None:
        return InputCheck("not_fetched", source.url)
    try:
        current = source.list_versions()
        if not current:
            return InputCheck("input_absent", source.url)
        changes = InputChanges.compare(fetched, current, source)
    except _listing_errors() as error:
        return InputCheck("unreachable", source.url, f"{type(error).__name__}: {error}"[:300])
    if changes:
        raise InputChangedError(source.url, run.day, changes, False)
    return InputCheck("unchanged", source.url)


def _listing_errors() -> tuple[type[Exception], ...]:
    """Errors of listing a store that mean it is unreachable: network, permission and credential errors."""
    errors: list[type[Exception]] = [OSError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        errors += [BotoCoreError, ClientError]
    except ImportError:  # boto3 is only installed for S3 roots
        pass
    try:
        from google.auth.exceptions import GoogleAuthError

        errors.append(GoogleAuthError)
    except ImportError:  # google-auth is only installed for GCS roots
        pass
    try:
        # gcsfs raises its own HttpError for a 401 and most other 4xx responses, and for 429 and
        # 5xx responses once its retries are used up.
        from gcsfs.retry import HttpError as GcsHttpError

        errors.append(GcsHttpError)
    except ImportError:  # gcsfs is only installed for GCS roots
        pass
    try:
        # gcsfs and s3fs use aiohttp, whose error for a dropped connection is not an OSError.
        from aiohttp import ClientError as HttpClientError

        errors.append(HttpClientError)
    except ImportError:  # aiohttp comes with gcsfs and s3fs only
        pass
    return tuple(errors)


def _transfer_runner(run: DailyRun, client: Any) -> Callable[[], dict[str, Any]] | None:
    """Return a callable that runs the day's transfer job, or ``None`` outside the ``sts`` mode."""
    settings = run.settings.transfer
    if settings.mode != "sts":
        return None
    if not settings.project_id or not settings.job_name:
        raise ValueError(
            f"transfer.mode is 'sts' but transfer.project_id={settings.project_id!r} and transfer.job_name={settings.job_name!r}; "
            "set both (LMCO2_TRANSFER__PROJECT_ID, LMCO2_TRANSFER__JOB_NAME) or use transfer.mode 'fsspec'"
        )
    project_id, job_name = settings.project_id, settings.job_name

    def run_job() -> dict[str, Any]:
        return transfer.run_storage_transfer(
            client if client is not None else transfer.make_transfer_client(),
            project_id=project_id, job_name=job_name, timeout_s=settings.timeout_s, on_event=_phase_events(run, "fetch"),
        )

    return run_job


def _phase_events(run: DailyRun, phase: str) -> EventSink:
    def emit(event: str, fields: dict[str, Any]) -> None:
        run.on_event(event, {"phase": phase, **fields})

    return emit


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
        time_left = _deadline(run)
        raw, temp = run.store("raw"), run.store("temp")
        temp.remove(pipeline.VALIDATED)
        temp.remove(pipeline.REJECTS)
        csettings = run.settings.contract
        summary = contract.ValidationSummary()

        # Dataset level: every file footer, before any task runs.
        in_raw = raw.list()
        if not in_raw:
            raise OperatorError("phases.raw_empty", run_date=run.day, path=f"{raw.url.rstrip('/')}/", phases=run.phases_from("fetch", "validate"))
        _check_raw_as_fetched(run, in_raw)
        sources = _dataset_sources(run, raw)
        missing = [dataset for dataset, (_, files) in sources.items() if not files and dataset in contract.REQUIRED_DATASETS]
        if missing:
            # Every missing dataset at once, so one delivery from the client can fix them all.
            raise contract.dataset_missing(missing, [raw.child_url(dataset) for dataset in missing])
        for dataset, (store, files) in sources.items():
            if not files:
                summary.mark_absent(dataset)
                continue
            for name, schema in zip(files, pipeline.in_threads(functools.partial(_schema_or_error, store), files), strict=True):
                if isinstance(schema, Exception):
                    raise contract.file_unreadable(dataset, name, schema) from schema
                contract.conform_table(dataset, schema.empty_table(), csettings)

        # Small datasets on the client: vehicles first, their ids feed the trip and tacho rules.
        # The writers return the size and checksums of every file, so the manifest needs no
        # second read of the validated day (0.65 GB on the 100k day, about 6.5 GB on a 1M day).
        written: list[ObjectRecord] = []
        vehicles, vehicle_rejects = _validate_small(run, "vehicles", sources, summary, written)
        known = vehicles[c.VEHICLE_ID].to_numpy(dtype=object) if len(vehicles) else np.array([], dtype=object)
        rejected_vehicles = contract.rejected_vehicle_reasons(vehicle_rejects)
        _validate_small(run, "geo_attributes", sources, summary, written)

        # Large datasets on the cluster, with keys duplicated anywhere in the day. Both datasets
        # go at once: each pass of one (key hashes, repeated keys, rows) ends with a few tasks
        # that leave workers idle, which the other's tasks fill.
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        raw_ref, temp_ref = run.ref("raw"), run.ref("temp")
        plans: dict[str, list[pipeline.Piece]] = {}
        for dataset in ("trajectories", "tachometer"):
            store, files = sources[dataset]
            if not files:
                continue
            bounds = _PIECE_ROWS[dataset]
            target = pipeline.target_rows_for(store, dataset, n_workers=n_workers, rows_per_piece_max=bounds[1], rows_per_piece_min=bounds[0])
            plans[dataset] = pipeline.plan_pieces(store, dataset, target_rows=target, max_rows=bounds[1], **_vertex_bound(csettings, dataset))
        repeated = pipeline.in_threads(lambda dataset: pipeline.repeated_keys(client, raw_ref, plans[dataset], csettings, time_left()), list(plans))
        futures = []
        for (dataset, pieces), repeated_keys in zip(plans.items(), repeated, strict=True):
            n = len(pieces)
            context = contract.ValidationContext(
                settings=csettings, known_vehicle_ids=known, rejected_vehicle_reasons=rejected_vehicles, repeated_keys={dataset: repeated_keys}
            )
            context_future = pipeline.scatter_broadcast(client, context)
            futures.extend(client.map(
                pipeline.validate_piece, [raw_ref] * n, [temp_ref] * n, pieces, [csettings] * n, [context_future] * n, pure=False,
            ))
        for part in pipeline.gather(client, futures, timeout_s=time_left()):
            summary.add(part.summary)
            written.extend(part.objects)

        contract.check_balance(summary)
        manifest = manifest_from_records(temp, written, phase="validate", run_date=run.day)
        manifest.counts = {**summary.to_dict(), "objects": len(manifest.objects), "bytes": manifest.total_bytes}
        return manifest

    return run_phase(run, "validate", body)


# Rows per piece (minimum, maximum): trajectories carry hundreds of vertices per row. For
# "segments" (the compute phase) the bounds count vertices: the maximum keeps a compute task
# near 1 GiB of memory at about 1 KiB per vertex, the minimum keeps task overhead small.
_PIECE_ROWS = {"trajectories": (500, 20_000), "tachometer": (50_000, 2_000_000), "segments": (100_000, 1_000_000)}
#: Maximum vertices of a validation piece. Validating a trajectory piece peaks at about 140 bytes
#: per vertex (4.1 GiB for 30M vertices in one row group). 2,000,000 vertices keep a piece near
#: 0.3 GiB on top of the worker's 0.4 GiB, whatever the trips' lengths and the row groups.
_VALIDATE_VERTICES_MAX = 2_000_000


def _vertex_bound(csettings: contract.ContractSettings, dataset: str) -> dict[str, Any]:
    """Return the vertex limit of the validation pieces of ``dataset``, with its source column names."""
    if dataset != "trajectories":
        return {}
    source = {target: name for name, target in csettings.trajectories.rename.items()}
    return {"max_vertices": _VALIDATE_VERTICES_MAX, "vertex_columns": (source.get(c.TIMESTAMPS, c.TIMESTAMPS), source.get(c.GEOMETRY, c.GEOMETRY))}


def _schema_or_error(store: Store, name: str) -> pa.Schema | pa.ArrowInvalid | OSError:
    """Return the Arrow schema of a Parquet file, or the error that reading its footer raised."""
    try:
        with store.open(name) as handle:
            return pq.read_schema(handle)
    except (pa.ArrowInvalid, OSError) as error:
        return error


def _check_raw_as_fetched(run: DailyRun, in_raw: dict[str, int]) -> None:
    """Raise unless ``raw/`` contains exactly the objects and sizes that fetch verified.

    Validate reads every object below ``raw/``. Fetch keeps it a mirror of the client's input,
    but a run without fetch would otherwise validate whatever was added or rewritten there since.
    Without a fetch marker (``raw/`` filled by a transfer outside lm-co2) there is nothing to
    compare with. Contents are not read again: names and sizes catch a copied-in or rewritten
    file, not a rewrite of the same size.
    """
    fetched = read_phase_marker(run.state, "fetch", run.day)
    if fetched is None:
        return
    expected = {o.path: o.size for o in fetched.objects}
    added = sorted(set(in_raw) - set(expected))
    missing = sorted(set(expected) - set(in_raw))
    resized = sorted(name for name in set(in_raw) & set(expected) if in_raw[name] != expected[name])
    if added or missing or resized:
        def listed(names: list[str]) -> str:
            if not names:
                return "-"
            more = f" (+{len(names) - 3})" if len(names) > 3 else ""
            return ", ".join(names[:3]) + more

        raise OperatorError(
            "phases.raw_changed", run_date=run.day, path=run.store("raw").url, added=listed(added), missing=listed(missing),
            resized=listed(resized), phases=run.phases_from("fetch", "validate"),
        )


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
    written: list[ObjectRecord],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate a small dataset in this process and return its accepted rows and its rejects.

    Keys are compared across all files of the dataset, and of identical copies the first in
    file order is kept, as ``lm-co2 validate`` does. The records of the files it writes are
    appended to ``written``."""
    store, files = sources[dataset]
    temp = run.store("temp")
    pieces = [pipeline.Piece(dataset, name, tuple(range(_row_groups(store, name))), 0, index) for index, name in enumerate(files)]
    tables = [pipeline.read_piece(store, piece, run.settings.contract) for piece in pieces]
    repeated = contract.repeated_keys_in(dataset, tables, files)
    context = contract.ValidationContext(settings=run.settings.contract, repeated_keys={dataset: repeated})
    frames = []
    reject_frames = []
    for piece, table in zip(pieces, tables, strict=True):
        frame = contract.to_frame(dataset, table)
        accepted, rejects = contract.validate_rows(dataset, frame, context, piece=piece.index)
        written.append(pipeline.write_accepted(temp, dataset, piece.name, table, accepted))
        written.append(pipeline.write_table(temp, f"{pipeline.REJECTS}/{dataset}/{piece.name}", pipeline.rejects_table(rejects)))
        summary.record(dataset, len(frame), accepted, rejects)
        frames.append(accepted)
        reject_frames.append(rejects)
    accepted_rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[c.VEHICLE_ID])
    return accepted_rows, pd.concat(reject_frames, ignore_index=True) if reject_frames else contract.empty_rejects()


def _row_groups(store: Store, name: str) -> int:
    with store.open(name) as handle:
        return pq.ParquetFile(handle).metadata.num_row_groups


# -- 3 compute ---------------------------------------------------------------------------------


def compute(run: DailyRun, client: Client) -> PhaseResult:
    """Segment, join, align and estimate every accepted trip on the cluster.

    Stages: plan pieces from the validated footers, then gather the trip index. Next, align every
    tachograph file to trips into one sorted file with a row group per compute piece, while the
    client prepares the layer, the vehicle master and the model. Finally one task per piece
    segments, joins, reads its tachograph row groups and estimates. Wall and CPU
    seconds per stage, summed over tasks, and the workers' largest memory go to the manifest counts.
    """

    def body() -> Manifest:
        time_left = _deadline(run)
        # Wall seconds of each step as the client sees it (tasks included), for the manifest.
        steps: dict[str, float] = {}
        clock = [time.perf_counter()]

        def step_done(name: str) -> None:
            now = time.perf_counter()
            steps[name] = round(now - clock[0], 3)
            clock[0] = now

        temp = run.store("temp")
        for folder in (pipeline.SEGMENTS, pipeline.TRIPS, pipeline.BREAKDOWN, pipeline.TACHO_ALIGNED):
            temp.remove(folder)
        temp_ref = run.ref("temp")
        versions = run.versions()
        max_distance_m = run.settings.spatial.link_max_distance_m

        # Stage 1: pieces of about equal vertex counts, and the trip index of the day (footers and
        # trip intervals only, a fraction of a second).
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        bounds = _PIECE_ROWS["segments"]
        pieces = pipeline.plan_compute_pieces(temp, n_workers=n_workers, vertices_min=bounds[0], vertices_max=bounds[1])
        n = len(pieces)
        indexes = pipeline.gather(
            client, client.map(pipeline.trip_index_of_piece, [temp_ref] * n, pieces, pure=False), timeout_s=time_left(),
        )
        trip_index = pipeline.build_trip_index(indexes)
        step_done("trip_index")

        # Stage 2: tachograph records aligned to trips, one sorted file per tachograph file. While
        # the alignment tasks run, the client reads the small datasets, indexes the layer, loads the
        # model and broadcasts the piece inputs. Done before the alignment, this left the workers idle.
        tacho_files = [name for name in temp.list(f"{pipeline.VALIDATED}/tachometer") if name.endswith(".parquet")]
        align_futures = []
        if tacho_files:
            index_future = pipeline.scatter_broadcast(client, trip_index)
            align_futures = client.map(
                pipeline.align_tacho_piece, [temp_ref] * len(tacho_files), tacho_files, [index_future] * len(tacho_files), pure=False,
            )
        try:
            vehicles_table = pipeline.read_folder(temp, f"{pipeline.VALIDATED}/vehicles")
            vehicles = (vehicles_table.to_pandas() if vehicles_table is not None
                        else pd.DataFrame(columns=[c.VEHICLE_ID, c.VEHICLE_CLASS, c.FUEL_TYPE, c.CATALOG_FE]))
            geo_table = pipeline.read_folder(temp, f"{pipeline.VALIDATED}/geo_attributes")
            geo = contract.to_frame("geo_attributes", geo_table) if geo_table is not None else None
            layers = spatial.prepare_layers(geo if geo is not None else _empty_geo(), link_max_distance_m=max_distance_m)
            model = pipeline.model_for(run.settings)
            broadcast = [pipeline.VehicleMaster.of(vehicles), layers, model]
            shared_mb = _size_mb(broadcast)
            shared = _broadcast(run, client, broadcast, layers, shared_mb)
            del broadcast
        except BaseException:
            client.cancel(align_futures)
            raise
        step_done("prepare")
        with _worker_loss_named(run, client, shared_mb, layers):
            aligned: list[pipeline.AlignResult] = pipeline.gather(client, align_futures, timeout_s=time_left()) if align_futures else []
        tacho_counts = {key: sum(getattr(r, key) for r in aligned) for key in ("rows", "aligned", "outside_trips")}
        tacho_parts = pipeline.tacho_parts_by_piece(aligned)
        step_done("align")

        # Stage 3: one task per piece.
        with _worker_loss_named(run, client, shared_mb, layers):
            results = pipeline.gather(client, client.map(
                pipeline.compute_piece, [temp_ref] * n, pieces, [tacho_parts.get(p.index, []) for p in pieces],
                *[[s] * n for s in shared], [max_distance_m] * n, [versions] * n, pure=False,
            ), timeout_s=time_left())
        step_done("pieces")

        methods: dict[str, int] = {}
        stage_seconds: dict[str, float] = {}
        for r in results:
            for k, v in r.methods.items():
                methods[k] = methods.get(k, 0) + v
        for timed in [*aligned, *results]:
            for k, v in timed.seconds.items():
                stage_seconds[k] = round(stage_seconds.get(k, 0.0) + v, 3)
        length_m = sum(r.length_m for r in results)
        # The tasks returned the records of what they wrote. Reading the objects back to hash them
        # would cost a second pass over every segment byte on the client.
        manifest = manifest_from_records(temp, [o for r in results for o in r.objects], phase="compute", run_date=run.day)
        manifest.versions = versions
        manifest.counts = {
            "trips": sum(r.trips for r in results),
            "segments": sum(r.segments for r in results),
            "pieces": len(results),
            "vertices_per_piece_max": max((p.vertices for p in pieces), default=0),
            "fuel_l": round(sum(r.fuel_l for r in results), 6),
            "trips_without_fuel_l": _summed_counts(r.trips_without_fuel_l for r in results),
            "co2_ttw_kg": round(sum(r.co2_ttw_kg for r in results), 6),
            "distance_km": round(length_m / 1000.0, 6),
            "matched_share": round(sum(r.matched_m for r in results) / length_m, 6) if length_m else None,
            "methods": dict(sorted(methods.items())),
            "tachometer": tacho_counts,
            "overlapping_trips": pipeline.overlapping_trips(trip_index),
            "stage_seconds": dict(sorted(stage_seconds.items())),
            "step_wall_seconds": steps,
            "worker_peak_rss_bytes": max((r.peak_rss_bytes for r in results), default=0),
            "objects": len(manifest.objects),
        }
        return manifest

    return run_phase(run, "compute", body)


def _size_mb(values: list[Any]) -> str:
    """Return the size of ``values`` in MB as Dask estimates it, for messages."""
    from dask.sizeof import sizeof

    return f"{sum(sizeof(v) for v in values) / 1e6:,.0f}"


@contextlib.contextmanager
def _worker_loss_named(run: DailyRun, client: Client, shared_mb: str, layers: spatial.GeoLayers) -> Iterator[None]:
    """Raise an :class:`OperatorError` that names memory when a worker dies under the tasks.

    A worker restarted above its memory limit loses the broadcast data, and the tasks that
    needed it are cancelled, or the worker is reported killed. A cancellation while the same
    workers are still there (an operator's stop) is raised as it is.
    """
    from concurrent.futures import CancelledError

    from distributed.scheduler import KilledWorker

    workers = set(client.scheduler_info().get("workers", {}))
    try:
        yield
    except (CancelledError, KilledWorker) as error:
        if isinstance(error, CancelledError) and set(client.scheduler_info().get("workers", {})) == workers:
            raise
        raise OperatorError(
            "compute.worker_lost", run_date=run.day, size_mb=shared_mb, links=f"{len(layers.links):,}", areas=f"{len(layers.areas):,}",
            memory_limit=run.settings.cluster.memory_limit, error=f"{type(error).__name__}: {str(error).splitlines()[0]}",
        ) from error


def _broadcast(run: DailyRun, client: Client, values: list[Any], layers: spatial.GeoLayers, shared_mb: str) -> list[Any]:
    """Send each of ``values`` to every worker; raise an :class:`OperatorError` that names memory when it fails.

    Every worker keeps the whole geo layer, and while it unpacks it needs about twice its size.
    A worker above its memory limit is restarted, and the scatter then fails with a closed
    connection or a lost worker, whose text does not mention memory.
    """
    try:
        return [pipeline.scatter_broadcast(client, value) for value in values]
    except Exception as error:  # noqa: BLE001 - any failure here is reported with the sizes that explain it
        raise OperatorError(
            "compute.broadcast_failed", run_date=run.day, size_mb=shared_mb,
            links=f"{len(layers.links):,}", areas=f"{len(layers.areas):,}", memory_limit=run.settings.cluster.memory_limit,
            error=f"{type(error).__name__}: {error}",
        ) from error


def _summed_counts(parts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Add up counts by key, keys sorted."""
    total: dict[str, int] = {}
    for part in parts:
        for key, count in part.items():
            total[key] = total.get(key, 0) + count
    return dict(sorted(total.items()))


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
        formula_cells: dict[str, int] = {}

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
            if fmt == "csv":
                table, formula_cells[name] = guard_csv_formulas(table, escape=run.settings.output.csv_escape_formulas)
            written.append(processed.write_bytes(f"{name}.{_EXTENSIONS[fmt]}", _encode(table, fmt, run.settings.output.compression, versions)))
        if any(formula_cells.values()):
            run.on_event("csv_formula_cells", {
                "phase": "output", "cells": sum(formula_cells.values()), "escaped": run.settings.output.csv_escape_formulas,
                "files": ", ".join(f"{name}.csv" for name, count in formula_cells.items() if count),
            })

        # The run report: charts and pages under report/, warnings and key figures in the summary.
        report, warnings = _build_report(run, tables["trips"])
        for name, data in report.files().items():
            written.append(processed.write_bytes(f"{_REPORT_FOLDER}/{name}", data))
        thresholds = run.settings.plausibility

        summary = {
            "run_date": run.day, "rows": rows, "versions": versions, "report": report.figures,
            "warnings": plausibility.summarise_warnings(warnings, thresholds), **(summary_extra or {}),
        }
        written.append(processed.write_text("summary.json", json.dumps(summary, ensure_ascii=False, indent=2, sort_keys=True, default=str)))
        manifest = Manifest(phase="output", run_date=run.day, root=processed.url, objects=written, versions=versions)
        manifest.counts = {
            "rows": rows, "format": fmt, "objects": len(written), "bytes": manifest.total_bytes,
            "warnings": plausibility.count_codes(warnings), "charts": sorted(report.charts), "chart_language": report.chart_language,
            "report_timezone": run.settings.output.report_timezone,
        }
        if fmt == "csv":
            manifest.counts["csv_formula_cells"] = sum(formula_cells.values())
        return manifest

    return run_phase(run, "output", body)


_REPORT_FOLDER = "report"
# Segments are aggregated in record batches of this many rows, so memory stays bounded per part.
_REPORT_BATCH_ROWS = 1_000_000
_TRIP_REPORT_COLUMNS = (
    c.TRIP_ID, c.VEHICLE_ID, c.DISTANCE_KM, c.CO2_TTW_KG, c.CO2_G_PER_KM, c.METHOD, c.FUEL_L, c.T1_T2_RATIO, c.QUALITY_FLAGS,
)
_TRIP_REPORT_TEXT = (c.TRIP_ID, c.VEHICLE_ID, c.METHOD, c.QUALITY_FLAGS)


def _build_report(run: DailyRun, trips_table: pa.Table | None) -> tuple[charts.RunReport, list[plausibility.PlausibilityWarning]]:
    """Gather the day's sums and tables from ``temp/``, run the plausibility checks, draw the report."""
    temp = run.store("temp")
    thresholds = run.settings.plausibility
    segments = _aggregate_segment_parts(temp, run.settings.output.report_timezone)
    geo = _read_columns(temp, f"{pipeline.VALIDATED}/geo_attributes", charts.GEO_REPORT_COLUMNS)
    vehicles = _read_columns(temp, f"{pipeline.VALIDATED}/vehicles", (c.VEHICLE_ID, c.VEHICLE_CLASS, c.FUEL_TYPE))
    rejects = _read_columns(temp, pipeline.REJECTS, (c.DATASET, c.REASON))
    trips = _trip_report_frame(trips_table)
    vehicles_frame = vehicles.to_pandas() if vehicles is not None else pd.DataFrame(columns=[c.VEHICLE_ID, c.VEHICLE_CLASS])

    facts = _day_facts(run, segments, geo)
    warnings = plausibility.check_day(trips, vehicles_frame, facts, thresholds)
    inputs = charts.ReportInputs(
        run_date=run.day,
        trips=trips,
        vehicles=vehicles_frame,
        rejects=rejects.to_pandas() if rejects is not None else pd.DataFrame(columns=[c.DATASET, c.REASON]),
        segments=segments,
        geo=geo,
        phases=_earlier_phase_times(run),
        warnings=warnings,
        plausibility=thresholds,
    )
    return charts.build_run_report(inputs, lang=run.settings.language), warnings


def load_report(run: DailyRun) -> charts.RunReport | None:
    """Read the run report that the output phase wrote to ``processed/report/``; None if absent."""
    processed = run.store("processed")
    names = processed.list("report")
    if not names:
        return None
    files = {name.removeprefix("report/"): processed.read_bytes(name) for name in names}
    return charts.RunReport.from_files(run.day, files)


def _aggregate_segment_parts(temp: Store, timezone: str) -> charts.SegmentAggregates:
    """Sum the segments for the report, reading only the needed columns one record batch at a time;
    hours on the clock of ``timezone``."""
    parts = []
    for name in temp.list(pipeline.SEGMENTS):
        if not name.endswith(".parquet"):
            continue
        with temp.open(name) as handle:
            parquet = pq.ParquetFile(handle)
            columns = [n for n in charts.SEGMENT_REPORT_COLUMNS if n in parquet.schema_arrow.names]
            for batch in parquet.iter_batches(batch_size=_REPORT_BATCH_ROWS, columns=columns):
                parts.append(charts.aggregate_segments(pa.Table.from_batches([batch]), timezone))
    return charts.merge_aggregates(parts, timezone)


def _read_columns(store: Store, folder: str, columns: tuple[str, ...]) -> pa.Table | None:
    """Read ``columns`` (those present) of every Parquet file below ``folder``; None when there is none."""
    tables = []
    for name in store.list(folder):
        if not name.endswith(".parquet"):
            continue
        with store.open(name) as handle:
            parquet = pq.ParquetFile(handle)
            present = [n for n in columns if n in parquet.schema_arrow.names]
            tables.append(parquet.read(columns=present))
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


def _trip_report_frame(trips_table: pa.Table | None) -> pd.DataFrame:
    frame = trips_table.to_pandas() if trips_table is not None else pd.DataFrame()
    for name in _TRIP_REPORT_COLUMNS:
        if name not in frame:
            frame[name] = pd.Series(dtype="str" if name in _TRIP_REPORT_TEXT else "float64")
    return frame[list(_TRIP_REPORT_COLUMNS)]


def _day_facts(run: DailyRun, segments: charts.SegmentAggregates, geo: pa.Table | None) -> plausibility.DayFacts:
    validated = read_phase_marker(run.state, "validate", run.day)
    computed = read_phase_marker(run.state, "compute", run.day)
    trajectories = (validated.counts.get("datasets", {}).get("trajectories", {}) if validated else {}) or {}
    tacho = (computed.counts.get("tachometer", {}) if computed else {}) or {}
    overlapping = (computed.counts.get("overlapping_trips", {}) if computed else {}) or {}
    length_m = segments.length_m
    return plausibility.DayFacts(
        trajectory_rows=int(trajectories.get("rows_in", 0)),
        trajectory_accepted=int(trajectories.get("accepted", 0)),
        matched_share=segments.matched_length_m / length_m if length_m > 0 else None,
        tacho_rows=int(tacho.get("rows", 0)),
        tacho_outside_trips=int(tacho.get("outside_trips", 0)),
        overlapping_trips=int(overlapping.get("trips", 0)),
        overlapping_vehicles=int(overlapping.get("vehicles", 0)),
        overlap_tolerance_s=pipeline.OVERLAP_TOLERANCE_S,
        trip_bbox=segments.bbox,
        geo_bbox=charts.geo_bbox(geo),
        **_trips_outside_day(run),
    )


#: Dates listed in the warning about trips of other days; the rest are counted only.
_LISTED_OTHER_DAYS = 5


def _trips_outside_day(run: DailyRun) -> dict[str, Any]:
    """Count the accepted trips that start on another date than the run date, on the report's clock.

    Reads only the start_time column of the validated trajectories, one footer and column chunk
    per file. A trip without a start time is not counted.
    """
    timezone = run.settings.output.report_timezone
    temp = run.store("temp")
    names = pipeline.list_dataset_files(temp, f"{pipeline.VALIDATED}/trajectories")

    def start_dates(name: str) -> pa.Array | None:
        with temp.open(name) as handle:
            parquet = pq.ParquetFile(handle)
            if c.START_TIME not in parquet.schema_arrow.names:
                return None
            starts = parquet.read(columns=[c.START_TIME]).column(c.START_TIME)
        local = starts.cast(pa.timestamp("ms", tz=timezone))
        return pc.value_counts(pc.strftime(local, format="%Y-%m-%d").drop_null().combine_chunks())

    counts: dict[str, int] = {}
    for found in pipeline.in_threads(start_dates, names):
        for entry in (found.to_pylist() if found is not None else []):
            counts[entry["values"]] = counts.get(entry["values"], 0) + int(entry["counts"])
    other = sorted(((n, date) for date, n in counts.items() if date != run.day), key=lambda item: (-item[0], item[1]))
    listed = ", ".join(f"{date} ({n:,})" for n, date in other[:_LISTED_OTHER_DAYS])
    if len(other) > _LISTED_OTHER_DAYS:
        listed += f", … (+{len(other) - _LISTED_OTHER_DAYS})"
    return {"trips_outside_day": sum(n for n, _ in other), "outside_day_dates": listed, "run_day": run.day, "timezone": timezone}


def _earlier_phase_times(run: DailyRun) -> list[dict[str, Any]]:
    """Seconds of fetch, validate and compute from their markers (output and publish are still running)."""
    records = []
    for phase in PHASES[:3]:
        marker = read_phase_marker(run.state, phase, run.day)
        records.append({"phase": phase, "seconds": marker.counts.get("seconds") if marker else None, "skipped": False})
    return records


def _empty_output(name: str) -> pa.Table:
    """The table of a client file on a day without rows, with the columns of a day with rows."""
    if name == "rejects":
        return pa.table({col: pa.array([], pa.string()) for col in contract.REJECT_COLUMNS})
    return pipeline.empty_result_table(pipeline.TRIPS if name == "trips" else pipeline.BREAKDOWN)


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


#: Text a spreadsheet reads as a formula when it opens a CSV file (OWASP, "CSV Injection"). A
#: sign followed by a plain number (a negative value in the rejects file) is a number, not a formula.
_FORMULA_START = r"^[=@\t\r]"
_SIGNED = r"^[+-]"
_SIGNED_NUMBER = r"^[+-][0-9]*\.?[0-9]+([eE][+-]?[0-9]+)?$"


def guard_csv_formulas(table: pa.Table, *, escape: bool) -> tuple[pa.Table, int]:
    """Count the text cells of ``table`` that start like a formula; with ``escape``, prefix them with ``'``.

    Ids come from the client's devices and master data, so a trip id such as ``=HYPERLINK(...)``
    reaches the CSV file as it is. A spreadsheet that opens the file would run it. Returns the
    table (changed only with ``escape``) and the number of such cells.
    """
    count = 0
    columns = []
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            signed = pc.and_(pc.match_substring_regex(column, _SIGNED), pc.invert(pc.match_substring_regex(column, _SIGNED_NUMBER)))
            hits = pc.fill_null(pc.or_(pc.match_substring_regex(column, _FORMULA_START), signed), False)
            found = int(pc.sum(hits).as_py() or 0)
            count += found
            if escape and found:
                column = pc.if_else(hits, pc.binary_join_element_wise(pa.scalar("'", column.type), column, pa.scalar("", column.type)), column)
        columns.append(column)
    return (pa.table(columns, names=table.column_names) if escape else table), count


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
    """Deliver ``processed/`` to the client's ``output/`` object by object, with proof of each upload.

    Objects go first, then ``manifest.json``, then ``_SUCCESS``. On S3 each object is one
    ``put_object`` with ``ContentMD5`` and ``ChecksumSHA256``, which needs ``s3:PutObject`` only.
    A marker per delivered object under ``temp/_delivery/`` records the proof, so a rerun after a
    failure uploads only what is missing. ``notify`` receives the completion notice last.
    """

    def body() -> Manifest:
        processed, output, state = run.store("processed"), run.store("output"), run.state
        output.makedirs()
        manifest, proof = transfer.deliver(
            processed, transfer.make_uploader(output), state, run_date=run.day, versions=run.versions(),
            retries=run.settings.transfer.retries, force=run.force, on_event=_phase_events(run, "publish"),
        )
        _verify_upload_response(proof, output)
        if notify is not None:
            notify({"run_date": run.day, "output": output.url, "objects": len(manifest.objects), "manifest_sha256": proof.sha256})
        return manifest

    return run_phase(run, "publish", body)


def _verify_upload_response(proof: transfer.Delivery, output: Store) -> None:
    """Check the recorded proof of ``manifest.json``: the store returned our SHA-256.

    Every upload was already checked against its response in :func:`compute.transfer.deliver`;
    this guards the marker written for the manifest, which a rerun trusts without uploading again.

    Raises
    ------
    StorageError
        If the proof is missing its checksum or does not match the manifest's SHA-256.
    """
    expected = base64.b64encode(bytes.fromhex(proof.sha256)).decode("ascii")
    if proof.checksum_sha256 != expected:
        raise StorageError(
            f"delivery proof of {output.child_url(MANIFEST_NAME)} has ChecksumSHA256={proof.checksum_sha256!r}, expected {expected!r}; "
            "rerun publish with force to upload the day again"
        )


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


__all__ = ["DailyRun", "InputChangedError", "InputChanges", "InputCheck", "PHASES", "PhaseResult", "check_raw_copy_current", "compute", "fetch", "generate_output", "phase_records", "publish", "validate"]
