"""co2_daily end to end: client S3 (moto, IAM enforced) to our GCS (emulator) and back to a write-only S3."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import logging
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.parquet as pq
import pytest
import yaml

from compute.logs import JsonFormatter
from compute.settings import load_settings
from compute.storage import Store

from .conftest import GcsEmulator, MotoS3, write_sample_input

DAY = "2026-12-01"
OUTPUT_FILES = {"trips.parquet", "breakdown.parquet", "rejects.parquet", "summary.json", "manifest.json", "_SUCCESS"}


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        _Receiver.bodies.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


class _JsonRecords(logging.Handler):
    """Collect the run's records as the JSON lines the production console would print."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def run_records(prefect_harness: None) -> Iterator[_JsonRecords]:
    """Capture info records of the flow and task run loggers, whatever PREFECT_LOGGING_LEVEL is set to."""
    from prefect import flow

    # Prefect configures logging when it runs its first flow in a process; change the loggers after that.
    flow(name="logging-warm-up")(lambda: None)()
    handler = _JsonRecords()
    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs", "compute")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
            logger.removeHandler(handler)


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    token = secrets.token_hex(16)
    _Receiver.bodies = []
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks/{token}", _Receiver.bodies
    finally:
        server.shutdown()
        server.server_close()


def _output_objects(moto_s3: MotoS3, prefix: str) -> dict[str, bytes]:
    admin = moto_s3.client("admin")
    listed = admin.list_objects_v2(Bucket=moto_s3.output_bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix):]: admin.get_object(Bucket=moto_s3.output_bucket, Key=o["Key"])["Body"].read() for o in listed}


def _output_prefix(profile_path: Path) -> str:
    settings = load_settings(profile_path, environ={})
    return settings.url("output", DAY).split("/", 3)[3]


def _lake_texts(settings: Any, gcs: GcsEmulator) -> dict[str, str]:
    texts = {}
    for root in ("raw", "temp", "processed"):
        store = Store(settings.url(root, DAY), gcs.options)
        for name in store.list():
            if name.endswith((".json", "_SUCCESS")):
                texts[f"{root}/{name}"] = store.read_text(name)
    return texts


