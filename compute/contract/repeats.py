"""Keys that repeat in a day, split into exact repeats and conflicting copies.

Telematics feeds often send a record again unchanged. When every copy of a repeated key has the
same content in every column, validation keeps the first copy and rejects each further copy as
``row_repeated``. When the copies of a key differ in any column, none of them can be trusted as
the right one, and every copy is rejected as ``key_duplicated``.

The first copy is the one with the lowest (piece, row): the position of its partition in the
day, then its row within the partition. Partitions are numbered in file order (files sorted by
path, then row groups within a file). Therefore the same copy is kept whether a day is
validated one file at a time (``lm-co2 validate``) or in pieces of row groups on a cluster.

Content is compared through a 64-bit hash of the conformed row over every column, by column
name, with geometry as its WKB bytes (:func:`content_hashes`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from compute import columns as c
from compute.contract.details import Detail
from compute.contract.frames import find_duplicate_keys, row_keys, tachometer_key_parts
from compute.contract.schema import KEY_COLUMNS, check_dataset

# Columns of an occurrences frame (:func:`key_occurrences`) besides ``row_key``.
CONTENT_HASH = "content_hash"
PIECE = "piece"
ROW = "row"

# Hash of a null value, in any column and at any nesting depth.
_NULL_HASH = np.uint64(0x9E3779B97F4A7C15)
# Odd 64-bit multiplier (the FNV-1a prime) that spreads one hash before the next is mixed in.
_MULTIPLIER = np.uint64(0x100000001B3)


@dataclass(frozen=True, eq=False)
class RepeatedKeys:
    """The keys of one dataset that occur more than once in the day, split by content.

    Attributes
    ----------
    conflicting : numpy.ndarray
        Keys whose copies differ in at least one column, as sorted ``str``. Every copy is
        rejected as ``key_duplicated``.
    kept : pandas.DataFrame
        One row per key whose copies are all identical, indexed by the key text, with the
        ``piece`` and ``row`` of the copy to keep. Every other copy is rejected as
        ``row_repeated``.
    sources : mapping or None
        Per piece, ``(file, row of the file, row of the piece)`` where each of its files starts
        (one entry, or one per file for a piece of several small files), so that a
        ``row_repeated`` detail names the file and row of the kept copy. ``None`` when the keys
        were found within one partition whose file is not known. The detail then names the
        row of the partition.
    """

    conflicting: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    kept: pd.DataFrame = field(default_factory=lambda: _positions_frame(np.array([], dtype=object), [], []))
    sources: Mapping[int, Sequence[tuple[str, int, int]]] | None = None

    @property
    def keys(self) -> np.ndarray:
        """Every repeated key, conflicting or identical, as sorted ``str``."""
        return np.sort(np.concatenate([self.conflicting, self.kept.index.to_numpy(dtype=object)]))

    def kept_positions(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return per key the piece and row of its kept copy, or -1 where the key is not in :attr:`kept`.

        ``keys`` is an object array of key text, with ``None`` for a missing key.
        """
        if self.kept.empty:
            missing = np.full(len(keys), -1, dtype=np.int64)
            return missing, missing.copy()

        found = self.kept.index.get_indexer(keys)
        hit = found >= 0
        pieces = np.full(len(keys), -1, dtype=np.int64)
        rows = np.full(len(keys), -1, dtype=np.int64)
        pieces[hit] = self.kept[PIECE].to_numpy(dtype=np.int64)[found[hit]]
        rows[hit] = self.kept[ROW].to_numpy(dtype=np.int64)[found[hit]]
        return pieces, rows

    def kept_copy_details(self, pieces: np.ndarray, rows: np.ndarray) -> list[Detail]:
        """Return the ``row_repeated`` detail of each rejected copy, from the position of its kept copy."""
        if self.sources is None:
            return [Detail("copy_of_partition_row", {"row": int(row)}) for row in rows]

        details = []
        for piece, row in zip(pieces, rows, strict=True):
            file, file_row = self.file_row(int(piece), int(row))
            details.append(Detail("copy_of_file_row", {"file": file, "row": file_row}))
        return details

    def file_row(self, piece: int, row: int) -> tuple[str, int]:
        """Return the file and the row of that file (from 0) of row ``row`` of piece ``piece``; needs :attr:`sources`."""
        assert self.sources is not None
        # The last file of the piece that starts at or before the row contains it.
        file, first_row, piece_row = [part for part in self.sources[piece] if part[2] <= row][-1]
        return file, first_row + row - piece_row


