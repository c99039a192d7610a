"""Structured JSON logging: one JSON object per line, in the shape Cloud Logging reads.

Cloud Logging parses a JSON line written to stdout by a GKE container into a structured entry: it
takes ``severity`` as the entry's severity and ``message`` as its summary, and keeps every other key
under ``jsonPayload``. Each record carries the run context (``run_date``, ``flow_run_id``,
``phase``) from :func:`log_context`, plus the ``event`` name and any ``extra`` fields of the call.

Secrets registered with :func:`register_secret` are replaced by ``***`` in every formatted record,
as a second line of defence behind the rule that no code logs a credential.

Nothing here imports Prefect: the flow sets the context, and this module only formats records.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any

#: Record attributes of :class:`logging.LogRecord` itself; everything else came from ``extra``.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"}
)

#: Python level name to Cloud Logging severity.
SEVERITIES = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "CRITICAL"}

CONTEXT_FIELDS: tuple[str, ...] = ("run_date", "flow_run_id", "phase")
_context: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("lmco2_log_context", default=None)

#: Fallback context for records emitted on threads that did not inherit the contextvars
#: (Dask's forwarded worker logs arrive on the client's event-loop thread).
_process_context: dict[str, str] = {}
_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_REDACTED = "***"


def register_secret(value: str | None) -> None:
    """Redact ``value`` from every record formatted by :class:`JsonFormatter` and :class:`RedactingFilter`.

    Values shorter than 6 characters are ignored, so that a short test string cannot blank out
    ordinary words.
    """
    if value and len(value) >= 6:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***``."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add ``fields`` (run_date, flow_run_id, phase) to every record emitted inside the block."""
    current = dict(_context.get() or {})
    current.update({k: str(v) for k, v in fields.items() if v is not None})
    token = _context.set(current)
    previous = dict(_process_context)
    _process_context.update(current)
    try:
        yield
    finally:
        _context.reset(token)
        _process_context.clear()
        _process_context.update(previous)


def current_context() -> dict[str, str]:
    """Return the run context of this thread, falling back to the process-wide context."""
    return {**_process_context, **(_context.get() or {})}


class ContextFilter(logging.Filter):
    """Copy the run context onto each record, without overwriting fields the caller set."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current_context().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class RedactingFilter(logging.Filter):
    """Replace registered secrets in a record's message and arguments before any handler receives it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            record.msg = redact(record.getMessage())
            record.args = None
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line with ``severity``, ``message``, ``event`` and the run context.

    ``extra`` fields are copied as they are; a ``lmco2_`` prefix (used to keep Prefect's own record
    attributes apart) is dropped. Values that JSON cannot encode are written as strings.
    """

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "severity": SEVERITIES.get(record.levelname, "DEFAULT"),
            "message": record.getMessage(),
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "logger": record.name,
            "event": getattr(record, "event", None),
        }
        for key in CONTEXT_FIELDS:
            payload[key] = getattr(record, key, None) or current_context().get(key)
        for key, value in vars(record).items():
            if key in _STANDARD_ATTRIBUTES or key in payload or key.startswith("_"):
                continue
            name = key.removeprefix("lmco2_")
            payload.setdefault(name, value)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, ensure_ascii=False, default=str))


def install_json_console(logger_names: tuple[str, ...] = ("",), *, stream: Any = None) -> logging.Handler:
    """Write records of ``logger_names`` to ``stream`` (stdout) as JSON lines and return the handler.

    Existing stream handlers on those loggers are left in place; call this once per process. The
    handler carries the context and redaction filters, so records need no special call site.
    """
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    handler.set_name("lmco2-json")
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(h.get_name() == "lmco2-json" for h in logger.handlers):
            logger.addHandler(handler)
    return handler


def attach_filters(logger: logging.Logger) -> None:
    """Add the context and redaction filters to ``logger`` itself (idempotent)."""
    kinds = {type(f) for f in logger.filters}
    if ContextFilter not in kinds:
        logger.addFilter(ContextFilter())
    if RedactingFilter not in kinds:
        logger.addFilter(RedactingFilter())
