"""Threat: a header field that the gateway's checks do not see but the recipient's program shows.

The gateway's parser takes a bare CR inside a header line for part of the line (as
Postfix does), so a hosted user's `X-Note: x<CR>From: ceo@bank.example` was one X-Note
field to check-header-sender, which saw only the user's own From. The relay sends such
a CR as a space, but the copy stored for a hosted recipient kept it: read over IMAP by a
program that takes CR for a line end, or by the webmail (Python's email does), it
showed the CEO's From. The same over the MX port. A bare LF is a line end to every
reader, and is stored as the CRLF it stands for; a first line that starts with white
space (a bare CR there becomes one) lost its white space, or a prepended Received or
From made the fields after it header for everyone, unchecked. Now every entry point
(gateway.mail.header_line_ends) makes the header section plain before anything reads it.
A From after a line that is no field, which IMAP clients read up to the empty line as
header, is checked as a From (check-header-sender).
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import re
import smtplib
import ssl
from email.utils import getaddresses

import pytest
import sqlalchemy as sa

from gateway import db, rawheaders
from gateway.imap.server import ImapServer
from gateway.inbound import InboundServer
from gateway.mail.header_line_ends import header_section_end
from gateway.models import Address, MailboxMessage
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer

ALICE, BOB = "alice@example.test", "bob@example.test"
CEO = "ceo@bank.example"
OUTSIDER = "news@elsewhere.example"
_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")

CR_FROM = f"X-Note: x\rFrom: {CEO}\r\nFrom: {ALICE}\r\nTo: {BOB}\r\nSubject: cr\r\n\r\nhi\r\n"
CR_FIRST = f"\rFrom: {CEO}\r\nTo: {BOB}\r\nSubject: cr first\r\n\r\nhi\r\n"
WSP_FIRST = f" x\r\nFrom: {CEO}\r\nTo: {BOB}\r\n\r\nhi\r\n"
NO_FIELD_FIRST = f"From: {ALICE}\r\nnot a field\r\nFrom: {CEO}\r\n\r\nhi\r\n"
LF_ONLY = f"From: {ALICE}\nTo: {BOB}\nX-Note: x\rFrom: {CEO}\nSubject: lf\n\nhi\n"


def stored(runtime: Runtime, address: str, folder: str = "INBOX") -> list[bytes]:
    with db.read_only(runtime.sessions) as session:
        return list(
            session.scalars(
                sa.select(MailboxMessage.raw)
                .join(MailboxMessage.address)
                .where(Address.address == address, MailboxMessage.folder == folder)
                .order_by(MailboxMessage.uid)
            )
        )


def imap_headers(server: ImapServer, context: ssl.SSLContext, password: str) -> list[bytes]:
    """BODY[HEADER] of every message in Bob's INBOX, as an IMAP client gets it."""
    client = imaplib.IMAP4_SSL("127.0.0.1", server.tls_port, ssl_context=context)
    try:
        assert client.login(BOB, password)[0] == "OK"
        assert client.select("INBOX")[0] == "OK"
        typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[HEADER])")
        assert typ == "OK"
        return [item[1] for item in data if isinstance(item, tuple)]
    finally:
        client.logout()


def authors(header: bytes) -> list[list[str]]:
    """The From addresses as four readers see them: the gateway's parser, Python's email
    (compat32 and SMTP policies; the webmail's), and a program that takes every CR or LF
    for a line end (as many IMAP clients do). Asserts the header section is plain."""
    assert not _BARE.search(header[: header_section_end(header)]), header
    seen = [[f.value for f in rawheaders.headers(header) if f.name.lower() == "from"]]
    for policy in (email.policy.compat32, email.policy.SMTP):
        message = email.message_from_bytes(header, policy=policy)
        seen.append([str(v) for v in message.get_all("From", [])])
        assert [f.name.lower() for f in rawheaders.headers(header)] == [k.lower() for k in message]
    lines = re.split(rb"\r\n|\r|\n", header)
    end = lines.index(b"") if b"" in lines else len(lines)
    seen.append([line[5:].decode() for line in lines[:end] if line.lower().startswith(b"from:")])
    return [[address for _name, address in getaddresses(values)] for values in seen]


