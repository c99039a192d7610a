"""The lm-co2 command and the ja/en message catalogue."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from compute import i18n
from compute.sample import SampleSpec, write_sample_day
from compute.storage import Store
from flows import cli


class TestHelp:
    @pytest.mark.parametrize(("lang", "expected"), [("ja", "日次"), ("en", "daily batch")])
    def test_help_in_each_language(self, lang: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as stop:
            cli.main(["--lang", lang, "--help"])
        assert stop.value.code == 0
        out = capsys.readouterr().out
        assert expected in out
        for command in ("run", "sample", "validate"):
            assert command in out

    def test_help_defaults_to_japanese(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("LMCO2_LANGUAGE", raising=False)
        with pytest.raises(SystemExit):
            cli.main(["run", "--help"])
        assert "実行日" in capsys.readouterr().out

    def test_console_script_runs(self) -> None:
        done = subprocess.run([sys.executable, "-m", "flows.cli", "--lang", "en", "--help"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "lm-co2" in done.stdout


class TestCatalogue:
    def test_every_key_has_both_languages(self) -> None:
        import compute.contract  # noqa: F401 - registers its messages
        import compute.report  # noqa: F401

        assert i18n.keys()
        for key in i18n.keys():
            assert i18n.message(key, "ja") != "", key
            assert i18n.message(key, "en") != "", key

    def test_missing_language_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="no text for"):
            i18n.register({"test.only_en": {"en": "only English"}})


class TestSampleCommand:
    def test_sample_then_validate(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        day = tmp_path / "20261201"
        assert cli.main(["--lang", "en", "sample", "--date", "2026-12-01", "--trips", "30", "--vertices", "12", "--out", str(day)]) == 0
        assert "Sample day written" in capsys.readouterr().out
        rejects = tmp_path / "rejects.parquet"
        code = cli.main(["--lang", "en", "validate", str(day), "--rejects", str(rejects)])
        report = capsys.readouterr().out
        assert code == 0
        assert "vehicle_not_in_master" in report
        assert pq.read_table(rejects).num_rows == 7

    def test_validate_reports_missing_dataset(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        day = tmp_path / "day"
        write_sample_day(Store(str(day)), dt.date(2026, 12, 1), SampleSpec(trips=10, vertices_per_trip=5))
        for file in (day / "vehicles").iterdir():
            file.unlink()
        code = cli.main(["--lang", "ja", "validate", str(day)])
        assert code == 2
        assert "vehicles" in capsys.readouterr().out

    def test_error_is_one_line_in_language(self, capsys: pytest.CaptureFixture[str]) -> None:
        code = cli.main(["--lang", "en", "--profile", "nonexistent", "sample", "--date", "2026-12-01"])
        assert code == 1
        err = capsys.readouterr().err
        assert err.startswith("Error: ")
        assert "nonexistent" in err


class TestSampleGenerator:
    def test_same_spec_gives_identical_files(self, tmp_path: Path) -> None:
        spec = SampleSpec(trips=25, vertices_per_trip=10)
        for name in ("a", "b"):
            write_sample_day(Store(str(tmp_path / name)), dt.date(2026, 12, 1), spec)
        files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.parquet"))
        assert files
        for relative in files:
            assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes(), relative

    def test_covers_every_class_and_fuel(self, tmp_path: Path) -> None:
        write_sample_day(Store(str(tmp_path)), dt.date(2026, 12, 1), SampleSpec(trips=400, vertices_per_trip=5, defects=False))
        vehicles = pq.read_table(tmp_path / "vehicles").to_pandas()
        assert set(vehicles["vehicle_class"]) == {"kei_passenger", "passenger", "bus", "kei_truck", "light_truck", "medium_truck", "heavy_truck"}
        assert set(vehicles["fuel_type"]) == {"gasoline", "diesel", "hybrid", "lpg", "cng", "electric"}
        tacho = pq.read_table(tmp_path / "tachometer").to_pandas()
        assert 0 < tacho["vehicle_id"].nunique() < len(vehicles)


class TestArgumentChecks:
    @pytest.mark.parametrize(("value", "reason"), [("2026-13-40", "その日は存在しません"), ("yesterday", "不正"), ("0999-12-01", "1000 より前")])
    def test_bad_date_fails_before_prefect(self, value: str, reason: str, capsys: pytest.CaptureFixture[str]) -> None:
        assert cli.main(["--lang", "ja", "run", "--date", value]) == 1
        err = capsys.readouterr().err
        assert value in err
        assert reason in err

    def test_bad_phase_names_the_choices(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert cli.main(["--lang", "en", "run", "--date", "2026-12-01", "--phases", "fetch,compte"]) == 1
        err = capsys.readouterr().err
        assert "'compte'" in err
        assert "fetch, validate, compute, output, publish" in err

    def test_backfill_checks_dates(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert cli.main(["--lang", "en", "backfill", "--start", "2026-12-01", "--end", "2026-12-32"]) == 1
        assert "2026-12-32" in capsys.readouterr().err


class TestJapaneseFraming:
    def test_help_headings_in_japanese(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit):
            cli.main(["--lang", "ja", "--help"])
        out = capsys.readouterr().out
        assert out.startswith("使い方: lm-co2")
        assert "オプション:" in out
        assert "このヘルプを表示して終了する。" in out

    def test_usage_error_in_japanese(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as stop:
            cli.main(["--lang", "ja", "frobnicate"])
        assert stop.value.code == 2
        assert "引数が不正です" in capsys.readouterr().err

    def test_validate_missing_folder(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert cli.main(["--lang", "ja", "validate", str(tmp_path / "20260101")]) == 1
        err = capsys.readouterr().err
        assert "が見つかりません" in err
        assert str(tmp_path / "20260101") in err
        assert "1 日分のフォルダ" in err


class TestValidateReportLanguage:
    # Every detail kind of the rules is rendered in both languages in test_contract_l10n_details.py;
    # here the CLI's report of a whole day is checked.

    def test_validate_report_has_no_english_examples(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        day = tmp_path / "day"
        write_sample_day(Store(str(day)), dt.date(2026, 12, 1), SampleSpec(trips=30, vertices_per_trip=12))
        rejects = tmp_path / "rejects.parquet"

        assert cli.main(["--lang", "ja", "validate", str(day), "--rejects", str(rejects)]) == 0
        report = capsys.readouterr().out

        for word in ("vertex", "of the partition", "fewer than", "longitude"):
            assert word not in report
        assert "trajectories/part-defects.parquet の先頭を 0 として 5 行目" in report
        assert "頂点 1 から 2" in report
        assert "row 5 of trajectories/part-defects.parquet, counting from 0" in pq.read_table(rejects).column("detail").to_pylist()

    def test_missing_dataset_error_in_japanese(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        day = tmp_path / "day"
        write_sample_day(Store(str(day)), dt.date(2026, 12, 1), SampleSpec(trips=10, vertices_per_trip=5))
        for file in (day / "vehicles").iterdir():
            file.unlink()
        assert cli.main(["--lang", "ja", "validate", str(day)]) == 2
        report = capsys.readouterr().out
        assert "想定: vehicles/*.parquet ≥ 1" in report
        assert "no files" not in report
        assert "Parquet files under" not in report


class TestReadme:
    @pytest.mark.parametrize("readme", ["README.md", "README.ja.md"])
    def test_every_option_is_documented(self, readme: str) -> None:
        import argparse

        text = (Path(__file__).resolve().parents[1] / readme).read_text(encoding="utf-8")
        parser = cli.build_parser("en")
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for name, command in commands.choices.items():
            for action in command._actions:
                for option in action.option_strings:
                    if option.startswith("--") and option != "--help":
                        assert option in text, f"{readme} does not mention {name} {option}"
        for setting in ("LMCO2_LANGUAGE", "language:", "report.ja.md", "matplotlib-fontja"):
            assert setting in text, setting
