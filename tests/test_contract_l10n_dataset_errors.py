"""Dataset-level errors in Japanese and English, rendered from a code, phrase kinds and their parameters.

Every error code and every kind of expected or actual text has a template per language. The
Japanese validation report shows no English sentence words outside the values it quotes, and the
English text is the one ``str()`` and the manifest give.
"""

from __future__ import annotations

import json
import re
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from compute.contract import ContractError, ErrorCode
from compute.contract.errors import ERROR_TEXT_KINDS, Phrase, Phrases, dataset_missing, file_unreadable, phrase
from compute.i18n import LANGUAGES, has_message, message
from compute.sample import SampleSpec, write_sample_day
from compute.storage import Store
from flows import cli
from tests.conftest import RUN_DATE

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
ENGLISH_WORD = re.compile(r"[A-Za-z][A-Za-z_.]*[A-Za-z]")

# Technical names a Japanese text may use as they are: formats, libraries, Arrow types, column
# names and setting keys of the contract.
TECHNICAL_TERMS = {
    # The phase name and the option of the command that fetches the day again.
    "fetch",
    "force",
    "GeoParquet",
    "Parquet",
    "parquet",
    "WKB",
    "CRS",
    "EPSG",
    "PROJJSON",
    "JSON",
    "ISO",
    "pyproj",
    "pyarrow",
    "Arrow",
    "binary",
    "null",
    "geo",
    "columns",
    "crs",
    "epoch",
    "epoch_ms",
    "geopandas",
    "to_parquet",
    "geometry_encoding",
    "timestamps",
    "start_time",
    "end_time",
    "rename",
    "units",
    "m/s",
}

# Words of Arrow type names (``int64``, ``timestamp[ms, tz=UTC]``, ``string``) that a report quotes.
ARROW_TYPE_WORDS = {"int", "string", "double", "timestamp", "ms", "tz", "UTC", "list", "item"}

# One error per code, built as the readers build them; together they use every phrase kind.
SAMPLE_ERRORS: list[ContractError] = [
    dataset_missing(["vehicles", "tachometer"], ["gs://bucket/raw/20261201/vehicles", "gs://bucket/raw/20261201/tachometer"]),
    file_unreadable("tachometer", "tachometer/part-1.parquet", OSError("Parquet magic bytes not found in footer.")),
    ContractError(
        ErrorCode.COLUMN_DUPLICATED,
        "trajectories",
        "trip_id",
        phrase("column_names_unique_after", setting="contract.trajectories.rename"),
        phrase("columns_found", columns="['trip_id', 'trip_id']"),
    ),
    ContractError(
        ErrorCode.COLUMN_DUPLICATED,
        "vehicles",
        "fuel_type",
        phrase("column_names_unique"),
        phrase("columns_found", columns="['fuel_type']"),
    ),
    ContractError(
        ErrorCode.COLUMN_MISSING,
        "trajectories",
        "trip_id",
        phrase("column_of_type", column="trip_id", type="string") + phrase("renamed_from", source="tripId"),
        phrase("columns_found_case_differs", columns="['Trip_ID', 'vehicle_id']", near="Trip_ID"),
    ),
    ContractError(
        ErrorCode.TYPE_MISMATCH,
        "tachometer",
        "ts",
        phrase("arrow_type", type="timestamp[ms, tz=UTC]"),
        phrase("arrow_type", type="int64")
        + phrase("epoch_unit_missing", dataset="tachometer")
        + phrase("in_source_column", source="time"),
    ),
    ContractError(
        ErrorCode.TYPE_MISMATCH,
        "tachometer",
        "speed_kmh",
        phrase("arrow_type", type="double"),
        phrase("arrow_type", type="string")
        + phrase("cast_failed", error="Failed to parse string: 'fast' as a scalar of type double"),
    ),
    ContractError(
        ErrorCode.TYPE_MISMATCH,
        "tachometer",
        "ts",
        phrase("arrow_type", type="timestamp[ms, tz=UTC]"),
        phrase("arrow_type", type="string") + phrase("epoch_needs_numbers", unit="epoch_ms"),
    ),
    ContractError(
        ErrorCode.TYPE_MISMATCH,
        "tachometer",
        "ts",
        phrase("arrow_type", type="timestamp[ms, tz=UTC]"),
        phrase("arrow_type", type="string") + phrase("not_iso8601", error="time data 'noon' does not match format 'ISO8601'"),
    ),
    ContractError(
        ErrorCode.TYPE_MISMATCH,
        "trajectories",
        "timestamps",
        phrase("arrow_type", type="list<item: timestamp[ms, tz=UTC]>"),
        phrase("arrow_type", type="int64") + phrase("time_list_expected"),
    ),
    ContractError(
        ErrorCode.GEO_METADATA_MISSING, "trajectories", "geometry", phrase("geo_metadata_wkb_crs"), phrase("no_geo_key")
    ),
    ContractError(
        ErrorCode.GEO_METADATA_MISSING,
        "trajectories",
        "geometry",
        phrase("geo_metadata_wkb_crs"),
        phrase("geo_not_json", error="Expecting value: line 1 column 1 (char 0)"),
    ),
    ContractError(
        ErrorCode.GEO_METADATA_MISSING,
        "trajectories",
        "geometry",
        phrase("geo_metadata_wkb_crs"),
        phrase("geo_without_columns", value='b\'{"version": "1.1.0"}\''),
    ),
    ContractError(
        ErrorCode.GEO_METADATA_MISSING,
        "trajectories",
        "geometry",
        phrase("geo_metadata_wkb_crs"),
        phrase("geo_column_absent", column="geometry", columns="['geom']"),
    ),
    ContractError(
        ErrorCode.GEOMETRY_ENCODING_UNSUPPORTED,
        "trajectories",
        "geometry",
        phrase("wkb_binary"),
        phrase("arrow_type", type="string"),
    ),
    ContractError(
        ErrorCode.GEOMETRY_ENCODING_UNSUPPORTED,
        "trajectories",
        "geometry",
        phrase("encoding", encoding="WKB"),
        phrase("encoding", encoding="'linestring'"),
    ),
    ContractError(ErrorCode.CRS_UNKNOWN, "trajectories", "geometry", phrase("crs_projjson_or_epsg"), phrase("crs_null")),
    ContractError(
        ErrorCode.CRS_UNKNOWN,
        "trajectories",
        "geometry",
        phrase("crs_known_to_pyproj"),
        phrase("crs_value", value="'EPSG:999999'"),
    ),
    ContractError(
        ErrorCode.TIME_COLUMNS_MISSING,
        "trajectories",
        "timestamps | start_time, end_time",
        phrase("time_columns", timestamps_type="list<item: timestamp[ms, tz=UTC]>", timestamp_type="timestamp[ms, tz=UTC]"),
        phrase("columns_found", columns="['trip_id', 'vehicle_id', 'geometry']"),
    ),
]


