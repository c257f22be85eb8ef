"""Mail for postmaster reaches someone (RFC 5321 §4.5.1): the hosted address of that name
when there is one, else the oldest enabled admin's first address; for any hosted
domain, with or without a domain, in any case, over the MX and over submission."""

from __future__ import annotations

import datetime as dt
import smtplib
import ssl

import pytest
import sqlalchemy as sa

from gateway import accounts, db, postmaster
from gateway.inbound import InboundServer
from gateway.models import Account, Address, MailboxMessage
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from tests.gateway.test_smtp_submission import starttls_client

ALICE, BOB = "alice@example.test", "bob@example.test"
ROOT = "root@example.test"


@pytest.fixture
def admin(runtime: Runtime, mail_users: dict[str, str]) -> str:
    with db.transaction(runtime.sessions) as session:
        account = accounts.add_account(
            session, runtime.hasher, ROOT, "root-portal-pw", actor="test", is_admin=True
        )
        accounts.add_address(session, runtime.hasher, ROOT, account, "root-smtp-pw", actor="t")
    return ROOT


def inbox(runtime: Runtime, address: str) -> list[str]:
    with db.read_only(runtime.sessions) as session:
        return list(
            session.scalars(
                sa.select(MailboxMessage.subject)
                .join(Address, MailboxMessage.address_id == Address.id)
                .where(Address.address == address)
            )
        )


@pytest.mark.parametrize(
    "rcpt", ["postmaster@example.test", "PostMaster@Example.Test", "postmaster"]
)
def test_the_mx_takes_mail_for_the_postmaster_and_gives_it_to_the_admin(
    inbound: InboundServer, runtime: Runtime, admin: str, rcpt: str
) -> None:
    raw = f"From: reports@outside.example\r\nTo: {rcpt}\r\nSubject: report\r\n\r\nhi\r\n"
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        assert client.sendmail("reports@outside.example", [rcpt], raw.encode()) == {}
    assert inbox(runtime, admin) == ["report"]


def test_a_hosted_postmaster_address_keeps_its_mail(
    inbound: InboundServer, runtime: Runtime, admin: str
) -> None:
    with db.transaction(runtime.sessions) as session:
        bob = session.scalars(sa.select(Account).where(Account.email == BOB)).one()
        accounts.add_address(
            session, runtime.hasher, "postmaster@example.test", bob, "pm-smtp-pw", actor="t"
        )
    raw = b"From: x@outside.example\r\nSubject: for the real one\r\n\r\nhi\r\n"
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        client.sendmail("x@outside.example", ["postmaster@example.test"], raw)
    assert inbox(runtime, "postmaster@example.test") == ["for the real one"]
    assert inbox(runtime, admin) == []


def test_another_domains_postmaster_is_still_not_relayed(
    inbound: InboundServer, admin: str
) -> None:
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        client.ehlo("mx.example")
        assert client.mail("x@outside.example")[0] == 250
        code, _ = client.rcpt("postmaster@gmail.example")
        assert code == 550


def test_a_disabled_admin_is_passed_over(runtime: Runtime, admin: str) -> None:
    assert postmaster.resolve(runtime.sessions, "postmaster@example.test") == ROOT
    with db.transaction(runtime.sessions) as session:
        session.execute(
            sa.update(Account)
            .where(Account.email == ROOT)
            .values(disabled_at=dt.datetime.now(dt.UTC))
        )
    # No enabled admin: the address stays as it is, and RCPT answers "no such mailbox".
    assert postmaster.resolve(runtime.sessions, "postmaster@example.test") == (
        "postmaster@example.test"
    )


def test_a_hosted_sender_can_write_to_the_postmaster(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    admin: str,
) -> None:
    raw = f"From: {ALICE}\r\nTo: postmaster@example.test\r\nSubject: help\r\n\r\nhi\r\n"
    with starttls_client(submission_server, client_ssl_context) as client:
        client.login(ALICE, mail_users[ALICE])
        assert client.sendmail(ALICE, ["postmaster@example.test"], raw.encode()) == {}
    assert inbox(submission_server.runtime, admin) == ["help"]
