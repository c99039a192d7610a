"""The ``lm-co2`` command: run the daily flow, write a sample day, validate a day.

Help and messages are Japanese by default; ``--lang en`` or ``LMCO2_LANGUAGE=en`` switches to
English.

An expected failure (an invalid argument or profile, a missing or changed delivery, a contract
error) prints one message in the operator's language and exits with 1, without a traceback: the
error records of the Prefect run are kept off the console (they still reach the Prefect API).
Any other failure prints Prefect's records with the traceback, then one line.

``lm-co2 run`` and ``lm-co2 backfill`` stop in order on SIGINT (Ctrl-C) and SIGTERM: the flow's
``finally`` blocks close the Dask cluster and release the date lock, Prefect marks the run Crashed,
the temporary Prefect server is stopped, and the command prints one message with the signal, the
phase it interrupted (when known) and the command to rerun, then exits with 128 + the signal's
number (130 for SIGINT, 143 for SIGTERM). See :mod:`flows.interrupt`.

Messages, reports, tracebacks and the log records of a run reach the terminal with their control
characters escaped (``\\x1b``, ``\\u202e``), so that a value from the input, such as a trip id in
the validation report, cannot move the cursor, clear the screen or reorder the line. The line
breaks of the output stay.
"""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import json
import logging
import os
import re
import shlex
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TextIO, TypeVar, cast

from compute.i18n import OperatorError, escape_controls, has_message, message, operator_language, register, suggested_command
from flows import interrupt

if TYPE_CHECKING:
    from compute.settings import ProfileSyntaxError