def content_hashes(table: pa.Table) -> np.ndarray:
    """Return a 64-bit hash of each row of ``table`` over every column.

    Columns are taken by name, so two files that order their columns differently give equal
    hashes for equal rows. Text and binary values (WKB geometry included) are hashed by their
    bytes, and lists element by element in order. Numbers and times are hashed by value, as
    ``pandas.util.hash_array`` does it, so 0.0 equals -0.0 and every NaN equals every other NaN.
    A null hashes alike in every column, and differently from an empty text or list.

    Parameters
    ----------
    table : pyarrow.Table
        Rows of one dataset. Rows are comparable only between tables with the same column types,
        as the conformed tables of a dataset have.

    Returns
    -------
    numpy.ndarray
        ``uint64``, one hash per row.
    """
    hashes = np.zeros(table.num_rows, dtype=np.uint64)
    for name in sorted(table.column_names):
        hashes = _mix(_mix(hashes, _text_hash(name)), _array_hashes(table.column(name).combine_chunks()))
    return hashes


def key_occurrences(dataset: str, table: pa.Table, piece: int, rows: np.ndarray) -> pd.DataFrame:
    """Return the key, content hash and position of some rows of one partition.

    Parameters
    ----------
    dataset : str
        Dataset name; it decides how the key is built (see :func:`~compute.contract.frames.row_keys`).
    table : pyarrow.Table
        The whole partition, conformed (geometry as WKB).
    piece : int
        Position of the partition in the day (see :class:`RepeatedKeys`).
    rows : numpy.ndarray
        Positions of the rows to describe, for example those whose key may repeat.

    Returns
    -------
    pandas.DataFrame
        Columns ``row_key``, ``content_hash``, ``piece`` and ``row``, one row per given row with
        a key. Rows without a key are left out because they fail as ``key_missing``.
    """
    check_dataset(dataset)
    rows = np.asarray(rows, dtype=np.int64)
    subset = table.take(pa.array(rows, pa.int64()))
    keys = row_keys(dataset, subset.select(list(KEY_COLUMNS[dataset])).to_pandas())
    return _occurrences(keys.to_numpy(dtype=object, na_value=None), subset, piece, rows)


def find_repeated_keys(occurrences: Iterable[pd.DataFrame], sources: Mapping[int, Sequence[tuple[str, int, int]]] | None = None) -> RepeatedKeys:
    """Split the repeated keys among ``occurrences`` into conflicting keys and exact repeats.

    Parameters
    ----------
    occurrences : iterable of pandas.DataFrame
        Frames from :func:`key_occurrences`. They must hold every copy of each key that they
        hold at all, so a caller may pass only the rows whose key hash repeats. Keys that occur
        once are left out, so the keys are confirmed on their text and a collision of key
        hashes rejects no row.
    sources : mapping, optional
        Per piece, its file and the row of that file where the piece starts
        (see :attr:`RepeatedKeys.sources`).

    Returns
    -------
    RepeatedKeys
        For each repeated key, whether its copies conflict, or else which copy to keep: the
        one with the lowest piece, then the lowest row.
    """
    parts = [part for part in occurrences if len(part)]
    if not parts:
        return RepeatedKeys(sources=sources)
    every = pd.concat(parts, ignore_index=True)
    counts = every[c.ROW_KEY].value_counts()
    every = every[every[c.ROW_KEY].isin(counts.index[counts > 1])]

    # NOTE: copies whose different contents have equal 64-bit hashes count as identical, so one
    # of them would be kept and the others rejected as row_repeated instead of all as
    # key_duplicated. For an evenly spread hash the chance is about 2**-64 per pair of
    # different copies (an estimate, not measured).
    variants = every.groupby(c.ROW_KEY, sort=False)[CONTENT_HASH].nunique()
    conflicting = np.sort(variants.index[variants > 1].to_numpy(dtype=object))
    identical = every[every[c.ROW_KEY].isin(variants.index[variants == 1])]

    first = identical.sort_values([PIECE, ROW], kind="stable").drop_duplicates(c.ROW_KEY, keep="first")
    kept = _positions_frame(first[c.ROW_KEY].to_numpy(dtype=object), first[PIECE], first[ROW])
    return RepeatedKeys(conflicting=conflicting, kept=kept, sources=sources)


