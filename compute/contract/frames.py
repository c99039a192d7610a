"""Row keys, global duplicate keys, and the conformed table as the frame validation expects."""

from __future__ import annotations

import struct
from collections.abc import Iterable

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from compute import columns as c
from compute.contract.schema import GEOMETRY_DATASETS, KEY_COLUMNS, check_dataset
from compute.contract.state import objects_where

# Raw WKB of rows whose geometry could not be decoded, kept so validation can reject them with it.
WKB_UNREADABLE = "geometry_wkb_unreadable"
# Vertex count of trips above the limit, whose geometry and timestamps were dropped unread.
VERTICES_OVER_LIMIT = "vertices_over_limit"


def to_frame(dataset: str, table: pa.Table, *, max_vertices: int | None = None) -> pd.DataFrame:
    """Return a conformed table as pandas, with geometry decoded into a GeoDataFrame (EPSG:4326).

    Geometry that cannot be decoded becomes missing, and its bytes go to the column
    :data:`WKB_UNREADABLE` (present only when such a row exists). List columns stay object
    columns of numpy arrays, the way ``pyarrow.Table.to_pandas`` returns them.

    With ``max_vertices``, a trip with more vertices (counted in the Arrow buffers, see
    :func:`line_vertex_counts`) is neither converted nor decoded: its geometry and timestamps
    become null and its count goes to :data:`VERTICES_OVER_LIMIT`, which validation rejects as
    ``geometry_too_large``. One such row would otherwise take gigabytes of Python objects.
    """
    check_dataset(dataset)
    over: np.ndarray | None = None
    if dataset == "trajectories" and max_vertices is not None and table.num_rows:
        counts = line_vertex_counts(table)
        if (counts > max_vertices).any():
            over = np.where(counts > max_vertices, counts, 0)
            table = _drop_values(table, over > 0, (c.GEOMETRY, c.TIMESTAMPS))
    frame = table.to_pandas(ignore_metadata=True)
    if over is not None:
        frame[VERTICES_OVER_LIMIT] = over
    if dataset not in GEOMETRY_DATASETS:
        return frame

    return decode_geometry(frame)


def line_vertex_counts(table: pa.Table) -> np.ndarray:
    """Return per row the larger of its timestamp count and the vertex count its WKB LineString holds.

    Both come from the Arrow buffers without decoding anything: the list offsets of
    ``timestamps``, and the count in the WKB header (ISO or EWKB, either byte order). The header's
    count is capped at what the row's bytes have room for at 16 bytes per vertex, so that a
    damaged header does not count.
    Rows of other geometry types, and null or short rows, count 0 from the geometry.
    """
    counts = np.zeros(table.num_rows, dtype=np.int64)
    if c.TIMESTAMPS in table.column_names:
        lengths = pc.list_value_length(table[c.TIMESTAMPS]).to_numpy(zero_copy_only=False)
        counts = np.maximum(counts, np.nan_to_num(lengths.astype(np.float64)).astype(np.int64))
    if c.GEOMETRY in table.column_names:
        geometry = table[c.GEOMETRY]
        if pa.types.is_binary(geometry.type) or pa.types.is_large_binary(geometry.type):
            counts = np.maximum(counts, _wkb_line_counts(geometry.combine_chunks() if geometry.num_chunks != 1 else geometry.chunk(0)))
    return counts


