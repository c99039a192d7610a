"""Markdown validation report for ``lm-co2 validate`` and the run artifact, in Japanese or English."""

from __future__ import annotations

import re

import pandas as pd

from compute import columns as c
from compute.contract.errors import ContractError, missing_datasets
from compute.contract.reasons import ErrorCode
from compute.contract.schema import DATASETS
from compute.contract.summary import DatasetSummary, ValidationSummary
from compute.i18n import message

MAX_CELL_CHARS = 80

# An error built from plain text (an older manifest, or a reader that passes strings) states a
# missing dataset's folder as ``<folder>/*.parquet = 0`` in ``actual``.
_MISSING_FILES = re.compile(r"(?P<folder>.+)/\*\.parquet = 0")


def render_report(summary: ValidationSummary, lang: str = "ja", examples: pd.DataFrame | None = None) -> str:
    """Return a Markdown report a client can act on.

    Parameters
    ----------
    summary : ValidationSummary
        Counts and dataset-level errors of the run date.
    lang : {"ja", "en"}
        Language of the text; codes, keys and values are shown as they are.
    examples : pandas.DataFrame, optional
        Reject rows (any subset with the reject columns); the first row per dataset and reason
        gives the example key and value.

    Returns
    -------
    str
        Markdown: status, dataset-level errors, a count table, then per dataset its rejects by
        reason (count, meaning, example, what to do) and its flags. After a dataset-level error
        the count table lists every dataset of the contract: a missing one with the folder its
        files belong in, the others as not validated.
    """
    t = _translator(lang)
    lines = [f"# {t('contract.report.title')}", ""]
    lines += [t("contract.report.status_failed") if summary.errors else t("contract.report.status_ok"), ""]

    if summary.errors:
        lines += [f"## {t('contract.report.errors')}", ""]
        for error in summary.errors:
            lines.append(f"- `{error.code.value}`: {error.message(lang)}")
        lines.append("")

    lines += _count_table(summary, t)
    for name in _ordered(summary):
        counts = summary.datasets[name]
        lines += _reject_table(counts, examples, lang, t)
        lines += _flag_table(counts, lang, t)
    return "\n".join(lines).rstrip() + "\n"


def _translator(lang: str):  # type: ignore[no-untyped-def]
    return lambda key, **values: message(key, lang, **values)


def _ordered(summary: ValidationSummary) -> list[str]:
    known = [name for name in DATASETS if name in summary.datasets]
    return known + sorted(set(summary.datasets) - set(known))


def _count_table(summary: ValidationSummary, t) -> list[str]:  # type: ignore[no-untyped-def]
    missing = {name: error for error in summary.errors if error.code is ErrorCode.DATASET_MISSING for name in missing_datasets(error)}
    unread = [name for name in DATASETS if name not in summary.datasets] if summary.errors else []
    header = [
        t("contract.report.dataset"),
        t("contract.report.rows_in"),
        t("contract.report.accepted"),
        t("contract.report.rejected"),
        t("contract.report.flagged"),
        t("contract.report.balance"),
    ]
    lines = [f"## {t('contract.report.overview')}", "", _row(header), _row(["---"] + ["---:"] * 4 + ["---"])]
    for name in _ordered(summary):
        counts = summary.datasets[name]
        if not counts.present:
            lines.append(_row([name, t("contract.report.absent"), "", "", "", ""]))
            continue
        balanced = counts.rows_in == counts.accepted + counts.rejected
        balance = t("contract.report.balance_ok") if balanced else t("contract.report.balance_broken")
        flagged = sum(counts.flags.values())
        lines.append(_row([name, f"{counts.rows_in:,}", f"{counts.accepted:,}", f"{counts.rejected:,}", f"{flagged:,}", balance]))
    for name in unread:
        status = t("contract.report.missing") if name in missing else t("contract.report.not_validated")
        lines.append(_row([name, status, "", "", "", ""]))
    lines.append("")

    for name in unread:
        if name in missing:
            lines.append(f"- {t('contract.report.missing_action', dataset=name, folder=_folder_of(missing[name], name, t))}")
    if any(name not in missing for name in unread):
        lines.append(f"- {t('contract.report.not_validated_note')}")
    if unread:
        lines.append("")
    return lines


