"""Run summary of one day in Japanese or English: plain text for the CLI, Markdown for Prefect.

The summary is built from the phase manifests only, so a skipped phase (done on an earlier run)
still reports its figures. Its time is 0 s in this run, and the time it took on the earlier run
is kept as ``earlier_run_seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from compute.contract.schema import DATASETS
from compute.i18n import has_message, message, register

register(
    {
        "summary.title": {"ja": "lm-co2 日次実行サマリ {run_date}", "en": "lm-co2 daily run summary {run_date}"},
        "summary.rows_in": {"ja": "入力行数", "en": "Rows in"},
        "summary.rejects": {"ja": "除外行数（rejects）", "en": "Rejects"},
        "summary.trips_out": {"ja": "出力トリップ数", "en": "Trips out"},
        "summary.distance": {"ja": "総走行距離", "en": "Total distance"},
        "summary.fuel": {"ja": "総燃料消費量（液体燃料のみ。CNG・電気は含まない）", "en": "Total fuel (liquid fuels only, without CNG and electricity)"},
        "summary.fuel_excluded": {
            "ja": "L の合計に含まれないトリップ: {count:,} 件（{by_fuel}）。CNG は fuel_m3（m³）、電気は energy_kwh（kWh）として trips ファイルに出力",
            "en": "Trips not in the litres total: {count:,} ({by_fuel}); the trips file gives CNG as fuel_m3 (m³) and electricity as energy_kwh (kWh)",
        },
        "summary.fuel_excluded_none": {
            "ja": "L の合計に含まれないトリップはありません（CNG と電気のトリップはありません）",
            "en": "Every trip is in the litres total (no CNG or electric trip)",
        },
        "summary.fuel_excluded_unknown": {
            "ja": "CNG と電気のトリップは L の合計に含まれません。この日の計算（compute）は件数を記録していない以前の版で実行されました"
                  "（件数を見るには compute を --force で再実行してください）",
            "en": "CNG and electric trips are not in the litres total; this day's compute ran under an earlier version that did not "
                  "count them (rerun compute with --force to see the count)",
        },
        "summary.input_check.unchanged": {
            "ja": "入力は取得（fetch）の時から変わっていません（名前、サイズ、内容の版を確認済み）。",
            "en": "The input is unchanged since fetch (names, sizes and content versions checked).",
        },
        "summary.input_check.unreachable": {
            "ja": "入力 {url} に接続できず、取得（fetch）後に変わっていないかを確認できませんでした（{detail}）。raw のコピーをそのまま使いました。",
            "en": "Could not reach the input {url} to check it for changes since fetch ({detail}); the raw copy was used as it is.",
        },
        "summary.input_check.input_absent": {
            "ja": "入力 {url} にオブジェクトがないため、取得（fetch）後に変わっていないかを確認できませんでした。raw のコピーをそのまま使いました。",
            "en": "The input {url} has no objects, so it could not be checked for changes since fetch; the raw copy was used as it is.",
        },
        "summary.input_check.not_fetched": {
            "ja": "この日の取得（fetch）の記録がないため、入力 {url} が変わっていないかを確認できませんでした。",
            "en": "This day has no fetch record, so the input {url} could not be checked for changes.",
        },
        "summary.delivery.outdated": {
            "ja": "出力先 {url} には、前回の納品（{delivered_at}）が残っています。今回の結果はまだ納品されていません。"
                  "納品するには {lm_co2} run --date {run_date} を実行してください。",
            "en": "The output {url} still holds the earlier delivery ({delivered_at}); the figures of this run are not delivered yet. "
                  "Run {lm_co2} run --date {run_date} to deliver them.",
        },
        "summary.delivery.incomplete": {
            "ja": "出力先 {url} の再納品は途中で止まっています（_SUCCESS は status が redelivering）。"
                  "{lm_co2} run --date {run_date} を実行して納品を完了してください。",
            "en": "The re-delivery to {url} stopped part way (_SUCCESS has status redelivering). "
                  "Run {lm_co2} run --date {run_date} to complete it.",
        },
        "summary.delivery.withdrawn": {
            "ja": "出力先には、今回の納品に含まれない以前のファイルが {count} 件残っています（書き込み専用のため削除できません）。"
                  "一覧は manifest.json の withdrawn にあります。",
            "en": "{count} files of an earlier delivery that this one does not have remain in the output (it is write-only, "
                  "so they cannot be deleted); manifest.json lists them under withdrawn.",
        },
        "summary.delivery.deleted": {
            "ja": "今回の納品に含まれない以前のファイル {count} 件を出力先から削除しました（形式の変更など）。",
            "en": "{count} files of an earlier delivery that this one does not have were deleted from the output (after a format "
                  "change, for example).",
        },
        "fuel.gasoline": {"ja": "ガソリン", "en": "gasoline"},
        "fuel.diesel": {"ja": "軽油", "en": "diesel"},
        "fuel.hybrid": {"ja": "ハイブリッド", "en": "hybrid"},
        "fuel.lpg": {"ja": "LPG", "en": "LPG"},
        "fuel.cng": {"ja": "CNG", "en": "CNG"},
        "fuel.electric": {"ja": "電気", "en": "electric"},
        "fuel.unmatched": {"ja": "車両マスタにない車両", "en": "vehicle not in the master"},
        "summary.method": {"ja": "算定手法", "en": "method"},
        "summary.trips": {"ja": "トリップ数", "en": "trips"},
        "summary.co2": {"ja": "総 CO2 排出量（TTW）", "en": "Total CO2 (TTW)"},
        "summary.matched": {"ja": "道路リンクに照合した距離の割合", "en": "Distance matched to a road link"},
        "summary.methods": {"ja": "算定手法（tier）別トリップ数", "en": "Trips by method tier"},
        "summary.method_label": {"ja": "{name}（{code}）", "en": "{name} ({code})"},
        "method.fuel_measured": {"ja": "T1 実測燃料", "en": "T1 measured fuel"},
        "method.tacho_profile": {"ja": "T2 タコグラフ速度", "en": "T2 tachograph speed"},
        "method.gps_profile": {"ja": "T3 GPS 走行", "en": "T3 GPS speed profile"},
        "method.catalog_fe": {"ja": "T4 カタログ燃費", "en": "T4 catalog fuel economy"},
        "method.default_table": {"ja": "T5 既定値表", "en": "T5 default table"},
        "method.unavailable": {"ja": "算定不能", "en": "not estimated"},
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
#: Method codes in tier order (T1 to T5, then trips without an estimate).
METHOD_ORDER = ("fuel_measured", "tacho_profile", "gps_profile", "catalog_fe", "default_table", "unavailable")


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
    #: Trips without a fuel figure in litres (CNG, electric), by fuel type; None when unknown.
    trips_without_fuel_l: dict[str, int] | None = None
    #: Outcome of the changed-input check of a run without fetch: status, url and detail.
    input_check: dict[str, str] | None = None
    #: What the output contains when publish has not completed for this run's figures: ``status``
    #: (``outdated`` for an earlier complete delivery, ``incomplete`` for a re-delivery that
    #: stopped), ``url`` and ``delivered_at``. None when publish completed.
    delivery: dict[str, str] | None = None

    @classmethod
    def from_phases(
        cls, run_date: str, phases: list[dict[str, Any]], output_url: str, report_figures: dict[str, Any] | None = None
    ) -> RunSummary:
        """Gather the figures of the phase records; ``report_figures`` are those of ``summary.json``.

        The count of trips left out of the litres total comes from the compute record when it
        has one. Otherwise it comes from ``report_figures``, and only when their trip count
        matches the compute record, so figures of an older output are not mixed in. A skipped
        phase gets ``seconds`` 0 and the time of its earlier run as ``earlier_run_seconds``.
        """
        summary = cls(run_date=run_date, phases=[_with_run_seconds(record) for record in phases], output_url=output_url)
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
                if record.get("trips_without_fuel_l") is not None:
                    summary.trips_without_fuel_l = {str(k): int(v) for k, v in dict(record["trips_without_fuel_l"]).items()}
            if record["phase"] == "output":
                summary.warnings = {str(k): int(v) for k, v in dict(record.get("warnings") or {}).items()}
        # A phase marker read back from storage has its datasets sorted by name, while a phase run
        # now has them in contract order. The summary lists both in contract order.
        summary.rows_in = _in_contract_order(summary.rows_in)
        summary.rejected = _in_contract_order(summary.rejected)
        figures = report_figures or {}
        from_output = "trips_without_fuel_l" in figures and figures.get("trips") == summary.trips_out
        if summary.ran("compute") and summary.trips_without_fuel_l is None and from_output:
            summary.trips_without_fuel_l = {str(k): int(v) for k, v in dict(figures["trips_without_fuel_l"]).items()}
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
            "phases": [_phase_entry(p) for p in self.phases],
            "trips_without_fuel_l": self.trips_without_fuel_l, "input_check": self.input_check, "delivery": self.delivery,
        }

    def withdrawn_files(self) -> int:
        """Files of an earlier delivery that remain in the write-only output, from the publish record."""
        return self._publish_count("withdrawn")

    def deleted_files(self) -> int:
        """Files of an earlier delivery that this run deleted from an output that allows deleting."""
        return self._publish_count("deleted")

    def _publish_count(self, name: str) -> int:
        record = next((p for p in self.phases if p["phase"] == "publish"), None)
        return int(record.get(name) or 0) if record is not None else 0

    def delivery_notes(self, lang: str) -> list[str]:
        """Return the notes on what the output holds, if it is not exactly this run's delivery."""
        notes = []
        if self.delivery:
            notes.append(message(f"summary.delivery.{self.delivery['status']}", lang, run_date=self.run_date,
                                 url=self.delivery.get("url", ""), delivered_at=self.delivery.get("delivered_at", "")))
        if self.withdrawn_files():
            notes.append(message("summary.delivery.withdrawn", lang, count=self.withdrawn_files()))
        if self.deleted_files():
            notes.append(message("summary.delivery.deleted", lang, count=self.deleted_files()))
        return notes