register(
    {
        "cli.description": {
            "ja": "lm-co2: 車両軌跡から燃料消費量と CO2 排出量を日次で算定するバッチ。",
            "en": "lm-co2: the daily batch that estimates fuel and CO2 from vehicle trajectories.",
        },
        "cli.lang": {
            "ja": "メッセージの言語（ja または en）。既定は環境変数 LMCO2_LANGUAGE、それもなければ ja。サブコマンドより前に置きます。",
            "en": "Language of messages (ja or en). Default: the LMCO2_LANGUAGE environment variable, else ja. Goes before the subcommand.",
        },
        "cli.profile": {"ja": "設定プロファイル名または YAML のパス（既定: LMCO2_PROFILE または local）。サブコマンドより前に置きます。",
                        "en": "Settings profile name or YAML path (default: LMCO2_PROFILE or local). Goes before the subcommand."},
        "cli.run": {"ja": "1 日分の日次フローを実行する。", "en": "Run the daily flow for one day."},
        "cli.run.date": {"ja": "実行日（YYYY-MM-DD または YYYYMMDD）。既定は日本時間の前日。", "en": "Run date (YYYY-MM-DD or YYYYMMDD). Default: yesterday in Japan."},
        "cli.run.force": {"ja": "完了済みのフェーズも再実行する。", "en": "Run phases again even if they completed before."},
        "cli.run.phases": {"ja": "実行するフェーズ（カンマ区切り: fetch,validate,compute,output,publish）。既定は 5 つすべて。",
                           "en": "Phases to run, comma-separated (fetch,validate,compute,output,publish). Default: all five."},
        "cli.run.json": {"ja": "サマリを JSON で出力する。", "en": "Print the summary as JSON."},
        "cli.backfill": {"ja": "期間内の各日について日次フローを順に実行する。", "en": "Run the daily flow for every day of a date range."},
        "cli.backfill.start": {"ja": "最初の実行日（YYYY-MM-DD または YYYYMMDD）。", "en": "First run date (YYYY-MM-DD or YYYYMMDD)."},
        "cli.backfill.end": {"ja": "最後の実行日（YYYY-MM-DD または YYYYMMDD、この日を含む）。", "en": "Last run date (YYYY-MM-DD or YYYYMMDD, included)."},
        "cli.abandoned_check_failed": {
            "ja": "止められたプロセスが Running のまま残した実行を探せませんでした（{error}）。実行はそのまま続けます。",
            "en": "Looking for runs that a stopped process left Running failed ({error}); the run goes on.",
        },
        "cli.backfill.done": {"ja": "バックフィル結果（{count} 日）:", "en": "Backfill outcome ({count} {days}):"},
        "cli.backfill.date": {"ja": "  {day}: {state}", "en": "  {day}: {state}"},
        "cli.state.COMPLETED": {"ja": "完了", "en": "completed"},
        "cli.state.FAILED": {"ja": "失敗", "en": "failed"},
        "cli.state.CRASHED": {"ja": "異常終了", "en": "crashed"},
        "cli.state.CANCELLED": {"ja": "取り消し", "en": "cancelled"},
        "cli.sample": {"ja": "サンプルの 1 日分の入力を書き出す。", "en": "Write a sample day of inputs."},
        "cli.sample.date": {"ja": "サンプルの日付（YYYY-MM-DD または YYYYMMDD）。", "en": "Date of the sample day (YYYY-MM-DD or YYYYMMDD)."},
        "cli.sample.trips": {"ja": "トリップ数（既定: 200）。", "en": "Number of trips (default: 200)."},
        "cli.sample.vertices": {"ja": "1 トリップあたりの頂点数（既定: 60）。", "en": "Vertices per trip (default: 60)."},
        "cli.sample.out": {"ja": "出力先 URL（既定: プロファイルの input ルート）。", "en": "Destination URL (default: the profile's input root)."},
        "cli.sample.done": {"ja": "サンプル日を書き出しました: {url}", "en": "Sample day written: {url}"},
        "cli.validate": {"ja": "1 日分の入力を契約に照らして検証し、レポートを表示する。",
                         "en": "Validate one day of inputs against the contract and print a report."},
        "cli.validate.path": {"ja": "1 日分のフォルダ（ローカルパスまたは URL）。", "en": "Folder of one day (local path or URL)."},
        "cli.validate.rejects": {"ja": "除外行を書き出す Parquet ファイル。", "en": "Parquet file to write the rejects to."},
        "cli.error": {"ja": "エラー: {error}", "en": "Error: {error}"},
        "cli.unexpected": {
            "ja": "想定外のエラー: {error}（詳細は上のトレースバックを参照してください）",
            "en": "Unexpected error: {error} (see the traceback above)",
        },
        "cli.bad_profile": {
            "ja": "プロファイル {profile!r} が見つかりません。同梱のプロファイル名（{shipped}）か、存在する YAML ファイルのパスを指定してください。",
            "en": "Profile {profile!r} not found; pass a shipped profile name ({shipped}) or the path of an existing YAML file.",
        },
        "cli.bad_settings": {
            "ja": "プロファイル {profile!r} の設定が不正です（LMCO2_* 環境変数による上書きを含む）: {detail}",
            "en": "The settings of profile {profile!r} are invalid (LMCO2_* environment overrides included): {detail}",
        },
        "cli.argparse.invalid_choice": {
            "ja": "引数 {argument}: {value} は選べません（選択肢: {choices}）",
            "en": "argument {argument}: invalid choice: {value} (choose from {choices})",
        },
        "cli.argparse.expected_one": {"ja": "引数 {argument}: 値を 1 つ指定してください", "en": "argument {argument}: expected one argument"},
        "cli.argparse.invalid_value": {
            "ja": "引数 {argument}: {value} は {kind} 型の値として不正です",
            "en": "argument {argument}: invalid {kind} value: {value}",
        },
        "cli.argparse.required": {"ja": "次の引数が必要です: {arguments}", "en": "the following arguments are required: {arguments}"},
        "cli.argparse.unrecognized": {"ja": "認識できない引数です: {arguments}", "en": "unrecognized arguments: {arguments}"},
        "cli.argparse.ambiguous": {"ja": "オプション {option} があいまいです（候補: {matches}）", "en": "ambiguous option: {option} could match {matches}"},
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
        "cli.bad_profile_yaml": {
            "ja": "プロファイル {path} は YAML として不正です（{line} 行 {column} 列）: {problem_ja}。この位置を修正してから再実行してください。",
            "en": "Profile {path} is not valid YAML (line {line}, column {column}): {problem}. Correct the file there and run again.",
        },
        "cli.bad_profile_yaml.context": {
            "ja": "プロファイル {path} は YAML として不正です（{line} 行 {column} 列）: {problem_ja}（{context_ja}、{context_line} 行 {context_column} 列から）。"
                  "この位置を修正してから再実行してください。",
            "en": "Profile {path} is not valid YAML (line {line}, column {column}): {problem} ({context}, from line {context_line}, "
                  "column {context_column}). Correct the file there and run again.",
        },
        "cli.bad_profile_yaml.no_position": {
            "ja": "プロファイル {path} は YAML として不正です: {problem_ja}。ファイルを修正してから再実行してください。",
            "en": "Profile {path} is not valid YAML: {problem}. Correct the file and run again.",
        },
        "cli.argparse.argument": {"ja": "引数 {argument}: {detail}", "en": "argument {argument}: {detail}"},
        "cli.argparse.not_integer": {
            "ja": "{value!r} は整数ではありません。{minimum} 以上の整数を指定してください（{reason}）",
            "en": "{value!r} is not an integer; give an integer of at least {minimum} ({reason})",
        },
        "cli.argparse.at_least": {
            "ja": "{value} は指定できません。{minimum} 以上の整数を指定してください（{reason}）",
            "en": "{value} is too small; give an integer of at least {minimum} ({reason})",
        },
        "cli.argparse.global_options_first": {
            "ja": "。--profile と --lang はサブコマンドより前に置いてください。例: {example}",
            "en": "; --profile and --lang go before the subcommand, for example: {example}",
        },
        "cli.sample.date_outside_window": {
            "ja": "サンプルの日付 {day} が契約の時刻の範囲（{min_time} 以降、{max_time} より前）の外にあるため、"
                  "そのトリップはすべて検証で除外されます。範囲内の日付を指定するか、contract.thresholds.min_time / max_time を変えてください。",
            "en": "sample date {day} is outside the contract's time window (from {min_time}, before {max_time}), so validation "
                  "would reject every trip; give a date inside it or change contract.thresholds.min_time / max_time",
        },
        "cli.sample.trips_minimum": {"ja": "サンプル日にはトリップが 1 件以上必要です", "en": "a sample day needs at least one trip"},
        "cli.sample.vertices_minimum": {
            "ja": "トリップの軌跡は 2 頂点以上の線です", "en": "a trip's trajectory is a line of at least 2 vertices",
        },
        "cli.no_phase": {
            "ja": "--phases {value!r} にフェーズ名がありません。次から 1 つ以上をカンマ区切りで指定してください: {choices}",
            "en": "--phases {value!r} names no phase; give one or more, comma-separated, from: {choices}",
        },
        "cli.validate.rejects_written": {"ja": "除外行を書き出しました: {path}", "en": "Rejects written: {path}"},
        "cli.validate.rejects_unwritable": {
            "ja": "除外行ファイル {path} に書き込めません（{reason}）。書き込み権限のある既存フォルダ内のパスを --rejects に指定してください。",
            "en": "Cannot write the rejects file {path} ({reason}); pass --rejects a path inside an existing folder you can write to.",
        },
        "cli.oserror.ENOENT": {
            "ja": "フォルダが存在しないか、ファイルを作成できない場所です", "en": "the folder does not exist or does not allow new files",
        },
        "cli.oserror.EACCES": {"ja": "書き込み権限がありません", "en": "permission denied"},
        "cli.oserror.EPERM": {"ja": "この操作は許可されていません", "en": "operation not permitted"},
        "cli.oserror.EROFS": {"ja": "読み取り専用のファイルシステムです", "en": "read-only file system"},
        "cli.oserror.EISDIR": {"ja": "フォルダです（ファイルのパスを指定してください）", "en": "it is a folder, not a file"},
        "cli.oserror.ENOTDIR": {"ja": "途中のパスがフォルダではありません", "en": "a parent in the path is not a folder"},
        "cli.oserror.EEXIST": {"ja": "同じ名前のファイルがあります", "en": "a file of that name exists"},
        "cli.interrupted": {
            "ja": "{signal} を受けて実行を中断しました。再実行するには次のコマンドを使ってください: {command}",
            "en": "The run was interrupted by {signal}. To rerun, use: {command}",
        },
        "cli.interrupted.phase": {
            "ja": "{signal} を受けて、{phase} フェーズの途中で実行を中断しました。再実行するには次のコマンドを使ってください: {command}",
            "en": "The run was interrupted by {signal} during the {phase} phase. To rerun, use: {command}",
        },
        "cli.prefect_home_unwritable": {
            "ja": "Prefect のホームフォルダ {path} を作成できないか、書き込めません（{reason}）。"
                  "環境変数 PREFECT_HOME に書き込み権限のあるフォルダを指定してから再実行してください"
                  "（PREFECT_HOME がないときの既定は、現在のフォルダの var/prefect です）。",
            "en": "Cannot create or write to the Prefect home folder {path} ({reason}). Set the PREFECT_HOME environment "
                  "variable to a folder you can write to and run again (without PREFECT_HOME, the default is var/prefect "
                  "in the current folder).",
        },
    }
)

