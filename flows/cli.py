"""The ``lm-co2`` command: run the daily flow, write a sample day, validate a day.

Help and messages are Japanese by default; ``--lang en`` or ``LMCO2_LANGUAGE=en`` switches to
English.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, Literal, NoReturn, cast

from compute.i18n import message, register

register(
    {
        "cli.description": {
            "ja": "lm-co2: 車両軌跡から燃料消費量と CO2 排出量を日次で算定するバッチ。",
            "en": "lm-co2: the daily batch that estimates fuel and CO2 from vehicle trajectories.",
        },
        "cli.lang": {"ja": "メッセージの言語（ja または en）。", "en": "Language of messages (ja or en)."},
        "cli.profile": {"ja": "設定プロファイル名または YAML のパス（既定: LMCO2_PROFILE または local）。",
                        "en": "Settings profile name or YAML path (default: LMCO2_PROFILE or local)."},
        "cli.run": {"ja": "1 日分の日次フローを実行する。", "en": "Run the daily flow for one day."},
        "cli.run.date": {"ja": "実行日（YYYY-MM-DD）。既定は日本時間の前日。", "en": "Run date (YYYY-MM-DD). Default: yesterday in Japan."},
        "cli.run.force": {"ja": "完了済みのフェーズも再実行する。", "en": "Run phases again even if they completed before."},
        "cli.run.phases": {"ja": "実行するフェーズ（カンマ区切り: fetch,validate,compute,output,publish）。",
                           "en": "Phases to run, comma-separated (fetch,validate,compute,output,publish)."},
        "cli.run.json": {"ja": "サマリを JSON で出力する。", "en": "Print the summary as JSON."},
        "cli.backfill": {"ja": "期間内の各日について日次フローを順に実行する。", "en": "Run the daily flow for every day of a date range."},
        "cli.backfill.start": {"ja": "最初の実行日（YYYY-MM-DD）。", "en": "First run date (YYYY-MM-DD)."},
        "cli.backfill.end": {"ja": "最後の実行日（YYYY-MM-DD、この日を含む）。", "en": "Last run date (YYYY-MM-DD, included)."},
        "cli.backfill.done": {"ja": "バックフィル結果: {outcomes}", "en": "Backfill outcome: {outcomes}"},
        "cli.sample": {"ja": "サンプルの 1 日分の入力を書き出す。", "en": "Write a sample day of inputs."},
        "cli.sample.date": {"ja": "サンプルの日付（YYYY-MM-DD）。", "en": "Date of the sample day (YYYY-MM-DD)."},
        "cli.sample.trips": {"ja": "トリップ数（既定: 200）。", "en": "Number of trips (default: 200)."},
        "cli.sample.vertices": {"ja": "1 トリップあたりの頂点数（既定: 60）。", "en": "Vertices per trip (default: 60)."},
        "cli.sample.out": {"ja": "出力先 URL（既定: プロファイルの input ルート）。", "en": "Destination URL (default: the profile's input root)."},
        "cli.sample.done": {"ja": "サンプル日を書き出しました: {url}", "en": "Sample day written: {url}"},
        "cli.validate": {"ja": "1 日分の入力を契約に照らして検証し、レポートを表示する。",
                         "en": "Validate one day of inputs against the contract and print a report."},
        "cli.validate.path": {"ja": "1 日分のフォルダ（ローカルパスまたは URL）。", "en": "Folder of one day (local path or URL)."},
        "cli.validate.rejects": {"ja": "除外行を書き出す Parquet ファイル。", "en": "Parquet file to write the rejects to."},
        "cli.error": {"ja": "エラー: {error}", "en": "Error: {error}"},
        "cli.usage": {"ja": "使い方: ", "en": "usage: "},
        "cli.positionals": {"ja": "位置引数", "en": "positional arguments"},
        "cli.options": {"ja": "オプション", "en": "options"},
        "cli.commands": {"ja": "コマンド", "en": "commands"},
        "cli.help": {"ja": "このヘルプを表示して終了する。", "en": "Show this help message and exit."},
        "cli.usage_error": {"ja": "{prog}: 引数が不正です: {detail}", "en": "{prog}: invalid arguments: {detail}"},
        "cli.bad_date": {
            "ja": "日付 {value!r} が不正です。YYYY-MM-DD または YYYYMMDD で指定してください（例: 2026-12-01）。",
            "en": "Invalid date {value!r}; write it as YYYY-MM-DD or YYYYMMDD, for example 2026-12-01.",
        },
        "cli.bad_phase": {
            "ja": "フェーズ {value!r} は存在しません。次から選んでください: {choices}",
            "en": "Unknown phase {value!r}; choose from: {choices}",
        },
        "cli.sample.counts": {"ja": "書き出した行数: {counts}", "en": "Rows written: {counts}"},
    }
)

Phase = Literal["fetch", "validate", "compute", "output", "publish"]
PHASE_NAMES: tuple[Phase, ...] = ("fetch", "validate", "compute", "output", "publish")

# Defaults for the process before Prefect or gcsfs are imported: no telemetry, no cloud metadata
# probes, and time for the ephemeral Prefect server to migrate its database on first use.
# An operator's own environment wins (setdefault).
_PROCESS_DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_GCE_CHECK": "True",
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "DASK_LOGGING__DISTRIBUTED": "warning",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_HOME": "./var/prefect",
}


def _language(argv: Sequence[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "--lang" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--lang="):
            return arg.split("=", 1)[1]
    return os.environ.get("LMCO2_LANGUAGE", "ja")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose fixed headings, help option and usage errors follow ``lang``."""

    def __init__(self, *args: object, lang: str = "ja", **kwargs: object) -> None:
        self.lang = lang
        kwargs.setdefault("add_help", False)
        kwargs.setdefault("formatter_class", _formatter(lang))
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._positionals.title = message("cli.positionals", lang)
        self._optionals.title = message("cli.options", lang)
        self.add_argument("-h", "--help", action="help", help=message("cli.help", lang))

    def error(self, message_text: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, message("cli.usage_error", self.lang, prog=self.prog, detail=message_text) + "\n")


