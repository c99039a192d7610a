"""The default Prefect home of ``lm-co2 run``: created with its parents, or one message at once.

The command runs in a subprocess from a new working folder without ``var/``, as an operator starts
it, with PREFECT_HOME unset, so the command's default ``./var/prefect`` applies. PYTHONPATH points
at this checkout, because the working folder is not the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compute.sample import SampleSpec, write_sample_day
from compute.storage import Store
from tests.conftest import REPO_ROOT, RUN_DATE, write_profile


def _lm_co2(args: list[str], *, cwd: Path, api_url: str | None, lang: str = "ja", timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PREFECT_HOME", "PREFECT_API_URL")}
    env["LMCO2_LANGUAGE"] = lang
    env["PYTHONPATH"] = os.pathsep.join(path for path in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if path)
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def profile(tmp_path: Path) -> str:
    return str(write_profile(tmp_path / "profile.yaml", tmp_path / "data"))


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    """A working folder without ``var/``."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.mark.slow
class TestDefaultHomeCreated:
    def test_run_from_folder_without_var(self, profile: str, work: Path, tmp_path: Path, prefect_harness: None) -> None:
        from prefect.settings import PREFECT_API_URL

        write_sample_day(Store(str(tmp_path / "data" / "client" / "input" / "20261201")), RUN_DATE, SampleSpec(trips=12, vertices_per_trip=6))

        done = _lm_co2(
            ["--profile", profile, "run", "--date", "2026-12-01", "--phases", "fetch", "--json"],
            cwd=work, api_url=str(PREFECT_API_URL.value()),
        )

        assert done.returncode == 0, done.stderr
        assert "Failed to create the Prefect home" not in done.stderr
        assert (work / "var" / "prefect").is_dir()
        summary = json.loads(done.stdout)
        assert summary["run_date"] == "2026-12-01"
        assert [phase["phase"] for phase in summary["phases"]] == ["fetch"]


class TestDefaultHomeUnusable:
    """The command stops before Prefect starts, so no server startup timeout (120 s) is waited for.

    The subprocess timeout of 60 s fails a command that waits for it.
    """

    @pytest.mark.parametrize(
        ("lang", "expected"),
        [
            ("ja", ["Prefect のホームフォルダ", "途中のパスがフォルダではありません", "環境変数 PREFECT_HOME に書き込み権限のあるフォルダを指定"]),
            ("en", ["Cannot create or write to the Prefect home folder", "a parent in the path is not a folder",
                    "Set the PREFECT_HOME environment variable to a folder you can write to"]),
        ],
    )
    def test_file_in_place_of_var(self, lang: str, expected: list[str], profile: str, work: Path) -> None:
        (work / "var").write_text("not a folder\n", encoding="utf-8")

        done = _lm_co2(["--profile", profile, "run", "--date", "2026-12-01"], cwd=work, api_url=None, lang=lang, timeout=60)

        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert str(work / "var" / "prefect") in done.stderr
        for phrase in expected:
            assert phrase in done.stderr
        assert done.stdout == ""

    @pytest.mark.skipif(os.geteuid() == 0, reason="root can create folders in a read-only folder")
    def test_read_only_working_folder(self, profile: str, work: Path) -> None:
        work.chmod(0o500)
        try:
            done = _lm_co2(["--lang", "en", "--profile", profile, "run", "--date", "2026-12-01"], cwd=work, api_url=None, timeout=60)
        finally:
            work.chmod(0o700)

        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert str(work / "var" / "prefect") in done.stderr
        assert "(permission denied)" in done.stderr
        assert "PREFECT_HOME" in done.stderr

    def test_bad_date_creates_no_folder(self, profile: str, work: Path) -> None:
        done = _lm_co2(["--lang", "en", "--profile", profile, "run", "--date", "2026-13-01"], cwd=work, api_url=None, timeout=60)

        assert done.returncode == 1
        assert "run date '2026-13-01' has the form YYYY-MM-DD or YYYYMMDD, but the day does not exist" in done.stderr
        assert not (work / "var").exists()
