"""Argument and profile errors of the ``lm-co2`` command, run as a subprocess as an operator starts it.

Each case fails before Prefect or a Dask cluster starts, so no Prefect server is needed.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compute.sample import SampleSpec, write_sample_day
from compute.storage import Store
from flows import cli
from tests.conftest import REPO_ROOT, write_profile

PHASE_CHOICES = "fetch, validate, compute, output, publish"


def _lm_co2(args: list[str], *, lang: str = "ja") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LMCO2_LANGUAGE": lang}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT,
    )


@pytest.fixture()
def sample_day(tmp_path: Path) -> Path:
    day = tmp_path / "20261201"
    write_sample_day(Store(str(day)), dt.date(2026, 12, 1), SampleSpec(trips=10, vertices_per_trip=5))
    return day


class TestProfileYamlSyntax:
    @pytest.fixture()
    def broken_profile(self, tmp_path: Path) -> Path:
        path = write_profile(tmp_path / "profile.yaml", tmp_path / "data")
        path.write_text(path.read_text(encoding="utf-8") + "extra: [1, 2\n", encoding="utf-8")
        return path

    def test_message_in_japanese(self, broken_profile: Path) -> None:
        lines = len(broken_profile.read_text(encoding="utf-8").splitlines())

        done = _lm_co2(["--profile", str(broken_profile), "validate", "."])

        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert "想定外" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert done.stderr.startswith(f"エラー: プロファイル {broken_profile} は YAML として不正です")
        assert f"{lines + 1} 行 1 列" in done.stderr
        assert f"{lines} 行 8 列から" in done.stderr
        assert "修正してから再実行してください" in done.stderr
        # The parser's English text is explained in Japanese and kept only as a quotation.
        assert "[ ] のリストが閉じていないか" in done.stderr
        assert "[ ] のリストを読んでいる途中" in done.stderr
        assert "while parsing" not in done.stderr

    @pytest.mark.parametrize(
        ("text", "explanation"),
        [
            ("a: b: c\n", "ここには「キー: 値」を書けません"),
            ("a:\n\tb: 1\n", "タブ文字は使えません"),
            ("a: *x\n", "定義されていないアンカー"),
            ("a:\n  b: 1\n c: 2\n", "字下げがそろっていません"),
            ("a: 'abc\n", "ファイルが途中で終わっています"),
            ("a: {b: 1\n", "{ } のマッピングが閉じていない"),
            ('a: "\\q"\n', "使えないエスケープ"),
        ],
    )
    def test_known_parser_problems_are_explained(self, tmp_path: Path, text: str, explanation: str, capsys: pytest.CaptureFixture[str]) -> None:
        profile = tmp_path / "broken.yaml"
        profile.write_text(text, encoding="utf-8")

        assert cli.main(["--profile", str(profile), "validate", "."]) == 1
        japanese = capsys.readouterr().err
        assert cli.main(["--lang", "en", "--profile", str(profile), "validate", "."]) == 1
        english = capsys.readouterr().err

        assert explanation in japanese
        assert "（YAML パーサー: " in japanese  # the parser's own words, quoted after the explanation
        assert "while " not in japanese
        assert explanation not in english
        assert "is not valid YAML" in english

    def test_unknown_parser_problem_is_quoted(self) -> None:
        from compute.settings_errors import describe_yaml_context, describe_yaml_problem

        assert describe_yaml_problem("some new problem", "ja") == "YAML パーサーの説明: 'some new problem'"
        assert describe_yaml_problem("some new problem", "en") == "some new problem"
        assert describe_yaml_context("while reading something else", "ja") == "YAML パーサー: 'while reading something else'"

    def test_message_in_english(self, broken_profile: Path) -> None:
        lines = len(broken_profile.read_text(encoding="utf-8").splitlines())

        done = _lm_co2(["--lang", "en", "--profile", str(broken_profile), "validate", "."])

        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert done.stderr.startswith(f"Error: Profile {broken_profile} is not valid YAML (line {lines + 1}, column 1)")
        assert f"from line {lines}, column 8" in done.stderr
        assert "Correct the file" in done.stderr

    def test_error_without_context(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "profile.yaml"
        path.write_text("storage: a\n bad: b\n", encoding="utf-8")

        assert cli.main(["--lang", "en", "--profile", str(path), "validate", "."]) == 1

        err = capsys.readouterr().err
        assert "(line 2, column 5): mapping values are not allowed here. Correct" in err


class TestSampleArguments:
    @pytest.mark.parametrize(
        ("option", "value", "minimum"),
        [("--vertices", "1", 2), ("--vertices", "0", 2), ("--trips", "-5", 1), ("--trips", "0", 1)],
    )
    def test_too_small_is_usage_error(self, option: str, value: str, minimum: int, tmp_path: Path) -> None:
        out = tmp_path / "20261201"

        done = _lm_co2(["sample", "--date", "2026-12-01", option, value, "--out", str(out)])

        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        assert f"引数 {option}: {value} は指定できません。{minimum} 以上の整数を指定してください" in done.stderr
        assert not out.exists()

    def test_too_small_in_english(self, tmp_path: Path) -> None:
        out = tmp_path / "20261201"

        done = _lm_co2(["--lang", "en", "sample", "--date", "2026-12-01", "--vertices", "1", "--out", str(out)])

        assert done.returncode == 2
        assert "argument --vertices: 1 is too small; give an integer of at least 2" in done.stderr
        assert not out.exists()

    def test_minimum_is_accepted(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        out = tmp_path / "20261201"

        code = cli.main(["--lang", "en", "sample", "--date", "2026-12-01", "--trips", "1", "--vertices", "2", "--out", str(out)])

        assert code == 0
        assert "Sample day written" in capsys.readouterr().out

    @pytest.mark.parametrize(("field", "value"), [("trips", 0), ("vertices_per_trip", 1), ("trips_per_file", 0)])
    def test_spec_rejects_small_values(self, field: str, value: int) -> None:
        with pytest.raises(ValueError, match=f"SampleSpec.{field} must be at least"):
            SampleSpec(**{field: value})  # type: ignore[arg-type]


class TestRejectsDestination:
    @pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs the Linux /proc file system")
    def test_unwritable_path_in_japanese(self, sample_day: Path) -> None:
        done = _lm_co2(["validate", str(sample_day), "--rejects", "/proc/rej.parquet"])

        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert "除外行ファイル /proc/rej.parquet に書き込めません" in done.stderr
        assert "--rejects に指定してください" in done.stderr

    def test_missing_folder_in_english(self, sample_day: Path, tmp_path: Path) -> None:
        target = tmp_path / "no-such-folder" / "rejects.parquet"

        done = _lm_co2(["--lang", "en", "validate", str(sample_day), "--rejects", str(target)])

        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert done.stderr.startswith(f"Error: Cannot write the rejects file {target} (the folder does not exist")
        assert done.stdout == ""

    @pytest.mark.parametrize(("lang", "expected"), [("ja", "除外行を書き出しました: {path}"), ("en", "Rejects written: {path}")])
    def test_success_names_the_file(self, lang: str, expected: str, sample_day: Path, tmp_path: Path) -> None:
        target = tmp_path / "rejects.parquet"

        done = _lm_co2(["--lang", lang, "validate", str(sample_day), "--rejects", str(target)])

        assert done.returncode == 0, done.stderr
        assert done.stdout.rstrip().endswith(expected.format(path=target))
        assert target.stat().st_size > 0

    def test_failed_validation_leaves_no_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        target = tmp_path / "rejects.parquet"

        assert cli.main(["--lang", "en", "validate", str(tmp_path / "20260101"), "--rejects", str(target)]) == 1

        assert "not found; pass the path or URL of a day folder" in capsys.readouterr().err
        assert not target.exists()


class TestEmptyPhases:
    @pytest.mark.parametrize("value", ["", ",", " , "])
    def test_no_phase_name_is_rejected(self, value: str, tmp_path: Path) -> None:
        profile = write_profile(tmp_path / "profile.yaml", tmp_path / "data")

        done = _lm_co2(["--profile", str(profile), "run", "--date", "2026-12-01", "--phases", value])

        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert f"--phases {value!r} にフェーズ名がありません" in done.stderr
        assert PHASE_CHOICES in done.stderr

    def test_backfill_in_english(self, capsys: pytest.CaptureFixture[str]) -> None:
        args = ["--lang", "en", "backfill", "--start", "2026-12-01", "--end", "2026-12-02", "--phases", ","]

        assert cli.main(args) == 1

        err = capsys.readouterr().err
        assert f"--phases ',' names no phase; give one or more, comma-separated, from: {PHASE_CHOICES}" in err


class TestGlobalOptionsAfterCommand:
    def test_hint_in_japanese(self) -> None:
        done = _lm_co2(["run", "--date", "2026-12-01", "--profile", "local"])

        assert done.returncode == 2
        assert "認識できない引数です: --profile local。" in done.stderr
        assert "--profile と --lang はサブコマンドより前に置いてください" in done.stderr
        assert "例: lm-co2 --profile local run --date 2026-12-01" in done.stderr

    def test_hint_in_english(self) -> None:
        done = _lm_co2(["run", "--date", "2026-12-01", "--lang", "en", "--profile=local"], lang="en")

        assert done.returncode == 2
        assert "--profile and --lang go before the subcommand" in done.stderr
        assert "for example: lm-co2 --lang en --profile=local run --date 2026-12-01" in done.stderr

    def test_no_hint_for_other_options(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as stop:
            cli.main(["--lang", "en", "run", "--bogus"])

        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert "unrecognized arguments: --bogus" in err
        assert "before the subcommand" not in err

    @pytest.mark.parametrize(
        ("argv", "expected"),
        [
            (["run", "--profile", "gke", "--force"], ["--profile", "gke", "run", "--force"]),
            (["--lang", "ja", "validate", "x", "--profile=a.yaml"], ["--lang", "ja", "--profile=a.yaml", "validate", "x"]),
            (["run", "--force"], None),
            (["--profile", "local"], None),
        ],
    )
    def test_reordered_command_line(self, argv: list[str], expected: list[str] | None) -> None:
        assert cli._global_options_first(argv) == expected