def _phrases(error: ContractError) -> Phrases:
    return error.expected_phrases + error.actual_phrases


def _values(error: ContractError) -> list[str]:
    """Return every value an error quotes: dataset, column and phrase parameters."""
    values = [error.dataset, error.column]
    for part in _phrases(error):
        values += [str(value) for value in part.params.values()]
    return sorted(values, key=len, reverse=True)


def _english_words(text: str, values: list[str]) -> set[str]:
    """Return the English words of ``text`` outside quoted values, setting keys and technical terms."""
    text = re.sub(r"`[^`]*`|contract\.[A-Za-z_.]+", " ", text)
    for value in values:
        if value:
            text = re.sub(rf"(?<![\w.]){re.escape(value)}(?!\w)", " ", text)
    text = re.sub(r"'[^']*'", " ", text)
    return {word for word in ENGLISH_WORD.findall(text) if word not in TECHNICAL_TERMS}


class TestCatalogue:
    def test_every_code_has_templates(self) -> None:
        for code in ErrorCode:
            assert has_message(f"contract.error.{code.value}"), code
            assert has_message(f"contract.error.{code.value}.hint"), code

    def test_every_kind_has_template(self) -> None:
        for kind in ERROR_TEXT_KINDS:
            assert has_message(f"contract.error_text.{kind}"), kind

    def test_templates_use_declared_parameters(self) -> None:
        for kind, names in ERROR_TEXT_KINDS.items():
            used: set[str] = set()
            for lang in LANGUAGES:
                fields = string.Formatter().parse(message(f"contract.error_text.{kind}", lang))
                used |= {field for _, field, _, _ in fields if field}
                assert used <= set(names), (kind, lang)
            assert used == set(names), kind

    def test_samples_cover_every_code_and_kind(self) -> None:
        assert {error.code for error in SAMPLE_ERRORS} == set(ErrorCode)
        used = {part.kind for error in SAMPLE_ERRORS for part in _phrases(error)}
        assert used == set(ERROR_TEXT_KINDS) - {"text"}

    def test_japanese_kind_templates_are_japanese(self) -> None:
        for kind in ERROR_TEXT_KINDS:
            if kind == "text":
                continue
            if kind == "list_separator":
                # The Japanese comma, not the English one.
                assert message(f"contract.error_text.{kind}", "ja") == "、"
                continue
            assert JAPANESE.search(message(f"contract.error_text.{kind}", "ja")), kind

    def test_undeclared_kind_rejected(self) -> None:
        with pytest.raises(ValueError, match=r"error text kind 'no_such_kind' is not declared"):
            Phrase("no_such_kind", {})

    def test_wrong_parameters_rejected(self) -> None:
        with pytest.raises(ValueError, match=r"takes parameters \['column', 'type'\], got \['column'\]"):
            Phrase("column_of_type", {"column": "trip_id"})