def _SubParser(lang: str) -> Any:  # noqa: N802 - used as a class by argparse
    def make(*args: Any, **kwargs: Any) -> _Parser:
        return _Parser(*args, lang=lang, **kwargs)

    return make


def _formatter(lang: str) -> type[argparse.HelpFormatter]:
    class Formatter(argparse.HelpFormatter):
        def add_usage(self, usage: str | None, actions: Any, groups: Any, prefix: str | None = None) -> None:
            super().add_usage(usage, actions, groups, prefix if prefix is not None else message("cli.usage", lang))

    return Formatter


def apply_process_defaults() -> None:
    """Set the offline process defaults that the operator's environment does not set already."""
    for key, value in _PROCESS_DEFAULTS.items():
        os.environ.setdefault(key, value)


def build_parser(lang: str) -> argparse.ArgumentParser:
    """Build the argument parser with help texts in ``lang``."""
    parser = _Parser(prog="lm-co2", description=message("cli.description", lang), lang=lang)
    parser.add_argument("--lang", choices=("ja", "en"), default=lang, help=message("cli.lang", lang))
    parser.add_argument("--profile", default=None, help=message("cli.profile", lang))
    commands = parser.add_subparsers(dest="command", required=True, title=message("cli.commands", lang), parser_class=_SubParser(lang))

    run = commands.add_parser("run", help=message("cli.run", lang), description=message("cli.run", lang))
    run.add_argument("--date", default=None, help=message("cli.run.date", lang))
    run.add_argument("--force", action="store_true", help=message("cli.run.force", lang))
    run.add_argument("--phases", default=None, help=message("cli.run.phases", lang))
    run.add_argument("--json", action="store_true", help=message("cli.run.json", lang))

    backfill = commands.add_parser("backfill", help=message("cli.backfill", lang), description=message("cli.backfill", lang))
    backfill.add_argument("--start", required=True, help=message("cli.backfill.start", lang))
    backfill.add_argument("--end", required=True, help=message("cli.backfill.end", lang))
    backfill.add_argument("--force", action="store_true", help=message("cli.run.force", lang))
    backfill.add_argument("--phases", default=None, help=message("cli.run.phases", lang))

    sample = commands.add_parser("sample", help=message("cli.sample", lang), description=message("cli.sample", lang))
    sample.add_argument("--date", required=True, help=message("cli.sample.date", lang))
    sample.add_argument("--trips", type=int, default=200, help=message("cli.sample.trips", lang))
    sample.add_argument("--vertices", type=int, default=60, help=message("cli.sample.vertices", lang))
    sample.add_argument("--out", default=None, help=message("cli.sample.out", lang))

    validate = commands.add_parser("validate", help=message("cli.validate", lang), description=message("cli.validate", lang))
    validate.add_argument("path", help=message("cli.validate.path", lang))
    validate.add_argument("--rejects", default=None, help=message("cli.validate.rejects", lang))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lm-co2`` command and return the process exit code."""
    apply_process_defaults()
    args_list = list(sys.argv[1:] if argv is None else argv)
    lang = _language(args_list)
    lang = lang if lang in ("ja", "en") else "ja"
    args = build_parser(lang).parse_args(args_list)
    lang = args.lang
    try:
        if args.command == "run":
            return _run(args, lang)
        if args.command == "sample":
            return _sample(args, lang)
        if args.command == "backfill":
            return _backfill(args, lang)
        return _validate(args, lang)
    except Exception as error:  # noqa: BLE001 - the CLI prints one line; the traceback is in the logs
        print(message("cli.error", lang, error=_describe(error, lang)), file=sys.stderr)
        return 1


def _backfill(args: argparse.Namespace, lang: str) -> int:
    from flows.backfill import co2_backfill

    start, end = _date_argument(args.start, lang), _date_argument(args.end, lang)
    result = co2_backfill(start_date=start, end_date=end, force=args.force, phases=_phases_argument(args.phases, lang), profile=args.profile)
    print(message("cli.backfill.done", lang, outcomes=", ".join(f"{day} {state}" for day, state in result["dates"].items())))
    return 0


def _phases_argument(value: str | None, lang: str) -> list[Phase] | None:
    """Split and check a --phases value before anything starts."""
    if not value:
        return None
    phases: list[Phase] = []
    for phase in (p.strip() for p in value.split(",") if p.strip()):
        if phase not in PHASE_NAMES:
            raise ValueError(message("cli.bad_phase", lang, value=phase, choices=", ".join(PHASE_NAMES)))
        phases.append(cast(Phase, phase))
    return phases


def _date_argument(value: str, lang: str) -> dt.date:
    """Parse a --date value before anything starts, with the error in the operator's language."""
    from compute.settings import parse_run_date

    try:
        return parse_run_date(value)
    except ValueError as error:
        raise ValueError(message("cli.bad_date", lang, value=value)) from error


