"""The server's log: one line per event, naming the session or request it belongs to.

Each line carries the time (UTC), level, logger and an id: the SMTP session's
(`s-…`, bound for the life of a connection, so every line about one message can
be found) or the portal request's (`r-…`). `[logging] format` picks text for a
terminal or journald, or JSON for a log collector. A traceback is folded into the
same line, so a line-based shipper never splits one event in two.

Two kinds of noise never reach the log: pgpy's own warnings (its "TODO: not yet
implemented" notices and deprecations concern pgpy's code, and nothing an admin
can act on), and tracebacks for clients that hang up during or after the TLS
handshake (one INFO line says so; see `TlsDropFilter`).

Code never logs a secret on purpose; `RedactSecrets` is the second line of
defence for what libraries log (SMTP AUTH exchanges, URLs with credentials).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import re
import secrets
import ssl
import sys
import warnings
from collections.abc import Iterator
from typing import IO, Literal

LogFormat = Literal["text", "json"]

_PATTERNS = [
    # "AUTH PLAIN <base64>" / "AUTH LOGIN <base64>" as SMTP libraries log them
    (re.compile(r"(AUTH\s+[A-Z0-9-]+)\s+\S+", re.IGNORECASE), r"\1 [redacted]"),
    # key=value and key: value for anything that looks like a credential
    (
        re.compile(
            r"((?:password|passwd|secret|token|api[_-]?key)[\"']?\s*[=:]\s*[\"']?)[^\s\"',;&]+",
            re.IGNORECASE,
        ),
        r"\1[redacted]",
    ),
    # scheme://user:password@host
    (re.compile(r"(\w+://[^/\s:@]+:)[^@\s/]+@"), r"\1[redacted]@"),
]

# The session or request the running code works for ("-" outside any).
_event_id: contextvars.ContextVar[str] = contextvars.ContextVar("sealgate_event_id", default="-")


def new_id(prefix: str) -> str:
    """A short random id (`s-3f9c0a1b`): enough to tell apart the events of one day."""
    return f"{prefix}-{secrets.token_hex(4)}"


def bind_id(value: str) -> contextvars.Token[str]:
    """Name the session or request for every log line from this context (and its tasks
    and `asyncio.to_thread` calls, which copy the context)."""
    return _event_id.set(value)


@contextlib.contextmanager
def event_id(value: str) -> Iterator[str]:
    token = _event_id.set(value)
    try:
        yield value
    finally:
        _event_id.reset(token)


def current_id() -> str:
    return _event_id.get()


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


# What a client hanging up mid-handshake or mid-session raises inside asyncio's
# transports; nothing on the server is wrong, so no traceback.
_TLS_DROPS = (ssl.SSLError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


class TlsDropFilter(logging.Filter):
    """Turn asyncio's "SSL handshake failed" / "Fatal error on SSL transport" reports,
    with their tracebacks, into one INFO line naming the peer and the reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name != "asyncio" or not isinstance(exc, _TLS_DROPS):
            return True
        message = record.getMessage()
        peer = re.search(r"peername=\(?'?([0-9a-fA-F.:]+)'?,? ?(\d+)?", message)
        where = f" from {peer.group(1)}" if peer else ""
        stage = "during the TLS handshake" if "handshake" in message.lower() else "mid-session"
        reason = getattr(exc, "reason", None) or type(exc).__name__
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg, record.args = f"client{where} dropped the connection {stage} ({reason})", None
        record.exc_info = record.exc_text = None
        record.name = "sealgate.tls"
        return True


# Control characters a client sent (a NUL in an SMTP command) would reach a terminal or
# a log shipper as they are: each is written as \xNN instead.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _one_line(text: str) -> str:
    text = text.replace("\r", "").replace("\n", " | ")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class _Base(logging.Formatter):
    def stamp(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"

    def parts(self, record: logging.LogRecord) -> tuple[str, str | None]:
        message = record.getMessage()
        error = None
        if record.exc_info:
            error = self.formatException(record.exc_info)
        elif record.exc_text:
            error = record.exc_text
        if record.stack_info:
            error = (error + "\n" if error else "") + self.formatStack(record.stack_info)
        return message, error


class TextFormatter(_Base):
    """`2026-12-02T19:21:44.123Z INFO sealgate.serve [s-3f9c0a1b] message | traceback`"""

    def format(self, record: logging.LogRecord) -> str:
        message, error = self.parts(record)
        ident = getattr(record, "event_id", "-")
        line = f"{self.stamp(record)} {record.levelname} {record.name} [{ident}] {message}"
        if error:
            line += " | " + error
        return _one_line(line)


class JsonFormatter(_Base):
    """One JSON object per line: ts, level, logger, id, msg, and error when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        message, error = self.parts(record)
        event = {
            "ts": self.stamp(record),
            "level": record.levelname,
            "logger": record.name,
            "id": getattr(record, "event_id", "-"),
            "msg": message,
        }
        if error:
            event["error"] = error
        return json.dumps(event, ensure_ascii=False)


class _AddEventId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "event_id"):
            record.event_id = _event_id.get()
        return True


def silence_pgpy_warnings() -> None:
    """pgpy's warnings (its own module, or attributed by `stacklevel` to our one
    wrapper of it) never reach the log or standard error."""
    warnings.filterwarnings("ignore", module=r"pgpy(\.|$)")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"keystore\.pgp$")


def make_handler(fmt: LogFormat = "text", stream: IO[str] | None = None) -> logging.Handler:
    """The server's handler: formatted lines in `fmt`, TLS drops folded, secrets redacted."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    # Order matters: the TLS filter rewrites the record before it is redacted and tagged.
    handler.addFilter(TlsDropFilter())
    handler.addFilter(RedactSecrets())
    handler.addFilter(_AddEventId())
    return handler


def configure(
    level: int = logging.INFO, fmt: LogFormat = "text", stream: IO[str] | None = None
) -> logging.Handler:
    """Send every log record (and every warning) through one handler in `fmt`."""
    handler = make_handler(fmt, stream)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiosmtpd logs every command line (addresses included) at INFO: keep it for --debug.
    quiet = logging.INFO if level <= logging.DEBUG else logging.WARNING
    logging.getLogger("mail.log").setLevel(quiet)
    # Alembic announces each of its plugins at INFO whenever it reads the migrations.
    logging.getLogger("alembic").setLevel(quiet)
    # Warnings become log lines like any other (not bare text on stderr)...
    logging.captureWarnings(True)
    # ...except pgpy's.
    silence_pgpy_warnings()
    return handler
