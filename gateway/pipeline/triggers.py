"""Step `decide-encryption`: did the sender ask for encryption, and strip the control headers.

Any one trigger is enough: the `X-Sealgate-Encrypt: yes` header (the webmail's
lock), the subject tag (removed from the subject), the account's "always
encrypt" setting, or an admin rule for a recipient's domain. Every
`X-Sealgate-*` header is removed here, before anything is stored or sent; the
secure-page password header is taken into the context and never kept.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from email.header import Header

from gateway import rawheaders
from gateway.addresses import domain_of
from gateway.pipeline.context import Submission

CONTROL_PREFIX = "x-sealgate-"
ENCRYPT_HEADER = "X-Sealgate-Encrypt"
PASSWORD_HEADER = "X-Sealgate-Password"  # noqa: S105  (a header name)
_YES = {"yes", "true", "1", "on"}


def decide_encryption(
    submission: Submission,
    *,
    subject_tag: str,
    always_encrypt: bool,
    rule_domains: Collection[str],
) -> None:
    reasons: list[str] = []
    raw = submission.raw
    fields = rawheaders.headers(raw)

    control = {f.name.lower(): f.value for f in fields if f.name.lower().startswith(CONTROL_PREFIX)}
    if control.get(ENCRYPT_HEADER.lower(), "").strip().lower() in _YES:
        reasons.append("header")
    password = control.get(PASSWORD_HEADER.lower())
    if password:
        submission.password = password.strip()

    replace: dict[str, bytes] = {}
    subject = next((f for f in fields if f.name.lower() == "subject"), None)
    if subject_tag and subject is not None:
        cleaned = _remove_tag(subject.value, subject_tag)
        if cleaned is not None:
            reasons.append("subject tag")
            replace["subject"] = _subject_field(cleaned)

    if always_encrypt:
        reasons.append("account setting")
    rules = {d.lower() for d in rule_domains}
    if rules and any(domain_of(r) in rules for r in submission.recipients):
        reasons.append("domain rule")

    submission.raw = rawheaders.edit(raw, drop=is_control_header, replace=replace)
    submission.encrypt = bool(reasons)
    submission.encrypt_reasons = tuple(reasons)


def is_control_header(name: str) -> bool:
    return name.lower().startswith(CONTROL_PREFIX)


def strip_control_headers(raw: bytes) -> bytes:
    """Mail from outside may carry X-Sealgate-* headers too: they never get stored."""
    return rawheaders.edit(raw, drop=is_control_header)


def _remove_tag(subject: str, tag: str) -> str | None:
    """The subject without the tag (case-insensitive), or None when the tag is absent."""
    pattern = re.compile(r"\s*" + re.escape(tag) + r"\s*", re.IGNORECASE)
    if not pattern.search(subject):
        return None
    return pattern.sub(" ", subject).strip()


def _subject_field(text: str) -> bytes:
    """A new Subject field on one logical line: a decoded line break or control character
    in the old subject must not become a raw one (a header of its own) in the new."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    try:
        text.encode("ascii")
        value = text
    except UnicodeEncodeError:
        value = Header(text, "utf-8").encode(linesep="\r\n")
    return f"Subject: {value}\r\n".encode()
