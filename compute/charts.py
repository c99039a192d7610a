"""Run report of one day: charts as PNG (matplotlib) and a Markdown page in Japanese and English.

The report is built in two steps so that it stays cheap for tens of millions of segments:

1. :func:`aggregate_segments` reduces one segment part to sums per road link, area, hour, road
   class and map cell with ``pyarrow`` ``group_by``; :func:`merge_aggregates` adds the parts up.
2. :func:`build_run_report` draws the charts from those sums and the per-trip output, and writes
   the Markdown.

Both steps are pure: the output phase reads the files and writes the report under
``processed/report/``. Each :class:`Chart` carries the values read back from the drawn artists, so
a test can compare the picture with aggregates computed independently from the outputs.

Charts use Japanese labels when a Japanese-capable font is installed and English labels
otherwise, so that no label is drawn as empty boxes.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator

from compute import columns as c
from compute import metrics
from compute.contract import messages as _contract_messages  # noqa: F401  (registers the meanings of reject reasons)
from compute.i18n import has_message, message, register
from compute.plausibility import VEHICLE_CLASS_NAMES_JA, PlausibilitySettings, PlausibilityWarning
from compute.report import METHOD_ORDER, fuel_excluded_text, in_method_order  # also registers the page texts

#: Segment columns the report reads; nothing else is loaded from ``temp/segments``.
SEGMENT_REPORT_COLUMNS: tuple[str, ...] = (
    c.LINK_ID, c.AREA_ID, c.ROAD_CLASS, c.CO2_TTW_KG, c.LENGTH_M, c.T_START, c.LON_MID, c.LAT_MID,
)
#: Geo attribute columns the map reads.
GEO_REPORT_COLUMNS: tuple[str, ...] = (c.FEATURE_ID, c.GEOMETRY)
#: Edge of the square map cells that show CO2 off the road links (degrees of longitude/latitude).
CELL_DEG = 0.005
UNMATCHED = "unmatched"

# Japanese-capable font families in order of preference, and file name stems that identify them
# when matplotlib's font cache predates their installation.
_CJK_FAMILIES = (
    "Noto Sans CJK JP", "Noto Sans JP", "IPAexGothic", "IPAGothic", "IPAPGothic", "TakaoGothic",
    "VL Gothic", "Source Han Sans JP", "Hiragino Sans", "Yu Gothic", "MS Gothic",
)
_CJK_FILE_STEMS = ("notosanscjk", "notosansjp", "ipaexg", "ipag", "ipagp", "takaogothic", "vl-gothic", "sourcehansans")

register(
    {
        "chart.map.title": {"ja": "道路リンク・エリア別 CO2（kg）{run_date}", "en": "CO2 by road link and area (kg) {run_date}"},
        "chart.map.links": {"ja": "道路リンクの CO2（kg）", "en": "CO2 per road link (kg)"},
        "chart.map.cells": {"ja": "リンク外の CO2（kg、{cell}° メッシュ）", "en": "CO2 off the links (kg, {cell}° cells)"},
        "chart.map.no_link": {
            "ja": "どの区間も道路リンクに照合されませんでした。メッシュは走行位置の CO2 です。",
            "en": "No segment matched a road link; the cells show CO2 where the vehicles drove.",
        },
        "chart.lon": {"ja": "経度", "en": "Longitude"},
        "chart.lat": {"ja": "緯度", "en": "Latitude"},
        "chart.hour.title": {"ja": "時間帯別 CO2（{timezone}）", "en": "CO2 by hour ({timezone})"},
        "chart.hour.x": {"ja": "時刻（時）", "en": "Hour"},
        "chart.co2_kg": {"ja": "CO2（kg）", "en": "CO2 (kg)"},
        "chart.road_class.title": {"ja": "道路種別ごとの CO2", "en": "CO2 by road class"},
        "chart.vehicle_class.title": {"ja": "車両区分別 CO2", "en": "CO2 by vehicle class"},
        "chart.intensity.title": {"ja": "車両区分別 CO2 原単位の分布と想定範囲", "en": "CO2 per km by vehicle class against the expected range"},
        "chart.intensity.x": {"ja": "CO2 原単位（g/km）", "en": "CO2 per km (g/km)"},
        "chart.intensity.y": {"ja": "トリップ数", "en": "Trips"},
        "chart.intensity.range": {"ja": "想定範囲", "en": "Expected range"},
        "chart.intensity.panel": {"ja": "{vehicle_class}：{trips:,} トリップ", "en": "{vehicle_class} (n={trips})"},
        "chart.methods.title": {"ja": "算定手法（tier）別トリップ数", "en": "Trips by method tier"},
        "chart.trips": {"ja": "トリップ数", "en": "Trips"},
        "chart.matched.title": {"ja": "道路リンクに照合した距離", "en": "Distance matched to a road link"},
        "chart.matched.matched": {"ja": "照合", "en": "Matched"},
        "chart.matched.unmatched": {"ja": "未照合", "en": "Unmatched"},
        "chart.km": {"ja": "距離（km）", "en": "Distance (km)"},
        "chart.rejects.title": {"ja": "除外行の理由別件数", "en": "Rejected rows by reason"},
        "chart.rows": {"ja": "行数", "en": "Rows"},
        "report.title": {"ja": "lm-co2 日次レポート {run_date}", "en": "lm-co2 daily report {run_date}"},
        "report.figures": {"ja": "主要な数値", "en": "Key figures"},
        "report.item": {"ja": "項目", "en": "Item"},
        "report.value": {"ja": "値", "en": "Value"},
        "report.trips": {"ja": "トリップ数", "en": "Trips"},
        "report.distance": {"ja": "総走行距離", "en": "Total distance"},
        "report.co2": {"ja": "総 CO2 排出量（TTW）", "en": "Total CO2 (TTW)"},
        "report.intensity": {"ja": "CO2 原単位（全体）", "en": "CO2 per km (overall)"},
        "report.matched": {"ja": "道路リンクに照合した距離の割合", "en": "Distance matched to a road link"},
        "report.in_range": {
            "ja": "想定範囲内のトリップ（{min_km} km 以上）", "en": "Trips within the expected range ({min_km} km or longer)",
        },
        "report.explanation": {"ja": "この日の結果について", "en": "About this day"},
        "report.warnings": {"ja": "妥当性の警告", "en": "Plausibility warnings"},
        "report.day_warning": {"ja": "{text}（`{code}`）", "en": "{text} (`{code}`)"},
        "report.no_warnings": {"ja": "トリップ・車両単位の警告はありません。", "en": "No trip or vehicle warning."},
        "report.no_warnings.day_above": {
            "ja": "トリップ・車両単位の警告はありません（日単位の警告は上に記載）。",
            "en": "No trip or vehicle warning (day warnings are listed above).",
        },
        "report.more_trips": {"ja": "ほか {count} 件のトリップ（summary.json に件数）", "en": "and {count} more trips (counted in summary.json)"},
        "report.charts": {"ja": "グラフ", "en": "Charts"},
        "report.rejects": {"ja": "除外行（理由別）", "en": "Rejected rows by reason"},
        "report.no_rejects": {"ja": "除外行はありません。", "en": "No row was rejected."},
        "report.dataset": {"ja": "データセット", "en": "Dataset"},
        "report.reason": {"ja": "理由コード", "en": "Reason code"},
        "report.reason_meaning": {"ja": "意味", "en": "Meaning"},
        "report.count": {"ja": "件数", "en": "Count"},
        "report.phases": {"ja": "フェーズ別所要時間", "en": "Time per phase"},
        "report.phase": {"ja": "フェーズ", "en": "Phase"},
        "report.seconds": {"ja": "秒", "en": "Seconds"},
        "report.skipped": {"ja": "スキップ（実行済み）", "en": "skipped (done earlier)"},
        "report.pending": {"ja": "未実行", "en": "not run yet"},
        "report.phases_later": {
            "ja": "出力生成（output）と納品（publish）はこのレポートを書いた後に実行されるため、この表にはありません。"
                  "その所要時間は実行サマリと temp/{day}/_phases/output.json・publish.json にあります。",
            "en": "The output and publish phases run after this report is written, so they are not in this table. "
                  "Their times are in the run summary and in temp/{day}/_phases/output.json and publish.json.",
        },
        "report.font_fallback": {
            "ja": "日本語フォントが見つからないため、グラフの表記は英語です（fonts-noto-cjk または fonts-ipafont-gothic を導入すると日本語になります）。",
            "en": "Charts are labelled in English because no Japanese font is installed.",
        },
        "report.no_chart_data": {
            "ja": "トリップがないため、地図・時間帯・道路種別・車両区分・原単位・手法・照合率のグラフはありません。",
            "en": "With no trip, there is no map and no chart by hour, road class, vehicle class, intensity, method or match.",
        },
    }
)

CHART_ORDER: tuple[str, ...] = (
    "co2_map", "co2_by_hour", "co2_by_road_class", "co2_by_vehicle_class", "co2_intensity", "methods", "matched_share", "rejects",
)


# -- 1 aggregation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentAggregates:
    """Sums of CO2 (kg) and length (m) over segments, by link, area, hour, road class and cell.

    ``bbox`` is (min lon, min lat, max lon, max lat) of the segment midpoints, None without segments.
    ``by_hour`` counts the hours of the segment starts on the clock of ``timezone`` (an IANA name).
    """

    by_link: pa.Table
    by_area: pa.Table
    by_hour: pa.Table
    by_road_class: pa.Table
    by_cell: pa.Table
    bbox: tuple[float, float, float, float] | None
    segments: int
    timezone: str = "UTC"

    @property
    def length_m(self) -> float:
        return _sum(self.by_road_class, c.LENGTH_M)

    @property
    def matched_length_m(self) -> float:
        return _sum(self.by_link, c.LENGTH_M)

    @property
    def co2_ttw_kg(self) -> float:
        return _sum(self.by_road_class, c.CO2_TTW_KG)


def aggregate_segments(segments: pa.Table, timezone: str = "UTC") -> SegmentAggregates:
    """Reduce one table of segments to the sums the report draws.

    Parameters
    ----------
    segments
        Segments with at least link_id, co2_ttw_kg, length_m and t_start; area_id, road_class,
        lon_mid and lat_mid are used when present. Read only :data:`SEGMENT_REPORT_COLUMNS`.
    timezone
        IANA name of the clock whose hours ``by_hour`` counts (the fleet's local time).

    Notes
    -----
    Every reduction is one ``pyarrow`` ``group_by``. The cost is linear in the rows, and the result
    has one row per link, area and cell that carries CO2.
    """
    table = _conform_segments(segments)
    value_sums = [(c.CO2_TTW_KG, "sum"), (c.LENGTH_M, "sum")]
    matched = table.filter(pc.is_valid(table[c.LINK_ID]))
    in_area = table.filter(pc.is_valid(table[c.AREA_ID]))
    road_class = pc.fill_null(table[c.ROAD_CLASS], UNMATCHED)
    # On a zoned timestamp pyarrow's hour is the hour of that zone's clock.
    hour = pc.hour(table[c.T_START].cast(pa.timestamp("ms", tz=timezone)))
    off_links = table.filter(pc.is_null(table[c.LINK_ID]))
    cells = pa.table(
        {
            "cell_x": pc.cast(pc.floor(pc.divide(off_links[c.LON_MID], CELL_DEG)), pa.int64()),
            "cell_y": pc.cast(pc.floor(pc.divide(off_links[c.LAT_MID], CELL_DEG)), pa.int64()),
            c.CO2_TTW_KG: off_links[c.CO2_TTW_KG],
            c.LENGTH_M: off_links[c.LENGTH_M],
        }
    ).filter(_has_midpoint(off_links))

    return SegmentAggregates(
        by_link=_group_sum(matched.select([c.LINK_ID, c.CO2_TTW_KG, c.LENGTH_M]), [c.LINK_ID], value_sums),
        by_area=_group_sum(in_area.select([c.AREA_ID, c.CO2_TTW_KG, c.LENGTH_M]), [c.AREA_ID], value_sums),
        by_hour=_group_sum(pa.table({"hour": hour, c.CO2_TTW_KG: table[c.CO2_TTW_KG], c.LENGTH_M: table[c.LENGTH_M]}), ["hour"], value_sums),
        by_road_class=_group_sum(pa.table({c.ROAD_CLASS: road_class, c.CO2_TTW_KG: table[c.CO2_TTW_KG], c.LENGTH_M: table[c.LENGTH_M]}), [c.ROAD_CLASS], value_sums),
        by_cell=_group_sum(cells, ["cell_x", "cell_y"], value_sums),
        bbox=_bbox_of(table),
        segments=table.num_rows,
        timezone=timezone,
    )


def _has_midpoint(segments: pa.Table) -> pa.ChunkedArray:
    return pc.and_(pc.is_finite(segments[c.LON_MID]), pc.is_finite(segments[c.LAT_MID]))


def merge_aggregates(parts: Sequence[SegmentAggregates], timezone: str = "UTC") -> SegmentAggregates:
    """Add up the aggregates of several segment parts of one time zone; an empty sequence gives
    empty sums on the clock of ``timezone``."""
    if not parts:
        return aggregate_segments(_empty_segments(), timezone)
    zones = {p.timezone for p in parts}
    if len(zones) > 1:
        raise ValueError(f"segment aggregates must share one time zone to be added, got {sorted(zones)}")
    if len(parts) == 1:
        return parts[0]
    value_sums = [(c.CO2_TTW_KG, "sum"), (c.LENGTH_M, "sum")]

    def regroup(name: str, keys: list[str]) -> pa.Table:
        stacked = pa.concat_tables([getattr(p, name) for p in parts], promote_options="permissive")
        return _group_sum(stacked, keys, value_sums)

    boxes = [p.bbox for p in parts if p.bbox is not None]
    bbox = None
    if boxes:
        array = np.asarray(boxes, dtype="float64")
        bbox = (float(array[:, 0].min()), float(array[:, 1].min()), float(array[:, 2].max()), float(array[:, 3].max()))
    return SegmentAggregates(
        by_link=regroup("by_link", [c.LINK_ID]),
        by_area=regroup("by_area", [c.AREA_ID]),
        by_hour=regroup("by_hour", ["hour"]),
        by_road_class=regroup("by_road_class", [c.ROAD_CLASS]),
        by_cell=regroup("by_cell", ["cell_x", "cell_y"]),
        bbox=bbox,
        segments=sum(p.segments for p in parts),
        timezone=parts[0].timezone,
    )


def geo_bbox(geo: pa.Table | None) -> tuple[float, float, float, float] | None:
    """Return the bounding box of the geo attributes (WKB geometry), None when there are none."""
    if geo is None or geo.num_rows == 0:
        return None
    geometries = shapely.from_wkb(geo[c.GEOMETRY].to_numpy(zero_copy_only=False))
    bounds = shapely.bounds(geometries)
    if not np.isfinite(bounds).any():
        return None
    return (float(np.nanmin(bounds[:, 0])), float(np.nanmin(bounds[:, 1])), float(np.nanmax(bounds[:, 2])), float(np.nanmax(bounds[:, 3])))


# -- 2 report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report draws for one day.

    ``trips`` is the per-trip output with trip_id, vehicle_id, distance_km, co2_ttw_kg,
    co2_g_per_km and method. ``vehicles`` has vehicle_id and vehicle_class, and ``rejects`` has
    dataset and reason. ``phases`` has one dict per phase with phase, seconds and skipped.
    ``geo`` has feature_id and WKB geometry.
    """

    run_date: str
    trips: pd.DataFrame
    vehicles: pd.DataFrame
    rejects: pd.DataFrame
    segments: SegmentAggregates
    geo: pa.Table | None = None
    phases: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[PlausibilityWarning] = field(default_factory=list)
    plausibility: PlausibilitySettings = field(default_factory=PlausibilitySettings)


#: File beside the charts with the values each chart plots, for table artifacts and audits.
VALUES_FILE = "chart_values.json"


def _json_rows(values: pd.DataFrame) -> list[dict[str, Any]]:
    """Return every row of a chart's values with all its columns, as JSON-ready dicts.

    Bar charts have ``label`` and ``value``. The map has ``layer``, ``key`` and ``value``. The
    intensity histogram has ``vehicle_class``, ``bin_low``, ``bin_high`` and ``value``.
    """
    return [{str(name): _json_value(cell) for name, cell in row.items()} for row in values.to_dict(orient="records")]


def _json_value(cell: Any) -> Any:
    if cell is None or (isinstance(cell, float | np.floating) and not np.isfinite(cell)):
        return None
    if isinstance(cell, np.generic):
        return cell.item()
    return cell


@dataclass(frozen=True)
class Chart:
    """One chart: its PNG bytes and the values read back from the drawn bars, lines or shapes."""

    name: str
    png: bytes
    values: pd.DataFrame

    @property
    def filename(self) -> str:
        return f"{self.name}.png"

    def rows(self) -> list[dict[str, Any]]:
        """Return the plotted values as JSON-ready rows with all their columns, as in :data:`VALUES_FILE`."""
        return _json_rows(self.values)


@dataclass(frozen=True)
class RunReport:
    """Charts and Markdown pages of one day, plus the figures quoted in the pages."""

    run_date: str
    charts: dict[str, Chart]
    markdown: dict[str, str]
    figures: dict[str, Any]
    chart_language: str
    font: str | None

    @classmethod
    def from_files(cls, run_date: str, files: dict[str, bytes]) -> RunReport:
        """Rebuild a report from its delivered files (``<chart>.png``, ``report.<lang>.md``, values).

        Each chart's ``values`` comes from :data:`VALUES_FILE`, and is empty when that file is absent.
        The figures are not rebuilt.
        """
        charts = {
            name.removesuffix(".png"): Chart(name.removesuffix(".png"), data, pd.DataFrame(columns=["label", "value"]))
            for name, data in files.items()
            if name.endswith(".png")
        }
        markdown = {
            name.removeprefix("report.").removesuffix(".md"): data.decode("utf-8")
            for name, data in files.items()
            if name.startswith("report.") and name.endswith(".md")
        }
        values = json.loads(files[VALUES_FILE]) if VALUES_FILE in files else {}
        for name, rows in values.items():
            if name in charts:
                charts[name] = Chart(name, charts[name].png, pd.DataFrame(rows) if rows else pd.DataFrame(columns=["label", "value"]))
        return cls(run_date, charts, markdown, {}, "", None)

    def files(self) -> dict[str, bytes]:
        """Return the report's files by name: ``<chart>.png``, ``report.<lang>.md`` and the plotted values."""
        out = {chart.filename: chart.png for chart in self.charts.values()}
        out.update({f"report.{lang}.md": text.encode("utf-8") for lang, text in self.markdown.items()})
        values = {name: chart.rows() for name, chart in self.charts.items()}
        out[VALUES_FILE] = json.dumps(values, ensure_ascii=False, indent=1, default=str).encode("utf-8")
        return out

    def artifact_markdown(self, lang: str = "ja") -> str:
        """Return the Markdown page with the charts inlined as PNG data URIs, for a Prefect artifact."""
        text = self.markdown.get(lang) or self.markdown["en"]
        for chart in self.charts.values():
            encoded = base64.b64encode(chart.png).decode("ascii")
            text = text.replace(f"]({chart.filename})", f"](data:image/png;base64,{encoded})")
        return text


def build_run_report(inputs: ReportInputs, lang: str = "ja", languages: Iterable[str] = ("ja", "en")) -> RunReport:
    """Draw the charts of one day and write its Markdown pages.

    Parameters
    ----------
    inputs
        Sums over the segments, the per-trip output, the rejects, phase times and warnings.
    lang
        Preferred language of the chart labels; Japanese needs an installed Japanese font and
        falls back to English without one.
    languages
        Languages of the Markdown pages.

    Returns
    -------
    RunReport
        A chart is drawn only where there is something to show, so a day without segments has
        no map and a day without rejects has no rejects chart. The pages explain what is missing.
    """
    font = find_japanese_font() if lang == "ja" else None
    chart_language = "ja" if lang == "ja" and font is not None else "en"
    trips = _trips_with_class(inputs.trips, inputs.vehicles)

    charts: dict[str, Chart] = {}
    for name, draw in _CHARTS.items():
        chart = draw(inputs, trips, chart_language, font)
        if chart is not None:
            charts[name] = chart

    figures = _figures(inputs, trips)
    markdown = {code: _markdown(inputs, figures, charts, code, chart_language) for code in languages}
    return RunReport(inputs.run_date, charts, markdown, figures, chart_language, font)


def find_japanese_font() -> str | None:
    """Return the family name of an installed Japanese-capable font, or None when there is none."""
    return _find_japanese_font_cached()


@lru_cache(maxsize=1)
def _find_japanese_font_cached() -> str | None:
    from matplotlib import font_manager

    try:
        # matplotlib-fontja ships IPAex Gothic and registers it with matplotlib on import.
        import matplotlib_fontja  # noqa: F401
    except ImportError:
        pass
    known = {entry.name for entry in font_manager.fontManager.ttflist}
    for family in _CJK_FAMILIES:
        if family in known:
            return family

    # matplotlib caches its font list; a font installed after the cache was written is added here.
    for path in font_manager.findSystemFonts():
        stem = re.sub(r"[^a-z-]", "", path.rsplit("/", 1)[-1].lower())
        if stem.startswith(_CJK_FILE_STEMS):
            font_manager.fontManager.addfont(path)
    known = {entry.name for entry in font_manager.fontManager.ttflist}
    return next((family for family in _CJK_FAMILIES if family in known), None)


# -- charts ------------------------------------------------------------------------------------


def _new_figure(size: tuple[float, float] = (8.0, 4.5)) -> tuple[Figure, Axes]:
    figure = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _apply_font(figure: Figure, font: str | None) -> None:
    if font is None:
        return
    for text in figure.findobj(Text):
        if isinstance(text, Text):
            text.set_fontfamily([font, "DejaVu Sans"])


def _png(figure: Figure, font: str | None) -> bytes:
    _apply_font(figure, font)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


#: Japanese names of the OSM ``highway`` values that road links carry as road class. The names
#: follow the functional road hierarchy (主要幹線道路, 幹線道路, 補助幹線道路, 地区幹線道路,
#: 生活道路), because OSM classes describe a road's role in the network, not who administers it.
#: docs/operations.md lists the mapping and the roads that each class usually marks in Japan.
_ROAD_CLASS_NAMES_JA: dict[str, str] = {
    "motorway": "高速道路", "motorway_link": "高速道路の連絡路",
    "trunk": "主要幹線道路", "trunk_link": "主要幹線道路の連絡路",
    "primary": "幹線道路", "primary_link": "幹線道路の連絡路",
    "secondary": "補助幹線道路", "secondary_link": "補助幹線道路の連絡路",
    "tertiary": "地区幹線道路", "tertiary_link": "地区幹線道路の連絡路",
    "unclassified": "その他の一般道路", "residential": "生活道路", "living_street": "歩車共存道路",
    "service": "構内道路・私道", "pedestrian": "歩行者専用道路", "track": "農道・林道", "busway": "バス専用道路",
    "road": "種別不明の道路",
}

#: Japanese names of the category codes the charts show; the code follows in brackets, so a bar
#: can be found in the output files. A code without a name is shown as it is.
_CATEGORY_NAMES_JA: dict[str, str] = {
    **VEHICLE_CLASS_NAMES_JA,
    **{code: message(f"method.{code}", "ja") for code in METHOD_ORDER},
    UNMATCHED: "未照合",
    **_ROAD_CLASS_NAMES_JA,
}



def category_labels(codes: list[str], lang: str) -> list[str]:
    """Return the tick labels of category codes in ``lang``: in Japanese the name, then the code."""
    if lang != "ja":
        return list(codes)
    return [f"{_CATEGORY_NAMES_JA[code]}（{code}）" if code in _CATEGORY_NAMES_JA else code for code in codes]


def _bar_chart(
    name: str, labels: list[str], values: list[float], title: str, value_label: str, font: str | None, *, horizontal: bool = False,
    color: str = "#4c72b0", counts: bool = False, tick_labels: list[str] | None = None, category_label: str | None = None,
) -> Chart:
    figure, drawn = _draw_bar_chart(
        labels, values, title, value_label, horizontal=horizontal, color=color, counts=counts, tick_labels=tick_labels,
        category_label=category_label,
    )
    return Chart(name, _png(figure, font), drawn)


def _draw_bar_chart(
    labels: list[str], values: list[float], title: str, value_label: str, *, horizontal: bool = False, color: str = "#4c72b0",
    counts: bool = False, tick_labels: list[str] | None = None, category_label: str | None = None,
) -> tuple[Figure, pd.DataFrame]:
    """Draw one bar per label and return the figure and the drawn values. Counts get integer ticks and labels.

    ``tick_labels`` are shown on the axis in place of ``labels``; the values keep ``labels``.
    ``category_label`` names the axis of the labels, which has no name when it is None.
    """
    figure, axes = _new_figure((8.0, max(3.0, 0.35 * len(labels) + 1.5)) if horizontal else (8.0, 4.5))
    axis_labels = tick_labels if tick_labels is not None else labels
    if horizontal:
        bars = axes.barh(axis_labels, values, color=color)
        axes.invert_yaxis()
        axes.set_xlabel(value_label)
        if category_label is not None:
            axes.set_ylabel(category_label)
        drawn = [bar.get_width() for bar in bars]
    else:
        bars = axes.bar(axis_labels, values, color=color)
        axes.set_ylabel(value_label)
        if category_label is not None:
            axes.set_xlabel(category_label)
        drawn = [bar.get_height() for bar in bars]
        if len(labels) > 8:
            axes.tick_params(axis="x", labelrotation=45)
    if counts:
        (axes.xaxis if horizontal else axes.yaxis).set_major_locator(MaxNLocator(integer=True))
    axes.bar_label(bars, labels=format_bar_labels(values, counts=counts), fontsize=8, padding=2)
    axes.set_title(title)
    axes.margins(x=0.12 if horizontal else 0.02, y=0.02 if horizontal else 0.12)
    return figure, pd.DataFrame({"label": labels, "value": drawn})


def _chart_by_hour(inputs: ReportInputs, trips: pd.DataFrame, lang: str, font: str | None) -> Chart | None:
    hours = inputs.segments.by_hour
    if hours.num_rows == 0:
        return None
    frame = hours.to_pandas().dropna(subset=["hour"]).set_index("hour")[c.CO2_TTW_KG]
    full = frame.reindex(range(24), fill_value=0.0)
    labels = [f"{hour:02d}" for hour in full.index]
    return _bar_chart(
        "co2_by_hour", labels, full.to_list(), message("chart.hour.title", lang, timezone=inputs.segments.timezone), message("chart.co2_kg", lang), font,
        category_label=message("chart.hour.x", lang),
    )


def _chart_by_road_class(inputs: ReportInputs, trips: pd.DataFrame, lang: str, font: str | None) -> Chart | None:
    table = inputs.segments.by_road_class
    if table.num_rows == 0:
        return None
    frame = table.to_pandas().sort_values(c.CO2_TTW_KG, ascending=False)
    codes = frame[c.ROAD_CLASS].astype(str).to_list()
    return _bar_chart(
        "co2_by_road_class", codes, frame[c.CO2_TTW_KG].to_list(),
        message("chart.road_class.title", lang), message("chart.co2_kg", lang), font, horizontal=True,
        tick_labels=category_labels(codes, lang),
    )


def _chart_by_vehicle_class(inputs: ReportInputs, trips: pd.DataFrame, lang: str, font: str | None) -> Chart | None:
    if trips.empty:
        return None
    sums = trips.groupby(c.VEHICLE_CLASS, sort=True)[c.CO2_TTW_KG].sum().sort_values(ascending=False)
    codes = sums.index.astype(str).to_list()
    return _bar_chart(
        "co2_by_vehicle_class", codes, sums.to_list(),
        message("chart.vehicle_class.title", lang), message("chart.co2_kg", lang), font, horizontal=True, color="#55a868",
        tick_labels=category_labels(codes, lang),
    )


def _chart_methods(inputs: ReportInputs, trips: pd.DataFrame, lang: str, font: str | None) -> Chart | None:
    if trips.empty:
        return None
    # Tier order (T1 to T5, then unavailable); a method outside the list goes last, by name.
    counts = in_method_order({str(k): int(v) for k, v in trips[c.METHOD].fillna("unavailable").value_counts().items()})
    codes = list(counts)
    return _bar_chart(
        "methods", codes, [float(v) for v in counts.values()],
        message("chart.methods.title", lang), message("chart.trips", lang), font, horizontal=True, color="#8172b2", counts=True,
        tick_labels=category_labels(codes, lang),
    )


def _chart_matched(inputs: ReportInputs, trips: pd.DataFrame, lang: str, font: str | None) -> Chart | None:
    total_km = inputs.segments.length_m / 1000.0
    if total_km <= 0:
        return None
    matched_km = inputs.segments.matched_length_m / 1000.0
    figure, values = draw_matched_share(matched_km, total_km, lang)
    return Chart("matched_share", _png(figure, font), values)


def draw_matched_share(matched_km: float, total_km: float, lang: str) -> tuple[Figure, pd.DataFrame]:
    """Draw the matched and unmatched distance as one stacked bar and return the figure and its values.

    The legend sits in the figure below the axes, where the constrained layout reserves room for it,
    so that it stays inside the saved image whatever the label language.
    """
    figure, axes = _new_figure((8.0, 2.4))
    matched = axes.barh([0], [matched_km], color="#4c72b0", label=message("chart.matched.matched", lang))
    unmatched = axes.barh([0], [total_km - matched_km], left=[matched_km], color="#c0c0c0", label=message("chart.matched.unmatched", lang))
    share = matched_km / total_km
    axes.bar_label(matched, labels=[f"{share:.1%}"], label_type="center", color="white" if share > 0.1 else "black")
    axes.set_yticks([])
    axes.set_xlabel(message("chart.km", lang))
    axes.set_title(message("chart.matched.title", lang))
    figure.legend(loc="outside lower center", ncols=2, frameon=False)
    values = pd.DataFrame({"label": ["matched", "unmatched"], "value": [matched[0].get_width(), unmatched[0].get_width()]})
    return figure, values


def _chart_rejects(inputs: ReportInputs, trips: pd.DataFrame, lang: str, font: str | None) -> Chart | None:
    counts = _rejects_by_reason(inputs.rejects)
    if counts.empty:
        return None
    labels = [f"{dataset}: {reason}" for dataset, reason in counts.index]
    return _bar_chart(
        "rejects", labels, [float(v) for v in counts.to_list()], message("chart.rejects.title", lang), message("chart.rows", lang),
        font, horizontal=True, color="#c44e52", counts=True,
    )


def _chart_intensity(inputs: ReportInputs, trips: pd.DataFrame, lang: str, font: str | None) -> Chart | None:
    settings = inputs.plausibility
    judged = _judged_trips(trips, settings)
    if judged.empty:
        return None
    classes = sorted(judged[c.VEHICLE_CLASS].unique())
    figure = Figure(figsize=(8.0, 2.6 * len(classes) + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    rows = []
    for index, vehicle_class in enumerate(classes):
        axes = figure.add_subplot(len(classes), 1, index + 1)
        values = judged.loc[judged[c.VEHICLE_CLASS] == vehicle_class, c.CO2_G_PER_KM].to_numpy(dtype="float64")
        bounds = settings.intensity_ranges_g_per_km.get(vehicle_class)
        upper = max(np.quantile(values, 0.99), (bounds[1] * settings.far_outside_factor) if bounds else 0.0) * 1.05
        edges = np.linspace(0.0, upper, 41)
        counts, _ = np.histogram(np.clip(values, 0.0, upper), bins=edges)
        bars = axes.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#4c72b0")
        if bounds is not None:
            axes.axvspan(bounds[0], bounds[1], color="#55a868", alpha=0.2, label=message("chart.intensity.range", lang))
            axes.legend(loc="upper right")
        (class_label,) = category_labels([vehicle_class], lang)
        axes.set_title(message("chart.intensity.panel", lang, vehicle_class=class_label, trips=values.size))
        axes.set_ylabel(message("chart.intensity.y", lang))
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        rows += [
            {"vehicle_class": vehicle_class, "bin_low": bar.get_x(), "bin_high": bar.get_x() + bar.get_width(), "value": bar.get_height()}
            for bar in bars
        ]
    axes.set_xlabel(message("chart.intensity.x", lang))
    figure.suptitle(message("chart.intensity.title", lang))
    return Chart("co2_intensity", _png(figure, font), pd.DataFrame(rows))


def _chart_map(inputs: ReportInputs, trips: pd.DataFrame, lang: str, font: str | None) -> Chart | None:
    aggregates = inputs.segments
    if aggregates.bbox is None:
        return None
    bbox = _padded(aggregates.bbox)
    figure, axes = _new_figure((8.0, 8.0))
    shapes = _geo_shapes(inputs.geo, bbox)
    rows: list[dict[str, Any]] = []

    # Areas shaded by their CO2, every link drawn thin and grey, links with CO2 coloured on top.
    area_co2 = _as_series(aggregates.by_area, c.AREA_ID)
    polygons = [(key, geometry) for key, geometry in shapes["areas"] if key in area_co2.index]
    if polygons:
        collection = PolyCollection(
            [np.asarray(geometry.exterior.coords)[:, :2] for _, geometry in polygons], cmap="Oranges", alpha=0.45, edgecolors="none",
        )
        collection.set_array(np.asarray([area_co2[key] for key, _ in polygons]))
        axes.add_collection(collection)
        rows += [{"layer": "area", "key": key, "value": float(area_co2[key])} for key, _ in polygons]
    if shapes["links"]:
        axes.add_collection(LineCollection([line for _, line in shapes["links"]], colors="#d0d0d0", linewidths=0.4))

    link_co2 = _as_series(aggregates.by_link, c.LINK_ID)
    coloured = [(key, line) for key, line in shapes["links"] if key in link_co2.index]
    if coloured:
        values = np.asarray([link_co2[key] for key, _ in coloured])
        order = np.argsort(values)
        lines = LineCollection([coloured[i][1] for i in order], cmap="viridis", norm=_norm(values), linewidths=1.4)
        lines.set_array(values[order])
        axes.add_collection(lines)
        figure.colorbar(lines, ax=axes, shrink=0.6, label=message("chart.map.links", lang))
        rows += [{"layer": "link", "key": key, "value": float(link_co2[key])} for key, _ in coloured]

    # CO2 off the links, by map cell.
    cells = aggregates.by_cell.to_pandas()
    if len(cells):
        scatter = axes.scatter(
            (cells["cell_x"] + 0.5) * CELL_DEG, (cells["cell_y"] + 0.5) * CELL_DEG, c=cells[c.CO2_TTW_KG], cmap="Reds",
            norm=_norm(cells[c.CO2_TTW_KG].to_numpy()), marker="s", s=40, alpha=0.55 if coloured else 0.85, edgecolors="none",
        )
        figure.colorbar(scatter, ax=axes, shrink=0.6, label=message("chart.map.cells", lang, cell=CELL_DEG))
        rows += [{"layer": "cell", "key": f"{x}:{y}", "value": float(v)} for x, y, v in zip(cells["cell_x"], cells["cell_y"], cells[c.CO2_TTW_KG], strict=True)]
    if not coloured:
        axes.text(0.5, 0.02, message("chart.map.no_link", lang), transform=axes.transAxes, ha="center", va="bottom", fontsize=9,
                  bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})

    axes.set_xlim(bbox[0], bbox[2])
    axes.set_ylim(bbox[1], bbox[3])
    axes.set_aspect(1.0 / max(np.cos(np.radians(0.5 * (bbox[1] + bbox[3]))), 0.1))
    axes.set_xlabel(message("chart.lon", lang))
    axes.set_ylabel(message("chart.lat", lang))
    axes.set_title(message("chart.map.title", lang, run_date=inputs.run_date))
    return Chart("co2_map", _png(figure, font), pd.DataFrame(rows, columns=["layer", "key", "value"]))


_CHARTS = {
    "co2_map": _chart_map,
    "co2_by_hour": _chart_by_hour,
    "co2_by_road_class": _chart_by_road_class,
    "co2_by_vehicle_class": _chart_by_vehicle_class,
    "co2_intensity": _chart_intensity,
    "methods": _chart_methods,
    "matched_share": _chart_matched,
    "rejects": _chart_rejects,
}


# -- markdown ----------------------------------------------------------------------------------


def _figures(inputs: ReportInputs, trips: pd.DataFrame) -> dict[str, Any]:
    distance_km = float(trips[c.DISTANCE_KM].sum()) if len(trips) else 0.0
    co2_kg = float(trips[c.CO2_TTW_KG].sum()) if len(trips) else 0.0
    length_m = inputs.segments.length_m
    judged = _judged_trips(trips, inputs.plausibility)
    in_range = _in_range(judged, inputs.plausibility)
    rejects = _rejects_by_reason(inputs.rejects)
    return {
        "trips": len(trips),
        "distance_km": round(distance_km, 3),
        "fuel_l": round(float(trips[c.FUEL_L].sum()), 3) if c.FUEL_L in trips and len(trips) else 0.0,
        "trips_without_fuel_l": _trips_without_litres(trips),
        "co2_ttw_kg": round(co2_kg, 3),
        "co2_g_per_km": round(co2_kg * 1000.0 / distance_km, 1) if distance_km > 0 else None,
        "matched_share": round(inputs.segments.matched_length_m / length_m, 4) if length_m > 0 else None,
        "trips_judged": len(judged),
        "trips_in_range": int(in_range.sum()),
        "methods": {str(k): int(v) for k, v in trips[c.METHOD].fillna("unavailable").value_counts().sort_index().items()} if len(trips) else {},
        "rejects_by_reason": {f"{dataset}:{reason}": int(n) for (dataset, reason), n in rejects.items()},
    }


def _trips_without_litres(trips: pd.DataFrame) -> dict[str, int]:
    """Count the trips without a fuel figure in litres by fuel type (:func:`metrics.trips_without_litres`)."""
    if trips.empty or c.FUEL_L not in trips:
        return {}
    return metrics.trips_without_litres(trips[c.FUEL_L], trips[c.FUEL_TYPE] if c.FUEL_TYPE in trips else None)


def _markdown(inputs: ReportInputs, figures: dict[str, Any], charts: dict[str, Chart], lang: str, chart_language: str) -> str:
    item, value = message("report.item", lang), message("report.value", lang)
    out = [f"# {message('report.title', lang, run_date=inputs.run_date)}", ""]

    # Explanations first: a day with nothing to draw says why before anything else.
    explanations = [w for w in inputs.warnings if w.scope == "day"]
    if explanations or not charts.get("co2_map"):
        out += [f"## {message('report.explanation', lang)}", ""]
        out += [f"- {message('report.day_warning', lang, text=w.text(lang), code=w.code)}" for w in explanations]
        if figures["trips"] == 0:
            out.append(f"- {message('report.no_chart_data', lang)}")
        out.append("")

    out += [f"## {message('report.figures', lang)}", "", f"| {item} | {value} |", "|---|---:|"]
    out.append(f"| {message('report.trips', lang)} | {figures['trips']:,} |")
    out.append(f"| {message('report.distance', lang)} | {figures['distance_km']:,.1f} km |")
    out.append(f"| {message('summary.fuel', lang)} | {figures['fuel_l']:,.1f} L |")
    out.append(f"| {message('report.co2', lang)} | {figures['co2_ttw_kg']:,.1f} kg |")
    if figures["co2_g_per_km"] is not None:
        out.append(f"| {message('report.intensity', lang)} | {figures['co2_g_per_km']:,.0f} g/km |")
    if figures["matched_share"] is not None:
        out.append(f"| {message('report.matched', lang)} | {figures['matched_share']:.1%} |")
    if figures["trips_judged"]:
        min_km = inputs.plausibility.min_trip_distance_km
        out.append(f"| {message('report.in_range', lang, min_km=min_km)} | {figures['trips_in_range']:,} / {figures['trips_judged']:,} |")
    out.append("")
    if figures["trips_without_fuel_l"]:
        out += [fuel_excluded_text(figures["trips_without_fuel_l"], lang), ""]

    out += _warning_lines(inputs.warnings, inputs.plausibility, lang)

    if charts:
        out += [f"## {message('report.charts', lang)}", ""]
        if lang == "ja" and chart_language != "ja" and find_japanese_font() is None:
            out += [message("report.font_fallback", lang), ""]
        for name in CHART_ORDER:
            if name in charts:
                out += [f"![{_chart_title(name, inputs, lang)}]({charts[name].filename})", ""]

    out += [f"## {message('report.rejects', lang)}", ""]
    rejects = _rejects_by_reason(inputs.rejects)
    if rejects.empty:
        out += [message("report.no_rejects", lang), ""]
    else:
        out += [
            f"| {message('report.dataset', lang)} | {message('report.reason', lang)} | {message('report.reason_meaning', lang)} "
            f"| {message('report.count', lang)} |",
            "|---|---|---|---:|",
        ]
        out += [f"| {dataset} | `{reason}` | {_reason_meaning(reason, lang)} | {n:,} |" for (dataset, reason), n in rejects.items()]
        out.append("")

    out += [f"## {message('report.phases', lang)}", "", f"| {message('report.phase', lang)} | {message('report.seconds', lang)} |", "|---|---:|"]
    for record in inputs.phases:
        if record.get("skipped"):
            state = message("report.skipped", lang)
        elif record.get("seconds") is None:
            state = message("report.pending", lang)
        else:
            state = f"{float(record['seconds']):.1f}"
        out.append(f"| {message('phase.' + str(record['phase']), lang)} | {state} |")
    out += ["", message("report.phases_later", lang, day=inputs.run_date.replace("-", ""))]
    return "\n".join(out) + "\n"


#: Message key of each chart's title, which is also its alternative text on the report pages.
_CHART_TITLES: dict[str, str] = {
    "co2_map": "chart.map.title",
    "co2_by_hour": "chart.hour.title",
    "co2_by_road_class": "chart.road_class.title",
    "co2_by_vehicle_class": "chart.vehicle_class.title",
    "co2_intensity": "chart.intensity.title",
    "methods": "chart.methods.title",
    "matched_share": "chart.matched.title",
    "rejects": "chart.rejects.title",
}


def _chart_title(name: str, inputs: ReportInputs, lang: str) -> str:
    return message(_CHART_TITLES[name], lang, run_date=inputs.run_date, timezone=inputs.segments.timezone)


def _reason_meaning(reason: str, lang: str) -> str:
    """Return what a reject reason code means, from the input contract, with ``|`` escaped for a table cell.

    A code that the contract does not define gets an empty text.
    """
    key = f"contract.reason.{reason}.meaning"
    return message(key, lang).replace("|", "\\|") if has_message(key) else ""


def _warning_lines(warnings: list[PlausibilityWarning], settings: PlausibilitySettings, lang: str) -> list[str]:
    out = [f"## {message('report.warnings', lang)}", ""]
    if not any(w.scope != "day" for w in warnings):
        key = "report.no_warnings.day_above" if any(w.scope == "day" for w in warnings) else "report.no_warnings"
        return out + [message(key, lang), ""]
    trip_warnings = [w for w in warnings if w.scope == "trip"]
    listed = trip_warnings[: settings.max_listed_trips]
    for warning in [w for w in warnings if w.scope == "vehicle"] + listed:
        key = f"{warning.key}: " if warning.key else ""
        out.append(f"- `{warning.code}` {key}{warning.text(lang)}")
    if len(trip_warnings) > len(listed):
        out.append(f"- {message('report.more_trips', lang, count=len(trip_warnings) - len(listed))}")
    return out + [""]


# -- helpers -----------------------------------------------------------------------------------


def _conform_segments(segments: pa.Table) -> pa.Table:
    """Select the report columns, adding missing optional ones as nulls and typing null columns."""
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    n = segments.num_rows
    types = {c.LINK_ID: pa.string(), c.AREA_ID: pa.string(), c.ROAD_CLASS: pa.string(), c.CO2_TTW_KG: pa.float64(),
             c.LENGTH_M: pa.float64(), c.T_START: pa.timestamp("ms", tz="UTC"), c.LON_MID: pa.float64(), c.LAT_MID: pa.float64()}
    for name in SEGMENT_REPORT_COLUMNS:
        if name in segments.column_names:
            columns[name] = pc.cast(segments[name], types[name])
        else:
            columns[name] = pa.nulls(n, types[name])
    return pa.table(columns)


def _empty_segments() -> pa.Table:
    return _conform_segments(pa.table({c.CO2_TTW_KG: pa.array([], pa.float64())}))


def _group_sum(table: pa.Table, keys: list[str], sums: list[tuple[str, str]]) -> pa.Table:
    grouped = table.group_by(keys).aggregate(sums)
    return grouped.rename_columns([name.removesuffix("_sum") for name in grouped.column_names])


def _sum(table: pa.Table, column: str) -> float:
    if table.num_rows == 0:
        return 0.0
    return float(pc.sum(table[column]).as_py() or 0.0)


def _bbox_of(table: pa.Table) -> tuple[float, float, float, float] | None:
    lon = pc.min_max(pc.filter(table[c.LON_MID], pc.is_finite(table[c.LON_MID]))) if table.num_rows else None
    lat = pc.min_max(pc.filter(table[c.LAT_MID], pc.is_finite(table[c.LAT_MID]))) if table.num_rows else None
    if lon is None or lat is None or lon["min"].as_py() is None or lat["min"].as_py() is None:
        return None
    return (lon["min"].as_py(), lat["min"].as_py(), lon["max"].as_py(), lat["max"].as_py())


def _padded(bbox: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    pad_x = max((bbox[2] - bbox[0]) * 0.05, 0.002)
    pad_y = max((bbox[3] - bbox[1]) * 0.05, 0.002)
    return (bbox[0] - pad_x, bbox[1] - pad_y, bbox[2] + pad_x, bbox[3] + pad_y)


def _geo_shapes(geo: pa.Table | None, bbox: tuple[float, float, float, float]) -> dict[str, list[tuple[str, Any]]]:
    """Split the geo attributes inside ``bbox`` into link coordinate arrays and area polygons."""
    shapes: dict[str, list[tuple[str, Any]]] = {"links": [], "areas": []}
    if geo is None or geo.num_rows == 0:
        return shapes
    geometries = shapely.from_wkb(geo[c.GEOMETRY].to_numpy(zero_copy_only=False))
    keys = geo[c.FEATURE_ID].to_numpy(zero_copy_only=False)
    inside = shapely.intersects(geometries, shapely.box(*bbox))
    for key, geometry in zip(keys[inside], geometries[inside], strict=True):
        for part in getattr(geometry, "geoms", [geometry]):
            if part.geom_type == "LineString":
                shapes["links"].append((str(key), np.asarray(part.coords)[:, :2]))
            elif part.geom_type == "Polygon":
                shapes["areas"].append((str(key), part))
    return shapes


def _as_series(table: pa.Table, key: str) -> pd.Series:
    if table.num_rows == 0:
        return pd.Series(dtype="float64")
    frame = table.to_pandas()
    return frame.set_index(frame[key].astype(str))[c.CO2_TTW_KG]


def _norm(values: np.ndarray) -> Normalize:
    positive = values[values > 0]
    if positive.size and positive.max() / positive.min() > 50:
        return LogNorm(vmin=positive.min(), vmax=positive.max())
    return Normalize(vmin=float(values.min()) if values.size else 0.0, vmax=float(values.max()) if values.size else 1.0)


def _trips_with_class(trips: pd.DataFrame, vehicles: pd.DataFrame) -> pd.DataFrame:
    out = trips.copy()
    if vehicles is None or len(vehicles) == 0 or c.VEHICLE_CLASS not in vehicles:
        out[c.VEHICLE_CLASS] = UNMATCHED
        return out
    master = vehicles.drop_duplicates(c.VEHICLE_ID).set_index(c.VEHICLE_ID)
    out[c.VEHICLE_CLASS] = out[c.VEHICLE_ID].map(master[c.VEHICLE_CLASS]).fillna(UNMATCHED).astype(str) if len(out) else pd.Series(dtype=str)
    if c.FUEL_TYPE in master:
        out[c.FUEL_TYPE] = out[c.VEHICLE_ID].map(master[c.FUEL_TYPE])
    return out


def _judged_trips(trips: pd.DataFrame, settings: PlausibilitySettings) -> pd.DataFrame:
    """Trips whose g/km the plausibility check judges: long enough, with a finite intensity, of a
    class that has a range, and not electric (0 g/km tank-to-wheel by definition), as in
    ``plausibility``."""
    if trips.empty:
        return trips
    keep = (trips[c.DISTANCE_KM] >= settings.min_trip_distance_km) & np.isfinite(trips[c.CO2_G_PER_KM].astype("float64"))
    keep &= trips[c.VEHICLE_CLASS].isin(list(settings.intensity_ranges_g_per_km))
    if c.FUEL_TYPE in trips:
        keep &= (trips[c.FUEL_TYPE] != "electric").to_numpy(dtype=bool)
    return trips[keep]


def _in_range(judged: pd.DataFrame, settings: PlausibilitySettings) -> np.ndarray:
    if judged.empty:
        return np.zeros(0, dtype=bool)
    bounds = judged[c.VEHICLE_CLASS].map(lambda name: settings.intensity_ranges_g_per_km.get(name, (np.nan, np.nan)))
    low = np.asarray([b[0] for b in bounds], dtype="float64")
    high = np.asarray([b[1] for b in bounds], dtype="float64")
    value = judged[c.CO2_G_PER_KM].to_numpy(dtype="float64")
    return (value >= low) & (value <= high)


def _rejects_by_reason(rejects: pd.DataFrame) -> pd.Series:
    if rejects is None or len(rejects) == 0:
        return pd.Series(dtype="int64")
    return rejects.groupby([c.DATASET, c.REASON], sort=True).size().sort_values(ascending=False, kind="stable")


def format_bar_labels(values: Sequence[float], *, counts: bool = False) -> list[str]:
    """Format the value labels of one bar chart, all with the same number of decimals.

    Parameters
    ----------
    values
        The bar values, in drawing order.
    counts
        Whether the values are counts (trips, rows), which are labelled as integers.

    Returns
    -------
    list of str
        One label per value. The decimals follow the largest magnitude: none from 100, one from 1,
        else enough for two significant digits of the largest value.

    Examples
    --------
    >>> format_bar_labels([248.0, 13.0, 2.0], counts=True)
    ['248', '13', '2']
    >>> format_bar_labels([193.2, 100.0, 2.26])
    ['193', '100', '2']
    >>> format_bar_labels([12.0, 2.26])
    ['12.0', '2.3']
    """
    if counts:
        return [f"{round(value):,}" for value in values]
    finite = [abs(value) for value in values if np.isfinite(value)]
    largest = max(finite, default=0.0)
    decimals = _decimals_for(largest)
    return [f"{value:,.{decimals}f}" for value in values]


def _decimals_for(largest: float) -> int:
    if largest >= 100:
        return 0
    if largest >= 1:
        return 1
    if largest == 0:
        return 0
    return 1 - int(np.floor(np.log10(largest)))


__all__ = [
    "CELL_DEG",
    "GEO_REPORT_COLUMNS",
    "SEGMENT_REPORT_COLUMNS",
    "Chart",
    "ReportInputs",
    "RunReport",
    "SegmentAggregates",
    "aggregate_segments",
    "build_run_report",
    "draw_matched_share",
    "find_japanese_font",
    "format_bar_labels",
    "geo_bbox",
    "merge_aggregates",
]
