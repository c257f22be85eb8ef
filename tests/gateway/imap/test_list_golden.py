"""LIST and LSUB answers written as bytes (`gateway.imap.listlines`) are pymap's, byte
for byte.

The invariant: for any set of folders (nested, with spaces, quotes, backslashes,
wildcard characters, "&", non-ASCII letters, names that are INBOX in another case),
subscribed or not, and any pattern, the server's answer on the wire is what pymap's
own path wrote before: its `ListTree` and regular expressions, one `ListResponse` per
entry, the special-use attributes added. The line formatting is also checked alone
over arbitrary names, including what no folder may be called.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pymap.listtree import ListTree
from pymap.parsing.modutf7 import modutf7_encode
from pymap.parsing.response import ResponseOk
from pymap.parsing.response.specials import ListResponse, LSubResponse

from gateway import accounts, db
from gateway.imap import folders, modutf7, store
from gateway.imap.listlines import ListLines, list_line, mailbox_bytes
from gateway.imap.server import ImapServer
from gateway.imap.store import FolderInfo
from gateway.models import MailFolder
from gateway.runtime import Runtime
from tests.gateway.imap.conftest import ALICE

ATTRIBUTES = [b"Noselect", b"HasChildren", b"HasNoChildren", b"Marked", b"Sent", b"Trash"]
# Characters a folder name may hold, the awkward ones often: every way pymap writes a
# name (atom, quoted with escapes, modified UTF-7 with its "&" quirk) comes up.
NAME_CHARS = st.one_of(
    st.sampled_from('ab/ &"\\%*]{}()~-.'),
    st.sampled_from("éüß日本€😀\u00a0\u200b"),
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.characters(min_codepoint=0xA0, max_codepoint=0x1FFFF, codec="utf-8"),
)
any_name = st.text(st.characters(codec="utf-8", blacklist_characters="\x00"), max_size=30)


def pymap_reads_back(name: str) -> bool:
    """Whether pymap's own encoding of `name` decodes to it (not so for an "&" right
    after a non-ASCII run, which pymap writes bare)."""
    try:
        return modutf7.decode(modutf7_encode(name)) == name
    except ValueError:
        return False


@given(any_name)
@example("日&x")
@example("&日")
@example("日&")
@example("é&&-x")
def test_a_name_comes_back_as_itself_and_as_pymap_wrote_it_where_pymap_was_right(
    name: str,
) -> None:
    assume(not any(c < " " or c == "\x7f" for c in name))  # refused as names by decode
    encoded = modutf7.encode(name)
    assert modutf7.decode(encoded) == name
    assert encoded.isascii()
    if pymap_reads_back(name):
        assert encoded == modutf7_encode(name)


def test_an_ampersand_after_a_non_ascii_run_is_written_as_rfc_3501_asks() -> None:
    assert modutf7.encode("日&x") == b"&ZeU-&-x"
    assert modutf7.encode("Entwürfe & Co") == b"Entw&APw-rfe &- Co"


@given(
    kind=st.sampled_from([b"LIST", b"LSUB"]),
    name=st.one_of(any_name, st.sampled_from(["INBOX", "inbox", "ınbox", "", "]", "a b"])),
    delimiter=st.sampled_from(["/", ".", '"', "\\", "é", "", None]),
    attributes=st.lists(st.sampled_from(ATTRIBUTES), max_size=3),
)
def test_a_line_is_pymaps_list_response(
    kind: bytes, name: str, delimiter: str | None, attributes: list[bytes]
) -> None:
    assume(pymap_reads_back(name))  # else pymap's line holds a name that cannot be sent back
    response = (LSubResponse if kind == b"LSUB" else ListResponse)(name, delimiter, attributes)
    assert list_line(kind, name, delimiter, attributes) == bytes(response)
    lines = ListLines(kind, [(name, delimiter, attributes)])
    assert bytes(lines) == bytes(response) and lines.text == response.text


def test_mailbox_bytes_quotes_what_is_no_atom() -> None:
    assert mailbox_bytes("Archiv/2026") == b"Archiv/2026"
    assert mailbox_bytes('say "hi" \\ bye') == b'"say \\"hi\\" \\\\ bye"'
    assert mailbox_bytes("Entwürfe") == b"Entw&APw-rfe"
    assert mailbox_bytes("inbox") == b"INBOX"


def pymap_answer(
    tag: bytes, command: bytes, ref: str, pattern: str, infos: list[FolderInfo]
) -> bytes:
    """What the server wrote before: pymap's `BaseSession.list_mailboxes` (ListTree and
    its regular expressions), the special uses added, one `ListResponse` per entry."""
    subscribed = command == b"LSUB"
    if pattern:
        names = [f.name for f in infos if f.subscribed or not subscribed]
        tree = ListTree(folders.DELIMITER).update(folders.INBOX, *names)
        entries = [
            (e.name, folders.DELIMITER, e.attributes) for e in tree.list_matching(ref, pattern)
        ]
    else:
        entries = [("", folders.DELIMITER, [b"Noselect"])]
    special = {f.name: f.special_use for f in infos}
    response = ResponseOk(tag, command + b" completed.")
    kind = LSubResponse if subscribed else ListResponse
    for name, delimiter, attributes in entries:
        use = special.get(name, "")
        response.add_untagged(
            kind(name, delimiter, [*attributes, use.encode()] if use else attributes)
        )
    return bytes(response)


def test_a_name_with_an_ampersand_after_a_non_ascii_run_is_listed_as_it_can_be_selected(
    connection: ssl.SSLSocket,
) -> None:
    connection.sendall(b'c CREATE "&ZeU-&-x"\r\n')
    assert b"c OK" in read_answer(connection, b"c")
    connection.sendall(b'l LIST "" "*"\r\n')
    listed = read_answer(connection, b"l")
    assert b'* LIST (\\HasNoChildren) "/" &ZeU-&-x\r\n' in listed
    connection.sendall(b"s SELECT &ZeU-&-x\r\n")
    assert b"s OK" in read_answer(connection, b"s")
    connection.sendall(b's STATUS "&ZeU-&-x" (MESSAGES)\r\n')
    assert b"* STATUS &ZeU-&-x (MESSAGES 0)" in read_answer(connection, b"s")


def quoted(value: str) -> bytes | None:
    """`value` as a quoted IMAP string in modified UTF-7; None if it does not come back
    as itself (pymap's encoder writes an "&" after a non-ASCII run bare)."""
    raw = modutf7_encode(value)
    try:
        if modutf7.decode(raw) != value:
            return None
    except ValueError:
        return None
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


@pytest.fixture
def connection(
    imap_server: ImapServer, mail_users: dict[str, str], client_ssl_context: ssl.SSLContext
) -> Iterator[ssl.SSLSocket]:
    raw = socket.create_connection(("127.0.0.1", imap_server.tls_port))
    with client_ssl_context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.settimeout(20)
        read_answer(sock, b"*")
        sock.sendall(b'a LOGIN "%s" "%s"\r\n' % (ALICE.encode(), mail_users[ALICE].encode()))
        assert b"a OK" in read_answer(sock, b"a")
        yield sock


def read_answer(sock: ssl.SSLSocket, tag: bytes) -> bytes:
    """All the server sends up to and with the line tagged `tag`."""
    data = b""
    end = re.compile(rb"(^|\r\n)" + re.escape(tag) + rb" [^\r\n]*\r\n$")
    while not end.search(data):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def set_folders(runtime: Runtime, names: list[str], unsubscribed: set[str]) -> list[FolderInfo]:
    """Alice's folders become the special ones and `names`; as the server lists them."""
    with db.transaction(runtime.sessions) as session:
        row = accounts.find_address(session, ALICE)
        assert row is not None
        session.execute(
            sa.delete(MailFolder).where(
                MailFolder.account_id == row.account_id,
                MailFolder.name.not_in(list(folders.SPECIAL_FOLDERS)),
            )
        )
        folders.ensure_folders(session, row.account_id, *names)
        session.execute(
            sa.update(MailFolder)
            .where(MailFolder.account_id == row.account_id)
            .values(subscribed=MailFolder.name.not_in(list(unsubscribed) or [""]))
        )
        return store.list_folders(session, row.account_id)


folder_name = st.one_of(
    st.text(NAME_CHARS, min_size=1, max_size=12),
    st.lists(st.text(NAME_CHARS, min_size=1, max_size=8), min_size=2, max_size=4).map("/".join),
    st.sampled_from(["inbox", "Inbox/Sub", "INBOX/child", "Sent/2026", "a", "a/b", "a/b/c"]),
)
pattern = st.one_of(
    st.sampled_from(["*", "%", "%/%", "a*", "a/%", "*b*", "INBOX", "inbox", "inb%", "", "Sent*"]),
    st.text(st.sampled_from("ab/&*% é日"), max_size=8),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    names=st.lists(folder_name, max_size=25, unique=True),
    data=st.data(),
    command=st.sampled_from([b"LIST", b"LSUB"]),
)
def test_the_answer_on_the_wire_is_what_pymap_wrote(
    runtime: Runtime,
    connection: ssl.SSLSocket,
    names: list[str],
    data: st.DataObject,
    command: bytes,
) -> None:
    names = [n for n in names if n not in folders.SPECIAL_FOLDERS]
    unsubscribed = set(data.draw(st.lists(st.sampled_from([*names, "Trash", "Sent"]))))
    ref = data.draw(st.sampled_from(["", "a/", "Inbox/", *[n + "/" for n in names[:3]]]))
    wanted = data.draw(pattern)
    wire_ref, wire_pattern = quoted(ref), quoted(wanted)
    if wire_ref is None or wire_pattern is None:
        wire_ref, wire_pattern = b'""', b'"*"'
        ref, wanted = "", "*"
    infos = set_folders(runtime, names, unsubscribed)
    connection.sendall(b"t %b %b %b\r\n" % (command, wire_ref, wire_pattern))
    answer = read_answer(connection, b"t")
    assert answer == pymap_answer(b"t", command, ref, wanted, infos)
