"""Clients that break the protocol on purpose: each gets an answer (BAD, NO or BYE), and
the server goes on serving everyone else.

Threats: one line that holds the event loop (and with it every listener of serve),
memory filled by a literal announced and then sent, commands slipped in clear
behind STARTTLS and run as if they came through TLS (RFC 3207 §6 / RFC 9051 §11.1).

The APPEND limit is small here (`APPEND_LIMIT`), so a test can pass it cheaply.
"""

from __future__ import annotations

import base64
import imaplib
import logging
import re
import socket
import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from gateway import accounts, db
from gateway.imap import store
from gateway.imap.folders import (
    MAX_FLAGS_LENGTH,
    MAX_FOLDERS,
    MAX_KEYWORD_LENGTH,
    MAX_NAME_LENGTH,
)
from gateway.imap.notify import Notifier
from gateway.imap.server import COMMAND_ROOM, PRE_LOGIN_COMMAND, ImapServer
from gateway.runtime import Runtime
from tests.conftest import LoopThread
from tests.gateway.imap import conftest
from tests.gateway.imap.conftest import ALICE, BOB, deliver

APPEND_LIMIT = 64 * 1024


@pytest.fixture
def test_env(test_env: dict[str, str]) -> dict[str, str]:
    return {**test_env, "SEALGATE_IMAP_MAX_APPEND_SIZE": str(APPEND_LIMIT)}


