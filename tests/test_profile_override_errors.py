"""Hostile profiles and LMCO2_* overrides against the real ``lm-co2`` command.

Each case writes a profile to a temporary folder, runs ``python -m flows.cli --lang ja --profile
PATH validate DIR`` in a subprocess and checks the output an operator reads: exit code 1, no
traceback, no secret value, a Japanese text without English sentences outside quoted values.
Tests marked ``xfail(strict=True)`` record a defect that is still present.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from compute.settings import load_settings
from compute.settings_errors import SettingsError

REPO_ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "hunter2pass-s6"
WEBHOOK_SECRET = "XXXXsecretTokenS6XXXX"


def _storage(data_dir: Path) -> dict[str, Any]:
    return {
        "input": "{data_dir}/client/input/{yyyymmdd}/",
        "raw": "{data_dir}/lake/raw/{yyyymmdd}/",
        "temp": "{data_dir}/lake/temp/{yyyymmdd}/",
        "processed": "{data_dir}/lake/processed/{yyyymmdd}/",
        "output": "{data_dir}/client/output/{yyyymmdd}/",
    }


def _valid_profile(tmp_path: Path) -> dict[str, Any]:
    return {"profile": "s6", "data_dir": str(tmp_path / "data"), "storage": _storage(tmp_path / "data")}


def _run_cli(profile: Path, lang: str = "ja", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``validate`` on a missing folder: the settings load first, so their error is all it prints."""
    environment = {name: value for name, value in os.environ.items() if not name.upper().startswith("LMCO2_")}
    environment.update({"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "AWS_EC2_METADATA_DISABLED": "true",
                        "NO_GCE_CHECK": "True", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"})
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "--lang", lang, "--profile", str(profile), "validate", str(profile.parent / "no-day")],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=120, check=False,
    )


