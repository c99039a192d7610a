"""The daily flow ``co2_daily``: fetch, validate, compute, output, publish, one task per phase.

The flow contains no domain logic: each task calls one function of :mod:`compute.phases`. The Dask
cluster is opened only when validate or compute has work to do, in a ``with`` block, so it closes
on success, failure, timeout and cancellation alike (Prefect raises inside the flow on SIGTERM,
which unwinds the block). If the process dies before the block unwinds, the ``on_crashed`` and
``on_cancellation`` hooks delete the run's DaskCluster by its labels.

Only one run per run date executes at a time: the flow takes the global concurrency limit
``lm-co2-date-YYYYMMDD`` (one slot, created on first use) for its whole body, or, on local data
without a Prefect server, a file lock beside the day's temp folder (see ``_date_lock``). A second
run of the same date (a manual rerun, a backfill) waits for it; runs of other dates do not.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import fcntl
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from fsspec.core import split_protocol
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from compute import logs, transfer
from compute import phases as ph
from compute.cluster import delete_leftover_clusters, open_cluster, run_labels
from compute.i18n import OperatorError, message, operator_language, register
from compute.report import RunSummary
from compute.settings import Settings, load_settings, parse_run_date
from compute.storage import SUCCESS_NAME, DeliveryError, read_phase_marker
from compute.transfer import send_webhook
from flows.artifacts import ProgressArtifact, publish_summary
from flows.credentials import with_credentials

Phase = Literal["fetch", "validate", "compute", "output", "publish"]
TOKYO = ZoneInfo("Asia/Tokyo")

register(
    {
        "daily.webhook_missing": {
            "ja": "notify.kind が 'webhook' ですが、Webhook の URL が設定されていません。LMCO2_NOTIFY__WEBHOOK_URL または LMCO2_CREDENTIALS__WEBHOOK_BLOCK を設定してください。",
            "en": "notify.kind is 'webhook' but no webhook URL is set; set LMCO2_NOTIFY__WEBHOOK_URL or LMCO2_CREDENTIALS__WEBHOOK_BLOCK.",
        },
        "flow.date_lock_waiting": {
            "ja": "{day} の別の実行がロック {path} を持っています。その実行が終わるまで待ちます。",
            "en": "Another run of {day} holds the lock {path}; waiting until it ends.",
        },
        "flow.date_lock_timeout": {
            "ja": "{day} の別の実行が {hours} 時間たってもロック {path} を離しません。その実行がまだ動いているか確認し、終わってから再実行してください。",
            "en": "Another run of {day} has held the lock {path} for {hours} hours; check whether that run is still working, and run again after it ends.",
        },
    }
)

#: How long a run waits for another run of the same date to finish before it fails.
DATE_LOCK_TIMEOUT_S = 6 * 3600
#: Events logged at warning level; every other event is logged at info level.
_WARNING_EVENTS = frozenset({
    "object_retry", "object_mismatch", "object_copy_failed", "cluster_deleted", "input_unchecked", "objects_withdrawn", "raw_extra_removed",
    "csv_formula_cells",
})
#: Events logged at error level; the failed-run alert matches ``run_failed``.
_ERROR_EVENTS = frozenset({"run_failed"})

#: The words that start the log line of each event, in each language. The English words are the
#: event's name with spaces, as the operations guide quotes them, and the JSON record keeps the
#: name itself in its ``event`` field. An event not listed here is logged under its name.
EVENT_LABELS: dict[str, dict[str, str]] = {
    "run_started": {"ja": "実行開始", "en": "run started"},
    "run_completed": {"ja": "実行完了", "en": "run completed"},
    "run_failed": {"ja": "実行失敗", "en": "run failed"},
    "phase_started": {"ja": "フェーズ開始", "en": "phase started"},
    "phase_completed": {"ja": "フェーズ完了", "en": "phase completed"},
    "phase_skipped": {"ja": "フェーズ省略（完了済み）", "en": "phase skipped"},
    "input_checked": {"ja": "入力を確認（取得時から変更なし）", "en": "input checked"},
    "input_unchecked": {"ja": "入力を確認できず", "en": "input unchecked"},
    "transfer_started": {"ja": "転送ジョブ開始", "en": "transfer started"},
    "transfer_completed": {"ja": "転送ジョブ完了", "en": "transfer completed"},
    "object_copy_failed": {"ja": "オブジェクトのコピー失敗", "en": "object copy failed"},
    "object_mismatch": {"ja": "コピーがコピー元と不一致", "en": "object mismatch"},
    "raw_extra_removed": {"ja": "入力にないオブジェクトを raw から削除", "en": "raw extra removed"},
    "object_retry": {"ja": "オブジェクトを再試行", "en": "object retry"},
    "object_delivered": {"ja": "オブジェクト納品", "en": "object delivered"},
    "object_already_delivered": {"ja": "オブジェクト納品済み（同じ内容）", "en": "object already delivered"},
    "leftover_parts_removed": {"ja": "中断された書き込みの残りを削除", "en": "leftover parts removed"},
    "objects_withdrawn": {"ja": "前回納品のファイルを取り下げ", "en": "objects withdrawn"},
    "success_withdrawn": {"ja": "前回納品の _SUCCESS を取り下げ", "en": "success withdrawn"},
    "csv_formula_cells": {"ja": "CSV に数式として読まれうるセル", "en": "csv formula cells"},
    "cluster_started": {"ja": "Dask クラスタ起動", "en": "cluster started"},
    "cluster_closed": {"ja": "Dask クラスタ停止", "en": "cluster closed"},
    "pieces_progress": {"ja": "タスクの進み具合", "en": "pieces progress"},
    "notice_sent": {"ja": "完了通知を送信", "en": "notice sent"},
    "cluster_cleanup": {"ja": "残った Dask クラスタを削除", "en": "cluster cleanup"},
    "cluster_cleanup_failed": {"ja": "残った Dask クラスタの削除に失敗", "en": "cluster cleanup failed"},
}


def previous_day_tokyo(now: dt.datetime | None = None) -> dt.date:
    """Return the business date of a scheduled run: yesterday in Japan."""
    current = (now or dt.datetime.now(dt.UTC)).astimezone(TOKYO)
    return current.date() - dt.timedelta(days=1)


def _retry_unless_delivery_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry fetch after storage faults, but not when the delivery is missing or changed."""
    return not isinstance(state.result(raise_on_failure=False), DeliveryError)


