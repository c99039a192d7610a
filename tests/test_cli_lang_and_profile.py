"""The lm-co2 command: --lang help, and where a --profile goes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flows import cli


class TestLangHelp:
    @pytest.mark.parametrize(("lang", "default"), [("ja", "それもなければ ja"), ("en", "else ja")])
    def test_help_names_default_and_variable(self, lang: str, default: str, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as stop:
            cli.main(["--lang", lang, "--help"])

        assert stop.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "LMCO2_LANGUAGE" in out
        assert default in out


class TestProfilePlacement:
    def test_unknown_profile_before_subcommand_exits_1(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert cli.main(["--lang", "en", "--profile", "nosuch", "run", "--date", "2026-12-01"]) == 1

        assert "Profile 'nosuch' not found" in capsys.readouterr().err

    def test_profile_after_subcommand_is_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as stop:
            cli.main(["--lang", "en", "run", "--date", "2026-12-01", "--profile", "nosuch"])

        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert "unrecognized arguments: --profile nosuch" in err
        assert "for example: lm-co2 --lang en --profile nosuch run --date 2026-12-01" in err

    def test_invalid_lang_is_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as stop:
            cli.main(["--lang", "jp", "run"])

        assert stop.value.code == 2
        assert "'jp'" in capsys.readouterr().err


class TestBackfillOutcome:
    @pytest.mark.parametrize(("outcomes", "heading"), [
        ({"2026-12-01": "completed"}, "Backfill outcome (1 day):"),
        ({"2026-12-01": "completed", "2026-12-02": "failed"}, "Backfill outcome (2 days):"),
    ])
    def test_heading_counts_days(self, outcomes: dict[str, str], heading: str, capsys: pytest.CaptureFixture[str]) -> None:
        cli._print_backfill_outcomes(outcomes, "en", file=sys.stdout)

        assert capsys.readouterr().out.splitlines()[0] == heading

    def test_heading_in_japanese(self, capsys: pytest.CaptureFixture[str]) -> None:
        cli._print_backfill_outcomes({"2026-12-01": "completed"}, "ja", file=sys.stdout)

        assert capsys.readouterr().out.splitlines()[0] == "バックフィル結果（1 日）:"


class TestProfileFileErrors:
    def test_empty_profile_alone_on_its_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert cli.main(["--lang", "en", "--profile", "", "validate", "/nonexistent"]) == 1

        # No setting was read, so no heading about invalid settings or their overrides.
        assert capsys.readouterr().err == ("Error: the profile name is empty (--profile); give a profile name such as local or gke, "
                                           "or the path of a YAML file\n")

    def test_environment_note_starts_a_sentence(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LMCO2_OUTPUT__COMPRESSION", "nonsense")

        assert cli.main(["--lang", "en", "validate", "/nonexistent"]) == 1

        assert "or null for no compression. The environment variable LMCO2_OUTPUT__COMPRESSION sets this value." in capsys.readouterr().err


class TestSampleDateWindow:
    @pytest.mark.parametrize("day", ["1999-12-31", "2100-01-01"])
    def test_date_outside_contract_window(self, day: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert cli.main(["--lang", "en", "sample", "--date", day, "--out", str(tmp_path / "day")]) == 1

        assert f"sample date {day} is outside the contract's time window (from 2000-01-01, before 2100-01-01)" in capsys.readouterr().err
        assert not (tmp_path / "day").exists()
