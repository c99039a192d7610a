"""Invalid profiles: the operator's message names the setting, the value, the expectation and the fix.

Each case writes a broken profile into a temporary folder and runs the ``lm-co2`` command on it.
The Japanese message must carry no English sentence from pydantic or from our validators; values
and setting names stay as the operator wrote them.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydantic
import pytest
from pydantic_core import ErrorDetails

from compute.settings import load_settings
from compute.settings_errors import SettingsError, describe_setting_error
from flows import cli
from tests.conftest import write_profile

# English words of pydantic's and our validators' sentences. None of them names a setting.
ENGLISH_WORDS = {
    "should", "be", "is", "are", "not", "the", "must", "required", "permitted", "than", "or", "got", "unable", "has",
    "but", "use", "expected", "which", "above", "below", "at", "to", "and", "of", "input", "valid", "invalid",
    "error", "field", "extra", "setting", "give", "value", "missing", "does", "exist",
}
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _english_words(text: str) -> list[str]:
    """Return the English words of ``text`` outside quoted values."""
    return [word for word in re.findall(r"[A-Za-z]+", QUOTED.sub("", text)) if word.lower() in ENGLISH_WORDS]


def _broken_profile(tmp_path: Path, **sections: Any) -> Path:
    return write_profile(tmp_path / "broken.yaml", tmp_path / "data", **sections)


def _cli_error(capsys: pytest.CaptureFixture[str], profile: Path, lang: str) -> str:
    """Run ``lm-co2 validate`` with ``profile`` and return what it printed to stderr."""
    assert cli.main(["--lang", lang, "--profile", str(profile), "validate", str(profile.parent / "day")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LMCO2_"):
            monkeypatch.delenv(name)


# (profile sections, Japanese fragments, English fragments)
CASES: dict[str, tuple[dict[str, Any], list[str], list[str]]] = {
    "int_parsing": (
        {"cluster": {"n_workers": "many"}},
        ["設定 cluster.n_workers の値 'many' は整数ではありません", "整数を指定してください"],
        ["Setting cluster.n_workers has the value 'many', which is not an integer", "Give a whole number"],
    ),
    "greater_than_equal": (
        {"cluster": {"n_workers": 0}},
        ["設定 cluster.n_workers の値 0 は範囲外です", "1 以上の値を指定してください"],
        ["Setting cluster.n_workers has the value 0, which is out of range", "at least 1"],
    ),
    "less_than_equal": (
        {"cluster": {"threads_per_worker": 100}},
        ["cluster.threads_per_worker の値 100", "64 以下の値を指定してください"],
        ["cluster.threads_per_worker has the value 100", "at most 64"],
    ),
    "greater_than": (
        {"spatial": {"link_max_distance_m": 0}},
        ["spatial.link_max_distance_m の値 0", "0 より大きい値を指定してください"],
        ["spatial.link_max_distance_m has the value 0", "greater than 0"],
    ),
    "extra_forbidden": (
        {"cluster": {"n_wrokers": 2}},
        ["設定 cluster.n_wrokers は存在しない項目です（値: 2）", "cluster に書ける項目: kind, n_workers", "cluster.n_workers の誤りではありませんか"],
        ["Setting cluster.n_wrokers does not exist (value 2)", "Settings allowed in cluster: kind, n_workers", "Did you mean cluster.n_workers?"],
    ),
    "extra_forbidden_top": (
        {"clustre": {"n_workers": 2}},
        ["設定 clustre は存在しない項目です", "プロファイルの最上位に書ける項目: profile, language", "cluster の誤りではありませんか"],
        ["Setting clustre does not exist", "Settings allowed at the top level of the profile: profile, language", "Did you mean cluster?"],
    ),
    "literal_error": (
        {"output": {"format": "xlsx"}},
        ["設定 output.format の値 'xlsx' は選べる値ではありません", "次のいずれかを指定してください: 'parquet', 'csv', 'jsonl'"],
        ["Setting output.format has the value 'xlsx', which is not one of the choices", "Give one of: 'parquet', 'csv', 'jsonl'"],
    ),
    "bool_parsing": (
        {"output": {"include_rejects": "maybe"}},
        ["設定 output.include_rejects の値 'maybe' は真偽値ではありません", "true か false を指定してください"],
        ["output.include_rejects has the value 'maybe', which is not a boolean", "Give true or false"],
    ),
    "float_parsing": (
        {"spatial": {"link_max_distance_m": "far"}},
        ["設定 spatial.link_max_distance_m の値 'far' は数値ではありません", "数値を指定してください"],
        ["spatial.link_max_distance_m has the value 'far', which is not a number", "Give a number"],
    ),
    "string_type": (
        {"cluster": {"memory_limit": [4, "GiB"]}},
        ["設定 cluster.memory_limit の値 [4, 'GiB'] は文字列ではありません", "文字列を指定してください"],
        ["cluster.memory_limit has the value [4, 'GiB'], which is not a string", "Give a string"],
    ),
    "model_type": (
        {"cluster": 4},
        ["設定 cluster の値 4 はマッピング（キーと値の組）ではありません", "cluster の下に「キー: 値」の行を字下げして書いてください"],
        ["Setting cluster has the value 4, which is not a mapping", "indented under cluster"],
    ),
    "datetime": (
        {"contract": {"thresholds": {"min_time": "yesterday"}}},
        ["設定 contract.thresholds.min_time の値 'yesterday' は日時ではありません", "ISO 8601"],
        ["contract.thresholds.min_time has the value 'yesterday', which is not a date and time", "ISO 8601"],
    ),
    "field_validator": (
        {"output": {"report_timezone": "Mars/Olympus"}},
        ["設定 output.report_timezone: report_timezone の値 'Mars/Olympus' は IANA のタイムゾーン名ではありません", "Asia/Tokyo"],
        ["Setting output.report_timezone: report_timezone must be an IANA time zone such as Asia/Tokyo, got 'Mars/Olympus'"],
    ),
    "model_validator": (
        {"cluster": {"min_workers": 5, "max_workers": 2}},
        ["cluster.min_workers=5 が cluster.max_workers=2 より大きくなっています", "min_workers を max_workers 以下にしてください"],
        ["cluster.min_workers=5 is above cluster.max_workers=2", "set min_workers at or below max_workers"],
    ),
    "storage_root": (
        {"storage": {"raw": "{data_dir}/lake/raw/"}},
        ["設定 storage.raw: ストレージのルート '{data_dir}/lake/raw/' に '{yyyymmdd}' がありません", "{yyyymmdd} を入れてください"],
        ["Setting storage.raw: storage root '{data_dir}/lake/raw/' has no '{yyyymmdd}' placeholder"],
    ),
    "contract_rename": (
        {"contract": {"trajectories": {"rename": {"id": "trip_id", "tripId": "trip_id"}}}},
        ["contract.trajectories.rename が ['id', 'tripId'] を同じ列 'trip_id' に対応付けています", "元の列を 1 つだけ"],
        ["contract.trajectories.rename maps ['id', 'tripId'] to the same column 'trip_id'; map one source column to it"],
    ),
    "contract_crs": (
        {"contract": {"vehicles": {"crs": "EPSG:99999"}}},
        ["設定 contract.vehicles.crs: crs 'EPSG:99999' は pyproj が知らない CRS です", "'EPSG:6677' のような CRS を指定してください"],
        ["Setting contract.vehicles.crs: crs 'EPSG:99999' is not a CRS pyproj knows"],
    ),
    "contract_unit": (
        {"contract": {"tachometer": {"units": {"speed_kmh": "furlongs"}}}},
        ["contract.tachometer.units が列 'speed_kmh' に単位 'furlongs' を指定していますが", "次のいずれかにしてください"],
        ["contract.tachometer.units gives 'speed_kmh' the unit 'furlongs'; expected one of"],
    ),
}


class TestProfileErrorMessages:
    @pytest.mark.parametrize("case", sorted(CASES))
    def test_japanese_is_fully_japanese(self, case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        sections, japanese, _ = CASES[case]
        err = _cli_error(capsys, _broken_profile(tmp_path, **sections), "ja")

        assert err.startswith("エラー: プロファイル ")
        assert "の設定が不正です" in err
        for fragment in japanese:
            assert fragment in err
        assert _english_words(err) == []
        assert "Traceback" not in err

    @pytest.mark.parametrize("case", sorted(CASES))
    def test_english_stays_english(self, case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        sections, _, english = CASES[case]
        err = _cli_error(capsys, _broken_profile(tmp_path, **sections), "en")

        assert err.startswith("Error: The settings of profile ")
        for fragment in english:
            assert fragment in err
        assert not JAPANESE.search(err)

    @pytest.mark.parametrize("lang", ["ja", "en"])
    def test_missing_required_key(self, lang: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        profile = _broken_profile(tmp_path)
        text = profile.read_text(encoding="utf-8")
        profile.write_text("\n".join(line for line in text.splitlines() if not line.strip().startswith("raw:")), encoding="utf-8")

        err = _cli_error(capsys, profile, lang)

        expected = {"ja": "必須の設定 storage.raw がありません", "en": "Required setting storage.raw is missing"}[lang]
        assert expected in err
        assert "compute/profiles/local.yaml" in err
        assert "'temp':" not in err
        assert "Field required" not in err

    def test_several_problems_one_per_line(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        profile = _broken_profile(tmp_path, cluster={"kind": "kube", "n_workers": 0})

        lines = _cli_error(capsys, profile, "ja").splitlines()

        assert "（2 件、" in lines[0]
        assert lines[1].startswith("  - 設定 cluster.kind の値 'kube'")
        assert lines[2].startswith("  - 設定 cluster.n_workers の値 0")
        assert len(lines) == 3

    @pytest.mark.parametrize("lang", ["ja", "en"])
    def test_secret_value_is_masked(self, lang: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        profile = _broken_profile(tmp_path, notify={"webhook_url": ["http://127.0.0.1:9/hook?token=abc"]})

        err = _cli_error(capsys, profile, lang)

        assert "notify.webhook_url" in err
        assert "'***'" in err
        assert "abc" not in err

    @pytest.mark.parametrize(("lang", "expected"), [("ja", "YAML のマッピングではありません（実際: list）"), ("en", "must be a YAML mapping, got list")])
    def test_profile_not_a_mapping(self, lang: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        profile = tmp_path / "list.yaml"
        profile.write_text("- a\n- b\n", encoding="utf-8")

        err = _cli_error(capsys, profile, lang)

        assert expected in err
        if lang == "ja":
            assert _english_words(err) == []


class TestEnvironmentOverrides:
    def test_variable_is_named(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LMCO2_CLUSTER__N_WORKERS", "many")

        err = _cli_error(capsys, _broken_profile(tmp_path), "ja")

        assert "設定 cluster.n_workers の値 'many' は整数ではありません" in err
        assert "この値は環境変数 LMCO2_CLUSTER__N_WORKERS で設定されています" in err

    def test_invalid_yaml_value_is_a_string(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LMCO2_CLUSTER__N_WORKERS", "[")

        err = _cli_error(capsys, _broken_profile(tmp_path), "en")

        assert "Traceback" not in err
        assert "Setting cluster.n_workers has the value '[', which is not an integer" in err
        assert "The environment variable LMCO2_CLUSTER__N_WORKERS sets this value" in err

    def test_variable_inside_a_section(self) -> None:
        environ = {"LMCO2_CLUSTER__MIN_WORKERS": "5", "LMCO2_CLUSTER__MAX_WORKERS": "2"}
        with pytest.raises(pydantic.ValidationError) as raised:
            load_settings("local", environ=environ)

        text = SettingsError.from_validation_error("local", raised.value, environ).message("en")

        assert "The environment variable LMCO2_CLUSTER__MAX_WORKERS, LMCO2_CLUSTER__MIN_WORKERS sets this value" in text

    def test_profile_value_names_no_variable(self) -> None:
        with pytest.raises(pydantic.ValidationError) as raised:
            load_settings("local", environ={"LMCO2_CLUSTER__N_WORKERS": "0"})

        text = SettingsError.from_validation_error("local", raised.value, {}).message("ja")

        assert "環境変数 LMCO2_" not in text


class TestErrorTypes:
    def test_unknown_type_falls_back(self) -> None:
        error: ErrorDetails = {
            "type": "string_too_short", "loc": ("cluster", "namespace"), "msg": "String should have at least 1 character",
            "input": "", "ctx": {"min_length": 1},
        }

        texts = describe_setting_error(error, {})

        assert texts["ja"].startswith("設定 cluster.namespace の値 '' は受け付けられません（検証エラーの種類: string_too_short）")
        assert _english_words(texts["ja"]) == []
        assert "String should have at least 1 character" in texts["en"]
        assert not JAPANESE.search(texts["en"])

    def test_plain_value_error_falls_back(self) -> None:
        error: ErrorDetails = {
            "type": "value_error", "loc": ("plausibility",), "msg": "Value error, low must be below high",
            "input": {"intensity_ranges_g_per_km": {"passenger": [300, 100]}}, "ctx": {"error": ValueError("low must be below high")},
        }

        texts = describe_setting_error(error, {})

        assert "設定 plausibility の値 {'intensity_ranges_g_per_km'" in texts["ja"]
        assert "low must be below high" not in texts["ja"]
        assert "low must be below high" in texts["en"]

    def test_long_value_is_shortened(self) -> None:
        error: ErrorDetails = {"type": "int_parsing", "loc": ("cluster", "n_workers"), "msg": "", "input": "x" * 500}

        text = describe_setting_error(error, {})["ja"]

        shown_value = "'" + "x" * 76 + "..."
        assert f"の値 {shown_value} は整数ではありません" in text
        assert len(shown_value) == 80

    def test_list_position_in_path(self) -> None:
        with pytest.raises(pydantic.ValidationError) as raised:
            load_settings("local", environ={}, overrides={"plausibility": {"intensity_ranges_g_per_km": {"passenger": [100, "x"]}}})

        text = SettingsError.from_validation_error("local", raised.value).message("ja")

        assert "設定 plausibility.intensity_ranges_g_per_km.passenger[1] の値 'x' は数値ではありません" in text

    def test_error_pickles(self) -> None:
        with pytest.raises(pydantic.ValidationError) as raised:
            load_settings("local", environ={"LMCO2_CLUSTER__N_WORKERS": "0"})
        error = SettingsError.from_validation_error("local", raised.value)

        again = pickle.loads(pickle.dumps(error))

        assert again.message("ja") == error.message("ja")
        assert str(again) == str(error)


@pytest.mark.parametrize(("lang", "expected"), [("ja", "64 以下の値を指定してください"), ("en", "Give a value of at most 64.")])
def test_command_prints_one_message(lang: str, expected: str, tmp_path: Path) -> None:
    profile = _broken_profile(tmp_path, cluster={"threads_per_worker": 100})
    env = {name: value for name, value in os.environ.items() if not name.upper().startswith("LMCO2_")}

    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--lang", lang, "--profile", str(profile), "validate", str(tmp_path / "day")],
        capture_output=True, text=True, timeout=120, env=env,
    )

    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert expected in done.stderr


def test_plausibility_range_error_in_both_languages() -> None:
    """An intensity range with its bounds reversed is reported in Japanese, not in English."""
    with pytest.raises(pydantic.ValidationError) as raised:
        load_settings("local", environ={}, overrides={"plausibility": {"intensity_ranges_g_per_km": {"bus": [500, 300]}}})
    error = SettingsError.from_validation_error("local", raised.value)
    japanese, english = error.message("ja"), error.message("en")
    assert "車両区分 'bus' の CO2 原単位の範囲 (500.0, 300.0)" in japanese
    assert "must satisfy" not in japanese
    assert "intensity range of vehicle class 'bus' must satisfy 0 <= low < high, got (500.0, 300.0)" in english
