"""gateway.mail.header_line_ends: one reading of the top-level header section for every reader."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import Message

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway import rawheaders
from gateway.mail import header_line_ends
from gateway.pipeline.context import ClientInfo, Sender, Submission
from gateway.pipeline.errors import RejectMessage
from gateway.pipeline.header_sender import check_header_sender
from gateway.timeutil import utcnow

# What gateway.transport.sevenbit searched for before it used `header_section_end`.
_EMPTY_LINE = re.compile(rb"(?:\A|(?<=\n))\r?\n")
_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def python_names(raw: bytes, policy: email.policy.Policy) -> list[str]:
    message: Message = email.message_from_bytes(raw, policy=policy)
    return [name.lower() for name in message]


def our_names(raw: bytes) -> list[str]:
    return [field.name.lower() for field in rawheaders.headers(raw)]


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        (
            b"X-Note: x\rFrom: ceo@bank.example\r\nFrom: a@example.test\r\n\r\nb\rc\n",
            b"X-Note: x From: ceo@bank.example\r\nFrom: a@example.test\r\n\r\nb\rc\n",
        ),
        (
            b"X-Note: x\nFrom: ceo@bank.example\r\n\nbody\n",
            b"X-Note: x\r\nFrom: ceo@bank.example\r\n\r\nbody\n",
        ),
        (b"From: a\n\nbody\n", b"From: a\r\n\r\nbody\n"),
        (b"X: a\r\r\nY: b\r\n\r\n", b"X: a \r\nY: b\r\n\r\n"),
        (b"\rFrom: ceo@bank.example\r\n\r\n", b"From: ceo@bank.example\r\n\r\n"),
        (b"  x\r\nFrom: ceo@bank.example\r\n\r\n", b"x\r\nFrom: ceo@bank.example\r\n\r\n"),
        (b"X: no empty line\rY: z", b"X: no empty line Y: z"),
    ],
    ids=["bare-cr", "bare-lf", "lf-only", "cr-before-crlf", "cr-first", "wsp-first", "no-body"],
)
def test_normalize(raw: bytes, normalized: bytes) -> None:
    assert header_line_ends.normalize(raw) == normalized
    assert header_line_ends.normalize(normalized) == normalized


def test_a_plain_message_is_returned_as_it_is() -> None:
    raw = b"From: a@example.test\r\nSubject: s\r\n\r\nbody\rwith\nodd\r\nline ends\n"
    assert header_line_ends.normalize(raw) is raw
    assert header_line_ends.normalize(b"") == b""
    assert header_line_ends.normalize(b"\r\nX: body") == b"\r\nX: body"


@given(st.binary(max_size=80).map(lambda b: b.replace(b"x", b"\n").replace(b"y", b"\r")))
@example(b"a\n\n\r\n")
@example(b"a\n\r\n\n")
def test_the_section_ends_where_the_relay_ended_it(raw: bytes) -> None:
    """sevenbit used this regular expression; the search without it finds the same end."""
    empty = _EMPTY_LINE.search(raw)
    assert header_line_ends.header_section_end(raw) == (
        empty.start() if empty is not None else len(raw)
    )


# -- generative: odd header sections ------------------------------------------------

_NAMES = st.sampled_from(
    [b"From", b"Sender", b"To", b"Subject", b"X-Note", b"Received", b"Content-Type"]
)
_ODD = st.sampled_from([b"\r", b"\n", b"\r\r\n", b"\x00", b"\xc3\xa9", b"\xff", b" ", b"\t"])
# No colon and no "From ": a line that starts with ":" or "From " is one that Python's
# parser reads past (an empty field name; a misplaced mbox line) and rawheaders ends the
# header section at; that is not about line ends (see the last test below).
_TEXT = st.binary(max_size=12).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b":", b"").replace(b"From ", b"")
)


@st.composite
def odd_pieces(draw: st.DrawFn) -> bytes:
    """Text with odd bytes (bare CR or LF, NUL, 8-bit, white space) anywhere."""
    return b"".join(draw(st.lists(st.one_of(_TEXT, _ODD, _NAMES.map(lambda n: n + b":")))))


@st.composite
def header_sections(draw: st.DrawFn) -> bytes:
    """Fields (some folded) with odd bytes anywhere, including before the first, then the
    empty line and a body (or none)."""
    lines = [draw(odd_pieces())]
    for _ in range(draw(st.integers(1, 6))):
        line = draw(_NAMES) + b":" + draw(odd_pieces())
        for _ in range(draw(st.integers(0, 2))):
            line += b"\r\n" + draw(st.sampled_from([b" ", b"\t"])) + draw(odd_pieces())
        lines.append(line)
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    body = draw(st.sampled_from([b"", eol + b"body\r\nFrom: not a field\r\n"]))
    return b"\r\n".join(lines) + eol + body


@given(header_sections())
@example(b"X-Note: x\rFrom: ceo@bank.example\r\nFrom: a@example.test\r\n\r\n")
@example(b"\rFrom: ceo@bank.example\r\nFrom: a@example.test\r\n\r\n")
@example(b" x\r\nFrom: ceo@bank.example\r\n\r\n")
@example(b"X: a\r\n\r\rFrom: ceo@bank.example\r\n\r\n")
@example(b"X: a\n\rFrom: ceo@bank.example\r\n\r\n")
def test_after_intake_every_reader_sees_the_same_fields(raw: bytes) -> None:
    out = header_line_ends.normalize(raw)
    end = header_line_ends.header_section_end(out)
    assert not _BARE.search(out[:end]), out
    assert header_line_ends.normalize(out) == out
    ours = our_names(out)
    assert ours == python_names(out, email.policy.compat32)
    assert ours == python_names(out, email.policy.SMTP)
    # And so after a field is prepended, as Received and add-missing-headers do.
    traced = b"Received: by gw\r\n" + out
    assert our_names(traced) == ["received", *ours]
    assert our_names(traced) == python_names(traced, email.policy.compat32)


@pytest.mark.parametrize("line", [b":x", b"From x"], ids=["empty-name", "mbox-from"])
def test_a_from_past_a_line_python_skips_must_still_be_owned(line: bytes) -> None:
    """Two shapes where the parsers still disagree, not about line ends: Python reads on
    past a line with an empty field name or an mbox `From ` line, rawheaders ends the
    header there. What matters is that a From the recipient's program may show past it
    is checked all the same (check-header-sender reads up to the empty line)."""
    raw = (
        b"From: alice@example.test\r\nX: a\r\n"
        + line
        + b"\r\nFrom: ceo@bank.example\r\n\r\nbody\r\n"
    )
    out = header_line_ends.normalize(raw)
    submission = Submission(
        sender=Sender(account_id=1, address="alice@example.test"),
        envelope_from="alice@example.test",
        recipients=["bob@example.test"],
        raw=out,
        client=ClientInfo(helo="t", ip="127.0.0.1", protocol="ESMTPSA"),
        received_at=utcnow(),
    )
    with pytest.raises(RejectMessage) as refused:
        check_header_sender(submission, ["alice@example.test"])
    assert refused.value.status.startswith("553 5.7.1"), refused.value.status