Phase = Literal["fetch", "validate", "compute", "output", "publish"]
PHASE_NAMES: tuple[Phase, ...] = ("fetch", "validate", "compute", "output", "publish")
_COMMANDS = ("run", "backfill", "sample", "validate")
Result = TypeVar("Result")

# Usage errors of argparse (Python 3.11) with the catalogue key of their text, so that they read
# in the operator's language. An error that matches none keeps argparse's English text.
_ARGPARSE_ERRORS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"argument (?P<argument>\S+): invalid choice: (?P<value>.+) \(choose from (?P<choices>.+)\)"), "cli.argparse.invalid_choice"),
    (re.compile(r"argument (?P<argument>\S+): expected one argument"), "cli.argparse.expected_one"),
    (re.compile(r"argument (?P<argument>\S+): invalid (?P<kind>\w+) value: (?P<value>.+)"), "cli.argparse.invalid_value"),
    (re.compile(r"the following arguments are required: (?P<arguments>.+)"), "cli.argparse.required"),
    (re.compile(r"unrecognized arguments: (?P<arguments>.+)"), "cli.argparse.unrecognized"),
    (re.compile(r"ambiguous option: (?P<option>\S+) could match (?P<matches>.+)"), "cli.argparse.ambiguous"),
    # Last: the text of an ArgumentTypeError, which the type functions below write in the operator's language.
    (re.compile(r"argument (?P<argument>\S+): (?P<detail>.+)"), "cli.argparse.argument"),
)
# Options of the top-level parser, which argparse accepts only before the subcommand.
_GLOBAL_OPTIONS = ("--profile", "--lang")

