"""Expected failures of the ``lm-co2`` command: one message in the operator's language, no traceback.

The command runs in a subprocess, as an operator starts it, against the session's Prefect test
server. Prefect's console handler writes to the process's real stderr, which only a subprocess
captures.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from compute.sample import SampleSpec, write_sample_day
from compute.storage import DeliveryError, Store
from flows import cli
from tests.conftest import RUN_DATE, write_profile

ENGLISH_STATES = ("COMPLETED", "FAILED")


def _lm_co2(args: list[str], *, lang: str = "ja") -> subprocess.CompletedProcess[str]:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "LMCO2_LANGUAGE": lang}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture()
def profile(tmp_path: Path) -> str:
    return str(write_profile(tmp_path / "profile.yaml", tmp_path / "data"))


def _input(profile: str, day: str) -> Path:
    return Path(profile).parent / "data" / "client" / "input" / day


@pytest.mark.slow
class TestExpectedFailures:
    def test_missing_day_prints_one_message(self, profile: str, prefect_harness: None) -> None:
        done = _lm_co2(["--profile", profile, "run", "--date", "2026-11-01"])
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert "ERROR" not in done.stderr
        assert done.stderr.count("納品が見つかりません") == 1
        assert done.stderr.startswith("エラー: ")

    def test_missing_day_in_english(self, profile: str, prefect_harness: None) -> None:
        done = _lm_co2(["--lang", "en", "--profile", profile, "run", "--date", "2026-11-01"])
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert done.stderr.startswith("Error: No delivery found for 2026-11-01")

    def test_changed_input_without_fetch(self, profile: str, prefect_harness: None) -> None:
        write_sample_day(Store(str(_input(profile, "20261201"))), RUN_DATE, SampleSpec(trips=12, vertices_per_trip=6))
        assert _lm_co2(["--profile", profile, "run", "--date", "2026-12-01", "--phases", "fetch"]).returncode == 0
        write_sample_day(Store(str(_input(profile, "20261201"))), RUN_DATE, SampleSpec(trips=30, vertices_per_trip=6))

        done = _lm_co2(["--profile", profile, "run", "--date", "2026-12-01", "--force", "--phases", "validate,compute"])

        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert "raw のコピーは古くなっています" in done.stderr
        assert "サイズ変更" in done.stderr
        assert "resized" not in done.stderr

    def test_backfill_reports_each_date(self, profile: str, prefect_harness: None) -> None:
        write_sample_day(Store(str(_input(profile, "20261201"))), RUN_DATE, SampleSpec(trips=12, vertices_per_trip=6))

        done = _lm_co2(["--profile", profile, "backfill", "--start", "2026-11-30", "--end", "2026-12-01"])

        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert "  2026-11-30: 失敗" in done.stderr
        assert "  2026-12-01: 完了" in done.stderr
        assert "2026-11-30 の納品が見つかりません" in done.stderr
        assert "1 日ずつ再実行" in done.stderr
        for word in (*ENGLISH_STATES, "rerun them", "backfill finished"):
            assert word not in done.stderr


class TestExpectedFailuresBeforePrefect:
    def test_unknown_profile_in_japanese(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert cli.main(["--lang", "ja", "--profile", "nonexistent", "run", "--date", "2026-12-01"]) == 1
        err = capsys.readouterr().err
        assert "プロファイル 'nonexistent' が見つかりません" in err
        assert "gke, local" in err
        assert "not found" not in err

    def test_invalid_setting_names_the_field(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LMCO2_CLUSTER__N_WORKERS", "many")
        assert cli.main(["--lang", "ja", "validate", "."]) == 1
        err = capsys.readouterr().err
        assert "設定が不正です" in err
        assert "設定 cluster.n_workers の値 'many' は整数ではありません" in err
        assert "Input should be" not in err

    def test_reversed_backfill_range(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert cli.main(["--lang", "ja", "backfill", "--start", "2026-12-02", "--end", "2026-12-01"]) == 1
        assert "終了日 2026-12-01 が開始日 2026-12-02 より前です" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["frobnicate"], "引数 コマンド: 'frobnicate' は選べません"),
            (["backfill", "--start", "2026-12-01"], "次の引数が必要です: --end"),
            (["sample", "--date", "2026-12-01", "--trips", "x"], "引数 --trips: 'x' は整数ではありません。1 以上の整数を指定してください"),
            (["run", "--bogus"], "認識できない引数です: --bogus"),
        ],
    )
    def test_usage_errors_in_japanese(self, args: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as stop:
            cli.main(["--lang", "ja", *args])
        assert stop.value.code == 2
        assert expected in capsys.readouterr().err

    def test_operator_error_pickles(self) -> None:
        import pickle

        from compute.i18n import OperatorError

        error = OperatorError("cli.bad_date", value="2026-13-01")
        again = pickle.loads(pickle.dumps(error))
        assert again.message("ja") == error.message("ja")
        assert str(again) == str(error)


class TestRunConsole:
    """Error records of a Prefect run reach the console only when the failure is unexpected."""

    @pytest.fixture()
    def console_stream(self) -> Iterator[io.StringIO]:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        root = logging.getLogger()
        root.addHandler(handler)
        yield stream
        root.removeHandler(handler)

    @staticmethod
    def _log(level: int, text: str, exc_info: object = None) -> None:
        """Send a record of Prefect's flow run logger to the root handlers (the console), not to the API."""
        record = logging.LogRecord("prefect.flow_runs", level, __file__, 0, text, None, exc_info)  # type: ignore[arg-type]
        logging.getLogger().handle(record)

    def _failing(self, error: Exception) -> None:
        try:
            raise error
        except Exception:
            self._log(logging.ERROR, "Encountered exception during execution", sys.exc_info())
            raise

    def test_expected_failure_is_silent(self, console_stream: io.StringIO) -> None:
        error = DeliveryError("delivery_missing", "/in/", "2026-11-01")
        with pytest.raises(DeliveryError):
            cli._RunConsole().run(lambda: self._failing(error))
        assert console_stream.getvalue() == ""

    def test_unexpected_failure_keeps_traceback(self, console_stream: io.StringIO) -> None:
        console = cli._RunConsole()
        error = ZeroDivisionError("division by zero")
        with pytest.raises(ZeroDivisionError):
            console.run(lambda: self._failing(error))
        assert "Traceback" in console_stream.getvalue()
        assert console.shown == [error]

    def test_warnings_pass_at_once(self, console_stream: io.StringIO) -> None:
        def warn() -> int:
            self._log(logging.WARNING, "object retry")
            assert "object retry" in console_stream.getvalue()
            return 7

        assert cli._RunConsole().run(warn) == 7
