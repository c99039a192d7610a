"""``lm-co2 validate PATH``: the contract checks of the daily flow, on any day folder, in-process.

The same functions as in the validate phase run here: conform, then the row rules with the day's
duplicate keys and vehicle master. They run one file at a time and without a Dask cluster, so a
client or an operator can check a delivery before it is scheduled.

The row rules write the example value and detail of each reject in English, and the rejects file
keeps them so. The Japanese report shows them in Japanese (:func:`localise_examples`).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from compute import columns as c
from compute import contract, pipeline
from compute.i18n import has_message, message, register
from compute.settings import Settings
from compute.storage import DeliveryError, Store, open_url

register(
    {
        "inspection.geometry_short": {"ja": "頂点が 2 つ未満の LineString WKB", "en": "LineString WKB with fewer than 2 vertices"},
        "inspection.allowed_types": {"ja": "許可される型: {types}", "en": "allowed: {types}"},
        "inspection.no_second_point": {"ja": "頂点 {n} 個、異なる 2 点目なし", "en": "{n} vertices, no distinct second point"},
        "inspection.elevation_infinite": {"ja": "頂点 {i}: 標高が無限大", "en": "vertex {i}: elevation is infinite"},
        "inspection.no_area": {"ja": "{reason}。make_valid の後に面積が残りません", "en": "{reason}; make_valid left no area"},
        "inspection.vertex_lonlat": {"ja": "頂点 {i}（x = 経度、y = 緯度）", "en": "vertex {i} (x = longitude, y = latitude)"},
        "inspection.vertex_count": {"ja": "頂点 {n} 個", "en": "{n} vertices"},
        "inspection.vertex_count_null": {"ja": "頂点 {n} 個。時刻が空の頂点があります", "en": "{n} vertices; a timestamp is null"},
        "inspection.timestamps": {"ja": "時刻 {n} 個", "en": "{n} timestamps"},
        "inspection.vertex_pair": {"ja": "頂点 {a} から {b}", "en": "vertex {a} to {b}"},
        "inspection.vertex_speed": {
            "ja": "頂点 {a} から {b}: {seconds} 秒で {metres} m、上限 {limit} km/h",
            "en": "vertex {a} to {b}: {metres} m in {seconds} s, limit {limit} km/h",
        },
        "inspection.trip_speed": {
            "ja": "トリップ全体の平均: {seconds} 秒で {metres} m、上限 {limit} km/h",
            "en": "average over the trip: {metres} m in {seconds} s, limit {limit} km/h",
        },
        "inspection.end_before_start": {"ja": "end_time が start_time より前です", "en": "end_time is before start_time"},
        "inspection.vertex_window": {"ja": "頂点 {i}。min_time {low}、max_time {high}", "en": "vertex {i}; min_time {low}, max_time {high}"},
        "inspection.window": {"ja": "min_time {low}、max_time {high}", "en": "min_time {low}, max_time {high}"},
        "inspection.row_of_partition": {"ja": "パーティションの {i} 行目", "en": "row {i} of the partition"},
        "inspection.above": {"ja": "{column} が {limit_name} {limit} を超えています", "en": "{column} above {limit_name} {limit}"},
        "inspection.outside": {"ja": "{column} が範囲 {bounds} の外です", "en": "{column} outside {bounds}"},
        "inspection.limit": {"ja": "上限 {limit} km/h", "en": "limit {limit} km/h"},
        "inspection.fuel_rate": {
            "ja": "{seconds} 秒間で {rate} l/h、上限 {limit} l/h",
            "en": "{rate} l/h over {seconds} s, limit {limit} l/h",
        },
        "inspection.geos.Self-intersection": {"ja": "自己交差", "en": "Self-intersection"},
        "inspection.geos.Ring Self-intersection": {"ja": "リングの自己交差", "en": "Ring Self-intersection"},
        "inspection.geos.Hole lies outside shell": {"ja": "穴が外殻の外にあります", "en": "Hole lies outside shell"},
        "inspection.geos.Holes are nested": {"ja": "穴が入れ子になっています", "en": "Holes are nested"},
        "inspection.geos.Interior is disconnected": {"ja": "内部が分断されています", "en": "Interior is disconnected"},
        "inspection.geos.Nested shells": {"ja": "外殻が入れ子になっています", "en": "Nested shells"},
        "inspection.geos.Duplicate Rings": {"ja": "リングが重複しています", "en": "Duplicate Rings"},
        "inspection.geos.Too few distinct points in geometry component": {
            "ja": "ジオメトリの要素に異なる点が少なすぎます", "en": "Too few distinct points in geometry component",
        },
        "inspection.geos.Invalid Coordinate": {"ja": "座標が不正です", "en": "Invalid Coordinate"},
        "inspection.geos.Ring is not closed": {"ja": "リングが閉じていません", "en": "Ring is not closed"},
        "inspection.geos.Repeated Point": {"ja": "点が重複しています", "en": "Repeated Point"},
    }
)

# The English example values and details that the row rules of compute/contract write, as
# patterns with the catalogue key of their text. A detail that matches none stays in English.
_NUMBER = r"-?[\d.,]+(?:e[-+]?\d+)?"
_EXAMPLE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), key)
    for pattern, key in (
        (r"LineString WKB with fewer than 2 vertices", "inspection.geometry_short"),
        (r"allowed: (?P<types>.+)", "inspection.allowed_types"),
        (r"(?P<n>\d+) vertices, no distinct second point", "inspection.no_second_point"),
        (r"vertex (?P<i>-?\d+): elevation is infinite", "inspection.elevation_infinite"),
        (r"vertex (?P<i>-?\d+) \(x = longitude, y = latitude\)", "inspection.vertex_lonlat"),
        (r"(?P<n>\d+) vertices; a timestamp is null", "inspection.vertex_count_null"),
        (r"(?P<n>\d+) vertices", "inspection.vertex_count"),
        (r"(?P<n>\d+) timestamps", "inspection.timestamps"),
        (rf"vertex (?P<a>-?\d+) to (?P<b>-?\d+): (?P<metres>{_NUMBER}) m in (?P<seconds>{_NUMBER}) s, limit (?P<limit>{_NUMBER}) km/h",
         "inspection.vertex_speed"),
        (r"vertex (?P<a>-?\d+) to (?P<b>-?\d+)", "inspection.vertex_pair"),
        (rf"average over the trip: (?P<metres>{_NUMBER}) m in (?P<seconds>{_NUMBER}) s, limit (?P<limit>{_NUMBER}) km/h",
         "inspection.trip_speed"),
        (r"end_time is before start_time", "inspection.end_before_start"),
        (r"vertex (?P<i>-?\d+); min_time (?P<low>\S+), max_time (?P<high>\S+)", "inspection.vertex_window"),
        (r"min_time (?P<low>\S+), max_time (?P<high>\S+)", "inspection.window"),
        (r"row (?P<i>\d+) of the partition", "inspection.row_of_partition"),
        (rf"(?P<column>\|?\w+\|?) above (?P<limit_name>\w+) (?P<limit>{_NUMBER})", "inspection.above"),
        (r"(?P<column>\w+) outside (?P<bounds>[\[(].+[\])])", "inspection.outside"),
        (rf"limit (?P<limit>{_NUMBER}) km/h", "inspection.limit"),
        (rf"(?P<rate>{_NUMBER}) l/h over (?P<seconds>{_NUMBER}) s, limit (?P<limit>{_NUMBER}) l/h", "inspection.fuel_rate"),
    )
)
_NO_AREA = re.compile(r"(?P<reason>.+); make_valid left no area")
_GEOS_REASON = re.compile(r"(?P<reason>[A-Za-z][A-Za-z -]*?)(?P<where>\[.*\])?")


def validate_path(url: str, settings: Settings, *, lang: str = "ja", rejects_path: str | None = None) -> tuple[str, bool]:
    """Validate the day folder at ``url`` and return ``(Markdown report, balance holds)``.

    A dataset-level error does not raise here: it is part of the report, and the result is
    reported as not balanced so the command exits non-zero. An empty or missing folder raises
    :class:`~compute.storage.DeliveryError`.
    """
    store = Store(url, {})
    if not store.list():
        raise DeliveryError("delivery_missing", store.url, url.rstrip("/").rsplit("/", 1)[-1])
    summary = contract.ValidationSummary()
    rejects: list[pd.DataFrame] = []
    try:
        frames = _read_day(store, settings, summary)
        known: np.ndarray | None = None
        for dataset in ("vehicles", "geo_attributes", "trajectories", "tachometer"):
            if dataset not in frames:
                continue
            parts = frames[dataset]
            duplicated = contract.find_duplicate_keys(dataset, [frame for frame in parts])
            context = contract.ValidationContext(settings=settings.contract, known_vehicle_ids=known, duplicated_keys={dataset: duplicated})
            accepted_parts = []
            for frame in parts:
                accepted, rejected = contract.validate_rows(dataset, frame, context)
                summary.record(dataset, len(frame), accepted, rejected)
                accepted_parts.append(accepted)
                rejects.append(rejected)
            if dataset == "vehicles":
                known = pd.concat(accepted_parts)[c.VEHICLE_ID].to_numpy(dtype=object) if accepted_parts else np.array([], dtype=object)
    except contract.ContractError as error:
        summary.add_error(error)

    all_rejects = pd.concat(rejects, ignore_index=True) if rejects else contract.empty_rejects()
    if rejects_path:
        with open_url(rejects_path, "wb") as handle:
            pq.write_table(pipeline.rejects_table(all_rejects), handle)
    balanced = summary.ok
    try:
        contract.check_balance(summary)
    except contract.BalanceError:
        balanced = False
    return contract.render_report(summary, lang, localise_examples(all_rejects, lang)), balanced


def localise_examples(rejects: pd.DataFrame, lang: str) -> pd.DataFrame:
    """Return ``rejects`` with the English example values and details of the row rules in ``lang``.

    Only the first reject of each dataset and reason is shown in the report, so only those rows
    are translated; the others are returned unchanged. English needs no change.
    """
    if lang == "en" or rejects.empty:
        return rejects
    shown = ~rejects.duplicated([c.DATASET, c.REASON])
    out = rejects.copy()
    for column in (c.VALUE, c.DETAIL):
        if column in out:
            out.loc[shown, column] = out.loc[shown, column].map(lambda text: _localise_text(text, lang))
    return out


def _localise_text(text: object, lang: str) -> object:
    """Translate one English example text of the row rules; other values come back unchanged."""
    if not isinstance(text, str):
        return text
    for pattern, key in _EXAMPLE_PATTERNS:
        match = pattern.fullmatch(text)
        if match:
            return message(key, lang, **match.groupdict())
    no_area = _NO_AREA.fullmatch(text)
    if no_area:
        return message("inspection.no_area", lang, reason=_localise_geos_reason(no_area["reason"], lang))
    return _localise_geos_reason(text, lang)


def _localise_geos_reason(text: str, lang: str) -> str:
    """Translate a reason of ``shapely.is_valid_reason`` such as ``Self-intersection[1 2]``."""
    match = _GEOS_REASON.fullmatch(text)
    if match is None:
        return text
    key = f"inspection.geos.{match['reason']}"
    if not has_message(key):
        return text
    return message(key, lang) + (match["where"] or "")


def _read_day(store: Store, settings: Settings, summary: contract.ValidationSummary) -> dict[str, list[pd.DataFrame]]:
    frames: dict[str, list[pd.DataFrame]] = {}
    for dataset in contract.DATASETS:
        files = pipeline.list_dataset_files(store, dataset)
        if not files:
            if dataset in contract.REQUIRED_DATASETS:
                raise contract.ContractError(
                    contract.ErrorCode.DATASET_MISSING, dataset, "", f"{dataset}/*.parquet ≥ 1", f"{store.child_url(dataset)}/*.parquet = 0"
                )
            summary.mark_absent(dataset)
            continue
        frames[dataset] = []
        for name in files:
            try:
                with store.open(name) as handle:
                    table = pq.ParquetFile(handle).read()
            except (pa.ArrowInvalid, OSError) as error:
                raise contract.file_unreadable(dataset, name, error) from error
            conformed = contract.conform_table(dataset, table, settings.contract)
            frames[dataset].append(contract.to_frame(dataset, conformed))
    return frames

