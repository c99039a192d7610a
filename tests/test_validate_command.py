"""``lm-co2 validate``: paths that are not a day, the report's status line, and reject values as one line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from compute import columns as c
from compute.contract.state import MAX_VALUE_CHARS, format_value
from compute.sample import SampleSpec, write_sample_day
from compute.storage import Store
from flows import cli


class TestPathThatIsNotADay:
    @pytest.mark.parametrize(("lang", "expected"), [("ja", "が見つかりません"), ("en", "not found")])
    def test_missing_path_is_named(self, lang: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "nonexistent"

        assert cli.main(["--lang", lang, "validate", str(path)]) == 1

        err = capsys.readouterr().err
        assert f"{path} {expected}" in err
        assert "納品" not in err
        assert "profile" not in err
        assert "プロファイル" not in err

    @pytest.mark.parametrize(
        ("lang", "expected"),
        [
            ("ja", "は 1 日分のフォルダではありません（想定: trajectories/、vehicles/、tachometer/、geo_attributes/ を含む …/input/YYYYMMDD/）"),
            ("en", "is not a day folder (expected …/input/YYYYMMDD/ with trajectories/, vehicles/, tachometer/, geo_attributes/)"),
        ],
    )
    def test_folder_without_datasets(self, lang: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        client = tmp_path / "client"
        (client / "input" / "20261201").mkdir(parents=True)

        assert cli.main(["--lang", lang, "validate", str(client)]) == 1

        err = capsys.readouterr().err
        assert f"{client} {expected}" in err
        assert "trajectories/*.parquet" not in err

    def test_empty_folder(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert cli.main(["--lang", "en", "validate", str(tmp_path)]) == 1

        assert "is not a day folder" in capsys.readouterr().err

    def test_day_with_one_dataset_gets_report(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        # One dataset folder is enough to be a day: the missing ones are contract errors of the report.
        (tmp_path / "vehicles").mkdir()

        assert cli.main(["--lang", "en", "validate", str(tmp_path)]) == 2

        out = capsys.readouterr().out
        assert "dataset_missing" in out

    @pytest.mark.parametrize("lang", ["ja", "en"])
    def test_every_missing_dataset_named(self, lang: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        # Only vehicles/ exists (and it is empty): trajectories and tachometer are missing too.
        (tmp_path / "vehicles").mkdir()

        assert cli.main(["--lang", lang, "validate", str(tmp_path)]) == 2

        out = capsys.readouterr().out
        for dataset in ("trajectories", "vehicles", "tachometer"):
            assert f"`{tmp_path / dataset}/`" in out


class TestStatusLine:
    @pytest.mark.parametrize(
        ("lang", "expected", "wrong"),
        [
            ("ja", "この検証は契約の検査だけを行い、計算はしません", "計算は実行されません"),
            ("en", "This check covers the contract only and computes nothing", "stop the run before any compute"),
        ],
    )
    def test_failed_day_says_what_validate_does(
        self, lang: str, expected: str, wrong: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (tmp_path / "vehicles").mkdir()

        assert cli.main(["--lang", lang, "validate", str(tmp_path)]) == 2

        out = capsys.readouterr().out
        assert expected in out
        assert wrong not in out


class TestRejectValues:
    def test_list_is_one_line(self) -> None:
        times = np.array([f"2026-12-01T09:00:{second:02d}.000" for second in range(60)], dtype="datetime64[ms]")

        text = format_value(times)

        assert text is not None
        assert "\n" not in text
        assert text.startswith('["2026-12-01T09:00:00.000", "2026-12-01T09:00:01.000", ')
        assert text.endswith("… (60 items)]")
        assert len(text) <= MAX_VALUE_CHARS

    def test_short_list_is_whole(self) -> None:
        assert format_value(np.array([1.5, None, 3], dtype=object)) == "[1.5, null, 3]"
        assert format_value(["a", "b"]) == '["a", "b"]'
        assert format_value([]) == "[]"

    def test_list_item_that_never_fits(self) -> None:
        assert format_value(["x" * 300]) == "[… (1 item)]"

    def test_rejects_file_value_of_key_missing(self, tmp_path: Path) -> None:
        day = tmp_path / "20261201"
        write_sample_day(Store(str(day), {}), dt.date(2026, 12, 1), SampleSpec(trips=20, vertices_per_trip=12))
        rejects = tmp_path / "rejects.parquet"

        assert cli.main(["--lang", "en", "validate", str(day), "--rejects", str(rejects)]) == 0

        table = pq.read_table(rejects).to_pandas()
        values = table.loc[table[c.REASON] == "key_missing", c.VALUE].to_list()
        assert values, "the sample day has a trajectory without trip_id"
        for value in values:
            assert "\n" not in value
            assert "timestamps=[" in value
            assert "np.datetime64" not in value
            assert not value.endswith("..."), value
