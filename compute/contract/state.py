"""Bookkeeping of row-level rules: which rows are still open, and why each other row failed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias, Union

import numpy as np
import pandas as pd
import shapely

from compute import columns as c
from compute.contract.reasons import REJECT_COLUMNS, FlagCode, ReasonCode

MAX_VALUE_CHARS = 160

ValueSource: TypeAlias = Union[Callable[[np.ndarray], Sequence[object]], np.ndarray, pd.Series, None]  # noqa: UP007


class RuleState:
    """Reasons, offending values and flags of one partition, filled rule by rule.

    A row fails at most once: :meth:`reject` only touches rows that are still open, so the first
    rule a row fails decides its reason.
    """

    def __init__(self, n_rows: int) -> None:
        self.open = np.ones(n_rows, dtype=bool)
        self.reason = np.full(n_rows, None, dtype=object)
        self.value = np.full(n_rows, None, dtype=object)
        self.detail = np.full(n_rows, None, dtype=object)
        self.flags: dict[FlagCode, np.ndarray] = {}

    def reject(self, code: ReasonCode, mask: np.ndarray, value: ValueSource = None, detail: ValueSource = None) -> None:
        """Reject the open rows where ``mask`` is true; ``value``/``detail`` give what to show.

        Each of ``value`` and ``detail`` is an array aligned with the rows, or a function that
        takes the positions of the newly rejected rows and returns one item per position, so
        expensive text is built only for rejected rows.
        """
        hit = np.flatnonzero(self.open & np.asarray(mask, dtype=bool))
        if hit.size == 0:
            return
        self.open[hit] = False
        self.reason[hit] = code.value
        if value is not None:
            self.value[hit] = [format_value(v) for v in _pick(value, hit)]
        if detail is not None:
            self.detail[hit] = [None if d is None else str(d) for d in _pick(detail, hit)]

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
        """Return one reject row per rejected row, with the columns :data:`REJECT_COLUMNS`."""
        rejected = np.flatnonzero(~self.open)
        key_values = keys.to_numpy(dtype=object, na_value=None)[rejected]
        frame = pd.DataFrame(
            {
                c.DATASET: pd.Series([dataset] * rejected.size, dtype="str"),
                c.ROW_KEY: pd.Series(key_values, dtype="str"),
                c.REASON: pd.Series(self.reason[rejected], dtype="str"),
                c.VALUE: pd.Series(self.value[rejected], dtype="str"),
                c.DETAIL: pd.Series(self.detail[rejected], dtype="str"),
            }
        )
        return frame[list(REJECT_COLUMNS)]


def _pick(source: ValueSource, positions: np.ndarray) -> Sequence[object]:
    if callable(source):
        return source(positions)
    picked: Sequence[object] = np.asarray(source, dtype=object)[positions]
    return picked


def objects_where(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Return an object array with ``values`` where ``mask`` is true and ``None`` elsewhere."""
    out = np.full(mask.shape, None, dtype=object)
    out[mask] = np.asarray(values, dtype=object)[mask]
    return out


def format_value(value: object) -> str | None:
    """Return ``value`` as short text for a reject row (WKT for geometry, rounded floats)."""
    if value is None:
        return None
    if isinstance(value, shapely.Geometry):
        text = shapely.to_wkt(value, rounding_precision=7)
    elif isinstance(value, (bytes, bytearray)):
        text = "0x" + bytes(value[:40]).hex() + ("..." if len(value) > 40 else "")
    elif isinstance(value, (float, np.floating)):
        text = "NaN" if np.isnan(value) else f"{float(value):.6g}"
    elif isinstance(value, np.ndarray):
        text = np.array2string(value, threshold=8, max_line_width=10_000)
    else:
        text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def empty_rejects() -> pd.DataFrame:
    """Return a rejects frame with no rows and the reject columns as text."""
    return pd.DataFrame({name: pd.Series([], dtype="str") for name in REJECT_COLUMNS})
