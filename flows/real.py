"""``make real``: run the daily flow on every public real day and print the figures of each day.

The real days live in ``shared/data/real/<city>-<YYYYMMDD>/`` beside the repository (CI clones
the repository next to ``shared/``). For each folder the runner writes a local profile whose
input root is that folder, runs ``co2_daily`` with it and prints trips, rejects by reason, the
share of distance matched to a road link, total CO2, the plausibility warnings and the time per
phase. Outputs go to ``var/real/<city>/``. The runner holds no domain logic.

Usage: ``python -m flows.real [--lang en] [--root DIR] [--out DIR] [--only CITY ...]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from compute.i18n import OperatorError, message, register
from flows.cli import apply_process_defaults, create_prefect_home

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO_ROOT.parent / "shared" / "data" / "real"
DEFAULT_OUT = REPO_ROOT / "var" / "real"
_FOLDER_NAME = re.compile(r"^(?P<city>[a-z0-9_]+)-(?P<day>\d{8})$")

register(
    {
        "real.description": {
            "ja": "公開の実データ日（<都市>-<YYYYMMDD>）ごとに日次フローを実行し、日別の数値を表示する。",
            "en": "Run the daily flow on each public real day (<city>-<YYYYMMDD>) and print the figures per day.",
        },
        "real.root": {"ja": "実データ日のフォルダ（既定: リポジトリの隣の shared/data/real）。",
                      "en": "Folder of the real days (default: shared/data/real beside the repository)."},
        "real.out": {"ja": "出力先フォルダ（既定: var/real）。", "en": "Output folder (default: var/real)."},
        "real.only": {"ja": "実行する都市（複数可）。", "en": "Cities to run (repeatable)."},
        "real.absent": {
            "ja": "実データのフォルダがありません: {root}。実データ実行には、リポジトリと同じ階層に shared/data/real を置いてください。何も実行していません。",
            "en": "Real data folder not found: {root}. The real-data run needs shared/data/real beside the repository. Nothing was run.",
        },
        "real.empty": {
            "ja": "{root} に <都市>-<YYYYMMDD> 形式のフォルダがありません。何も実行していません。",
            "en": "No <city>-<YYYYMMDD> folder in {root}. Nothing was run.",
        },
        "real.running": {"ja": "実行中: {name}（実行日 {day}）", "en": "Running {name} (run date {day})"},
        "real.failed": {"ja": "失敗: {name}: {error}", "en": "Failed: {name}: {error}"},
        "real.header": {
            "ja": "| 日 | トリップ | 除外（理由別） | 照合率 | CO2（kg） | 警告 | fetch/validate/compute/output/publish（秒） |",
            "en": "| Day | Trips | Rejects by reason | Matched | CO2 (kg) | Warnings | fetch/validate/compute/output/publish (s) |",
        },
        "real.report": {"ja": "レポート: {path}", "en": "Report: {path}"},
    }
)



#: Local clock of each city of the public days, for the hours of the report's CO2-by-hour chart.
#: A city missing here is drawn on UTC.
CITY_TIMEZONES = {
    "porto": "Europe/Lisbon", "liverpool": "Europe/London", "helsinki": "Europe/Helsinki", "chicago": "America/Chicago",
}


@dataclass(frozen=True)
class RealDay:
    """One real day: its folder, city and run date."""

    name: str
    city: str
    run_date: dt.date
    folder: Path


def discover_days(root: Path) -> list[RealDay]:
    """List the ``<city>-<YYYYMMDD>`` folders of ``root`` in name order; other entries are ignored."""
    days = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        match = _FOLDER_NAME.match(folder.name)
        if match is None:
            continue
        day = dt.datetime.strptime(match["day"], "%Y%m%d").date()
        days.append(RealDay(folder.name, match["city"], day, folder))
    return days


def write_day_profile(day: RealDay, out: Path, lang: str) -> Path:
    """Write a local profile that reads ``day.folder`` and writes below ``out/<city>/``."""
    data_dir = out / day.city
    profile = {
        "profile": f"real-{day.city}",
        "language": lang,
        "data_dir": str(data_dir),
        "storage": {
            "input": str(day.folder.parent / f"{day.city}-{{yyyymmdd}}") + "/",
            "raw": "{data_dir}/lake/raw/{yyyymmdd}/",
            "temp": "{data_dir}/lake/temp/{yyyymmdd}/",
            "processed": "{data_dir}/lake/processed/{yyyymmdd}/",
            "output": "{data_dir}/client/output/{yyyymmdd}/",
        },
        "cluster": {"kind": "local", "n_workers": 2, "threads_per_worker": 1, "memory_limit": "2GiB"},
        "output": {"report_timezone": CITY_TIMEZONES.get(day.city, "UTC")},
    }
    path = out / "profiles" / f"{day.city}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(profile, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def run_day(day: RealDay, profile: Path) -> dict[str, Any]:
    """Run ``co2_daily`` on one real day (all phases, forced) and return its summary.json."""
    from compute.settings import load_settings
    from compute.storage import Store
    from flows.daily import co2_daily

    result = co2_daily(run_date=day.run_date, force=True, profile=str(profile))
    settings = load_settings(profile)
    summary = json.loads(Store(settings.url("processed", day.run_date)).read_text("summary.json"))
    return {"flow": result, "summary": summary, "report_dir": settings.url("processed", day.run_date) + "report/"}


def format_row(day: RealDay, outcome: dict[str, Any]) -> str:
    """Format the figures of one day as a Markdown table row."""
    figures = outcome["summary"].get("report", {})
    rejects = ", ".join(f"{k} {v:,}" for k, v in figures.get("rejects_by_reason", {}).items()) or "0"
    share = figures.get("matched_share")
    warnings = ", ".join(f"{k} {v}" for k, v in outcome["summary"].get("warnings", {}).get("counts", {}).items()) or "-"
    seconds = {p["phase"]: p for p in outcome["flow"].get("phases", [])}
    times = "/".join(f"{seconds[p]['seconds']:.1f}" if p in seconds else "-" for p in ("fetch", "validate", "compute", "output", "publish"))
    return (
        f"| {day.name} | {figures.get('trips', 0):,} | {rejects} | {'-' if share is None else f'{share:.1%}'} | "
        f"{figures.get('co2_ttw_kg', 0.0):,.1f} | {warnings} | {times} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run every real day; return 0 when all ran (or there is nothing to run), 1 when a day failed."""
    defaults = apply_process_defaults()
    args_list = list(sys.argv[1:] if argv is None else argv)
    # The help text is in the requested language, so --lang is read before the full parser exists.
    environment_lang = os.environ.get("LMCO2_LANGUAGE", "ja")
    first_pass = argparse.ArgumentParser(add_help=False)
    first_pass.add_argument("--lang", choices=("ja", "en"), default=environment_lang if environment_lang in ("ja", "en") else "ja")
    lang = first_pass.parse_known_args(args_list)[0].lang
    parser = argparse.ArgumentParser(prog="python -m flows.real", description=message("real.description", lang))
    parser.add_argument("--lang", choices=("ja", "en"), default=lang)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=message("real.root", lang))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=message("real.out", lang))
    parser.add_argument("--only", action="append", default=None, help=message("real.only", lang))
    args = parser.parse_args(args_list)
    lang = args.lang
    if "PREFECT_HOME" in defaults:
        # Prefect 3.9 creates its home without parents; when that fails, the run fails only after
        # the temporary server's startup timeout (see flows.cli.create_prefect_home).
        try:
            create_prefect_home(defaults["PREFECT_HOME"])
        except OperatorError as error:
            print(error.message(lang), file=sys.stderr)
            return 1

    if not args.root.is_dir():
        print(message("real.absent", lang, root=args.root))
        return 0
    days = [d for d in discover_days(args.root) if args.only is None or d.city in args.only]
    if not days:
        print(message("real.empty", lang, root=args.root))
        return 0

    rows, failed = [], 0
    for day in days:
        print(message("real.running", lang, name=day.name, day=day.run_date.isoformat()), flush=True)
        try:
            outcome = run_day(day, write_day_profile(day, args.out.resolve(), lang))
        except Exception as error:  # noqa: BLE001 - one failed day must not hide the others; the flow logged the traceback
            print(message("real.failed", lang, name=day.name, error=error), file=sys.stderr)
            failed += 1
            continue
        rows.append(format_row(day, outcome))
        print(message("real.report", lang, path=outcome["report_dir"]))

    header = message("real.header", lang)
    print("\n" + "\n".join([header, "|" + "---|" * header.count(" | ") + "---|", *rows]))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