def read_until(sock: socket.socket | ssl.SSLSocket, pattern: bytes) -> bytes:
    """What the server sends until `pattern` (a regex) matches, or it closes."""
    sock.settimeout(20)
    data = b""
    while not re.search(pattern, data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def plain(imap_server: ImapServer) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", imap_server.port)) as sock:
        assert read_until(sock, rb"\r\n").startswith(b"* OK")
        yield sock


@pytest.fixture
def logged_in(
    imap_server: ImapServer, mail_users: dict[str, str], client_ssl_context: ssl.SSLContext
) -> Iterator[ssl.SSLSocket]:
    raw = socket.create_connection(("127.0.0.1", imap_server.tls_port))
    with client_ssl_context.wrap_socket(raw, server_hostname="localhost") as sock:
        assert read_until(sock, rb"\r\n").startswith(b"* OK")
        sock.sendall(b'a LOGIN "%s" "%s"\r\n' % (ALICE.encode(), mail_users[ALICE].encode()))
        assert b"a OK" in read_until(sock, rb"a (OK|NO|BAD)")
        yield sock


def still_serving(imap_server: ImapServer) -> bool:
    with socket.create_connection(("127.0.0.1", imap_server.port), timeout=10) as sock:
        assert read_until(sock, rb"\r\n").startswith(b"* OK")
        sock.sendall(b"z CAPABILITY\r\n")
        return b"z OK" in read_until(sock, rb"z (OK|NO|BAD)")


@pytest.mark.parametrize("name", [b'"&ZZZ"', b'"a&"', b'"&2D3-"', b"&Jjo!-"])
def test_a_malformed_mailbox_name_gets_bad_before_and_after_login(
    imap_server: ImapServer, plain: socket.socket, logged_in: ssl.SSLSocket, name: bytes
) -> None:
    plain.sendall(b"a1 SELECT " + name + b"\r\n")
    assert re.search(rb"a1 (BAD|NO)", read_until(plain, rb"a1 (OK|NO|BAD)"))
    logged_in.sendall(b"b1 SELECT " + name + b"\r\nb2 CREATE " + name + b"\r\nb3 NOOP\r\n")
    answer = read_until(logged_in, rb"b3 (OK|NO|BAD)")
    assert re.search(rb"b1 BAD", answer) and re.search(rb"b2 BAD", answer), answer
    assert b"SERVERBUG" not in answer
    assert still_serving(imap_server)


@pytest.mark.parametrize(
    "command",
    [
        b"SEARCH SUBJECT {3+}\r\na\x00b",
        b"STORE 1 +FLAGS (a\x00b)",
        b'SEARCH TEXT "\xff\xfe"',
        b"SEARCH " + b"(" * 3000 + b"ALL" + b")" * 3000,
        b"SEARCH " + b"OR " * 3000 + b"ALL " * 3001,
    ],
    ids=["nul-literal", "nul-flag", "undecodable", "nested", "or-chain"],
)
def test_an_unparseable_search_gets_bad_and_the_session_goes_on(
    logged_in: ssl.SSLSocket, command: bytes
) -> None:
    logged_in.sendall(b"s SELECT INBOX\r\n")
    read_until(logged_in, rb"s (OK|NO|BAD)")
    logged_in.sendall(b"t " + command + b"\r\nu NOOP\r\n")
    answer = read_until(logged_in, rb"u (OK|NO|BAD)")
    assert b"t BAD" in answer and b"u OK" in answer, answer[-300:]


BAD_LIMIT = 10


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(runs=st.lists(st.integers(0, BAD_LIMIT + 1), min_size=1, max_size=4))
@example(runs=[BAD_LIMIT])
@example(runs=[BAD_LIMIT - 1, BAD_LIMIT - 1])
def test_bad_commands_in_a_row_end_the_session_with_bye(
    imap_server: ImapServer, runs: list[int]
) -> None:
    """Ten BAD replies in a row, and the server says BYE (RFC 9051 §3.4: not in silence)
    before it closes; a command answered otherwise starts the count again. `runs`: how
    many bad commands in a row, each run followed by a good one."""
    bad = [is_bad for run in runs for is_bad in [True] * run + [False]]
    with socket.create_connection(("127.0.0.1", imap_server.port)) as sock:
        assert read_until(sock, rb"\r\n").startswith(b"* OK")
        in_a_row = 0
        for index, is_bad in enumerate(bad):
            tag = b"c%d" % index
            sock.sendall(tag + (b" BLAH\r\n" if is_bad else b" NOOP\r\n"))
            answer = read_until(sock, tag + rb" (OK|NO|BAD)[^\n]*\n")
            assert answer.startswith(tag + (b" BAD" if is_bad else b" OK")), answer
            in_a_row = in_a_row + 1 if is_bad else 0
            if in_a_row == BAD_LIMIT:
                answer += read_until(sock, rb"never")  # all until the server closes
                assert re.fullmatch(tag + rb" BAD [^\n]*\n\* BYE [^\n]+\r\n", answer), answer
                return
        sock.sendall(b"z LOGOUT\r\n")
        assert b"z OK" in read_until(sock, rb"z (OK|NO|BAD)")


def test_commands_pipelined_behind_starttls_end_the_connection(
    imap_server: ImapServer,
    plain: socket.socket,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    password = mail_users[ALICE].encode()
    plain.sendall(b"a STARTTLS\r\nb LOGIN " + ALICE.encode() + b" " + password + b"\r\n")
    assert b"a OK" in read_until(plain, rb"a (OK|NO|BAD)[^\n]*\n")
    # The server closes instead of running `b` inside TLS: nothing comes back.
    try:
        with client_ssl_context.wrap_socket(plain, server_hostname="localhost") as tls:
            tls.sendall(b"c NOOP\r\n")
            answer = read_until(tls, rb"c (OK|NO|BAD)")
    except OSError:  # ssl.SSLError and ConnectionError included
        answer = b""
    assert answer == b""
    assert still_serving(imap_server)


def test_a_clean_starttls_still_works(
    imap_server: ImapServer, client_ssl_context: ssl.SSLContext, mail_users: dict[str, str]
) -> None:
    with imaplib.IMAP4("127.0.0.1", imap_server.port) as client:
        client.starttls(client_ssl_context)
        assert client.login(ALICE, mail_users[ALICE])[0] == "OK"


def test_a_literal_beyond_the_pre_login_limit_is_refused_unread(plain: socket.socket) -> None:
    plain.sendall(b"a LOGIN {%d+}\r\n" % (PRE_LOGIN_COMMAND + 1))
    answer = read_until(plain, rb"BYE[^\n]*\n")
    assert b"* BYE [TOOBIG]" in answer
    assert read_until(plain, rb"never") == b""  # closed


def test_a_synchronizing_literal_beyond_the_limit_gets_no_go_ahead(plain: socket.socket) -> None:
    plain.sendall(b"a LOGIN {%d}\r\n" % (10 * PRE_LOGIN_COMMAND))
    answer = read_until(plain, rb"\n")
    assert not answer.startswith(b"+")  # no go-ahead: the client never sends it
    assert answer.startswith((b"a BAD", b"* BYE [TOOBIG]")), answer


@contextmanager
def session(
    imap_server: ImapServer, password: str | None, tls: ssl.SSLContext
) -> Iterator[ssl.SSLSocket]:
    """A connection of its own, logged in as Alice with INBOX selected, or not at all."""
    raw = socket.create_connection(("127.0.0.1", imap_server.tls_port))
    with tls.wrap_socket(raw, server_hostname="localhost") as sock:
        assert read_until(sock, rb"\r\n").startswith(b"* OK")
        if password is not None:
            sock.sendall(
                b'a LOGIN "%s" "%s"\r\nb SELECT INBOX\r\n' % (ALICE.encode(), password.encode())
            )
            assert b"b OK" in read_until(sock, rb"b (OK|NO|BAD)[^\n]*\n")
        yield sock


# Where a client can put a number: the literal counts before and after a line's end
# ({n+} is read with the line, {n} waits for the go-ahead), and plain numbers.
NUMBER_PLACES = [
    b"LOGIN {%b+}\r\n",
    b"LOGIN {%b}\r\n",
    b"LOGIN {1+}\r\nx {%b+}\r\n",
    b"LOGIN {1+}\r\nx {%b}\r\n",
    b"APPEND INBOX {%b+}\r\n",
    b"APPEND INBOX (\\Seen) {%b}\r\n",
    b"SEARCH SUBJECT {%b+}\r\n",
    b"SEARCH SUBJECT {%b}\r\n",
    b"SEARCH LARGER %b\r\n",
    b"FETCH %b FLAGS\r\n",
    b"UID FETCH 1:%b FLAGS\r\n",
    b"FETCH 1 BODY[%b]\r\n",
    b"FETCH 1 BODY[]<0.%b>\r\n",
]


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    place=st.sampled_from(NUMBER_PLACES),
    digits=st.one_of(st.integers(20, 30), st.integers(4290, 4310), st.integers(4301, 50_000)),
    first=st.sampled_from(b"123456789"),
    logged_in=st.booleans(),
)
@example(place=NUMBER_PLACES[0], digits=5000, first=ord("1"), logged_in=False)
@example(place=NUMBER_PLACES[1], digits=5000, first=ord("1"), logged_in=False)
@example(place=NUMBER_PLACES[4], digits=5000, first=ord("1"), logged_in=True)
@example(place=NUMBER_PLACES[7], digits=5000, first=ord("1"), logged_in=True)
def test_a_number_of_thousands_of_digits_gets_bad_or_toobig(
    imap_server: ImapServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
    place: bytes,
    digits: int,
    first: int,
    logged_in: bool,
) -> None:
    """A number longer than any IMAP number (RFC 9051 number64: 19 digits), up to more
    than int() reads (4300): a literal count read with its line ends the connection with
    BYE [TOOBIG], as any literal over the limit does; a literal waiting for its go-ahead,
    or a number int() cannot read, gets BAD (or NO [TOOBIG]), and the session goes on.
    Never SERVERBUG, never a traceback."""
    caplog.clear()
    number = bytes([first]) + b"1" * (digits - 1)
    password = mail_users[ALICE] if logged_in else None
    with session(imap_server, password, client_ssl_context) as sock:
        sock.sendall(b"t " + place % number)
        answer = read_until(sock, rb"(t (OK|NO|BAD)|BYE)[^\n]*\n")
        assert b"SERVERBUG" not in answer, answer[:200]
        if place.endswith(b"+}\r\n"):
            assert answer.startswith(b"* BYE [TOOBIG]"), answer[:200]
            assert read_until(sock, rb"never") == b""  # closed
        elif b"{" in place or digits > sys.get_int_max_str_digits():
            assert re.match(rb"t (BAD|NO \[TOOBIG\]) ", answer), answer[:200]
        else:  # a number int() reads is a number: SEARCH LARGER 10**25 finds nothing
            assert re.search(rb"^t (OK|NO|BAD) ", answer, re.M), answer[:200]
            sock.sendall(b"u NOOP\r\n")
            assert b"u OK" in read_until(sock, rb"u (OK|NO|BAD)"), place
    assert still_serving(imap_server)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


def append(sock: ssl.SSLSocket, tag: bytes, size: int, *, sync: bool) -> bytes:
    """APPEND a message of `size` bytes in a synchronizing literal (the message goes only
    after the server's go-ahead) or a non-synchronizing one; all the server answered."""
    message = b"Subject: sized\r\n\r\n" + b"x" * (size - 19)
    if sync:
        sock.sendall(tag + b" APPEND INBOX {%d}\r\n" % size)
        answer = read_until(sock, rb"\r\n")
        if not answer.startswith(b"+"):
            return answer
        sock.sendall(message + b"\r\n")
    else:
        sock.sendall(tag + b" APPEND INBOX {%d+}\r\n" % size + message + b"\r\n")
    return read_until(sock, tag + rb" (OK|NO|BAD)[^\n]*\n")


def test_an_append_beyond_the_limit_gets_no_toobig_and_no_go_ahead(
    imap_server: ImapServer, logged_in: ssl.SSLSocket
) -> None:
    """RFC 7889: NO [TOOBIG]; before the client sent the message, as it waits for '+'."""
    logged_in.sendall(b"a APPEND INBOX {%d}\r\n" % (APPEND_LIMIT + 1))
    assert read_until(logged_in, rb"\r\n").startswith(b"a NO [TOOBIG]")
    logged_in.sendall(b"b NOOP\r\n")
    assert b"b OK" in read_until(logged_in, rb"b (OK|NO|BAD)")
    assert still_serving(imap_server)


_name_counter = iter(range(10**9))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(name=" spaced ")
@example(name="a/ b ")
@given(name=st.text(alphabet=st.sampled_from("ab /-\t"), min_size=1, max_size=12))
def test_a_folder_created_is_found_by_the_name_it_was_created_with(
    imap_server: ImapServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    name: str,
) -> None:
    """CREATE answered OK to `" spaced "` but stored `spaced`: the client then could not
    SELECT, RENAME or DELETE the folder by the name the server had accepted. What
    CREATE accepts, SELECT finds under that very name. (A connection per example:
    refusals in a row end a session.)"""
    unique = f"{next(_name_counter)}{name}".encode()
    quoted = b'"' + unique + b'"'
    with session(imap_server, mail_users[ALICE], client_ssl_context) as sock:
        sock.sendall(b"c CREATE " + quoted + b"\r\ns SELECT " + quoted + b"\r\n")
        answer = read_until(sock, rb"s (OK|NO|BAD)[^\n]*\n")
    created = re.search(rb"^c OK", answer, re.M) is not None
    assert b"SERVERBUG" not in answer
    if created:
        assert re.search(rb"^s OK", answer, re.M), answer


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    size=st.one_of(
        st.integers(APPEND_LIMIT - 8, APPEND_LIMIT + 8),
        st.integers(APPEND_LIMIT, 40 * APPEND_LIMIT),
    ),
    sync=st.booleans(),
)
def test_an_append_of_any_size_is_stored_or_refused_with_toobig(
    logged_in: ssl.SSLSocket, size: int, sync: bool
) -> None:
    """Up to APPENDLIMIT a message is stored; beyond, NO [TOOBIG] (RFC 7889), and the
    session goes on. (A non-synchronizing literal beyond ends the session:
    `test_a_literal_over_the_limit_after_login_is_refused_unread`.)"""
    assume(sync or size <= APPEND_LIMIT)
    answer = append(logged_in, b"a", size, sync=sync)
    if size <= APPEND_LIMIT:
        assert re.search(rb"a OK \[APPENDUID \d+ \d+\]", answer), answer
    else:
        assert answer.startswith(b"a NO [TOOBIG]"), answer
    logged_in.sendall(b"n NOOP\r\n")
    assert b"n OK" in read_until(logged_in, rb"n (OK|NO|BAD)"), size


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    command=st.sampled_from(
        [
            b"APPEND INBOX",
            b"APPEND INBOX (\\Seen)",
            b"APPEND INBOX {5+}\r\nhello",
            b"SEARCH SUBJECT",
            b"SELECT",
        ]
    ),
    size=st.one_of(
        st.integers(APPEND_LIMIT + 1, APPEND_LIMIT + 9), st.integers(APPEND_LIMIT + 1, 2**63)
    ),
    sync=st.booleans(),
)
@example(command=b"APPEND INBOX", size=APPEND_LIMIT + 1, sync=False)
@example(command=b"APPEND INBOX", size=2**40, sync=True)
def test_a_literal_over_the_limit_after_login_is_refused_unread(
    imap_server: ImapServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    command: bytes,
    size: int,
    sync: bool,
) -> None:
    """Threat: a client that announces a huge non-synchronizing literal and sends for
    as long as it likes, the server reading all of it to drop it. RFC 7888 §4 lets the
    server end the session instead: BYE [TOOBIG], before a byte of the literal came
    (none is sent here). A synchronizing literal over the limit gets a tagged NO
    [TOOBIG] or BAD and no go-ahead, and the session goes on."""
    with session(imap_server, mail_users[ALICE], client_ssl_context) as sock:
        sock.sendall(b"t %b {%d%b}\r\n" % (command, size, b"" if sync else b"+"))
        answer = read_until(sock, rb"(t (OK|NO|BAD)|BYE)[^\n]*\n")
        if sync:
            assert re.match(rb"t (NO \[TOOBIG\]|BAD) ", answer), answer
            sock.sendall(b"u NOOP\r\n")
            assert b"u OK" in read_until(sock, rb"u (OK|NO|BAD)")
        else:
            assert answer.startswith(b"* BYE [TOOBIG]"), answer
            assert read_until(sock, rb"never") == b""  # closed
    assert still_serving(imap_server)


