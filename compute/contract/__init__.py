"""The input contract: schemas, column mapping, validation rules, reason codes and reports.

Public API (pure functions, no I/O; ``compute.pipeline`` maps them over partitions)::

    table = conform_table("trajectories", table, settings.contract)    # raises ContractError
    frame = to_frame("trajectories", table)                             # shapely geometry, EPSG:4326
    accepted, rejects = validate_rows("trajectories", frame, context, piece=0)
    summary.record("trajectories", len(frame), accepted, rejects)
    check_balance(summary)                                              # raises BalanceError
    markdown = render_report(summary, "ja", render_details(rejects, "ja"))

Invariants
----------
* Every input row ends up exactly once in accepted or in rejects (checked by ``check_balance``).
* Of the rows of one key in the partitions searched together (``ValidationContext.repeated_keys``,
  else one partition), at most one is accepted: the first of identical copies, and none of
  copies that differ (``compute.contract.repeats``).
* Reason codes and flag codes are never renamed: clients filter rejects by them.
* Every rejected row has a detail kind and parameters; its ``detail`` text in the rejects file is
  English, and reports render it in the operator's language from the kind and parameters.
* A dataset-level problem raises ``ContractError`` before any row is validated.
"""

from __future__ import annotations

from compute.contract import messages as _messages  # noqa: F401  (registers ja/en texts)
from compute.contract.conform import conform_table
from compute.contract.details import DETAIL_KINDS, REASON_DETAILS, Detail, render_detail, render_details
from compute.contract.errors import BalanceError, ContractError, dataset_missing, file_unreadable
from compute.contract.frames import WKB_UNREADABLE, find_duplicate_keys, row_keys, to_frame
from compute.contract.reasons import (
    DETAIL_COLUMNS,
    DETAIL_KIND,
    DETAIL_PARAMS,
    REJECT_COLUMNS,
    RULE_ORDER,
    ErrorCode,
    FlagCode,
    ReasonCode,
)
from compute.contract.repeats import (
    RepeatedKeys,
    content_hashes,
    find_repeated_keys,
    key_hashes,
    key_occurrences,
    repeated_keys_in,
)
from compute.contract.report import render_report
from compute.contract.schema import (
    AREA_TYPES,
    COLUMN_SPECS,
    DATASETS,
    FUEL_TYPES,
    KEY_COLUMNS,
    REQUIRED_DATASETS,
    SCHEMAS,
    TEST_CYCLES,
    VEHICLE_CLASSES,
)
from compute.contract.settings import ColumnMapping, ContractSettings, ContractThresholds
from compute.contract.state import empty_rejects
from compute.contract.summary import DatasetSummary, ValidationSummary, check_balance, summarize_partition
from compute.contract.validate import CONTRACT_FLAGS, ValidationContext, rejected_vehicle_reasons, validate_rows

__all__ = [
    "AREA_TYPES",
    "COLUMN_SPECS",
    "CONTRACT_FLAGS",
    "DATASETS",
    "DETAIL_COLUMNS",
    "DETAIL_KIND",
    "DETAIL_KINDS",
    "DETAIL_PARAMS",
    "FUEL_TYPES",
    "KEY_COLUMNS",
    "REASON_DETAILS",
    "REJECT_COLUMNS",
    "REQUIRED_DATASETS",
    "RULE_ORDER",
    "SCHEMAS",
    "TEST_CYCLES",
    "VEHICLE_CLASSES",
    "WKB_UNREADABLE",
    "BalanceError",
    "ColumnMapping",
    "ContractError",
    "dataset_missing",
    "ContractSettings",
    "ContractThresholds",
    "DatasetSummary",
    "Detail",
    "ErrorCode",
    "FlagCode",
    "ReasonCode",
    "RepeatedKeys",
    "ValidationContext",
    "ValidationSummary",
    "check_balance",
    "conform_table",
    "content_hashes",
    "empty_rejects",
    "file_unreadable",
    "find_duplicate_keys",
    "find_repeated_keys",
    "key_occurrences",
    "rejected_vehicle_reasons",
    "render_detail",
    "render_details",
    "render_report",
    "repeated_keys_in",
    "row_keys",
    "key_hashes",
    "summarize_partition",
    "to_frame",
    "validate_rows",
]
