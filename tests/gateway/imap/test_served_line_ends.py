"""IMAP serves CRLF line ends only, whatever line ends a stored message kept.

RFC 3501 (and RFC 9051) carry messages in RFC 5322 form, lines ending in CRLF;
a bare CR or LF in a FETCH answer is taken differently by each client (a bare CR
as a line end by some, as data by others). Intake repairs the header section only
(gateway.mail.header_line_ends) and keeps the body as it came, and messages stored
before that repair keep odd line ends in their headers too: they were served as
stored. Now every message is served as the relay sends it on: the header section
as intake repairs it, every bare CR or LF of the body a CRLF; RFC822.SIZE, which a
client reads before it fetches, counts what is served.
"""

from __future__ import annotations

import imaplib
import re
import ssl
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway import db
from gateway.imap.server import ImapServer
from gateway.mail.served_line_ends import served
from gateway.runtime import Runtime
from tests.gateway.imap.conftest import ALICE, deliver, rows

_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_LINE_ENDS = ["\r\n", "\n", "\r", "\r\r\n", "\n\r", "\n\n"]
_WORDS = st.text(alphabet="abcxyz ;:<>@.", min_size=0, max_size=12)


@pytest.fixture
def client(
    imap_server: ImapServer, mail_users: dict[str, str], client_ssl_context: ssl.SSLContext
) -> Iterator[imaplib.IMAP4_SSL]:
    c = imaplib.IMAP4_SSL("127.0.0.1", imap_server.tls_port, ssl_context=client_ssl_context)
    assert c.login(ALICE, mail_users[ALICE])[0] == "OK"
    assert c.select("INBOX")[0] == "OK"
    yield c
    c.logout()


@st.composite
def odd_messages(draw: st.DrawFn) -> bytes:
    """Header fields and text lines, each line ended by any of CRLF, LF, CR, CR CR LF,
    LF CR, LF LF; an empty line (of any shape) between them, or none."""
    fields = draw(
        st.lists(
            st.builds("{}: {}".format, st.sampled_from(["From", "Subject", "X-Note"]), _WORDS),
            min_size=1,
            max_size=4,
        )
    )
    lines = draw(st.lists(_WORDS, max_size=5))
    out = [f"{field}{draw(st.sampled_from(_LINE_ENDS))}" for field in fields]
    if draw(st.booleans()):
        out.append(draw(st.sampled_from(_LINE_ENDS)))
        out.extend(f"{line}{draw(st.sampled_from(_LINE_ENDS))}" for line in lines)
    return "".join(out).encode()


def fetch(client: imaplib.IMAP4_SSL, uid: int, item: str) -> tuple[bytes, bytes]:
    """The non-literal text of the answer (every FETCH line imaplib kept, unsolicited
    ones included), and its first literal (b"" if none)."""
    typ, data = client.uid("FETCH", str(uid), f"({item})")
    assert typ == "OK", data
    lines = [d[0] if isinstance(d, tuple) else d for d in data]
    literals = [d[1] for d in data if isinstance(d, tuple)]
    return b" ".join(line for line in lines if line), literals[0] if literals else b""


def size_in(line: bytes) -> int:
    found = _SIZE.search(line)
    assert found is not None, line
    return int(found.group(1))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=odd_messages())
@example(raw=b"X-Note: x\rFrom: ceo@bank.example\r\nSubject: s\r\n\r\nb\rc\nd\r\r\n")
@example(raw=b"Subject: lf only\n\nline one\nline two\n")
@example(raw=b"Subject: cr only\r\rline one\rline two\r")
@example(raw=b"Subject: plain\r\n\r\nHello.\r\n")
def test_every_fetch_answer_has_crlf_line_ends_only(
    client: imaplib.IMAP4_SSL, runtime: Runtime, raw: bytes
) -> None:
    uid = deliver(runtime, ALICE, raw)
    assert client.noop()[0] == "OK"  # the session learns of the new message
    listed_size = size_in(fetch(client, uid, "RFC822.SIZE")[0])
    line, whole = fetch(client, uid, "RFC822.SIZE BODY.PEEK[]")
    header = fetch(client, uid, "BODY.PEEK[HEADER]")[1]
    text = fetch(client, uid, "BODY.PEEK[TEXT]")[1]
    for answer in (whole, header, text, fetch(client, uid, "BODY.PEEK[1]")[1]):
        assert _BARE.search(answer) is None, answer
    assert header + text == whole
    # What a client is told to expect is what it gets, listed or loaded.
    assert listed_size == len(whole)
    assert size_in(line) == len(whole)
    # Nothing but line ends changed: the words are the same, in the same order.
    assert whole.split() == raw.split()
    # A message served as stored when it has CRLF line ends only.
    if _BARE.search(raw) is None:
        assert whole == raw


def test_migration_0019_lists_messages_stored_before_at_their_served_size(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """A message stored before kept the size of its stored bytes; the migration gives it
    the size of what is served, and leaves a message with CRLF line ends alone."""
    odd = b"X-Note: a\rb\nSubject: old\n\nline\rline\r\r\nend\n"
    plain = b"Subject: plain\r\n\r\ntext\r\n"
    deliver(runtime, ALICE, odd)
    deliver(runtime, ALICE, plain)
    with runtime.engine.begin() as conn:  # as stored before: the size of the bytes
        conn.execute(sa.text("UPDATE mailbox_messages SET size = length(raw)"))
    assert [r.size for r in rows(runtime, ALICE, "INBOX")] == [len(odd), len(plain)]
    config = db.alembic_config(runtime.engine)
    command.downgrade(config, "0018")
    command.upgrade(config, "0019")
    with runtime.engine.connect() as conn:  # at 0019: later columns are not there yet
        sizes = conn.execute(sa.text("SELECT size FROM mailbox_messages ORDER BY uid"))
        assert [size for (size,) in sizes] == [len(served(odd)), len(plain)]
    command.upgrade(config, "head")
    assert len(served(odd)) != len(odd)
