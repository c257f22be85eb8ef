"""Header protection (RFC 9788) as the gateway writes and reads it, field by field.

Promise: for any header section a writer may send (odd subjects, encoded words of
several charsets, raw UTF-8, long folded lines, quoted and encoded display names),
the signed entity of an encrypted copy carries From, To, Cc, Subject, Date,
Message-ID and Reply-To so that the reader shows exactly what the sent message
showed; Bcc never; the `HP-Outer` records match the outer header, so the reader
never says a message of ours arrived with other header fields than it was sent
with. The end-to-end checks (GnuPG and Sequoia open a real copy; a replayed signed
part) are in tests/gateway/test_encrypted_delivery.py and
tests/security/test_signed_header_replay.py.
"""

from __future__ import annotations

import datetime as dt
import email.header
import email.utils
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import mimepolicy, rawheaders, reading
from gateway.mail import header_protection
from gateway.pipeline import pgpmime

SHOWN = (*reading.HEADERS_SHOWN, "Bcc")


def parse(raw: bytes) -> EmailMessage:
    return BytesParser(policy=mimepolicy.READING).parsebytes(raw)


def copy_of(raw: bytes) -> tuple[EmailMessage, EmailMessage]:
    """(outer message, signed entity) of the encrypted copy the pipeline makes of `raw`
    (the ciphertext itself plays no part in the header fields)."""
    outer = pgpmime.build_encrypted(raw, b"\x00ciphertext")
    return parse(outer), parse(pgpmime.inner_entity(raw, protect_headers=True))


# --- header shapes ----------------------------------------------------------------------

# Text a writer may put in a field: any letters, marks, symbols, spaces, no control
# characters (a line break inside a value is another test's subject: test_mimepolicy).
words = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=120)
odd = st.sampled_from(
    [
        "",
        ":",
        "Re: Re: [list] Fwd: =?",
        "=?utf-8?q?not closed",
        "a  b\tc",
        "-----BEGIN PGP MESSAGE-----",
        'quote " and \\ backslash',
        "x" * 300,
        " ".join(["Wort"] * 60),
    ]
)


@st.composite
def encoded(draw: st.DrawFn, text: str) -> bytes:
    """`text` as a writer may have written it into a header field."""
    charsets = ["utf-8"]
    try:
        text.encode("iso-8859-1")
        charsets.append("iso-8859-1")
    except UnicodeEncodeError:
        pass
    form = draw(st.sampled_from(["plain", "words", "folded"]))
    if form == "words" or (form == "plain" and not text.isascii()):
        if draw(st.booleans()) and form == "plain":
            return text.encode("utf-8")  # raw UTF-8 (SMTPUTF8)
        charset = draw(st.sampled_from(charsets))
        folded = email.header.Header(text, charset).encode(linesep="\r\n")
        return folded.encode("ascii")
    if form == "folded" and text.isascii():
        parts = text.split(" ")
        breaks = draw(st.lists(st.sampled_from([" ", "\r\n ", "\r\n\t"]), min_size=len(parts)))
        return "".join(p + b for p, b in zip(parts, breaks, strict=False)).rstrip().encode()
    return text.encode("utf-8")


@st.composite
def mailbox(draw: st.DrawFn) -> bytes:
    local = draw(st.sampled_from(["alice", "bob", "c.d+tag", "o'neil"]))
    domain = draw(st.sampled_from(["example.test", "partner.example"]))
    address = f"{local}@{domain}".encode()
    name = draw(st.one_of(st.none(), words))
    if not name:
        return address
    kind = draw(st.sampled_from(["quoted", "encoded"]))
    if kind == "quoted" and name.isascii():
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return b'"' + quoted.encode() + b'" <' + address + b">"
    encoded_name = email.header.Header(name, "utf-8").encode(linesep="\r\n").encode("ascii")
    return encoded_name + b" <" + address + b">"