def render_text(summary: RunSummary, lang: str = "ja") -> str:
    """Short plain-text summary for the terminal."""
    lines = [message("summary.title", lang, run_date=summary.run_date)]
    if summary.input_check:
        lines.append(f"  {_input_check_text(summary.input_check, lang)}")
    lines += [f"  {note}" for note in summary.delivery_notes(lang)]
    if summary.ran("validate"):
        rows_in = sum(summary.rows_in.values())
        rejected = sum(summary.rejected.values())
        lines.append(f"  {message('summary.rows_in', lang)}: {rows_in:,}{_by_dataset(summary.rows_in, lang)}")
        lines.append(f"  {message('summary.rejects', lang)}: {rejected:,}{_by_dataset(summary.rejected, lang)}")

    if summary.ran("compute"):
        lines.append(f"  {message('summary.trips_out', lang)}: {summary.trips_out:,}")
        lines.append(f"  {message('summary.distance', lang)}: {summary.distance_km:,.1f} km")
        lines.append(f"  {message('summary.fuel', lang)}: {summary.fuel_l:,.1f} L")
        lines.append(f"    {_fuel_note(summary, lang)}")
        lines.append(f"  {message('summary.co2', lang)}: {summary.co2_ttw_kg:,.1f} kg")
        if summary.matched_share is not None:
            lines.append(f"  {message('summary.matched', lang)}: {summary.matched_share:.1%}")
        if summary.methods:
            lines.append(f"  {message('summary.methods', lang)}: " + ", ".join(method_entries(summary.methods, lang)))
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
    out = [f"# {message('summary.title', lang, run_date=summary.run_date)}", ""]
    if summary.input_check:
        out += [_input_check_text(summary.input_check, lang), ""]
    for note in summary.delivery_notes(lang):
        out += [note, ""]
    out += [f"| {item} | {value} |", "|---|---:|"]
    out.append(f"| {message('summary.trips_out', lang)} | {summary.trips_out:,} |")
    out.append(f"| {message('summary.distance', lang)} | {summary.distance_km:,.1f} km |")
    out.append(f"| {message('summary.fuel', lang)} | {summary.fuel_l:,.1f} L |")
    out.append(f"| {message('summary.co2', lang)} | {summary.co2_ttw_kg:,.1f} kg |")
    if summary.matched_share is not None:
        out.append(f"| {message('summary.matched', lang)} | {summary.matched_share:.1%} |")
    out += ["", _fuel_note(summary, lang)]
    out += ["", f"| {message('summary.dataset', lang)} | {message('summary.rows_in', lang)} | {message('summary.rejected', lang)} |", "|---|---:|---:|"]
    for dataset, rows in summary.rows_in.items():
        out.append(f"| {dataset} | {rows:,} | {summary.rejected.get(dataset, 0):,} |")
    if summary.methods:
        out += ["", f"**{message('summary.methods', lang)}**", "", f"| {message('summary.method', lang)} | {message('summary.trips', lang)} |", "|---|---:|"]
        out += [f"| {method_label(k, lang)} | {v:,} |" for k, v in in_method_order(summary.methods).items()]
    out += ["", f"| {message('summary.phase', lang)} | {message('summary.seconds', lang)} |", "|---|---:|"]
    for p in summary.phases:
        state = message("summary.skipped", lang) if p.get("skipped") else f"{p.get('seconds', 0.0):.1f}"
        out.append(f"| {message('phase.' + p['phase'], lang)} | {state} |")
    out += ["", f"{message('summary.output', lang)}: `{summary.output_url}`"]
    return "\n".join(out)


