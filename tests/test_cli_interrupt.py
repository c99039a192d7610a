"""``lm-co2 run`` stopped by SIGTERM or SIGINT: one message, the signal's exit status, no leftover process.

The command runs as an operator starts it, in a subprocess on the local default: no Prefect
server is configured, so the run starts Prefect's temporary server and a Dask LocalCluster. The
signal goes to the command's process only, as ``kill PID`` sends it, once the fetch phase has
written its marker. The command runs in a session of its own (``start_new_session``). Prefect's
server and Dask's processes start no session of their own, so a process that outlives the
command is found by its session id even after it was reparented. Such a process is killed
after the check, so that a failing test leaves none behind. stdout and stderr go to files,
because a leftover process would keep a pipe open.

The two interrupted runs and their reruns run at the same time, each on its own sample day and
Prefect home, because each command spends about 20 s (on 2 cores) starting Prefect's server and
the cluster.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from compute import phases
from compute.i18n import message
from compute.sample import SampleSpec, write_sample_day
from compute.settings import load_settings
from compute.storage import Store
from flows import cli, interrupt
from tests.conftest import OFFLINE_ENV, REPO_ROOT, RUN_DATE, write_profile

SPEC = SampleSpec(trips=12, vertices_per_trip=6)
#: Trips that an uninterrupted ``lm-co2 run`` delivers for ``SPEC`` (7 of its 18 trajectory rows are rejects).
TRIPS_OUT = 11
#: Seconds to wait for the fetch marker: the temporary server's first start migrates its database.
START_TIMEOUT_S = 180
#: Seconds the command may take to stop after the signal: cluster close, 2 x 5 s queue drains, server stop.
STOP_TIMEOUT_S = 60
#: Seconds the command's child processes may take to end after it: the server's own shutdown after SIGKILL.
LEFTOVER_GRACE_S = 15.0


def _sample_day(folder: Path) -> dict[str, Any]:
    """Write a local profile and the sample day of ``RUN_DATE`` below ``folder``."""
    profile = write_profile(folder / "profile.yaml", folder / "data")
    settings = load_settings(str(profile))
    write_sample_day(Store(settings.url("input", RUN_DATE)), RUN_DATE, SPEC)
    return {"profile": str(profile), "markers": Path(settings.url("temp", RUN_DATE)) / "_phases", "folder": folder}


def _environment(prefect_home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PREFECT_API_URL", "LMCO2_LANGUAGE")}
    env.update(OFFLINE_ENV)
    env["PREFECT_HOME"] = str(prefect_home)
    env["PYTHONPATH"] = os.pathsep.join(path for path in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if path)
    return env


def _session_processes(session_id: int) -> dict[int, str]:
    """Return the processes of a session that are still running (zombies excluded), with their command lines."""
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == session_id:
            continue
        try:
            # The fields after the command name, which may contain spaces: state, ppid, pgrp, session, ...
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[3]) == session_id and fields[0] != "Z":
            found[int(entry)] = command
    return found


def _leftover_processes(session_id: int, grace_s: float = 5.0) -> dict[int, str]:
    """Wait up to ``grace_s`` for the session's processes to end; return those still running."""
    deadline = time.monotonic() + grace_s
    while True:
        left = _session_processes(session_id)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _interrupt(args: list[str], day: dict[str, Any], env: dict[str, str], signals: list[signal.Signals]) -> dict[str, Any]:
    """Start ``lm-co2 ARGS``, send ``signals`` 0.02 s apart once fetch has completed, and return the outcome.

    The gap is short so that a second signal arrives while the stop of the first is under way:
    0.2 s was longer than the whole stop on a quiet machine.
    """
    stdout, stderr = day["folder"] / "stdout.txt", day["folder"] / "stderr.txt"
    with open(stdout, "w") as out, open(stderr, "w") as err:
        command = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *args], cwd=day["folder"], env=env, stdout=out, stderr=err, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (day["markers"] / "fetch.json").exists():
            assert command.poll() is None, f"the command ended before fetch completed:\n{stderr.read_text()}"
            assert time.monotonic() < deadline, f"fetch did not complete in {START_TIMEOUT_S} s"
            time.sleep(0.05)
        for number, signal_number in enumerate(signals):
            if number:
                time.sleep(0.02)
            os.kill(command.pid, signal_number)
        returncode = command.wait(timeout=STOP_TIMEOUT_S)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    leftovers = _leftover_processes(command.pid, grace_s=LEFTOVER_GRACE_S)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return {"returncode": returncode, "stdout": stdout.read_text(), "stderr": stderr.read_text(), "leftovers": leftovers, "pid": command.pid}