def test_a_line_beyond_the_stream_limit_ends_the_connection_with_bye(
    imap_server: ImapServer, plain: socket.socket
) -> None:
    plain.sendall(b"a LOGIN " + b"x" * 70_000 + b" y\r\n")
    assert b"* BYE [TOOBIG] Line too long" in read_until(plain, rb"BYE[^\n]*\n")
    assert still_serving(imap_server)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=st.binary(min_size=1, max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b))
def test_any_mailbox_name_gets_a_tagged_answer(logged_in: ssl.SSLSocket, name: bytes) -> None:
    """Whatever bytes name a folder, as a quoted string or a literal, SELECT ends in a
    tagged answer and the session goes on (no SERVERBUG, no silence)."""
    quoted = name.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    logged_in.sendall(
        b'q SELECT "' + quoted + b'"\r\nr SELECT {%d+}\r\n' % len(name) + name + b"\r\np NOOP\r\n"
    )
    answer = read_until(logged_in, rb"p (OK|NO|BAD)[^\n]*\n")
    assert re.search(rb"q (OK|NO|BAD)", answer) and re.search(rb"r (OK|NO|BAD)", answer), answer
    assert b"SERVERBUG" not in answer and b"p OK" in answer


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    lengths=st.lists(st.integers(3, MAX_KEYWORD_LENGTH + 60), min_size=1, max_size=25),
    by_append=st.booleans(),
)
@example(lengths=[5000], by_append=False)
@example(lengths=[5000], by_append=True)
@example(lengths=[MAX_KEYWORD_LENGTH], by_append=False)
@example(lengths=[MAX_KEYWORD_LENGTH + 1], by_append=True)
@example(lengths=[MAX_KEYWORD_LENGTH - 1] * 20, by_append=False)  # 3999 characters
@example(lengths=[MAX_KEYWORD_LENGTH] * 20, by_append=True)  # 4019
def test_a_keyword_is_kept_or_refused_never_dropped(
    logged_in: ssl.SSLSocket, runtime: Runtime, lengths: list[int], by_append: bool
) -> None:
    """STORE and APPEND keep every keyword they answer OK for; a keyword over
    MAX_KEYWORD_LENGTH, or more than MAX_FLAGS_LENGTH of flags on one message, is a
    NO [LIMIT] that says which, and the message keeps the flags it had."""
    keywords = [(b"k%02d" % i + b"x" * n)[:n] for i, n in enumerate(lengths)]
    flags = b"(" + b" ".join(keywords) + b")"
    logged_in.sendall(b"s SELECT INBOX\r\n")
    read_until(logged_in, rb"s (OK|NO|BAD)[^\n]*\n")
    if by_append:
        message = conftest.plain("Keywords")
        logged_in.sendall(b"a APPEND INBOX %b {%d+}\r\n%b\r\n" % (flags, len(message), message))
        answer = read_until(logged_in, rb"a (OK|NO|BAD)[^\n]*\n")
        appended = re.search(rb"a OK \[APPENDUID \d+ (\d+)\]", answer)
        uid = int(appended.group(1)) if appended else None
    else:
        uid = deliver(runtime, ALICE, conftest.plain("Keywords"))
        logged_in.sendall(b"n NOOP\r\na UID STORE %d +FLAGS.SILENT %b\r\n" % (uid, flags))
        answer = read_until(logged_in, rb"a (OK|NO|BAD)[^\n]*\n")
    too_long = max(lengths) > MAX_KEYWORD_LENGTH
    too_many = len(b" ".join(keywords)) > MAX_FLAGS_LENGTH
    if too_long or too_many:
        assert re.search(rb"a NO \[LIMIT\] (Keyword|Flags)", answer), answer
        assert (b"Keyword" in answer) == too_long, answer
        if uid is None:
            return  # nothing was appended
    else:
        assert b"a OK" in answer, answer
    assert uid is not None
    logged_in.sendall(b"f UID FETCH %d FLAGS\r\n" % uid)
    shown = read_until(logged_in, rb"f (OK|NO|BAD)[^\n]*\n")
    match = re.search(rb"FLAGS \(([^)]*)\)", shown)
    assert match is not None, shown
    kept = set(match.group(1).split())
    assert kept == (set() if too_long or too_many else set(keywords)), shown[:300]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(kinds=st.lists(st.sampled_from(["ok", "ok", "ok", "long-keyword", "too-big"]), max_size=5))
