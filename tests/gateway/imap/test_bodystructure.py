"""BODYSTRUCTURE gives each part's size and lines of its body, as BODY[n] serves it,
and BODY[n.MIME] and BODY[n] serve a multipart's parts where RFC 2046 puts them.

RFC 9051 §7.5.2 (RFC 3501 §7.4.2): body-fld-octets is "the size of the body in
octets", body-fld-lines "the size of the body in text lines"; the part's header is
not in them. Drawn messages with what trips a parser up (bare LF, header only, no
last line end, nested multiparts, message/rfc822 parts) are fetched over a real
connection, and every size in the BODYSTRUCTURE answer is the length of the
BODY[section] (BODY[TEXT] for the whole of a single-part message) it describes.

RFC 2046 §5.1.1: the line end before a boundary belongs to the boundary, not to the
part before it; RFC 3501 body-type-mpart: a multipart has at least one part, and one
without any (no boundary line, or no boundary) shows one empty text/plain part, as
Dovecot answers it.

RFC 3501 §6.4.5: inside a message/rfc822 part N, N.1 is the first part of the
attached message's multipart, or its body when it has none; N.HEADER and N.TEXT are
the attached message's. What the drawn messages expect was checked against Dovecot
2.3 (300 drawn messages, line ends made CRLF, as Dovecot stores them).

RFC 2046 §5.1.5: in a multipart/digest a part without a Content-Type is a
message/rfc822, as Dovecot 2.3 shows it (checked with its imap run preauth).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from typing import Any

import imapclient
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from imapclient.response_types import BodyData

from gateway.imap.mime import MAX_DEPTH
from gateway.imap.server import ImapServer
from gateway.runtime import Runtime
from tests.gateway.imap.conftest import ALICE, deliver

LEAF_TYPES = ["text/plain", "text/html", "application/octet-stream", "image/png", "", "none"]
_WORDS = st.text(alphabet="abcdefghij XYZ.,-", max_size=20)


@st.composite
def _lines(draw: st.DrawFn, eol: str) -> str:
    """A body of drawn lines; the last line end maybe missing."""
    lines = draw(st.lists(_WORDS, max_size=4))
    text = "".join(line + eol for line in lines)
    return text[: -len(eol)] if text and draw(st.booleans()) else text


# What a FETCH BODY[section] serves, by section relative to an entity ("2.1.MIME").
Expected = dict[str, str]


def _within(number: int | str, inner: Expected) -> Expected:
    return {f"{number}.{section}": served for section, served in inner.items()}


@st.composite
def part(draw: st.DrawFn, depth: int) -> tuple[str, str, Expected]:
    """A MIME entity: a leaf (maybe with no header), a multipart of zero to three
    entities (maybe with no boundary), or a message/rfc822 around a whole message. One
    line end throughout, CRLF or bare LF.

    As (header with its blank line, body, expected), where expected is what each
    section below this entity serves (RFC 2046 §5.1.1: the line end before a boundary
    is not the part's; a multipart without parts shows one empty part, as Dovecot
    does; inside a message/rfc822, `message_parts`)."""
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    kind = draw(st.sampled_from(["leaf", "multipart", "message"] if depth < 3 else ["leaf"]))
    if kind == "multipart":
        boundary = f"b{depth}-{draw(st.integers(0, 99))}"
        head = f'Content-Type: multipart/mixed; boundary="{boundary}"{eol}{eol}'
        parts = draw(st.lists(part(depth + 1), max_size=3))
        body = draw(st.sampled_from(["", "A preamble." + eol]))
        body += "".join(f"--{boundary}{eol}{h}{b}{eol}" for h, b, _ in parts)
        if parts or draw(st.booleans()):
            body += f"--{boundary}--{eol}" + draw(st.sampled_from(["", "epilogue" + eol]))
        if not parts and draw(st.booleans()):
            head = f"Content-Type: multipart/mixed{eol}{eol}"  # no boundary at all
        expected: Expected = {"1.MIME": "", "1": ""}
        for number, (part_head, part_body, inner) in enumerate(parts, 1):
            expected.update({f"{number}.MIME": part_head, f"{number}": part_body})
            expected.update(_within(number, inner))
        return head, body, expected
    if kind == "message":
        raw, expected = draw(message_parts(depth + 1))
        return f"Content-Type: message/rfc822{eol}{eol}", raw, expected
    leaf_type = draw(st.sampled_from(LEAF_TYPES))
    head = {"": f"X-Part: {depth}{eol}", "none": ""}.get(
        leaf_type, f"Content-Type: {leaf_type}{eol}"
    )
    return head + eol, draw(_lines(eol)), {}


@st.composite
def message(draw: st.DrawFn, depth: int = 0) -> str:
    return draw(message_parts(depth))[0]


@st.composite
def message_parts(draw: st.DrawFn, depth: int = 0) -> tuple[str, Expected]:
    """A whole message, and what each section of it serves (RFC 3501 §6.4.5): HEADER
    and TEXT; the parts of its multipart as `part` has them, or else its body as part
    1, whose MIME header is the message's (as Dovecot serves it). The same holds inside
    a message/rfc822 part N, for N.HEADER, N.TEXT, N.1 and on."""
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    head = f"From: bob@example.test{eol}Subject: parts {depth}{eol}"
    if depth == 0 and draw(st.integers(0, 9)) == 0:
        return (head[: -len(eol)] if draw(st.booleans()) else head), {}  # header only
    part_head, part_body, inner = draw(part(depth))
    expected = {"HEADER": head + part_head, "TEXT": part_body}
    if part_head.startswith("Content-Type: multipart/"):
        expected.update(inner)
    else:
        expected.update({"1.MIME": head + part_head, "1": part_body}, **_within(1, inner))
    return head + part_head + part_body, expected


@pytest.fixture
def client(
    imap_server: ImapServer, mail_users: dict[str, str], client_ssl_context: ssl.SSLContext
) -> Iterator[imapclient.IMAPClient]:
    c = imapclient.IMAPClient(
        "127.0.0.1", port=imap_server.tls_port, ssl=True, ssl_context=client_ssl_context
    )
    c.login(ALICE, mail_users[ALICE])
    yield c
    c.logout()


def _body(client: imapclient.IMAPClient, uid: int, section: list[int]) -> bytes:
    name = ".".join(map(str, section)) if section else "TEXT"
    answer = client.fetch([uid], [f"BODY.PEEK[{name}]"])[uid]
    return bytes(answer[f"BODY[{name}]".encode()] or b"")


def _sizes(structure: Any, section: list[int]) -> Iterator[tuple[list[int], int, int | None]]:
    """(section, size, lines or None) of every part but multiparts, in RFC 9051 §6.4.5's
    part numbering: a single-part message's body is BODY[TEXT] (and BODY[1])."""
    body = BodyData.create(structure) if not isinstance(structure, BodyData) else structure
    if body.is_multipart:
        assert body[0], structure  # RFC 3501 body-type-mpart: 1*body
        for number, sub in enumerate(body[0], 1):
            yield from _sizes(sub, [*section, number])
        return
    maintype, subtype = bytes(body[0]).lower(), bytes(body[1]).lower()
    if maintype == b"text":
        yield section, body[6], body[7]
    elif (maintype, subtype) == (b"message", b"rfc822"):
        yield section, body[6], body[9]
        inner = BodyData.create(body[8])
        # The parts of the message inside are N.1 and on; when it has none, its body is
        # N.1. A message that is itself message/rfc822 has its body as part 1.
        number = section or [1]
        yield from _sizes(inner, number if inner.is_multipart else [*number, 1])
    else:
        yield section, body[6], None


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=message())
@example(raw="From: bob@example.test\r\nSubject: sizes.\r\n\r\nHello you\r\n")  # 43 + 11
@example(raw="From: bob@example.test\nSubject: bare LF\n\nline one\nline two")
@example(raw="From: bob@example.test\r\nSubject: header only\r\n")
def test_bodystructure_sizes_are_those_of_the_bodies_served(
    client: imapclient.IMAPClient, runtime: Runtime, raw: str
) -> None:
    uid = deliver(runtime, ALICE, raw.encode())
    client.select_folder("INBOX")
    structure = client.fetch([uid], ["BODYSTRUCTURE"])[uid][b"BODYSTRUCTURE"]
    for section, size, lines in _sizes(structure, []):
        body = _body(client, uid, section)
        assert (size, lines) == (len(body), None if lines is None else body.count(b"\n")), (
            section,
            body,
        )


