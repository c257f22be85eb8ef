"""Python's imaplib against the real server on implicit TLS: the everyday commands."""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
import string
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.imap.notify import Notifier
from gateway.imap.server import ImapServer
from gateway.runtime import Runtime
from tests.conftest import LoopThread
from tests.gateway.imap.conftest import ALICE, deliver, plain, rows


@pytest.fixture
def client(
    imap_server: ImapServer, mail_users: dict[str, str], client_ssl_context: ssl.SSLContext
) -> Iterator[imaplib.IMAP4_SSL]:
    c = imaplib.IMAP4_SSL("127.0.0.1", imap_server.tls_port, ssl_context=client_ssl_context)
    typ, _ = c.login(ALICE, mail_users[ALICE])
    assert typ == "OK"
    yield c
    c.logout()


def test_list_names_the_special_folders(client: imaplib.IMAP4_SSL) -> None:
    assert (
        "SPECIAL-USE" in client.capabilities or b"SPECIAL-USE" in str(client.capability()).encode()
    )
    typ, data = client.list()
    assert typ == "OK"
    listed = {line.decode().rsplit(" ", 1)[1]: line.decode() for line in data if line}
    assert set(listed) == {"INBOX", "Sent", "Drafts", "Trash"}
    assert "\\Sent" in listed["Sent"] and "\\Drafts" in listed["Drafts"]
    assert "\\Trash" in listed["Trash"] and "\\Sent" not in listed["INBOX"]


def test_select_fetch_store_search_move_expunge(
    client: imaplib.IMAP4_SSL, runtime: Runtime
) -> None:
    first = deliver(runtime, ALICE, plain("Quarterly figures", "the numbers are in"))
    deliver(runtime, ALICE, plain("Lunch on Friday", "pizza or sushi"))
    typ, data = client.select("INBOX")
    assert (typ, data) == ("OK", [b"2"])
    typ, data = client.fetch("1:2", "(UID FLAGS ENVELOPE)")
    assert typ == "OK"
    text = b" ".join(d[0] if isinstance(d, tuple) else d for d in data).decode()
    assert f"UID {first} " in text and '"Quarterly figures"' in text and "FLAGS ()" in text

    typ, data = client.fetch("1", "(BODY.PEEK[])")
    assert data[0][1] == plain("Quarterly figures", "the numbers are in")

    assert client.store("1", "+FLAGS", "(\\Flagged $Project)")[0] == "OK"
    typ, data = client.fetch("1", "(FLAGS)")
    assert b"\\Flagged" in data[0] and b"$Project" in data[0]
    assert "\\Flagged" in rows(runtime, ALICE, "INBOX")[0].flags  # shared with the webmail

    assert client.search(None, "BODY", "sushi") == ("OK", [b"2"])
    assert client.search(None, "SUBJECT", "quarterly") == ("OK", [b"1"])
    assert client.search(None, "UNSEEN") == ("OK", [b"1 2"])

    typ, data = client.uid("MOVE", str(first), "Trash")
    assert typ == "OK"
    assert [r.subject for r in rows(runtime, ALICE, "Trash")] == ["Quarterly figures"]
    assert client.select("Trash") == ("OK", [b"1"])
    assert client.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
    typ, data = client.expunge()
    assert (typ, data) == ("OK", [b"1"])
    assert rows(runtime, ALICE, "Trash") == []


def test_append_returns_the_uid_and_keeps_flags(
    client: imaplib.IMAP4_SSL, runtime: Runtime
) -> None:
    typ, data = client.append("Drafts", "(\\Draft \\Seen)", None, plain("Half-written"))
    assert typ == "OK"
    match = re.search(rb"APPENDUID (\d+) (\d+)", data[0])
    assert match is not None
    [row] = rows(runtime, ALICE, "Drafts")
    assert row.uid == int(match.group(2)) and row.subject == "Half-written"
    assert set(row.flags.split()) == {"\\Draft", "\\Seen"}


def test_recent_and_invented_system_flags_are_not_kept(
    client: imaplib.IMAP4_SSL, runtime: Runtime
) -> None:
    """\\Recent is the server's to give (RFC 3501 §2.3.2); \\Bogus is no flag at all."""
    assert client.append("INBOX", "(\\Bogus \\Flagged)", None, plain("Flags"))[0] == "OK"
    assert client.select("INBOX")[0] == "OK"
    assert client.store("1", "+FLAGS", "(\\Recent \\Seen $Work)")[0] == "OK"
    [row] = rows(runtime, ALICE, "INBOX")
    assert set(row.flags.split()) == {"\\Flagged", "\\Seen", "$Work"}


def test_idle_announces_new_mail(client: imaplib.IMAP4_SSL, runtime: Runtime) -> None:
    client.select("INBOX")
    tag = client._new_tag()  # imaplib of Python 3.11 has no idle(); speak it by hand
    client.send(tag + b" IDLE\r\n")
    assert client.readline().startswith(b"+")
    deliver(runtime, ALICE, plain("While you were idling"))
    client.sock.settimeout(10)
    line = client.readline()
    assert line == b"* 1 EXISTS\r\n"
    client.send(b"DONE\r\n")
    while not (line := client.readline()).startswith(tag):
        pass
    assert b"OK" in line


