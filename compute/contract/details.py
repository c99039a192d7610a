"""Structured details of rejected rows, rendered in Japanese or English from templates.

A row rule rejects a row with a reason code and a :class:`Detail`: the kind of detail, which
names a template, and its parameters (vertex numbers, distances, limits, column names). The
templates of every kind are registered in Japanese and English in
:mod:`compute.contract.messages` under ``contract.detail.<kind>``. One set of parameters
therefore gives the English text of the rejects file and the Japanese or English text of a
report, and no sentence is ever translated from another sentence.

The rejects frame of :func:`~compute.contract.validate.validate_rows` carries the structured form
in two text columns beside ``detail``: :data:`~compute.contract.reasons.DETAIL_KIND` and
:data:`~compute.contract.reasons.DETAIL_PARAMS` (a JSON object). The rejects file keeps only
:data:`~compute.contract.reasons.REJECT_COLUMNS`, and its ``detail`` is always English, so the
machine-readable file does not change with the operator's language.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from compute import columns as c
from compute.contract import messages as _messages  # also registers the templates
from compute.contract.reasons import DETAIL_KIND, DETAIL_PARAMS, ReasonCode
from compute.i18n import has_message, message

# Kind of detail -> names of its parameters. Every kind has a template per language under
# "contract.detail.<kind>" that uses exactly these names.
DETAIL_KINDS: dict[str, tuple[str, ...]] = {
    "row_of_partition": ("row",),
    "row_of_file": ("file", "row"),
    "key_repeated": (),
    "copy_of_file_row": ("file", "row"),
    "copy_of_partition_row": ("row",),
    "value_null": ("column",),
    "vehicle_unknown": ("accepted_vehicles",),
    "vehicle_row_rejected": ("master_reason",),
    "geometry_null": (),
    "vertices_above_max": ("vertices", "limit"),
    "wkb_undecodable": ("size_bytes",),
    "types_allowed": ("types",),
    "no_vertices": (),
    "wkb_too_short": (),
    "no_second_point": ("vertices",),
    "geos_invalid": ("problem", "location"),
    "elevation_infinite": ("vertex",),
    "repair_left_no_area": ("problem", "location"),
    "vertex_lon_lat": ("vertex",),
    "times_null": (),
    "timestamp_count": ("timestamps", "vertices"),
    "timestamp_null": ("timestamps", "vertices"),
    "vertex_outside_window": ("vertex", "min_time", "max_time"),
    "outside_window": ("min_time", "max_time"),
    "vertex_pair": ("first", "second"),
    "end_before_start": (),
    "vertex_speed": ("first", "second", "distance_m", "interval_s", "limit_kmh"),
    "trip_average_speed": ("distance_m", "duration_s", "limit_kmh"),
    "speed_above_limit": ("limit_kmh",),
    "value_negative": ("column",),
    "above_max": ("column", "setting", "limit"),
    "abs_above_max": ("column", "setting", "limit"),
    "outside_lower_exclusive": ("column", "lower", "upper"),
    "outside_range": ("column", "lower", "upper"),
    "fuel_rate": ("rate_l_per_h", "interval_s", "limit_l_per_h"),
    "values_allowed": ("values",),
}

# Reason code -> kinds of detail its rules may write. Every code has at least one.
REASON_DETAILS: dict[ReasonCode, tuple[str, ...]] = {
    ReasonCode.KEY_MISSING: ("row_of_file", "row_of_partition"),
    ReasonCode.KEY_DUPLICATED: ("key_repeated",),
    ReasonCode.ROW_REPEATED: ("copy_of_file_row", "copy_of_partition_row"),
    ReasonCode.VALUE_MISSING: ("value_null",),
    ReasonCode.VEHICLE_NOT_IN_MASTER: ("vehicle_unknown", "vehicle_row_rejected"),
    ReasonCode.GEOMETRY_MISSING: ("geometry_null",),
    ReasonCode.GEOMETRY_TOO_LARGE: ("vertices_above_max",),
    ReasonCode.GEOMETRY_UNREADABLE: ("wkb_undecodable",),
    ReasonCode.GEOMETRY_WRONG_TYPE: ("types_allowed",),
    ReasonCode.GEOMETRY_EMPTY: ("no_vertices",),
    ReasonCode.GEOMETRY_SINGLE_POINT: ("wkb_too_short", "no_second_point"),
    ReasonCode.GEOMETRY_INVALID: ("geos_invalid", "elevation_infinite", "repair_left_no_area"),
    ReasonCode.COORDINATE_OUT_OF_RANGE: ("vertex_lon_lat",),
    ReasonCode.COORDINATE_NULL_ISLAND: ("vertex_lon_lat",),
    ReasonCode.TIME_MISSING: ("times_null",),
    ReasonCode.TIMESTAMP_COUNT_MISMATCH: ("timestamp_count", "timestamp_null"),
    ReasonCode.TIMESTAMP_OUT_OF_RANGE: ("vertex_outside_window", "outside_window"),
    ReasonCode.TIMESTAMP_BACKWARDS: ("vertex_pair", "end_before_start"),
    ReasonCode.SPEED_IMPLAUSIBLE: ("vertex_speed", "trip_average_speed", "speed_above_limit"),
    ReasonCode.VALUE_NEGATIVE: ("value_negative",),
    ReasonCode.VALUE_OUT_OF_RANGE: ("above_max", "abs_above_max", "outside_lower_exclusive", "outside_range"),
    ReasonCode.FUEL_NEGATIVE: ("value_negative",),
    ReasonCode.FUEL_IMPLAUSIBLE: ("fuel_rate",),
    ReasonCode.VEHICLE_CLASS_UNKNOWN: ("values_allowed",),
    ReasonCode.FUEL_TYPE_UNKNOWN: ("values_allowed",),
    ReasonCode.TEST_CYCLE_UNKNOWN: ("values_allowed",),
}

# Parameters whose value is a term with its own catalogue entry, by catalogue prefix. A term
# without an entry is shown as it is (for example a GEOS problem name that is not listed).
TERM_PREFIXES: dict[str, str] = {"problem": "contract.geos"}


@dataclass(frozen=True)
class Detail:
    """Structured cause of one rejected row: a kind of :data:`DETAIL_KINDS` and its parameters.

    Raises
    ------
    ValueError
        If ``kind`` is not declared or ``params`` do not have exactly the declared names.
    """

    kind: str
    params: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _messages.check_kind_params("detail kind", self.kind, self.params, DETAIL_KINDS, "DETAIL_KINDS")

    def text(self, lang: str = "en") -> str:
        """Return the detail as text in ``lang``."""
        return render_detail(self.kind, self.params, lang)

    def params_json(self) -> str:
        """Return the parameters as a JSON object, with numpy scalars as plain numbers."""
        return json.dumps(dict(self.params), default=_plain_number, ensure_ascii=False, sort_keys=True)


def check_detail_kind(code: ReasonCode, kind: str) -> None:
    """Raise ``ValueError`` unless rules of ``code`` may write details of ``kind``."""
    allowed = REASON_DETAILS[code]
    if kind not in allowed:
        raise ValueError(f"detail kind {kind!r} is not declared for reason {code.value!r}. Declared for it: {list(allowed)}")


def render_detail(kind: str, params: Mapping[str, object], lang: str) -> str:
    """Return the template of ``kind`` in ``lang`` filled with ``params``.

    Parameters named in :data:`TERM_PREFIXES` are looked up in the catalogue first, so a GEOS
    problem such as ``Self-intersection`` reads ``自己交差`` in Japanese.
    """
    values = {name: _render_term(name, value, lang) for name, value in params.items()}
    return message(f"contract.detail.{kind}", lang, **values)


def geos_problem(reason: str) -> dict[str, object]:
    """Return the parameters of a ``shapely.is_valid_reason`` text: the problem and its location.

    ``"Self-intersection[139.7 35.68]"`` gives ``problem="Self-intersection"`` and
    ``location="[139.7 35.68]"``. A text without a location gives an empty location.
    """
    problem, bracket, rest = reason.partition("[")
    return {"problem": problem, "location": bracket + rest}


def render_details(rejects: pd.DataFrame, lang: str) -> pd.DataFrame:
    """Return a copy of ``rejects`` with ``detail`` rendered in ``lang`` from the structured columns.

    Rows without a detail kind keep their ``detail``. A frame without the structured columns,
    such as a rejects file read back, is returned unchanged, so its details stay in English.
    Rendering parses the JSON of every row, so pass only the rows a report shows.
    """
    if rejects.empty or DETAIL_KIND not in rejects or DETAIL_PARAMS not in rejects:
        return rejects
    out = rejects.copy()
    kinds = out[DETAIL_KIND].to_numpy(dtype=object, na_value=None)
    params = out[DETAIL_PARAMS].to_numpy(dtype=object, na_value=None)
    texts = out[c.DETAIL].to_numpy(dtype=object, na_value=None).copy()
    for position, (kind, encoded) in enumerate(zip(kinds, params, strict=True)):
        if kind is not None:
            texts[position] = render_detail(str(kind), json.loads(encoded) if encoded else {}, lang)
    out[c.DETAIL] = pd.Series(texts, index=out.index, dtype="str")
    return out


def _render_term(name: str, value: object, lang: str) -> object:
    prefix = TERM_PREFIXES.get(name)
    if prefix is None or not isinstance(value, str):
        return value
    key = f"{prefix}.{value}"
    return message(key, lang) if has_message(key) else value


def _plain_number(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"detail parameter of type {type(value).__name__} is not JSON serialisable; pass str, int or float")