EMPTY_MULTIPART = "From: bob@example.test\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
INNER = (
    "From: a@example.test\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n"
    "--in\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
    "--in\r\nContent-Type: text/html\r\n\r\n<p>h</p>\r\n--in--\r\n"
)
ATTACHED = (
    EMPTY_MULTIPART
    + "--x\r\n\r\nfirst\r\n--x\r\nContent-Type: message/rfc822\r\n\r\n"
    + INNER
    + "\r\n--x--\r\n"
)
# As Dovecot 2.3 serves them.
ATTACHED_PARTS = {
    "2": INNER,
    "2.MIME": "Content-Type: message/rfc822\r\n\r\n",
    "2.HEADER": INNER[: INNER.index("--in")],
    "2.TEXT": INNER[INNER.index("--in") :],
    "2.1": "plain",
    "2.1.MIME": "Content-Type: text/plain\r\n\r\n",
    "2.2": "<p>h</p>",
}

# RFC 2046 §5.1.5: a digest's part without a Content-Type is a message/rfc822.
DIGEST = (
    "From: a@example.test\r\nSubject: digest\r\n"
    "Content-Type: multipart/digest; boundary=d\r\n\r\n"
    "--d\r\n\r\nFrom: b@example.test\r\nSubject: one\r\n\r\nBody one\r\n"
    "--d\r\nContent-Type: text/plain\r\n\r\nplain part\r\n"
    "--d\r\n\r\nFrom: c@example.test\r\nSubject: three\r\n"
    "Content-Type: multipart/mixed; boundary=e\r\n\r\n--e\r\n\r\ninner\r\n--e--\r\n"
    "--d--\r\n"
)
# As Dovecot 2.3 serves them.
DIGEST_PARTS = {
    "1": "From: b@example.test\r\nSubject: one\r\n\r\nBody one",
    "1.MIME": "\r\n",
    "1.1": "Body one",
    "1.HEADER": "From: b@example.test\r\nSubject: one\r\n\r\n",
    "1.TEXT": "Body one",
    "2": "plain part",
    "2.HEADER": "",
    "3.1": "inner",
    "3.1.MIME": "\r\n",
    "3.HEADER": (
        "From: c@example.test\r\nSubject: three\r\n"
        "Content-Type: multipart/mixed; boundary=e\r\n\r\n"
    ),
}


