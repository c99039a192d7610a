"""The daily flow ``co2_daily``: fetch, validate, compute, output, publish, one task per phase.

The flow holds no domain logic: each task calls one function of :mod:`compute.phases`. The Dask
cluster is opened only when validate or compute has work to do, in a ``with`` block, so it closes
on success, failure, timeout and cancellation alike (Prefect raises inside the flow on SIGTERM,
which unwinds the block).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Literal
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from compute import phases as ph
from compute.cluster import open_cluster
from compute.report import RunSummary, render_markdown, render_text
from compute.settings import Settings, load_settings, parse_run_date

Phase = Literal["fetch", "validate", "compute", "output", "publish"]
TOKYO = ZoneInfo("Asia/Tokyo")


def previous_day_tokyo(now: dt.datetime | None = None) -> dt.date:
    """The business date of a scheduled run: yesterday in Japan."""
    current = (now or dt.datetime.now(dt.timezone.utc)).astimezone(TOKYO)
    return current.date() - dt.timedelta(days=1)


@task(name="fetch", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def fetch_task(run: ph.DailyRun) -> ph.PhaseResult:
    return ph.fetch(run)


@task(name="validate", cache_policy=NO_CACHE)
def validate_task(run: ph.DailyRun, client: Any) -> ph.PhaseResult:
    return ph.validate(run, client)


@task(name="compute", cache_policy=NO_CACHE)
def compute_task(run: ph.DailyRun, client: Any) -> ph.PhaseResult:
    return ph.compute(run, client)


@task(name="output", cache_policy=NO_CACHE)
def output_task(run: ph.DailyRun) -> ph.PhaseResult:
    return ph.generate_output(run)


@task(name="publish", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def publish_task(run: ph.DailyRun) -> ph.PhaseResult:
    return ph.publish(run)


@flow(name="co2-daily", log_prints=False, validate_parameters=True)
def co2_daily(
    run_date: dt.date | None = None,
    force: bool = False,
    phases: list[Phase] | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Run the daily CO2 batch for ``run_date`` (default: yesterday in Japan).

    Parameters
    ----------
    run_date
        Day of the client's delivery, ``input/YYYYMMDD/``.
    force
        Run phases again even if they completed before for this date.
    phases
        Run only these phases (in the fixed order); all by default.
    profile
        Settings profile name or YAML path; default ``LMCO2_PROFILE`` or ``local``.
    """
    logger = get_run_logger()
    settings = load_settings(profile)
    day = parse_run_date(run_date) if run_date is not None else previous_day_tokyo()
    selected = [p for p in ph.PHASES if phases is None or p in phases]
    run = ph.DailyRun.create(settings, day, force=force, on_event=_event_logger(logger, day))
    logger.info("run started", extra={"event": "run_started", "run_date": day.isoformat(), "phases": selected, "profile": settings.profile})

    results: list[ph.PhaseResult] = []
    if "fetch" in selected:
        results.append(fetch_task(run))
    cluster_phases = [p for p in ("validate", "compute") if p in selected]
    if any(run.completed(p) is None for p in cluster_phases):
        with open_cluster(settings.cluster, name=_cluster_name(day), labels=_labels(day), on_event=run.on_event) as client:
            if "validate" in cluster_phases:
                results.append(validate_task(run, client))
            if "compute" in cluster_phases:
                results.append(compute_task(run, client))
    else:
        results.extend(ph.skipped(run, p) for p in cluster_phases)
    if "output" in selected:
        results.append(output_task(run))
    if "publish" in selected:
        results.append(publish_task(run))

    summary = summarise(run, settings, results)
    create_markdown_artifact(markdown=render_markdown(summary, settings.language), key=f"co2-daily-{day:%Y%m%d}",
                             description=render_text(summary, settings.language).splitlines()[0])
    logger.info("run completed", extra={"event": "run_completed", "run_date": day.isoformat(), "trips": summary.trips_out,
                                        "co2_ttw_kg": summary.co2_ttw_kg})
    return summary.as_dict()


def summarise(run: ph.DailyRun, settings: Settings, results: list[ph.PhaseResult]) -> RunSummary:
    """Build the run summary from this run's phases and the markers of phases not run now."""
    records = ph.phase_records(results)
    seen = {r["phase"] for r in records}
    for phase in ph.PHASES:
        if phase not in seen:
            marker = run.completed(phase) if not run.force else None
            if marker is not None:
                records.append({"phase": phase, "skipped": True, "seconds": 0.0, **marker.counts})
    order = {p: i for i, p in enumerate(ph.PHASES)}
    records.sort(key=lambda r: order[r["phase"]])
    return RunSummary.from_phases(run.day, records, settings.url("output", run.run_date))


def _event_logger(logger: logging.LoggerAdapter[Any] | logging.Logger, day: dt.date):  # type: ignore[no-untyped-def]
    def emit(event: str, fields: dict[str, Any]) -> None:
        level = logging.WARNING if event == "object_retry" else logging.INFO
        logger.log(level, event.replace("_", " "), extra={"event": event, "run_date": day.isoformat(), **{f"lmco2_{k}": v for k, v in fields.items()}})

    return emit


def _cluster_name(day: dt.date) -> str:
    run_id = str(flow_run.id or "local")[:8]
    return f"lm-co2-{day:%Y%m%d}-{run_id}".lower()


def _labels(day: dt.date) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": "lm-co2", "lm-co2/run-date": f"{day:%Y%m%d}", "lm-co2/flow-run": str(flow_run.id or "local")}
