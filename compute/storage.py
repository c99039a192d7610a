"""The only module that talks to fsspec and object stores.

``file://`` paths (or plain paths), ``memory://``, ``gs://`` and ``s3://`` go through one code path.
Every copy is verified object by object (size and SHA-256 read back from the destination, or the
store's own checksum header where the destination is write-only), and every phase writes a small
JSON manifest of what it wrote.

Invariants
----------
* A manifest lists exactly the objects of one phase of one run date, with size and checksums.
* A phase marker is written last, after its outputs are complete and verified, so a marker that
  exists means the phase is done.
* Nothing here logs or stores credentials: storage options never enter a manifest.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import glob
import hashlib
import json
import logging
import os
import posixpath
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from compute.i18n import LocalizedText, current_language, localized_error, message, register

_log = logging.getLogger(__name__)

CHUNK_BYTES = 8 * 1024 * 1024
MANIFEST_NAME = "manifest.json"
SUCCESS_NAME = "_SUCCESS"
PHASES_DIR = "_phases"


class StorageError(LocalizedText, RuntimeError):
    """A storage operation failed after its retries; the message names the object and the fix."""


class DeliveryError(StorageError):
    """The client's day is missing, or it changed after we fetched it; retrying does not help.

    ``code`` names the message ``storage.<code>`` (``delivery_missing``); a subclass with its own
    messages, such as ``compute.phases.InputChangedError``, overrides :meth:`message`. :meth:`message`
    gives the text in Japanese or English, and ``str()`` the English one.
    """

    def __init__(self, code: str, url: str, run_date: str, detail: str = "") -> None:
        self.code, self.url, self.run_date, self.detail = code, url, run_date, detail
        super().__init__(self.message("en"))

    def message(self, lang: str = "ja") -> str:
        return message(f"storage.{self.code}", lang, url=self.url, run_date=self.run_date, detail=self.detail)

    def __reduce__(self) -> tuple[type[DeliveryError], tuple[str, str, str, str]]:
        return (type(self), (self.code, self.url, self.run_date, self.detail))


register(
    {
        "storage.delivery_missing": {
            "ja": "{run_date} の納品が見つかりません。{url} にオブジェクトがありません。クライアントがその日を納品したか、プロファイルの input ルートが正しいかを確認してください。",
            "en": "No delivery found for {run_date}: there are no objects in {url}. Check that the client delivered the day and that the input root of the profile is right.",
        },
        "storage.input_unreadable": {
            "ja": "{run_date} の入力 {url} を一覧できません（{detail}）。プロファイルの input ルート（バケット名）、エンドポイント、"
                  "認証情報（credentials.aws_block、AWS_* の環境変数）がそのバケットを読めるかを確認してから再実行してください。",
            "en": "Cannot list the input {url} for {run_date} ({detail}). Check the input root of the profile (bucket name), the "
                  "endpoint, and that the credentials (credentials.aws_block, AWS_* variables) can read that bucket, then run again.",
        },
        "storage.deliver_failed": {
            "ja": "{total} 個中 {failed} 個のオブジェクトを {url} に納品できませんでした（{errors}）。出力先の認証情報と接続を確かめてから、"
                  "publish を再実行してください。納品済みのオブジェクトは送り直しません。",
            "en": "{failed} of {total} objects could not be delivered to {url}: {errors}. Check the output's credentials and "
                  "connection, then rerun publish: delivered objects are skipped.",
        },
        "storage.copy_failed": {
            "ja": "{total} 個中 {failed} 個のオブジェクトを {source} から {destination} へコピーできませんでした（{errors}）。"
                  "両方に接続できること、認証情報で読み書きできることを確かめてから、{phase} フェーズを再実行してください。",
            "en": "{failed} of {total} objects failed to copy from {source} to {destination}: {errors}. Check that both are reachable "
                  "and that the credentials can read and write them, then rerun the {phase} phase.",
        },
        "storage.phase_marker_folder": {
            "ja": "フェーズ {phase} の完了マーカー {path} がファイルではなくフォルダです。マーカーがないものとして {phase} を"
                  "もう一度実行し、完了したらフォルダをマーカーのファイルに置き換えます。",
            "en": "The completion marker {path} of phase {phase} is a folder, not a file, so {phase} runs again as if it "
                  "had no marker, and its completion replaces the folder with the marker file.",
        },
        "storage.phase_marker_other_date": {
            "ja": "フェーズ {phase} の完了マーカー {path} は {marker_date} の実行のもので、{run_date} のものではありません"
                  "（手でコピーされたと見なします）。{phase} をもう一度実行します。",
            "en": "The completion marker {path} of phase {phase} was written by the run of {marker_date}, not {run_date} "
                  "(taken as copied by hand), so {phase} runs again.",
        },
        "storage.phase_marker_invalid": {
            "ja": "フェーズ {phase} の完了マーカー {path} が正しいマニフェストではありません（{error}、{size} バイト）。"
                  "途中で止められた実行か手で編集されたものと見なし、{phase} をもう一度実行します。対応は不要です。",
            "en": "The completion marker {path} of phase {phase} is not a valid manifest ({error}, {size} bytes). It is taken "
                  "as cut short by a stopped run or edited by hand, so {phase} runs again. No action is needed.",
        },
    }
)


class MarkerError(LocalizedText, ValueError):
    """A phase marker that is not a manifest of this phase; the message names the wrong field."""


register(
    {
        "storage.marker.not_object": {"ja": "JSON のオブジェクトではなく {kind} です", "en": "a manifest is a JSON object, got {kind}"},
        "storage.marker.not_text": {"ja": "項目 {field!r} が文字列ではありません（{value}）", "en": "field {field!r} must be text, got {value}"},
        "storage.marker.wrong_kind": {"ja": "項目 {field!r} が JSON の {expected} ではなく {kind} です",
                                      "en": "field {field!r} must be a JSON {expected}, got {kind}"},
        "storage.marker.unknown_fields": {"ja": "知らない項目があります: {fields}", "en": "unknown fields: {fields}"},
        "storage.marker.bad_entry": {"ja": "objects の要素が不正です（{error}）", "en": "an entry of 'objects' is invalid ({error})"},
        "storage.marker.other_phase": {"ja": "フェーズ {phase!r} のマーカーです", "en": "it is the marker of phase {phase!r}"},
        "storage.marker.not_utf8": {"ja": "UTF-8 のテキストではありません（{position} バイト目）", "en": "not UTF-8 text (byte {position})"},
        "storage.marker.not_json": {"ja": "JSON として読めません（{line} 行 {column} 文字目）", "en": "not JSON (line {line}, column {column})"},
    }
)


class VerificationError(StorageError):
    """An object at the destination differs from its source."""


@dataclass(frozen=True)
class ObjectRecord:
    """One object of a manifest: path relative to the manifest's root, size and checksums."""

    path: str
    size: int
    sha256: str
    md5: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObjectRecord:
        return cls(path=str(data["path"]), size=int(data["size"]), sha256=str(data["sha256"]), md5=str(data["md5"]))


