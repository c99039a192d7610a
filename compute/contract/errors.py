"""Errors of the input contract.

A dataset-level error has a code (:class:`~compute.contract.reasons.ErrorCode`), the dataset and
column it concerns, and what the contract expects and what arrived. Both of the latter are
:class:`Phrase` sequences: a kind of text, declared in :data:`ERROR_TEXT_KINDS`, and its
parameters (column names, Arrow types, paths). The templates of every kind are registered in
Japanese and English in :mod:`compute.contract.messages` under ``contract.error_text.<kind>``, so
one error gives the English ``str()`` for logs and the Japanese or English text of a report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from compute.contract import messages as _messages  # also registers the templates
from compute.contract.reasons import ErrorCode
from compute.i18n import message

# Kind of an expected or actual text -> names of its parameters. Every kind has a template per
# language under "contract.error_text.<kind>". Values are shown as they are in every language:
# they are names, types, paths or a reader's own error text.
ERROR_TEXT_KINDS: dict[str, tuple[str, ...]] = {
    # Text built outside this catalogue, shown unchanged in every language (an older manifest, or
    # a caller that passes a plain string).
    "text": ("text",),
    "parquet_files_in_folder": ("dataset",),
    "no_parquet_files": ("folder",),
    # Between the items of a list of phrases.
    "list_separator": (),
    "parquet": (),
    "reader_failed": ("path", "error"),
    "column_names_unique": (),
    "column_names_unique_after": ("setting",),
    "columns_found": ("columns",),
    "columns_found_case_differs": ("columns", "near"),
    "column_of_type": ("column", "type"),
    "renamed_from": ("source",),
    "time_columns": ("timestamps_type", "timestamp_type"),
    "arrow_type": ("type",),
    "cast_failed": ("error",),
    "epoch_needs_numbers": ("unit",),
    "epoch_unit_missing": ("dataset",),
    "not_iso8601": ("error",),
    "time_list_expected": (),
    "in_source_column": ("source",),
    "geo_metadata_wkb_crs": (),
    "no_geo_key": (),
    "geo_not_json": ("error",),
    "geo_without_columns": ("value",),
    "geo_column_absent": ("column", "columns"),
    "wkb_binary": (),
    "encoding": ("encoding",),
    "crs_projjson_or_epsg": (),
    "crs_null": (),
    "crs_known_to_pyproj": (),
    "crs_value": ("value",),
}


@dataclass(frozen=True)
class Phrase:
    """One part of an expected or actual text: a kind of :data:`ERROR_TEXT_KINDS` and its parameters.

    Raises
    ------
    ValueError
        If ``kind`` is not declared or ``params`` do not have exactly the declared names.
    """

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _messages.check_kind_params("error text kind", self.kind, self.params, ERROR_TEXT_KINDS, "ERROR_TEXT_KINDS")

    def text(self, lang: str = "en") -> str:
        """Return the phrase as text in ``lang``."""
        return message(f"contract.error_text.{self.kind}", lang, **self.params)

    def to_dict(self) -> dict[str, Any]:
        """Return the phrase as plain fields for a manifest."""
        return {"kind": self.kind, "params": dict(self.params)}


Phrases = tuple[Phrase, ...]


def phrase(kind: str, /, **params: Any) -> Phrases:
    """Return a text of one phrase of ``kind`` with ``params``."""
    return (Phrase(kind, params),)


def render_phrases(phrases: Sequence[Phrase], lang: str) -> str:
    """Return ``phrases`` as one text in ``lang``."""
    return "".join(part.text(lang) for part in phrases)


def _as_phrases(value: str | Sequence[Phrase]) -> Phrases:
    if isinstance(value, str):
        return phrase("text", text=value)
    return tuple(value)


class ContractError(ValueError):
    """A dataset cannot be read under the contract; the run stops before any compute.

    Parameters
    ----------
    code : ErrorCode or str
        Which dataset-level rule failed.
    dataset, column : str
        Where it failed (``column`` is ``""`` when the whole dataset is concerned).
    expected, actual : str or sequence of Phrase
        What the contract expects and what arrived. A plain string is shown unchanged in every
        language, so the readers build phrases.

    Attributes
    ----------
    expected, actual : str
        The English texts.
    expected_phrases, actual_phrases : tuple of Phrase
        The structured texts, which :meth:`message` renders in the operator's language.
    hint : str
        What to do, in English; :meth:`message` gives the whole text in Japanese or English.
    """

    def __init__(
        self, code: ErrorCode | str, dataset: str, column: str, expected: str | Sequence[Phrase], actual: str | Sequence[Phrase]
    ) -> None:
        self.code = ErrorCode(code)
        self.dataset = dataset
        self.column = column
        self.expected_phrases = _as_phrases(expected)
        self.actual_phrases = _as_phrases(actual)
        self.expected = render_phrases(self.expected_phrases, "en")
        self.actual = render_phrases(self.actual_phrases, "en")
        self.hint = message(f"contract.error.{self.code.value}.hint", "en", **self._fields("en"))
        super().__init__(self.message("en"))

    def _fields(self, lang: str) -> dict[str, str]:
        return {
            # Several datasets (a dataset_missing error) are listed with the language's comma.
            "dataset": self.dataset.replace(", ", message("contract.error_text.list_separator", lang)),
            "column": self.column,
            "expected": render_phrases(self.expected_phrases, lang),
            "actual": render_phrases(self.actual_phrases, lang),
        }

    def message(self, lang: str = "ja") -> str:
        """Return the error and what to do as one text in ``lang`` (``"ja"`` or ``"en"``)."""
        fields = self._fields(lang)
        text = message(f"contract.error.{self.code.value}", lang, **fields)
        hint = message(f"contract.error.{self.code.value}.hint", lang, **fields)
        return f"{text} {hint}"

    def to_dict(self) -> dict[str, Any]:
        """Return the error as plain fields for a manifest: the English texts and their phrases."""
        return {
            "code": self.code.value,
            **self._fields("en"),
            "hint": self.hint,
            "expected_phrases": [part.to_dict() for part in self.expected_phrases],
            "actual_phrases": [part.to_dict() for part in self.actual_phrases],
        }

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> ContractError:
        """Rebuild an error stored with :meth:`to_dict`; a manifest without phrases keeps its English texts."""
        expected: str | Phrases = fields["expected"]
        actual: str | Phrases = fields["actual"]
        if "expected_phrases" in fields and "actual_phrases" in fields:
            expected = tuple(Phrase(part["kind"], part["params"]) for part in fields["expected_phrases"])
            actual = tuple(Phrase(part["kind"], part["params"]) for part in fields["actual_phrases"])
        return cls(fields["code"], fields["dataset"], fields["column"], expected, actual)

    def __reduce__(self) -> tuple[type[ContractError], tuple[str, str, str, Phrases, Phrases]]:
        # Dask ships exceptions between processes; keep the constructor arguments.
        return (type(self), (self.code.value, self.dataset, self.column, self.expected_phrases, self.actual_phrases))


class BalanceError(RuntimeError):
    """Rows were lost or counted twice: rows in differ from rows accepted plus rows rejected."""


def dataset_missing(dataset: str | Sequence[str], folder: str | Sequence[str]) -> ContractError:
    """Return the dataset-level error for required datasets without Parquet files in their folders.

    Parameters
    ----------
    dataset : str or sequence of str
        The required dataset, or every required dataset that is missing, so that one run
        names them all.
    folder : str or sequence of str
        URL of each dataset's folder that was listed, without a trailing slash.
    """
    datasets = [dataset] if isinstance(dataset, str) else list(dataset)
    folders = [folder] if isinstance(folder, str) else list(folder)
    if not datasets or len(datasets) != len(folders):
        raise ValueError(f"dataset_missing needs one folder per dataset, got {datasets} and {folders}")
    return ContractError(
        ErrorCode.DATASET_MISSING,
        ", ".join(datasets),
        "",
        _listed([phrase("parquet_files_in_folder", dataset=name) for name in datasets]),
        _listed([phrase("no_parquet_files", folder=url) for url in folders]),
    )


def missing_datasets(error: ContractError) -> list[str]:
    """Return the datasets a ``dataset_missing`` error names (one or more)."""
    return error.dataset.split(", ")


def _listed(items: Sequence[Phrases]) -> Phrases:
    """Join texts with the list separator of each language."""
    joined: list[Phrase] = []
    for i, item in enumerate(items):
        if i:
            joined.extend(phrase("list_separator"))
        joined.extend(item)
    return tuple(joined)


def file_unreadable(dataset: str, path: str, error: Exception) -> ContractError:
    """Return the dataset-level error for a file of ``dataset`` that is not readable Parquet.

    Readers call this when ``pyarrow.parquet`` fails on a file footer or body (truncated upload,
    a text file named ``*.parquet``), so the run stops with the file's name in place of an Arrow
    traceback.

    Parameters
    ----------
    dataset : str
        Dataset whose folder contains the file.
    path : str
        Path of the file, as listed in the day's folder.
    error : Exception
        The reader's error; its first line goes into ``actual``, in English in every language.
    """
    first_line = (str(error).splitlines() or [type(error).__name__])[0][:200]
    return ContractError(
        ErrorCode.FILE_UNREADABLE, dataset, "", phrase("parquet"), phrase("reader_failed", path=path, error=first_line)
    )
