"""Fixtures of the production-path tests: one moto S3 server and one GCS emulator per session.

Both run on 127.0.0.1 with explicit test credentials. moto runs in a subprocess
(``moto_server.py``) with IAM enforcement on, so the output bucket really is write-only for the
``writer`` key; the GCS emulator runs in this process. Nothing here reaches another host.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before anything imports gcsfs, prefect or boto3: no HNS lookups (they hang against emulators),
# no telemetry, no metadata-server probes, no real AWS credentials from the environment.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["NO_GCE_CHECK"] = "True"
for _name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
    os.environ.pop(_name, None)

import pytest
import yaml

HERE = Path(__file__).parent
PROJECT_ROOT = HERE.parent.parent
LAKE_BUCKET = "lmco2-lake"
REGION = "ap-northeast-1"


@dataclass(frozen=True)
class MotoS3:
    """The moto server: endpoint, bucket names and the three users' keys."""

    endpoint_url: str
    input_bucket: str
    output_bucket: str
    keys: dict[str, dict[str, str]]

    def options(self, user: str) -> dict[str, Any]:
        """s3fs storage options for ``user``."""
        key = self.keys[user]
        return {"endpoint_url": self.endpoint_url, "key": key["key"], "secret": key["secret"],
                "client_kwargs": {"region_name": REGION}, "config_kwargs": {"retries": {"max_attempts": 2, "mode": "standard"}}}

    def client(self, user: str = "admin") -> Any:
        import boto3

        key = self.keys[user]
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=REGION,
                            aws_access_key_id=key["key"], aws_secret_access_key=key["secret"])

    def fail(self, method: str, contains: str, count: int) -> None:
        """Respond to the next ``count`` matching requests with HTTP 500 (``-1``: until :meth:`heal`)."""
        body = json.dumps({"method": method, "contains": contains, "count": count}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint_url}/__faults__", data=body, method="POST"), timeout=10).read()

    def heal(self) -> dict[str, Any]:
        """Clear every fault rule and return the hit counts."""
        request = urllib.request.Request(f"{self.endpoint_url}/__faults__", method="DELETE")
        return dict(json.loads(urllib.request.urlopen(request, timeout=10).read()))

    @property
    def secrets(self) -> list[str]:
        return [k["secret"] for k in self.keys.values()]


@dataclass(frozen=True)
class GcsEmulator:
    endpoint_url: str
    bucket: str

    @property
    def options(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url, "token": "anon"}


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    process = subprocess.Popen(
        [sys.executable, str(HERE / "moto_server.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line:
            raise RuntimeError(f"moto server did not start (exit code {process.poll()})")
        info = json.loads(line)
        yield MotoS3(info["endpoint_url"], info["input_bucket"], info["output_bucket"], info["keys"])
    finally:
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def gcs() -> Iterator[GcsEmulator]:
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=LAKE_BUCKET)
    server.start()
    try:
        yield GcsEmulator(f"http://127.0.0.1:{port}", LAKE_BUCKET)
    finally:
        server.stop()


@pytest.fixture
def profile_path(tmp_path: Path, moto_s3: MotoS3, gcs: GcsEmulator, request: pytest.FixtureRequest) -> Path:
    """A profile YAML with s3:// client roots and gs:// lake roots, unique per test (own lake prefix)."""
    prefix = request.node.name.replace("[", "-").replace("]", "").lower()[:40]
    profile = {
        "profile": "emulators",
        "language": "en",
        "data_dir": str(tmp_path),
        "storage": {
            "input": f"s3://{moto_s3.input_bucket}/{prefix}/input/{{yyyymmdd}}/",
            "raw": f"gs://{gcs.bucket}/{prefix}/raw/{{yyyymmdd}}/",
            "temp": f"gs://{gcs.bucket}/{prefix}/temp/{{yyyymmdd}}/",
            "processed": f"gs://{gcs.bucket}/{prefix}/processed/{{yyyymmdd}}/",
            "output": f"s3://{moto_s3.output_bucket}/output/{prefix}/{{yyyymmdd}}/",
            "output_write_only": True,
            "options": {
                "input": moto_s3.options("reader"),
                "output": moto_s3.options("writer"),
                "raw": gcs.options,
                "temp": gcs.options,
                "processed": gcs.options,
            },
        },
        "cluster": {"kind": "local", "n_workers": 2, "threads_per_worker": 1, "memory_limit": "2GiB"},
        "transfer": {"mode": "fsspec", "retries": 2},
        "notify": {"kind": "none"},
    }
    path = tmp_path / "emulators.yaml"
    path.write_text(yaml.safe_dump(profile, sort_keys=False), encoding="utf-8")
    return path


def write_sample_input(profile_path: Path, day: str, options: dict[str, Any], trips: int = 60) -> dict[str, int]:
    """Write a sample day to the profile's input root with ``options`` (the client's own key)."""
    from compute.sample import SampleSpec, write_sample_day
    from compute.settings import load_settings, parse_run_date
    from compute.storage import Store

    settings = load_settings(profile_path, environ={})
    return write_sample_day(Store(settings.url("input", day), options), parse_run_date(day), SampleSpec(trips=trips, vertices_per_trip=40))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
