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
import sys
import traceback
from collections.abc import Callable
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
        if self.signals:
            # The process exits next. distributed still logs while its exit handler closes the
            # nannies ("exit status was already read"), after the command's message.
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
    """
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        with get_client(sync_client=True):
            pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


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