def assert_one_reading(header: bytes, author: str | None = None) -> None:
    """Every reader sees the same From addresses (exactly `author`'s, when given)."""
    first, *others = authors(header)
    assert all(other == first for other in others), (header, first, others)
    if author is not None:
        assert first == [author], header


@pytest.mark.parametrize("raw", [CR_FROM, CR_FIRST, WSP_FIRST, NO_FIELD_FIRST, LF_ONLY])
def test_submission_to_a_hosted_recipient_is_stored_and_served_with_one_from(
    submission_server: SubmissionServer,
    imap_server: ImapServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
    raw: str,
) -> None:
    with smtplib.SMTP("127.0.0.1", submission_server.submission_port, timeout=30) as client:
        client.starttls(context=client_ssl_context)
        client.login(ALICE, mail_users[ALICE])
        try:
            client.sendmail(ALICE, [BOB], raw.encode())
        except smtplib.SMTPDataError as refused:
            # Refusing it is right too: the CEO is then a From the check saw, or a field
            # after a line that is no field (triggers.FIELD_PAST_HEADER_END).
            assert refused.smtp_code in (553, 554), refused
            assert stored(runtime, BOB) == []
            return
    [copy] = stored(runtime, BOB)
    assert_one_reading(copy, ALICE)
    [header] = imap_headers(imap_server, client_ssl_context, mail_users[BOB])
    assert_one_reading(header, ALICE)


@pytest.mark.parametrize(
    "raw",
    [
        f"X-Note: x\rFrom: {CEO}\r\nFrom: {OUTSIDER}\r\nTo: {BOB}\r\n\r\nhi\r\n",
        f"From: {OUTSIDER}\nTo: {BOB}\nX-Note: x\rFrom: {CEO}\nSubject: lf\n\nhi\n",
        f"\rFrom: {CEO}\r\nFrom: {OUTSIDER}\r\nTo: {BOB}\r\n\r\nhi\r\n",
    ],
    ids=["bare-cr", "bare-lf", "cr-first"],
)
def test_inbound_mail_is_stored_and_served_with_one_from(
    inbound: InboundServer,
    imap_server: ImapServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
    raw: str,
) -> None:
    """Mail from the Internet is repaired, not refused (Postfix takes it too). The MX does
    not police From; what matters is that every reader sees the same ones."""
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        client.starttls(context=client_ssl_context)
        assert client.sendmail(OUTSIDER, [BOB], raw.encode()) == {}
    [copy] = stored(runtime, BOB)
    assert b"\r\n\r\nhi" in copy
    assert_one_reading(copy)
    [header] = imap_headers(imap_server, client_ssl_context, mail_users[BOB])
    assert_one_reading(header)


def test_imap_append_stores_the_header_plain(
    imap_server: ImapServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    raw = f"X-Note: x\rFrom: {CEO}\r\nFrom: {OUTSIDER}\nTo: {BOB}\r\n\r\nhi\rthere\n".encode()
    client = imaplib.IMAP4_SSL("127.0.0.1", imap_server.tls_port, ssl_context=client_ssl_context)
    try:
        assert client.login(BOB, mail_users[BOB])[0] == "OK"
        # imaplib.append would make every CR and LF a CRLF: the literal goes as it is.
        client.literal = raw  # type: ignore[assignment]  # typeshed says str | None
        assert client._simple_command("APPEND", "INBOX")[0] == "OK"
    finally:
        client.logout()
    [copy] = stored(runtime, BOB)
    assert copy.startswith(f"X-Note: x From: {CEO}\r\nFrom: {OUTSIDER}\r\n".encode()), copy
    assert copy.endswith(b"\r\n\r\nhi\rthere\n")  # the body keeps its bytes
    assert_one_reading(copy, OUTSIDER)