def _wkb_line_counts(geometry: pa.Array) -> np.ndarray:
    n = len(geometry)
    offset_type = np.int64 if pa.types.is_large_binary(geometry.type) else np.int32
    offsets = np.frombuffer(geometry.buffers()[1], dtype=offset_type)[geometry.offset: geometry.offset + n + 1].astype(np.int64)
    data = np.frombuffer(geometry.buffers()[2], dtype=np.uint8) if geometry.buffers()[2] is not None else np.zeros(0, np.uint8)
    start, size = offsets[:-1], np.diff(offsets)
    valid = np.asarray(geometry.is_valid().to_numpy(zero_copy_only=False), dtype=bool) & (size >= 9)
    out = np.zeros(n, dtype=np.int64)
    rows = np.flatnonzero(valid)
    if rows.size == 0:
        return out
    head = data[start[rows, None] + np.arange(13)[None, :].clip(max=size[rows, None] - 1)]
    little = head[:, 0] == 1
    kind = np.where(little, head[:, 1:5].copy().view("<u4")[:, 0], head[:, 1:5].copy().view(">u4")[:, 0]).astype(np.int64)
    has_srid = (kind & 0x20000000) != 0
    is_line = (kind & 0xFFFF) % 1000 == 2
    at_nine = head[:, 9:13].copy()
    count_at_5 = np.where(little, head[:, 5:9].copy().view("<u4")[:, 0], head[:, 5:9].copy().view(">u4")[:, 0]).astype(np.int64)
    count_at_9 = np.where(little, at_nine.view("<u4")[:, 0], at_nine.view(">u4")[:, 0]).astype(np.int64)
    count = np.where(has_srid, count_at_9, count_at_5)
    payload = size[rows] - np.where(has_srid, 13, 9)
    out[rows] = np.where(is_line, np.minimum(count, np.maximum(payload, 0) // 16), 0)
    return out


def _drop_values(table: pa.Table, rows: np.ndarray, names: Iterable[str]) -> pa.Table:
    """Set ``names`` to null in ``rows`` of ``table``."""
    mask = pa.array(rows)
    for name in names:
        if name in table.column_names:
            index = table.column_names.index(name)
            column = table.column(index)
            table = table.set_column(index, table.field(index), pc.if_else(mask, pa.scalar(None, column.type), column))
    return table


def decode_geometry(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` as a GeoDataFrame (EPSG:4326) with WKB bytes in ``geometry`` decoded.

    A GeoDataFrame without WKB bytes is returned as it is. A frame with no rows, or with only
    nulls or shapely objects in ``geometry``, becomes a GeoDataFrame without decoding, so callers
    get the ``crs`` and ``geometry`` attributes on every partition.
    """
    raw = np.asarray(frame[c.GEOMETRY], dtype=object)
    if not any(isinstance(value, (bytes, bytearray)) for value in raw):
        if isinstance(frame, gpd.GeoDataFrame):
            return frame
        frame = frame.copy()
        frame[c.GEOMETRY] = gpd.GeoSeries(raw, index=frame.index, crs="EPSG:4326")
        return gpd.GeoDataFrame(frame, geometry=c.GEOMETRY, crs="EPSG:4326")
    geometries = shapely.from_wkb(raw, on_invalid="ignore")
    unreadable = shapely.is_missing(geometries) & pd.notna(raw)
    frame = frame.copy()
    if unreadable.any():
        frame[WKB_UNREADABLE] = objects_where(unreadable, raw)
    frame[c.GEOMETRY] = geometries
    return gpd.GeoDataFrame(frame, geometry=c.GEOMETRY, crs="EPSG:4326")


def row_keys(dataset: str, frame: pd.DataFrame) -> pd.Series:
    """Return the key of each row as text; ``<NA>`` where a key column is null.

    Tachometer rows are keyed by vehicle and time: ``"{vehicle_id}@{ts ISO 8601 UTC}"``.
    """
    check_dataset(dataset)
    columns = KEY_COLUMNS[dataset]
    first = frame[columns[0]].astype("string")
    if len(columns) == 1:
        return first.rename(c.ROW_KEY)

    times = pd.to_datetime(frame[c.TS], utc=True)
    values = times.to_numpy(dtype="datetime64[ms]")
    text = iso_ms_text(values)
    joined = pc.binary_join_element_wise(pa.array(first, pa.large_string()), text.cast(pa.large_string()), pa.scalar("@", pa.large_string()))
    joined = joined.cast(pa.string())
    return pd.Series(pd.arrays.ArrowStringArray(joined), index=frame.index, name=c.ROW_KEY)


def tachometer_key_parts(frame: pd.DataFrame) -> tuple[np.ndarray, pd.Index, np.ndarray, np.ndarray]:
    """Return the parts of each tachometer row's key without its text.

    They are the vehicle's code (-1 where it is missing), the vehicles the codes index, the time
    in epoch milliseconds, and whether the time is present. Two rows have the same key
    (:func:`row_keys`) exactly when both have a vehicle and a time and both parts are equal.
    """
    vehicle_code, vehicles = pd.factorize(frame[c.VEHICLE_ID].astype("string"))
    times = pd.to_datetime(frame[c.TS], utc=True)
    return vehicle_code, vehicles, times.to_numpy(dtype="datetime64[ms]").astype(np.int64), times.notna().to_numpy(dtype=bool)


#: One ``YYYY-MM-DDTHH:MM:SS.mmmZ`` text as fixed-width fields, and the texts of every second of a day and millisecond.
_ISO_MS = np.dtype([("date", "S10"), ("t", "S1"), ("hms", "S8"), ("dot", "S1"), ("milli", "S3"), ("z", "S1")])
_HMS = np.array([f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}".encode() for s in range(86_400)], dtype="S8")
_MILLI = np.array([f"{i:03d}".encode() for i in range(1000)], dtype="S3")
_MS_PER_DAY = 86_400_000


def iso_ms_text(values: np.ndarray) -> pa.Array:
    """Return ``datetime64[ms]`` values as ISO 8601 UTC text with milliseconds and ``Z``; null for NaT.

    The text equals ``numpy.datetime_as_string(values, unit="ms") + "Z"``. numpy's formatting and
    the conversion of its unicode array took about 2.5 us a record, most of validating a
    tachometer piece. Here each record is a fixed-width record of date, time of day and
    milliseconds, taken from tables, and the records' bytes become the Arrow string buffer.
    Years before 1000 and after 9999 fall back to numpy.
    """
    missing = np.isnat(values)
    in_range = (values >= np.datetime64("1000-01-01", "ms")) & (values < np.datetime64("10000-01-01", "ms"))
    if not (in_range | missing).all():
        text = np.char.add(np.datetime_as_string(values, unit="ms"), "Z").astype(object)
        text[missing] = None
        return pa.array(text, pa.string())
    ms = np.where(missing, 0, values.astype(np.int64)) if missing.any() else values.astype(np.int64)
    days = np.floor_divide(ms, _MS_PER_DAY)
    first_day = int(days.min()) if len(days) else 0
    span = days - first_day
    if len(days) and span.max() < 100_000:
        day_numbers, day_of_row = first_day + np.arange(int(span.max()) + 1), span
    else:
        day_numbers, day_of_row = np.unique(days, return_inverse=True)
    of_day = (ms - days * _MS_PER_DAY).astype(np.int32)
    seconds = of_day // 1000
    records = np.empty(len(ms), _ISO_MS)
    records["date"] = np.datetime_as_string(day_numbers.astype("datetime64[D]")).astype("S10")[day_of_row]
    records["t"], records["dot"], records["z"] = b"T", b".", b"Z"
    records["hms"] = _HMS[seconds]
    records["milli"] = _MILLI[of_day - seconds * 1000]
    width = _ISO_MS.itemsize
    offsets = pa.py_buffer(np.arange(0, (len(ms) + 1) * width, width, dtype=np.int32))
    validity = pa.array(~missing).buffers()[1] if missing.any() else None
    return pa.Array.from_buffers(pa.string(), len(ms), [validity, offsets, pa.py_buffer(records)], null_count=int(missing.sum()))


def find_duplicate_keys(dataset: str, keys: Iterable[pd.Series | pd.DataFrame]) -> np.ndarray:
    """Return the keys that occur more than once across all partitions of ``dataset``.

    Parameters
    ----------
    dataset : str
        Dataset name; it decides how a frame's key is built (see :func:`row_keys`).
    keys : iterable of pandas.Series or pandas.DataFrame
        Per partition, either the key text (as from :func:`row_keys`) or the conformed frame.

    Returns
    -------
    numpy.ndarray
        The duplicated keys as ``str``, sorted; nulls are left out because they fail as
        ``key_missing`` instead.
    """
    check_dataset(dataset)
    parts = [row_keys(dataset, part) if isinstance(part, pd.DataFrame) else part.astype("string") for part in keys]
    if not parts:
        return np.array([], dtype=object)
    every_key = pd.concat(parts, ignore_index=True).dropna()
    counts = every_key.value_counts()
    return np.sort(counts.index[counts > 1].to_numpy(dtype=object))


def describe_unreadable_wkb(raw: bytes | bytearray) -> tuple[int, int] | None:
    """Return ``(geometry type code, point count)`` of a LineString WKB header, else ``None``.

    Used to tell a one-vertex LineString (which GEOS cannot build) from corrupt bytes.
    """
    if not isinstance(raw, (bytes, bytearray)) or len(raw) < 9:
        return None
    order = "<" if raw[0] == 1 else ">"
    (type_code,) = struct.unpack(order + "I", raw[1:5])
    base_type = (type_code & 0x0FFFFFFF) % 1000
    if base_type != 2:
        return None
    offset = 9 if not type_code & 0x20000000 else 13  # EWKB with an SRID carries 4 more bytes
    if len(raw) < offset:
        return None
    (count,) = struct.unpack(order + "I", raw[offset - 4 : offset])
    return base_type, count
