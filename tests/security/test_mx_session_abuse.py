"""Threat: an Internet client holds an MX session open for ever, or probes it for users.

The MX must refuse an unknown hosted address at RCPT (550 5.1.1: no bounce later, so
no backscatter), which also tells a prober which addresses exist. Nothing bounded
how often: one connection answered 3000 refused RCPTs in a fraction of a second (a
dictionary attack on the user list at wire speed), and 10000 NOOP and RSET commands,
each of which restarted the idle timer, so a session that never carried a message
lived as long as its client wanted, holding one of the client's connection slots.

Postfix's answer is taken over (smtpd_hard_error_limit, smtpd_junk_command_limit):
past 20 refused commands, or 100 commands that carry no mail (NOOP, RSET, VRFY,
EXPN, HELP, HELO, EHLO), since the session's last accepted message, the next command
gets `421 4.7.0` and the connection is closed. An accepted message starts both counts
afresh, so a busy sender's long session is never cut.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from gateway.inbound import ERROR_LIMIT, JUNK_LIMIT, InboundServer

BOB = "bob@example.test"


class Wire:
    """A raw SMTP client: pipelined lines out, whole (multi-line) replies in."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        assert self.reply().startswith(b"220")

    def reply(self) -> bytes:
        text = b""
        while True:
            line = self.file.readline()
            text += line
            if line[3:4] != b"-":
                return text

    def send(self, *lines: str) -> list[bytes]:
        self.sock.sendall("".join(f"{line}\r\n" for line in lines).encode())
        return [self.reply() for _ in lines]

    def closed(self) -> bool:
        return self.file.read(1) == b""

    def deliver(self) -> None:
        replies = self.send("MAIL FROM:<a@elsewhere.example>", f"RCPT TO:<{BOB}>", "DATA")
        assert replies[2].startswith(b"354"), replies
        self.sock.sendall(b"Subject: hi\r\n\r\nhi\r\n.\r\n")
        assert self.reply().startswith(b"250 2.0.0")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def wire(inbound: InboundServer) -> Iterator[Wire]:
    client = Wire(inbound.port)
    yield client
    client.close()


def test_refused_recipients_end_the_session_after_the_limit(wire: Wire) -> None:
    wire.send("EHLO prober.example", "MAIL FROM:<a@elsewhere.example>")
    probes = [f"RCPT TO:<guess{i}@example.test>" for i in range(ERROR_LIMIT)]
    assert all(r.startswith(b"550 5.1.1") for r in wire.send(*probes))
    (last,) = wire.send("RCPT TO:<guess-more@example.test>")
    assert last.startswith(b"421 4.7.0")
    assert wire.closed()


def test_an_accepted_message_starts_the_error_count_afresh(wire: Wire) -> None:
    wire.send("EHLO sender.example")
    for _round in range(3):
        wire.send("MAIL FROM:<a@elsewhere.example>")
        probes = [f"RCPT TO:<gone{i}@example.test>" for i in range(ERROR_LIMIT - 1)]
        assert all(r.startswith(b"550 5.1.1") for r in wire.send(*probes))
        wire.send("RSET")
        wire.deliver()
    assert wire.send("NOOP") == [b"250 OK\r\n"]


@pytest.mark.parametrize("command", ["NOOP", "RSET", "VRFY bob@example.test", "HELP", "EHLO x"])
def test_commands_that_carry_no_mail_cannot_keep_a_session_open(wire: Wire, command: str) -> None:
    wire.send("EHLO idler.example")
    replies = wire.send(*[command] * (JUNK_LIMIT - 1))
    assert all(r[:1] == b"2" for r in replies), set(replies)
    (last,) = wire.send(command)
    assert last.startswith(b"421 4.7.0")
    assert wire.closed()


def test_an_accepted_message_starts_the_junk_count_afresh(wire: Wire) -> None:
    wire.send("EHLO sender.example")
    for _round in range(3):
        wire.send(*["RSET"] * (JUNK_LIMIT - 10))
        wire.deliver()
    assert wire.send("NOOP") == [b"250 OK\r\n"]