@st.composite
def message(draw: st.DrawFn) -> bytes:
    """A submitted message: the fields a writer sets, in some order, and a body."""
    fields: list[tuple[str, bytes]] = [
        ("From", draw(mailbox())),
        ("To", b", ".join(draw(st.lists(mailbox(), min_size=1, max_size=4)))),
        ("Subject", draw(encoded(draw(st.one_of(words, odd))))),
        (
            "Date",
            email.utils.format_datetime(
                draw(
                    st.datetimes(
                        min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2100, 1, 1)
                    )
                ).replace(tzinfo=dt.timezone(dt.timedelta(minutes=draw(st.integers(-720, 840)))))
            ).encode(),
        ),
        ("Message-ID", b"<" + draw(st.sampled_from([b"a.1", b"x-y_z", b"9"])) + b"@example.test>"),
    ]
    for name in ("Cc", "Reply-To", "Bcc"):
        if draw(st.booleans()):
            fields.append((name, b",\r\n ".join(draw(st.lists(mailbox(), min_size=1, max_size=3)))))
    fields = draw(st.permutations(fields))
    content = draw(
        st.sampled_from(
            [
                b"",
                b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n",
                b'Content-Type: multipart/alternative;\r\n boundary="b; hp=cipher"\r\n',
            ]
        )
    )
    body = (
        b"--b; hp=cipher\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b; hp=cipher--\r\n"
        if b"multipart" in content
        else "Grüße\r\n".encode()
    )
    head = b"".join(name.encode() + b": " + value + b"\r\n" for name, value in fields)
    return head + b"MIME-Version: 1.0\r\n" + content + b"\r\n" + body


@given(raw=message())
def test_the_signed_fields_read_back_as_the_sent_message_shows_them(raw: bytes) -> None:
    sent = parse(raw)
    outer, entity = copy_of(raw)
    assert header_protection.is_protected(entity)
    assert entity.get_param("hp") == "cipher" and entity.get_param("protected-headers") == "v1"
    protected = {n: reading.shown(v) for n, v in header_protection.shown(entity, SHOWN).items()}
    # As the delivered copy shows its outer fields (the reader before RFC 9788), exactly;
    # Bcc never inside.
    assert protected == {n: reading.shown(outer[n]) for n in SHOWN if outer[n] is not None}
    # As the sent message showed them, but for white space at either end of a field
    # (which the gateway's rebuilt fields drop, outside and inside alike).
    as_sent = {n: reading.shown(sent[n]) for n in reading.HEADERS_SHOWN if sent[n] is not None}
    assert {n: v.strip() for n, v in protected.items()} == {
        n: v.strip() for n, v in as_sent.items()
    }
    # The outer fields are the ones recorded: a message of ours never reads as changed.
    assert not header_protection.arrived_otherwise(outer, entity)
    # The entity is the message's own: same type, same boundary, same body.
    assert entity.get_content_type() == sent.get_content_type()
    assert entity.get_boundary() == sent.get_boundary()
    assert entity.get_body(("plain",)).get_content() == sent.get_body(("plain",)).get_content()  # type: ignore[union-attr]


@given(raw=message(), name=st.sampled_from(header_protection.COMPARED), value=mailbox())
def test_any_changed_outer_field_is_noticed(raw: bytes, name: str, value: bytes) -> None:
    """A replayed signed part under one field changed: the reader notices it."""
    outer, entity = copy_of(raw)
    before = outer[name]
    del outer[name]
    changed = value if name != "Date" else b"Thu, 01 Jan 2099 00:00:00 +0000"
    outer[name] = changed.replace(b"\r\n", b"").decode()
    if before is not None and header_protection._normal(name, [before]) == (
        header_protection._normal(name, [outer[name]])
    ):
        return  # drew the same value again
    assert header_protection.arrived_otherwise(outer, entity)