def test_a_digests_parts_without_a_type_are_messages(
    client: imapclient.IMAPClient, runtime: Runtime
) -> None:
    """BODYSTRUCTURE of a digest, as Dovecot 2.3 answers it: parts 1 and 3 (no
    Content-Type) are message/rfc822 with their envelope and structure; part 2 says
    text/plain and is."""
    uid = deliver(runtime, ALICE, DIGEST.encode())
    client.select_folder("INBOX")
    body = client.fetch([uid], ["BODYSTRUCTURE"])[uid][b"BODYSTRUCTURE"]
    parts, subtype = body[0], body[1]
    assert subtype == b"digest"
    assert [(bytes(p[0]).lower(), bytes(p[1]).lower()) for p in parts] == [
        (b"message", b"rfc822"),
        (b"text", b"plain"),
        (b"message", b"rfc822"),
    ]
    assert parts[0][7][1] == b"one" and parts[2][7][1] == b"three"  # the envelopes' subjects
    assert BodyData.create(parts[2][8]).is_multipart


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=message_parts())
@example(drawn=(EMPTY_MULTIPART + "hello\r\n", {"1.MIME": "", "1": ""}))
@example(drawn=(EMPTY_MULTIPART + "--x--\r\n", {"1.MIME": "", "1": ""}))
@example(drawn=(EMPTY_MULTIPART.replace("; boundary=x", ""), {"1.MIME": "", "1": ""}))
@example(
    drawn=(
        EMPTY_MULTIPART + "--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n\r\n"
        "--x\r\nX-A: b\r\n--x\r\n\r\nbody\r\n--x--\r\n",
        {
            "1.MIME": "Content-Type: text/plain\r\n\r\n",
            "1": "hello\r\n",
            "2.MIME": "X-A: b",
            "2": "",
            "3.MIME": "\r\n",
            "3": "body",
        },
    )
)
@example(drawn=(ATTACHED, ATTACHED_PARTS))
@example(drawn=(DIGEST, DIGEST_PARTS))
def test_each_section_serves_the_part_rfc_3501_names(
    client: imapclient.IMAPClient, runtime: Runtime, drawn: tuple[str, Expected]
) -> None:
    """BODY[n.MIME] is a part's header with its blank line, BODY[n] the rest up to the
    line end before the next boundary; inside a message/rfc822 part N, N.HEADER and
    N.TEXT are its message's, and N.1 is the first part of that message's multipart
    (or its body when it has none: RFC 3501 §6.4.5), as Dovecot serves them.
    BODYSTRUCTURE lists every part served under the same number."""
    raw, expected = drawn
    uid = deliver(runtime, ALICE, raw.encode())
    client.select_folder("INBOX")
    structure = client.fetch([uid], ["BODYSTRUCTURE"])[uid][b"BODYSTRUCTURE"]
    served = {tuple(section) for section, _size, _lines in _sizes(structure, [])}
    names = sorted(expected)
    answer = client.fetch([uid], [f"BODY.PEEK[{name}]" for name in names])[uid]
    got = {name: bytes(answer[f"BODY[{name}]".encode()] or b"").decode() for name in names}
    # A message with bare LF line ends is served with CRLF (test_served_line_ends.py).
    assert got == {
        name: text.replace("\r\n", "\n").replace("\n", "\r\n") for name, text in expected.items()
    }
    for name in names:
        if name.rsplit(".", 1)[-1] in ("MIME", "HEADER", "TEXT"):
            continue
        section = tuple(map(int, name.split(".")))
        prefixes = {s[: len(section)] for s in served} | ({(1,)} if () in served else set())
        assert section in prefixes, (section, served)