@pytest.mark.parametrize("error", SAMPLE_ERRORS, ids=lambda error: f"{error.code.value}-{error.actual_phrases[-1].kind}")
class TestRenderEveryError:
    def test_english_is_str(self, error: ContractError) -> None:
        assert error.message("en") == str(error)
        assert error.expected in str(error)
        assert error.actual in str(error)

    def test_japanese_has_no_english_words(self, error: ContractError) -> None:
        text = error.message("ja")

        assert JAPANESE.search(text)
        assert _english_words(text, _values(error)) == set()

    def test_english_has_no_japanese(self, error: ContractError) -> None:
        assert not JAPANESE.search(error.message("en"))

    def test_manifest_round_trip(self, error: ContractError) -> None:
        back = ContractError.from_dict(json.loads(json.dumps(error.to_dict())))

        assert back.message("ja") == error.message("ja")
        assert back.to_dict() == error.to_dict()

    def test_pickle_keeps_phrases(self, error: ContractError) -> None:
        import pickle

        copy = pickle.loads(pickle.dumps(error))

        assert copy.actual_phrases == error.actual_phrases
        assert copy.message("ja") == error.message("ja")


class TestPlainText:
    def test_plain_strings_shown_unchanged(self) -> None:
        error = ContractError(ErrorCode.COLUMN_MISSING, "vehicles", "fuel_type", "fuel_type (string)", "['vehicle_id']")

        assert error.expected == "fuel_type (string)"
        assert "想定: fuel_type (string)、実際: ['vehicle_id']" in error.message("ja")

    def test_manifest_without_phrases(self) -> None:
        fields = {
            "code": "dataset_missing",
            "dataset": "vehicles",
            "column": "",
            "expected": "vehicles/*.parquet ≥ 1",
            "actual": "x/*.parquet = 0",
        }

        error = ContractError.from_dict(fields)

        assert error.actual == "x/*.parquet = 0"
        assert error.actual_phrases == phrase("text", text="x/*.parquet = 0")


# Edits of a sample day, each of which stops validation with one dataset-level error:
# (name, dataset, edit of the first file's table, expected code, column).
def _case_only_column(table: pa.Table) -> pa.Table:
    return table.rename_columns(["Trip_ID" if name == "trip_id" else name for name in table.column_names])


def _timestamp_without_unit(table: pa.Table) -> pa.Table:
    position = table.column_names.index("ts")
    return table.set_column(position, "ts", pa.array(range(table.num_rows), pa.int64()))


def _wrong_crs(table: pa.Table) -> pa.Table:
    geo = json.loads(table.schema.metadata[b"geo"])
    geo["columns"]["geometry"]["crs"] = "EPSG:999999"
    return table.replace_schema_metadata({**table.schema.metadata, b"geo": json.dumps(geo).encode()})


def _no_geo_metadata(table: pa.Table) -> pa.Table:
    return table.replace_schema_metadata(None)


EDITS = [
    ("case_only_column", "trajectories", _case_only_column, ErrorCode.COLUMN_MISSING, "trip_id"),
    ("timestamp_without_unit", "tachometer", _timestamp_without_unit, ErrorCode.TYPE_MISMATCH, "ts"),
    ("wrong_crs", "trajectories", _wrong_crs, ErrorCode.CRS_UNKNOWN, "geometry"),
    ("no_geo_metadata", "trajectories", _no_geo_metadata, ErrorCode.GEO_METADATA_MISSING, "geometry"),
]