# Defaults for the process before Prefect or gcsfs are imported: no telemetry, no cloud metadata
# probes, time for the ephemeral Prefect server to migrate its database on first use, and
# Prefect's home folder (its profiles and the SQLite database of the ephemeral server) below the
# current folder, beside the ``local`` profile's ``./var`` data. An operator's own environment wins.
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
        if _is_lang_option(arg) and "=" not in arg and i + 1 < len(argv):
            return argv[i + 1]
        if _is_lang_option(arg) and "=" in arg:
            return arg.split("=", 1)[1]
    return os.environ.get("LMCO2_LANGUAGE", "ja")


def _is_lang_option(arg: str) -> bool:
    """Return whether ``arg`` is ``--lang``, with ``=value`` or shortened as argparse accepts (``--la``).

    No other option of the command, its subcommands included, starts with ``--l``.
    """
    name = arg.split("=", 1)[0]
    return len(name) >= 3 and "--lang".startswith(name)


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
        self.command_line: list[str] | None = None

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        # The command line is kept for the hint on global options. Subparsers never pass through here,
        # because argparse calls them with parse_known_args.
        self.command_line = list(sys.argv[1:] if args is None else args)
        return super().parse_args(self.command_line, namespace)

    def error(self, message_text: str) -> NoReturn:
        self.print_usage(sys.stderr)
        detail = _translate_usage_error(message_text, self.lang)
        if message_text.startswith("unrecognized arguments: ") and self.command_line is not None:
            reordered = _global_options_first(self.command_line)
            if reordered is not None:
                detail += message("cli.argparse.global_options_first", self.lang, example=shlex.join(["lm-co2", *reordered]))
        self.exit(2, escape_controls(message("cli.usage_error", self.lang, prog=self.prog, detail=detail), keep="\n") + "\n")


def _global_options_first(argv: Sequence[str]) -> list[str] | None:
    """Return ``argv`` with --profile and --lang moved before the subcommand, or None when neither follows it."""
    command_at = next((i for i, arg in enumerate(argv) if arg in _COMMANDS), None)
    if command_at is None:
        return None
    moved: list[str] = []
    kept: list[str] = []
    tail = iter(argv[command_at + 1:])
    for arg in tail:
        if arg in _GLOBAL_OPTIONS:
            moved += [arg, next(tail, "")]
        elif arg.startswith(tuple(f"{option}=" for option in _GLOBAL_OPTIONS)):
            moved.append(arg)
        else:
            kept.append(arg)
    if not moved:
        return None
    return [*argv[:command_at], *moved, argv[command_at], *kept]


