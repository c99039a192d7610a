"""Row keys, global duplicate keys, and the conformed table as the frame validation expects."""

from __future__ import annotations

import struct
from collections.abc import Iterable

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import shapely

from compute import columns as c
from compute.contract.schema import GEOMETRY_DATASETS, KEY_COLUMNS, check_dataset
from compute.contract.state import objects_where

# Raw WKB of rows whose geometry could not be decoded, kept so validation can reject them with it.
WKB_UNREADABLE = "geometry_wkb_unreadable"


def to_frame(dataset: str, table: pa.Table) -> pd.DataFrame:
    """Return a conformed table as pandas, with geometry decoded into a GeoDataFrame (EPSG:4326).

    Geometry that cannot be decoded becomes missing, and its bytes go to the column
    :data:`WKB_UNREADABLE` (present only when such a row exists). List columns stay object
    columns of numpy arrays, the way ``pyarrow.Table.to_pandas`` returns them.
    """
    check_dataset(dataset)
    frame = table.to_pandas(ignore_metadata=True)
    if dataset not in GEOMETRY_DATASETS:
        return frame

    return decode_geometry(frame)


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
    text = pd.Series(np.datetime_as_string(values, unit="ms"), index=frame.index, dtype="string") + "Z"
    text = text.mask(times.isna())
    return (first + "@" + text).rename(c.ROW_KEY)


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