def _write_day(root: Path) -> Path:
    day = root / "20261201"
    write_sample_day(Store(str(day)), RUN_DATE, SampleSpec(trips=6, vertices_per_trip=4))
    return day


def _edit_day(root: Path, dataset: str, edit) -> Path:  # type: ignore[no-untyped-def]
    day = _write_day(root)
    path = day / dataset / "part-00000.parquet"
    pq.write_table(edit(pq.read_table(path)), path)
    return day


def _error_lines(report: str) -> list[str]:
    """Return the list items of the report's dataset-level error section."""
    return [line for line in report.splitlines() if line.startswith("- `")]


class TestValidateCommand:
    @pytest.mark.parametrize(("name", "dataset", "edit", "code", "column"), EDITS, ids=[case[0] for case in EDITS])
    def test_japanese_report(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], name, dataset, edit, code, column) -> None:  # type: ignore[no-untyped-def]
        day = _edit_day(tmp_path, dataset, edit)

        assert cli.main(["--lang", "ja", "validate", str(day)]) == 2
        lines = _error_lines(capsys.readouterr().out)

        assert len(lines) == 1
        assert lines[0].startswith(f"- `{code.value}`: ")
        assert f"データセット {dataset}" in lines[0]
        quoted = [code.value, dataset, column, str(day), *pq.read_schema(day / dataset / "part-00000.parquet").names]
        assert _english_words(lines[0], quoted) <= ARROW_TYPE_WORDS

    @pytest.mark.parametrize(("name", "dataset", "edit", "code", "column"), EDITS, ids=[case[0] for case in EDITS])
    def test_english_report(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], name, dataset, edit, code, column) -> None:  # type: ignore[no-untyped-def]
        day = _edit_day(tmp_path, dataset, edit)

        assert cli.main(["--lang", "en", "validate", str(day)]) == 2
        lines = _error_lines(capsys.readouterr().out)

        assert len(lines) == 1
        assert lines[0].startswith(f"- `{code.value}`: ")
        assert not JAPANESE.search(lines[0])

    def test_case_only_column_names_the_column(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        day = _edit_day(tmp_path, "trajectories", _case_only_column)

        cli.main(["--lang", "ja", "validate", str(day)])
        ja = _error_lines(capsys.readouterr().out)[0]
        cli.main(["--lang", "en", "validate", str(day)])
        en = _error_lines(capsys.readouterr().out)[0]

        assert "列 'Trip_ID' は大文字と小文字、または空白だけが違います" in ja
        assert "differs" not in ja
        assert "column 'Trip_ID' differs only in case or spaces (names are case-sensitive)" in en

    def test_timestamp_without_unit_names_setting(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        day = _edit_day(tmp_path, "tachometer", _timestamp_without_unit)

        cli.main(["--lang", "ja", "validate", str(day)])
        ja = _error_lines(capsys.readouterr().out)[0]

        assert (
            "想定: timestamp[ms, tz=UTC] 型、実際: int64 型 (数値の時刻には、設定 contract.tachometer.units で epoch の単位を指定してください)"
            in ja
        )
        assert "declare" not in ja

    def test_missing_dataset(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        day = _write_day(tmp_path)
        shutil.rmtree(day / "trajectories")

        assert cli.main(["--lang", "ja", "validate", str(day)]) == 2
        ja = _error_lines(capsys.readouterr().out)[0]
        assert cli.main(["--lang", "en", "validate", str(day)]) == 2
        en = _error_lines(capsys.readouterr().out)[0]

        assert f"(想定: trajectories/*.parquet ≥ 1 個、実際: {day}/trajectories/*.parquet = 0 個)" in ja
        assert f"expected trajectories/*.parquet ≥ 1, found {day}/trajectories/*.parquet = 0." in en

    def test_command_line(self, tmp_path: Path) -> None:
        day = _edit_day(tmp_path, "trajectories", _wrong_crs)

        result = subprocess.run(
            [sys.executable, "-m", "flows.cli", "--lang", "ja", "validate", str(day)], capture_output=True, text=True, check=False
        )

        assert result.returncode == 2, result.stderr
        lines = _error_lines(result.stdout)
        assert lines == [
            "- `crs_unknown`: データセット trajectories の列 geometry の CRS が不明です (想定: pyproj が認識できる CRS、実際: CRS の値 'EPSG:999999')。 "
            "GeoParquet メタデータに CRS を書くか、設定 contract.trajectories.crs に指定してください (例: EPSG:6677)。"
        ]