def _folder_of(error: ContractError, dataset: str, t) -> str:  # type: ignore[no-untyped-def]
    """Return where the missing ``dataset``'s files belong: the folder the reader listed, else the dataset's folder of the day.

    An error that names several datasets lists their folders in the same order.
    """
    folders = [part.params["folder"] for part in error.actual_phrases if part.kind == "no_parquet_files"]
    names = missing_datasets(error)
    if folders and len(folders) == len(names):
        return f"`{folders[names.index(dataset)]}/`"
    match = _MISSING_FILES.fullmatch(error.actual)
    if match is None:
        return str(t("contract.report.day_folder_of", dataset=dataset))
    return f"`{match['folder']}/`"


def _reject_table(counts: DatasetSummary, examples: pd.DataFrame | None, lang: str, t) -> list[str]:  # type: ignore[no-untyped-def]
    if not counts.present or not counts.rows_in:
        return []
    lines = [f"## {t('contract.report.rejects_of', dataset=counts.dataset)}", ""]
    if not counts.by_reason:
        return lines + [t("contract.report.no_rejects"), ""]
    header = [
        t("contract.report.code"),
        t("contract.report.count"),
        t("contract.report.meaning"),
        t("contract.report.example_key"),
        t("contract.report.example_value"),
        t("contract.report.action"),
    ]
    lines += [_row(header), _row(["---", "---:", "---", "---", "---", "---"])]
    for code, count in sorted(counts.by_reason.items(), key=lambda item: (-item[1], item[0])):
        key, value = _example(examples, counts.dataset, code)
        lines.append(
            _row(
                [
                    f"`{code}`",
                    f"{count:,}",
                    message(f"contract.reason.{code}.meaning", lang),
                    _code_cell(key),
                    _code_cell(value),
                    message(f"contract.reason.{code}.action", lang),
                ]
            )
        )
    lines.append("")
    return lines


def _flag_table(counts: DatasetSummary, lang: str, t) -> list[str]:  # type: ignore[no-untyped-def]
    if not counts.flags:
        return []
    header = [
        t("contract.report.code"),
        t("contract.report.count"),
        t("contract.report.meaning"),
        t("contract.report.example_key"),
        t("contract.report.action"),
    ]
    lines = [
        f"## {t('contract.report.flags_of', dataset=counts.dataset)}",
        "",
        _row(header),
        _row(["---", "---:", "---", "---", "---"]),
    ]
    for code, count in sorted(counts.flags.items()):
        lines.append(
            _row(
                [
                    f"`{code}`",
                    f"{count:,}",
                    message(f"contract.flag.{code}.meaning", lang),
                    _code_cell(counts.flag_examples.get(code)),
                    message(f"contract.flag.{code}.action", lang),
                ]
            )
        )
    lines.append("")
    return lines


def _example(examples: pd.DataFrame | None, dataset: str, code: str) -> tuple[str | None, str | None]:
    if examples is None or examples.empty:
        return None, None
    match = examples[(examples[c.DATASET] == dataset) & (examples[c.REASON] == code)]
    if match.empty:
        return None, None
    first = match.iloc[0]
    key = first[c.ROW_KEY]
    value = first[c.VALUE]
    detail = first[c.DETAIL]
    example = _shorten(str(value), MAX_CELL_CHARS // 2) if pd.notna(value) else None
    if pd.notna(detail):
        example = f"{example} ({detail})" if example is not None else str(detail)
    return (None if pd.isna(key) else str(key)), example


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _code_cell(text: str | None) -> str:
    if text is None:
        return "-"
    text = str(text).replace("|", "\\|").replace("`", "'").replace("\n", " ")
    return f"`{_shorten(text, 2 * MAX_CELL_CHARS)}`"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