def in_method_order(counts: dict[str, int]) -> dict[str, int]:
    """Order ``counts`` by method tier (:data:`METHOD_ORDER`), with other codes after them by name."""
    known = [code for code in METHOD_ORDER if code in counts]
    others = sorted(code for code in counts if code not in METHOD_ORDER)
    return {code: counts[code] for code in known + others}


def method_entries(counts: dict[str, int], lang: str) -> list[str]:
    """Return ``name (code) count`` per method in tier order."""
    return [f"{method_label(code, lang)} {count:,}" for code, count in in_method_order(counts).items()]


def method_label(code: str, lang: str) -> str:
    """Return the tier and name of a method code in ``lang`` with the code in brackets, or an unknown code alone."""
    key = f"method.{code}"
    return message("summary.method_label", lang, name=message(key, lang), code=code) if has_message(key) else code


def _with_run_seconds(record: dict[str, Any]) -> dict[str, Any]:
    """Return a phase record whose ``seconds`` is the time spent in this run.

    A skipped phase spent none. The marker of its earlier run gives the record its ``seconds``,
    which move to ``earlier_run_seconds``.
    """
    if not record.get("skipped") or "earlier_run_seconds" in record:
        return record
    earlier = record.get("seconds")
    return {**record, "seconds": 0.0, "earlier_run_seconds": float(earlier) if earlier else None}


