"""Bring one client table into the canonical schema: rename, convert units, cast, reproject.

Dataset-level problems (a missing column, a type that cannot be cast, no GeoParquet metadata, an
unknown CRS) raise :class:`ContractError` here, before any row is looked at.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from compute import columns as c
from compute.contract.errors import ContractError, Phrase, Phrases, phrase
from compute.contract.geometry import geo_metadata_4326, reproject_wkb, resolve_source_crs
from compute.contract.reasons import ErrorCode
from compute.contract.schema import (
    COLUMN_SPECS,
    KEEPS_EXTRA_COLUMNS,
    LOWERCASE_COLUMNS,
    TIMESTAMP_TYPE,
    TIMESTAMPS_TYPE,
    UPPERCASE_COLUMNS,
    ColumnSpec,
    check_dataset,
)
from compute.contract.settings import ColumnMapping, ContractSettings
from compute.contract.units import EPOCH_UNITS, INVERSE_UNITS, UNIT_FACTORS, canonical_unit


def conform_table(dataset: str, table: pa.Table, settings: ContractSettings) -> pa.Table:
    """Return ``table`` in the canonical schema of ``dataset``.

    Columns are renamed and converted as the dataset's :class:`ColumnMapping` specifies, cast to the
    canonical types, and geometry is reprojected to EPSG:4326 when its CRS is another one.
    Optional columns that are absent are added as nulls. The output carries GeoParquet
    metadata for EPSG:4326 when the dataset has geometry.

    Parameters
    ----------
    dataset : str
        One of :data:`~compute.contract.schema.DATASETS`.
    table : pyarrow.Table
        One file or partition as read, with its schema metadata (the GeoParquet ``geo`` key). A
        0-row table whose columns have Arrow type ``null`` is accepted.
    settings : ContractSettings
        Mappings and thresholds.

    Returns
    -------
    pyarrow.Table
        Canonical columns in contract order, then pass-through columns when the mapping keeps them.

    Raises
    ------
    ContractError
        If a required column is missing, a column cannot be cast, the geometry has no GeoParquet
        metadata (and the mapping declares none), its encoding is not WKB, or its CRS is unknown.
    """
    check_dataset(dataset)
    mapping = settings.mapping(dataset)
    source_names = {target: source for source, target in mapping.rename.items()}

    # Stage 1: names.
    _check_unique_columns(dataset, table.column_names, "")
    table = _rename_columns(table, mapping)
    _check_unique_columns(dataset, table.column_names, f"contract.{dataset}.rename")
    _check_required_columns(dataset, table, source_names)

    # Stage 2: one canonical column at a time.
    arrays: list[pa.Array | pa.ChunkedArray] = []
    fields: list[pa.Field] = []
    for spec in COLUMN_SPECS[dataset]:
        arrays.append(_conform_column(dataset, spec, table, mapping, source_names))
        fields.append(pa.field(spec.name, spec.type))

    # Stage 3: pass-through columns.
    keep_extra = mapping.keep_extra_columns
    if keep_extra is None:
        keep_extra = KEEPS_EXTRA_COLUMNS[dataset]
    if keep_extra:
        canonical = {spec.name for spec in COLUMN_SPECS[dataset]}
        for name in table.column_names:
            if name not in canonical:
                arrays.append(table.column(name))
                fields.append(table.schema.field(name))

    metadata = {b"geo": geo_metadata_4326()} if c.GEOMETRY in {f.name for f in fields} else None
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))


def _rename_columns(table: pa.Table, mapping: ColumnMapping) -> pa.Table:
    if not mapping.rename:
        return table
    targets = set(mapping.rename.values())
    names = []
    for name in table.column_names:
        if name in mapping.rename:
            names.append(mapping.rename[name])
        elif name in targets:
            # A column already carrying a canonical name that a rename also produces is dropped
            # below, so the mapped column wins.
            names.append(f"__shadowed__{name}")
        else:
            names.append(name)
    renamed = table.rename_columns(names)
    kept = [name for name in renamed.column_names if not name.startswith("__shadowed__")]
    return renamed.select(kept).replace_schema_metadata(table.schema.metadata)


def _check_unique_columns(dataset: str, names: list[str], after: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            expected = phrase("column_names_unique_after", setting=after) if after else phrase("column_names_unique")
            raise ContractError(ErrorCode.COLUMN_DUPLICATED, dataset, name, expected, phrase("columns_found", columns=str(names)))
        seen.add(name)


def _check_required_columns(dataset: str, table: pa.Table, source_names: dict[str, str]) -> None:
    present = table.column_names
    for spec in COLUMN_SPECS[dataset]:
        if spec.required and spec.name not in present:
            expected = _describe_expected(spec, source_names)
            raise ContractError(ErrorCode.COLUMN_MISSING, dataset, spec.name, expected, _describe_present(spec.name, present))
    if dataset == "trajectories":
        has_vertex_times = c.TIMESTAMPS in present
        has_trip_times = c.START_TIME in present and c.END_TIME in present
        if not (has_vertex_times or has_trip_times):
            raise ContractError(
                ErrorCode.TIME_COLUMNS_MISSING,
                dataset,
                f"{c.TIMESTAMPS} | {c.START_TIME}, {c.END_TIME}",
                phrase("time_columns", timestamps_type=str(TIMESTAMPS_TYPE), timestamp_type=str(TIMESTAMP_TYPE)),
                phrase("columns_found", columns=str(present)),
            )


def _describe_present(wanted: str, present: list[str]) -> Phrases:
    """Return the column list, naming a column that matches ``wanted`` apart from case or spaces."""
    near = [name for name in present if name.strip().lower() == wanted]
    if near:
        return phrase("columns_found_case_differs", columns=str(present), near=near[0])
    return phrase("columns_found", columns=str(present))


def _describe_expected(spec: ColumnSpec, source_names: dict[str, str]) -> Phrases:
    expected = phrase("column_of_type", column=spec.name, type=str(spec.type))
    if spec.name in source_names:
        expected += phrase("renamed_from", source=source_names[spec.name])
    return expected


def _conform_column(
    dataset: str,
    spec: ColumnSpec,
    table: pa.Table,
    mapping: ColumnMapping,
    source_names: dict[str, str],
) -> pa.Array | pa.ChunkedArray:
    if spec.name not in table.column_names:
        return pa.nulls(table.num_rows, spec.type)
    column = table.column(spec.name).combine_chunks()
    unit = mapping.units.get(spec.name, canonical_unit(spec.kind))
    source = source_names.get(spec.name, spec.name)

    if spec.kind == "geometry":
        source_crs = resolve_source_crs(dataset, source, table.schema, column.type, mapping)
        return reproject_wkb(column, source_crs)
    if spec.kind == "time":
        return _convert_time(dataset, spec, column, unit, mapping.naive_time_zone, source)
    if spec.kind == "time_list":
        return _convert_time_list(dataset, spec, column, unit, mapping.naive_time_zone, source)

    converted = _cast(dataset, spec, column, spec.type, source)
    if spec.kind in UNIT_FACTORS and unit is not None and unit != canonical_unit(spec.kind):
        factor = UNIT_FACTORS[spec.kind][unit]
        if unit in INVERSE_UNITS:
            converted = pc.divide(pa.scalar(factor), converted)
        else:
            converted = pc.multiply(converted, pa.scalar(factor))
    if spec.type == pa.string():
        converted = _normalise_text(dataset, spec.name, converted, mapping)
    return converted


def _cast(dataset: str, spec: ColumnSpec, column: pa.Array, target: pa.DataType, source: str) -> pa.Array:
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), target)
    if pa.types.is_boolean(column.type) and not pa.types.is_boolean(target):
        raise _type_error(dataset, spec, column.type, source)
    source_type = column.type
    if pa.types.is_floating(source_type):
        # NaN is read as null: pandas writes a missing number (also in an integer column) as NaN.
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, source_type), column)
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise _type_error(dataset, spec, source_type, source, phrase("cast_failed", error=_first_line(error))) from error


def _type_error(dataset: str, spec: ColumnSpec, actual: pa.DataType, source: str, reason: Phrases = ()) -> ContractError:
    """Return the type mismatch of ``spec``: the Arrow type that arrived, why it cannot be used, and its source column."""
    actual_text = phrase("arrow_type", type=str(actual)) + reason
    if source != spec.name:
        actual_text += phrase("in_source_column", source=source)
    return ContractError(ErrorCode.TYPE_MISMATCH, dataset, spec.name, phrase("arrow_type", type=str(spec.type)), actual_text)


def _first_line(error: Exception, limit: int = 120) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:limit]


def _normalise_text(dataset: str, name: str, values: pa.Array, mapping: ColumnMapping) -> pa.Array:
    values = pc.utf8_trim_whitespace(values)
    if name in LOWERCASE_COLUMNS.get(dataset, ()):
        values = pc.utf8_lower(values)
    if name in UPPERCASE_COLUMNS.get(dataset, ()):
        values = pc.utf8_upper(values)
    value_map = mapping.values.get(name)
    if value_map:
        series = pd.Series(values.to_pylist(), dtype=object)
        series = series.map(lambda v: value_map.get(v, v) if v is not None else None)
        values = pa.array(series.tolist(), type=pa.string())
    return values


def _convert_time(dataset: str, spec: ColumnSpec, column: pa.Array, unit: str | None, time_zone: str, source: str) -> pa.Array:
    kind = column.type
    if pa.types.is_null(kind):
        return pa.nulls(len(column), TIMESTAMP_TYPE)

    if unit in EPOCH_UNITS:
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise _type_error(dataset, spec, kind, source, phrase("epoch_needs_numbers", unit=unit))
        return _epoch_to_timestamp(column, EPOCH_UNITS[unit])

    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or unit == "iso8601":
        return _parse_iso8601(dataset, spec, column, time_zone, source)

    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            if time_zone == "UTC":
                column = column.cast(pa.timestamp(kind.unit, tz="UTC"))
            else:
                column = pc.assume_timezone(column, time_zone, ambiguous="earliest", nonexistent="earliest")
        return column.cast(TIMESTAMP_TYPE, safe=False)

    if pa.types.is_date(kind):
        return column.cast(pa.timestamp("ms")).cast(TIMESTAMP_TYPE)

    raise _type_error(dataset, spec, kind, source, phrase("epoch_unit_missing", dataset=dataset))


# Largest epoch, in milliseconds, that an int64 stores with room to spare (about 146 million years).
_MAX_ABS_EPOCH_MS = float(2**62)


def _epoch_to_timestamp(column: pa.Array, arrow_unit: str) -> pa.Array:
    """Return epochs as timestamps; NaN, infinite and out-of-range epochs become null.

    The row rules then reject those rows (``key_missing`` for a tachometer ``ts``,
    ``timestamp_count_mismatch`` for a null vertex time, ``time_missing`` for a trip time).
    """
    per_ms = {"s": 1e-3, "ms": 1.0, "us": 1e3, "ns": 1e6}[arrow_unit]
    # safe=False: int64 epochs above 2**53 (every epoch in ns) lose sub-millisecond digits only.
    as_ms = pc.round(pc.divide(column.cast(pa.float64(), safe=False), pa.scalar(per_ms)))
    representable = pc.less_equal(pc.abs(as_ms), pa.scalar(_MAX_ABS_EPOCH_MS))
    as_ms = pc.if_else(representable, as_ms, pa.scalar(None, pa.float64()))
    return as_ms.cast(pa.int64()).cast(TIMESTAMP_TYPE)


def _parse_iso8601(dataset: str, spec: ColumnSpec, column: pa.Array, time_zone: str, source: str) -> pa.Array:
    text = pd.Series(column.to_pylist(), dtype=object)
    try:
        parsed = pd.to_datetime(text, format="ISO8601")
    except (ValueError, TypeError):
        try:
            parsed = pd.to_datetime(text, format="ISO8601", utc=True)
        except (ValueError, TypeError) as error:
            raise _type_error(dataset, spec, column.type, source, phrase("not_iso8601", error=_first_line(error, 100))) from error
    if parsed.dt.tz is None:
        parsed = parsed.dt.tz_localize(time_zone)
    parsed = parsed.dt.tz_convert("UTC").astype("datetime64[ms, UTC]")
    return pa.array(parsed, type=TIMESTAMP_TYPE)


def _convert_time_list(
    dataset: str, spec: ColumnSpec, column: pa.Array, unit: str | None, time_zone: str, source: str
) -> pa.Array:
    kind = column.type
    if pa.types.is_null(kind):
        return pa.nulls(len(column), TIMESTAMPS_TYPE)
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        raise _type_error(dataset, spec, kind, source, phrase("time_list_expected"))
    if pa.types.is_fixed_size_list(kind) or pa.types.is_large_list(kind):
        column = column.cast(pa.list_(kind.value_type))

    # Convert the flat values once, then put the list offsets and nulls back.
    try:
        values = _convert_time(dataset, spec, column.values, unit, time_zone, source)
    except ContractError as error:
        # Report the list type of the column, not the type of its items.
        actual = tuple(_with_list_type(part, str(column.type.value_type), str(kind)) for part in error.actual_phrases)
        raise ContractError(error.code, dataset, spec.name, error.expected_phrases, actual) from error
    offsets = column.offsets
    if column.null_count:
        mask = column.is_null()
        return pa.ListArray.from_arrays(offsets, values, type=TIMESTAMPS_TYPE, mask=mask)
    return pa.ListArray.from_arrays(offsets, values, type=TIMESTAMPS_TYPE)


def _with_list_type(part: Phrase, item_type: str, list_type: str) -> Phrase:
    if part.kind != "arrow_type" or part.params["type"] != item_type:
        return part
    return Phrase(part.kind, {"type": list_type})
