"""Structured logs: one JSON object per line on stderr.

The agent runs unattended inside a node netns; its logs are read by the lab,
by tests and by log shippers, so each line is a self-contained JSON object
(`ts`, `level`, `msg`, plus the event's fields) rather than free text.
Module-level functions keep call sites short (`log.info("lease acquired",
subnet=...)`) and let backends log without being handed a logger.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any, TextIO

_lock = threading.Lock()
_stream: TextIO | None = None
_context: dict[str, Any] = {}


def configure(stream: TextIO | None = None, **context: Any) -> None:
    """Send lines to `stream` (default stderr) and add `context` (e.g. node=) to every line."""
    global _stream
    with _lock:
        _stream = stream
        _context.clear()
        _context.update(context)


def _default(obj: Any) -> str:
    return str(obj)  # ipaddress objects, paths, exceptions


def format_line(level: str, msg: str, fields: dict[str, Any], now: float | None = None) -> str:
    """The JSON line for one event (pure; the timestamp is UTC with milliseconds)."""
    now = time.time() if now is None else now
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    body = {"ts": ts, "level": level, "msg": msg, **_context, **fields}
    return json.dumps(body, default=_default, sort_keys=False)


def emit(level: str, msg: str, **fields: Any) -> None:
    line = format_line(level, msg, fields)
    with _lock:
        stream = _stream or sys.stderr
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must never take the agent down


def debug(msg: str, **fields: Any) -> None:
    emit("debug", msg, **fields)


def info(msg: str, **fields: Any) -> None:
    emit("info", msg, **fields)


def warning(msg: str, **fields: Any) -> None:
    emit("warning", msg, **fields)


def error(msg: str, **fields: Any) -> None:
    emit("error", msg, **fields)


class _Bridge(logging.Handler):
    """stdlib `logging` records (modules that log that way, e.g. the CNI socket server) as JSON lines."""

    def emit(self, record: logging.LogRecord) -> None:  # noqa: D401 - logging's API
        fields: dict[str, Any] = {"logger": record.name}
        if record.exc_info:
            fields["exception"] = logging.Formatter().formatException(record.exc_info)
        try:
            msg = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            msg = str(record.msg)
        emit(record.levelname.lower(), msg, **fields)


def bridge_stdlib(level: int = logging.INFO) -> None:
    """Route the `tulle` stdlib logger hierarchy into these JSON lines (idempotent)."""
    root = logging.getLogger("tulle")
    if not any(isinstance(h, _Bridge) for h in root.handlers):
        root.addHandler(_Bridge())
    root.setLevel(level)


def unbridge_stdlib() -> None:
    """Undo bridge_stdlib (tests)."""
    root = logging.getLogger("tulle")
    for h in [h for h in root.handlers if isinstance(h, _Bridge)]:
        root.removeHandler(h)
    root.setLevel(logging.NOTSET)
