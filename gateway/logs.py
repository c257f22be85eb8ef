"""Logging for the long-running server, with a filter that keeps secrets out of the log.

Code never logs a secret on purpose; this filter is the second line of defence for
what libraries log (SMTP AUTH exchanges, URLs with credentials, form dumps).
"""

from __future__ import annotations

import logging
import re
import sys

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


def configure(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiosmtpd logs every command line (addresses included) at INFO: keep it for --debug.
    logging.getLogger("mail.log").setLevel(
        logging.INFO if level <= logging.DEBUG else logging.WARNING
    )
