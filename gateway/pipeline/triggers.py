"""Step `decide-encryption`: did the sender ask for encryption, and strip the control headers.

Any one trigger is enough: the `X-Sealgate-Encrypt: yes` header (the webmail's
lock), the subject tag (removed from the subject), the account's "always
encrypt" setting, or an admin rule for a recipient's domain. Every
`X-Sealgate-*` header is removed here, before anything is stored or sent; the
secure-page password header is taken into the context and never kept.

Every field that can carry a trigger counts, so a message asked to be encrypted is
never sent in clear because its fields were read otherwise than the sender meant:
any `X-Sealgate-Encrypt: yes` among several, and a message is refused (554) when it
has two Subject fields, two different passwords, or a Subject or control field after
a line that is not a header field (a field some programs take as header and the
pipeline's split would take as body).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from email.header import Header

from gateway import rawheaders
from gateway.addresses import domain_of
from gateway.pipeline.context import Submission
from gateway.pipeline.errors import RejectMessage
from gateway.smtp_codes import FIELD_PAST_HEADER_END, PASSWORDS_DIFFER, SUBJECT_REPEATED

CONTROL_PREFIX = "x-sealgate-"
ENCRYPT_HEADER = "X-Sealgate-Encrypt"
PASSWORD_HEADER = "X-Sealgate-Password"  # noqa: S105  (a header name)
_YES = {"yes", "true", "1", "on"}
# A Subject or control field as a lenient reader finds it: blanks allowed around the
# name, any case.
_TRIGGER_FIELD = re.compile(rb"[ \t]*(subject|x-sealgate-[^\s:]*)[ \t]*:", re.IGNORECASE)


def decide_encryption(
    submission: Submission,
    *,
    subject_tag: str,
    always_encrypt: bool,
    rule_domains: Collection[str],
) -> None:
    reasons: list[str] = []
    raw = submission.raw
    _refuse_fields_past_header_end(raw)
    fields = rawheaders.headers(raw)

    control = [f for f in fields if is_control_header(f.name)]
    if any(
        f.name.lower() == ENCRYPT_HEADER.lower() and f.value.strip().lower() in _YES
        for f in control
    ):
        reasons.append("header")
    passwords = {
        f.value.strip()
        for f in control
        if f.name.lower() == PASSWORD_HEADER.lower() and f.value.strip()
    }
    if passwords and submission.password is not None:
        # The webmail's own password field: a field in the message does not overrule it.
        passwords.add(submission.password)
    if len(passwords) > 1:
        raise RejectMessage(PASSWORDS_DIFFER.format(count=len(passwords)))
    if passwords:
        submission.password = passwords.pop()

    replace: dict[str, bytes] = {}
    subjects = [f for f in fields if f.name.lower() == "subject"]
    if len(subjects) > 1:
        raise RejectMessage(SUBJECT_REPEATED.format(count=len(subjects)))
    subject = subjects[0] if subjects else None
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


def _refuse_fields_past_header_end(raw: bytes) -> None:
    for number, line in rawheaders.lines_past_header_end(raw):
        found = _TRIGGER_FIELD.match(line)
        if found:
            # Only printable ASCII goes back in the SMTP reply.
            name = re.sub(rb"[^\x21-\x7e]", b"?", found.group(1)[:60]).decode("ascii")
            raise RejectMessage(FIELD_PAST_HEADER_END.format(line=number, field=name))


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