def test_create_rename_delete_a_user_folder(client: imaplib.IMAP4_SSL, runtime: Runtime) -> None:
    deliver(runtime, ALICE, plain("Invoice 17"))
    assert client.create("Projects/Acme")[0] == "OK"
    client.select("INBOX")
    assert client.copy("1", "Projects/Acme")[0] == "OK"
    assert client.rename("Projects/Acme", "Clients/Acme")[0] == "OK"
    [moved] = rows(runtime, ALICE, "Clients/Acme")
    assert moved.subject == "Invoice 17" and moved.uid == 1  # a rename keeps the UIDs
    _typ, data = client.list()
    names = {line.decode().rsplit(" ", 1)[1] for line in data}
    assert "Clients/Acme" in names and "Projects/Acme" not in names
    assert client.delete("Clients/Acme")[0] == "OK"
    assert rows(runtime, ALICE, "Clients/Acme") == []
    assert client.delete("Trash")[0] == "NO"  # special folders stay


def test_a_silent_client_is_logged_out(
    runtime: Runtime, loop_thread: LoopThread, client_ssl_context: ssl.SSLContext
) -> None:
    """Idle connections cannot pile up: silence past [imap] idle_timeout ends in BYE."""
    quick = Runtime.open(runtime.settings.replace(imap={"idle_timeout": 0.5}))
    server = ImapServer(quick, Notifier())
    loop_thread.run(server.start())
    try:
        with (
            socket.create_connection(("127.0.0.1", server.tls_port), timeout=10) as raw,
            client_ssl_context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            greeting = tls.recv(4096)
            assert greeting.startswith(b"* OK")
            rest = b""
            while chunk := tls.recv(4096):
                rest += chunk
        assert rest == b"* BYE Autologout; idle for too long\r\n"
    finally:
        loop_thread.run(server.stop())
        quick.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"From: bob@example.test\r\nSubject: header only\r\nMessage-ID: <h1@example.test>\r\n",
        b"From: bob@example.test\r\nSubject: no blank line\r\nthe text at once\r\n",
        b"From: bob@example.test\r\nSubject: bare CR\r\n\r\nends in a bare CR\r",
    ],
    ids=["header-only", "no-separator", "bare-cr-end"],
)
def test_odd_messages_are_served_whole(
    client: imaplib.IMAP4_SSL, runtime: Runtime, raw: bytes
) -> None:
    """Byte for byte, but for a bare CR or LF, which is served as CRLF (RFC 3501;
    tests/gateway/imap/test_served_line_ends.py)."""
    uid = deliver(runtime, ALICE, raw)
    assert client.select("INBOX")[0] == "OK"
    typ, data = client.uid("FETCH", str(uid), "(RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK"
    head, body = data[0]
    expected = raw[:-1] + b"\r\n" if raw.endswith(b"\r") else raw
    assert body == expected
    assert f"RFC822.SIZE {len(expected)}".encode() in head


_WORDS = st.text(alphabet=string.ascii_letters + string.digits + " .,", max_size=30)
_FIELDS = st.lists(
    st.one_of(
        st.builds(
            "{}: {}".format, st.sampled_from(["From", "Subject", "X-Note", "Received"]), _WORDS
        ),
        st.just("a line that is no field"),
    ),
    min_size=1,
    max_size=5,
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A header, then either nothing more (with or without a last line end) or the
    empty line and a text; CRLF or bare LF line ends."""
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    header = eol.join(draw(_FIELDS))
    ending = draw(st.sampled_from(["no-eol", "eol", "text"]))
    if ending == "no-eol":
        return header.encode()
    if ending == "eol":
        return (header + eol).encode()
    text = draw(st.lists(_WORDS, max_size=4))
    return (header + eol + eol + "".join(line + eol for line in text)).encode()


def fetch_one(client: imaplib.IMAP4_SSL, uid: int, item: str) -> tuple[bytes, bytes]:
    """The FETCH line of one item, and its literal (b"" if it has none)."""
    typ, data = client.uid("FETCH", str(uid), f"({item})")
    assert typ == "OK", data
    first = data[0]
    return first if isinstance(first, tuple) else (first, b"")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=messages())
@example(raw=b"From: bob@example.test\r\nSubject: header only\r\n")
@example(raw=b"From: bob@example.test\r\nSubject: no line end")
@example(raw=b"From: bob@example.test\r\nSubject: plain\r\n\r\nHello.\r\n")
def test_header_and_text_split_the_message_as_rfc_9051_says(
    client: imaplib.IMAP4_SSL, runtime: Runtime, raw: bytes
) -> None:
    """BODY[HEADER] and BODY[TEXT] are the two halves of BODY[]; a message without an
    empty line is all header, and its text is empty (RFC 9051 §6.4.5). Every item that
    reads the text (BODY.PEEK[TEXT], BODY[1], RFC822.TEXT) or the header (BODY[HEADER],
    RFC822.HEADER, which need the header alone) agrees."""
    uid = deliver(runtime, ALICE, raw)
    assert client.select("INBOX")[0] == "OK"
    header = fetch_one(client, uid, "BODY.PEEK[HEADER]")[1]
    text = fetch_one(client, uid, "BODY.PEEK[TEXT]")[1]
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # served with CRLF only
    assert fetch_one(client, uid, "BODY.PEEK[]")[1] == raw
    assert header + text == raw
    assert fetch_one(client, uid, "BODY.PEEK[1]")[1] == text
    assert fetch_one(client, uid, "RFC822.TEXT")[1] == text
    assert fetch_one(client, uid, "RFC822.HEADER")[1] == header
    assert fetch_one(client, uid, "BODY[HEADER]")[1] == header
    if b"\n\n" not in raw.replace(b"\r", b""):
        assert (header, text) == (raw, b"")