@task(name="fetch", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10, retry_condition_fn=_retry_unless_delivery_error)
def fetch_task(run: ph.DailyRun) -> ph.PhaseResult:
    with logs.log_context(phase="fetch"):
        return ph.fetch(run)


@task(name="validate", cache_policy=NO_CACHE)
def validate_task(run: ph.DailyRun, client: Any) -> ph.PhaseResult:
    with logs.log_context(phase="validate"):
        return ph.validate(run, client)


@task(name="compute", cache_policy=NO_CACHE)
def compute_task(run: ph.DailyRun, client: Any) -> ph.PhaseResult:
    with logs.log_context(phase="compute"):
        return ph.compute(run, client)


@task(name="output", cache_policy=NO_CACHE)
def output_task(run: ph.DailyRun) -> ph.PhaseResult:
    with logs.log_context(phase="output"):
        return ph.generate_output(run)


@task(name="publish", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def publish_task(run: ph.DailyRun, notify: Callable[[dict[str, Any]], None] | None) -> ph.PhaseResult:
    with logs.log_context(phase="publish"):
        return ph.publish(run, notify=notify)


def delete_leftover_cluster(flow: Any, flow_run: Any, state: Any) -> None:
    """Delete the DaskCluster a crashed or cancelled run left behind (kubernetes profile only)."""
    from prefect.logging.loggers import flow_run_logger

    logger = flow_run_logger(flow_run, flow)
    settings = load_settings((flow_run.parameters or {}).get("profile"))
    if settings.cluster.kind != "kubernetes":
        return
    try:
        names = delete_leftover_clusters(settings.cluster.namespace, str(flow_run.id))
    except Exception as error:  # noqa: BLE001 - a hook must report, not raise; the idle timeout remains as backstop
        logger.error("%s error=%s", event_label("cluster_cleanup_failed", settings.language), type(error).__name__,
                     extra={"event": "cluster_cleanup_failed"})
        return
    logger.warning("%s clusters=%s state=%s", event_label("cluster_cleanup", settings.language), names, state.type.value,
                   extra={"event": "cluster_cleanup", "lmco2_clusters": names})


@flow(
    name="co2-daily",
    log_prints=False,
    validate_parameters=True,
    on_cancellation=[delete_leftover_cluster],
    on_crashed=[delete_leftover_cluster],
)
def co2_daily(
    run_date: dt.date | None = None,
    force: bool = False,
    phases: list[Phase] | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Run the daily CO2 batch for ``run_date`` (default: yesterday in Japan).

    The parameters are described in the Google style because Prefect reads that style into the
    deployment's parameter form, and in Japanese and English because operators read them there.

    Args:
        run_date: 実行日（YYYY-MM-DD）。クライアントの input/YYYYMMDD/ の日付。空なら日本時間の前日。
            / Run date (YYYY-MM-DD), the day of the client's input/YYYYMMDD/. Empty: yesterday in Japan.
        force: true なら、この日に完了済みのフェーズも実行し直す。
            / true: run phases again even if they completed before for this date.
        phases: 実行するフェーズ（fetch、validate、compute、output、publish。順序は固定）。空なら全部。
            / Phases to run (fetch, validate, compute, output, publish, in this order). Empty: all.
        profile: 設定プロファイルの名前か YAML のパス。空なら LMCO2_PROFILE、なければ local。デプロイメントでは空のままにする。
            / Settings profile name or YAML path. Empty: LMCO2_PROFILE, else local. Leave it empty in a deployment.
    """
    logger = get_run_logger()
    flow_run_id = str(flow_run.id or "local")
    settings = load_settings(profile)
    _configure_logging(json_console=settings.logging.format == "json")
    settings = with_credentials(settings)
    day = parse_run_date(run_date) if run_date is not None else previous_day_tokyo()
    selected = [p for p in ph.PHASES if phases is None or p in phases]

    with (operator_language(settings.language), logs.log_context(run_date=day.isoformat(), flow_run_id=flow_run_id),
          _date_lock(day, settings, logger)):
        emit = _in_this_context(_event_logger(logger, day, ProgressArtifact(f"co2-daily-{day:%Y%m%d}-progress", "compute"), settings.language))
        run = ph.DailyRun.create(settings, day, force=force, on_event=emit, phases=selected)
        emit("run_started", {"phases": ",".join(selected), "profile": settings.profile, "force": force})

        results: list[ph.PhaseResult] = []
        input_check: ph.InputCheck | None = None
        current = "fetch"
        try:
            if "fetch" in selected:
                fetched = fetch_task(run)
                results.append(fetched)
                # A fetch skipped as done compared the input with the fetched copy. The summary
                # reports an input it could not check, as in a run without fetch.
                if fetched.input_check is not None and fetched.input_check.status != "unchanged":
                    input_check = fetched.input_check
            else:
                input_check = _check_raw_copy(run, emit)
            cluster_phases = [p for p in ("validate", "compute") if p in selected]
            if any(run.completed(p) is None for p in cluster_phases):
                current = cluster_phases[0]  # a failure while the cluster starts belongs to its first phase
                labels = run_labels(f"{day:%Y%m%d}", flow_run_id)
                with open_cluster(settings.cluster, name=_cluster_name(day, flow_run_id), labels=labels, on_event=emit) as client:
                    if "validate" in cluster_phases:
                        current = "validate"
                        results.append(validate_task(run, client))
                    if "compute" in cluster_phases:
                        current = "compute"
                        results.append(compute_task(run, client))
            else:
                results.extend(ph.skipped(run, p) for p in cluster_phases)
            if "output" in selected:
                current = "output"
                results.append(output_task(run))
            if "publish" in selected:
                current = "publish"
                results.append(publish_task(run, _notifier(settings, emit)))
        except BaseException as error:
            # The failed-run alert reads this record; the exception itself still fails the run.
            emit("run_failed", {"phase": current, "error": type(error).__name__})
            raise

        summary = summarise(run, settings, results, input_check)
        publish_summary(summary, ph.load_report(run), language=settings.language, key=f"co2-daily-{day:%Y%m%d}")
        emit("run_completed", {"trips": summary.trips_out, "co2_ttw_kg": summary.co2_ttw_kg})
    return summary.as_dict()


def _check_raw_copy(run: ph.DailyRun, emit: Callable[[str, dict[str, Any]], None]) -> ph.InputCheck:
    """Check, for a run without fetch, that the raw copy still matches the client's input; raise if not."""
    check = ph.check_raw_copy_current(run)
    event = "input_checked" if check.status == "unchanged" else "input_unchecked"
    emit(event, {"phase": "fetch", **check.as_dict()})
    return check


def summarise(
    run: ph.DailyRun, settings: Settings, results: list[ph.PhaseResult], input_check: ph.InputCheck | None = None
) -> RunSummary:
    """Build the run summary from this run's phases and the markers of phases not run now."""
    records = ph.phase_records(results)
    seen = {r["phase"] for r in records}
    ran = [ph.PHASES.index(r["phase"]) for r in records if not r["skipped"]]
    first_run = min(ran) if ran else len(ph.PHASES)
    for position, phase in enumerate(ph.PHASES):
        if phase in seen:
            continue
        # Phases before the first one run now made its inputs, so their markers count even with
        # --force (which applies to the phases run now). Later markers are stale after a forced
        # rerun of an earlier phase.
        upstream = position < first_run
        marker = read_phase_marker(run.state, phase, run.day) if upstream or not run.force else None
        if marker is not None:
            records.append({"phase": phase, "skipped": True, "seconds": 0.0, **marker.counts})
    order = {p: i for i, p in enumerate(ph.PHASES)}
    records.sort(key=lambda r: order[r["phase"]])
    summary = RunSummary.from_phases(run.day, records, settings.url("output", run.run_date), _report_figures(run, records))
    summary.input_check = input_check.as_dict() if input_check is not None else None
    summary.delivery = _delivery_state(run, settings)
    return summary


def _delivery_state(run: ph.DailyRun, settings: Settings) -> dict[str, str] | None:
    """Say what the output holds when publish has not completed for this run's figures.

    After ``--phases fetch --force`` on a new delivery, say, the client's output still has the
    earlier figures, complete with their ``_SUCCESS``. The summary reports it with the command
    that delivers the new ones. None when publish completed, or when the day was never delivered.
    """
    if read_phase_marker(run.state, "publish", run.day) is not None:
        return None
    url = settings.url("output", run.run_date)
    earlier = transfer.completed_delivery(run.state)
    if earlier is not None:
        return {"status": "outdated", "url": url, "delivered_at": earlier.delivered_at}
    if transfer.read_delivery(run.state, SUCCESS_NAME) is not None:
        return {"status": "incomplete", "url": url, "delivered_at": ""}
    return None


def _report_figures(run: ph.DailyRun, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the report figures of ``processed/summary.json`` when output ran now or before, else {}."""
    processed = run.store("processed")
    if not any(r["phase"] == "output" for r in records) or not processed.exists("summary.json"):
        return {}
    return dict(json.loads(processed.read_text("summary.json")).get("report") or {})


@contextlib.contextmanager
def _date_lock(day: dt.date, settings: Settings, logger: Any) -> Iterator[None]:
    """Hold the lock of ``day`` while the block runs: a file lock or Prefect's concurrency limit.

    With local data and no Prefect server (``PREFECT_API_URL`` unset), each run starts its own
    temporary Prefect server. Its concurrency leases live in that server's memory, so a run
    killed with SIGKILL left the slot taken in the database, and every later run of the date
    waited for it without end. There the lock is an OS file lock (``flock``) beside the day's
    temp folder, which the kernel releases when the process dies, and which runs from other
    working folders on the same data see too. Otherwise the Prefect server keeps the lease and
    frees the slot when a dead run's lease expires (300 s).
    """
    lock_file = _local_lock_file(settings, day)
    if lock_file is not None and not _prefect_server_configured():
        with _file_lock(lock_file, day, settings.language, logger):
            yield
        return
    with _prefect_date_lock(day):
        yield


def _prefect_server_configured() -> bool:
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def _local_lock_file(settings: Settings, day: dt.date) -> Path | None:
    """Return the lock file of ``day`` beside its temp folder, or None when temp is not on a local disk."""
    # From the URL alone: building a cloud file system here could look for credentials.
    protocol, path = split_protocol(settings.url("temp", day))
    if protocol not in (None, "file", "local"):
        return None
    return Path(path.rstrip("/")).parent / f".lm-co2-{day:%Y%m%d}.lock"


@contextlib.contextmanager
def _file_lock(path: Path, day: dt.date, language: str, logger: Any) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``; wait up to ``DATE_LOCK_TIMEOUT_S``, saying so once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        if not _try_flock(handle):
            logger.warning(message("flow.date_lock_waiting", language, day=day.isoformat(), path=str(path)))
            deadline = time.monotonic() + DATE_LOCK_TIMEOUT_S
            while not _try_flock(handle):
                if time.monotonic() > deadline:
                    raise DateLockTimeoutError(day, path, DATE_LOCK_TIMEOUT_S)
                time.sleep(_LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _try_flock(handle: Any) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


#: Seconds between attempts to take a date lock that another run holds.
_LOCK_POLL_S = 1.0


class DateLockTimeoutError(OperatorError):
    """Another run held the lock of the date for longer than ``DATE_LOCK_TIMEOUT_S``."""

    def __init__(self, day: dt.date, path: Path, seconds: float) -> None:
        super().__init__("flow.date_lock_timeout", day=day.isoformat(), path=str(path), hours=round(seconds / 3600, 1))


@contextlib.contextmanager
def _prefect_date_lock(day: dt.date) -> Iterator[None]:
    """Hold the one-slot global concurrency limit of ``day`` while the block runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    name = f"lm-co2-date-{day:%Y%m%d}"
    with get_client(sync_client=True) as client:
        # Read first: creating an existing limit makes the server log an integrity error on every rerun.
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):  # another run of the same date created it meanwhile
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    with concurrency(name, occupy=1, timeout_seconds=DATE_LOCK_TIMEOUT_S, strict=True):
        yield


def _notifier(settings: Settings, emit: Callable[[str, dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """Return the completion notice: a Prefect event always, and a webhook POST when configured."""

    def notify(payload: dict[str, Any]) -> None:
        from prefect.events import emit_event

        day = str(payload["run_date"]).replace("-", "")
        emit_event(event="lm-co2.delivery.completed", resource={"prefect.resource.id": f"lm-co2.delivery.{day}"},
                   payload={k: v for k, v in payload.items() if k != "output"})
        if settings.notify.kind == "webhook":
            if settings.notify.webhook_url is None:
                raise OperatorError("daily.webhook_missing")
            status = send_webhook(settings.notify.webhook_url, payload)
            emit("notice_sent", {"kind": "webhook", "status": status})

    return notify


def _configure_logging(*, json_console: bool) -> None:
    """Send ``compute`` records (worker records included) to the run's logs; optionally as JSON lines."""
    from prefect.logging.handlers import APILogHandler

    compute_logger = logging.getLogger("compute")
    compute_logger.setLevel(logging.INFO)
    logs.attach_filters(compute_logger)
    if not any(isinstance(h, APILogHandler) for h in compute_logger.handlers):
        compute_logger.addHandler(APILogHandler())
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logs.attach_filters(logging.getLogger(name))
    if json_console:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, APILogHandler):
                handler.setFormatter(logs.JsonFormatter())
                handler.addFilter(logs.ContextFilter())
                handler.addFilter(logs.RedactingFilter())


def event_label(event: str, lang: str) -> str:
    """Return the words that start the log line of ``event`` in ``lang``, or the event's name with spaces."""
    labels = EVENT_LABELS.get(event)
    if labels is None:
        return event.replace("_", " ")
    return labels.get(lang, labels["ja"])


def _event_logger(
    logger: logging.LoggerAdapter[Any] | logging.Logger, day: dt.date, progress: ProgressArtifact, lang: str
) -> Callable[[str, dict[str, Any]], None]:
    def emit(event: str, fields: dict[str, Any]) -> None:
        level = logging.INFO
        if event in _WARNING_EVENTS:
            level = logging.WARNING
        if event in _ERROR_EVENTS:
            level = logging.ERROR
        rendered = " ".join(f"{k}={v}" for k, v in fields.items())
        extra = {"event": event, "run_date": day.isoformat(), **{f"lmco2_{k}": v for k, v in fields.items()}}
        if "phase" in fields:
            extra["phase"] = str(fields["phase"])
        logger.log(level, f"{event_label(event, lang)} {rendered}".strip(), extra=extra)
        if event == "pieces_progress" and fields.get("task") == "compute_piece":
            progress.update(fields)

    return emit


def _in_this_context(function: Callable[[str, dict[str, Any]], None]) -> Callable[[str, dict[str, Any]], None]:
    """Run ``function`` in a copy of the flow's context, so calls from helper threads reach this run."""
    context = contextvars.copy_context()
    owner = threading.get_ident()

    def call(event: str, fields: dict[str, Any]) -> None:
        if threading.get_ident() == owner:
            function(event, fields)
        else:
            context.copy().run(function, event, fields)

    return call


def _cluster_name(day: dt.date, flow_run_id: str) -> str:
    return f"lm-co2-{day:%Y%m%d}-{flow_run_id[:8]}".lower()


__all__ = ["co2_daily", "delete_leftover_cluster", "previous_day_tokyo", "summarise"]
