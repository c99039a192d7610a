"""Reason codes of rejected rows and flags of accepted rows.

The code strings are part of the output contract (they appear in ``rejects`` and in reports), so
a code is never renamed. The meaning and the fix of each code are registered in
:mod:`compute.contract.messages` and documented in ``docs/contract.md``.
"""

from __future__ import annotations

from enum import Enum

from compute import columns as c

# Columns of the rejects file. ``detail`` is English text, whatever the operator's language.
REJECT_COLUMNS: tuple[str, ...] = (c.DATASET, c.ROW_KEY, c.REASON, c.VALUE, c.DETAIL)

# Structured form of ``detail`` in the rejects frame that validation returns: the kind of detail
# and its parameters as a JSON object (see compute.contract.details). Reports render ``detail``
# in the operator's language from them; the rejects file does not store them.
DETAIL_KIND = "detail_kind"
DETAIL_PARAMS = "detail_params"
DETAIL_COLUMNS: tuple[str, ...] = (DETAIL_KIND, DETAIL_PARAMS)


class ReasonCode(str, Enum):
    """Reason a row was rejected. Each rejected row carries exactly one code."""

    KEY_MISSING = "key_missing"
    KEY_DUPLICATED = "key_duplicated"
    ROW_REPEATED = "row_repeated"
    VALUE_MISSING = "value_missing"
    VEHICLE_NOT_IN_MASTER = "vehicle_not_in_master"
    GEOMETRY_MISSING = "geometry_missing"
    GEOMETRY_TOO_LARGE = "geometry_too_large"
    GEOMETRY_UNREADABLE = "geometry_unreadable"
    GEOMETRY_WRONG_TYPE = "geometry_wrong_type"
    GEOMETRY_EMPTY = "geometry_empty"
    GEOMETRY_SINGLE_POINT = "geometry_single_point"
    GEOMETRY_INVALID = "geometry_invalid"
    COORDINATE_OUT_OF_RANGE = "coordinate_out_of_range"
    COORDINATE_NULL_ISLAND = "coordinate_null_island"
    TIME_MISSING = "time_missing"
    TIMESTAMP_COUNT_MISMATCH = "timestamp_count_mismatch"
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    TIMESTAMP_BACKWARDS = "timestamp_backwards"
    SPEED_IMPLAUSIBLE = "speed_implausible"
    VALUE_NEGATIVE = "value_negative"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    FUEL_NEGATIVE = "fuel_negative"
    FUEL_IMPLAUSIBLE = "fuel_implausible"
    VEHICLE_CLASS_UNKNOWN = "vehicle_class_unknown"
    FUEL_TYPE_UNKNOWN = "fuel_type_unknown"
    TEST_CYCLE_UNKNOWN = "test_cycle_unknown"


class FlagCode(str, Enum):
    """A note on an accepted row: the row is kept, but the client should know."""

    GEOMETRY_REPAIRED = "geometry_repaired"
    AREA_TYPE_UNKNOWN = "area_type_unknown"


class ErrorCode(str, Enum):
    """Reason a whole dataset failed before any compute."""

    DATASET_MISSING = "dataset_missing"
    FILE_UNREADABLE = "file_unreadable"
    COLUMN_MISSING = "column_missing"
    COLUMN_DUPLICATED = "column_duplicated"
    TYPE_MISMATCH = "type_mismatch"
    GEO_METADATA_MISSING = "geo_metadata_missing"
    GEOMETRY_ENCODING_UNSUPPORTED = "geometry_encoding_unsupported"
    CRS_UNKNOWN = "crs_unknown"
    TIME_COLUMNS_MISSING = "time_columns_missing"


# Rules per dataset in the order they run; the first rule a row fails decides its reason. A
# LineString WKB with one vertex cannot be decoded, and is reported as geometry_single_point at
# the place of geometry_unreadable.
RULE_ORDER: dict[str, tuple[ReasonCode, ...]] = {
    "trajectories": (
        ReasonCode.KEY_MISSING,
        ReasonCode.KEY_DUPLICATED,
        ReasonCode.ROW_REPEATED,
        ReasonCode.VALUE_MISSING,
        ReasonCode.VEHICLE_NOT_IN_MASTER,
        ReasonCode.GEOMETRY_TOO_LARGE,
        ReasonCode.GEOMETRY_MISSING,
        ReasonCode.GEOMETRY_UNREADABLE,
        ReasonCode.GEOMETRY_WRONG_TYPE,
        ReasonCode.GEOMETRY_EMPTY,
        ReasonCode.GEOMETRY_SINGLE_POINT,
        ReasonCode.GEOMETRY_INVALID,
        ReasonCode.COORDINATE_OUT_OF_RANGE,
        ReasonCode.COORDINATE_NULL_ISLAND,
        ReasonCode.TIME_MISSING,
        ReasonCode.TIMESTAMP_COUNT_MISMATCH,
        ReasonCode.TIMESTAMP_OUT_OF_RANGE,
        ReasonCode.TIMESTAMP_BACKWARDS,
        ReasonCode.SPEED_IMPLAUSIBLE,
        ReasonCode.VALUE_NEGATIVE,
        ReasonCode.VALUE_OUT_OF_RANGE,
    ),
    "vehicles": (
        ReasonCode.KEY_MISSING,
        ReasonCode.KEY_DUPLICATED,
        ReasonCode.ROW_REPEATED,
        ReasonCode.VEHICLE_CLASS_UNKNOWN,
        ReasonCode.FUEL_TYPE_UNKNOWN,
        ReasonCode.TEST_CYCLE_UNKNOWN,
        ReasonCode.VALUE_NEGATIVE,
        ReasonCode.VALUE_OUT_OF_RANGE,
    ),
    "tachometer": (
        ReasonCode.KEY_MISSING,
        ReasonCode.KEY_DUPLICATED,
        ReasonCode.ROW_REPEATED,
        ReasonCode.VEHICLE_NOT_IN_MASTER,
        ReasonCode.TIMESTAMP_OUT_OF_RANGE,
        ReasonCode.VALUE_MISSING,
        ReasonCode.VALUE_NEGATIVE,
        ReasonCode.SPEED_IMPLAUSIBLE,
        ReasonCode.VALUE_OUT_OF_RANGE,
        ReasonCode.FUEL_NEGATIVE,
        ReasonCode.FUEL_IMPLAUSIBLE,
    ),
    "geo_attributes": (
        ReasonCode.KEY_MISSING,
        ReasonCode.KEY_DUPLICATED,
        ReasonCode.ROW_REPEATED,
        ReasonCode.VALUE_MISSING,
        ReasonCode.GEOMETRY_MISSING,
        ReasonCode.GEOMETRY_UNREADABLE,
        ReasonCode.GEOMETRY_WRONG_TYPE,
        ReasonCode.GEOMETRY_EMPTY,
        ReasonCode.GEOMETRY_SINGLE_POINT,
        ReasonCode.GEOMETRY_INVALID,
        ReasonCode.COORDINATE_OUT_OF_RANGE,
        ReasonCode.COORDINATE_NULL_ISLAND,
        ReasonCode.VALUE_OUT_OF_RANGE,
    ),
}
