"""Hostile profiles and run dates: each is rejected when the settings load, with one operator line.

Every case here used to load and fail later in the run with a traceback, or, for the alias bomb,
to use memory and time without bound while the error message was built.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from pathlib import Path
from typing import Any

import pydantic
import pytest

from compute.i18n import OperatorValueError
from compute.settings import ProfileSyntaxError, load_settings, parse_run_date
from compute.settings_errors import SettingsError
from flows import cli
from tests.conftest import write_profile

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
ROOT_TEMPLATES = {
    "input": "{data_dir}/client/input/{yyyymmdd}/",
    "raw": "{data_dir}/lake/raw/{yyyymmdd}/",
    "temp": "{data_dir}/lake/temp/{yyyymmdd}/",
    "processed": "{data_dir}/lake/processed/{yyyymmdd}/",
    "output": "{data_dir}/client/output/{yyyymmdd}/",
}


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LMCO2_"):
            monkeypatch.delenv(name)


def _profile(tmp_path: Path, **sections: Any) -> Path:
    return write_profile(tmp_path / "hostile.yaml", tmp_path / "data", **sections)


def _messages(profile: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Load ``profile`` and return the operator's message of its validation error in each language."""
    env = environ or {}
    with pytest.raises(pydantic.ValidationError) as raised:
        load_settings(profile, environ=env)
    error = SettingsError.from_validation_error(str(profile), raised.value, env)
    return {lang: error.message(lang) for lang in ("ja", "en")}


