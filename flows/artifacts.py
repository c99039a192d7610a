"""Prefect artifacts of a run: the summary with charts, tables, and compute progress.

The charts are PNG images drawn with matplotlib (Agg backend) and embedded in the Markdown
artifact as data URIs, so they need no object store: CO2 by hour of the day (Japan time), CO2 by
road class, and rejects by reason code. The same figures are published as table artifacts.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact

from compute import pipeline
from compute.report import RunSummary, render_markdown, render_text
from compute.storage import Store

_TITLES = {
    "co2_by_hour": {"ja": "時間帯別 CO2 排出量（kg、日本時間）", "en": "CO2 by hour (kg, Japan time)"},
    "co2_by_road_class": {"ja": "道路種別別 CO2 排出量（kg）", "en": "CO2 by road class (kg)"},
    "rejects_by_reason": {"ja": "理由別の除外行数", "en": "Rejects by reason"},
}


def chart_data(temp: Store) -> dict[str, dict[str, float]]:
    """Aggregate the day's results under ``temp/`` into the three chart series.

    Reads only the needed columns, one file at a time, so memory stays bounded by one file.
    """
    return {
        "co2_by_hour": _co2_by_hour(temp),
        "co2_by_road_class": _sum_by(temp, pipeline.BREAKDOWN, "category", "co2_ttw_kg", where=("dimension", "road_class")),
        "rejects_by_reason": _count_by(temp, pipeline.REJECTS, "reason"),
    }


def publish_summary(summary: RunSummary, series: Mapping[str, Mapping[str, float]], *, language: str, key: str) -> None:
    """Create the Markdown summary (with charts) and one table artifact per series."""
    charts = [_chart_markdown(name, values, language) for name, values in series.items() if values]
    markdown = render_markdown(summary, language) + ("\n\n" + "\n\n".join(charts) if charts else "")
    create_markdown_artifact(markdown=markdown, key=key, description=render_text(summary, language).splitlines()[0])
    for name, values in series.items():
        rows = [{"key": k, "value": round(v, 6)} for k, v in values.items()]
        create_table_artifact(table=rows, key=f"{key}-{name.replace('_', '-')}", description=_TITLES[name][language])


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


def _co2_by_hour(temp: Store) -> dict[str, float]:
    totals = [0.0] * 24
    for table in _tables(temp, pipeline.SEGMENTS, ["t_start", "co2_ttw_kg"]):
        hours = pc.hour(_tokyo(table["t_start"]))  # Arrow extracts fields in the column's time zone
        grouped = pa.table({"hour": hours, "co2": pc.fill_null(table["co2_ttw_kg"], 0.0)}).group_by("hour").aggregate([("co2", "sum")])
        for hour, value in zip(grouped["hour"].to_pylist(), grouped["co2_sum"].to_pylist(), strict=True):
            if hour is not None:
                totals[int(hour)] += float(value or 0.0)
    return {f"{h:02d}" : v for h, v in enumerate(totals)} if any(totals) else {}


def _tokyo(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column.cast(pa.timestamp("ms", tz="Asia/Tokyo"))


def _sum_by(temp: Store, folder: str, key: str, value: str, *, where: tuple[str, str] | None = None) -> dict[str, float]:
    totals: dict[str, float] = {}
    columns = [key, value] + ([where[0]] if where else [])
    for table in _tables(temp, folder, columns):
        if where is not None:
            table = table.filter(pc.equal(table[where[0]], where[1]))
        grouped = table.group_by(key).aggregate([(value, "sum")])
        for k, v in zip(grouped[key].to_pylist(), grouped[f"{value}_sum"].to_pylist(), strict=True):
            totals[str(k)] = totals.get(str(k), 0.0) + float(v or 0.0)
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def _count_by(temp: Store, folder: str, key: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for table in _tables(temp, folder, [key]):
        grouped = table.group_by(key).aggregate([(key, "count")])
        for k, n in zip(grouped[key].to_pylist(), grouped[f"{key}_count"].to_pylist(), strict=True):
            totals[str(k)] = totals.get(str(k), 0) + int(n)
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def _tables(store: Store, folder: str, columns: list[str]) -> Any:
    for name in store.list(folder):
        if not name.endswith(".parquet"):
            continue
        with store.open(name) as handle:
            parquet = pq.ParquetFile(handle)
            present = [c for c in columns if c in parquet.schema_arrow.names]
            if len(present) == len(columns) and parquet.metadata.num_rows:
                yield parquet.read(columns=columns)


def _chart_markdown(name: str, values: Mapping[str, float], language: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title = _TITLES[name][language]
    figure, axes = plt.subplots(figsize=(7, 3), dpi=80)
    try:
        axes.bar(list(values.keys()), list(values.values()), color="#2f6f8f")
        axes.set_title(title if language == "en" else name)  # the Agg default font has no Japanese glyphs
        axes.tick_params(axis="x", labelrotation=45, labelsize=7)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"### {title}\n\n![{name}](data:image/png;base64,{encoded})"
