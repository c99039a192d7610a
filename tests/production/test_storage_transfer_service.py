"""Storage Transfer Service run and poll, against operations built by google.api_core.

No Google endpoint is reachable from the tests, so the client below returns real
``google.api_core.operation.Operation`` objects whose refresh function replays a scripted
sequence of operation protos. Everything above that boundary (polling, deadline, cancel, status
and counters) is the code under test.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core import operation
from google.cloud import storage_transfer_v1 as st
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2
from google.rpc import status_pb2

from compute.transfer import TransferError, run_storage_transfer

JOB = "transferJobs/lmco2-daily"


def _operation_proto(status: st.TransferOperation.Status, *, done: bool, error_code: int = 0) -> operations_pb2.Operation:
    metadata = st.TransferOperation(
        name="transferOperations/op-1", status=status,
        counters=st.TransferCounters(objects_found_from_source=4, objects_copied_to_sink=4 if done else 1, bytes_copied_to_sink=4096),
    )
    packed = any_pb2.Any()
    packed.Pack(st.TransferOperation.pb(metadata))
    proto = operations_pb2.Operation(name="transferOperations/op-1", done=done, metadata=packed)
    if done and error_code:
        proto.error.CopyFrom(status_pb2.Status(code=error_code, message="source bucket access denied"))
    elif done:
        proto.response.Pack(empty_pb2.Empty())
    return proto


class ScriptedTransferClient:
    """Returns an api_core Operation whose polls replay ``script``; records cancel calls."""

    def __init__(self, script: list[operations_pb2.Operation]) -> None:
        self.script = script
        self.polls = 0
        self.cancelled = 0
        self.requests: list[Any] = []

    def run_transfer_job(self, request: Any = None, **kwargs: Any) -> operation.Operation:
        self.requests.append(request)
        return operation.Operation(self.script[0], self._refresh, self._cancel, result_type=empty_pb2.Empty,
                                   metadata_type=st.TransferOperation)

    def _refresh(self, **kwargs: Any) -> operations_pb2.Operation:
        self.polls += 1
        return self.script[min(self.polls, len(self.script) - 1)]

    def _cancel(self, **kwargs: Any) -> None:
        self.cancelled += 1


def test_transfer_succeeds_after_polls() -> None:
    running = _operation_proto(st.TransferOperation.Status.IN_PROGRESS, done=False)
    client = ScriptedTransferClient([running, running, _operation_proto(st.TransferOperation.Status.SUCCESS, done=True)])

    summary = run_storage_transfer(client, project_id="p", job_name=JOB, timeout_s=30, poll_initial_s=0.01, poll_max_s=0.02)

    assert client.requests == [{"job_name": JOB, "project_id": "p"}]
    assert client.polls >= 2
    assert summary["status"] == "SUCCESS"
    assert summary["counters"]["objects_copied_to_sink"] == 4


def test_transfer_deadline_cancels_operation() -> None:
    running = _operation_proto(st.TransferOperation.Status.IN_PROGRESS, done=False)
    client = ScriptedTransferClient([running])

    with pytest.raises(TransferError, match="did not finish within 0.3 s"):
        run_storage_transfer(client, project_id="p", job_name=JOB, timeout_s=0.3, poll_initial_s=0.01, poll_max_s=0.05)
    assert client.cancelled == 1


def test_transfer_failure_is_reported() -> None:
    client = ScriptedTransferClient([_operation_proto(st.TransferOperation.Status.FAILED, done=True, error_code=7)])

    with pytest.raises(TransferError, match="source bucket access denied"):
        run_storage_transfer(client, project_id="p", job_name=JOB, timeout_s=5, poll_initial_s=0.01)


def test_invalid_job_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="transferJobs/"):
        run_storage_transfer(ScriptedTransferClient([]), project_id="p", job_name="daily", timeout_s=5)