def _integer_at_least(minimum: int, reason_key: str, lang: str) -> Callable[[str], int]:
    """Return an argparse type that parses an integer and rejects one below ``minimum`` in ``lang``."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                message("cli.argparse.not_integer", lang, value=text, minimum=minimum, reason=message(reason_key, lang))
            ) from None
        if number < minimum:
            raise argparse.ArgumentTypeError(
                message("cli.argparse.at_least", lang, value=number, minimum=minimum, reason=message(reason_key, lang))
            )
        return number

    return parse


def _translate_usage_error(text: str, lang: str) -> str:
    for pattern, key in _ARGPARSE_ERRORS:
        match = pattern.fullmatch(text)
        if match:
            values = match.groupdict()
            if values.get("argument") == "command":  # the subcommand's dest, not an option name
                values["argument"] = message("cli.commands", lang)
            return message(key, lang, **values)
    return text


def _SubParser(lang: str) -> Any:  # noqa: N802 - used as a class by argparse
    def make(*args: Any, **kwargs: Any) -> _Parser:
        return _Parser(*args, lang=lang, **kwargs)

    return make


def _formatter(lang: str) -> type[argparse.HelpFormatter]:
    class Formatter(argparse.HelpFormatter):
        def add_usage(self, usage: str | None, actions: Any, groups: Any, prefix: str | None = None) -> None:
            super().add_usage(usage, actions, groups, prefix if prefix is not None else message("cli.usage", lang))

    return Formatter


def apply_process_defaults() -> dict[str, str]:
    """Set the offline process defaults that the operator's environment does not set already.

    Returns the variables set here, with their values. The default PREFECT_HOME folder is not
    created here but by :func:`create_prefect_home`, when a command is about to start Prefect.
    """
    applied = {key: value for key, value in _PROCESS_DEFAULTS.items() if key not in os.environ}
    os.environ.update(applied)
    return applied


def create_prefect_home(folder: str) -> None:
    """Create the Prefect home ``folder`` with its parents, before Prefect is imported.

    Prefect 3.9 (``prefect/context.py``) creates its home without parents. When it cannot, it only
    warns, and the ephemeral server then fails to open its database, so the run fails only after
    the server's startup timeout (120 s in ``_PROCESS_DEFAULTS``).

    Raises
    ------
    OperatorError
        If the folder cannot be created or written, with the folder, the reason and what to set.
    """
    home = Path(folder).expanduser().absolute()
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise _ReasonedError("cli.prefect_home_unwritable", path=str(home), reason=_os_error_reason(error)) from error
    if not os.access(home, os.W_OK | os.X_OK):
        raise _ReasonedError("cli.prefect_home_unwritable", path=str(home), reason="cli.oserror.EACCES")


def _echo(text: str, *, file: TextIO | None = None, notation: Literal["python", "json"] = "python") -> None:
    """Print ``text`` with every control character but the line break escaped.

    All output of the command passes here, except argparse's usage and help texts, which contain
    no input values. ``notation="json"`` is for JSON text, whose encoder escapes the C0 controls
    but leaves the C1 and bidi controls as they are.
    """
    print(escape_controls(text, keep="\n", notation=notation), file=sys.stdout if file is None else file)


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
    sample.add_argument("--trips", type=_integer_at_least(1, "cli.sample.trips_minimum", lang), default=200, help=message("cli.sample.trips", lang))
    sample.add_argument(
        "--vertices", type=_integer_at_least(2, "cli.sample.vertices_minimum", lang), default=60, help=message("cli.sample.vertices", lang),
    )
    sample.add_argument("--out", default=None, help=message("cli.sample.out", lang))

    validate = commands.add_parser("validate", help=message("cli.validate", lang), description=message("cli.validate", lang))
    validate.add_argument("path", help=message("cli.validate.path", lang))
    validate.add_argument("--rejects", default=None, help=message("cli.validate.rejects", lang))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lm-co2`` command and return the process exit code."""
    defaults = apply_process_defaults()
    prefect_home = defaults.get("PREFECT_HOME")
    args_list = list(sys.argv[1:] if argv is None else argv)
    lang = _language(args_list)
    lang = lang if lang in ("ja", "en") else "ja"
    args = build_parser(lang).parse_args(args_list)
    args.lang_given = any(_is_lang_option(arg) for arg in args_list)
    lang = args.lang
    stop = interrupt.SignalStop(lang, rerun_command=lambda: _rerun_command(args, stop.run_date))
    console = _RunConsole(stop)
    # Commands that messages suggest keep this command's profile and language. The daily flow
    # writes its log lines in the profile's language, and the rest of the command in this one.
    with suggested_command(shlex.join(_command_prefix(args))), operator_language(lang):
        try:
            if args.command in ("run", "backfill"):
                return _run_flow_command(args, lang, console, stop, prefect_home)
            if args.command == "sample":
                return _sample(args, lang)
            return _validate(args, lang)
        except BrokenPipeError:
            # The reader of stdout went away (``lm-co2 validate DAY | head``): stop quietly, as other
            # command-line tools do. Output still buffered would raise again at exit, so stdout is
            # pointed at the null device first.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 1
        except Exception as error:
            if is_expected(error):
                _echo(message("cli.error", lang, error=_describe(error, lang)), file=sys.stderr)
                return 1
            if error not in console.shown:
                _echo("".join(traceback.format_exception(error)).rstrip("\n"), file=sys.stderr)
            described = _describe(error, lang) if callable(getattr(error, "message", None)) else f"{type(error).__name__}: {error}"
            _echo(message("cli.unexpected", lang, error=described), file=sys.stderr)
            return 1


def is_expected(error: BaseException) -> bool:
    """Return whether ``error`` is a failure the operator can fix, printed without a traceback.

    Expected: :class:`~compute.i18n.OperatorError` (arguments, profiles, backfill ranges), a
    storage failure after its retries (:class:`~compute.storage.StorageError`), and a
    dataset-level contract error. A storage failure is a missing or changed delivery, a copy that
    does not verify, or objects that could not be delivered, and its message names the objects
    and what to do. A failed backfill is expected when every failed date failed with an
    expected error.
    """
    from compute.contract import ContractError
    from compute.storage import StorageError

    failures = getattr(error, "failures", None)
    if isinstance(error, OperatorError) and isinstance(failures, dict):
        return all(is_expected(failure) for failure in failures.values())
    return isinstance(error, OperatorError | StorageError | ContractError)


class _HeldRecords(logging.Filter):
    """Keep error records of Prefect flow and task runs back from one console handler."""

    _LOGGERS = ("prefect.flow_runs", "prefect.task_runs")

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.name.startswith(self._LOGGERS):
            self.records.append(record)
            return False
        return True


class _EscapingFormatter(logging.Formatter):
    """Format a record with another formatter, then escape the control characters as :func:`_echo` does.

    Log records can carry input values, such as the object names of the client's delivery.
    """

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner if inner is not None else logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return escape_controls(self.inner.format(record), keep="\n")


