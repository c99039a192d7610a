"""Bookkeeping of row-level rules: which rows are still open, and why each other row failed."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TypeAlias, Union

import numpy as np
import pandas as pd
import shapely

from compute import columns as c
from compute.contract.details import Detail, check_detail_kind
from compute.contract.reasons import DETAIL_COLUMNS, DETAIL_KIND, DETAIL_PARAMS, REJECT_COLUMNS, FlagCode, ReasonCode

MAX_VALUE_CHARS = 160

ValueSource: TypeAlias = Union[Callable[[np.ndarray], Sequence[object]], np.ndarray, pd.Series, None]  # noqa: UP007
DetailSource: TypeAlias = Union[Detail, Callable[[np.ndarray], Sequence[Detail]], np.ndarray]  # noqa: UP007


class RuleState:
    """Reasons, offending values, details and flags of one partition, filled rule by rule.

    A row fails at most once: :meth:`reject` only touches rows that are still open, so the first
    rule a row fails decides its reason.
    """

    def __init__(self, n_rows: int) -> None:
        self.open = np.ones(n_rows, dtype=bool)
        self.reason = np.full(n_rows, None, dtype=object)
        self.value = np.full(n_rows, None, dtype=object)
        self.detail = np.full(n_rows, None, dtype=object)
        self.flags: dict[FlagCode, np.ndarray] = {}

    def reject(self, code: ReasonCode, mask: np.ndarray, *, detail: DetailSource, value: ValueSource = None) -> None:
        """Reject the open rows where ``mask`` is true, with where and by how much they failed.

        Parameters
        ----------
        code : ReasonCode
            Reason of the newly rejected rows.
        mask : numpy.ndarray
            Rows that fail the rule. Rows already rejected keep their first reason.
        detail : Detail, numpy.ndarray or callable
            One :class:`~compute.contract.details.Detail` for every row, an array of them
            aligned with the rows, or a function that takes the positions of the newly
            rejected rows and returns one per position, so details are built only for them.
        value : numpy.ndarray, pandas.Series or callable, optional
            The offending value, aligned with the rows or built like ``detail``.

        Raises
        ------
        ValueError
            If a detail's kind is not declared for ``code``.
        """
        hit = np.flatnonzero(self.open & np.asarray(mask, dtype=bool))
        if hit.size == 0:
            return
        details = [detail] * hit.size if isinstance(detail, Detail) else _pick_details(detail, hit)
        for kind in {item.kind for item in details}:
            check_detail_kind(code, kind)
        self.open[hit] = False
        self.reason[hit] = code.value
        if value is not None:
            self.value[hit] = [format_value(v) for v in _pick(value, hit)]
        for position, item in zip(hit, details, strict=True):
            self.detail[position] = item

    def flag(self, code: FlagCode, mask: np.ndarray) -> None:
        """Mark rows with ``code``; only rows that end up accepted keep their flags."""
        previous = self.flags.get(code)
        mask = np.asarray(mask, dtype=bool)
        self.flags[code] = mask if previous is None else previous | mask

    def flag_text(self) -> np.ndarray:
        """Return per row the flag codes joined by commas, or ``None`` without flags."""
        text = np.full(self.open.size, None, dtype=object)
        for code, mask in self.flags.items():
            for position in np.flatnonzero(mask & self.open):
                text[position] = code.value if text[position] is None else f"{text[position]},{code.value}"
        return text

    def rejects(self, dataset: str, keys: pd.Series) -> pd.DataFrame:
        """Return one reject row per rejected row: :data:`REJECT_COLUMNS`, then :data:`DETAIL_COLUMNS`.

        ``detail`` is the English text of each row's :class:`~compute.contract.details.Detail`.
        """
        rejected = np.flatnonzero(~self.open)
        key_values = keys.iloc[rejected].to_numpy(dtype=object, na_value=None)
        texts, kinds, params = _render_details_en(self.detail[rejected])
        frame = pd.DataFrame(
            {
                c.DATASET: pd.Series([dataset] * rejected.size, dtype="str"),
                c.ROW_KEY: pd.Series(key_values, dtype="str"),
                c.REASON: pd.Series(self.reason[rejected], dtype="str"),
                c.VALUE: pd.Series(self.value[rejected], dtype="str"),
                c.DETAIL: pd.Series(texts, dtype="str"),
                DETAIL_KIND: pd.Series(kinds, dtype="str"),
                DETAIL_PARAMS: pd.Series(params, dtype="str"),
            }
        )
        return frame[[*REJECT_COLUMNS, *DETAIL_COLUMNS]]


def _render_details_en(details: np.ndarray) -> tuple[list[str], list[str], list[str]]:
    """Return per detail its English text, its kind and its parameters as JSON."""
    # Rules often share one Detail object between rows, so each distinct object is rendered once.
    rendered: dict[int, tuple[str, str, str]] = {}
    texts, kinds, params = [], [], []
    for item in details:
        columns = rendered.get(id(item))
        if columns is None:
            columns = rendered[id(item)] = (item.text("en"), item.kind, item.params_json())
        texts.append(columns[0])
        kinds.append(columns[1])
        params.append(columns[2])
    return texts, kinds, params


def _pick(source: ValueSource, positions: np.ndarray) -> Sequence[object]:
    if callable(source):
        return source(positions)
    picked: Sequence[object] = np.asarray(source, dtype=object)[positions]
    return picked


def _pick_details(source: Callable[[np.ndarray], Sequence[Detail]] | np.ndarray, positions: np.ndarray) -> list[Detail]:
    picked = list(source(positions)) if callable(source) else list(np.asarray(source, dtype=object)[positions])
    for item in picked:
        if not isinstance(item, Detail):
            raise TypeError(f"a rejected row needs a Detail, got {type(item).__name__} {item!r}")
    return picked


def objects_where(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Return an object array with ``values`` where ``mask`` is true and ``None`` elsewhere."""
    out = np.full(mask.shape, None, dtype=object)
    out[mask] = np.asarray(values, dtype=object)[mask]
    return out


