"""The validation report of a day whose dataset is missing: every dataset has a row, and the fix names the folder."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from compute.contract import DATASETS, ContractError, DatasetSummary, ErrorCode, ValidationSummary, render_report
from compute.sample import SampleSpec, write_sample_day
from compute.storage import Store
from flows import cli
from tests.conftest import RUN_DATE

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


@pytest.fixture()
def day_without_vehicles(tmp_path: Path) -> Path:
    day = tmp_path / "20261201"
    write_sample_day(Store(str(day)), RUN_DATE, SampleSpec(trips=6, vertices_per_trip=4))
    shutil.rmtree(day / "vehicles")
    return day


def _table_rows(report: str) -> dict[str, list[str]]:
    """Return the cells of the count table's rows by dataset name."""
    rows = {}
    for line in report.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] in DATASETS:
            rows[cells[0]] = cells[1:]
    return rows


class TestValidateCommand:
    def test_japanese_names_missing_dataset(self, day_without_vehicles: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert cli.main(["--lang", "ja", "validate", str(day_without_vehicles)]) == 2
        report = capsys.readouterr().out

        rows = _table_rows(report)
        assert sorted(rows) == sorted(DATASETS)
        assert rows["vehicles"][0] == "ファイルなし"
        assert {rows[name][0] for name in DATASETS if name != "vehicles"} == {"未検証"}
        assert f"- vehicles: 必須のデータセットですが、ファイルがありません。クライアントの vehicles のファイルを `{day_without_vehicles}/vehicles/` に" in report
        assert "「未検証」のデータセットは" in report
        assert "not validated" not in report

    def test_english_names_missing_dataset(self, day_without_vehicles: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert cli.main(["--lang", "en", "validate", str(day_without_vehicles)]) == 2
        report = capsys.readouterr().out

        rows = _table_rows(report)
        assert sorted(rows) == sorted(DATASETS)
        assert rows["vehicles"][0] == "no files"
        assert rows["trajectories"][0] == "not validated"
        assert f"- vehicles: a required dataset, but it has no files. Put the client's vehicles files, one or more Parquet files (`*.parquet`), in `{day_without_vehicles}/vehicles/`" in report
        assert not JAPANESE.search(report)


class TestRenderReport:
    @pytest.mark.parametrize(("lang", "expected"), [("ja", "その日のフォルダの tachometer/ に"), ("en", "in the tachometer/ folder of the day")])
    def test_folder_unknown_falls_back(self, lang: str, expected: str) -> None:
        summary = ValidationSummary()
        summary.add_error(ContractError(ErrorCode.DATASET_MISSING, "tachometer", "", "tachometer/ with Parquet files", "no files"))

        report = render_report(summary, lang)

        assert expected in report
        assert len(_table_rows(report)) == len(DATASETS)

    def test_other_error_lists_datasets_not_validated(self) -> None:
        summary = ValidationSummary()
        summary.add_error(ContractError(ErrorCode.COLUMN_MISSING, "vehicles", "fuel_type", "fuel_type (string)", "['vehicle_id']"))

        report = render_report(summary, "ja")

        assert {cells[0] for cells in _table_rows(report).values()} == {"未検証"}
        assert "ファイルなし" not in report
        assert "「未検証」のデータセットは" in report

    def test_passing_day_unchanged(self) -> None:
        summary = ValidationSummary()
        summary.add(DatasetSummary("vehicles", rows_in=3, accepted=3, rejected=0))

        report = render_report(summary, "en")

        assert list(_table_rows(report)) == ["vehicles"]
        assert "not validated" not in report
        assert "no files" not in report