_Formatters = dict[logging.Handler, tuple[logging.Formatter | None, _EscapingFormatter]]


class _RunConsole:
    """Run a flow with its error records held back from the console until its outcome is known.

    After an expected failure the held records are dropped, so the operator sees the command's
    one message. After an interruption by a signal, only the held records of lm-co2 events other
    than ``run_failed`` are written, such as a failed cleanup of a leftover cluster. Prefect's
    own crash records are dropped, because the command's message replaces them. After success or
    any other failure the held records are written as Prefect would have written them. ``shown``
    then contains the error, so the command prints no second traceback. While the flow runs, the
    console handlers escape control characters (:class:`_EscapingFormatter`).
    """

    def __init__(self, stop: interrupt.SignalStop | None = None) -> None:
        self.shown: list[BaseException] = []
        #: Signal handling of the command. Without it, an error is an interruption only when it is
        #: a KeyboardInterrupt or Prefect's TerminationSignal.
        self.stop = stop

    def run(self, flow_call: Callable[[], Result]) -> Result:
        handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
        held: dict[logging.Handler, _HeldRecords] = {handler: _HeldRecords() for handler in handlers}
        # Per handler: its own formatter, restored afterwards, and the escaping one used meanwhile.
        formatters: _Formatters = {handler: (handler.formatter, _EscapingFormatter(handler.formatter)) for handler in handlers}
        for handler, records in held.items():
            handler.addFilter(records)
            handler.setFormatter(formatters[handler][1])
        try:
            from prefect import tags

            with tags(interrupt.process_tag()):
                result = flow_call()
        except BaseException as error:
            if interrupt.stopping_signal(error, self.stop) is not None:
                self._release(held, formatters, keep=interrupt.reports_cleanup)
            elif isinstance(error, Exception) and is_expected(error):
                self._release(held, formatters, keep=lambda record: False)
            else:
                self._release(held, formatters, keep=lambda record: True)
            if any(r.exc_info and r.exc_info[1] is error for records in held.values() for r in records.records):
                self.shown.append(error)
            raise
        self._release(held, formatters, keep=lambda record: True)
        return result

    @staticmethod
    def _release(
        held: dict[logging.Handler, _HeldRecords],
        formatters: _Formatters,
        *,
        keep: Callable[[logging.LogRecord], bool],
    ) -> None:
        for handler, records in held.items():
            handler.removeFilter(records)
            for record in records.records:
                if keep(record):
                    handler.handle(record)
            original, escaping = formatters[handler]
            # A flow that switched the console to JSON lines set its own formatter, which stays.
            # NOTE: its JSON encoder escapes the C0 controls but not the C1 and bidi controls.
            if handler.formatter is escaping:
                handler.setFormatter(original)


def _run_flow_command(args: argparse.Namespace, lang: str, console: _RunConsole, stop: interrupt.SignalStop, prefect_home: str | None) -> int:
    """Run ``lm-co2 run`` or ``lm-co2 backfill`` and, on SIGINT or SIGTERM, stop in order and print how to rerun.

    Whatever error follows a signal is the interruption unwinding the run, so it is reported as
    the interruption, without a traceback.
    """
    with stop:
        try:
            if args.command == "run":
                return _run(args, lang, console, prefect_home)
            return _backfill(args, lang, console, prefect_home)
        except BaseException as error:
            signal_number = interrupt.stopping_signal(error, stop)
            if signal_number is None:
                raise
            phase = interrupt.interrupted_phase(error)

        interrupt.close_leftover_clusters()
        interrupt.stop_temporary_server()
        values = {"signal": signal.Signals(signal_number).name, "command": stop.rerun_command()}
        if phase is None:
            _echo(message("cli.interrupted", lang, **values), file=sys.stderr)
        else:
            _echo(message("cli.interrupted.phase", lang, phase=phase, **values), file=sys.stderr)
        stop.quiet_until_exit = True
        return interrupt.exit_status(signal_number)


def _command_prefix(args: argparse.Namespace) -> list[str]:
    """Return ``lm-co2`` with the ``--lang`` and ``--profile`` the command was given, the start of any command it suggests."""
    words = ["lm-co2"]
    if getattr(args, "lang_given", False):
        # Without it the rerun would print its messages in the language of LMCO2_LANGUAGE (or Japanese).
        words += ["--lang", args.lang]
    if getattr(args, "profile", None) is not None:
        words += ["--profile", args.profile]
    return words


