"""The lock of a run date survives no dead holder, and a cut-short marker does not block reruns."""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from compute import phases
from compute.i18n import message, operator_language
from compute.settings import load_settings
from compute.storage import Manifest, Store, read_phase_marker, write_phase_marker
from flows import daily
from tests.conftest import write_profile

DAY = dt.date(2026, 12, 1)
HOLD = """
import fcntl, sys, time
handle = open(sys.argv[1], "a+b")
fcntl.flock(handle, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Settings of a local day, with no Prefect server configured, as for ``lm-co2 run`` on the
    local default (Prefect's test harness, started by other tests, sets an API URL)."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert not daily._prefect_server_configured()
        yield load_settings(str(write_profile(tmp_path / "profile.yaml", tmp_path / "data")))


def _lock_file(settings) -> Path:  # type: ignore[no-untyped-def]
    path = daily._local_lock_file(settings, DAY)
    assert path is not None
    return path


def _hold_in_process(path: Path) -> subprocess.Popen[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_lock_file_beside_temp_folder(settings) -> None:  # type: ignore[no-untyped-def]
    path = _lock_file(settings)
    assert path.name == ".lm-co2-20261201.lock"
    assert path.parent == Path(settings.url("temp", DAY).rstrip("/")).parent


def test_lock_free_after_holder_killed(settings, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    holder = _hold_in_process(_lock_file(settings))
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)

    entered = False
    with caplog.at_level(logging.INFO, logger="lmco2.test.killed"), daily._date_lock(DAY, settings, logging.getLogger("lmco2.test.killed")):
        entered = True
    assert entered
    # Taken at the first try: a wait would have logged its message once.
    assert [r.getMessage() for r in caplog.records if r.name == "lmco2.test.killed"] == []


def test_waits_for_live_holder_and_says_so(settings, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    holder = _hold_in_process(_lock_file(settings))
    entered = threading.Event()

    def second_run() -> None:
        with daily._date_lock(DAY, settings, logging.getLogger("lmco2.test.lock")):
            entered.set()

    try:
        with caplog.at_level(logging.WARNING, logger="lmco2.test.lock"):
            # In this test's context, where no Prefect server is configured (contextvars).
            thread = threading.Thread(target=contextvars.copy_context().run, args=(second_run,))
            thread.start()
            time.sleep(1.5)
            assert not entered.is_set()
            holder.terminate()
            holder.wait(timeout=10)
            thread.join(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert entered.is_set()
    waiting = [r.getMessage() for r in caplog.records if r.name == "lmco2.test.lock"]
    assert len(waiting) == 1
    # In the profile's language; the test profile may choose either.
    assert waiting[0] == message("flow.date_lock_waiting", settings.language, day="2026-12-01", path=str(_lock_file(settings)))
    assert ".lm-co2-20261201.lock" in waiting[0]


def test_gives_up_after_timeout(settings, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(daily, "DATE_LOCK_TIMEOUT_S", 0.5)
    holder = _hold_in_process(_lock_file(settings))
    try:
        with pytest.raises(daily.DateLockTimeoutError) as info, daily._date_lock(DAY, settings, logging.getLogger("test")):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert "ロック" in info.value.message("ja")
    assert "check whether that run is still working" in info.value.message("en")


def test_empty_marker_counts_as_missing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = Store(str(tmp_path / "state"))
    write_phase_marker(state, Manifest(phase="output", run_date="2026-12-01", root="x", objects=[]))
    assert read_phase_marker(state, "output") is not None
    marker = tmp_path / "state" / "_phases" / "output.json"
    assert marker.exists()
    marker.write_bytes(b"")

    with caplog.at_level(logging.WARNING, logger="compute.storage"):
        assert read_phase_marker(state, "output") is None
        marker.write_bytes(b" ")  # other content: a marker is warned about once per content
        with operator_language("en"):
            assert read_phase_marker(state, "output") is None

    warnings = [r.getMessage() for r in caplog.records if r.name == "compute.storage"]
    expected = {"path": str(marker), "phase": "output", "error": "", "size": 0}
    # Japanese unless the flow set the profile's language; the parse error's text is pyarrow's or json's.
    assert warnings[0].startswith(message("storage.phase_marker_invalid", "ja", **expected).split("（")[0])
    assert warnings[1].startswith(message("storage.phase_marker_invalid", "en", **expected).split(" (")[0])
    assert warnings[1].endswith("1 bytes). It is taken as cut short by a stopped run or edited by hand, so output runs again. No action is needed.")


def test_cut_delivery_marker_delivers_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from compute import transfer

    processed, state, output = (Store(str(tmp_path / name)) for name in ("processed", "temp", "output"))
    processed.write_bytes("trips.parquet", b"parquet" * 10)
    uploader = transfer.make_uploader(output)
    transfer.deliver(processed, uploader, state, run_date="2026-12-01", versions={}, retries=0)
    marker = tmp_path / "temp" / transfer.delivery_marker_path("trips.parquet")
    marker.write_bytes(marker.read_bytes()[:20])
    events: list[tuple[str, dict[str, Any]]] = []

    with caplog.at_level(logging.WARNING, logger="compute.transfer"), operator_language("en"):
        transfer.deliver(processed, uploader, state, run_date="2026-12-01", versions={}, retries=0, on_event=lambda e, f: events.append((e, f)))

    warnings = [r.getMessage() for r in caplog.records if r.name == "compute.transfer"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"The delivery marker {marker} of trips.parquet is not valid (")
    assert warnings[0].endswith("20 bytes). It is taken as cut short by a stopped run or edited by hand, so trips.parquet is delivered again. No action is needed.")
    assert "trips.parquet" in [f.get("object") for e, f in events if e == "object_delivered"]
    assert transfer.read_delivery(state, "trips.parquet") is not None


@pytest.mark.slow
def test_flow_warns_in_profile_language(tmp_path: Path, prefect_harness: None, caplog: pytest.LogCaptureFixture) -> None:
    """The flow writes the storage layer's warnings in the profile's language, English in the test profile."""
    from compute.sample import SampleSpec, write_sample_day

    profile = write_profile(tmp_path / "profile.yaml", tmp_path / "data")
    run_settings = load_settings(str(profile))
    assert run_settings.language == "en"
    write_sample_day(Store(run_settings.url("input", DAY)), DAY, SampleSpec(trips=12, vertices_per_trip=6))
    daily.co2_daily(run_date=DAY, profile=str(profile), phases=["fetch"])
    marker = Path(run_settings.url("temp", DAY)) / "_phases" / "fetch.json"
    marker.write_bytes(b"{")

    with caplog.at_level(logging.WARNING, logger="compute.storage"):
        daily.co2_daily(run_date=DAY, profile=str(profile), phases=["fetch"])

    warnings = [r.getMessage() for r in caplog.records if r.name == "compute.storage"]
    assert warnings
    assert all(w.startswith(f"The completion marker {marker} of phase fetch is not a valid manifest") for w in warnings)


def test_local_write_leaves_no_partial_file(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "out"))
    store.write_bytes("a/b.json", b"{}")
    store.write_bytes("a/b.json", b'{"x": 1}')
    assert (tmp_path / "out" / "a" / "b.json").read_bytes() == b'{"x": 1}'
    assert sorted(p.name for p in (tmp_path / "out" / "a").iterdir()) == ["b.json"]


def _ended_pid() -> int:
    """Return the PID of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_next_write_removes_killed_writers_part(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "a"
    folder.mkdir(parents=True)
    killed = folder / f"b.json.partial-{_ended_pid()}-0a1b2c3d"
    running = folder / f"b.json.partial-{os.getpid()}-4e5f6071"
    killed.write_bytes(b"{")
    running.write_bytes(b"{")

    Store(str(tmp_path / "out")).write_bytes("a/b.json", b"{}")

    assert not killed.exists()
    assert running.exists()
    assert (folder / "b.json").read_bytes() == b"{}"


def test_delivery_removes_killed_runs_part(tmp_path: Path) -> None:
    """A local client folder keeps no part file of a delivery that a killed run left."""
    import io

    from compute.storage import ObjectRecord
    from compute.transfer import FsspecUploader

    output = tmp_path / "output"
    output.mkdir()
    killed = output / f"trips.parquet.partial-{_ended_pid()}-0a1b2c3d"
    killed.write_bytes(b"PAR1")
    body = b"whole file"

    FsspecUploader(Store(str(output))).put("trips.parquet", io.BytesIO(body), ObjectRecord(path="trips.parquet", size=len(body), sha256="", md5=""))

    assert sorted(p.name for p in output.iterdir()) == ["trips.parquet"]
    assert (output / "trips.parquet").read_bytes() == body


def test_delivery_removes_part_of_skipped_file(tmp_path: Path) -> None:
    """A rerun that finds trips.parquet delivered skips it, and still removes the part file a killed upload left."""
    from compute import transfer

    processed, state, output = (Store(str(tmp_path / name)) for name in ("processed", "temp", "output"))
    processed.write_bytes("trips.parquet", b"parquet" * 10)
    uploader = transfer.make_uploader(output)
    transfer.deliver(processed, uploader, state, run_date="2026-12-01", versions={}, retries=0)
    killed = tmp_path / "output" / f"trips.parquet.partial-{_ended_pid()}-0a1b2c3d"
    killed.write_bytes(b"PAR1")
    events: list[tuple[str, dict[str, Any]]] = []

    transfer.deliver(processed, uploader, state, run_date="2026-12-01", versions={}, retries=0, on_event=lambda e, f: events.append((e, f)))

    assert sorted(p.name for p in (tmp_path / "output").iterdir()) == ["_SUCCESS", "manifest.json", "trips.parquet"]
    assert ("leftover_parts_removed", {"count": 1, "objects": killed.name}) in events
    assert ("object_already_delivered", "trips.parquet") in [(e, f.get("object")) for e, f in events]


def test_rerun_after_cut_marker_completes(tmp_path: Path) -> None:
    """A day whose fetch marker was cut to 0 bytes fetches again instead of failing."""
    from compute.sample import SampleSpec, write_sample_day

    profile = write_profile(tmp_path / "profile.yaml", tmp_path / "data")
    run_settings = load_settings(str(profile))
    write_sample_day(Store(run_settings.url("input", DAY)), DAY, SampleSpec(trips=12, vertices_per_trip=6))
    first = phases.fetch(phases.DailyRun.create(run_settings, DAY))
    assert not first.skipped
    markers = Path(run_settings.url("temp", DAY)) / "_phases"
    (markers / "fetch.json").write_bytes(b"")

    again = phases.fetch(phases.DailyRun.create(run_settings, DAY))
    assert not again.skipped
    assert read_phase_marker(phases.DailyRun.create(run_settings, DAY).state, "fetch") is not None


_VALID = Manifest(phase="compute", run_date="2026-12-01", root="x", counts={"trips": 3}).to_json()


@pytest.mark.parametrize(("body", "reason"), [
    (b"null", "a manifest is a JSON object, got NoneType"),
    (b"[]", "a manifest is a JSON object, got list"),
    (b"\xff\xfe{}", "(not UTF-8 text (byte 1), 4 bytes)"),
    (b'{"phase": "compute",\n  "run_date": ', "(not JSON (line 2, column 15), 35 bytes)"),
    (_VALID.replace('"counts": {\n    "trips": 3\n  }', '"counts": []').encode(), "field 'counts' must be a JSON object, got list"),
    (_VALID.replace('"phase": "compute"', '"phase": "validate"').encode(), "it is the marker of phase 'validate'"),
    (_VALID.replace('"root": "x"', '"root": 3').encode(), "field 'root' must be text, got 3"),
    (_VALID.replace('"objects": []', '"objects": [{"path": "a"}]').encode(), "an entry of 'objects' is invalid (KeyError"),
])
def test_edited_phase_marker_runs_again(tmp_path: Path, caplog: pytest.LogCaptureFixture, body: bytes, reason: str) -> None:
    state = Store(str(tmp_path / "state"))
    assert '"counts": {\n    "trips": 3\n  }' in _VALID
    assert '"objects": []' in _VALID
    state.write_bytes("_phases/compute.json", body)

    with caplog.at_level(logging.WARNING, logger="compute.storage"), operator_language("en"):
        assert read_phase_marker(state, "compute", "2026-12-01") is None

    warnings = [r.getMessage() for r in caplog.records if r.name == "compute.storage"]
    assert len(warnings) == 1
    assert reason in warnings[0]
    assert warnings[0].endswith("so compute runs again. No action is needed.")


def test_marker_not_json_is_described_in_japanese(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = Store(str(tmp_path / "state"))
    state.write_bytes("_phases/compute.json", b'{"phase": "compute",\n  "run_date": ')

    with caplog.at_level(logging.WARNING, logger="compute.storage"), operator_language("ja"):
        assert read_phase_marker(state, "compute", "2026-12-01") is None

    warnings = [r.getMessage() for r in caplog.records if r.name == "compute.storage"]
    assert len(warnings) == 1
    assert "JSON として読めません（2 行 15 文字目）" in warnings[0]
    assert "Expecting" not in warnings[0]


def test_marker_folder_runs_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = Store(str(tmp_path / "state"))
    (tmp_path / "state" / "_phases" / "publish.json").mkdir(parents=True)

    with caplog.at_level(logging.WARNING, logger="compute.storage"), operator_language("en"):
        assert read_phase_marker(state, "publish", "2026-12-01") is None

    assert caplog.records[-1].getMessage() == (f"The completion marker {tmp_path / 'state' / '_phases' / 'publish.json'} of phase publish is "
                                               "a folder, not a file, so publish runs again as if it had no marker, and its completion "
                                               "replaces the folder with the marker file.")


def test_marker_of_other_date_runs_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = Store(str(tmp_path / "state"))
    state.write_bytes("_phases/compute.json", _VALID.replace("2026-12-01", "2026-12-02").encode())

    with caplog.at_level(logging.WARNING, logger="compute.storage"), operator_language("en"):
        assert read_phase_marker(state, "compute", "2026-12-01") is None
        assert read_phase_marker(state, "compute", "2026-12-01") is None
        assert read_phase_marker(state, "compute", "2026-12-02") is not None

    warnings = [r.getMessage() for r in caplog.records if r.name == "compute.storage"]
    # Read twice, warned once.
    assert warnings == [f"The completion marker {tmp_path / 'state' / '_phases' / 'compute.json'} of phase compute was written by the run "
                        "of 2026-12-02, not 2026-12-01 (taken as copied by hand), so compute runs again."]


@pytest.mark.parametrize("body", [b"\xff\xfe", b"[]", b'{"path": "trips.parquet"}', b"null"])
def test_edited_delivery_marker_delivers_again(tmp_path: Path, caplog: pytest.LogCaptureFixture, body: bytes) -> None:
    from compute import transfer

    processed, state, output = (Store(str(tmp_path / name)) for name in ("processed", "temp", "output"))
    processed.write_bytes("trips.parquet", b"parquet" * 10)
    uploader = transfer.make_uploader(output)
    transfer.deliver(processed, uploader, state, run_date="2026-12-01", versions={}, retries=0)
    state.write_bytes(transfer.delivery_marker_path("manifest.json"), body)
    events: list[tuple[str, dict[str, Any]]] = []

    with caplog.at_level(logging.WARNING, logger="compute.transfer"):
        transfer.deliver(processed, uploader, state, run_date="2026-12-01", versions={}, retries=0, on_event=lambda e, f: events.append((e, f)))

    assert [r.getMessage() for r in caplog.records if r.name == "compute.transfer"][0].startswith("manifest.json の納品マーカー")
    assert "manifest.json" in [f.get("object") for e, f in events if e == "object_delivered"]
    assert transfer.read_delivery(state, "manifest.json") is not None


def test_marker_reason_in_japanese(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = Store(str(tmp_path / "state"))
    state.write_bytes("_phases/compute.json", _VALID.replace('"counts": {\n    "trips": 3\n  }', '"counts": []').encode())

    with caplog.at_level(logging.WARNING, logger="compute.storage"):
        assert read_phase_marker(state, "compute", "2026-12-01") is None

    assert "正しいマニフェストではありません（項目 'counts' が JSON の object ではなく list です、" in caplog.records[-1].getMessage()
