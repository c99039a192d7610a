"""Run summary of one day in Japanese or English: plain text for the CLI, Markdown for Prefect.

The summary is built from the phase manifests only, so a skipped phase (done on an earlier run)
still reports its figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from compute.i18n import message, register

register(
    {
        "summary.title": {"ja": "lm-co2 日次実行サマリ {run_date}", "en": "lm-co2 daily run summary {run_date}"},
        "summary.rows_in": {"ja": "入力行数", "en": "Rows in"},
        "summary.rejects": {"ja": "除外行数（rejects）", "en": "Rejects"},
        "summary.trips_out": {"ja": "出力トリップ数", "en": "Trips out"},
        "summary.distance": {"ja": "総走行距離", "en": "Total distance"},
        "summary.fuel": {"ja": "総燃料消費量", "en": "Total fuel"},
        "summary.co2": {"ja": "総 CO2 排出量（TTW）", "en": "Total CO2 (TTW)"},
        "summary.matched": {"ja": "道路リンクに照合した距離の割合", "en": "Distance matched to a road link"},
        "summary.methods": {"ja": "算定手法（tier）別トリップ数", "en": "Trips by method tier"},
        "summary.phases": {"ja": "フェーズ別所要時間", "en": "Time per phase"},
        "summary.skipped": {"ja": "スキップ（実行済み）", "en": "skipped (already done)"},
        "summary.output": {"ja": "出力先", "en": "Output"},
        "summary.not_run": {"ja": "未実行", "en": "not run"},
        "summary.warnings": {
            "ja": "妥当性の警告: {count} 件（詳細は report/report.ja.md）",
            "en": "Plausibility warnings: {count} (details in report/report.en.md)",
        },
        "summary.dataset": {"ja": "データセット", "en": "Dataset"},
        "summary.accepted": {"ja": "受理", "en": "Accepted"},
        "summary.rejected": {"ja": "除外", "en": "Rejected"},
        "summary.phase": {"ja": "フェーズ", "en": "Phase"},
        "summary.seconds": {"ja": "秒", "en": "Seconds"},
        "summary.value": {"ja": "値", "en": "Value"},
        "summary.item": {"ja": "項目", "en": "Item"},
        "phase.fetch": {"ja": "取得（input → raw）", "en": "fetch (input → raw)"},
        "phase.validate": {"ja": "検証", "en": "validate"},
        "phase.compute": {"ja": "計算（Dask）", "en": "compute (Dask)"},
        "phase.output": {"ja": "出力生成", "en": "generate output"},
        "phase.publish": {"ja": "納品（processed → output）", "en": "publish (processed → output)"},
    }
)


PHASE_ORDER = ("fetch", "validate", "compute", "output", "publish")


@dataclass
class RunSummary:
    """Figures of one run, gathered from the phase manifests."""

    run_date: str
    rows_in: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    trips_out: int = 0
    distance_km: float = 0.0
    fuel_l: float = 0.0
    co2_ttw_kg: float = 0.0
    matched_share: float | None = None
    methods: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    phases: list[dict[str, Any]] = field(default_factory=list)
    output_url: str = ""

    @classmethod
    def from_phases(cls, run_date: str, phases: list[dict[str, Any]], output_url: str) -> RunSummary:
        summary = cls(run_date=run_date, phases=phases, output_url=output_url)
        for record in phases:
            if record["phase"] == "validate":
                for dataset, counts in record.get("datasets", {}).items():
                    summary.rows_in[dataset] = int(counts.get("rows_in", 0))
                    summary.rejected[dataset] = int(counts.get("rejected", 0))
            if record["phase"] == "compute":
                summary.trips_out = int(record.get("trips", 0))
                summary.distance_km = float(record.get("distance_km", 0.0))
                summary.fuel_l = float(record.get("fuel_l", 0.0))
                summary.co2_ttw_kg = float(record.get("co2_ttw_kg", 0.0))
                summary.matched_share = record.get("matched_share")
                summary.methods = dict(record.get("methods", {}))
            if record["phase"] == "output":
                summary.warnings = {str(k): int(v) for k, v in dict(record.get("warnings") or {}).items()}
        return summary

    def ran(self, phase: str) -> bool:
        """True when ``phase`` ran now or completed on an earlier run."""
        return any(p["phase"] == phase for p in self.phases)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        """Inverse of :meth:`as_dict`."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_date": self.run_date, "rows_in": self.rows_in, "rejected": self.rejected, "trips_out": self.trips_out,
            "distance_km": self.distance_km, "fuel_l": self.fuel_l, "co2_ttw_kg": self.co2_ttw_kg,
            "matched_share": self.matched_share, "methods": self.methods, "warnings": self.warnings, "output_url": self.output_url,
            "phases": [{k: p[k] for k in ("phase", "skipped", "seconds")} for p in self.phases],
        }