def _rerun_command(args: argparse.Namespace, run_date: dt.date | None) -> str:
    """Return the interrupted command with its run date filled in, for the operator to run again.

    ``--lang`` stays when it was given. Phases that completed are skipped on the rerun unless
    ``--force`` is given. ``--force`` stays
    when the interrupted command had it, because phases the run did not reach still have the
    markers of an earlier run.
    """
    words = _command_prefix(args)
    if args.command == "run":
        words.append("run")
        if run_date is not None:
            words += ["--date", run_date.isoformat()]
        elif args.date:
            words += ["--date", _iso_date(args.date)]
    else:
        words += ["backfill", "--start", _iso_date(args.start), "--end", _iso_date(args.end)]
    if args.force:
        words.append("--force")
    if args.phases is not None:
        words += ["--phases", args.phases]
    if getattr(args, "json", False):
        words.append("--json")
    return shlex.join(words)


def _start_prefect(lang: str) -> None:
    """Start Prefect's temporary server when no server is set, and mark Crashed the runs that killed commands left Running."""
    interrupt.start_temporary_server()
    try:
        notes = interrupt.crash_abandoned_runs(lang)
    except Exception as error:  # the check only tidies the run list, so the run goes on without it
        logging.getLogger(__name__).warning(message("cli.abandoned_check_failed", lang, error=error))
        return
    for note in notes:
        _echo(note, file=sys.stderr)


def _iso_date(value: str) -> str:
    """Return a date argument as YYYY-MM-DD, or as given when it is invalid (the command then fails on it)."""
    try:
        return _date_argument(value).isoformat()
    except OperatorError:
        return value


def _backfill(args: argparse.Namespace, lang: str, console: _RunConsole, prefect_home: str | None) -> int:
    start, end = _date_argument(args.start), _date_argument(args.end)
    phases = _phases_argument(args.phases)
    _load_settings(args.profile)
    if prefect_home is not None:
        create_prefect_home(prefect_home)

    from flows.backfill import BackfillError, co2_backfill, dates_between

    dates_between(start, end)
    _start_prefect(lang)
    try:
        result = console.run(lambda: co2_backfill(start_date=start, end_date=end, force=args.force, phases=phases, profile=args.profile))
    except BackfillError as error:
        _print_backfill_outcomes(error.outcomes, lang, file=sys.stderr)
        raise
    _print_backfill_outcomes(result["dates"], lang, file=sys.stdout)
    return 0


def _print_backfill_outcomes(outcomes: dict[str, str], lang: str, *, file: TextIO) -> None:
    _echo(message("cli.backfill.done", lang, count=len(outcomes), days="day" if len(outcomes) == 1 else "days"), file=file)
    for day, state in outcomes.items():
        key = f"cli.state.{state}"
        label = message(key, lang) if has_message(key) else state
        _echo(message("cli.backfill.date", lang, day=day, state=label), file=file)


def _phases_argument(value: str | None) -> list[Phase] | None:
    """Split and check a --phases value before anything starts. None, the option not given, means all phases."""
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise OperatorError("cli.no_phase", value=value, choices=", ".join(PHASE_NAMES))
    phases: list[Phase] = []
    for phase in names:
        if phase not in PHASE_NAMES:
            raise OperatorError("cli.bad_phase", value=phase, choices=", ".join(PHASE_NAMES))
        phases.append(cast(Phase, phase))
    return phases


def _date_argument(value: str) -> dt.date:
    """Parse a --date value before anything starts; the error is printed in the operator's language."""
    from compute.settings import parse_run_date

    try:
        return parse_run_date(value)
    except OperatorError:
        raise  # a date in the right form that does not exist, or outside the years lm-co2 accepts
    except ValueError as error:
        raise OperatorError("cli.bad_date", value=value) from error


def _load_settings(profile: str | None) -> Any:
    """Load and check the settings before anything starts; raise :class:`OperatorError` when they are invalid."""
    import pydantic

    from compute.settings import ProfileFileError, ProfileSyntaxError, load_settings
    from compute.settings_errors import SettingsError

    name = profile if profile is not None else os.environ.get("LMCO2_PROFILE", "local")
    try:
        return load_settings(profile)
    except FileNotFoundError as error:
        raise OperatorError("cli.bad_profile", profile=str(name), shipped=", ".join(_shipped_profiles())) from error
    except ProfileSyntaxError as error:
        raise _profile_syntax_error(error) from error
    except ProfileFileError:
        raise
    except pydantic.ValidationError as error:
        raise SettingsError.from_validation_error(str(name), error, os.environ) from error
    except OperatorError as error:
        raise SettingsError.from_operator_error(str(name), error) from error
    except ValueError as error:
        raise OperatorError("cli.bad_settings", profile=str(name), detail=str(error)) from error


def _profile_syntax_error(error: ProfileSyntaxError) -> OperatorError:
    """Turn a profile's YAML error into the operator's message with the line and column.

    PyYAML's English problem text stays in the English message; the Japanese one explains it
    (``compute.settings_errors.describe_yaml_problem``).
    """
    from compute.settings_errors import describe_yaml_context, describe_yaml_problem

    problems = {"problem": error.problem, "problem_ja": describe_yaml_problem(error.problem, "ja")}
    if error.line is None:
        return OperatorError("cli.bad_profile_yaml.no_position", path=error.source, **problems)
    if error.context is None:
        return OperatorError("cli.bad_profile_yaml", path=error.source, line=error.line, column=error.column, **problems)
    context, context_line, context_column = error.context
    return OperatorError(
        "cli.bad_profile_yaml.context", path=error.source, line=error.line, column=error.column, **problems,
        context=context, context_ja=describe_yaml_context(context, "ja"), context_line=context_line, context_column=context_column,
    )