@example(kinds=["ok", "long-keyword"])
@example(kinds=["ok", "ok", "too-big"])
@example(kinds=["too-big"])
def test_a_multiappend_stores_all_its_messages_or_none(
    logged_in: ssl.SSLSocket, runtime: Runtime, kinds: list[str]
) -> None:
    """RFC 3502 §6.3.11: if the server fails to append any message of a MULTIAPPEND,
    none is appended. A message refused for its flags (NO [LIMIT]) or its size (NO
    [TOOBIG], RFC 7889, wherever it comes in the list) leaves the folder as it was;
    otherwise every message is stored, under the UIDs APPENDUID names, in order.

    A message over the limit goes in a synchronizing literal, the command's last: the
    client waits for a go-ahead that never comes (a non-synchronizing one is refused
    before the command is parsed)."""
    if "too-big" in kinds:
        kinds = kinds[: kinds.index("too-big") + 1]
    before = [row.uid for row in conftest.rows(runtime, ALICE, "INBOX")]
    command = b"a APPEND INBOX"
    for index, kind in enumerate(kinds):
        flags = b"(k" + b"x" * MAX_KEYWORD_LENGTH + b")" if kind == "long-keyword" else b"()"
        message = conftest.plain(f"Multi {index}", "x" * (APPEND_LIMIT if kind == "too-big" else 5))
        if kind == "too-big":
            command += b" %b {%d}" % (flags, len(message))
        else:
            command += b" %b {%d+}\r\n%b" % (flags, len(message), message)
    logged_in.sendall(command + b"\r\n")
    answer = read_until(logged_in, rb"a (OK|NO|BAD)[^\n]*\n")
    after = [row.uid for row in conftest.rows(runtime, ALICE, "INBOX")]
    if not kinds:
        assert answer.startswith(b"a BAD"), answer
    elif "too-big" in kinds:
        assert answer.startswith(b"a NO [TOOBIG]"), answer
    elif "long-keyword" in kinds:
        assert answer.startswith(b"a NO [LIMIT]"), answer
    else:
        appended = re.match(rb"a OK \[APPENDUID \d+ ([\d:,]+)\]", answer)
        assert appended is not None, answer
        assert after[len(before) :] == _uids(appended.group(1))
        assert [r.subject for r in conftest.rows(runtime, ALICE, "INBOX")][len(before) :] == [
            f"Multi {index}" for index in range(len(kinds))
        ]
        return
    assert after == before, answer
    logged_in.sendall(b"n NOOP\r\n")
    assert b"n OK" in read_until(logged_in, rb"n (OK|NO|BAD)")


