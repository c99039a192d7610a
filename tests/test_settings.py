"""Settings: profiles, environment overrides and validation at run start."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pydantic
import pytest

from compute.settings import load_settings, parse_run_date


class TestProfiles:
    def test_local_profile_is_default(self) -> None:
        settings = load_settings(environ={})
        assert settings.profile == "local"
        assert settings.cluster.kind == "local"
        assert settings.language == "ja"

    def test_local_roots_are_folders(self, tmp_path: Path) -> None:
        settings = load_settings("local", environ={"LMCO2_DATA_DIR": str(tmp_path)})
        assert settings.url("raw", "2026-12-01") == f"{tmp_path}/lake/raw/20261201/"
        assert settings.url("output", dt.date(2026, 12, 1)) == f"{tmp_path}/client/output/20261201/"

    def test_gke_profile_uses_object_stores(self) -> None:
        settings = load_settings("gke", environ={})
        assert settings.url("input", "20261201").startswith("s3://")
        assert settings.url("raw", "20261201").startswith("gs://")
        assert settings.cluster.kind == "kubernetes"
        assert settings.storage.output_write_only

    def test_profile_from_environment(self) -> None:
        assert load_settings(environ={"LMCO2_PROFILE": "gke"}).profile == "gke"

    def test_unknown_profile_names_the_choices(self) -> None:
        with pytest.raises(FileNotFoundError, match="local"):
            load_settings("staging", environ={})


class TestOverrides:
    def test_nested_environment_override(self) -> None:
        settings = load_settings("local", environ={"LMCO2_CLUSTER__N_WORKERS": "3", "LMCO2_LANGUAGE": "en"})
        assert settings.cluster.n_workers == 3
        assert settings.language == "en"

    def test_explicit_override_wins(self) -> None:
        settings = load_settings("local", environ={"LMCO2_OUTPUT__FORMAT": "csv"}, overrides={"output": {"format": "jsonl"}})
        assert settings.output.format == "jsonl"

    def test_invalid_value_names_the_field(self) -> None:
        with pytest.raises(pydantic.ValidationError, match="n_workers"):
            load_settings("local", environ={"LMCO2_CLUSTER__N_WORKERS": "0"})

    def test_unknown_field_is_rejected(self) -> None:
        with pytest.raises(pydantic.ValidationError, match="n_wrokers"):
            load_settings("local", environ={"LMCO2_CLUSTER__N_WROKERS": "2"})

    def test_root_without_date_is_rejected(self) -> None:
        with pytest.raises(pydantic.ValidationError, match="yyyymmdd"):
            load_settings("local", environ={"LMCO2_STORAGE__RAW": "/data/raw/"})

    def test_webhook_is_secret(self) -> None:
        settings = load_settings("local", environ={"LMCO2_NOTIFY__WEBHOOK_URL": "http://127.0.0.1:9/hook?token=abc"})
        assert "abc" not in repr(settings)
        assert "abc" not in settings.model_dump_json()


class TestRunDate:
    @pytest.mark.parametrize("text", ["2026-12-01", "20261201"])
    def test_accepted_forms(self, text: str) -> None:
        assert parse_run_date(text) == dt.date(2026, 12, 1)

    def test_invalid_date_says_the_format(self) -> None:
        with pytest.raises(ValueError, match="YYYY-MM-DD"):
            parse_run_date("2026-13-01")


def test_report_timezone_is_checked() -> None:
    from compute.settings import OutputSettings

    assert OutputSettings().report_timezone == "Asia/Tokyo"
    assert OutputSettings(report_timezone="UTC").report_timezone == "UTC"
    for bad in ("Mars/Olympus", "", "../etc"):
        with pytest.raises(ValueError, match="IANA time zone"):
            OutputSettings(report_timezone=bad)
