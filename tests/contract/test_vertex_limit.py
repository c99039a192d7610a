"""Trips above ``max_vertices_per_trip`` are rejected as ``geometry_too_large``, counted before decoding.

A compute task never splits a trip, so one trip of tens of millions of vertices would take more
memory than a worker has. The count comes from the Arrow buffers (WKB header, timestamps list),
and such a row is neither converted to Python objects nor decoded.
"""

from __future__ import annotations

import struct

import contract_corpus as corpus
import numpy as np
import pyarrow as pa
import pytest
import shapely

from compute.contract import ContractSettings, ValidationContext, conform_table, render_details, to_frame, validate_rows
from compute.contract.frames import VERTICES_OVER_LIMIT, line_vertex_counts
from compute.contract.reasons import ReasonCode

GOOD = corpus.GOOD_TRIP


def _line(n: int, start: float = 139.7) -> str:
    return "LINESTRING (" + ", ".join(f"{start + i * 1e-4:.6f} 35.68" for i in range(n)) + ")"


def _settings(limit: int) -> ContractSettings:
    return ContractSettings.model_validate({"thresholds": {"max_vertices_per_trip": limit}})


def _validate(table: pa.Table, limit: int, *, before_decoding: bool = True):  # type: ignore[no-untyped-def]
    settings = _settings(limit)
    conformed = conform_table("trajectories", table, settings)
    frame = to_frame("trajectories", conformed, max_vertices=limit if before_decoding else None)
    context = ValidationContext(known_vehicle_ids=np.array(["V1"], dtype=object), settings=settings)
    accepted, rejects = validate_rows("trajectories", frame, context)
    assert len(accepted) + len(rejects) == len(frame)
    return frame, accepted, rejects


@pytest.mark.parametrize("before_decoding", [True, False], ids=["counted-in-arrow", "counted-after-decoding"])
def test_trip_above_limit_rejected(before_decoding: bool) -> None:
    rows = [GOOD, {**GOOD, "trip_id": "LONG", "wkt": _line(6), "times_s": [0, 10, 20, 30, 40, 50]}]
    _, accepted, rejects = _validate(corpus.trajectories(rows), limit=5, before_decoding=before_decoding)

    assert list(accepted["trip_id"]) == ["T1"]
    assert VERTICES_OVER_LIMIT not in accepted.columns
    reject = rejects.iloc[0]
    assert (reject["row_key"], reject["reason"], reject["value"]) == ("LONG", ReasonCode.GEOMETRY_TOO_LARGE.value, "6")
    assert reject["detail"] == "6 vertices, limit 5"
    assert render_details(rejects, "ja")["detail"].iloc[0] == "頂点 6 個、上限 5 個"


def test_trip_at_the_limit_passes() -> None:
    rows = [GOOD, {**GOOD, "trip_id": "FIVE", "wkt": _line(5), "times_s": [0, 10, 20, 30, 40]}]
    _, accepted, rejects = _validate(corpus.trajectories(rows), limit=5)
    assert list(accepted["trip_id"]) == ["T1", "FIVE"]
    assert rejects.empty


def test_oversized_row_is_not_decoded() -> None:
    rows = [GOOD, {**GOOD, "trip_id": "LONG", "wkt": _line(40), "times_s": list(range(0, 400, 10))}]
    frame = to_frame("trajectories", conform_table("trajectories", corpus.trajectories(rows), ContractSettings()), max_vertices=30)

    assert frame[VERTICES_OVER_LIMIT].tolist() == [0, 40]
    assert frame.geometry.iloc[1] is None
    assert frame["timestamps"].iloc[1] is None
    assert shapely.get_num_coordinates(frame.geometry.iloc[0]) == 3
    assert len(frame["timestamps"].iloc[0]) == 3


def test_timestamp_count_also_limited() -> None:
    # Three vertices but eight timestamps: the longer list decides, before timestamp_count_mismatch.
    rows = [GOOD, {**GOOD, "trip_id": "TS", "times_s": list(range(0, 80, 10))}]
    _, _, rejects = _validate(corpus.trajectories(rows), limit=5)
    assert list(rejects["reason"]) == [ReasonCode.GEOMETRY_TOO_LARGE.value]
    _, _, rejects = _validate(corpus.trajectories(rows), limit=5, before_decoding=False)
    assert list(rejects["reason"]) == [ReasonCode.TIMESTAMP_COUNT_MISMATCH.value]


def test_earlier_rules_still_win() -> None:
    rows = [GOOD, {**GOOD, "trip_id": "LONG", "vehicle_id": "V404", "wkt": _line(9), "times_s": list(range(0, 90, 10))}]
    _, _, rejects = _validate(corpus.trajectories(rows), limit=5)
    assert list(rejects["reason"]) == [ReasonCode.VEHICLE_NOT_IN_MASTER.value]


class TestArrowCount:
    """:func:`line_vertex_counts` reads the WKB header exactly, in every encoding shapely writes."""

    @pytest.mark.parametrize("byte_order", [0, 1], ids=["big-endian", "little-endian"])
    @pytest.mark.parametrize("dims", [2, 3])
    @pytest.mark.parametrize("srid", [False, True], ids=["iso", "ewkb-srid"])
    def test_header_count_equals_decoded_count(self, byte_order: int, dims: int, srid: bool) -> None:
        rng = np.random.default_rng(dims * 10 + byte_order)
        lengths = rng.integers(2, 300, 50)
        lines = [shapely.LineString(rng.uniform(0, 1, (n, dims))) for n in lengths]
        if srid:
            lines = [shapely.set_srid(line, 6677) for line in lines]
        flavor = "extended" if srid else "iso"
        wkb = shapely.to_wkb(lines, byte_order=byte_order, output_dimension=dims, flavor=flavor, include_srid=srid)
        table = pa.table({"geometry": pa.array(wkb, pa.binary())})

        np.testing.assert_array_equal(line_vertex_counts(table), lengths)

    def test_damaged_header_counts_its_bytes(self) -> None:
        real = shapely.to_wkb(shapely.LineString([(0, 0), (1, 1), (2, 2)]))
        lying_header = struct.pack("<BII", 1, 2, 4_000_000_000) + b"\0" * 32  # the header says 4e9 vertices; the bytes have room for 2
        polygon = shapely.to_wkb(shapely.Polygon([(0, 0), (1, 0), (1, 1)]))
        table = pa.table({
            "geometry": pa.array([real, lying_header, polygon, None, b"\x01\x02"], pa.binary()),
            "timestamps": pa.array([[1, 2, 3], None, [1] * 7, [1, 2], None], pa.list_(pa.int64())),
        })

        np.testing.assert_array_equal(line_vertex_counts(table), [3, 2, 7, 2, 0])

    def test_sliced_table(self) -> None:
        lines = [shapely.LineString(np.column_stack([np.arange(n), np.zeros(n)])) for n in (2, 5, 9, 4)]
        table = pa.table({"geometry": pa.array(shapely.to_wkb(lines), pa.binary())}).slice(1, 2)
        np.testing.assert_array_equal(line_vertex_counts(table), [5, 9])