def _interruption_messages(lang: str, signal_name: str, command: str) -> set[str]:
    """Return every interruption message the command may print, because the signal can arrive inside a phase or between two."""
    values = {"signal": signal_name, "command": command}
    texts = {message("cli.interrupted", lang, **values)}
    texts |= {message("cli.interrupted.phase", lang, phase=phase, **values) for phase in phases.PHASES}
    return texts


def _interrupt_and_rerun(folder: Path, options: list[str], signals: list[signal.Signals]) -> dict[str, Any]:
    """Interrupt ``lm-co2 OPTIONS run`` on a new sample day with ``signals``, then run the command it printed.

    Returns the interrupted command's outcome, the expected rerun command, and the rerun's summary
    (None when the printed command was not the expected one).
    """
    day = _sample_day(folder)
    (folder / "prefect-home").mkdir()
    env = _environment(folder / "prefect-home")
    rerun = shlex.join(["lm-co2", *options, "--profile", day["profile"], "run", "--date", "2026-12-01"])
    outcome = _interrupt([*options, "--profile", day["profile"], "run", "--date", "2026-12-01"], day, env, signals)
    outcome["rerun"] = rerun
    # After SIGKILL the command prints nothing, and the operator reruns the same command.
    printed = rerun in outcome["stderr"] or signals == [signal.SIGKILL]
    outcome["summary"] = _rerun(rerun, env, folder) if printed else None
    return outcome


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Outcomes of one SIGTERM (Japanese, the default), two SIGINTs 0.2 s apart (--lang en) and one SIGKILL, run at the same time."""
    scenarios = {
        "sigterm": ([], [signal.SIGTERM]),
        "sigint_twice": (["--lang", "en"], [signal.SIGINT, signal.SIGINT]),
        "sigkill": ([], [signal.SIGKILL]),
    }
    with ThreadPoolExecutor(max_workers=len(scenarios)) as pool:
        futures = {name: pool.submit(_interrupt_and_rerun, tmp_path_factory.mktemp(name), options, signals)
                   for name, (options, signals) in scenarios.items()}
        return {name: future.result() for name, future in futures.items()}


def _rerun(command: str, env: dict[str, str], folder: Path) -> dict[str, Any]:
    """Run the printed rerun command with --json, and return its summary with its stderr added."""
    words = shlex.split(command)
    assert words[0] == "lm-co2"
    done = subprocess.run([sys.executable, "-m", "flows.cli", *words[1:], "--json"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    summary["stderr"] = done.stderr
    return summary


def _assert_rerun_completed(summary: dict[str, Any] | None) -> None:
    """Check the summary of a rerun: it ran, delivered every trip, and its trajectory counts balance."""
    assert summary is not None, "the rerun command was not printed"
    assert summary["trips_out"] == TRIPS_OUT
    assert summary["trips_out"] + summary["rejected"]["trajectories"] == summary["rows_in"]["trajectories"]


@pytest.mark.slow
class TestInterruptedRun:
    def test_sigterm_stops_in_order(self, interrupted: dict[str, dict[str, Any]]) -> None:
        outcome = interrupted["sigterm"]

        assert outcome["returncode"] == 143, outcome["stderr"]
        assert "Traceback" not in outcome["stderr"]
        assert outcome["stderr"].strip() in _interruption_messages("ja", "SIGTERM", outcome["rerun"])
        assert "再実行するには次のコマンドを使ってください: " + outcome["rerun"] in outcome["stderr"]
        assert outcome["stdout"] == ""
        assert outcome["leftovers"] == {}

    def test_rerun_after_sigterm_completes(self, interrupted: dict[str, dict[str, Any]]) -> None:
        _assert_rerun_completed(interrupted["sigterm"]["summary"])

    def test_sigkill_leaves_no_server(self, interrupted: dict[str, dict[str, Any]]) -> None:
        """SIGKILL skips every cleanup, and the temporary Prefect server and the Dask workers still end."""
        outcome = interrupted["sigkill"]

        assert outcome["returncode"] == -signal.SIGKILL
        assert outcome["leftovers"] == {}

    def test_rerun_after_sigkill_completes(self, interrupted: dict[str, dict[str, Any]]) -> None:
        """The date lock and the phase markers a killed run left do not stop the same command."""
        _assert_rerun_completed(interrupted["sigkill"]["summary"])

    def test_rerun_marks_killed_run_crashed(self, interrupted: dict[str, dict[str, Any]]) -> None:
        """The next command sets Crashed the run that the killed command left Running, and prints a note."""
        outcome = interrupted["sigkill"]
        notes = [line for line in outcome["summary"]["stderr"].splitlines() if line.startswith("以前の実行 ")]

        assert len(notes) == 1, outcome["summary"]["stderr"]
        assert f"（co2-daily、プロセス {outcome['pid']}）" in notes[0]
        assert notes[0].endswith("Crashed にしました。")

    def test_sigint_twice_in_english(self, interrupted: dict[str, dict[str, Any]]) -> None:
        """The second SIGINT prints a note that the stop is under way, and the run stops as after one."""
        outcome = interrupted["sigint_twice"]

        assert outcome["returncode"] == 130, outcome["stderr"]
        assert "Traceback" not in outcome["stderr"]
        lines = outcome["stderr"].strip().splitlines()
        assert len(lines) == 2, outcome["stderr"]
        assert lines[0] == message("interrupt.stopping", "en", signal="SIGINT")
        assert lines[1] in _interruption_messages("en", "SIGINT", outcome["rerun"])
        assert "To rerun, use: " + outcome["rerun"] in lines[1]
        assert outcome["stdout"] == ""
        assert outcome["leftovers"] == {}

    def test_rerun_after_sigint_completes(self, interrupted: dict[str, dict[str, Any]]) -> None:
        _assert_rerun_completed(interrupted["sigint_twice"]["summary"])


class TestInterruptedPhase:
    def test_phase_of_interrupted_function(self, tmp_path: Path) -> None:
        settings = load_settings(str(write_profile(tmp_path / "profile.yaml", tmp_path / "data")))
        write_sample_day(Store(settings.url("input", RUN_DATE)), RUN_DATE, SPEC)

        def interrupt_at_start(event: str, fields: dict[str, Any]) -> None:
            if event == "phase_started":
                raise interrupt.Interrupted(signal.SIGINT)

        with pytest.raises(KeyboardInterrupt) as info:
            phases.fetch(phases.DailyRun.create(settings, RUN_DATE, on_event=interrupt_at_start))

        assert interrupt.interrupted_phase(info.value) == "fetch"

    def test_no_phase_outside_phases(self) -> None:
        try:
            raise interrupt.Interrupted(signal.SIGTERM)
        except KeyboardInterrupt as error:
            assert interrupt.interrupted_phase(error) is None


class TestSignalCounting:
    """Signals sent to this test process; pytest runs tests in the main thread, which alone receives them."""

    def test_prefect_repeat_not_counted(self, capfd: pytest.CaptureFixture[str]) -> None:
        from prefect.exceptions import TerminationSignal
        from prefect.utilities.engine import capture_sigterm

        before = signal.getsignal(signal.SIGTERM)
        stop = interrupt.SignalStop("en", rerun_command=lambda: "lm-co2 run --date 2026-12-01")
        with stop:
            # Prefect's handler raises TerminationSignal, then capture_sigterm sends SIGTERM again to this one.
            with pytest.raises(TerminationSignal), capture_sigterm():
                os.kill(os.getpid(), signal.SIGTERM)
            assert stop.signals == [signal.SIGTERM]

            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.signals == [signal.SIGTERM, signal.SIGTERM]

        assert capfd.readouterr().err == message("interrupt.stopping", "en", signal="SIGTERM") + "\n"
        assert signal.getsignal(signal.SIGTERM) is before

    def test_first_signal_raises(self) -> None:
        before = signal.getsignal(signal.SIGINT)
        stop = interrupt.SignalStop("en", rerun_command=lambda: "lm-co2 run")
        with stop, pytest.raises(KeyboardInterrupt) as info:
            os.kill(os.getpid(), signal.SIGINT)

        assert isinstance(info.value, interrupt.Interrupted)
        assert info.value.signal_number == signal.SIGINT
        assert interrupt.stopping_signal(info.value, stop) == signal.SIGINT
        assert signal.getsignal(signal.SIGINT) is before


class TestRerunCommand:
    @staticmethod
    def _args(argv: list[str]) -> Any:
        return cli.build_parser("en").parse_args(argv)

    def test_run_date_filled_in(self) -> None:
        args = self._args(["run", "--phases", "compute,output"])
        assert cli._rerun_command(args, dt.date(2026, 12, 1)) == "lm-co2 run --date 2026-12-01 --phases compute,output"

    def test_run_keeps_profile_and_force(self) -> None:
        args = self._args(["--profile", "my profile.yaml", "run", "--date", "20261201", "--force", "--json"])
        assert cli._rerun_command(args, None) == "lm-co2 --profile 'my profile.yaml' run --date 2026-12-01 --force --json"

    def test_run_without_date_before_flow(self) -> None:
        assert cli._rerun_command(self._args(["run"]), None) == "lm-co2 run"

    def test_language_given_stays(self) -> None:
        args = self._args(["--lang", "en", "run", "--date", "2026-12-01"])
        args.lang_given = True
        assert cli._rerun_command(args, None) == "lm-co2 --lang en run --date 2026-12-01"

    @pytest.mark.parametrize("option", [["--lang", "en"], ["--lang=en"], ["--lan", "en"], ["--la=en"]])
    def test_language_option_found(self, option: list[str]) -> None:
        """argparse accepts a shortened option, so the rerun command must find it too."""
        assert cli._language([*option, "run"]) == "en"
        assert all(cli._is_lang_option(word) for word in option if word.startswith("--"))

    def test_backfill_same_range(self) -> None:
        args = self._args(["backfill", "--start", "20261201", "--end", "2026-12-03", "--force"])
        assert cli._rerun_command(args, None) == "lm-co2 backfill --start 2026-12-01 --end 2026-12-03 --force"


class TestExitStatus:
    @pytest.mark.parametrize(("signal_number", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
    def test_status_of_signal(self, signal_number: signal.Signals, status: int) -> None:
        assert interrupt.exit_status(signal_number) == status


def test_lost_signal_stops_next_phase(tmp_path: Path) -> None:
    """A signal whose exception Python discarded (in a weakref callback) stops the run at the next phase."""
    profile = write_profile(tmp_path / "profile.yaml", tmp_path / "data")
    run = phases.DailyRun.create(load_settings(str(profile)), RUN_DATE)
    ran: list[int] = []

    with interrupt.SignalStop("ja", lambda: "lm-co2 run") as stop:
        stop.signals.append(int(signal.SIGTERM))  # the handler ran, but its exception was lost
        with pytest.raises(interrupt.Interrupted) as info:
            phases.run_phase(run, "fetch", lambda: ran.append(1))  # type: ignore[arg-type,return-value]

    assert info.value.signal_number == signal.SIGTERM
    assert ran == []
    assert phases.PHASE_START_HOOKS == []


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Async instruction for <Task cancelled name=\"execute('compute_piece-3')\"> ended with CancelledError", False),
        ("Async instruction for <Task finished name=\"gather_dep\"> failed", True),
    ],
)
def test_worker_drops_cancelled_task_warning(text: str, shown: bool) -> None:
    """A worker process of a stopped run logs no warning per cancelled task, and keeps its other warnings."""
    from compute import pipeline

    record = logging.LogRecord("distributed.worker.state_machine", logging.WARNING, __file__, 0, text, None, None)
    assert pipeline._drop_cancelled_instructions(record) is shown




def test_abandoned_run_and_its_tasks_crashed(prefect_harness: None) -> None:
    """A run tagged with a process that ended is set Crashed with its Running task runs; a live process's run stays."""
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Running

    @flow(name="co2-daily")
    def daily() -> None:
        return None

    @task(name="fetch")
    def fetch() -> None:
        return None

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    host = interrupt.process_tag().removeprefix(interrupt.PROCESS_TAG_PREFIX).rsplit(":", 2)[0]
    ended_tag = f"{interrupt.PROCESS_TAG_PREFIX}{host}:{ended.pid}:0"
    with get_client(sync_client=True) as client:
        abandoned = client.create_flow_run(daily, tags=[ended_tag], state=Running())
        alive = client.create_flow_run(daily, tags=[interrupt.process_tag()], state=Running())
        task_run = client.create_task_run(fetch, flow_run_id=abandoned.id, dynamic_key="0", state=Running())

        notes = interrupt.crash_abandoned_runs("en")

        assert [abandoned.name in note for note in notes] == [True]
        assert client.read_flow_run(abandoned.id).state.type == StateType.CRASHED
        assert client.read_task_run(task_run.id).state.type == StateType.CRASHED
        assert client.read_flow_run(alive.id).state.type == StateType.RUNNING


@pytest.mark.parametrize(
    ("text", "traceback_kept"),
    [("Failed to communicate with scheduler during heartbeat.", False), ("Unexpected exception during heartbeat. Closing worker.", True)],
)
def test_worker_heartbeat_error_without_traceback(text: str, traceback_kept: bool) -> None:
    """The heartbeat error at a cluster's close stays one line; other errors keep their traceback."""
    from compute import pipeline

    try:
        raise OSError("Stream is closed")
    except OSError:
        record = logging.LogRecord("distributed.worker", logging.ERROR, __file__, 0, text, None, sys.exc_info())
    assert pipeline._heartbeat_without_traceback(record) is True

    formatted = logging.Formatter("%(name)s - %(levelname)s - %(message)s").format(record)
    assert formatted.startswith(f"distributed.worker - ERROR - {text}")
    assert ("Traceback" in formatted) is traceback_kept
