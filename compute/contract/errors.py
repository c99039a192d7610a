"""Errors of the input contract."""

from __future__ import annotations

from compute.contract.reasons import ErrorCode
from compute.i18n import message


class ContractError(ValueError):
    """A dataset cannot be read under the contract; the run stops before any compute.

    Attributes
    ----------
    code : ErrorCode
        Which dataset-level rule failed.
    dataset, column : str
        Where it failed (``column`` is ``""`` when the whole dataset is concerned).
    expected, actual : str
        What the contract expects and what arrived.
    hint : str
        What to do, in English; :meth:`message` gives the whole text in Japanese or English.
    """

    def __init__(self, code: ErrorCode | str, dataset: str, column: str, expected: str, actual: str) -> None:
        self.code = ErrorCode(code)
        self.dataset = dataset
        self.column = column
        self.expected = expected
        self.actual = actual
        self.hint = message(f"contract.error.{self.code.value}.hint", "en", **self._fields())
        super().__init__(self.message("en"))

    def _fields(self) -> dict[str, str]:
        return {
            "dataset": self.dataset,
            "column": self.column,
            "expected": self.expected,
            "actual": self.actual,
        }

    def message(self, lang: str = "ja") -> str:
        """Return the error and what to do as one text in ``lang`` (``"ja"`` or ``"en"``)."""
        fields = self._fields()
        text = message(f"contract.error.{self.code.value}", lang, **fields)
        hint = message(f"contract.error.{self.code.value}.hint", lang, **fields)
        return f"{text} {hint}"

    def to_dict(self) -> dict[str, str]:
        """Return the error as plain fields for a manifest."""
        return {"code": self.code.value, **self._fields(), "hint": self.hint}

    @classmethod
    def from_dict(cls, fields: dict[str, str]) -> ContractError:
        """Rebuild an error stored with :meth:`to_dict`."""
        return cls(fields["code"], fields["dataset"], fields["column"], fields["expected"], fields["actual"])

    def __reduce__(self) -> tuple[type[ContractError], tuple[str, str, str, str, str]]:
        # Dask ships exceptions between processes; keep the constructor arguments.
        return (type(self), (self.code.value, self.dataset, self.column, self.expected, self.actual))


class BalanceError(RuntimeError):
    """Rows were lost or counted twice: rows in differ from rows accepted plus rows rejected."""


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
        The reader's error; its first line goes into ``actual``.
    """
    first_line = (str(error).splitlines() or [type(error).__name__])[0][:200]
    return ContractError(ErrorCode.FILE_UNREADABLE, dataset, "", "Parquet", f"{path}: {first_line}")