@dataclass
class Manifest:
    """Record of the objects one phase wrote for one run date, with counts and versions."""

    phase: str
    run_date: str
    root: str
    objects: list[ObjectRecord] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    #: Fetch only: the version token of each source object as listed before the copy
    #: (:func:`version_token`), so a later run can tell a rewritten input of the same size.
    sources: dict[str, str] = field(default_factory=dict)
    #: Publish only: objects of an earlier delivery of the day that this one does not have, which
    #: stay in the write-only output (``compute.transfer.deliver``).
    withdrawn: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        data = asdict(self)
        data["objects"] = [asdict(o) for o in sorted(self.objects, key=lambda o: o.path)]
        # Written only when set, so a manifest without them reads as before.
        for optional in ("sources", "withdrawn"):
            if not data[optional]:
                del data[optional]
        return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Read a manifest written by :meth:`to_json`.

        Raises
        ------
        ValueError
            If ``text`` is not JSON, or a field is missing or of the wrong type; the message names the field.
        """
        data = json.loads(text)
        if not isinstance(data, dict):
            raise localized_error(MarkerError, "storage.marker.not_object", kind=type(data).__name__)
        for name in ("phase", "run_date", "root"):
            if not isinstance(data.get(name), str):
                raise localized_error(MarkerError, "storage.marker.not_text", field=name, value=f"{data.get(name)!r:.40}")
        for name, kind in (("objects", list), ("counts", dict), ("versions", dict), ("sources", dict), ("withdrawn", list)):
            if not isinstance(data.get(name, kind()), kind):
                raise localized_error(MarkerError, "storage.marker.wrong_kind", field=name, expected="array" if kind is list else "object",
                                      kind=type(data[name]).__name__)
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise localized_error(MarkerError, "storage.marker.unknown_fields", fields=", ".join(unknown))
        try:
            objects = [ObjectRecord.from_dict(o) for o in data.pop("objects", [])]
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise localized_error(MarkerError, "storage.marker.bad_entry", error=f"{type(error).__name__}: {error}") from None
        return cls(objects=objects, **data)

    @property
    def total_bytes(self) -> int:
        return sum(o.size for o in self.objects)


class Store:
    """One storage root (a URL prefix) with its fsspec filesystem.

    Parameters
    ----------
    url
        Root URL, e.g. ``gs://bucket/raw/20261201/`` or ``/data/lake/raw/20261201/``.
    options
        fsspec storage options (endpoint_url, credentials from the environment, ...).
    write_only
        The store allows writes only: no listing, no reads, no bucket creation.
    """

    def __init__(self, url: str, options: dict[str, Any] | None = None, *, write_only: bool = False) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.options = dict(options or {})
        self.write_only = write_only
        self.fs, root = url_to_fs(self.url, **self.options)
        self.root = root.rstrip("/")
        self.protocol = self.fs.protocol[0] if isinstance(self.fs.protocol, (tuple, list)) else self.fs.protocol

    def __repr__(self) -> str:
        return f"Store({self.url!r}, write_only={self.write_only})"

    # -- paths ---------------------------------------------------------------------------------
    def path(self, relative: str = "") -> str:
        """Return the filesystem path of ``relative`` below the root."""
        relative = relative.lstrip("/")
        return f"{self.root}/{relative}" if relative else self.root

    def child_url(self, relative: str) -> str:
        """Return the full URL of ``relative`` below the root (for dask/pyarrow readers)."""
        return self.url + relative.lstrip("/")

    # -- reading -------------------------------------------------------------------------------
    def exists(self, relative: str = "") -> bool:
        self._reject_if_write_only("exists")
        return bool(self.fs.exists(self.path(relative)))

    def list(self, relative: str = "") -> dict[str, int]:
        """List the objects below ``relative`` as ``{path relative to root: size}``, sorted."""
        return {key: int(info.get("size") or 0) for key, info in self._find(relative).items()}

    def list_versions(self, relative: str = "") -> dict[str, tuple[int, str]]:
        """List the objects below ``relative`` as ``{path: (size, version token)}``, sorted.

        The token comes from the same listing call, so it costs no read of the objects; see
        :func:`version_token`.
        """
        return {key: (int(info.get("size") or 0), version_token(info)) for key, info in self._find(relative).items()}

    def _find(self, relative: str) -> dict[str, dict[str, Any]]:
        self._reject_if_write_only("list")
        base = self.path(relative)
        self._forget_listings(base)
        if not self.fs.exists(base):
            return {}
        found = self.fs.find(base, detail=True)
        prefix = self.root + "/"
        out = {}
        for path, info in found.items():
            # A zero-byte key ending in "/" is an S3 folder marker (the console's "Create folder"),
            # not data; s3fs may list it as a file.
            if info.get("type") == "directory" or (path.endswith("/") and not info.get("size")):
                continue
            key = path[len(prefix):] if path.startswith(prefix) else posixpath.basename(path)
            out[key] = info
        return dict(sorted(out.items()))

    def _forget_listings(self, base: str) -> None:
        """Drop the cached listings of ``base`` and of every folder below it.

        fsspec keeps one filesystem per set of options, with its listings cached. A listing from
        an earlier run in this process would hide a rewritten object, whose read then fails on
        the old ETag. s3fs drops only the path and its parents, so the folders below are
        dropped here one by one.
        """
        self.fs.invalidate_cache(base)
        cached = getattr(self.fs, "dircache", None)
        if cached:
            prefix = self.fs._strip_protocol(base).rstrip("/") + "/"
            for folder in [key for key in list(cached) if key.startswith(prefix)]:
                cached.pop(folder, None)

    def read_bytes(self, relative: str) -> bytes:
        self._reject_if_write_only("read")
        return bytes(self.fs.cat_file(self.path(relative)))

    def read_text(self, relative: str) -> str:
        return self.read_bytes(relative).decode("utf-8")

    def open(self, relative: str, mode: str = "rb") -> Any:
        if "r" in mode:
            self._reject_if_write_only("read")
        return self.fs.open(self.path(relative), mode)

    def checksums(self, relative: str) -> tuple[int, str, str]:
        """Stream an object and return ``(size, sha256 hex, md5 base64)``."""
        self._reject_if_write_only("checksum")
        sha = hashlib.sha256()
        md5 = hashlib.md5()  # noqa: S324 - integrity check against Content-MD5, not security
        size = 0
        with self.fs.open(self.path(relative), "rb") as handle:
            for chunk in _chunks(handle):
                sha.update(chunk)
                md5.update(chunk)
                size += len(chunk)
        return size, sha.hexdigest(), base64.b64encode(md5.digest()).decode("ascii")

    def record(self, relative: str) -> ObjectRecord:
        size, sha, md5 = self.checksums(relative)
        return ObjectRecord(path=relative, size=size, sha256=sha, md5=md5)

    # -- writing -------------------------------------------------------------------------------
    def makedirs(self) -> None:
        """Create the root folder on stores that have folders (local disk); no-op elsewhere."""
        if self.protocol in ("file", "local"):
            self.fs.makedirs(self.root, exist_ok=True)

    def write_bytes(self, relative: str, data: bytes | memoryview, *, md5: bool = True) -> ObjectRecord:
        """Write ``data`` in one PUT and return its record (checksums computed locally).

        ``md5=False`` leaves the record's MD5 empty: only objects delivered to S3 need it (as
        Content-MD5), and it costs as much CPU as the SHA-256.
        """
        path = self.path(relative)
        if self.protocol in ("file", "local"):
            self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
            _replace_local_file(self.fs._strip_protocol(path), data)
        else:
            # An object store publishes a PUT whole: a reader sees the old object or the new one.
            with self.fs.open(path, "wb") as handle:
                handle.write(data)
        return ObjectRecord(
            path=relative,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            md5=base64.b64encode(hashlib.md5(data).digest()).decode("ascii") if md5 else "",  # noqa: S324
        )

    def write_text(self, relative: str, text: str) -> ObjectRecord:
        return self.write_bytes(relative, text.encode("utf-8"))

    def remove(self, relative: str = "") -> None:
        """Delete ``relative`` (recursively); a missing path is not an error."""
        self._reject_if_write_only("delete")
        path = self.path(relative)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def _reject_if_write_only(self, operation: str) -> None:
        if self.write_only:
            raise StorageError(
                f"cannot {operation} on write-only store {self.url}: it allows PutObject only; "
                "keep the state of deliveries on our side (temp/ markers) instead"
            )


def version_token(info: dict[str, Any]) -> str:
    """Return the version token of an object from a store's listing entry, as short text.

    S3 gives the ETag (the MD5 of the body for a single-part upload), GCS the MD5 or CRC32C of
    the body, and a local disk the modification and status change times. A token that differs
    means the object may have been rewritten, so the caller compares the SHA-256 before it
    reports a change: an S3 multipart ETag or a local copy with new times can differ for the
    same bytes. An empty token means the store gave none.

    The status change time (fsspec's ``created``, ``st_ctime``) is there because a writer can set
    the modification time back (``touch -r``, ``cp -p``, ``rsync -t``), and no file operation sets
    ``st_ctime`` back. It also moves on ``chmod`` or a rename, which then costs one SHA-256 comparison.
    """
    etag = info.get("ETag")
    if etag:
        return "etag:" + str(etag).strip('"')
    for name in ("md5Hash", "crc32c"):
        if info.get(name):
            return f"{name.lower()}:{info[name]}"
    mtime = info.get("mtime")
    if isinstance(mtime, (int, float)):
        token = f"mtime:{float(mtime):.6f}"
        ctime = info.get("created")
        if isinstance(ctime, (int, float)):
            token += f",ctime:{float(ctime):.6f}"
        return token
    return ""


def _replace_local_file(path: str, data: bytes | memoryview) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it to ``path``.

    A process killed while writing leaves the old file, or none, and never a partial one: a
    0-byte phase marker used to make every rerun fail on its JSON. The rename is atomic on one
    POSIX file system. A killed writer leaves its ``.partial-*`` file behind, which no reader
    of this package takes for data (they read ``.parquet`` and ``.json`` names), and the next
    write of the same path removes it (:func:`remove_stale_partials`).
    """
    temporary = partial_path(path)
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    remove_stale_partials(path)


def partial_path(path: str) -> str:
    """Return a name beside local ``path`` for writing it before the rename: ``PATH.partial-<pid>-<random>``."""
    return f"{path}.partial-{os.getpid()}-{secrets.token_hex(4)}"


def remove_stale_partials(path: str) -> list[str]:
    """Remove the ``.partial-*`` files that killed writers left beside local ``path``; return their names."""
    return remove_stale_parts(glob.escape(path) + ".partial-*")


def remove_stale_parts(pattern: str) -> list[str]:
    """Remove the local part files that match the glob ``pattern`` and that killed writers left; return their names.

    A file counts as left behind when the process of its PID no longer runs. A file of a running
    process, or one without a PID in its name, stays.
    """
    removed = []
    for leftover in glob.glob(pattern, recursive=True):
        pid = leftover.rsplit(".partial-", 1)[1].split("-", 1)[0]
        if not pid.isdigit() or _process_running(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.remove(leftover)
            removed.append(leftover)
    return removed


def _process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


# -- copies ------------------------------------------------------------------------------------


def copy_object(
    source: Store,
    destination: Store,
    relative: str,
    *,
    expected: ObjectRecord | None = None,
    verify: Callable[[Store, ObjectRecord], None] | None = None,
) -> ObjectRecord:
    """Copy one object by streaming it, then verify it at the destination.

    The source record is computed while streaming, so the source is read once. Verification reads
    the destination back (size and SHA-256) unless ``verify`` is given (write-only stores).

    Raises
    ------
    VerificationError
        If the source changed against ``expected`` or the destination differs from the source.
    """
    sha = hashlib.sha256()
    md5 = hashlib.md5()  # noqa: S324
    size = 0
    dst_path = destination.path(relative)
    if destination.protocol in ("file", "local"):
        destination.fs.makedirs(posixpath.dirname(dst_path), exist_ok=True)
    with source.fs.open(source.path(relative), "rb") as reader, destination.fs.open(dst_path, "wb") as writer:
        for chunk in _chunks(reader):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
            writer.write(chunk)
    record = ObjectRecord(path=relative, size=size, sha256=sha.hexdigest(), md5=base64.b64encode(md5.digest()).decode("ascii"))
    if expected is not None and (expected.size, expected.sha256) != (record.size, record.sha256):
        raise VerificationError(
            f"source object {source.child_url(relative)} changed while copying: the manifest has "
            f"{expected.size} bytes sha256={expected.sha256[:12]}…, read {record.size} bytes sha256={record.sha256[:12]}…; "
            "ask the sender whether the day is complete, then rerun with force"
        )
    (verify or verify_read_back)(destination, record)
    return record


def verify_read_back(destination: Store, record: ObjectRecord) -> None:
    """Read ``record.path`` back from ``destination`` and compare size and SHA-256."""
    size, sha, _ = destination.checksums(record.path)
    if (size, sha) != (record.size, record.sha256):
        raise VerificationError(
            f"object {destination.child_url(record.path)} differs from its source: expected {record.size} bytes "
            f"sha256={record.sha256[:12]}…, found {size} bytes sha256={sha[:12]}…; rerun the phase with force to copy it again"
        )


def copy_tree(
    source: Store,
    destination: Store,
    *,
    phase: str,
    run_date: str,
    relatives: Iterable[str] | None = None,
    retries: int = 3,
    retry_delay_s: float = 0.5,
    verify: Callable[[Store, ObjectRecord], None] | None = None,
    on_retry: Callable[[str, int, Exception], None] | None = None,
) -> Manifest:
    """Copy every object below ``source`` to ``destination``, verify each, and return a manifest.

    Objects that fail to copy or verify are retried, alone, up to ``retries`` more times.

    Raises
    ------
    StorageError
        If any object still fails after its retries; the message lists them.
    """
    names = sorted(relatives) if relatives is not None else list(source.list())
    manifest = Manifest(phase=phase, run_date=run_date, root=_public_url(destination.url))
    failures: dict[str, Exception] = {}
    for name in names:
        for attempt in range(retries + 1):
            try:
                manifest.objects.append(copy_object(source, destination, name, verify=verify))
                failures.pop(name, None)
                break
            except (OSError, VerificationError) as error:  # network errors surface as OSError subclasses
                failures[name] = error
                if on_retry is not None:
                    on_retry(name, attempt + 1, error)
                if attempt < retries:
                    time.sleep(retry_delay_s * (2**attempt))
    if failures:
        listed = "; ".join(f"{name}: {error}" for name, error in sorted(failures.items()))
        raise localized_error(StorageError, "storage.copy_failed", failed=len(failures), total=len(names), source=source.url,
                              destination=destination.url, errors=listed, phase=phase)
    manifest.counts = {"objects": len(manifest.objects), "bytes": manifest.total_bytes}
    return manifest


def manifest_of(store: Store, *, phase: str, run_date: str, exclude: Iterable[str] = ()) -> Manifest:
    """Build a manifest of every object below ``store`` (checksums read from the store)."""
    skip = set(exclude)
    records = [store.record(name) for name in store.list() if name not in skip and posixpath.basename(name) not in skip]
    return manifest_from_records(store, records, phase=phase, run_date=run_date)


def manifest_from_records(store: Store, records: Iterable[ObjectRecord], *, phase: str, run_date: str) -> Manifest:
    """Build a manifest from the records writers returned, without reading the objects again."""
    manifest = Manifest(phase=phase, run_date=run_date, root=_public_url(store.url), objects=sorted(records, key=lambda o: o.path))
    manifest.counts = {"objects": len(manifest.objects), "bytes": manifest.total_bytes}
    return manifest


def verify_manifest(store: Store, manifest: Manifest) -> list[str]:
    """Return the problems found when checking ``store`` against ``manifest`` (empty if none)."""
    problems = []
    present = store.list()
    for record in manifest.objects:
        if record.path not in present:
            problems.append(f"missing: {record.path}")
            continue
        size, sha, _ = store.checksums(record.path)
        if (size, sha) != (record.size, record.sha256):
            problems.append(f"differs: {record.path} (expected {record.size} bytes sha256={record.sha256[:12]}…, found {size} bytes sha256={sha[:12]}…)")
    return problems


# -- phase markers -----------------------------------------------------------------------------


def phase_marker_path(phase: str) -> str:
    return f"{PHASES_DIR}/{phase}.json"


def read_phase_marker(state: Store, phase: str, run_date: str | None = None) -> Manifest | None:
    """Return the manifest a completed ``phase`` left in ``state``, or ``None``.

    A marker that is not a valid manifest (cut short by a killed run, or edited by hand), or that
    another run date wrote (copied by hand), counts as no marker, so the phase runs again. A
    warning in the operator's language names its path, once per process and marker content.
    """
    path = phase_marker_path(phase)
    if not state.exists(path):
        return None
    body = b""
    try:
        body = state.read_bytes(path)
        manifest = Manifest.from_json(body.decode("utf-8"))
        if manifest.phase != phase:
            raise localized_error(MarkerError, "storage.marker.other_phase", phase=manifest.phase)
    except IsADirectoryError:
        _warn_once("storage.phase_marker_folder", state.path(path), body, phase=phase)
        return None
    except (ValueError, TypeError, KeyError, AttributeError) as error:  # UnicodeDecodeError is a ValueError
        _warn_once("storage.phase_marker_invalid", state.path(path), body, phase=phase, error=marker_reason(error), size=len(body))
        return None
    if run_date is not None and manifest.run_date != run_date:
        _warn_once("storage.phase_marker_other_date", state.path(path), body, phase=phase, marker_date=manifest.run_date, run_date=run_date)
        return None
    return manifest


#: Markers already warned about, by path and SHA-256 of their content: a run reads a marker more
#: than once, and the operator needs its warning once.
_WARNED: set[tuple[str, str]] = set()


def _warn_once(key: str, path: str, body: bytes, **values: object) -> None:
    seen = (path, hashlib.sha256(body).hexdigest())
    if seen in _WARNED:
        return
    _WARNED.add(seen)
    _log.warning(message(key, current_language(), path=path, **values))


def marker_reason(error: BaseException, limit: int = 200) -> str:
    """Return why a phase or delivery marker is invalid, in the operator's language or as the parser's own English text, shortened."""
    if isinstance(error, MarkerError):
        return error.message(current_language())
    if isinstance(error, UnicodeDecodeError):
        return message("storage.marker.not_utf8", current_language(), position=error.start + 1)
    if isinstance(error, json.JSONDecodeError):
        return message("storage.marker.not_json", current_language(), line=error.lineno, column=error.colno)
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_phase_marker(state: Store, manifest: Manifest) -> None:
    """Record that ``manifest.phase`` completed; call it last, after the phase verified its outputs."""
    state.write_text(phase_marker_path(manifest.phase), manifest.to_json())


def clear_phase_marker(state: Store, phase: str) -> None:
    state.remove(phase_marker_path(phase))


def open_url(url: str, mode: str = "rb", options: dict[str, Any] | None = None) -> Any:
    """Open one object by URL (used by readers outside a :class:`Store`)."""
    return fsspec.open(url, mode, **(options or {})).open()


def _chunks(handle: Any) -> Iterator[bytes]:
    while True:
        chunk = handle.read(CHUNK_BYTES)
        if not chunk:
            return
        yield chunk


def _public_url(url: str) -> str:
    """Strip any userinfo from ``url`` so no credential reaches a manifest."""
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return url