def _describe(error: Exception, lang: str) -> str:
    """Text of ``error`` in ``lang`` when the error can give one (contract errors), else its English text."""
    localised = getattr(error, "message", None)
    if callable(localised):
        try:
            return str(localised(lang))
        except TypeError:
            pass
    return str(error)


def _run(args: argparse.Namespace, lang: str) -> int:
    from compute.report import RunSummary, render_text
    from flows.daily import co2_daily

    phases = _phases_argument(args.phases, lang)
    run_date = _date_argument(args.date, lang) if args.date else None
    result = co2_daily(run_date=run_date, force=args.force, phases=phases, profile=args.profile)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    else:
        summary = RunSummary.from_dict(result)
        print(render_text(summary, lang))
    return 0


def _sample(args: argparse.Namespace, lang: str) -> int:
    from compute.sample import SampleSpec, write_sample_day
    from compute.settings import load_settings
    from compute.storage import Store

    settings = load_settings(args.profile)
    day = _date_argument(args.date, lang)
    url = args.out or settings.url("input", day)
    options = {} if args.out else settings.storage.options_for("input")
    counts = write_sample_day(Store(url, options), day, SampleSpec(trips=args.trips, vertices_per_trip=args.vertices))
    print(message("cli.sample.done", lang, url=url))
    print(message("cli.sample.counts", lang, counts=", ".join(f"{name} {rows:,}" for name, rows in counts.items())))
    return 0


def _validate(args: argparse.Namespace, lang: str) -> int:
    from compute.inspection import validate_path
    from compute.settings import load_settings

    settings = load_settings(args.profile)
    report, balanced = validate_path(args.path, settings, lang=lang, rejects_path=args.rejects)
    print(report)
    return 0 if balanced else 2


if __name__ == "__main__":
    raise SystemExit(main())
