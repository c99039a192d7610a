"""The backfill flow ``co2_backfill``: run the daily flow for every date of a range, oldest first.

Each date runs as a subflow of this run, so its phases, logs and artifacts appear under its own
run, and the per-date concurrency limit of :mod:`flows.daily` keeps it from overlapping a
scheduled or manual run of the same date. A failed date does not stop the dates after it; the
backfill run fails at the end and names every failed date.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow, get_run_logger

from flows.daily import Phase, co2_daily

#: Maximum range one backfill run accepts; split longer ranges so a run stays reviewable.
MAX_BACKFILL_DAYS = 92


def dates_between(start_date: dt.date, end_date: dt.date) -> list[dt.date]:
    """Return every date from ``start_date`` to ``end_date``, both included.

    Raises
    ------
    ValueError
        If the range is reversed or longer than :data:`MAX_BACKFILL_DAYS`.
    """
    if end_date < start_date:
        raise ValueError(f"end_date {end_date} is before start_date {start_date}; swap them")
    days = (end_date - start_date).days + 1
    if days > MAX_BACKFILL_DAYS:
        raise ValueError(f"backfill range {start_date}..{end_date} has {days} days; the maximum is {MAX_BACKFILL_DAYS}, split the range")
    return [start_date + dt.timedelta(days=i) for i in range(days)]


@flow(name="co2-backfill", log_prints=False, validate_parameters=True)
def co2_backfill(
    start_date: dt.date,
    end_date: dt.date,
    force: bool = False,
    phases: list[Phase] | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Run ``co2_daily`` for each date from ``start_date`` to ``end_date`` (both included).

    Parameters
    ----------
    start_date, end_date
        First and last run date.
    force, phases, profile
        Passed to every daily run; see :func:`flows.daily.co2_daily`.

    Raises
    ------
    RuntimeError
        After all dates ran, if any date failed; the message lists them.
    """
    logger = get_run_logger()
    outcomes: dict[str, str] = {}
    for day in dates_between(start_date, end_date):
        state = co2_daily(run_date=day, force=force, phases=phases, profile=profile, return_state=True)
        outcomes[day.isoformat()] = state.type.value
        logger.info("backfill date finished run_date=%s state=%s", day.isoformat(), state.type.value,
                    extra={"event": "backfill_date_finished", "run_date": day.isoformat(), "lmco2_state": state.type.value})
    failed = [day for day, state in outcomes.items() if state != "COMPLETED"]
    if failed:
        raise RuntimeError(f"backfill finished with {len(failed)} failed dates: {', '.join(failed)}; rerun them one by one with co2-daily")
    return {"dates": outcomes}
