"""Counts of validation per dataset, and the balance check: rows in = accepted + rejected."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from compute import columns as c
from compute.contract.errors import BalanceError, ContractError
from compute.contract.frames import row_keys
from compute.contract.schema import DATASETS, check_dataset


@dataclass
class DatasetSummary:
    """Validation counts of one dataset, summed over its partitions.

    ``flag_examples`` holds, per flag code, the key of one accepted row that carries it.
    """

    dataset: str
    present: bool = True
    rows_in: int = 0
    accepted: int = 0
    rejected: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)
    flag_examples: dict[str, str] = field(default_factory=dict)

    def add(self, other: DatasetSummary) -> None:
        """Add the counts of ``other`` (another partition of the same dataset)."""
        if other.dataset != self.dataset:
            raise ValueError(f"cannot add counts of {other.dataset!r} to {self.dataset!r}")
        self.present = self.present or other.present
        self.rows_in += other.rows_in
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.by_reason = dict(Counter(self.by_reason) + Counter(other.by_reason))
        self.flags = dict(Counter(self.flags) + Counter(other.flags))
        for code, key in other.flag_examples.items():
            self.flag_examples.setdefault(code, key)


def summarize_partition(dataset: str, rows_in: int, accepted: pd.DataFrame, rejects: pd.DataFrame) -> DatasetSummary:
    """Return the counts of one validated partition.

    ``rows_in`` is the row count before validation; it is counted separately so that
    :func:`check_balance` can catch rows that validation lost.
    """
    check_dataset(dataset)
    summary = DatasetSummary(dataset, True, int(rows_in), len(accepted), len(rejects))
    if len(rejects):
        summary.by_reason = {str(k): int(v) for k, v in rejects[c.REASON].value_counts().items()}
    if len(accepted) and c.CONTRACT_FLAGS in accepted:
        flags = accepted[c.CONTRACT_FLAGS].dropna().astype(str).str.split(",").explode()
        summary.flags = {str(k): int(v) for k, v in flags.value_counts().items()}
        if summary.flags:
            keys = row_keys(dataset, accepted)
            for code in summary.flags:
                having = accepted[c.CONTRACT_FLAGS].fillna("").str.split(",").map(lambda codes, code=code: code in codes)
                summary.flag_examples[code] = str(keys[having.to_numpy(dtype=bool)].iloc[0])
    return summary


@dataclass
class ValidationSummary:
    """Validation counts of one run date over all datasets, and the dataset-level errors."""

    datasets: dict[str, DatasetSummary] = field(default_factory=dict)
    errors: list[ContractError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no dataset-level error occurred."""
        return not self.errors

    def record(self, dataset: str, rows_in: int, accepted: pd.DataFrame, rejects: pd.DataFrame) -> DatasetSummary:
        """Add the counts of one validated partition and return the dataset's running total."""
        return self.add(summarize_partition(dataset, rows_in, accepted, rejects))

    def add(self, partition: DatasetSummary) -> DatasetSummary:
        """Add partition counts made with :func:`summarize_partition` (e.g. on a Dask worker)."""
        total = self.datasets.get(partition.dataset)
        if total is None:
            total = DatasetSummary(partition.dataset)
            self.datasets[partition.dataset] = total
        total.add(partition)
        return total

    def mark_absent(self, dataset: str) -> None:
        """Record that ``dataset`` has no files for the day (allowed for geo_attributes)."""
        check_dataset(dataset)
        self.datasets.setdefault(dataset, DatasetSummary(dataset, present=False)).present = False

    def add_error(self, error: ContractError) -> None:
        """Record a dataset-level error."""
        self.errors.append(error)

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-ready data for the phase manifest."""
        ordered = [name for name in DATASETS if name in self.datasets]
        return {
            "ok": self.ok,
            "datasets": {
                name: {
                    "present": s.present,
                    "rows_in": s.rows_in,
                    "accepted": s.accepted,
                    "rejected": s.rejected,
                    "balanced": s.rows_in == s.accepted + s.rejected,
                    "by_reason": dict(sorted(s.by_reason.items())),
                    "flags": dict(sorted(s.flags.items())),
                    "flag_examples": dict(sorted(s.flag_examples.items())),
                }
                for name, s in ((n, self.datasets[n]) for n in ordered)
            },
            "errors": [error.to_dict() for error in self.errors],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationSummary:
        """Rebuild a summary written by :meth:`to_dict`."""
        summary = cls()
        for name, counts in data.get("datasets", {}).items():
            summary.datasets[name] = DatasetSummary(
                dataset=name,
                present=bool(counts["present"]),
                rows_in=int(counts["rows_in"]),
                accepted=int(counts["accepted"]),
                rejected=int(counts["rejected"]),
                by_reason=dict(counts.get("by_reason", {})),
                flags=dict(counts.get("flags", {})),
                flag_examples=dict(counts.get("flag_examples", {})),
            )
        summary.errors = [ContractError.from_dict(fields) for fields in data.get("errors", [])]
        return summary


def check_balance(summary: ValidationSummary) -> None:
    """Raise if any dataset lost or duplicated rows during validation.

    For every dataset, rows in must equal rows accepted plus rows rejected, and the rejects
    counted by reason must add up to the rows rejected.

    Raises
    ------
    BalanceError
        Naming every dataset whose counts do not add up, with the counts.
    """
    problems = []
    for name, counts in summary.datasets.items():
        if counts.rows_in != counts.accepted + counts.rejected:
            problems.append(
                f"{name}: {counts.rows_in} rows in, but {counts.accepted} accepted + {counts.rejected} rejected "
                f"= {counts.accepted + counts.rejected}"
            )
        by_reason = sum(counts.by_reason.values())
        if by_reason != counts.rejected:
            problems.append(f"{name}: {counts.rejected} rows rejected, but the reasons count {by_reason}")
    if problems:
        raise BalanceError(
            "validation row balance does not hold, so rows were lost or counted twice: "
            + "; ".join(problems)
            + ". This is a bug in lm-co2, not in the client data; keep the day's raw input and report it."
        )
