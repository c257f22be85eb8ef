"""The encryption triggers: whatever shape the header has, a trigger the sender wrote is
never read past.

Invariant: when a Subject with the tag or an `X-Sealgate-Encrypt: yes` field stands
anywhere before the first blank line (where mail programs and IMAP servers look for
header fields), the message is encrypted or refused, never passed in clear; no
`X-Sealgate-*` field and no secure-page password is left in what goes on. The
shapes that once broke it: a line that is not a field (`X-Obs : 1`, a name with a
space, 8-bit bytes or a NUL, no colon at all) before the trigger, and a second
Subject or control field.
"""

from __future__ import annotations

import re
import smtplib
import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import rawheaders
from gateway.pipeline import ClientInfo, RejectMessage, Sender, Submission
from gateway.pipeline.triggers import decide_encryption
from gateway.smtp_server import SubmissionServer
from gateway.timeutil import utcnow
from tests.gateway.test_smtp_submission import mailbox_rows, starttls_client

ALICE, BOB = "alice@example.test", "bob@example.test"
TAG = "[encrypt]"
PASSWORD = b"pw-Zq8u2kqZ1xT"

NORMAL = [b"From: Alice <alice@example.test>", b"To: bob@example.test", b"X-Mailer: odd 1.0"]
# Lines that end the strict header section (and for Python's parser start the body).
NOT_FIELDS = [
    b"X-Obs : 1",
    b"X-Tab\t: 1",
    b"no colon at all",
    "X-ü: 1".encode(),
    b"X Bad: y",
    b": value",
    b"X-N\x00ul: 1",
    b"Received : from somewhere",
    f" Subject: {TAG} x".encode(),  # a continuation of the field before, if there is one
]
TRIGGERS = {
    "subject": [
        f"Subject: {TAG} figures".encode(),
        f"subject:{TAG}".encode(),
        f"Subject : {TAG} x".encode(),
    ],
    "header": [
        b"X-Sealgate-Encrypt: yes",
        b"x-sealgate-encrypt:YES",
        b"X-Sealgate-Encrypt : yes",
    ],
}


def submission(raw: bytes) -> Submission:
    return Submission(
        sender=Sender(account_id=1, address=ALICE),
        envelope_from=ALICE,
        recipients=[BOB],
        raw=raw,
        client=ClientInfo(helo="test", ip="127.0.0.1", protocol="ESMTPSA"),
        received_at=utcnow(),
    )


def decide(raw: bytes) -> Submission:
    sub = submission(raw)
    decide_encryption(sub, subject_tag=TAG, always_encrypt=False, rule_domains=())
    return sub


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    """A message whose header region holds normal fields, maybe lines that are no field,
    maybe a trigger and a password field, in any order."""
    lines = draw(st.lists(st.sampled_from(NORMAL), max_size=3))
    lines += draw(st.lists(st.sampled_from(NOT_FIELDS), max_size=2))
    kind = draw(st.sampled_from(["none", "subject", "header"]))
    if kind != "none":
        lines.append(draw(st.sampled_from(TRIGGERS[kind])))
    else:
        lines.append(b"Subject: figures")
    if draw(st.booleans()):
        lines.append(b"X-Sealgate-Password: " + PASSWORD)
    lines = draw(st.permutations(lines))
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    return eol.join(lines) + eol + eol + b"the figures are Zq1b2c3d" + eol


def region(raw: bytes) -> list[bytes]:
    """The fields as a lenient reader takes them: every line before the first blank
    line, a line that starts with a blank joined to the one before."""
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    fields: list[bytes] = []
    for line in head.split(b"\n"):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def named(field: bytes, name: bytes) -> bool:
    return re.match(rb"[ \t]*" + name + rb"[ \t]*:", field, re.IGNORECASE) is not None


def asks_to_encrypt(raw: bytes) -> bool:
    """Whether a lenient reader finds a trigger in the message's header region."""
    return any(
        (named(f, b"subject") and TAG.encode() in f)
        or (named(f, b"x-sealgate-encrypt") and f.split(b":", 1)[1].strip().lower() == b"yes")
        for f in region(raw)
    )


@given(headers())
def test_a_written_trigger_encrypts_or_refuses_and_no_control_field_goes_on(raw: bytes) -> None:
    try:
        sub = decide(raw)
    except RejectMessage as refused:
        assert refused.status.startswith("554 5.6.0 "), refused.status
        refused.status.encode("ascii")  # it goes back in an SMTP reply
        return
    if asks_to_encrypt(raw):
        assert sub.encrypt, raw
    assert PASSWORD not in sub.raw
    assert not any(named(f, rb"x-sealgate-[^\s:]*") for f in region(sub.raw))
    assert not any(named(f, b"subject") and TAG.encode() in f for f in region(sub.raw))


@given(headers())
def test_a_well_formed_header_is_never_refused(raw: bytes) -> None:
    if not all(rawheaders.is_field_start(f) for f in region(raw)):
        return  # only the headers every reader splits alike
    assert decide(raw).encrypt == asks_to_encrypt(raw)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"Subject: one\r\nSubject: [encrypt] two\r\n\r\nx\r\n", "554 5.6.0 The message has 2"),
        (
            b"Subject: a\r\nX-Sealgate-Password: first-one-123\r\n"
            b"X-Sealgate-Password: other-one-456\r\n\r\nx\r\n",
            "554 5.6.0 The message names 2 different",
        ),
        (b"X-Obs : 1\r\nSubject: [encrypt] x\r\n\r\nx\r\n", "554 5.6.0 Line 2 (Subject)"),
    ],
)
def test_ambiguous_headers_are_refused_with_the_reason(raw: bytes, status: str) -> None:
    with pytest.raises(RejectMessage) as refused:
        decide(raw)
    assert refused.value.status.startswith(status), refused.value.status


def test_a_password_field_never_overrules_the_webmails_password() -> None:
    raw = b"Subject: a\r\nX-Sealgate-Password: someone-elses-pw\r\n\r\nx\r\n"
    sub = submission(raw)
    sub.password = "the-users-own-pw"
    with pytest.raises(RejectMessage) as refused:
        decide_encryption(sub, subject_tag=TAG, always_encrypt=False, rule_domains=())
    assert refused.value.status.startswith("554 5.6.0 The message names 2 different")
    same = submission(raw.replace(b"someone-elses-pw", b"the-users-own-pw"))
    same.password = "the-users-own-pw"
    decide_encryption(same, subject_tag=TAG, always_encrypt=False, rule_domains=())
    assert same.password == "the-users-own-pw"


def test_any_encrypt_field_saying_yes_wins() -> None:
    raw = b"Subject: a\r\nX-Sealgate-Encrypt: yes\r\nX-Sealgate-Encrypt: no\r\n\r\nx\r\n"
    assert decide(raw).encrypt


def test_a_field_past_a_broken_line_is_refused_over_smtp_and_nothing_is_kept(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    raw = (
        b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: obs test\r\n"
        b"X-Obs : 1\r\nX-Sealgate-Password: hunter22-xxxx\r\nX-Sealgate-Encrypt: yes\r\n"
        b"\r\nSECRET text\r\n"
    )
    with starttls_client(submission_server, client_ssl_context) as client:
        client.login(ALICE, mail_users[ALICE])
        with pytest.raises(smtplib.SMTPDataError) as err:
            client.sendmail(ALICE, [BOB], raw)
        assert err.value.smtp_code == 554
        assert err.value.smtp_error.startswith(b"5.6.0 Line 5 (X-Sealgate-Password)")
    assert mailbox_rows(submission_server.runtime, BOB) == []