def _uids(uid_set: bytes) -> list[int]:
    """The UIDs of an APPENDUID set (1:3,7) in its order."""
    out: list[int] = []
    for item in uid_set.split(b","):
        first, _, last = item.partition(b":")
        out.extend(range(int(first), int(last or first) + 1))
    return out


def send_with_go_aheads(sock: ssl.SSLSocket, tag: bytes, parts: list[tuple[bytes, bytes]]) -> bytes:
    """A command of `parts`, each some text and a synchronizing literal, the literal sent
    only after the server's go-ahead; all the server answered once it stopped asking."""
    sock.sendall(tag)
    for text, literal in parts:
        sock.sendall(b"%b{%d}\r\n" % (text, len(literal)))
        answer = read_until(sock, rb"\r\n")
        if not answer.startswith(b"+"):
            return answer
        sock.sendall(literal)
    sock.sendall(b"\r\n")
    return read_until(sock, tag + rb" (OK|NO|BAD)[^\n]*\n")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sizes=st.lists(st.integers(100, APPEND_LIMIT), min_size=1, max_size=12))
@example(sizes=[APPEND_LIMIT] * 12)
@example(sizes=[APPEND_LIMIT // 2] * 2)
def test_a_multiappend_brings_no_more_than_the_append_limit_in_all(
    logged_in: ssl.SSLSocket, runtime: Runtime, sizes: list[int]
) -> None:
    """Threat: a MULTIAPPEND of many synchronizing literals, each within APPENDLIMIT,
    all held in memory until the command ends: without a bound on their sum, one
    command fills the server's memory. Up to APPENDLIMIT in all, the messages are
    stored; past APPENDLIMIT and the room for the command, the literal that would pass
    it gets NO [TOOBIG] instead of a go-ahead, nothing is stored, and the session goes
    on. In between it is one or the other, never some of the messages."""
    before = len(conftest.rows(runtime, ALICE, "INBOX"))
    messages = [b"Subject: part\r\n\r\n" + b"x" * (size - 17) for size in sizes]
    parts = [(b" APPEND INBOX " if i == 0 else b" ", m) for i, m in enumerate(messages)]
    answer = send_with_go_aheads(logged_in, b"a", parts)
    added = len(conftest.rows(runtime, ALICE, "INBOX")) - before
    if sum(sizes) <= APPEND_LIMIT:
        assert re.match(rb"a OK \[APPENDUID ", answer), answer[:200]
    if sum(sizes) > APPEND_LIMIT + COMMAND_ROOM:
        assert answer.startswith(b"a NO [TOOBIG]"), answer[:200]
    assert added == (len(sizes) if answer.startswith(b"a OK") else 0), answer[:200]
    logged_in.sendall(b"n NOOP\r\n")
    assert b"n OK" in read_until(logged_in, rb"n (OK|NO|BAD)")


def test_a_search_of_many_literals_is_refused_past_the_limit(
    imap_server: ImapServer, logged_in: ssl.SSLSocket
) -> None:
    """Every command's literals count, not only APPEND's: a SEARCH string may hold
    4 KiB, but a SEARCH may not hold as many of them as it likes."""
    logged_in.sendall(b"s SELECT INBOX\r\n")
    read_until(logged_in, rb"s (OK|NO|BAD)[^\n]*\n")
    count = (APPEND_LIMIT + COMMAND_ROOM) // 4096 + 2
    parts = [(b" SEARCH SUBJECT " if i == 0 else b" SUBJECT ", b"y" * 4096) for i in range(count)]
    answer = send_with_go_aheads(logged_in, b"t", parts)
    assert re.match(rb"t (NO \[TOOBIG\]|BAD) ", answer), answer[:200]
    logged_in.sendall(b"n NOOP\r\n")
    assert b"n OK" in read_until(logged_in, rb"n (OK|NO|BAD)")
    assert still_serving(imap_server)


def authenticate(
    imap_server: ImapServer, tls: ssl.SSLContext, mechanism: bytes, responses: list[bytes]
) -> bytes:
    """AUTHENTICATE `mechanism` on the TLS port, each of `responses` sent base64-encoded
    as the answer to one challenge, and "*" (cancel) to a challenge past them; all the
    server said from the first challenge on."""
    raw = socket.create_connection(("127.0.0.1", imap_server.tls_port))
    with tls.wrap_socket(raw, server_hostname="localhost") as sock:
        assert read_until(sock, rb"\r\n").startswith(b"* OK")
        sock.sendall(b"a AUTHENTICATE " + mechanism + b"\r\n")
        answer = b""
        for response in responses:
            answer += read_until(sock, rb"(\+|a (OK|NO|BAD)|\* BYE)[^\n]*\n")
            if not answer.endswith(b"\n") or not answer.splitlines()[-1].startswith(b"+"):
                return answer
            sock.sendall(base64.b64encode(response) + b"\r\n")
        answer += read_until(sock, rb"(\+|a (OK|NO|BAD)|\* BYE)[^\n]*\n")
        if answer.splitlines()[-1].startswith(b"+"):
            sock.sendall(b"*\r\n")
            answer += read_until(sock, rb"(a (OK|NO|BAD)|\* BYE)[^\n]*\n")
        return answer


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    mechanism=st.sampled_from([b"PLAIN", b"LOGIN"]),
    responses=st.lists(st.binary(max_size=80), min_size=1, max_size=2),
)
@example(mechanism=b"PLAIN", responses=[b"\xff\x00\xff\x00\xff"])
@example(mechanism=b"PLAIN", responses=[b"\x00alice@example.test\x00\xff"])
@example(mechanism=b"LOGIN", responses=[b"\xc3", b"pw"])
@example(mechanism=b"LOGIN", responses=[b"alice@example.test", b"\xed\xa0\x80"])
def test_any_sasl_answer_gets_a_tagged_refusal(
    imap_server: ImapServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
    mechanism: bytes,
    responses: list[bytes],
) -> None:
    """Threat: bytes that are no UTF-8 in an AUTHENTICATE answer, sent before any login;
    pysasl decoded them unguarded, and the session ended in BYE [SERVERBUG] with a
    traceback in the error log, as often as a client liked. Whatever the answer, it is
    a tagged NO or BAD (RFC 9051 §6.2.2), and the server goes on."""
    caplog.clear()
    answer = authenticate(imap_server, client_ssl_context, mechanism, responses)
    last = answer.splitlines()[-1] if answer else b""
    assert re.match(rb"a (NO|BAD) ", last), answer
    assert b"BYE" not in answer, answer
    assert still_serving(imap_server)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


def authenticate_raw(
    imap_server: ImapServer, tls: ssl.SSLContext, mechanism: bytes, lines: list[bytes]
) -> bytes:
    """As `authenticate`, with each answer line sent as given, not base64-encoded."""
    raw = socket.create_connection(("127.0.0.1", imap_server.tls_port))
    with tls.wrap_socket(raw, server_hostname="localhost") as sock:
        assert read_until(sock, rb"\r\n").startswith(b"* OK")
        sock.sendall(b"a AUTHENTICATE " + mechanism + b"\r\n")
        answer = b""
        for line in lines:
            answer += read_until(sock, rb"(\+|a (OK|NO|BAD)|\* BYE)[^\n]*\n")
            if not answer.splitlines()[-1].startswith(b"+"):
                return answer
            sock.sendall(line + b"\r\n")
        return answer + read_until(sock, rb"(a (OK|NO|BAD)|\* BYE)[^\n]*\n")


NOT_BASE64 = [b"!!!!", b"YWxpY2U", b"YWxp Y2U=", b"YWxpY2U=\x00", b"=YWxp", b"\xc3\xa9"]


@pytest.mark.parametrize(
    ("mechanism", "at"), [(b"PLAIN", 0), (b"LOGIN", 0), (b"LOGIN", 1)], ids=["plain", "user", "pw"]
)
@pytest.mark.parametrize("bad", NOT_BASE64)
def test_an_sasl_answer_that_is_no_base64_gets_bad_and_counts_as_no_login(
    imap_server: ImapServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
    mechanism: bytes,
    bad: bytes,
    at: int,
) -> None:
    """Threat: pymap decoded answers with `b64decode`, which drops what is no base64:
    "!!!!" to AUTHENTICATE LOGIN's "Username:" became an empty user name, tried as a
    login, logged, and counted against the client's address, so a broken client (or a
    prober) used up the address's allowance. RFC 3501 §6.2.2: a tagged BAD, no login."""
    right = base64.b64encode(ALICE.encode()), base64.b64encode(mail_users[ALICE].encode())
    lines = [right[0], right[1]][: 1 if mechanism == b"PLAIN" else 2]
    lines[at] = bad
    caplog.set_level(logging.INFO, logger="gateway.imap")
    answer = authenticate_raw(imap_server, client_ssl_context, mechanism, lines)
    last = answer.splitlines()[-1]
    assert re.fullmatch(rb"a BAD Invalid base64[^\n]*", last), answer
    assert len(imap_server.backend.login.failures) == 0
    assert not [r for r in caplog.records if "login failed" in r.getMessage()]
    assert still_serving(imap_server)


@pytest.mark.parametrize("mechanism", [b"LOGIN", b"PLAIN"])
def test_strict_base64_sasl_answers_still_log_in(
    imap_server: ImapServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    mechanism: bytes,
) -> None:
    user, password = ALICE.encode(), mail_users[ALICE].encode()
    if mechanism == b"PLAIN":
        lines = [base64.b64encode(b"\x00" + user + b"\x00" + password)]
    else:
        lines = [base64.b64encode(user), base64.b64encode(password)]
    answer = authenticate_raw(imap_server, client_ssl_context, mechanism, lines)
    assert re.search(rb"^a OK ", answer, re.M), answer


def test_a_right_sasl_plain_answer_still_logs_in(
    imap_server: ImapServer, mail_users: dict[str, str], client_ssl_context: ssl.SSLContext
) -> None:
    answer = authenticate(
        imap_server,
        client_ssl_context,
        b"PLAIN",
        [b"\x00" + ALICE.encode() + b"\x00" + mail_users[ALICE].encode()],
    )
    assert re.search(rb"^a OK ", answer, re.M), answer


@pytest.mark.parametrize("command", [b"LIST", b"LSUB"])
def test_a_list_pattern_of_many_wildcards_holds_no_one_up(
    imap_server: ImapServer, logged_in: ssl.SSLSocket, command: bytes
) -> None:
    """Threat: pymap matched LIST patterns with a regular expression that backtracks
    once per wildcard. A folder of 200 characters and a pattern of a few wildcards held
    the event loop, and every listener of serve with it, for minutes (five here; ten
    for longer than anyone waits). The answer comes, and others are served meanwhile."""
    name = b"a" * MAX_NAME_LENGTH
    logged_in.sendall(b"c CREATE %b\r\n" % name)
    assert b"c OK" in read_until(logged_in, rb"c (OK|NO|BAD)[^\n]*\n")
    logged_in.sendall(b'l %b "" "%b*b"\r\n' % (command, b"*a" * 5))
    assert still_serving(imap_server)
    answer = read_until(logged_in, rb"l (OK|NO|BAD)[^\n]*\n")
    assert re.fullmatch(rb"l OK [^\n]*\n", answer), answer
    logged_in.sendall(b'm %b "" "%b*"\r\n' % (command, b"*a" * 5))
    assert name in read_until(logged_in, rb"m (OK|NO|BAD)[^\n]*\n")


def fill_folders(runtime: Runtime, address: str, room: int) -> None:
    """Give the account folders until LIST would show `room` fewer than MAX_FOLDERS."""
    with db.transaction(runtime.sessions) as session:
        row = accounts.find_address(session, address)
        assert row is not None
        names = [f.name for f in store.list_folders(session, row.account_id)]
        shown = {n.rsplit("/", depth)[0] for n in names for depth in range(n.count("/") + 1)}
        for index in range(MAX_FOLDERS - len(shown) - room):
            store.create_folder(session, row.account_id, f"filled-{index}")


def test_folders_past_the_limit_get_no_limit(
    imap_server: ImapServer, logged_in: ssl.SSLSocket, runtime: Runtime
) -> None:
    """Threat: a folder flood. pymap answers LIST at about half a millisecond an entry
    on the event loop: 10,000 folders (a minute of CREATEs) held every other client of
    serve for seconds at each LIST, and nothing stopped a client at 10,000. LIST shows
    each level above a folder too, so a name of 99 levels is 99 entries: every level
    counts. Past MAX_FOLDERS, CREATE and RENAME get NO [LIMIT] (RFC 9051 §7.1)."""
    fill_folders(runtime, ALICE, room=1)
    commands = [
        b'CREATE "last"',  # the last one that fits
        b'CREATE "one-more"',
        b'CREATE "last/below"',  # one level more
        b'CREATE "' + b"/".join([b"deep"] * 40) + b'"',
        b'RENAME "last" "new/level"',  # "new" is a level more
        b'RENAME "last" "renamed"',  # as many as before
    ]
    expected = [b"OK", b"NO [LIMIT]", b"NO [LIMIT]", b"NO [LIMIT]", b"NO [LIMIT]", b"OK"]
    for index, (command, answer) in enumerate(zip(commands, expected, strict=True)):
        tag = b"c%d" % index
        logged_in.sendall(tag + b" " + command + b"\r\n")
        got = read_until(logged_in, tag + rb" (OK|NO|BAD)[^\n]*\n")
        assert re.search(tag + b" " + re.escape(answer), got), (command, got)
    logged_in.sendall(b'l LIST "" "*"\r\n')
    listed = read_until(logged_in, rb"l (OK|NO|BAD)[^\n]*\n")
    assert listed.count(b"* LIST ") == MAX_FOLDERS
    assert still_serving(imap_server)


# Commands that held when probed (2026-12-06), each with the answer it must get.
HELD = [
    (b"SELECT Trash", b"OK"),
    (b"FETCH 1:* FLAGS", b"OK"),  # an empty folder
    (b"FETCH *:* FLAGS", b"OK"),
    (b"SELECT INBOX", b"OK"),
    (b"UID FETCH 1:4294967295 FLAGS", b"OK"),
    (b"FETCH 4294967296 FLAGS", b"OK"),
    (b"FETCH 0 FLAGS", b"BAD"),
    (b"FETCH 1 BODY[" + b".".join([b"1"] * 5000) + b"]", b"OK"),
    (b"FETCH 1 BODY[1.2.3.4.5.6.7.8]", b"OK"),
    (b"FETCH 1 BODY[]<99999999999.5>", b"OK"),
    (
        b"FETCH 1 BODY.PEEK[HEADER.FIELDS (" + b" ".join(b"X%d" % i for i in range(3000)) + b")]",
        b"OK",
    ),
    (b"FETCH 1:* (" + b" ".join([b"BODY.PEEK[]"] * 2000) + b")", b"OK"),
    (b"SEARCH " + b"NOT " * 2000 + b"ALL", b"BAD"),
    (b'COPY 1 "bob@example.test/INBOX"', b"NO [TRYCREATE]"),
    (b'MOVE 1 "../../INBOX"', b"NO [TRYCREATE]"),
    (b'STATUS "bob@example.test" (MESSAGES)', b"NO"),
    (b'CREATE "x\x01y"', b"BAD"),
    (b'CREATE "' + b"b" * (MAX_NAME_LENGTH + 1) + b'"', b"NO"),
    (b"RENAME INBOX Other", b"NO"),
    (b"DELETE Trash", b"NO"),
    (b'SELECT "../bob@example.test/INBOX"', b"NO"),  # (a failed SELECT leaves none selected)
    (b'SELECT "bob@example.test/INBOX"', b"NO"),
]


def test_odd_fetch_search_and_names_get_their_answer_and_reach_no_other_account(
    imap_server: ImapServer, logged_in: ssl.SSLSocket, runtime: Runtime
) -> None:
    """Ranges on an empty folder, UIDs and sequence numbers past 2^32, sections thousands
    of parts deep, thousands of attributes or header names, names that climb with `..`
    or name another account: each gets its tagged answer, no SERVERBUG, and Bob's mail
    stays where it was, unseen by Alice's session."""
    deliver(runtime, ALICE, conftest.plain("Alice's"))
    deliver(runtime, BOB, conftest.plain("Bob's secret"))
    for index, (command, expected) in enumerate(HELD):
        tag = b"h%d" % index
        logged_in.sendall(tag + b" " + command + b"\r\n")
        answer = read_until(logged_in, tag + rb" (OK|NO|BAD)[^\n]*\n")
        assert b"SERVERBUG" not in answer and b"Bob's secret" not in answer, command[:60]
        assert re.search(tag + b" " + re.escape(expected), answer), (command[:60], answer[-200:])
    assert [r.subject for r in conftest.rows(runtime, BOB, "INBOX")] == ["Bob's secret"]
    assert [r.subject for r in conftest.rows(runtime, ALICE, "INBOX")] == ["Alice's"]
    assert still_serving(imap_server)


def test_no_login_in_clear_on_the_starttls_port(
    plain: socket.socket, mail_users: dict[str, str]
) -> None:
    """Before STARTTLS: LOGINDISABLED (RFC 9051 §6.2.3), no mechanism, nothing selected."""
    password = mail_users[ALICE].encode()
    plain.sendall(
        b"a LOGIN " + ALICE.encode() + b" " + password + b"\r\n"
        b"b AUTHENTICATE PLAIN\r\n"
        b"c SELECT INBOX\r\n"
    )
    answer = read_until(plain, rb"c (OK|NO|BAD)[^\n]*\n")
    assert re.search(rb"^a NO ", answer, re.M), answer
    assert re.search(rb"^b (NO|BAD) ", answer, re.M), answer
    assert re.search(rb"^c BAD ", answer, re.M), answer
    assert password not in answer


@contextmanager
def imap_with(runtime: Runtime, loop_thread: LoopThread, **imap: object) -> Iterator[ImapServer]:
    """A server of its own, with these `[imap]` settings."""
    changed = Runtime.open(runtime.settings.replace(imap=imap))
    server = ImapServer(changed, Notifier())
    loop_thread.run(server.start())
    try:
        yield server
    finally:
        loop_thread.run(server.stop())
        changed.close()


def test_connections_past_the_per_client_limit_are_told_bye(
    runtime: Runtime, loop_thread: LoopThread, client_ssl_context: ssl.SSLContext
) -> None:
    """Threat: one address holding many connections open. Past `[imap]
    max_connections_per_client` (both ports together) a connection is told BYE and
    closed; a connection that ends frees its place."""
    with imap_with(runtime, loop_thread, max_connections_per_client=3) as server:
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
        raw = socket.create_connection(("127.0.0.1", server.tls_port))
        with client_ssl_context.wrap_socket(raw, server_hostname="localhost") as tls:
            for sock in [*held, tls]:
                assert read_until(sock, rb"\r\n").startswith(b"* OK")
            with socket.create_connection(("127.0.0.1", server.port)) as extra:
                assert read_until(extra, rb"never").startswith(b"* BYE Too many connections")
            held[0].close()
            assert still_serving(server)  # in the freed place
        held[1].close()


def test_an_idle_held_past_the_autologout_ends_in_one_bye(
    runtime: Runtime,
    loop_thread: LoopThread,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    """An IDLE with nothing said past `[imap] idle_timeout` (a phone gone to sleep) ends
    as any silent session: BYE Autologout, and the connection closes. pymap took the end
    of the stream for a failure of the IDLE and said a second BYE, [SERVERBUG]."""
    with imap_with(runtime, loop_thread, idle_timeout=1.0) as server:
        raw = socket.create_connection(("127.0.0.1", server.tls_port))
        with client_ssl_context.wrap_socket(raw, server_hostname="localhost") as idle:
            assert read_until(idle, rb"\r\n").startswith(b"* OK")
            login = b'a LOGIN "%s" "%s"\r\n' % (ALICE.encode(), mail_users[ALICE].encode())
            idle.sendall(login + b"b SELECT INBOX\r\nc IDLE\r\n")
            answer = read_until(idle, rb"never")  # all until the server closes
        assert answer.endswith(b"\r\n+ Idling.\r\n* BYE Autologout; idle for too long\r\n"), answer


def many_recipients(count: int, attached: int) -> bytes:
    """A message to `count` addresses with `attached` messages to as many attached: each
    header within what SMTP takes (256 KiB a header block)."""
    to = b", ".join(b"r%d@example.net" % i for i in range(count))
    inner = b"From: x@example.net\r\nTo: " + to + b"\r\nSubject: inner\r\n\r\nhi\r\n"
    parts = b"".join(
        b"--B\r\nContent-Type: message/rfc822\r\n\r\n" + inner for _ in range(attached)
    )
    return (
        b"From: x@example.net\r\nTo: " + to + b"\r\nSubject: many\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n" + parts + b"--B--\r\n"
    )


@pytest.mark.parametrize(
    "fetch",
    [b"BODYSTRUCTURE", b"(ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)])", b"(FLAGS ENVELOPE)"],
)
def test_a_message_to_thousands_holds_no_one_up(
    imap_server: ImapServer,
    logged_in: ssl.SSLSocket,
    runtime: Runtime,
    fetch: bytes,
) -> None:
    """Threat: mail from anywhere with thousands of addresses in To, in itself and in
    messages it carries. Python's address parser takes about a millisecond an address,
    and pymap ran it for ENVELOPE and for each attached message's envelope in
    BODYSTRUCTURE on the event loop: a message of 300 KB held every client of serve
    for seconds at each FETCH (a message of 25 MB, for minutes). The addresses one
    message's answers parse are bounded (`mime.MAX_ADDRESS_BYTES`, the first ones
    shown); the answer comes, and others are served meanwhile."""
    deliver(runtime, ALICE, many_recipients(6000, 20))
    logged_in.sendall(b"s SELECT INBOX\r\nf FETCH 1 " + fetch + b"\r\n")
    assert b"s OK" in read_until(logged_in, rb"s (OK|NO|BAD)[^\n]*\n")
    assert still_serving(imap_server)
    answer = read_until(logged_in, rb"f (OK|NO|BAD)[^\n]*\n")
    assert re.search(rb"^f OK ", answer, re.M), answer[-300:]
    assert b'("" NIL "r0" "example.net")' in answer