def repeated_keys_in(dataset: str, tables: list[pa.Table], files: list[str]) -> RepeatedKeys:
    """Return the repeated keys of a whole day held in memory, one conformed table per file.

    This is the in-process form of the two hashing passes of ``compute.pipeline``, used by
    ``lm-co2 validate``. Table ``i`` is piece ``i`` and starts at row 0 of ``files[i]``.
    """
    check_dataset(dataset)
    if len(tables) != len(files):
        raise ValueError(f"repeated_keys_in needs one file name per table, got {len(tables)} tables and {len(files)} names")

    keys = [row_keys(dataset, table.select(list(KEY_COLUMNS[dataset])).to_pandas()) for table in tables]
    duplicated = find_duplicate_keys(dataset, keys)
    occurrences = [
        key_occurrences(dataset, table, piece, np.flatnonzero(piece_keys.isin(duplicated).to_numpy(dtype=bool)))
        for piece, (table, piece_keys) in enumerate(zip(tables, keys, strict=True))
    ]
    return find_repeated_keys(occurrences, {piece: [(name, 0, 0)] for piece, name in enumerate(files)})


def repeated_keys_in_frame(frame: pd.DataFrame, keys: pd.Series, piece: int) -> RepeatedKeys:
    """Return the keys that repeat within one validated frame, with its rows as the only copies.

    Geometry held as shapely objects is compared as the WKB that shapely writes for it.
    """
    text = keys.to_numpy(dtype=object, na_value=None)
    rows = np.flatnonzero(keys.duplicated(keep=False).to_numpy(dtype=bool) & keys.notna().to_numpy(dtype=bool))
    if rows.size == 0:
        return RepeatedKeys()
    return find_repeated_keys([_occurrences(text[rows], _frame_table(frame.iloc[rows]), piece, rows)])


def _occurrences(keys: np.ndarray, content: pa.Table, piece: int, rows: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            c.ROW_KEY: pd.Series(keys, dtype=object),
            CONTENT_HASH: content_hashes(content),
            PIECE: np.full(len(rows), piece, dtype=np.int64),
            ROW: rows,
        }
    )
    return frame[frame[c.ROW_KEY].notna()].reset_index(drop=True)