def _shipped_profiles() -> list[str]:
    folder = resources.files("compute.profiles")
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def _describe(error: Exception, lang: str) -> str:
    """Text of ``error`` in ``lang`` when the error can give one (contract errors), else its English text."""
    localised = getattr(error, "message", None)
    if callable(localised):
        try:
            return str(localised(lang))
        except TypeError:
            pass
    return str(error)


def _run(args: argparse.Namespace, lang: str, console: _RunConsole, prefect_home: str | None) -> int:
    from compute.report import RunSummary, render_text

    phases = _phases_argument(args.phases)
    run_date = _date_argument(args.date) if args.date else None
    _load_settings(args.profile)
    if prefect_home is not None:
        create_prefect_home(prefect_home)

    from flows.daily import co2_daily, previous_day_tokyo

    # Resolved here rather than in the flow, so that the run and the rerun command of an
    # interruption name the same date.
    day = run_date if run_date is not None else previous_day_tokyo()
    if console.stop is not None:
        console.stop.run_date = day
    _start_prefect(lang)
    result = console.run(lambda: co2_daily(run_date=day, force=args.force, phases=phases, profile=args.profile))
    if args.json:
        _echo(json.dumps(result, ensure_ascii=False, indent=2, default=str), notation="json")
    else:
        summary = RunSummary.from_dict(result)
        _echo(render_text(summary, lang))
    return 0


def _sample(args: argparse.Namespace, lang: str) -> int:
    from compute.sample import SampleSpec, write_sample_day
    from compute.storage import Store

    settings = _load_settings(args.profile)
    day = _date_argument(args.date)
    thresholds = settings.contract.thresholds
    # The sample's trips run on this day, so outside the contract's time window validation rejects them all.
    if not thresholds.min_time.date() <= day < thresholds.max_time.date():
        raise OperatorError("cli.sample.date_outside_window", day=day.isoformat(), min_time=thresholds.min_time.date().isoformat(),
                            max_time=thresholds.max_time.date().isoformat())
    url = args.out or settings.url("input", day)
    options = {} if args.out else settings.storage.options_for("input")
    counts = write_sample_day(Store(url, options), day, SampleSpec(trips=args.trips, vertices_per_trip=args.vertices))
    _echo(message("cli.sample.done", lang, url=url))
    _echo(message("cli.sample.counts", lang, counts=", ".join(f"{name} {rows:,}" for name, rows in counts.items())))
    return 0


def _validate(args: argparse.Namespace, lang: str) -> int:
    from compute.inspection import validate_path

    settings = _load_settings(args.profile)
    if args.rejects is None:
        report, balanced = validate_path(args.path, settings, lang=lang)
        _echo(report)
        return 0 if balanced else 2

    remove_probe = _probe_rejects_destination(args.rejects)
    try:
        report, balanced = validate_path(args.path, settings, lang=lang, rejects_path=args.rejects)
    except BaseException:
        remove_probe()
        raise
    _echo(report)
    _echo(message("cli.validate.rejects_written", lang, path=args.rejects))
    return 0 if balanced else 2


class _ReasonedError(OperatorError):
    """An :class:`OperatorError` whose ``reason`` value is a catalogue key when one is registered.

    The reason then reads in the requested language, and any other text is shown as it is.
    """

    def message(self, lang: str = "ja") -> str:
        values = dict(self.values)
        reason = str(values["reason"])
        values["reason"] = message(reason, lang) if has_message(reason) else reason
        return message(self.key, lang, **values)


def _probe_rejects_destination(url: str) -> Callable[[], None]:
    """Create the --rejects file empty, so that an unwritable path fails before the day is read.

    Returns a function that removes the file again when it did not exist before, for a
    validation that fails before writing the rejects.

    Raises
    ------
    OperatorError
        If the file cannot be created, with the path, the reason and what to pass instead.
    """
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
        existed = fs.exists(path)
        with fs.open(path, "wb"):
            pass
    except OSError as error:
        raise _ReasonedError("cli.validate.rejects_unwritable", path=url, reason=_os_error_reason(error)) from error

    def remove() -> None:
        if not existed:
            fs.rm_file(path)

    return remove


def _os_error_reason(error: OSError) -> str:
    """Return the catalogue key of the reason of ``error`` when one is registered, else the system's text."""
    key = f"cli.oserror.{errno.errorcode.get(error.errno or 0, '')}"
    return key if has_message(key) else (error.strerror or str(error))


if __name__ == "__main__":
    raise SystemExit(main())
