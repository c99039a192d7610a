"""Prefect artifacts of a run: the summary with the report charts, their tables, and progress.

The charts are the PNG images the output phase drew into ``processed/report/``; the Markdown
artifact embeds them as data URIs so they show in the Prefect UI without access to the bucket.
Nothing here computes: the figures come from :mod:`compute.report` and :mod:`compute.charts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact

from compute.charts import RunReport
from compute.report import RunSummary, render_markdown, render_text


def publish_summary(summary: RunSummary, report: RunReport | None, *, language: str, key: str) -> None:
    """Create the Markdown summary (with the report's charts) and one table artifact per chart."""
    markdown = render_markdown(summary, language)
    if report is not None and report.markdown:
        markdown += "\n\n---\n\n" + report.artifact_markdown(language)
    create_markdown_artifact(markdown=markdown, key=key, description=render_text(summary, language).splitlines()[0])
    if report is None:
        return
    for name, chart in sorted(report.charts.items()):
        rows, description = table_rows(name, chart.rows(), language)
        if rows:
            create_table_artifact(table=rows, key=f"{key}-{name.replace('_', '-')}", description=description)


#: Rows of one chart's table artifact. The map of a day has thousands of links and cells, which
#: the Prefect UI would render as one page; every row stays in ``chart_values.json``.
ARTIFACT_ROWS_MAX = 500


def table_rows(name: str, rows: list[dict[str, Any]], language: str) -> tuple[list[dict[str, Any]], str]:
    """Return the rows of a chart's table artifact and its description.

    A chart with more than :data:`ARTIFACT_ROWS_MAX` rows keeps the rows with the largest
    ``value``, in that order, and the description states that.
    """
    if len(rows) <= ARTIFACT_ROWS_MAX:
        return rows, name
    largest = sorted(rows, key=lambda row: -_number(row.get("value")))[:ARTIFACT_ROWS_MAX]
    if language == "en":
        return largest, f"{name}: the {ARTIFACT_ROWS_MAX} largest values of {len(rows):,} rows; all rows are in chart_values.json"
    return largest, f"{name}: {len(rows):,} 行のうち値の大きい {ARTIFACT_ROWS_MAX} 行。全行は chart_values.json にあります"


def _number(value: Any) -> float:
    """``value`` as a float for sorting; missing or non-numeric values sort last.

    An integer beyond the float range sorts as an infinity of its sign.
    """
    try:
        number = float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")
    except (TypeError, ValueError):
        return float("-inf")
    return number if number == number else float("-inf")


class ProgressArtifact:
    """A Prefect progress artifact fed by the cluster's ``pieces_progress`` events."""

    def __init__(self, key: str, description: str) -> None:
        self._key = key
        self._description = description
        self._id: Any = None

    def update(self, fields: Mapping[str, Any]) -> None:
        submitted = int(fields.get("submitted") or 0)
        if submitted <= 0:
            return
        percent = min(100.0, 100.0 * int(fields.get("finished") or 0) / submitted)
        if self._id is None:
            self._id = create_progress_artifact(progress=percent, key=self._key, description=f"{self._description}: {fields.get('task')}")
        else:
            update_progress_artifact(artifact_id=self._id, progress=percent, description=f"{self._description}: {fields.get('task')}")
