"""The list and search columns every stored message gets (gateway.mailbox.message_values).

They are read from the header block with the gateway's own split and from the MIME
structure with the compat32 parser (issue 15: the header registry cost more than the
rest of a plain message's path), so these pin what a reader of the list sees.
"""

from __future__ import annotations

import datetime as dt
from email.parser import BytesParser
from email.policy import compat32

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import accounts, db, mailbox
from gateway.models import MailboxMessage
from gateway.runtime import Runtime

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def columns(raw: bytes, *, encrypted: bool = False) -> dict[str, object]:
    return mailbox.message_values(
        raw, queue_id="Q1", envelope_from="a@example.test", now=NOW, encrypted=encrypted
    )


def test_headers_are_unfolded_and_decoded() -> None:
    raw = (
        b"From: =?utf-8?q?J=C3=B6rg?= <joerg@example.test>\r\n"
        b"To: bob@example.test,\r\n carol@example.test\r\n"
        b"Cc: dave@example.test\r\n"
        b"Subject: =?iso-8859-1?q?Gr=FC=DFe?= aus\r\n\tZ\xc3\xbcrich\r\n"
        b"Message-ID:  <m1@example.test>\r\n"
        b"Date: Thu, 03 Dec 2026 10:00:00 +0100\r\n"
        b"\r\nbody\r\n"
    )
    values = columns(raw)
    assert values["from_addr"] == "Jörg <joerg@example.test>"
    assert values["to_addr"] == "bob@example.test, carol@example.test, dave@example.test"
    assert values["subject"] == "Grüße aus\tZürich"
    assert values["message_id"] == "<m1@example.test>"
    assert values["date"] == dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)
    assert values["size"] == len(raw) and values["raw"] == raw


def test_the_first_of_repeated_fields_and_no_date_when_unreadable() -> None:
    values = columns(b"Subject: one\r\nSubject: two\r\nDate: yesterday\r\n\r\nx")
    assert values["subject"] == "one"
    assert values["date"] is None and values["from_addr"] == "" and values["to_addr"] == ""


def test_bytes_that_are_not_utf8_become_replacement_characters() -> None:
    values = columns(b"Subject: caf\xe9 \xff\r\n\r\nx")
    assert values["subject"] == "caf\ufffd \ufffd"


def test_a_message_with_nul_bytes_is_stored_on_every_database(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    raw = b"From: a\x00b@x\r\nSubject: a\x00b\r\nMessage-ID: <x\x00y>\r\n\r\nbody \x00 text\r\n"
    with db.transaction(runtime.sessions) as session:
        row = accounts.find_address(session, "alice@example.test")
        assert row is not None
        mailbox.store(session, row, raw, queue_id="Q", envelope_from="x@y.test", now=NOW)
    with db.read_only(runtime.sessions) as session:
        stored = session.scalars(sa.select(MailboxMessage)).one()
        assert stored.raw == raw and stored.subject == "a\ufffdb"
        assert stored.search_text == "body text"


def test_search_text_holds_the_text_parts_only() -> None:
    raw = (
        b"Subject: parts\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nK=E4se   und\r\n Brot\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nPHA+PGI+YXViZXJnaW5lPC9iPjwvcD4=\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n"
        b"\r\nattached words\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n\r\nbinary words\r\n"
        b"--b--\r\n"
    )
    assert columns(raw)["search_text"] == "Käse und Brot aubergine"


def test_unknown_charset_is_read_as_utf8_and_encrypted_mail_is_not_indexed() -> None:
    raw = b"Content-Type: text/plain; charset=x-nonsense\r\n\r\nZ\xc3\xbcrich\r\n"
    assert columns(raw)["search_text"] == "Zürich"
    assert columns(raw, encrypted=True)["search_text"] is None


header_bytes = st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"\r\n"))


@settings(max_examples=300, deadline=None)
@given(head=header_bytes, body=st.binary(max_size=200))
def test_any_bytes_give_columns_a_database_can_hold(head: bytes, body: bytes) -> None:
    """Invariant: whatever arrives, the columns are computed (the message is never lost
    to a parse error) and every text column is valid Unicode without lone surrogates
    and without NUL (which no PostgreSQL text holds)."""
    raw = b"Subject: " + head + b"\r\nFrom: " + head + b"\r\n\r\n" + body
    values = columns(raw)
    for name in ("subject", "from_addr", "to_addr", "message_id", "search_text"):
        value = values[name]
        if value is not None:
            assert isinstance(value, str)
            value.encode("utf-8")  # raises on a lone surrogate
            assert "\x00" not in value
    assert values["raw"] == raw


@settings(max_examples=200, deadline=None)
@given(
    content_type=st.sampled_from(
        ["", "text/plain", "text/plain; charset=utf-8", "text/plain; charset=iso-8859-1",
         'TEXT/PLAIN; charset="windows-1252"', "text/plain; charset=nonsense"]
    ),
    encoding=st.sampled_from(["", "7bit", "8bit", "quoted-printable", "base64", " 8BIT "]),
    body=st.binary(max_size=300),
)  # fmt: skip
def test_a_single_text_part_reads_as_the_parser_reads_it(
    content_type: str, encoding: str, body: bytes
) -> None:
    """The shortcut for one-part text mail gives the parser's text, whatever the shape."""
    head = b"Subject: s\r\n"
    if content_type:
        head += b"Content-Type: " + content_type.encode() + b"\r\n"
    if encoding:
        head += b"Content-Transfer-Encoding: " + encoding.encode() + b"\r\n"
    raw = head + b"\r\n" + body
    parsed = BytesParser(policy=compat32).parsebytes(raw)
    text = mailbox._text_of(parsed)
    assert columns(raw)["search_text"] == " ".join(text.replace("\x00", " ").split())
