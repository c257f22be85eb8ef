"""The To/Cc/Bcc fields of the webmail: the recipients sent to are exactly the ones typed.

Threats covered: a recipient typed but silently left out of the envelope (a second
address after the first with no comma, a bare CR between two addresses: the old
`parseaddr` split kept only the first); a recipient that was never typed (a display
name or an encoded word carrying an address); a legitimate field refused (a quoted
display name with a comma, the empty group `undisclosed-recipients:;`, a quoted
local part `"john doe"@example.com`); the names the user typed lost, or written so a
reader decodes them as something else; a quoted local part that changes on the way
to the header or the envelope, or carries a line break, a NUL or an open quote there.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import getaddresses

import pytest
from aiosmtplib.email import quote_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import compose
from gateway.addresses import unquote_local_part
from gateway.compose import ComposeError, Outgoing

NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
ALICE = "alice@example.test"


def parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.mark.parametrize(
    "typed",
    [
        "Bob <bob@example.test> eve@evil.example",
        "bob@example.test eve@evil.example",
        "bob@example.test\reve@evil.example",
        "bob@example.test <eve@evil.example>",
        "alice@example.org)<bob@example.org>",
        "Bob <bob@example.test",
        "bob@example.test\u2028eve@evil.example",
        "bob@example.test\x85eve@evil.example",
        "bob@example.test\x00",
        "<>",
        "bob@example.test: eve@evil.example",
        "Bob <bob@example.test>: eve@evil.example",
    ],
)
def test_a_field_that_does_not_say_exactly_whom_is_refused_or_split_whole(typed: str) -> None:
    """Each typed address is in the answer, or the field is refused: never one dropped."""
    try:
        found = compose.parse_addresses(typed)
    except ComposeError:
        return
    typed_addresses = set(re.findall(r"[\w.+-]+@[\w.-]+\.[a-z]+", typed))
    assert {a.lower() for a in found} == {a.lower() for a in typed_addresses}


def test_a_bare_cr_separates_like_a_line_end() -> None:
    assert compose.parse_addresses("bob@example.test\rcarol@example.test") == [
        "bob@example.test",
        "carol@example.test",
    ]


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ('"Doe, John" <john@example.test>', ["john@example.test"]),
        ("undisclosed-recipients:;", []),
        ("friends: a@example.test, b@example.test;", ["a@example.test", "b@example.test"]),
        ("a@example.test; b@example.test", ["a@example.test", "b@example.test"]),
        ("Bob (work) <bob@example.test>", ["bob@example.test"]),
        ('"Eve; x" <eve@example.test>; c@example.test', ["eve@example.test", "c@example.test"]),
    ],
)
def test_legitimate_fields_give_their_addresses(typed: str, expected: list[str]) -> None:
    assert compose.parse_addresses(typed) == expected


def test_an_encoded_word_never_becomes_an_address() -> None:
    """Decoded, this name holds a comma and an address of its own: it stays text."""
    with pytest.raises(ComposeError):
        compose.parse_addresses("=?utf-8?q?Eve=2C_<e@evil.example>?= <b@example.test>")
    assert compose.display_names('"=?utf-8?q?Eve=2C_e@evil.example?=" <b@example.test>') == {
        "b@example.test": "= ?utf-8?q?Eve=2C_e@evil.example?="
    }


def test_display_names_typed_are_sent_encoded_and_no_address_comes_from_a_name() -> None:
    to = '"Doe, John" <john@example.test>, Jörg Müller <joerg@example.test>'
    cc = '"=?utf-8?q?Eve_<e@evil.example>?=" <b@example.test>'
    outgoing = Outgoing(
        sender=ALICE,
        to=compose.parse_addresses(to),
        cc=compose.parse_addresses(cc),
        names=compose.display_names(to, cc),
    )
    raw = compose.build(outgoing, now=NOW)
    header = raw.split(b"\r\n\r\n", 1)[0]
    assert header.isascii()  # the non-ASCII name as an RFC 2047 encoded word
    message = parsed(raw)
    assert [(a.display_name, a.addr_spec) for a in message["To"].addresses] == [
        ("Doe, John", "john@example.test"),
        ("Jörg Müller", "joerg@example.test"),
    ]
    (cc_address,) = message["Cc"].addresses
    assert cc_address.addr_spec == "b@example.test"
    assert "e@evil.example" not in {a for _n, a in getaddresses([str(message["Cc"])])}


# Printable and awkward pieces for address fields: names with specials, quotes,
# separators, non-ASCII, line separators and controls.
_PIECES = st.sampled_from(
    [
        "a@example.test",
        "B.c+d@example.test",
        "x@bücher.example",
        "Bob",
        '"Doe, John"',
        '"a;b"',
        "<",
        ">",
        "(c)",
        ",",
        ";",
        ":",
        " ",
        "\n",
        "\r",
        "\u2028",
        "\x85",
        "\x00",
        "=?utf-8?q?x=0Aeve@evil.example?=",
        "eve@evil.example",
        "Zoë",
        "@",
        '"',
        "\\",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PIECES, max_size=12).map("".join), st.lists(_PIECES, max_size=8).map("".join))
def test_recipients_of_the_message_are_exactly_the_ones_typed(to: str, bcc: str) -> None:
    """Generative: whatever the fields hold, either a refusal, or a message whose To
    names exactly the parsed addresses, whose envelope is exactly those and the Bcc,
    and whose header has no field the form did not ask for."""
    try:
        to_list = compose.parse_addresses(to)
        bcc_list = compose.parse_addresses(bcc)
        names = compose.display_names(to, bcc)
    except ComposeError:
        return
    for address in to_list + bcc_list:
        assert address.count("@") == 1
        assert address in to + bcc or "xn--" in address  # an IDN domain as its A-label
    outgoing = Outgoing(sender=ALICE, to=to_list, bcc=bcc_list, names=names, subject="s")
    try:
        raw = compose.build(outgoing, now=NOW)
    except ComposeError:
        return
    message = parsed(raw)
    fields = {name.lower() for name in message}
    assert fields <= {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "content-type",
        "content-transfer-encoding",
        "mime-version",
    }
    shown = [a for _n, a in getaddresses(message.get_all("To", []))]
    assert [a.lower() for a in shown] == [a.lower() for a in to_list]
    assert {r.lower() for r in outgoing.recipients} == {a.lower() for a in to_list + bcc_list}
    named = {a.lower() for _n, a in getaddresses(message.get_all("To", []))}
    for address in bcc_list:
        if address.lower() not in {a.lower() for a in to_list}:
            assert address.lower() not in named


def test_an_idn_domain_is_sent_as_its_a_label_when_the_local_part_is_ascii() -> None:
    """bob@bücher.example is bob@xn--bcher-kva.example: written so, the message needs
    no SMTPUTF8 (a relay without it would return it); a non-ASCII local part keeps
    its UTF-8 form (it needs SMTPUTF8 anyway)."""
    to = "Bob <bob@Bücher.example>, jörg@bücher.example"
    assert compose.parse_addresses(to) == ["bob@xn--bcher-kva.example", "jörg@bücher.example"]
    raw = compose.build(
        Outgoing(sender=ALICE, to=compose.parse_addresses("bob@bücher.example")), now=NOW
    )
    assert raw.isascii() and b"To: bob@xn--bcher-kva.example\r\n" in raw
    with pytest.raises(ComposeError):
        compose.parse_addresses("bob@bü_cher.example")


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ('"john doe"@example.com', ['"john doe"@example.com']),
        ('"a@b"@example.com', ['"a@b"@example.com']),
        ('"John Doe" <"john doe"@example.com>', ['"john doe"@example.com']),
        ('"a,b"@example.com, c@example.com', ['"a,b"@example.com', "c@example.com"]),
        ('"a;b"@example.com; c@example.com', ['"a;b"@example.com', "c@example.com"]),
        ('"say \\"hi\\""@example.com', ['"say \\"hi\\""@example.com']),
        ('"back\\\\slash"@example.com', ['"back\\\\slash"@example.com']),
        ('" "@example.com', ['" "@example.com']),
        # The same mailbox as the unquoted one (RFC 5322 3.2.4): spelt once.
        ('"alice"@example.com', ["alice@example.com"]),
        ('"John Doe"@Bücher.example', ['"John Doe"@xn--bcher-kva.example']),
    ],
)
def test_a_quoted_local_part_is_an_address(typed: str, expected: list[str]) -> None:
    assert compose.parse_addresses(typed) == expected


@pytest.mark.parametrize(
    "typed",
    [
        '"john doe@example.com',
        'john"doe@example.com',
        '"john"doe"@example.com',
        '"a"b@example.com',
        '"a".b@example.com',
        '"a\r\nBcc: eve@evil.example"@example.com',
        '"a\nBcc: eve@evil.example"@example.com',
        '"a\rb"@example.com',
        '"a\x00b"@example.com',
        '"a\\\x00b"@example.com',
        '"a\tb"@example.com',
        '"a\x7fb"@example.com',
        '"a\u2028b"@example.com',
        '"jörg doe"@example.com',
        '""@example.com',
        '"a..b"@example.com',
        '".a"@example.com',
        '"a=?b"@example.com',
        '"john doe"@',
        '"john doe"@example',
        '"' + "x y" * 22 + '"@example.com',
    ],
)
def test_a_quoted_local_part_that_is_not_one_plain_line_is_refused(typed: str) -> None:
    with pytest.raises(ComposeError):
        compose.parse_addresses(typed)


_LOCAL_PARTS = st.text(
    st.sampled_from(
        [*"ab Z09.@,;:<>()[]\\\"!#=?%'", "\r", "\n", "\x00", "\t", "\x7f", "ä", "\u2028", "\x85"]
    ),
    max_size=20,
)
# RFC 5321 4.1.2 Dot-string (RFC 6531: UTF-8 beyond ASCII) or Quoted-string: no
# control character, no lone quote or backslash.
_ATEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+"
RFC5321_LOCAL_PART = re.compile(
    rf"{_ATEXT}(?:\.{_ATEXT})*|\"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*\""
)
_DOMAINS = st.sampled_from(["example.com", "Bücher.example", "x.example", "example"])


@settings(max_examples=400, deadline=None)
@given(
    local=_LOCAL_PARTS,
    domain=_DOMAINS,
    form=st.sampled_from(["quoted", "escaped", "bare", "angle"]),
)
def test_an_accepted_address_reaches_header_and_envelope_unchanged(
    local: str, domain: str, form: str
) -> None:
    """Generative: any address the scanner accepts is written into To and Cc exactly as
    it accepted it, is exactly the envelope's recipient (the RCPT TO argument the relay
    writes), and Python's email.headerregistry reads the header back as that mailbox;
    the message has no header field the form did not ask for."""
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    typed = {
        "quoted": f'"{local}"@{domain}',
        "escaped": f'"{escaped}"@{domain}',
        "bare": f"{local}@{domain}",
        "angle": f'Name <"{escaped}"@{domain}>',
    }[form]
    try:
        (address,) = compose.parse_addresses(typed)
    except ComposeError:
        return
    outgoing = Outgoing(sender=ALICE, to=[address], cc=[address.upper()], subject="s")
    raw = compose.build(outgoing, now=NOW)
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    assert f"\r\nTo: {address}\r\n" in head
    assert f"\r\nCc: {address.upper()}\r\n" in head
    message = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
    assert {name.lower() for name in message} == {
        "from", "to", "cc", "subject", "date", "message-id",
        "content-type", "content-transfer-encoding", "mime-version",
    }  # fmt: skip
    (read,) = message["To"].addresses
    local_part, _at, domain_part = address.rpartition("@")
    assert (read.username, read.domain) == (unquote_local_part(local_part), domain_part)
    assert read.addr_spec == address
    assert Address(username=read.username, domain=read.domain).addr_spec == address
    assert outgoing.recipients == [address]
    assert quote_address(address) == f"<{address}>"
    assert RFC5321_LOCAL_PART.fullmatch(local_part), local_part
