"""Hostile files and schemas: the run stops before compute with a ContractError naming what to fix."""

from __future__ import annotations

import json
from pathlib import Path

import hostile_days as days
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from compute.contract import ContractError, ContractSettings, ErrorCode, conform_table
from compute.inspection import validate_path
from compute.settings import load_settings


def _conform_error(dataset: str, table: pa.Table, settings: ContractSettings | None = None) -> ContractError:
    with pytest.raises(ContractError) as info:
        conform_table(dataset, table, settings or ContractSettings())
    return info.value


class TestSchemaErrors:
    def test_wkt_text_geometry(self) -> None:
        table = days.trajectories([days.LINE])
        error = _conform_error("trajectories", table.set_column(2, "geometry", pa.array([days.LINE.wkt])))
        assert error.code is ErrorCode.GEOMETRY_ENCODING_UNSUPPORTED
        assert (error.dataset, error.column, error.actual) == ("trajectories", "geometry", "string")

    def test_column_name_case_named(self) -> None:
        table = days.trajectories([days.LINE])
        error = _conform_error("trajectories", table.rename_columns(["Trip_ID", *table.column_names[1:]]))
        assert error.code is ErrorCode.COLUMN_MISSING
        assert error.column == "trip_id"
        assert "column 'Trip_ID' differs only in case" in error.actual
        assert "contract.trajectories.rename" in error.message("en")

    def test_duplicate_column_name(self) -> None:
        table = days.trajectories([days.LINE])
        doubled = pa.Table.from_arrays([*table.columns, table.column("trip_id")], names=[*table.column_names, "trip_id"])
        error = _conform_error("trajectories", doubled.replace_schema_metadata(table.schema.metadata))
        assert error.code is ErrorCode.COLUMN_DUPLICATED
        assert (error.dataset, error.column) == ("trajectories", "trip_id")

    def test_rename_onto_existing_column(self) -> None:
        # The mapped column wins over a column that already has the canonical name.
        table = days.trajectories([days.LINE]).append_column("tripId", pa.array(["mapped"]))
        settings = ContractSettings(trajectories={"rename": {"tripId": "trip_id"}})
        conformed = conform_table("trajectories", table, settings)
        assert conformed.column("trip_id").to_pylist() == ["mapped"]

    def test_rename_two_sources_to_one_column(self) -> None:
        with pytest.raises(ValidationError, match=r"contract.trajectories.rename maps \['id', 'tripId'\] to the same column 'trip_id'"):
            ContractSettings(trajectories={"rename": {"tripId": "trip_id", "id": "trip_id"}})

    def test_list_of_garbage_text_times(self) -> None:
        table = days.trajectories([days.LINE])
        text = pa.array([["2026-12-01T00:00:00Z", "garbage", "x"]], pa.list_(pa.string()))
        error = _conform_error("trajectories", table.set_column(3, "timestamps", text))
        assert error.code is ErrorCode.TYPE_MISMATCH
        assert (error.dataset, error.column) == ("trajectories", "timestamps")
        assert error.actual.startswith("list<item: string>")

    def test_list_of_int_times_without_unit(self) -> None:
        table = days.trajectories([days.LINE])
        error = _conform_error("trajectories", table.set_column(3, "timestamps", pa.array([[1, 2, 3]], pa.list_(pa.int64()))))
        assert error.code is ErrorCode.TYPE_MISMATCH
        assert error.actual.startswith("list<item: int64>")
        assert "declare an epoch unit" in error.actual

    def test_fractional_model_year(self) -> None:
        error = _conform_error("vehicles", days.vehicles().set_column(6, "model_year", pa.array([2020.5, 2019.0])))
        assert error.code is ErrorCode.TYPE_MISMATCH
        assert (error.column, error.expected) == ("model_year", "int64")


class TestGeoMetadata:
    @pytest.mark.parametrize(
        ("geo", "found"),
        [
            (b"{not json", "not valid JSON"),
            (b'["a"]', "without a 'columns' object"),
            (b'{"columns": ["geometry"]}', "without a 'columns' object"),
            (b'{"columns": {"geom": {"encoding": "WKB"}}}', "no entry for column 'geometry'"),
        ],
    )
    def test_malformed_metadata_named(self, geo: bytes, found: str) -> None:
        table = days.geo_attributes().replace_schema_metadata({b"geo": geo})
        error = _conform_error("geo_attributes", table)
        assert error.code is ErrorCode.GEO_METADATA_MISSING
        assert error.dataset == "geo_attributes"
        assert found in error.actual

    def test_malformed_metadata_with_declared_crs(self) -> None:
        table = days.geo_attributes().replace_schema_metadata({b"geo": b"{not json"})
        settings = ContractSettings(geo_attributes={"geometry_encoding": "WKB", "crs": "EPSG:4326"})
        assert conform_table("geo_attributes", table, settings).num_rows == 2

    def test_crs_not_known(self) -> None:
        geo = json.dumps({"columns": {"geometry": {"encoding": "WKB", "crs": {"type": "nonsense"}}}}).encode()
        error = _conform_error("geo_attributes", days.geo_attributes().replace_schema_metadata({b"geo": geo}))
        assert error.code is ErrorCode.CRS_UNKNOWN
        assert error.column == "geometry"


class TestDayFolder:
    """``lm-co2 validate`` on a day folder: files that are not data, nested folders, broken files."""

    @pytest.fixture
    def settings(self):  # type: ignore[no-untyped-def]
        return load_settings("local")

    def test_junk_files_and_hive_folders(self, tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
        root = days.write_day(tmp_path / "day", days.good_day())
        (root / "trajectories" / "README.txt").write_text("notes")
        (root / "trajectories" / "_SUCCESS").write_bytes(b"")
        (root / "trajectories" / ".part-0.parquet.crc").write_bytes(b"\x00\x01")
        nested = root / "trajectories" / "date=2026-12-01"
        nested.mkdir()
        pq.write_table(days.trajectories([days.LINE], trip_ids=["T9"]), nested / "part-0.parquet")
        report, balanced = validate_path(str(root), settings, lang="en")
        assert balanced
        assert "| trajectories | 3 | 3 | 0 | 0 | holds |" in report

    def test_file_without_row_groups(self, tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
        root = days.write_day(tmp_path / "day", days.good_day())
        pq.ParquetWriter(root / "tachometer" / "part-0.parquet", days.tachometer().schema).close()
        report, balanced = validate_path(str(root), settings, lang="en")
        assert balanced
        assert "| tachometer | 0 | 0 | 0 | 0 | holds |" in report

    def test_duplicate_column_reported(self, tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
        day = days.good_day()
        vehicles = day["vehicles"]
        day["vehicles"] = pa.Table.from_arrays([*vehicles.columns, vehicles.column("fuel_type")], names=[*vehicles.column_names, "fuel_type"])
        root = days.write_day(tmp_path / "day", day)
        report, balanced = validate_path(str(root), settings, lang="en")
        assert not balanced
        assert "`column_duplicated`" in report

    @pytest.mark.parametrize("content", ["truncated", "text"])
    def test_unreadable_parquet_reported(self, tmp_path: Path, settings, content: str) -> None:  # type: ignore[no-untyped-def]
        root = days.write_day(tmp_path / "day", days.good_day())
        good = (root / "vehicles" / "part-0.parquet").read_bytes()
        broken = good[: len(good) // 2] if content == "truncated" else b"this is not parquet"
        (root / "vehicles" / "part-1.parquet").write_bytes(broken)
        report, balanced = validate_path(str(root), settings, lang="en")
        assert not balanced
        assert "`file_unreadable`" in report
        assert "vehicles/part-1.parquet" in report
