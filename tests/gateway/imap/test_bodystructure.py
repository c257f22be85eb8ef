"""BODYSTRUCTURE gives each part's size and lines of its body, as BODY[n] serves it.

RFC 9051 §7.5.2 (RFC 3501 §7.4.2): body-fld-octets is "the size of the body in
octets", body-fld-lines "the size of the body in text lines"; the part's header is
not in them. Drawn messages with what trips a parser up (bare LF, header only, no
last line end, nested multiparts, message/rfc822 parts) are fetched over a real
connection, and every size in the BODYSTRUCTURE answer is the length of the
BODY[section] (BODY[TEXT] for the whole of a single-part message) it describes.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import imapclient
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from imapclient.response_types import BodyData

from gateway.imap.server import ImapServer
from gateway.runtime import Runtime
from tests.gateway.imap.conftest import ALICE, deliver

LEAF_TYPES = ["text/plain", "text/html", "application/octet-stream", "image/png", ""]
_WORDS = st.text(alphabet="abcdefghij XYZ.,-", max_size=20)


@st.composite
def _lines(draw: st.DrawFn, eol: str) -> str:
    """A body of drawn lines; the last line end maybe missing."""
    lines = draw(st.lists(_WORDS, max_size=4))
    text = "".join(line + eol for line in lines)
    return text[: -len(eol)] if text and draw(st.booleans()) else text


@st.composite
def part(draw: st.DrawFn, depth: int) -> str:
    """A MIME entity: a leaf, a multipart of one to three entities, or a message/rfc822
    around a whole message. One line end throughout, CRLF or bare LF."""
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    kind = draw(st.sampled_from(["leaf", "multipart", "message"] if depth < 3 else ["leaf"]))
    if kind == "multipart":
        boundary = f"b{depth}-{draw(st.integers(0, 99))}"
        parts = draw(st.lists(part(depth + 1), min_size=1, max_size=3))
        preamble = draw(st.sampled_from(["", "A preamble." + eol]))
        body = preamble + "".join(f"--{boundary}{eol}{p}{eol}" for p in parts)
        body += f"--{boundary}--{eol}" + draw(st.sampled_from(["", "epilogue" + eol]))
        return f'Content-Type: multipart/mixed; boundary="{boundary}"{eol}{eol}{body}'
    if kind == "message":
        inner = draw(message(depth + 1))
        return f"Content-Type: message/rfc822{eol}{eol}{inner}"
    leaf_type = draw(st.sampled_from(LEAF_TYPES))
    head = f"Content-Type: {leaf_type}{eol}" if leaf_type else f"X-Part: {depth}{eol}"
    return head + eol + draw(_lines(eol))


@st.composite
def message(draw: st.DrawFn, depth: int = 0) -> str:
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    head = f"From: bob@example.test{eol}Subject: parts {depth}{eol}"
    if depth == 0 and draw(st.integers(0, 9)) == 0:
        return head[: -len(eol)] if draw(st.booleans()) else head  # header only
    return head + draw(part(depth))


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
        for number, sub in enumerate(body[0], 1):
            yield from _sizes(sub, [*section, number])
        return
    maintype, subtype = bytes(body[0]).lower(), bytes(body[1]).lower()
    if maintype == b"text":
        yield section, body[6], body[7]
    elif (maintype, subtype) == (b"message", b"rfc822"):
        yield section, body[6], body[9]
        inner = BodyData.create(body[8])
        # The inner message's own body is part 1 of this one when single; the parts of
        # a multipart inner message pymap numbers one level too deep (N.1.1 for N.1),
        # so they are not compared here.
        if not inner.is_multipart:
            yield from _sizes(inner, [*section, 1])
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
