"""Threat: a hosted user hides a header field behind a bare CR, past the gateway's checks.

The gateway reads a bare CR inside a header line as part of that line (as Postfix
does, gateway.rawheaders), so `X-Note: x<CR>From: ceo@bank.example` is one X-Note
field to check-header-sender, which then sees only the user's own From. SMTP DATA
has no line end but CRLF, and the relay sent that CR as one: the next hop got a
From naming the CEO, above the user's own and DKIM-signed by the gateway's domain.
Now a bare CR in the header section leaves as a space, as the gateway read it;
in the body it stays a line end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import smtplib
import ssl

from gateway.relay import Relay
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from tests.fakes.smarthost import FakeSmarthost, relay_settings_for

ALICE, CAROL = "alice@example.test", "carol@elsewhere.example"
CEO = "ceo@bank.example"


def test_a_field_behind_a_bare_cr_does_not_reach_the_relay_as_a_field(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
    smarthost: FakeSmarthost,
) -> None:
    raw = (
        f"X-Note: x\rFrom: {CEO}\r\nFrom: {ALICE}\r\nTo: {CAROL}\r\n"
        "Subject: who am I\r\n\r\nline one\rline two\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", submission_server.submission_port, timeout=30) as client:
        client.starttls(context=client_ssl_context)
        client.login(ALICE, mail_users[ALICE])
        assert client.sendmail(ALICE, [CAROL], raw) == {}
    rt = dataclasses.replace(runtime, settings=relay_settings_for(runtime.settings, smarthost))
    asyncio.run(Relay(rt).sweep())
    [relayed] = smarthost.wait_for(1)
    msg = email.message_from_bytes(relayed.content, policy=email.policy.default)
    assert msg.get_all("From") == [ALICE]
    assert msg["X-Note"] == f"x From: {CEO}"
    assert b"\r\nline one\r\nline two\r\n" in relayed.content
