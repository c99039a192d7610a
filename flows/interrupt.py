"""Orderly stop of ``lm-co2 run`` and ``lm-co2 backfill`` on SIGINT and SIGTERM.

The first signal unwinds the flow as Ctrl-C does: the flow's ``finally`` blocks close the Dask
cluster and release the date lock, and Prefect marks the run Crashed. The command then closes a
cluster left half-started, stops the temporary Prefect server and prints one message with the
rerun command (``flows.cli``). :class:`SignalStop` handles the signals; the functions below find
the interrupted phase and do the cleanup that an exit by signal would skip.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from compute.i18n import escape_controls, message, register

register(
    {
        "interrupt.stopping": {
            "ja": "{signal} を受けました。停止処理中です（Dask クラスタの停止、日付ロックの解放、一時 Prefect サーバーの停止）。"
                  "もう一度送ると、停止処理を待たずに終了します。",
            "en": "Received {signal} while stopping (closing the Dask cluster, releasing the date lock, stopping the temporary "
                  "Prefect server). Send it once more to exit without waiting for this.",
        },
        "interrupt.abandoned": {
            "ja": "以前の実行 {name}（{flow}、プロセス {pid}）は、プロセスが強制終了されて Running のまま残っていたため、Crashed にしました。",
            "en": "An earlier run {name} ({flow}, process {pid}) was left Running by a killed process; it is now marked Crashed.",
        },
        "interrupt.abandoned.state": {
            "ja": "lm-co2 のプロセス {pid}（{host}）が、実行の状態を報告せずに終了しました（SIGKILL、メモリ不足による強制終了など）。",
            "en": "The lm-co2 process {pid} on {host} ended without reporting the run's state (SIGKILL, the out-of-memory killer).",
        },
        "interrupt.forced": {
            "ja": "{signal} を 3 回受けたため、停止処理を待たずに終了します。子プロセス（一時 Prefect サーバー、Dask ワーカー）は強制終了しました。"
                  "再実行するには次のコマンドを使ってください: {command}",
            "en": "Received {signal} a third time; exiting without waiting for the stop. The child processes (temporary Prefect "
                  "server, Dask workers) were killed. To rerun, use: {command}",
        },
    }
)


def reports_cleanup(record: logging.LogRecord) -> bool:
    """Return whether a held record is an lm-co2 event worth showing after an interruption.

    Events other than ``run_failed`` are kept, such as a failed cleanup of a leftover cluster
    from the ``on_crashed`` hook. ``run_failed`` and Prefect's own crash records only repeat
    the interruption message in English.
    """
    event = getattr(record, "event", None)
    return event is not None and event != "run_failed"


class _EventsOnly(logging.Filter):
    """Pass only the records that :func:`reports_cleanup` keeps."""

    def filter(self, record: logging.LogRecord) -> bool:
        return reports_cleanup(record)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; raised in the main thread, so the run unwinds as after Ctrl-C."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


class SignalStop:
    """Turn SIGINT and SIGTERM into an orderly stop of ``lm-co2 run`` and ``lm-co2 backfill``.

    While the block runs, the first signal raises :class:`Interrupted` (a KeyboardInterrupt) in
    the main thread, so the flow unwinds as after Ctrl-C. Prefect 3.9 replaces the SIGTERM handler
    while its flow engine runs (``capture_sigterm`` in ``prefect/utilities/engine``). Its handler
    raises ``TerminationSignal`` to the same effect, and once the run is marked Crashed it sends
    SIGTERM again to the handler it replaced, this one. That repeat records the signal but does
    not count as a second one.

    From the first signal on, the console handlers pass only lm-co2 event records other than
    ``run_failed`` (:func:`reports_cleanup`). Libraries log English errors while a cancelled
    start unwinds, such as tornado's ``NameError`` from distributed's ``sync`` when the signal
    came before its future existed, and the command's message replaces them. They still reach
    the Prefect API.

    A second signal prints that the stop is under way and raises nothing, so the cleanup goes
    on. A third kills the child processes (the temporary Prefect server, Dask workers) and
    exits at once with 128 + the first signal's number.

    NOTE: a second SIGTERM that arrives while Prefect's handler is installed (during the flow's
    own cleanup) raises ``TerminationSignal`` again inside that cleanup and can cut the cluster's
    close short. distributed's exit handler (``close_clusters``) then closes the LocalCluster.
    """

    def __init__(self, lang: str, rerun_command: Callable[[], str]) -> None:
        self.lang = lang
        self.rerun_command = rerun_command
        #: Signals received, with Prefect's repeat counted once. The first one sets the exit status.
        self.signals: list[int] = []
        #: Run date for the rerun command, once the command has resolved it.
        self.run_date: dt.date | None = None
        self._previous: dict[int, Any] = {}
        self._quiet = _EventsOnly()
        #: Keep the console quiet after the block, for a command that exits next. distributed
        #: still logs while its exit handler closes the nannies ("exit status was already
        #: read"), which would follow the command's message.
        self.quiet_until_exit = False

    def __enter__(self) -> SignalStop:
        from compute import phases

        phases.PHASE_START_HOOKS.append(self._checkpoint)
        for number in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[number] = signal.signal(number, self._handle)
            except ValueError:  # only the main thread may set handlers, so elsewhere the signals keep theirs
                pass
        return self

    def __exit__(self, *exc_info: object) -> None:
        from compute import phases

        with contextlib.suppress(ValueError):
            phases.PHASE_START_HOOKS.remove(self._checkpoint)
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
        if self.quiet_until_exit:
            return
        for handler in _console_handlers():
            handler.removeFilter(self._quiet)

    def _checkpoint(self, phase: str) -> None:
        """Raise :class:`Interrupted` before ``phase`` starts when a signal arrived before it.

        The handler's exception unwinds the run, so normally no phase starts after a signal. But
        one raised while a weakref callback runs is printed as "Exception ignored" and lost, and
        the run went on. This stops it at the next phase at the latest.
        """
        if self.signals:
            raise Interrupted(self.signals[0])

    def _handle(self, signal_number: int, frame: FrameType | None) -> None:
        if not self.signals:
            for handler in _console_handlers():
                handler.addFilter(self._quiet)
        if _repeated_by_prefect(frame):
            if not self.signals:
                self.signals.append(signal_number)
            return
        self.signals.append(signal_number)
        if len(self.signals) == 1:
            raise Interrupted(signal_number)
        name = signal.Signals(signal_number).name
        if len(self.signals) == 2:
            _write_now(message("interrupt.stopping", self.lang, signal=name))
            return
        _kill_child_processes()
        _write_now(message("interrupt.forced", self.lang, signal=name, command=self.rerun_command()))
        os._exit(exit_status(self.signals[0]))


def _console_handlers() -> list[logging.Handler]:
    """Return the stream handlers of the root logger and of ``distributed``, which has its own.

    distributed logs English lines while a cancelled compute phase unwinds, such as a task that
    "ended with CancelledError", through the handler its logging configuration attaches.
    """
    handlers = logging.getLogger().handlers + logging.getLogger("distributed").handlers
    return [h for h in handlers if isinstance(h, logging.StreamHandler)]


def stopping_signal(error: BaseException, stop: SignalStop | None) -> int | None:
    """Return the signal that stopped the run: the first one ``stop`` received, else the one ``error`` stands for.

    Returns None when ``error`` is an ordinary failure and no signal arrived.
    """
    if stop is not None and stop.signals:
        return stop.signals[0]
    if isinstance(error, Interrupted):
        return error.signal_number
    if isinstance(error, KeyboardInterrupt):
        return int(signal.SIGINT)
    termination = getattr(sys.modules.get("prefect.exceptions"), "TerminationSignal", None)
    if termination is not None and isinstance(error, termination):
        return int(error.signal)
    return None


def _repeated_by_prefect(frame: FrameType | None) -> bool:
    """Return whether a signal was sent by Prefect's ``capture_sigterm`` to pass on a SIGTERM it already handled.

    ``os.kill`` to the own process runs the handler before it returns, so ``frame`` is the frame
    that called it.
    """
    return (
        frame is not None
        and frame.f_code.co_name == "capture_sigterm"
        and frame.f_globals.get("__name__") == "prefect.utilities.engine"
    )


def _write_now(text: str) -> None:
    """Write one line to stderr from a signal handler, without Python's buffered stream.

    The handler can run while the main thread is inside a write to ``sys.stderr``, and a second
    write to that buffered stream would raise ``RuntimeError: reentrant call``.
    """
    with contextlib.suppress(OSError):
        os.write(2, (escape_controls(text, keep="\n") + "\n").encode())


def _kill_child_processes() -> None:
    """Kill every descendant process of this one with SIGKILL, for an exit that skips all cleanup."""
    import psutil  # a dependency of distributed

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.kill()


def exit_status(signal_number: int) -> int:
    """Return the exit status of a command stopped by a signal: 128 + its number, as shells report it."""
    return 128 + signal_number


#: Functions of ``compute.phases`` that run one phase each, with the phase's name.
_PHASE_FUNCTIONS = {"fetch": "fetch", "validate": "validate", "compute": "compute", "generate_output": "output", "publish": "publish"}


def interrupted_phase(error: BaseException) -> str | None:
    """Return the phase whose function ``error`` unwound, or None when the signal came outside a phase.

    Outside a phase are, for example, the start of Prefect's temporary server and the start of
    the Dask cluster. The frames of the traceback are searched, and those of the errors that
    ``error`` was raised while handling (``__context__``), such as a second signal during cleanup.
    """
    phases = sys.modules.get("compute.phases")
    if phases is None:
        return None
    codes = {getattr(phases, function).__code__: phase for function, phase in _PHASE_FUNCTIONS.items()}
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for frame, _line in traceback.walk_tb(current.__traceback__):
            if frame.f_code in codes:
                return codes[frame.f_code]
        current = current.__context__
    return None


def close_leftover_clusters() -> None:
    """Close the Dask clusters that an interruption left open, in place of distributed's exit handler.

    A signal that arrives while ``LocalCluster()`` starts its workers ends the constructor with
    an exception, so the flow never receives the cluster and its ``with`` block cannot close it.
    distributed's ``atexit`` handler ``close_clusters`` would close it. But on a KeyboardInterrupt
    distributed 2026.8 (``utils.sync``) also cancels the start, and a worker whose start was
    cancelled stays in ``Status.init``, so the close fails an assertion and Python prints that
    traceback at exit. Here the handler runs once, with a failure logged at info level, and is
    unregistered. The worker processes exit without it, because each one exits when its parent
    process does (``distributed/process.py``).
    """
    spec = sys.modules.get("distributed.deploy.spec")
    if spec is None:
        return
    atexit.unregister(spec.close_clusters)
    try:
        spec.close_clusters()
    except Exception:  # noqa: BLE001 - the process exits next; the traceback is kept for debugging
        logging.getLogger(__name__).info("closing a Dask cluster after the interruption failed", exc_info=True)


def start_temporary_server() -> None:
    """Start Prefect's temporary server now, with SIGINT blocked in it, when the run will use one.

    Ctrl-C at a terminal sends SIGINT to every process of the foreground process group. Without
    this, the server, a child process, shuts down at once, and the run cannot record its Crashed
    state: Prefect 3.9's client retries the refused connections 5 times with waits of 2, 4, 8,
    16 and 32 s. A blocked signal stays blocked across fork and exec, and neither Python nor
    uvicorn unblock it, so the server ignores the terminal's Ctrl-C and stops when
    :func:`stop_temporary_server` or Prefect's ``atexit`` handler stops it. ``get_client``
    starts the server as the flow engine would, once per process, and the flow run reuses it.

    A SIGINT meanwhile stays pending until the server has started, unless another thread of
    this process takes it.

    On Linux the server also gets SIGTERM when this process ends without cleanup (SIGKILL, the
    out-of-memory killer): see :func:`_dying_with_parent`.
    """
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        with _dying_with_parent(), get_client(sync_client=True):
            pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def _dying_with_parent() -> Iterator[None]:
    """Make the child processes started in the block get SIGTERM when this process's main thread ends.

    Prefect 3.9 starts the temporary server with ``subprocess.Popen`` and no hook, and stops it
    only in an ``atexit`` handler, which SIGKILL skips. The server then kept its port and memory,
    and every later run started another. Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``)
    is set in the child between fork and exec and survives the exec. The kernel sends it when the
    thread that forked ends, which is the main thread here, so only at the process's end.

    NOTE: ``subprocess.Popen`` is replaced for the whole process while the block runs, so a child
    that another thread starts meanwhile gets the signal too. On other systems nothing changes.
    """
    libc = _libc_with_prctl()
    if libc is None:
        yield
        return
    original = subprocess.Popen

    def set_parent_death_signal() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    class PopenDyingWithParent(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("preexec_fn") is None:
                kwargs["preexec_fn"] = set_parent_death_signal
            super().__init__(*args, **kwargs)

    subprocess.Popen = PopenDyingWithParent  # type: ignore[misc]
    try:
        yield
    finally:
        subprocess.Popen = original  # type: ignore[misc]


#: ``PR_SET_PDEATHSIG`` of ``<sys/prctl.h>``.
_PR_SET_PDEATHSIG = 1


def _libc_with_prctl() -> Any:
    """Return the C library when it has ``prctl`` (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    return libc if hasattr(libc, "prctl") else None


def stop_temporary_server() -> None:
    """Stop the temporary Prefect server this process started, if it started one.

    Prefect 3.9 starts it on first use of the API when ``PREFECT_API_URL`` is unset
    (``SubprocessASGIServer`` in ``prefect/server/api/server.py``) and stops it only in an
    ``atexit`` handler. A process that a signal ends never runs that handler, so the server was
    left running. ``stop()`` terminates it and kills it after 5 s. With ``PREFECT_API_URL`` set,
    the server is not this process's, for example the test harness's, and stays.

    The log and event records still queued are sent first, each queue waiting up to 5 s, as
    Prefect's ``prefect_test_harness`` does before it stops its server. Sent afterwards, they
    would fail with "Error logging to API" on stderr.
    """
    server_module = sys.modules.get("prefect.server.api.server")
    if server_module is None:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    APILogWorker.drain_all(timeout=5)
    EventsWorker.drain_all(timeout=5)
    server_module.SubprocessASGIServer().stop()


#: Prefix of the tag that names the ``lm-co2`` process running a flow: ``PREFIX<host>:<pid>:<start time>``.
PROCESS_TAG_PREFIX = "lm-co2-process:"
#: Flows whose runs the command starts, and so can leave Running when it is killed.
_COMMAND_FLOWS = ("co2-daily", "co2-backfill")


def process_tag(pid: int | None = None) -> str:
    """Return the tag that names a process (this one by default) in its flow runs: host, PID and start time.

    The start time distinguishes a later process that reuses the PID. The command sets the tag with
    ``prefect.tags``, so the day runs of a backfill carry it too.
    """
    import socket

    import psutil  # a dependency of distributed

    started = psutil.Process(pid).create_time()
    return f"{PROCESS_TAG_PREFIX}{socket.gethostname()}:{os.getpid() if pid is None else pid}:{started:.0f}"


def _process_gone(tag: str) -> tuple[str, int] | None:
    """Return (host, PID) when ``tag`` names a process of this host that no longer runs, else None."""
    import socket

    import psutil

    fields = tag.removeprefix(PROCESS_TAG_PREFIX).rsplit(":", 2)
    if len(fields) != 3 or not fields[1].isdigit():
        return None
    host, pid, started = fields[0], int(fields[1]), fields[2]
    if host != socket.gethostname():
        return None  # another machine's process: this one cannot tell whether it runs
    try:
        running = f"{psutil.Process(pid).create_time():.0f}" == started
    except psutil.NoSuchProcess:
        running = False
    except psutil.Error:
        return None
    return None if running else (host, pid)


def crash_abandoned_runs(lang: str) -> list[str]:
    """Mark Crashed the command's flow runs that a killed process left Running or Pending; return the messages.

    A process ended by SIGKILL or the out-of-memory killer reports nothing, and Prefect keeps its
    run Running for good, in the Prefect UI too. The command tags its runs with
    :func:`process_tag`, and a run of this host whose process no longer runs is set Crashed here,
    before the next run starts. A run tagged by another host is left as it is.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import State, StateType
    from prefect.states import Crashed

    notes: list[str] = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(_COMMAND_FLOWS))),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING]))),
            limit=200,
        )
        flows: dict[Any, str] = {}
        for run in runs:
            tags = [tag for tag in run.tags if tag.startswith(PROCESS_TAG_PREFIX)]
            ended = _process_gone(tags[0]) if len(tags) == 1 else None
            if ended is None:
                continue
            host, pid = ended
            crashed: State[Any] = Crashed(message=message("interrupt.abandoned.state", lang, pid=pid, host=host))
            client.set_flow_run_state(run.id, crashed, force=True)
            # Its task runs stayed Running too, and the Prefect UI showed them running for good.
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
                task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING]))),
            )
            for task in tasks:
                client.set_task_run_state(task.id, Crashed(message=message("interrupt.abandoned.state", lang, pid=pid, host=host)), force=True)
            if run.flow_id not in flows:
                flows[run.flow_id] = client.read_flow(run.flow_id).name
            notes.append(message("interrupt.abandoned", lang, name=run.name, flow=flows[run.flow_id], pid=pid))
    return notes
