"""Transfers with proof: input to raw (phases 1-2) and processed to the client's output (phase 5).

Input to raw
    The ``sts`` mode runs the day's existing Storage Transfer Service job and polls its operation
    with a deadline of its own. The ``fsspec`` mode (local profile and fallback) copies object by
    object. Either way :func:`verify_and_repair` then checks every object of the source listing at
    the destination (size and SHA-256, read from both sides) and copies again only the objects
    that are missing or differ.

Processed to output
    Storage Transfer Service cannot write to S3, and the client's output bucket allows PutObject
    only (no list, no read, no bucket creation). :func:`deliver` therefore uploads object by object
    with boto3 ``put_object``, sending ``ContentMD5`` and ``ChecksumSHA256`` so that S3 rejects a
    corrupted body, and checks the checksum S3 returns. Delivery state lives on our side: one
    marker per delivered object under ``temp/_delivery/``, so a rerun skips what is already there
    and never uploads an object twice. ``manifest.json`` and ``_SUCCESS`` go last.

Credentials never enter a manifest, a marker or a log record: the boto3 client is built from the
storage options at call time, and webhook URLs are passed as :class:`pydantic.SecretStr`.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import datetime as dt
import functools
import glob
import hashlib
import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, Protocol

from pydantic import SecretStr

from compute.i18n import LocalizedText, current_language, localized_error, message, register
from compute.storage import (
    MANIFEST_NAME,
    SUCCESS_NAME,
    DeliveryError,
    Manifest,
    ObjectRecord,
    StorageError,
    Store,
    VerificationError,
    copy_object,
    marker_reason,
    partial_path,
    remove_stale_partials,
    remove_stale_parts,
)

_log = logging.getLogger(__name__)

register(
    {
        "transfer.sts_timeout": {
            "ja": "転送オペレーション {operation} が {timeout} 秒以内に終わらなかったため取り消しました。"
                  "Storage Transfer のコンソールでジョブを確認してから、fetch フェーズを再実行してください。",
            "en": "transfer operation {operation} did not finish within {timeout} s and was cancelled; "
                  "check the job in the Storage Transfer console, then rerun the fetch phase",
        },
        "transfer.sts_failed": {
            "ja": "転送オペレーション {operation} が失敗しました（{error}）。Storage Transfer のコンソールでエラーの内訳を確認してから、"
                  "fetch フェーズを再実行してください。",
            "en": "transfer operation {operation} failed: {error}; see its error breakdown in the Storage Transfer console, "
                  "then rerun the fetch phase",
        },
        "transfer.sts_status": {
            "ja": "転送オペレーション {operation} が状態 {status} で終わりました（SUCCESS のはずです）。"
                  "Storage Transfer のコンソールで確認してから、fetch フェーズを再実行してください。",
            "en": "transfer operation {operation} ended with status {status}; expected SUCCESS. Check it in the Storage Transfer "
                  "console, then rerun the fetch phase",
        },
        "transfer.upload_checksum": {
            "ja": "{url} へのアップロードの応答の ChecksumSHA256 が {found} で、{expected} のはずでした。オブジェクトが壊れています。publish フェーズを再実行してください。",
            "en": "upload of {url} returned ChecksumSHA256={found}, expected {expected}; the object is corrupt, rerun publish",
        },
        "transfer.upload_etag": {
            "ja": "{url} へのアップロードの応答の ETag が {found} で、MD5 {expected} のはずでした。オブジェクトが壊れています。publish フェーズを再実行してください。",
            "en": "upload of {url} returned ETag {found}, expected the MD5 {expected}; the object is corrupt, rerun publish",
        },
        "transfer.delivery_failed": {
            "ja": "{name} を {url} へ納品できませんでした（{error}）。publish フェーズを再実行してください。納品済みのファイルは送り直しません。",
            "en": "{name} could not be delivered to {url}: {error}; rerun publish, which does not send the files already delivered again",
        },
        "transfer.webhook_http": {
            "ja": "完了通知の Webhook が HTTP {status} を返しました（2xx のはずです）。受信側を確認してから、publish フェーズを再実行してください。",
            "en": "completion webhook returned HTTP {status}, expected 2xx; check the receiver, then rerun publish",
        },
        "transfer.webhook_failed": {
            "ja": "完了通知の Webhook に送れませんでした（{error}）。受信側を確認してから、publish フェーズを再実行してください。",
            "en": "completion webhook failed: {error}; check the receiver, then rerun publish",
        },
        "transfer.delivery_marker_invalid": {
            "ja": "{relative} の納品マーカー {path} が正しくありません（{error}、{size} バイト）。"
                  "途中で止められた実行のものか手で編集されたものと見なし、{relative} をもう一度納品します。対応は不要です。",
            "en": "The delivery marker {path} of {relative} is not valid ({error}, {size} bytes). It is taken as cut short "
                  "by a stopped run or edited by hand, so {relative} is delivered again. No action is needed.",
        },
    }
)

EventSink = Callable[[str, dict[str, Any]], None]
DELIVERY_DIR = "_delivery"
#: Markers of objects a later delivery of the day no longer has, left in the write-only output.
WITHDRAWN_DIR = "_withdrawn"
SPOOL_MEMORY_BYTES = 64 * 1024 * 1024


class TransferError(StorageError):
    """A Storage Transfer Service operation failed, was aborted or passed its deadline."""


class NoticeError(LocalizedText, RuntimeError):
    """Failure to send the completion notice, after the delivery itself completed."""


def _ignore(event: str, fields: dict[str, Any]) -> None:
    return None


# -- Storage Transfer Service ------------------------------------------------------------------


class TransferClient(Protocol):
    """The part of ``google.cloud.storage_transfer_v1.StorageTransferServiceClient`` used here."""

    def run_transfer_job(self, request: Any = None, *args: Any, **kwargs: Any) -> Any: ...


def make_transfer_client() -> TransferClient:
    """Create a Storage Transfer Service client with application-default credentials.

    On GKE these are the Workload Identity credentials of the pod's service account; locally they
    come from ``gcloud auth application-default login``.
    """
    from google.cloud import storage_transfer_v1

    client: TransferClient = storage_transfer_v1.StorageTransferServiceClient()  # type: ignore[assignment]
    return client


def run_storage_transfer(
    client: TransferClient,
    *,
    project_id: str,
    job_name: str,
    timeout_s: float,
    poll_initial_s: float = 5.0,
    poll_max_s: float = 60.0,
    on_event: EventSink = _ignore,
) -> dict[str, Any]:
    """Run an existing transfer job once and wait for its operation to finish.

    Parameters
    ----------
    client
        A Storage Transfer Service client (see :func:`make_transfer_client`).
    project_id, job_name
        The project and the job (``transferJobs/…``) that copies ``input/YYYYMMDD/`` to
        ``raw/YYYYMMDD/``. The job has no schedule of its own: only this call runs it.
    timeout_s
        Deadline for the whole operation, enforced by the client-side poll. On expiry the
        operation is cancelled.
    poll_initial_s, poll_max_s
        First and maximum delay between two polls; the delay grows by half each time.

    Returns
    -------
    dict
        Operation name, status and the transfer counters (objects and bytes found, copied,
        skipped, failed), for the phase manifest.

    Raises
    ------
    TransferError
        If the operation failed, was aborted, or did not finish within ``timeout_s``.
    """
    from google.api_core import exceptions
    from google.api_core.future import polling as future_polling

    if not job_name.startswith("transferJobs/"):
        raise ValueError(f"transfer.job_name {job_name!r} is not a job name; expected 'transferJobs/<id>' of the day's transfer job")
    op = client.run_transfer_job(request={"job_name": job_name, "project_id": project_id})
    name = getattr(getattr(op, "operation", None), "name", "")
    on_event("transfer_started", {"job_name": job_name, "operation": name})

    polling = future_polling.DEFAULT_POLLING.with_delay(initial=poll_initial_s, maximum=poll_max_s, multiplier=1.5).with_timeout(timeout_s)
    try:
        op.result(timeout=timeout_s, polling=polling)
    except concurrent.futures.TimeoutError as error:
        _cancel_quietly(op)
        raise localized_error(TransferError, "transfer.sts_timeout", operation=name or job_name, timeout=f"{timeout_s:g}") from error
    except exceptions.GoogleAPICallError as error:
        raise localized_error(TransferError, "transfer.sts_failed", operation=name or job_name, error=error.message) from error

    summary = _operation_summary(op, name)
    if summary["status"] not in ("SUCCESS", ""):
        raise localized_error(TransferError, "transfer.sts_status", operation=name or job_name, status=summary["status"])
    on_event("transfer_completed", {k: v for k, v in summary.items() if k != "counters"} | summary["counters"])
    return summary


def _cancel_quietly(op: Any) -> None:
    # The timeout is the error to report; a failed cancel is logged by the client library.
    with contextlib.suppress(Exception):
        op.cancel()


def _operation_summary(op: Any, name: str) -> dict[str, Any]:
    metadata = op.metadata
    counters: dict[str, int] = {}
    status = ""
    if metadata is not None:
        status = getattr(getattr(metadata, "status", None), "name", "") or ""
        raw = getattr(metadata, "counters", None)
        for field in (
            "objects_found_from_source", "bytes_found_from_source", "objects_copied_to_sink", "bytes_copied_to_sink",
            "objects_from_source_skipped_by_sync", "objects_from_source_failed", "bytes_from_source_failed",
        ):
            counters[field] = int(getattr(raw, field, 0) or 0)
    return {"operation": name, "status": status, "counters": counters}


# -- input to raw -------------------------------------------------------------------------------


def copy_objects(
    source: Store, destination: Store, names: Iterable[str], *, on_event: EventSink = _ignore
) -> dict[str, ObjectRecord]:
    """Copy ``names`` one by one without verifying; return the records streamed from the source.

    A name that fails to copy is left out of the result and reported as ``object_copy_failed``;
    :func:`verify_and_repair` then finds it missing and retries it.
    """
    records: dict[str, ObjectRecord] = {}
    for name in names:
        try:
            records[name] = copy_object(source, destination, name, verify=_skip_verify)
        except OSError as error:
            on_event("object_copy_failed", {"object": name, "error": _error_text(error)})
    return records


def expected_from_source(source: Store, names: Iterable[str]) -> dict[str, ObjectRecord]:
    """Read every object of the source listing and return its size and checksums."""
    return {name: source.record(name) for name in names}


def find_mismatches(destination: Store, expected: Mapping[str, ObjectRecord], names: Iterable[str] | None = None) -> dict[str, str]:
    """Return ``{name: problem}`` for objects of ``expected`` that are missing or differ at ``destination``."""
    problems: dict[str, str] = {}
    present = destination.list()
    for name in sorted(names if names is not None else expected):
        record = expected[name]
        if name not in present:
            problems[name] = "missing"
            continue
        try:
            size, sha, _ = destination.checksums(name)
        except OSError as error:
            problems[name] = f"unreadable: {_error_text(error)}"
            continue
        if (size, sha) != (record.size, record.sha256):
            problems[name] = f"differs: expected {record.size} bytes sha256={record.sha256[:12]}…, found {size} bytes sha256={sha[:12]}…"
    return problems


def verify_and_repair(
    source: Store,
    destination: Store,
    expected: Mapping[str, ObjectRecord],
    *,
    retries: int,
    retry_delay_s: float = 0.5,
    on_event: EventSink = _ignore,
) -> dict[str, int]:
    """Verify every object of ``expected`` at ``destination``; copy again only those that failed.

    Returns
    -------
    dict
        ``{"verified": n, "repaired": m}``.

    Raises
    ------
    VerificationError
        If objects still differ after ``retries`` repair rounds; the message lists them.
    """
    pending = find_mismatches(destination, expected)
    repaired: set[str] = set()
    for attempt in range(1, retries + 1):
        if not pending:
            break
        for name, problem in pending.items():
            on_event("object_mismatch", {"object": name, "problem": problem, "attempt": attempt})
        time.sleep(retry_delay_s * (2 ** (attempt - 1)))
        for name in pending:
            try:
                copy_object(source, destination, name, expected=expected[name], verify=_skip_verify)
                repaired.add(name)
            except (OSError, VerificationError) as error:
                on_event("object_copy_failed", {"object": name, "error": _error_text(error), "attempt": attempt})
        pending = find_mismatches(destination, expected, names=list(pending))
    if pending:
        listed = "; ".join(f"{name}: {problem}" for name, problem in pending.items())
        raise VerificationError(
            f"{len(pending)} of {len(expected)} objects in {destination.url} still differ from {source.url} after {retries} repair rounds: "
            f"{listed}; check the source objects, then rerun the fetch phase with force"
        )
    return {"verified": len(expected), "repaired": len(repaired - set(pending))}


def list_input(source: Store, run_date: str) -> dict[str, tuple[int, str]]:
    """List the client's input as :meth:`Store.list_versions` does; a failure names the store and what to check.

    Raises
    ------
    DeliveryError
        ``input_unreadable`` when the listing fails: s3fs raises PermissionError for a wrong key,
        OSError with only the HTTP reason for an expired token, and botocore's
        EndpointConnectionError (not an OSError) for a closed port.
    """
    try:
        return source.list_versions()
    except Exception as error:  # noqa: BLE001 - every listing failure gets the store and what to check
        raise DeliveryError("input_unreadable", source.url, run_date, detail=f"{type(error).__name__}: {error}") from error


def fetch_day(
    source: Store,
    destination: Store,
    *,
    run_date: str,
    mode: str,
    retries: int,
    run_transfer: Callable[[], dict[str, Any]] | None = None,
    retry_delay_s: float = 0.5,
    on_event: EventSink = _ignore,
) -> Manifest:
    """Copy the day from ``source`` to ``destination`` with ``mode``, verify it and return the manifest.

    Parameters
    ----------
    mode
        ``"sts"`` calls ``run_transfer`` (Storage Transfer Service) and then reads both sides to
        verify; ``"fsspec"`` copies object by object, taking the expected checksums from the bytes
        streamed out of the source.
    run_transfer
        Runs the transfer job and returns its summary (required for ``"sts"``).

    Raises
    ------
    StorageError
        If the source has no objects.
    VerificationError
        If objects still differ after the repair rounds.
    """
    versions = list_input(source, run_date)
    if not versions:
        raise DeliveryError("delivery_missing", source.url, run_date)
    listing = {name: size for name, (size, _) in versions.items()}
    names = list(listing)
    destination.makedirs()
    transfer_summary: dict[str, Any] = {"mode": mode}

    if mode == "sts":
        if run_transfer is None:
            raise ValueError("transfer mode 'sts' needs run_transfer; set transfer.project_id and transfer.job_name in the profile")
        transfer_summary.update(run_transfer())
        expected = expected_from_source(source, names)
    elif mode == "fsspec":
        expected = copy_objects(source, destination, names, on_event=on_event)
        for name in names:
            if name not in expected:  # the copy failed: take the checksum from the source instead
                try:
                    expected[name] = source.record(name)
                except OSError as error:
                    raise VerificationError(
                        f"source object {source.child_url(name)} could not be read after its copy failed ({_error_text(error)}); "
                        "it may have been removed or replaced during the transfer: ask the sender whether the day is complete, "
                        "then rerun with force"
                    ) from error
    else:
        raise NotImplementedError(f"transfer.mode {mode!r} is not supported; use 'sts' or 'fsspec'")

    for name, size in listing.items():
        if expected[name].size != size:
            raise VerificationError(
                f"source object {source.child_url(name)} changed during the transfer: listed {size} bytes, read {expected[name].size}; "
                "ask the sender whether the day is complete, then rerun with force"
            )
    outcome = verify_and_repair(source, destination, expected, retries=retries, retry_delay_s=retry_delay_s, on_event=on_event)
    # raw/ mirrors the listing: validate reads every object below it, so an object the client
    # no longer delivers, or one left by an interrupted copy, must not stay there.
    extra = sorted(set(destination.list()) - set(names))
    for name in extra:
        destination.remove(name)
    if extra:
        on_event("raw_extra_removed", {"count": len(extra), "objects": ", ".join(extra[:5]) + (" …" if len(extra) > 5 else "")})
    outcome["removed"] = len(extra)
    manifest = Manifest(
        phase="fetch", run_date=run_date, root=destination.url, objects=[expected[n] for n in names],
        sources={name: token for name, (_, token) in versions.items() if token},
    )
    manifest.counts = {"objects": len(names), "bytes": manifest.total_bytes, **outcome, "transfer": transfer_summary}
    return manifest


# -- processed to output ------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """Proof that one object reached the output: our checksums and what the store returned."""

    path: str
    size: int
    sha256: str
    md5: str
    etag: str
    checksum_sha256: str
    version_id: str
    delivered_at: str
    content_key: str = ""

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Delivery:
        """Read a delivery marker written by :meth:`to_json`.

        Raises
        ------
        ValueError
            If ``text`` is not a JSON object with the fields of a delivery, each of its type.
        """
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"a delivery marker is a JSON object, got {type(data).__name__}")
        for item in fields(cls):
            if item.name not in data and item.default is MISSING:
                raise ValueError(f"field {item.name!r} is missing")
            value = data.get(item.name, item.default)
            kind = int if item.name == "size" else str
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"field {item.name!r} must be {'an integer' if kind is int else 'text'}, got {value!r:.40}")
        return cls(**data)

    def record(self) -> ObjectRecord:
        return ObjectRecord(path=self.path, size=self.size, sha256=self.sha256, md5=self.md5)


class Uploader(Protocol):
    """Writes one object to the output and returns the store's response headers.

    ``can_delete`` is True when the output allows deleting. The client's write-only bucket does not.
    """

    url: str
    can_delete: bool

    def put(self, relative: str, body: Any, record: ObjectRecord) -> dict[str, Any]: ...

    def delete(self, relative: str) -> None: ...

    def remove_leftover_parts(self) -> list[str]: ...


class S3PutObjectUploader:
    """Upload objects to S3 with ``put_object``, which needs ``s3:PutObject`` and nothing else.

    Parameters
    ----------
    url
        ``s3://bucket/prefix/`` of the day's output folder.
    options
        The s3fs-style storage options of the output root: ``endpoint_url``, ``key``, ``secret``,
        ``token``, ``client_kwargs.region_name``, ``config_kwargs``. Missing keys fall back to the
        standard boto3 credential chain (role, environment).
    """

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        if not url.startswith("s3://"):
            raise ValueError(f"output URL {url!r} is not an s3:// URL; S3PutObjectUploader writes to S3 only")
        self.url = url if url.endswith("/") else url + "/"
        self.bucket, _, self.prefix = self.url[len("s3://"):].partition("/")
        self._client = _boto3_client(dict(options or {}))

    #: The client's output grants ``s3:PutObject`` only.
    can_delete = False

    def delete(self, relative: str) -> None:
        raise StorageError(f"cannot delete {self.url}{relative}: the output allows PutObject only")

    def remove_leftover_parts(self) -> list[str]:
        """Return no paths: a PutObject either stores the whole object or none of it."""
        return []

    def put(self, relative: str, body: Any, record: ObjectRecord) -> dict[str, Any]:
        response = self._client.put_object(
            Bucket=self.bucket,
            Key=self.prefix + relative,
            Body=body,
            ContentLength=record.size,
            ContentMD5=record.md5,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=_b64_from_hex(record.sha256),
        )
        return dict(response)


class FsspecUploader:
    """Write objects through fsspec and prove each by reading it back (readable stores only)."""

    def __init__(self, store: Store) -> None:
        if store.write_only:
            raise NotImplementedError(
                f"output {store.url} is write-only and not on S3; only S3 write-only delivery is supported (PutObject with checksums)"
            )
        self.store = store
        self.url = store.url

    can_delete = True

    def delete(self, relative: str) -> None:
        self.store.remove(relative)

    def remove_leftover_parts(self) -> list[str]:
        """Remove the part files that killed runs left in a local output; return their paths.

        A run killed while writing ``trips.parquet`` leaves ``trips.parquet.partial-*`` beside it.
        Writing that file again removes it, but a rerun that finds the file delivered skips it.
        """
        if self.store.protocol not in ("file", "local"):
            return []
        root = self.store.fs._strip_protocol(self.store.url).rstrip("/")
        return sorted(remove_stale_parts(glob.escape(root) + "/**/*.partial-*"))

    def put(self, relative: str, body: Any, record: ObjectRecord) -> dict[str, Any]:
        path = self.store.path(relative)
        local = self.store.protocol in ("file", "local")
        # On a local disk the file is written beside its place and renamed, so a run stopped
        # mid-write leaves the old file or none, never a part (as storage._replace_local_file), and
        # the next delivery removes the part file a killed run left.
        target = partial_path(path) if local else path
        if local:
            self.store.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.store.fs.open(target, "wb") as handle:
            for chunk in iter(lambda: body.read(8 * 1024 * 1024), b""):
                handle.write(chunk)
        if local:
            os.replace(self.store.fs._strip_protocol(target), self.store.fs._strip_protocol(path))
            remove_stale_partials(self.store.fs._strip_protocol(path))
        size, sha, md5 = self.store.checksums(relative)
        return {"ETag": "", "ChecksumSHA256": _b64_from_hex(sha), "ContentLength": size, "ReadBackMD5": md5}


def make_uploader(store: Store) -> Uploader:
    """Choose the uploader for an output store: PutObject with checksums on S3, fsspec elsewhere."""
    if store.protocol in ("s3", "s3a"):
        return S3PutObjectUploader(store.url, store.options)
    return FsspecUploader(store)


def check_put_response(record: ObjectRecord, response: Mapping[str, Any], *, url: str) -> tuple[str, str]:
    """Check the store's response to an upload against our checksums; return ``(etag, checksum_sha256)``.

    S3 has already compared the body with ``ContentMD5`` and ``ChecksumSHA256`` and would have
    rejected a mismatch (``BadDigest``). This check proves the request carried them: the returned
    ``ChecksumSHA256`` must equal ours, and a plain ETag (single PUT without SSE-KMS) must equal
    the hex MD5.

    Raises
    ------
    VerificationError
        If the response has no SHA-256 checksum or either value differs.
    """
    checksum = str(response.get("ChecksumSHA256") or "")
    expected_checksum = _b64_from_hex(record.sha256)
    if not checksum:
        raise VerificationError(
            f"upload of {url} returned no ChecksumSHA256, so it cannot be proven; "
            "check that the store supports additional checksums (S3 does since 2022)"
        )
    if checksum != expected_checksum:
        raise localized_error(VerificationError, "transfer.upload_checksum", url=url, found=checksum, expected=expected_checksum)
    etag = str(response.get("ETag") or "").strip('"')
    md5_hex = base64.b64decode(record.md5).hex()
    if _is_plain_md5(etag) and etag != md5_hex:
        raise localized_error(VerificationError, "transfer.upload_etag", url=url, found=etag, expected=md5_hex)
    return etag, checksum


def delivery_marker_path(relative: str) -> str:
    return f"{DELIVERY_DIR}/{relative}.json"


def read_delivery(state: Store, relative: str) -> Delivery | None:
    """Return the delivery marker of ``relative``, or ``None`` if it was not delivered."""
    path = delivery_marker_path(relative)
    if not state.exists(path):
        return None
    body = b""
    try:
        body = state.read_bytes(path)
        return Delivery.from_json(body.decode("utf-8"))
    except IsADirectoryError:
        error_text = "a folder, not a file"
    except (ValueError, TypeError) as error:  # UnicodeDecodeError is a ValueError
        error_text = marker_reason(error)
    # Cut short by a killed run, or edited by hand: the object is delivered again.
    _log.warning(message("transfer.delivery_marker_invalid", current_language(), path=state.path(path), relative=relative, error=error_text,
                         size=len(body)))
    return None


def deliver_object(
    source: Store,
    uploader: Uploader,
    state: Store,
    relative: str,
    *,
    body: bytes | None = None,
    content_key: str = "",
    force: bool = False,
    before_upload: Callable[[], None] = lambda: None,
    on_event: EventSink = _ignore,
) -> Delivery:
    """Upload one object unless its marker shows the same content was delivered; return the proof.

    ``body`` uploads bytes built in memory (``manifest.json``, ``_SUCCESS``) instead of reading
    ``relative`` from ``source``. ``content_key`` identifies such generated content across runs
    whose bytes differ only by a timestamp. ``force`` uploads even when the marker matches.
    ``before_upload`` runs just before the object is uploaded, and not when it is skipped.

    NOTE: a process killed between the PUT and the marker write uploads the object again on the
    next run (a second S3 version with the same bytes). Objects are sent in one PUT, so each must
    stay below the 5 GiB single-PUT limit of S3; there is no multipart path yet.
    """
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
        record = _spool(source, relative, body, spool)
        previous = None if force else read_delivery(state, relative)
        if previous is not None and (previous.sha256 == record.sha256 or (content_key and previous.content_key == content_key)):
            on_event("object_already_delivered", {"object": relative, "sha256": previous.sha256})
            return previous
        before_upload()
        spool.seek(0)
        url = uploader.url + relative
        response = uploader.put(relative, spool, record)
    etag, checksum = check_put_response(record, response, url=url)
    delivery = Delivery(
        path=relative, size=record.size, sha256=record.sha256, md5=record.md5, etag=etag, checksum_sha256=checksum,
        version_id=str(response.get("VersionId") or ""), delivered_at=_now(), content_key=content_key,
    )
    state.write_text(delivery_marker_path(relative), delivery.to_json())
    on_event("object_delivered", {"object": relative, "bytes": record.size, "sha256": record.sha256})
    return delivery


def deliver(
    processed: Store,
    uploader: Uploader,
    state: Store,
    *,
    run_date: str,
    versions: Mapping[str, str],
    retries: int,
    retry_delay_s: float = 0.5,
    force: bool = False,
    on_event: EventSink = _ignore,
) -> tuple[Manifest, Delivery]:
    """Deliver every object of ``processed`` and then ``manifest.json`` and ``_SUCCESS``.

    Each object is retried alone up to ``retries`` times. ``manifest.json`` lists every delivered
    object with size, SHA-256 and MD5; ``_SUCCESS`` names the manifest's SHA-256. Neither is
    written unless every object before it was delivered and proven. ``force`` uploads every
    object again.

    A day delivered before is delivered again in three steps, so the client never reads a
    ``_SUCCESS`` over a mix of old and new files:

    1. Before the first object that changes, ``_SUCCESS`` is withdrawn: deleted where the output
       allows it, and otherwise replaced by one with ``"status": "redelivering"`` and no
       manifest checksum (:func:`withdraw_success`).
    2. Objects of the earlier delivery that this one does not have (after a change of output
       format, say) are deleted where the output allows it. Otherwise the new manifest lists them
       under ``withdrawn``, and the event ``objects_withdrawn`` names them.
    3. The new ``manifest.json`` and ``_SUCCESS`` go last, as on a first delivery.

    Returns
    -------
    tuple
        The delivered manifest and the proof of ``manifest.json``.

    Raises
    ------
    StorageError
        If an object still fails after its retries; objects delivered so far keep their markers.
    """
    leftovers = uploader.remove_leftover_parts()
    if leftovers:
        on_event("leftover_parts_removed", {"count": len(leftovers), "objects": ", ".join(p.rsplit("/", 1)[-1] for p in leftovers[:5])})
    names = [n for n in processed.list() if n not in (MANIFEST_NAME, SUCCESS_NAME)]
    newly_withdrawn = sorted(set(delivered_objects(state)) - set(names))
    tally = {"object_delivered": 0, "object_already_delivered": 0}
    forward = on_event

    def count_and_forward(event: str, fields: dict[str, Any]) -> None:
        if event in tally:
            tally[event] += 1
        forward(event, fields)

    on_event = count_and_forward

    withdraw = functools.partial(withdraw_success, processed, uploader, state, run_date=run_date, on_event=on_event)
    if newly_withdrawn:
        withdraw()
        _withdraw_objects(uploader, state, newly_withdrawn, on_event=on_event)

    deliveries: list[Delivery] = []
    failures: dict[str, Exception] = {}
    for name in names:
        delivery = _with_retries(
            functools.partial(deliver_object, processed, uploader, state, name, force=force, before_upload=withdraw, on_event=on_event),
            name=name, retries=retries, retry_delay_s=retry_delay_s, on_event=on_event, failures=failures,
        )
        if delivery is not None:
            deliveries.append(delivery)
    if failures:
        listed = "; ".join(f"{name}: {_error_text(error)}" for name, error in sorted(failures.items()))
        raise localized_error(StorageError, "storage.deliver_failed", failed=len(failures), total=len(names), url=uploader.url, errors=listed)

    withdrawn = _still_withdrawn(state, names)
    manifest = Manifest(
        phase="publish", run_date=run_date, root=uploader.url, objects=[d.record() for d in deliveries], versions=dict(versions),
        withdrawn=withdrawn,
    )
    deleted = len(newly_withdrawn) if uploader.can_delete else 0
    manifest.counts = {"objects": len(deliveries), "bytes": manifest.total_bytes, "withdrawn": len(withdrawn), "deleted": deleted}
    content_key = hashlib.sha256(json.dumps([[d.sha256 for d in sorted(deliveries, key=lambda d: d.path)], withdrawn]).encode()).hexdigest()
    proof = _deliver_generated(processed, uploader, state, MANIFEST_NAME, manifest.to_json().encode("utf-8"), content_key,
                               force=force, before_upload=withdraw, retries=retries, retry_delay_s=retry_delay_s, on_event=on_event)
    success = json.dumps({"run_date": run_date, "status": "complete", "manifest_sha256": proof.sha256}, sort_keys=True).encode("utf-8")
    _deliver_generated(processed, uploader, state, SUCCESS_NAME, success, proof.sha256,
                       force=force, retries=retries, retry_delay_s=retry_delay_s, on_event=on_event)
    manifest.counts.update({"uploaded": tally["object_delivered"], "already_delivered": tally["object_already_delivered"],
                            "manifest_sha256": proof.sha256})
    return manifest, proof


#: ``content_key`` of the ``_SUCCESS`` that marks a delivery in progress.
REDELIVERING = "redelivering"


def delivered_objects(state: Store) -> list[str]:
    """Return the objects our delivery markers record in the output, without ``manifest.json`` and ``_SUCCESS``."""
    prefix, suffix = DELIVERY_DIR + "/", ".json"
    names = (n.removeprefix(prefix).removesuffix(suffix) for n in state.list(DELIVERY_DIR) if n.endswith(suffix))
    return sorted(n for n in names if n not in (MANIFEST_NAME, SUCCESS_NAME))


def completed_delivery(state: Store) -> Delivery | None:
    """Return the proof of the ``_SUCCESS`` of a complete delivery in the output, or ``None``.

    ``None`` when the day was never delivered, or when a delivery was started again and has not
    finished: its ``_SUCCESS`` was withdrawn.
    """
    success = read_delivery(state, SUCCESS_NAME)
    return success if success is not None and success.content_key != REDELIVERING else None


def withdraw_success(
    processed: Store, uploader: Uploader, state: Store, *, run_date: str, on_event: EventSink = _ignore
) -> None:
    """Withdraw the ``_SUCCESS`` of an earlier complete delivery before the output changes.

    Where the output allows deleting, ``_SUCCESS`` is deleted. The client's bucket allows
    PutObject only, so there it is replaced by a ``_SUCCESS`` whose ``status`` is
    ``redelivering`` and whose ``manifest_sha256`` is null. A day whose delivery started and did
    not complete, or was withdrawn already, is left as it is, so calling this once per changed
    object costs one marker read.

    Without any delivery marker, the day may never have been delivered, or ``temp/`` (where
    the markers live, kept 7 days) expired since a delivery the write-only output does not
    let us see. So ``_SUCCESS`` is withdrawn all the same, because a delivery that fails part
    way would otherwise leave an earlier ``_SUCCESS`` and ``manifest.json`` over a mix of files.
    """
    earlier = completed_delivery(state)
    if earlier is None and state.list(DELIVERY_DIR):
        return
    replaces = earlier.content_key if earlier is not None else None
    if uploader.can_delete:
        uploader.delete(SUCCESS_NAME)
        state.remove(delivery_marker_path(SUCCESS_NAME))
    else:
        body = json.dumps({"run_date": run_date, "status": REDELIVERING, "manifest_sha256": None,
                           "replaces_manifest_sha256": replaces}, sort_keys=True).encode("utf-8")
        deliver_object(processed, uploader, state, SUCCESS_NAME, body=body, content_key=REDELIVERING, force=True)
    on_event("success_withdrawn", {"object": SUCCESS_NAME, "deleted": uploader.can_delete, "replaces_manifest_sha256": replaces})


def _withdraw_objects(uploader: Uploader, state: Store, names: list[str], *, on_event: EventSink) -> None:
    """Take the objects of an earlier delivery that this one does not have out of the delivery.

    Where the output allows deleting, each object and its marker are deleted. On the write-only
    output the object stays, and its marker moves to ``_withdrawn/``: every later manifest of the
    day lists it under ``withdrawn`` until a delivery has it again.
    """
    for name in names:
        marker = delivery_marker_path(name)
        if uploader.can_delete:
            uploader.delete(name)
        else:
            state.write_bytes(f"{WITHDRAWN_DIR}/{name}.json", state.read_bytes(marker), md5=False)
        state.remove(marker)
    on_event("objects_withdrawn", {"count": len(names), "objects": ", ".join(names[:5]), "deleted": uploader.can_delete})


def _still_withdrawn(state: Store, names: list[str]) -> list[str]:
    """Return the withdrawn objects that remain in the write-only output; forget those delivered again."""
    prefix, suffix = WITHDRAWN_DIR + "/", ".json"
    remaining = []
    for marker in state.list(WITHDRAWN_DIR):
        name = marker.removeprefix(prefix).removesuffix(suffix)
        if name in names:
            state.remove(marker)
        else:
            remaining.append(name)
    return sorted(remaining)


def _deliver_generated(
    processed: Store, uploader: Uploader, state: Store, name: str, body: bytes, content_key: str,
    *, force: bool, retries: int, retry_delay_s: float, on_event: EventSink, before_upload: Callable[[], None] = lambda: None,
) -> Delivery:
    failures: dict[str, Exception] = {}
    delivery = _with_retries(
        lambda: deliver_object(processed, uploader, state, name, body=body, content_key=content_key, force=force,
                               before_upload=before_upload, on_event=on_event),
        name=name, retries=retries, retry_delay_s=retry_delay_s, on_event=on_event, failures=failures,
    )
    if delivery is None:
        raise localized_error(StorageError, "transfer.delivery_failed", name=name, url=uploader.url, error=_error_text(failures[name]))
    return delivery


def _with_retries(
    action: Callable[[], Delivery], *, name: str, retries: int, retry_delay_s: float, on_event: EventSink, failures: dict[str, Exception]
) -> Delivery | None:
    for attempt in range(retries + 1):
        try:
            delivery = action()
            failures.pop(name, None)
            return delivery
        except _retryable_errors() as error:
            failures[name] = error
            on_event("object_retry", {"phase": "publish", "object": name, "attempt": attempt + 1, "error": _error_text(error)})
            if attempt < retries:
                time.sleep(retry_delay_s * (2**attempt))
    return None


# -- completion notice --------------------------------------------------------------------------


def send_webhook(url: SecretStr, payload: Mapping[str, Any], *, timeout_s: float = 10.0) -> int:
    """POST ``payload`` as JSON to the webhook and return the HTTP status.

    The URL is a secret (it usually embeds a token): it appears in no message, and errors name
    only the status or the error class.

    Raises
    ------
    NoticeError
        If the request fails or the status is not 2xx.
    """
    data = json.dumps(dict(payload), ensure_ascii=False, sort_keys=True).encode("utf-8")
    request = urllib.request.Request(url.get_secret_value(), data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status = int(response.status)
    except urllib.error.HTTPError as error:
        raise localized_error(NoticeError, "transfer.webhook_http", status=error.code) from None
    except (urllib.error.URLError, OSError) as error:
        raise localized_error(NoticeError, "transfer.webhook_failed", error=type(error).__name__) from None
    if not 200 <= status < 300:
        raise localized_error(NoticeError, "transfer.webhook_http", status=status)
    return status


# -- helpers ------------------------------------------------------------------------------------


def _skip_verify(destination: Store, record: ObjectRecord) -> None:
    """Verification happens later, for every object at once, in :func:`verify_and_repair`."""
    return


def _spool(source: Store, relative: str, body: bytes | None, spool: Any) -> ObjectRecord:
    sha = hashlib.sha256()
    md5 = hashlib.md5()
    size = 0
    chunks: Iterable[bytes] = [body] if body is not None else _read_chunks(source, relative)
    for chunk in chunks:
        sha.update(chunk)
        md5.update(chunk)
        size += len(chunk)
        spool.write(chunk)
    return ObjectRecord(path=relative, size=size, sha256=sha.hexdigest(), md5=base64.b64encode(md5.digest()).decode("ascii"))


def _read_chunks(source: Store, relative: str) -> Iterable[bytes]:
    with source.open(relative) as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            yield chunk


def _boto3_client(options: dict[str, Any]) -> Any:
    import boto3
    from botocore.config import Config

    client_kwargs = dict(options.get("client_kwargs") or {})
    config_kwargs = dict(options.get("config_kwargs") or {})
    session = boto3.session.Session(
        aws_access_key_id=options.get("key"),
        aws_secret_access_key=options.get("secret"),
        aws_session_token=options.get("token"),
        region_name=client_kwargs.pop("region_name", None),
    )
    return session.client("s3", endpoint_url=options.get("endpoint_url") or client_kwargs.pop("endpoint_url", None),
                          config=Config(**config_kwargs), **client_kwargs)


def _retryable_errors() -> tuple[type[Exception], ...]:
    errors: tuple[type[Exception], ...] = (OSError, VerificationError)
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # boto3 is only needed for S3 outputs
        return errors
    return (*errors, BotoCoreError, ClientError)


def _b64_from_hex(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def _is_plain_md5(etag: str) -> bool:
    return len(etag) == 32 and all(ch in "0123456789abcdef" for ch in etag.lower())


def _error_text(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 500 else text[:497] + "…"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