def _positions_frame(keys: np.ndarray, pieces: Iterable[int], rows: Iterable[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {PIECE: np.fromiter(pieces, dtype=np.int64), ROW: np.fromiter(rows, dtype=np.int64)},
        index=pd.Index(keys, dtype=object, name=c.ROW_KEY),
    )


def _frame_table(frame: pd.DataFrame) -> pa.Table:
    """Return ``frame`` as Arrow, with shapely geometry written as WKB."""
    plain = pd.DataFrame(frame).reset_index(drop=True)
    for name in plain.columns:
        column = plain[name]
        if column.dtype != object and column.dtype.name != "geometry":
            continue
        values = np.asarray(column.array, dtype=object)
        if any(isinstance(value, shapely.Geometry) for value in values):
            plain[name] = pd.Series(list(shapely.to_wkb(values)), dtype=object)
    return pa.Table.from_pandas(plain, preserve_index=False)


def key_hashes(dataset: str, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Return the positions of the rows of ``frame`` that have a key, and a 64-bit hash of each of those keys.

    Equal keys (:func:`~compute.contract.frames.row_keys`) have equal hashes in every partition.
    A tachometer key is hashed from the hash of its vehicle text and its time in milliseconds,
    so the key text is never built: hashing a million keys as Python strings took 1.3 s.
    """
    check_dataset(dataset)
    if dataset != "tachometer":
        keys = row_keys(dataset, frame)
        present = keys.notna().to_numpy(dtype=bool)
        return np.flatnonzero(present), pd.util.hash_array(keys[present].astype(str).to_numpy(dtype=object))
    vehicle_code, vehicles, ts_ms, has_time = tachometer_key_parts(frame)
    rows = np.flatnonzero((vehicle_code >= 0) & has_time)
    vehicle_hash = pd.util.hash_array(np.asarray(vehicles, dtype=object)) if len(vehicles) else np.zeros(0, np.uint64)
    return rows, _mix(vehicle_hash[vehicle_code[rows]], pd.util.hash_array(ts_ms[rows]))


def _mix(left: np.ndarray, right: np.ndarray | np.uint64) -> np.ndarray:
    """Return a hash of each pair of ``left`` and ``right``, which depends on their order."""
    return pd.util.hash_array((left * _MULTIPLIER) ^ right)


def _text_hash(text: str) -> np.uint64:
    return np.uint64(pd.util.hash_array(np.array([text], dtype=object))[0])


def _array_hashes(array: pa.Array) -> np.ndarray:
    """Return a hash of each value of ``array``, and ``_NULL_HASH`` where the value is null."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        return _array_hashes(array.dictionary_decode())
    if pa.types.is_null(kind):
        return np.full(len(array), _NULL_HASH, dtype=np.uint64)
    if pa.types.is_fixed_size_list(kind):
        array = array.cast(pa.list_(kind.value_type))
        kind = array.type

    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        hashes = _list_hashes(array)
    elif pa.types.is_struct(kind):
        hashes = np.zeros(len(array), dtype=np.uint64)
        for child_field, child in zip(kind, array.flatten(), strict=True):
            hashes = _mix(_mix(hashes, _text_hash(child_field.name)), _array_hashes(child))
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        hashes = pd.util.hash_array(pc.fill_null(array, "").to_numpy(zero_copy_only=False))
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        hashes = pd.util.hash_array(pc.fill_null(array, pa.scalar(b"", kind)).to_numpy(zero_copy_only=False))
    elif pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_temporal(kind):
        hashes = pd.util.hash_array(_numbers(array))
    else:
        # Decimals, maps and other rare types: by the Python value, which is exact but slow.
        hashes = pd.util.hash_array(np.array([repr(value) for value in array.to_pylist()], dtype=object))

    hashes = np.array(hashes, dtype=np.uint64)
    hashes[array.is_null().to_numpy(zero_copy_only=False)] = _NULL_HASH
    return hashes


def _numbers(array: pa.Array) -> np.ndarray:
    """Return the values of a boolean, number or time array as numpy numbers of the same bits, nulls as 0."""
    kind = array.type
    if pa.types.is_boolean(kind):
        array = array.cast(pa.uint8())
    elif pa.types.is_temporal(kind):
        array = array.view(pa.int32() if kind.bit_width == 32 else pa.int64())
    return pc.fill_null(array, 0).to_numpy(zero_copy_only=False)


def _list_hashes(array: pa.Array) -> np.ndarray:
    """Return a hash of each list of ``array`` from its length and its elements in order."""
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    # flatten() skips the values under null lists and honours a slice offset, so the elements
    # line up with ``lengths``.
    elements = _array_hashes(array.flatten())
    starts = np.cumsum(lengths) - lengths
    positions = np.arange(elements.size, dtype=np.int64) - np.repeat(starts, lengths)
    placed = _mix(elements, positions.astype(np.uint64))

    sums = np.zeros(len(array), dtype=np.uint64)
    filled = lengths > 0
    if placed.size:
        sums[filled] = np.add.reduceat(placed, starts[filled])
    return _mix(sums, lengths.astype(np.uint64))
