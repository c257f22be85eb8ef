"""The Postfix content-filter listener: XFORWARD only from the trusted source, no AUTH at
all, and the submission pipeline run for the envelope sender Postfix authenticated.

Threats: a client reaching the filter port directly to send as anyone (refused by
address, 554, before any command), an AUTH bypass (AUTH is neither offered nor
accepted), a forged client address in the Received header (only a real IP gets in)."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from gateway import accounts, db, rawheaders
from gateway.postfix.filter import FilterServer, client_address, parse_sources, xtext_decode
from gateway.runtime import Runtime
from gateway.settings import SettingsError
from tests.conftest import LoopThread
from tests.gateway.test_secure_page import decrypt_as, folder

ALICE, BOB = "alice@example.test", "bob@example.test"


@pytest.fixture
def filter_server(
    runtime: Runtime, loop_thread: LoopThread, mail_users: dict[str, str]
) -> Iterator[FilterServer]:
    rt = dataclasses.replace(
        runtime, settings=runtime.settings.replace(filter={"enabled": True, "port": 0})
    )
    server = FilterServer(rt)
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop(grace=5))


def message() -> bytes:
    msg = EmailMessage()
    msg["From"] = ALICE
    msg["To"] = BOB
    msg["Subject"] = "[encrypt] through Postfix"
    msg.set_content("Filtered and encrypted.\n")
    return msg.as_bytes(policy=email.policy.SMTP)


def test_postfix_hands_over_an_authenticated_message_with_xforward(
    filter_server: FilterServer, runtime: Runtime
) -> None:
    with smtplib.SMTP("127.0.0.1", filter_server.port, timeout=30) as client:
        code, _ = client.ehlo("postfix.example.test")
        assert code == 250
        assert client.has_extn("xforward") and not client.has_extn("auth")
        auth = client.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zbXRwLXB3")
        assert auth[0] == 502
        assert client.mail(ALICE)[0] == 503  # XFORWARD first
        assert client.docmd("XFORWARD", "NAME=laptop.example ADDR=203.0.113.9")[0] == 250
        assert client.docmd("XFORWARD", "HELO=laptop PROTO=ESMTP IDENT=4Xyz+2B1")[0] == 250
        assert client.docmd("XFORWARD", "BOGUS=1")[0] == 501
        assert client.mail(ALICE)[0] == 250
        assert client.docmd("XFORWARD", "ADDR=192.0.2.1")[0] == 503  # not mid-transaction
        assert client.rcpt(BOB)[0] == 250
        code, reply = client.data(message())
        assert code == 250, reply
    [stored] = folder(runtime, BOB)
    assert stored.encrypted
    received = rawheaders.get(stored.raw, "Received") or ""
    assert "from laptop ([203.0.113.9])" in received and "ESMTPSA" in received
    assert b"Filtered and encrypted." in decrypt_as(runtime, BOB, stored.raw)


def test_a_sender_that_is_not_hosted_is_refused(filter_server: FilterServer) -> None:
    with smtplib.SMTP("127.0.0.1", filter_server.port, timeout=30) as client:
        client.ehlo("postfix.example.test")
        client.docmd("XFORWARD", "ADDR=203.0.113.9")
        code, reply = client.mail("mallory@elsewhere.example")
        assert code == 553 and b"not a hosted address" in reply


def test_a_client_outside_the_trusted_sources_is_refused_before_any_command(
    runtime: Runtime, loop_thread: LoopThread, mail_users: dict[str, str]
) -> None:
    rt = dataclasses.replace(
        runtime,
        settings=runtime.settings.replace(
            filter={"enabled": True, "port": 0, "trusted_sources": "192.0.2.0/24"}
        ),
    )
    server = FilterServer(rt)
    loop_thread.run(server.start())
    try:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP("127.0.0.1", server.port, timeout=30)
        assert refused.value.smtp_code == 554
    finally:
        loop_thread.run(server.stop(grace=5))


def test_helpers() -> None:
    assert xtext_decode("4Xyz+2B1+3D") == "4Xyz+1="
    assert client_address("IPV6:2001:db8::1") == "2001:db8::1"
    assert client_address("[UNAVAILABLE]") == "unknown"
    assert client_address("1.2.3.4]) (evil") == "unknown"
    assert [str(n) for n in parse_sources("127.0.0.1, ::1 10.0.0.0/8")] == [
        "127.0.0.1/32",
        "::1/128",
        "10.0.0.0/8",
    ]
    with pytest.raises(SettingsError, match="not an address"):
        parse_sources("localhost")


def test_postfix_may_hand_over_either_form_of_an_idn_address(
    filter_server: FilterServer, runtime: Runtime
) -> None:
    """Postfix passes the envelope as the client wrote it: `anna@xn--strae-oqa.test` for
    the address stored as `anna@straße.test` was "not a hosted address", and an unknown
    name at the A-label was taken for an external recipient instead of refused."""
    anna, ben = "anna@straße.test", "ben@straße.test"
    with db.transaction(runtime.sessions) as session:
        accounts.add_domain(session, "straße.test", actor="test")
        for address in (anna, ben):
            account = accounts.add_account(session, runtime.hasher, address, "pw", actor="test")
            accounts.add_address(session, runtime.hasher, address, account, "pw", actor="test")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "anna@xn--strae-oqa.test", BOB, "[encrypt] IDN"
    msg.set_content("Both forms are one address.\n")
    with smtplib.SMTP("127.0.0.1", filter_server.port, timeout=30) as client:
        client.ehlo("postfix.example.test")
        client.docmd("XFORWARD", "ADDR=203.0.113.9")
        assert client.mail("anna@xn--strae-oqa.test")[0] == 250
        code, reply = client.rcpt("nobody@xn--strae-oqa.test")
        assert code == 550, reply
        assert client.rcpt("ben@xn--strae-oqa.test")[0] == 250
        code, reply = client.data(msg.as_bytes(policy=email.policy.SMTP))
        assert code == 250, reply
    [stored] = folder(runtime, ben)
    assert stored.encrypted
    assert b"Both forms are one address." in decrypt_as(runtime, ben, stored.raw)
    [sent] = folder(runtime, anna, "Sent")
    assert sent.encrypted