def _phase_entry(record: dict[str, Any]) -> dict[str, Any]:
    entry = {k: record[k] for k in ("phase", "skipped", "seconds")}
    for name in ("withdrawn", "deleted"):
        if record.get(name):
            entry[name] = record[name]
    if record.get("skipped"):
        entry["earlier_run_seconds"] = record.get("earlier_run_seconds")
    return entry


def _fuel_note(summary: RunSummary, lang: str) -> str:
    """Return the note under the litres total: the trips it leaves out, or why they are not counted yet."""
    if summary.trips_without_fuel_l is None:
        return message("summary.fuel_excluded_unknown", lang)
    if not summary.trips_without_fuel_l:
        return message("summary.fuel_excluded_none", lang)
    return fuel_excluded_text(summary.trips_without_fuel_l, lang)


def _in_contract_order(counts: dict[str, int]) -> dict[str, int]:
    """Order ``counts`` by dataset as the input contract lists them, with other names after them by name."""
    known = [dataset for dataset in DATASETS if dataset in counts]
    others = sorted(dataset for dataset in counts if dataset not in DATASETS)
    return {dataset: counts[dataset] for dataset in known + others}


def _by_dataset(counts: dict[str, int], lang: str) -> str:
    """Return the counts by dataset in brackets, full-width in Japanese, to follow a total."""
    if lang == "ja":
        return "（" + "、".join(f"{k} {v:,}" for k, v in counts.items()) + "）"
    return "  (" + ", ".join(f"{k} {v:,}" for k, v in counts.items()) + ")"


def fuel_excluded_text(by_fuel: dict[str, int], lang: str) -> str:
    """Return the note on the trips that the litres total leaves out, counted by fuel type.

    The run summary and the run report print it under their litres figure.
    """
    separator = "、" if lang == "ja" else ", "
    parts = separator.join(f"{_fuel_name(kind, lang)} {count:,}" for kind, count in sorted(by_fuel.items()))
    return message("summary.fuel_excluded", lang, count=sum(by_fuel.values()), by_fuel=parts)


def _fuel_name(kind: str, lang: str) -> str:
    key = f"fuel.{kind}"
    return message(key, lang) if has_message(key) else kind


def _input_check_text(check: dict[str, str], lang: str) -> str:
    return message(f"summary.input_check.{check['status']}", lang, url=check.get("url", ""), detail=check.get("detail", ""))
