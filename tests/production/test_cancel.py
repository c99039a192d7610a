"""A run stopped during compute leaves no Dask process or port behind, and ends Crashed or Cancelled."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from .conftest import HERE, PROJECT_ROOT

DAY = "2026-12-02"


def _local_profile(tmp_path: Path) -> Path:
    profile = yaml.safe_load((PROJECT_ROOT / "compute" / "profiles" / "local.yaml").read_text())
    profile["data_dir"] = str(tmp_path / "var")
    profile["cluster"].update({"n_workers": 2, "memory_limit": "1GiB"})
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


def _read_events(process: subprocess.Popen[str], until: str, deadline_s: float) -> dict[str, str]:
    """Read JSON log lines until an event of the compute piece task named ``until`` appears."""
    end = time.monotonic() + deadline_s
    seen: dict[str, str] = {}
    assert process.stdout is not None
    while time.monotonic() < end:
        line = process.stdout.readline()
        if not line:
            break
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("flow_run_id"):
            seen["flow_run_id"] = record["flow_run_id"]
        if record.get("event") == until and record.get("task") == "compute_piece":
            return seen
    raise AssertionError(f"no {until} event for compute_piece within {deadline_s} s; last fields {seen}")


def _listening_ports(processes: list[psutil.Process]) -> set[int]:
    ports = set()
    for process in processes:
        try:
            for connection in process.net_connections(kind="inet"):
                if connection.status == psutil.CONN_LISTEN:
                    ports.add(connection.laddr.port)
        except psutil.NoSuchProcess:
            continue
    return ports


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_sigterm_during_compute_closes_cluster(prefect_harness: None, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.settings import PREFECT_API_URL

    from compute.sample import SampleSpec, write_sample_day
    from compute.settings import load_settings, parse_run_date
    from compute.storage import Store

    profile = _local_profile(tmp_path)
    settings = load_settings(profile, environ={})
    write_sample_day(Store(settings.url("input", DAY)), parse_run_date(DAY), SampleSpec(trips=20, vertices_per_trip=30))
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "LMCO2_LOGGING__FORMAT": "json",
           "PREFECT_LOGGING_LEVEL": "INFO", "PYTHONPATH": str(PROJECT_ROOT)}
    process = subprocess.Popen([sys.executable, str(HERE / "slow_flow.py"), DAY, str(profile)], cwd=PROJECT_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = _read_events(process, "pieces_progress", deadline_s=150)
        children = psutil.Process(process.pid).children(recursive=True)
        ports = _listening_ports([psutil.Process(process.pid), *children])
        assert len(children) >= 2, "expected the LocalCluster's worker processes"

        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)

    end = time.monotonic() + 20
    while time.monotonic() < end and not all(_gone(p) for p in children):
        time.sleep(0.5)
    assert [p.pid for p in children if not _gone(p)] == []
    assert sorted(p for p in ports if _accepts(p)) == []
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(seen["flow_run_id"]).state
    assert state is not None
    assert state.type in (StateType.CRASHED, StateType.CANCELLED), state
