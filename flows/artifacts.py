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
        rows = [{"label": str(label), "value": value} for label, value in zip(chart.values.get("label", []), chart.values.get("value", []))]
        if rows:
            create_table_artifact(table=rows, key=f"{key}-{name.replace('_', '-')}", description=name)


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
