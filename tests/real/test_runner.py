"""The make real runner without the real data: a clear message and nothing run."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows import real


def test_absent_folder_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert real.main(["--lang", "en", "--root", str(tmp_path / "missing")]) == 0
    assert "Real data folder not found" in capsys.readouterr().out


def test_absent_folder_in_japanese(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMCO2_LANGUAGE", raising=False)
    assert real.main(["--root", str(tmp_path / "missing")]) == 0
    assert "実データのフォルダがありません" in capsys.readouterr().out


def test_only_day_folders_found(tmp_path: Path) -> None:
    for name in ("porto-20130701", "chicago-20070313", "notes", "porto-2013"):
        (tmp_path / name).mkdir()
    (tmp_path / "README.md").write_text("x", encoding="utf-8")
    days = real.discover_days(tmp_path)
    assert [(d.city, d.run_date.isoformat()) for d in days] == [("chicago", "2007-03-13"), ("porto", "2013-07-01")]


def test_profile_reads_the_day(tmp_path: Path) -> None:
    from compute.settings import load_settings

    (tmp_path / "data" / "porto-20130701").mkdir(parents=True)
    day = real.discover_days(tmp_path / "data")[0]
    settings = load_settings(real.write_day_profile(day, tmp_path / "out", "en"), environ={})
    assert settings.url("input", day.run_date) == str(tmp_path / "data" / "porto-20130701") + "/"
    assert settings.url("processed", day.run_date).startswith(str(tmp_path / "out" / "porto"))
    assert settings.output.report_timezone == "Europe/Lisbon"


def test_unknown_city_reports_utc_hours(tmp_path: Path) -> None:
    from compute.settings import load_settings

    (tmp_path / "data" / "oslo-20200101").mkdir(parents=True)
    day = real.discover_days(tmp_path / "data")[0]
    assert load_settings(real.write_day_profile(day, tmp_path / "out", "en"), environ={}).output.report_timezone == "UTC"