def _flow_run_records(flow_run_id: Any) -> tuple[list[str], list[str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # logs reach the server in batches; this blocks until they are sent
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs], [json.dumps(a.data, default=str) + str(a.description) for a in artifacts]


@pytest.mark.slow
def test_daily_flow_s3_gcs_s3(prefect_harness: None, run_records: _JsonRecords, profile_path: Path, moto_s3: MotoS3, gcs: GcsEmulator,
                              webhook: tuple[str, list[dict[str, Any]]], capfd: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.daily import co2_daily

    monkeypatch.setenv("LMCO2_LOGGING__FORMAT", "json")  # the console handler formats JSON, as on GKE
    url, received = webhook
    profile = yaml.safe_load(profile_path.read_text())
    profile["notify"] = {"kind": "webhook", "webhook_url": url}
    profile_path.write_text(yaml.safe_dump(profile))
    written = write_sample_input(profile_path, DAY, moto_s3.options("admin"), trips=60)

    state = co2_daily(run_date=DAY, profile=str(profile_path), return_state=True)

    assert state.is_completed(), state.message
    settings = load_settings(profile_path, environ={})
    temp = Store(settings.url("temp", DAY), gcs.options)
    outputs = _output_objects(moto_s3, _output_prefix(profile_path))

    # Delivery: every file, manifest and _SUCCESS, each matching the manifest's checksums.
    assert OUTPUT_FILES <= set(outputs)
    manifest = json.loads(outputs["manifest.json"])
    assert {o["path"] for o in manifest["objects"]} == set(outputs) - {"manifest.json", "_SUCCESS"}
    for record in manifest["objects"]:
        body = outputs[record["path"]]
        assert len(body) == record["size"], record["path"]
        assert hashlib.sha256(body).hexdigest() == record["sha256"], record["path"]
        assert base64.b64encode(hashlib.md5(body).digest()).decode() == record["md5"], record["path"]
    success = json.loads(outputs["_SUCCESS"])
    assert success["manifest_sha256"] == hashlib.sha256(outputs["manifest.json"]).hexdigest()
    head = moto_s3.client("admin").head_object(Bucket=moto_s3.output_bucket, Key=_output_prefix(profile_path) + "trips.parquet",
                                               ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(outputs["trips.parquet"]).digest()).decode()

    # Delivery state on our side: one marker per object, manifest and _SUCCESS included.
    assert {n.removeprefix("_delivery/").removesuffix(".json") for n in temp.list("_delivery")} == set(outputs)

    # Fetch: every input object verified at raw/.
    fetch = json.loads(temp.read_text("_phases/fetch.json"))
    assert fetch["counts"]["objects"] == fetch["counts"]["verified"] == len(Store(settings.url("raw", DAY), gcs.options).list())

    # Row balance: rows in = accepted + rejected per dataset, and one output trip per accepted trajectory.
    validate = json.loads(temp.read_text("_phases/validate.json"))["counts"]["datasets"]
    for dataset, rows in written.items():
        assert validate[dataset]["rows_in"] == rows, dataset
        assert validate[dataset]["accepted"] + validate[dataset]["rejected"] == rows, dataset
    trips = pq.read_table(io.BytesIO(outputs["trips.parquet"]))
    assert trips.num_rows == validate["trajectories"]["accepted"]
    rejects = pq.read_table(io.BytesIO(outputs["rejects.parquet"]))
    assert rejects.num_rows == sum(d["rejected"] for d in validate.values())

    # Completion notice: one POST without credentials.
    assert len(received) == 1
    assert received[0]["body"]["run_date"] == DAY

    # No credential anywhere: lake manifests and markers, delivered files, run logs, artifacts, console.
    forbidden = [*moto_s3.secrets, url.rsplit("/", 1)[1]]
    messages, artifacts = _flow_run_records(state.state_details.flow_run_id)
    captured = capfd.readouterr()
    haystacks = {
        **_lake_texts(settings, gcs),
        **{f"output/{k}": v.decode("utf-8", "replace") for k, v in outputs.items() if k.endswith((".json", "_SUCCESS"))},
        "logs": "\n".join(messages), "records": "\n".join(run_records.lines), "artifacts": "\n".join(artifacts), "console": captured.out + captured.err,
    }
    records = [json.loads(line) for line in run_records.lines]
    delivered = [r for r in records if r.get("event") == "object_delivered"]
    assert {r["object"] for r in delivered} == set(outputs)
    assert all(r["run_date"] == DAY and r["phase"] == "publish" and r["flow_run_id"] for r in delivered)
    assert any("data:image/png;base64," in a for a in artifacts), [a[:200] for a in artifacts]
    for where, text in haystacks.items():
        for secret in forbidden:
            assert secret not in text, f"a test credential appears in {where}"


@pytest.mark.slow
def test_publish_rerun_after_failure(prefect_harness: None, profile_path: Path, moto_s3: MotoS3, gcs: GcsEmulator) -> None:
    from flows.daily import co2_daily

    write_sample_input(profile_path, DAY, moto_s3.options("admin"), trips=30)
    prefix = _output_prefix(profile_path)
    moto_s3.fail("PUT", prefix + "trips.parquet", -1)
    try:
        first = co2_daily(run_date=DAY, profile=str(profile_path), return_state=True)
    finally:
        moto_s3.heal()

    assert first.is_failed()
    settings = load_settings(profile_path, environ={})
    temp = Store(settings.url("temp", DAY), gcs.options)
    assert not temp.exists("_phases/publish.json")
    delivered_before = {n for n in temp.list("_delivery")}
    assert "_delivery/trips.parquet.json" not in delivered_before
    assert "_delivery/breakdown.parquet.json" in delivered_before

    second = co2_daily(run_date=DAY, profile=str(profile_path), return_state=True)

    assert second.is_completed(), second.message
    admin = moto_s3.client("admin")
    versions = admin.list_object_versions(Bucket=moto_s3.output_bucket, Prefix=prefix).get("Versions", [])
    keys = [v["Key"][len(prefix):] for v in versions]
    data_keys = [k for k in keys if k != "_SUCCESS"]
    assert len(data_keys) == len(set(data_keys))  # each object uploaded exactly once across both runs
    # _SUCCESS twice: "redelivering" before the first object (no delivery marker records what the
    # output holds), then "complete".
    assert keys.count("_SUCCESS") == 2
    assert OUTPUT_FILES <= set(keys)
    publish = json.loads(temp.read_text("_phases/publish.json"))["counts"]
    # Every object the first run delivered is skipped; _SUCCESS, written as "redelivering", is written again.
    assert publish["already_delivered"] == len(delivered_before - {"_delivery/_SUCCESS.json"})


@pytest.mark.slow
def test_format_switch_redelivers_through_flow(prefect_harness: None, profile_path: Path, moto_s3: MotoS3, gcs: GcsEmulator) -> None:
    """A day delivered as Parquet and again as CSV through the flow: ``_SUCCESS`` is withdrawn, then complete again.

    The client's key may only PUT, so the Parquet files stay beside the CSV files, and the new
    manifest lists them as withdrawn.
    """
    from flows.daily import co2_daily

    write_sample_input(profile_path, DAY, moto_s3.options("admin"), trips=30)
    prefix = _output_prefix(profile_path)
    first = co2_daily(run_date=DAY, profile=str(profile_path), return_state=True)
    assert first.is_completed(), first.message

    profile = yaml.safe_load(profile_path.read_text(encoding="utf-8"))
    profile["output"] = {"format": "csv"}
    profile_path.write_text(yaml.safe_dump(profile, sort_keys=False), encoding="utf-8")
    second = co2_daily(run_date=DAY, profile=str(profile_path), force=True, phases=["output", "publish"], return_state=True)
    assert second.is_completed(), second.message

    admin = moto_s3.client("admin")
    versions = admin.list_object_versions(Bucket=moto_s3.output_bucket, Prefix=prefix + "_SUCCESS").get("Versions", [])
    bodies = [json.loads(admin.get_object(Bucket=moto_s3.output_bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read())
              for v in reversed(versions)]  # S3 lists the versions of a key newest first
    # The first delivery starts with "redelivering" too: no delivery marker records what the output contains.
    assert [body["status"] for body in bodies] == ["redelivering", "complete", "redelivering", "complete"]
    assert bodies[2]["manifest_sha256"] is None
    assert bodies[2]["replaces_manifest_sha256"] == bodies[1]["manifest_sha256"]

    delivered = _output_objects(moto_s3, prefix)
    assert {"trips.csv", "breakdown.csv", "rejects.csv"} <= set(delivered)
    assert {"trips.parquet", "breakdown.parquet", "rejects.parquet"} <= set(delivered)
    manifest = json.loads(delivered["manifest.json"])
    assert {"trips.parquet", "breakdown.parquet", "rejects.parquet"} <= set(manifest["withdrawn"])
    assert manifest["counts"]["deleted"] == 0
    assert bodies[3]["manifest_sha256"] == hashlib.sha256(delivered["manifest.json"]).hexdigest()
    trips_csv = delivered["trips.csv"].decode("utf-8").splitlines()
    assert len(trips_csv) - 1 == len(pq.read_table(io.BytesIO(delivered["trips.parquet"])))