def format_value(value: object, max_chars: int = MAX_VALUE_CHARS) -> str | None:
    """Return ``value`` as one line of text of at most ``max_chars`` for a reject row.

    Geometry is WKT, floats are rounded to 6 significant digits, and a list or array is a
    JSON-like list whose items stop with ``… (N items)`` before the limit.
    """
    if value is None:
        return None
    if isinstance(value, shapely.Geometry):
        text = shapely.to_wkt(value, rounding_precision=7)
    elif isinstance(value, (bytes, bytearray)):
        text = "0x" + bytes(value[:40]).hex() + ("..." if len(value) > 40 else "")
    elif isinstance(value, (float, np.floating)):
        text = "NaN" if np.isnan(value) else f"{float(value):.6g}"
    elif isinstance(value, (np.ndarray, list, tuple)):
        text = _list_text(value, max_chars)
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def _list_text(values: np.ndarray | list[object] | tuple[object, ...], max_chars: int) -> str:
    """Return the items of ``values`` as ``[a, b]``, or as ``[a, … (N items)]`` when not all of them fit ``max_chars``."""
    sequence = np.ravel(values) if isinstance(values, np.ndarray) else values
    # Items are rendered only until the text is too long, so a list of thousands costs a few items.
    items: list[str] = []
    length = 1
    for item in sequence:
        items.append(_item_text(item, max_chars))
        length += len(items[-1]) + 2
        if length > max_chars + 1:
            break
    whole = "[" + ", ".join(items) + "]"
    if len(items) == len(sequence) and len(whole) <= max_chars:
        return whole

    suffix = f"… ({len(sequence)} item{'s' if len(sequence) != 1 else ''})]"
    shown_items: list[str] = []
    used = 1 + len(suffix)
    for text in items:
        if used + len(text) + 2 > max_chars:
            break
        shown_items.append(text)
        used += len(text) + 2
    return "[" + "".join(f"{text}, " for text in shown_items) + suffix


def _item_text(item: object, max_chars: int) -> str:
    """Return one list item as JSON-like text: quoted text and times, bare numbers, null for a missing value."""
    if isinstance(item, (np.ndarray, list, tuple)):
        return _list_text(item, max_chars)
    if item is None or item is pd.NaT or item is pd.NA or (isinstance(item, (float, np.floating)) and np.isnan(item)):
        return "null"
    if isinstance(item, np.datetime64):
        return "null" if np.isnat(item) else json.dumps(str(item))
    if isinstance(item, (bool, np.bool_)):
        return "true" if item else "false"
    if isinstance(item, (int, np.integer)):
        return str(int(item))
    if isinstance(item, (float, np.floating)):
        return f"{float(item):.6g}"
    if isinstance(item, pd.Timestamp):
        return json.dumps(item.isoformat())
    return json.dumps(str(item), ensure_ascii=False)


def empty_rejects() -> pd.DataFrame:
    """Return a rejects frame with no rows, the reject and the structured detail columns as text."""
    return pd.DataFrame({name: pd.Series([], dtype="str") for name in (*REJECT_COLUMNS, *DETAIL_COLUMNS)})