def render_text(summary: RunSummary, lang: str = "ja") -> str:
    """Short plain-text summary for the terminal."""
    lines = [message("summary.title", lang, run_date=summary.run_date)]
    rows_in = sum(summary.rows_in.values())
    rejected = sum(summary.rejected.values())
    lines.append(f"  {message('summary.rows_in', lang)}: {rows_in:,}  ({_by_dataset(summary.rows_in)})")
    lines.append(f"  {message('summary.rejects', lang)}: {rejected:,}  ({_by_dataset(summary.rejected)})")

    if summary.ran("compute"):
        lines.append(f"  {message('summary.trips_out', lang)}: {summary.trips_out:,}")
        lines.append(f"  {message('summary.distance', lang)}: {summary.distance_km:,.1f} km")
        lines.append(f"  {message('summary.fuel', lang)}: {summary.fuel_l:,.1f} L")
        lines.append(f"  {message('summary.co2', lang)}: {summary.co2_ttw_kg:,.1f} kg")
        if summary.matched_share is not None:
            lines.append(f"  {message('summary.matched', lang)}: {summary.matched_share:.1%}")
        if summary.methods:
            lines.append(f"  {message('summary.methods', lang)}: " + ", ".join(f"{k} {v:,}" for k, v in summary.methods.items()))
    if summary.warnings:
        lines.append(f"  {message('summary.warnings', lang, count=sum(summary.warnings.values()))}")

    lines.append(f"  {message('summary.phases', lang)}:")
    for phase in PHASE_ORDER:
        record = next((p for p in summary.phases if p["phase"] == phase), None)
        if record is None:
            state = message("summary.not_run", lang)
        elif record.get("skipped"):
            state = message("summary.skipped", lang)
        else:
            state = f"{record.get('seconds', 0.0):.1f} s"
        lines.append(f"    {message('phase.' + phase, lang)}: {state}")

    if summary.ran("publish"):
        lines.append(f"  {message('summary.output', lang)}: {summary.output_url}")
    return "\n".join(lines)


def render_markdown(summary: RunSummary, lang: str = "ja") -> str:
    """Markdown summary for the Prefect artifact."""
    item, value = message("summary.item", lang), message("summary.value", lang)
    out = [f"# {message('summary.title', lang, run_date=summary.run_date)}", "", f"| {item} | {value} |", "|---|---:|"]
    out.append(f"| {message('summary.trips_out', lang)} | {summary.trips_out:,} |")
    out.append(f"| {message('summary.distance', lang)} | {summary.distance_km:,.1f} km |")
    out.append(f"| {message('summary.fuel', lang)} | {summary.fuel_l:,.1f} L |")
    out.append(f"| {message('summary.co2', lang)} | {summary.co2_ttw_kg:,.1f} kg |")
    if summary.matched_share is not None:
        out.append(f"| {message('summary.matched', lang)} | {summary.matched_share:.1%} |")
    out += ["", f"| {message('summary.dataset', lang)} | {message('summary.rows_in', lang)} | {message('summary.rejected', lang)} |", "|---|---:|---:|"]
    for dataset, rows in summary.rows_in.items():
        out.append(f"| {dataset} | {rows:,} | {summary.rejected.get(dataset, 0):,} |")
    if summary.methods:
        out += ["", f"**{message('summary.methods', lang)}**", "", "| method | n |", "|---|---:|"]
        out += [f"| {k} | {v:,} |" for k, v in summary.methods.items()]
    out += ["", f"| {message('summary.phase', lang)} | {message('summary.seconds', lang)} |", "|---|---:|"]
    for p in summary.phases:
        state = message("summary.skipped", lang) if p.get("skipped") else f"{p.get('seconds', 0.0):.1f}"
        out.append(f"| {message('phase.' + p['phase'], lang)} | {state} |")
    out += ["", f"{message('summary.output', lang)}: `{summary.output_url}`"]
    return "\n".join(out)


def _by_dataset(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items())