def nested(depth: int, kinds: str) -> bytes:
    """A message `depth` levels deep: at each level a multipart ("m") or an attached
    message ("r"), in turn as `kinds` lists them, around one short text."""
    head, tail = [b"From: bob@example.test\r\nSubject: deep\r\n"], []
    for level in range(depth):
        if kinds[level % len(kinds)] == "m":
            head.append(
                b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (level, level)
            )
            tail.append(b"\r\n--b%d--\r\n" % level)
        else:
            head.append(b"Content-Type: message/rfc822\r\n\r\nSubject: level %d\r\n" % level)
    head.append(b"Content-Type: text/plain\r\n\r\nthe bottom")
    return b"".join(head) + b"".join(reversed(tail))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(depth=st.integers(1, 3000), kinds=st.sampled_from(["m", "r", "mr", "rrm"]))
@example(depth=3000, kinds="m")
@example(depth=3000, kinds="r")
@example(depth=32, kinds="mr")
@example(depth=33, kinds="mr")
def test_a_deeply_nested_message_is_refused_or_served(
    client: imapclient.IMAPClient,
    runtime: Runtime,
    caplog: pytest.LogCaptureFixture,
    depth: int,
    kinds: str,
) -> None:
    """Threat: a message of thousands of nested parts, where a recursive parse of it runs
    out of stack: SERVERBUG and a traceback at each FETCH. An APPEND deeper than
    `[smtp] max_mime_depth` is refused with NO that says why, as SMTP refuses it; a
    message stored anyway (before that limit, or delivered) is served, its parts past
    `mime.MAX_DEPTH` as one opaque part. Every FETCH gets a tagged OK."""
    caplog.clear()
    raw = nested(depth, kinds)
    imap = client._imap
    typ, data = imap.append("INBOX", "", None, raw)
    if depth > runtime.settings.smtp.max_mime_depth:
        assert typ == "NO" and b"nested deeper than" in data[0], (typ, data)
    else:
        assert typ == "OK", (typ, data)
    uid = deliver(runtime, ALICE, raw)
    client.select_folder("INBOX")
    sections = [".".join(["1"] * n) for n in (depth, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 2)]
    items = ["BODYSTRUCTURE", "BODY.PEEK[]", "BODY.PEEK[1.MIME]"] + [
        f"BODY.PEEK[{section}{part}]" for section in sections for part in ("", ".HEADER", ".TEXT")
    ]
    for item in items:
        answer = client.fetch([uid], [item])[uid]
        assert answer, item
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
