"""Raw 8-bit bytes in a mailbox name are refused, not read as Latin-1.

Threat: an earlier outside probe sent `CREATE "Café"` in raw UTF-8 without ENABLE
UTF8=ACCEPT (RFC 6855). pymap read each byte as the Latin-1 character of that value
and made a folder "CafÃ©" that no other mail program nor the webmail would show as
"Café", and `SELECT` with the same bytes opened whatever folder carried that mangled
name. RFC 3501 §5.1.3 makes mailbox names 7-bit (modified UTF-7); this server offers no
UTF8=ACCEPT, so such a name gets a BAD that says why, and nothing is created, selected,
renamed or written. Python's imaplib sends the bytes as given, over implicit TLS.
"""

from __future__ import annotations

import imaplib
import ssl
from collections.abc import Iterator

import pytest

from gateway import accounts, db
from gateway.imap import store
from gateway.imap.server import ImapServer
from gateway.runtime import Runtime
from tests.gateway.imap.conftest import ALICE, deliver, plain

CAFE_UTF8 = b'"Caf\xc3\xa9"'
CAFE_MUTF7 = b'"Caf&AOk-"'
MANGLED = "Caf\u00c3\u00a9"  # what pymap made of CAFE_UTF8
MANGLED_MUTF7 = b'"Caf&AMMAqQ-"'


@pytest.fixture
def client(
    imap_server: ImapServer, mail_users: dict[str, str], client_ssl_context: ssl.SSLContext
) -> Iterator[imaplib.IMAP4_SSL]:
    c = imaplib.IMAP4_SSL("127.0.0.1", imap_server.tls_port, ssl_context=client_ssl_context)
    typ, _ = c.login(ALICE, mail_users[ALICE])
    assert typ == "OK"
    yield c
    c.logout()


def folder_names(runtime: Runtime) -> set[str]:
    with db.transaction(runtime.sessions) as session:
        row = accounts.find_address(session, ALICE)
        assert row is not None
        return {f.name for f in store.list_folders(session, row.account_id)}


def refusal(client: imaplib.IMAP4_SSL, command: str, *args: bytes) -> str:
    """The server's BAD (imaplib raises it) or NO text for `command`; fails on OK."""
    try:
        typ, data = client._simple_command(command, *args)
    except imaplib.IMAP4.error as exc:
        return str(exc)
    assert typ == "NO", (typ, data)
    return " ".join(d.decode() for d in data if isinstance(d, bytes))


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("CREATE", (CAFE_UTF8,)),
        ("SELECT", (CAFE_UTF8,)),
        ("EXAMINE", (CAFE_UTF8,)),
        ("DELETE", (CAFE_UTF8,)),
        ("RENAME", (b"Trash", CAFE_UTF8)),
        ("RENAME", (CAFE_UTF8, b"Other")),
        ("SUBSCRIBE", (CAFE_UTF8,)),
        ("STATUS", (CAFE_UTF8, b"(MESSAGES)")),
        ("LIST", (b'""', CAFE_UTF8)),
        ("CREATE", (b'"Projekte/\xc3\xbcbersicht"',)),
        ("CREATE", (b'"Caf\xe9"',)),  # Latin-1 itself
    ],
)
def test_a_raw_8_bit_name_gets_bad_saying_why_and_nothing_changes(
    client: imaplib.IMAP4_SSL, runtime: Runtime, command: str, args: tuple[bytes, ...]
) -> None:
    before = folder_names(runtime)
    text = refusal(client, command, *args)
    assert "BAD" in text and "7-bit" in text and "modified UTF-7" in text, text
    assert folder_names(runtime) == before
    assert client.noop()[0] == "OK"


def test_a_raw_8_bit_name_does_not_select_the_mangled_folder(
    client: imaplib.IMAP4_SSL, runtime: Runtime
) -> None:
    """A folder that carries the Latin-1 reading of the bytes (made before the fix, or
    named so on purpose) is not what the raw bytes open."""
    assert client._simple_command("CREATE", MANGLED_MUTF7)[0] == "OK"
    assert MANGLED in folder_names(runtime)
    deliver(runtime, ALICE, plain("in the mangled folder"), folder=MANGLED)
    assert "7-bit" in refusal(client, "SELECT", CAFE_UTF8)
    client.state = "SELECTED"  # imaplib checks states itself: let the server answer
    assert "Must select a mailbox first" in refusal(client, "FETCH", b"1", b"(UID)")
    client.state = "AUTH"


def test_a_raw_8_bit_append_target_gets_bad_and_stores_nothing(
    client: imaplib.IMAP4_SSL, runtime: Runtime
) -> None:
    with pytest.raises(imaplib.IMAP4.error, match="7-bit"):
        client.append(CAFE_UTF8, "", None, plain("appended"))  # type: ignore[arg-type]
    assert "Café" not in folder_names(runtime) and MANGLED not in folder_names(runtime)
    assert client.noop()[0] == "OK"


def test_the_same_name_in_modified_utf_7_is_created_as_written(
    client: imaplib.IMAP4_SSL, runtime: Runtime
) -> None:
    assert client._simple_command("CREATE", CAFE_MUTF7)[0] == "OK"
    assert "Café" in folder_names(runtime)
    typ, data = client.list('""', "Caf*")
    assert typ == "OK" and data == [b'(\\HasNoChildren) "/" Caf&AOk-'], data
    assert client.select(CAFE_MUTF7.decode())[0] == "OK"


def test_utf8_accept_is_neither_offered_nor_enabled(client: imaplib.IMAP4_SSL) -> None:
    """Raw UTF-8 names would be right after ENABLE UTF8=ACCEPT (RFC 6855 §3); the server
    does not offer it, refuses to enable it, and so still refuses raw names after."""
    capabilities = client.capabilities
    assert "ENABLE" not in capabilities, capabilities
    assert not any(c.startswith("UTF8=") for c in capabilities), capabilities
    assert "BAD" in refusal(client, "ENABLE", b"UTF8=ACCEPT")
    assert "7-bit" in refusal(client, "CREATE", CAFE_UTF8)