def test_without_records_the_protected_fields_are_the_measure() -> None:
    """Legacy protected headers (Autocrypt's `protected-headers="v1"`, or `hp` without
    HP-Outer) carry no records: the outer fields are compared with the signed ones."""
    entity = parse(
        b'Content-Type: text/plain; hp="clear"\r\nFrom: a@example.test\r\nTo: b@example.test\r\n'
        b"Subject: signed\r\nDate: Mon, 2 Mar 2026 10:00:00 +0100\r\n\r\nx\r\n"
    )
    same = parse(
        b'From: "A" <a@example.test>\r\nTo: B@example.test\r\nSubject:  signed\r\n'
        b"Date: Mon, 02 Mar 2026 09:00:00 +0000\r\n\r\n"
    )
    other = parse(
        b"From: a@example.test\r\nTo: b@example.test\r\nSubject: new terms\r\n"
        b"Date: Mon, 2 Mar 2026 10:00:00 +0100\r\n\r\n"
    )
    assert not header_protection.arrived_otherwise(same, entity)
    assert header_protection.arrived_otherwise(other, entity)


def test_a_submitted_claim_of_protection_is_not_carried_in() -> None:
    """An `hp` parameter or HP-Outer field in the submitted message is the writer's
    word about a header the gateway builds: the gateway's own replaces it."""
    raw = (
        b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: s\r\n"
        b"HP-Outer: Subject: something else\r\n"
        b'Content-Type: text/plain; HP = "clear"; charset=utf-8;\r\n protected-headers=v2;'
        b' name="a; hp=b"\r\n\r\nx\r\n'
    )
    entity = pgpmime.inner_entity(raw, protect_headers=True)
    fields = {f.name: f for f in rawheaders.iter_headers(rawheaders.header_block(entity))}
    assert fields["Content-Type"].clean_value == (
        b'text/plain; charset=utf-8; name="a; hp=b"; hp="cipher"; protected-headers="v1"'
    )
    records = [f.clean_value for f in rawheaders.iter_headers(entity) if f.name == "HP-Outer"]
    assert records == [b"From: alice@example.test", b"To: bob@example.test", b"Subject: s"]
    parsed = parse(entity)
    assert parsed.get_param("hp") == "cipher" and parsed.get_param("name") == "a; hp=b"


@pytest.mark.parametrize("protect", [False, True])
def test_unsigned_entities_stay_as_they_were(protect: bool) -> None:
    """Secure pages, delivery reports and their replies carry no signature, so no claim
    about header fields: their entity is what it always was."""
    raw = b"From: a@example.test\r\nSubject: s\r\nX-Note: n\r\n\r\nbody\r\n"
    entity = pgpmime.inner_entity(raw, protect_headers=protect)
    if protect:
        assert entity.startswith(header_protection.DEFAULT_CONTENT_TYPE)
        assert b"Subject: s\r\n" in entity and b"HP-Outer: Subject: s\r\n" in entity
    else:
        assert entity == b"Content-Type: text/plain; charset=us-ascii\r\nX-Note: n\r\n\r\nbody\r\n"


@given(raw=message())
def test_every_field_the_gateway_signs_may_be_listed_in_clear(raw: bytes) -> None:
    """Its policy keeps every field readable outside (hcp_no_confidentiality): the list
    may show each signed field (gateway.reading sets the list columns from them)."""
    _outer, entity = copy_of(raw)
    assert header_protection.in_clear(entity) == {n.lower() for n in header_protection.COMPARED}


def test_a_field_the_writer_kept_confidential_is_not_listed_in_clear() -> None:
    """A writer that hid its Subject (RFC 9788 hcp_baseline: `[...]` outside) meant it
    kept off every clear store; with no records at all, intent cannot be told."""
    hidden = parse(
        b'Content-Type: text/plain; hp="cipher"\r\nFrom: a@example.test\r\nTo: b@example.test\r\n'
        b"Subject: the real plans\r\nHP-Outer: From: a@example.test\r\n"
        b"HP-Outer: To: b@example.test\r\nHP-Outer: Subject: [...]\r\n\r\nx\r\n"
    )
    assert header_protection.in_clear(hidden) == {"from", "to", "cc", "reply-to", "date"}
    legacy = parse(
        b'Content-Type: text/plain; hp="clear"\r\nFrom: a@example.test\r\n'
        b"Subject: signed\r\n\r\nx\r\n"
    )
    assert header_protection.in_clear(legacy) == frozenset()