def _cli_error(capsys: pytest.CaptureFixture[str], arguments: list[str]) -> str:
    """Run ``lm-co2 ARGUMENTS validate DAY`` and return stderr, which must be one line."""
    assert cli.main([*arguments, "validate", "/nonexistent-day"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    assert len(captured.err.splitlines()) == 1
    return captured.err


def _alias_bomb(levels: int, indent: str) -> str:
    """Return YAML lines of ``levels`` nested lists of 9 aliases; the last anchor is ``a{levels - 1}``."""
    lines = [f'{indent}x0: &a0 [{", ".join(["lol"] * 9)}]']
    for level in range(1, levels):
        lines.append(f"{indent}x{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def _storage_yaml() -> str:
    return "storage:\n" + "".join(f'  {root}: "{template}"\n' for root, template in ROOT_TEMPLATES.items())


class TestAliasBomb:
    """Nine to the power ten strings from under 1 kB of YAML; the error text must not expand them."""

    @pytest.mark.timeout(20)
    @pytest.mark.parametrize("where", ["unknown_section", "string_field"])
    def test_bomb_fails_fast(self, where: str, tmp_path: Path) -> None:
        if where == "unknown_section":
            text = _storage_yaml() + "anchors:\n" + _alias_bomb(10, "  ")
        else:
            text = _storage_yaml() + "anchors:\n" + _alias_bomb(10, "  ") + "cluster:\n  memory_limit: *a9\n"
        profile = tmp_path / "bomb.yaml"
        profile.write_text(text, encoding="utf-8")
        assert profile.stat().st_size < 1024

        started = time.monotonic()
        texts = _messages(profile)
        elapsed_s = time.monotonic() - started

        assert elapsed_s < 3
        assert len(texts["en"]) < 1000
        assert len(texts["ja"]) < 1000
        assert "..." in texts["en"]

    @pytest.mark.timeout(20)
    def test_bomb_through_command(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        profile = tmp_path / "bomb.yaml"
        profile.write_text(_storage_yaml() + "cluster:\n  memory_limit:\n" + _alias_bomb(10, "    "), encoding="utf-8")

        err = _cli_error(capsys, ["--lang", "en", "--profile", str(profile)])

        assert "cluster.memory_limit" in err


class TestStorageTemplates:
    @pytest.mark.parametrize(
        "template",
        [
            "{data_dir}/client/{client}/input/{yyyymmdd}/",
            "{data_dir}/client/input/{yyyymmdd}/{",
            "{data_dir}/client/input}/{yyyymmdd}/",
            "{data_dir}/client/input/{yyyymmdd[0]}/{yyyymmdd}/",
            "{}/client/input/{yyyymmdd}/",
        ],
    )
    def test_bad_placeholder_is_rejected(self, template: str, tmp_path: Path) -> None:
        texts = _messages(_profile(tmp_path, storage={"input": template}))

        assert "storage.input" in texts["en"]
        assert "{data_dir}, {yyyymmdd}" in texts["en"]
        assert "{data_dir}, {yyyymmdd}" in texts["ja"]
        assert JAPANESE.search(texts["ja"])

    def test_unknown_placeholder_is_named(self, tmp_path: Path) -> None:
        texts = _messages(_profile(tmp_path, storage={"raw": "{data_dir}/{client}/raw/{yyyymmdd}/"}))

        assert "{client}" in texts["en"]
        assert "{client}" in texts["ja"]

    def test_escaped_braces_are_allowed(self, tmp_path: Path) -> None:
        settings = load_settings(_profile(tmp_path, storage={"temp": "{data_dir}/temp{{x}}/{yyyymmdd}/"}), environ={})

        assert settings.url("temp", "2026-12-01").endswith("/temp{x}/20261201/")

    def test_command_names_the_root(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        profile = _profile(tmp_path, storage={"input": "{data_dir}/client/{client}/input/{yyyymmdd}/"})

        err = _cli_error(capsys, ["--lang", "ja", "--profile", str(profile)])

        assert "storage.input" in err
        assert "{client}" in err


class TestOverlappingRoots:
    @pytest.mark.parametrize(
        ("storage", "first", "second"),
        [
            ({"output": ROOT_TEMPLATES["input"]}, "input", "output"),
            ({"raw": "{data_dir}/client/input/{yyyymmdd}/raw/"}, "input", "raw"),
            ({"processed": "{data_dir}/lake/temp/{yyyymmdd}/processed"}, "temp", "processed"),
            ({"temp": "file://{data_dir}/lake/raw/{yyyymmdd}"}, "raw", "temp"),
            ({"output": "{data_dir}/client/output/{yyyymmdd}/../../input/{yyyymmdd}/"}, "input", "output"),
        ],
    )
    def test_overlap_is_rejected(self, storage: dict[str, str], first: str, second: str, tmp_path: Path) -> None:
        texts = _messages(_profile(tmp_path, storage=storage))

        assert f"storage.{first}" in texts["en"]
        assert f"storage.{second}" in texts["en"]
        assert f"storage.{first}" in texts["ja"]
        assert f"storage.{second}" in texts["ja"]

    def test_absolute_path_equal_to_template(self, tmp_path: Path) -> None:
        data_dir = tmp_path / "data"
        texts = _messages(_profile(tmp_path, storage={"raw": f"{data_dir}/client/input/{{yyyymmdd}}/"}))

        assert "storage.input" in texts["en"]
        assert "storage.raw" in texts["en"]

    def test_object_store_overlap_is_rejected(self, tmp_path: Path) -> None:
        storage = {
            "input": "s3://client/in/{yyyymmdd}/",
            "raw": "gs://ours/raw/{yyyymmdd}/",
            "temp": "gs://ours/raw/{yyyymmdd}/temp/",
            "processed": "gs://ours/processed/{yyyymmdd}/",
            "output": "s3://client/out/{yyyymmdd}/",
        }
        texts = _messages(_profile(tmp_path, storage=storage))

        assert "storage.raw" in texts["en"]
        assert "storage.temp" in texts["en"]

    def test_sibling_with_common_prefix_is_allowed(self, tmp_path: Path) -> None:
        profile = _profile(tmp_path, storage={"output": "{data_dir}/client/input-copy/{yyyymmdd}/"})

        assert load_settings(profile, environ={}).storage.output.endswith("input-copy/{yyyymmdd}/")

    def test_same_path_in_other_store_is_allowed(self, tmp_path: Path) -> None:
        storage = {
            "input": "s3://bucket/day/{yyyymmdd}/",
            "raw": "gs://bucket/day/{yyyymmdd}/",
            "temp": "gs://bucket/temp/{yyyymmdd}/",
            "processed": "gs://bucket/processed/{yyyymmdd}/",
            "output": "s3://bucket/out/{yyyymmdd}/",
        }

        assert load_settings(_profile(tmp_path, storage=storage), environ={}).storage.raw.startswith("gs://")

    def test_shipped_profiles_load(self) -> None:
        assert load_settings("local", environ={}).profile == "local"
        environ = {"LMCO2_CREDENTIALS__WEBHOOK_BLOCK": "lm-co2-webhook-url"}
        assert load_settings("gke", environ=environ).profile == "gke"


class TestMemoryLimit:
    @pytest.mark.parametrize("value", ["banana", "-4GiB", "0", "0.5", "", "4GiB/s"])
    def test_invalid_size_is_rejected(self, value: str, tmp_path: Path) -> None:
        texts = _messages(_profile(tmp_path, cluster={"memory_limit": value}))

        assert "cluster.memory_limit" in texts["en"]
        assert repr(value) in texts["en"]
        assert "4GiB" in texts["ja"]
        assert JAPANESE.search(texts["ja"])

    @pytest.mark.parametrize("value", ["4GiB", "512 MB", "auto", "3000000000"])
    def test_valid_size_loads(self, value: str, tmp_path: Path) -> None:
        assert load_settings(_profile(tmp_path, cluster={"memory_limit": value}), environ={}).cluster.memory_limit == value

    def test_variable_is_named(self, tmp_path: Path) -> None:
        environ = {"LMCO2_CLUSTER__MEMORY_LIMIT": "banana"}

        texts = _messages(_profile(tmp_path), environ)

        assert "LMCO2_CLUSTER__MEMORY_LIMIT" in texts["en"]


class TestOutputCompression:
    @pytest.mark.parametrize("codec", ["nonsense", "lzo", "uncompressed"])
    def test_parquet_rejects_unknown_codec(self, codec: str, tmp_path: Path) -> None:
        texts = _messages(_profile(tmp_path, output={"format": "parquet", "compression": codec}))

        assert "output.compression" in texts["en"]
        assert repr(codec) in texts["en"]
        assert "zstd" in texts["en"]
        assert "snappy" in texts["ja"]

    @pytest.mark.parametrize("codec", ["zstd", "ZSTD", "snappy", "gzip", "brotli", "lz4", "none", None])
    def test_parquet_accepts_pyarrow_codec(self, codec: str | None, tmp_path: Path) -> None:
        settings = load_settings(_profile(tmp_path, output={"format": "parquet", "compression": codec}), environ={})

        assert settings.output.compression == codec

    @pytest.mark.parametrize("fmt", ["csv", "jsonl"])
    def test_text_format_rejects_unknown_codec(self, fmt: str, tmp_path: Path) -> None:
        texts = _messages(_profile(tmp_path, output={"format": fmt, "compression": "nonsense"}))

        assert "output.compression" in texts["en"]
        assert fmt in texts["en"]

    def test_text_format_keeps_default_codec(self, tmp_path: Path) -> None:
        assert load_settings(_profile(tmp_path, output={"format": "csv"}), environ={}).output.format == "csv"


class TestWebhookWithoutUrl:
    def test_missing_url_is_rejected(self, tmp_path: Path) -> None:
        texts = _messages(_profile(tmp_path, notify={"kind": "webhook"}))

        for lang in ("ja", "en"):
            assert "notify.webhook_url" in texts[lang]
            assert "credentials.webhook_block" in texts[lang]
        assert "Setting :" not in texts["en"]

    def test_url_loads(self, tmp_path: Path) -> None:
        profile = _profile(tmp_path, notify={"kind": "webhook", "webhook_url": "http://127.0.0.1:9/hook"})

        assert load_settings(profile, environ={}).notify.kind == "webhook"

    def test_block_name_loads(self, tmp_path: Path) -> None:
        profile = _profile(tmp_path, notify={"kind": "webhook"}, credentials={"webhook_block": "lm-co2-webhook-url"})

        assert load_settings(profile, environ={}).credentials.webhook_block == "lm-co2-webhook-url"

    def test_block_from_environment_loads(self, tmp_path: Path) -> None:
        environ = {"LMCO2_CREDENTIALS__WEBHOOK_BLOCK": "lm-co2-webhook-url"}

        assert load_settings(_profile(tmp_path, notify={"kind": "webhook"}), environ=environ).notify.kind == "webhook"


class TestProfilePath:
    def test_folder_is_rejected(self, tmp_path: Path) -> None:
        with pytest.raises(OperatorValueError, match="folder"):
            load_settings(tmp_path, environ={})

    def test_empty_name_is_rejected(self) -> None:
        with pytest.raises(OperatorValueError, match="empty"):
            load_settings("", environ={})

    def test_empty_variable_is_rejected(self) -> None:
        with pytest.raises(OperatorValueError, match="LMCO2_PROFILE"):
            load_settings(environ={"LMCO2_PROFILE": ""})

    @pytest.mark.parametrize("lang", ["ja", "en"])
    def test_command_prints_one_line(self, lang: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        err = _cli_error(capsys, ["--lang", lang, "--profile", str(tmp_path)])

        assert str(tmp_path) in err
        assert "IsADirectoryError" not in err
        if lang == "ja":
            assert JAPANESE.search(err)

    def test_command_with_empty_variable(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LMCO2_PROFILE", "")

        err = _cli_error(capsys, ["--lang", "en"])

        assert "LMCO2_PROFILE" in err


class TestRunDates:
    @pytest.mark.parametrize("value", ["2026-02-29", "20260229", "2026-13-01", "2026-04-31"])
    def test_day_not_in_calendar(self, value: str) -> None:
        with pytest.raises(OperatorValueError) as raised:
            parse_run_date(value)

        assert "does not exist" in raised.value.message("en")
        assert "存在しません" in raised.value.message("ja")
        assert "write it as" not in raised.value.message("en")

    def test_wrong_form_names_the_forms(self) -> None:
        with pytest.raises(ValueError, match="YYYY-MM-DD"):
            parse_run_date("2026/12/01")

    @pytest.mark.parametrize("value", ["0001-01-01", "09991231", dt.date(999, 12, 31)])
    def test_year_below_1000_is_rejected(self, value: str | dt.date) -> None:
        with pytest.raises(OperatorValueError) as raised:
            parse_run_date(value)

        assert "1000" in raised.value.message("en")
        assert "1000" in raised.value.message("ja")

    def test_folder_has_eight_digits(self, tmp_path: Path) -> None:
        settings = load_settings(_profile(tmp_path), environ={})

        assert settings.url("input", "1000-01-01").endswith("/client/input/10000101/")
        assert settings.url("input", "9999-12-31").endswith("/client/input/99991231/")


class TestDuplicateKeys:
    def test_duplicate_section_names_its_line(self, tmp_path: Path) -> None:
        profile = tmp_path / "twice.yaml"
        profile.write_text(_storage_yaml() + "output:\n  format: csv\noutput:\n  format: jsonl\n", encoding="utf-8")

        with pytest.raises(ProfileSyntaxError) as raised:
            load_settings(profile, environ={})

        assert raised.value.line == 9
        assert "output" in raised.value.problem

    def test_duplicate_nested_key(self, tmp_path: Path) -> None:
        profile = tmp_path / "twice.yaml"
        profile.write_text(_storage_yaml() + "cluster:\n  n_workers: 2\n  n_workers: 3\n", encoding="utf-8")

        with pytest.raises(ProfileSyntaxError) as raised:
            load_settings(profile, environ={})

        assert raised.value.line == 9

    def test_merge_key_may_repeat_a_key(self, tmp_path: Path) -> None:
        profile = tmp_path / "merge.yaml"
        profile.write_text(_storage_yaml() + "cluster:\n  <<: {n_workers: 2, threads_per_worker: 1}\n  n_workers: 3\n", encoding="utf-8")

        assert load_settings(profile, environ={}).cluster.n_workers == 3

    @pytest.mark.parametrize("lang", ["ja", "en"])
    def test_command_prints_the_line(self, lang: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        profile = tmp_path / "twice.yaml"
        profile.write_text(_storage_yaml() + "output:\n  format: csv\noutput:\n  format: jsonl\n", encoding="utf-8")

        err = _cli_error(capsys, ["--lang", lang, "--profile", str(profile)])

        assert {"ja": "9 行", "en": "line 9"}[lang] in err
        assert "'output'" in err
