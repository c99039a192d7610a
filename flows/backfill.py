"""The backfill flow ``co2_backfill``: run the daily flow for every date of a range, oldest first.

Each date runs as a subflow of this run, so its phases, logs and artifacts appear under its own
run, and the per-date concurrency limit of :mod:`flows.daily` keeps it from overlapping a
scheduled or manual run of the same date. A failed date does not stop the dates after it; the
backfill run fails at the end with :class:`BackfillError`, which names every failed date and why.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow, get_run_logger

from compute.i18n import OperatorError, message, register
from flows.daily import Phase, co2_daily

#: Maximum range one backfill run accepts; split longer ranges so a run stays reviewable.
MAX_BACKFILL_DAYS = 92

register(
    {
        "backfill.reversed": {
            "ja": "終了日 {end_date} が開始日 {start_date} より前です。入れ替えて指定してください。",
            "en": "The end date {end_date} is before the start date {start_date}; swap them.",
        },
        "backfill.too_long": {
            "ja": "バックフィルの期間 {start_date}〜{end_date} は {days} 日あります。上限は {maximum} 日なので、期間を分けてください。",
            "en": "The backfill range {start_date} to {end_date} has {days} days; the maximum is {maximum}, so split the range.",
        },
        "backfill.failed": {
            "ja": (
                "バックフィルで {total} 日中 {failed} 日が失敗しました: {dates}。失敗した日を 1 日ずつ再実行してください"
                "（ローカルでは {lm_co2} run --date YYYY-MM-DD で実行し、失敗の理由が --force を求めている日には --force も付けてください。"
                "Prefect ではデプロイメント co2-daily/daily を使います）。"
            ),
            "en": (
                "The backfill finished with {failed} of {total} dates failed: {dates}. Rerun the failed dates one at a time "
                "(locally with {lm_co2} run --date YYYY-MM-DD, adding --force where the reason asks for it; on Prefect with the deployment co2-daily/daily)."
            ),
        },
        "backfill.failure": {"ja": "  {day}: {reason}", "en": "  {day}: {reason}"},
    }
)


class BackfillError(OperatorError):
    """Some dates of a backfill failed; ``failures`` maps each failed date to its error.

    :meth:`message` lists every failed date with its error in the requested language (an error
    without a ``message(lang)`` method shows its type and English text).
    """

    def __init__(self, outcomes: dict[str, str], failures: dict[str, BaseException]) -> None:
        self.outcomes = dict(outcomes)
        self.failures = dict(failures)
        super().__init__("backfill.failed", total=len(outcomes), failed=len(failures), dates=", ".join(failures))

    def message(self, lang: str = "ja") -> str:
        lines = [super().message(lang)]
        for day, error in self.failures.items():
            lines.append(message("backfill.failure", lang, day=day, reason=_reason(error, lang)))
        return "\n".join(lines)


def _reason(error: BaseException, lang: str) -> str:
    localised = getattr(error, "message", None)
    if callable(localised):
        try:
            return str(localised(lang))
        except TypeError:  # message is not the localised text of an lm-co2 error
            pass
    return f"{type(error).__name__}: {error}"


def dates_between(start_date: dt.date, end_date: dt.date) -> list[dt.date]:
    """Return every date from ``start_date`` to ``end_date``, both included.

    Raises
    ------
    OperatorError
        If the range is reversed or longer than :data:`MAX_BACKFILL_DAYS`.
    """
    if end_date < start_date:
        raise OperatorError("backfill.reversed", start_date=start_date, end_date=end_date)
    days = (end_date - start_date).days + 1
    if days > MAX_BACKFILL_DAYS:
        raise OperatorError("backfill.too_long", start_date=start_date, end_date=end_date, days=days, maximum=MAX_BACKFILL_DAYS)
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

    The parameters are described in the Google style because Prefect reads that style into the
    deployment's parameter form, and in Japanese and English because operators read them there.

    Args:
        start_date: 最初の実行日（YYYY-MM-DD）。 / First run date (YYYY-MM-DD).
        end_date: 最後の実行日（YYYY-MM-DD、この日を含む。期間は 92 日まで）。
            / Last run date (YYYY-MM-DD, included; at most 92 days in all).
        force: true なら、完了済みのフェーズも実行し直す。 / true: run phases again even if they completed before.
        phases: 各日に実行するフェーズ。空なら全部。 / Phases to run on each date. Empty: all.
        profile: 設定プロファイルの名前か YAML のパス。デプロイメントでは空のままにする。
            / Settings profile name or YAML path. Leave it empty in a deployment.

    Raises
    ------
    BackfillError
        After all dates ran, if any date failed; it names each failed date and its error.
    """
    logger = get_run_logger()
    outcomes: dict[str, str] = {}
    failures: dict[str, BaseException] = {}
    for day in dates_between(start_date, end_date):
        state = co2_daily(run_date=day, force=force, phases=phases, profile=profile, return_state=True)
        outcomes[day.isoformat()] = state.type.value
        logger.info("backfill date finished run_date=%s state=%s", day.isoformat(), state.type.value,
                    extra={"event": "backfill_date_finished", "run_date": day.isoformat(), "lmco2_state": state.type.value})
        if state.type.value != "COMPLETED":
            failures[day.isoformat()] = _failure_of(state)
    if failures:
        raise BackfillError(outcomes, failures)
    return {"dates": outcomes}


def _failure_of(state: Any) -> BaseException:
    """Return the exception a failed date raised, or an error naming its final state."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        return result
    return RuntimeError(f"the daily run ended in state {state.type.value}: {state.message}")