def _write(tmp_path: Path, data: dict[str, Any] | str, name: str = "hostile.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def _assert_operator_error(result: subprocess.CompletedProcess[str]) -> str:
    output = _output(result)
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert "想定外のエラー" not in output
    return output


# -- regressions that hold --------------------------------------------------------------------


def test_many_errors_listed_once_each(tmp_path: Path) -> None:
    profile = _valid_profile(tmp_path)
    profile["cluster"] = {"n_workers": "four\nlines", "threads_per_worker": -1, "deep": {"a": {"b": {"c": 1}}}, "kind": "spaceship"}
    profile["output"] = {"format": "xlsx", "report_timezone": "Mars/Olympus"}
    profile["notify"] = None
    profile["storage"]["temp"] = "{data_dir}/lake/temp/"
    output = _assert_operator_error(_run_cli(_write(tmp_path, profile)))

    assert "（8 件、" in output
    assert output.count("\n  - ") == 8
    assert "'four\\nlines'" in output
    for path in ("cluster.n_workers", "cluster.threads_per_worker", "cluster.deep", "cluster.kind", "output.format",
                 "output.report_timezone", "notify", "storage.temp"):
        assert f"設定 {path}" in output


def test_long_value_shortened(tmp_path: Path) -> None:
    profile = _valid_profile(tmp_path)
    profile["cluster"] = {"n_workers": "x" * 5_000}
    output = _assert_operator_error(_run_cli(_write(tmp_path, profile)))

    assert "'" + "x" * 76 + "..." in output
    assert "x" * 100 not in output


def test_recursive_alias_no_crash(tmp_path: Path) -> None:
    text = yaml.safe_dump(_valid_profile(tmp_path), sort_keys=False) + "output: &loop {format: parquet, extra: *loop}\n"
    output = _assert_operator_error(_run_cli(_write(tmp_path, text)))

    assert "設定 output.extra は存在しない項目です" in output


def test_secret_fields_masked(tmp_path: Path) -> None:
    profile = _valid_profile(tmp_path)
    profile["credentials"] = {"aws_secret": {"key": PASSWORD}}
    profile["notify"] = {"kind": "webhook", "webhook_url": [f"https://hooks.example/{WEBHOOK_SECRET}"]}
    output = _assert_operator_error(_run_cli(_write(tmp_path, profile)))

    assert "'***'" in output
    assert PASSWORD not in output
    assert WEBHOOK_SECRET not in output


def test_override_named_in_message(tmp_path: Path) -> None:
    profile = _write(tmp_path, _valid_profile(tmp_path))
    output = _assert_operator_error(_run_cli(profile, env={"LMCO2_CLUSTER__N_WORKERS": "[1", "LMCO2_A__B__C": "1"}))

    assert "この値は環境変数 LMCO2_CLUSTER__N_WORKERS で設定されています" in output
    assert "この値は環境変数 LMCO2_A__B__C で設定されています" in output


# -- defects ----------------------------------------------------------------------------------


def test_override_scalar_and_nested_section(tmp_path: Path) -> None:
    profile = _write(tmp_path, _valid_profile(tmp_path))
    output = _assert_operator_error(_run_cli(profile, env={"LMCO2_CLUSTER": "5", "LMCO2_CLUSTER__N_WORKERS": "2"}))

    assert "LMCO2_CLUSTER" in output


def test_load_settings_scalar_then_nested(tmp_path: Path) -> None:
    profile = _write(tmp_path, _valid_profile(tmp_path))
    with pytest.raises((SettingsError, ValueError)):
        load_settings(profile, environ={"LMCO2_CLUSTER": "[1, 2]", "LMCO2_CLUSTER__N_WORKERS": "2"})


def test_root_password_not_printed(tmp_path: Path) -> None:
    profile = _valid_profile(tmp_path)
    profile["storage"]["input"] = f"s3://reader:{PASSWORD}@minio.internal/in/"
    for lang in ("ja", "en"):
        output = _assert_operator_error(_run_cli(_write(tmp_path, profile), lang=lang))

        assert "storage.input" in output
        assert PASSWORD not in output


def test_override_password_not_printed(tmp_path: Path) -> None:
    profile = _write(tmp_path, _valid_profile(tmp_path))
    output = _assert_operator_error(_run_cli(profile, env={"LMCO2_STORAGE__INPUT": f"s3://k:{PASSWORD}@h/in/"}))

    assert "LMCO2_STORAGE__INPUT" in output
    assert PASSWORD not in output


def test_misspelt_webhook_not_printed(tmp_path: Path) -> None:
    profile = _valid_profile(tmp_path)
    profile["notify"] = {"kind": "webhook", "webhook": f"https://hooks.example/services/{WEBHOOK_SECRET}"}
    output = _assert_operator_error(_run_cli(_write(tmp_path, profile)))

    assert "notify.webhook_url の誤りではありませんか" in output
    assert WEBHOOK_SECRET not in output


def test_unknown_key_url_password(tmp_path: Path) -> None:
    profile = _valid_profile(tmp_path)
    profile["storage"]["outptu"] = f"s3://AKIAS6:{PASSWORD}@minio/out/{{yyyymmdd}}/"
    output = _assert_operator_error(_run_cli(_write(tmp_path, profile)))

    assert "storage.outptu" in output
    assert PASSWORD not in output


def test_non_utf8_profile_in_japanese(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("profile: 'caf\u00e9'\n".encode("latin-1"))
    output = _assert_operator_error(_run_cli(path))

    assert "latin1.yaml" in output
    assert "codec" not in output
    assert "invalid start byte" not in output
    assert "can't decode" not in output


def test_integer_key_not_list_position(tmp_path: Path) -> None:
    text = yaml.safe_dump(_valid_profile(tmp_path), sort_keys=False) + "cluster:\n  7: x\n"
    output = _assert_operator_error(_run_cli(_write(tmp_path, text)))

    assert "cluster[7]" not in output
    assert "cluster の項目名 7 は文字列ではありません" in output


def test_null_shown_as_yaml(tmp_path: Path) -> None:
    text = yaml.safe_dump(_valid_profile(tmp_path), sort_keys=False) + "notify:\nnull: 3\n"
    output = _assert_operator_error(_run_cli(_write(tmp_path, text)))

    assert "設定 notify の値" in output
    assert "None" not in output


