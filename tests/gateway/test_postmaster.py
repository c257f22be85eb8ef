"""Mail for postmaster reaches someone (RFC 5321 §4.5.1): the hosted address (or alias) of
that name when there is one, else the oldest enabled admin's first address; for any
hosted domain, with or without a domain (then as postmaster@ the oldest enabled hosted
domain), in any case, over the MX and over submission. With no mailbox to take it the
answer is temporary, never "no such address"."""

from __future__ import annotations

import datetime as dt
import smtplib
import ssl

import pytest
import sqlalchemy as sa

from gateway import accounts, db, postmaster
from gateway.inbound import ERROR_LIMIT, InboundServer
from gateway.models import Account, Address, Alias, Domain, MailboxMessage
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from tests.conftest import LoopThread
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
    # No enabled admin and no postmaster address: no mailbox takes it.
    assert postmaster.resolve(runtime.sessions, "postmaster@example.test") is None


def postmaster_alias(runtime: Runtime, target: str) -> None:
    with db.transaction(runtime.sessions) as session:
        address = accounts.find_address(session, target)
        assert address is not None
        session.add(Alias(alias="postmaster@example.test", address_id=address.id))


@pytest.mark.parametrize("rcpt", ["postmaster", "POSTMASTER", "postmaster@example.test"])
def test_a_postmaster_alias_takes_the_mail_bare_postmaster_too(
    inbound: InboundServer, runtime: Runtime, admin: str, rcpt: str
) -> None:
    """An alias is as much "a hosted address of that name" as an address is; the bare
    name is the postmaster of the primary hosted domain (the oldest enabled one)."""
    postmaster_alias(runtime, BOB)
    with db.transaction(runtime.sessions) as session:
        accounts.add_domain(session, "zz-later.test", actor="test")  # not the primary
    raw = b"From: reports@outside.example\r\nSubject: dmarc\r\n\r\nhi\r\n"
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        assert client.sendmail("reports@outside.example", [rcpt], raw) == {}
    assert inbox(runtime, BOB) == ["dmarc"]
    assert inbox(runtime, admin) == []


def test_bare_postmaster_needs_no_admin_account(inbound: InboundServer, runtime: Runtime) -> None:
    """An install whose admins have no mailbox (an admin made with `accounts add --admin`
    alone) but with a postmaster address: bare <postmaster> was 553 5.1.3."""
    postmaster_alias(runtime, ALICE)
    raw = b"From: reports@outside.example\r\nSubject: bounce report\r\n\r\nhi\r\n"
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        assert client.sendmail("reports@outside.example", ["postmaster"], raw) == {}
    assert inbox(runtime, ALICE) == ["bounce report"]


@pytest.mark.parametrize("rcpt", ["postmaster", "Postmaster@example.test"])
def test_with_no_mailbox_for_the_postmaster_the_answer_is_temporary(
    inbound: InboundServer, runtime: Runtime, rcpt: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No postmaster address and no admin with an address: nothing can hold the mail,
    and a 5xx would refuse what RFC 5321 says must be taken. 451 keeps it in the
    sender's queue until an admin adds a mailbox, and the log says how."""
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        client.ehlo("reports.example")
        assert client.mail("reports@outside.example")[0] == 250
        code, reply = client.rcpt(rcpt)
    assert (code, reply[:5]) == (451, b"4.3.0")
    assert "postmaster@" in caplog.text and "admin" in caplog.text


def test_a_bare_postmaster_on_an_empty_install_has_no_mailbox(runtime: Runtime) -> None:
    with db.transaction(runtime.sessions) as session:
        assert session.scalar(sa.select(Domain.id)) is None
    assert postmaster.resolve(runtime.sessions, "postmaster") is None


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


def test_bare_postmaster_of_an_idn_primary_domain_needs_no_smtputf8(
    runtime: Runtime, loop_thread: LoopThread
) -> None:
    """The bare name is ASCII; the domain chosen for it must not make the RCPT need
    SMTPUTF8 (553 5.6.7): it is taken in its A-label form."""
    anna = "anna@bücher.example"
    with db.transaction(runtime.sessions) as session:
        accounts.add_domain(session, "bücher.example", actor="test")
        account = accounts.add_account(session, runtime.hasher, anna, "portal-pw", actor="t")
        address = accounts.add_address(session, runtime.hasher, anna, account, "smtp-pw", actor="t")
        session.flush()
        session.add(Alias(alias="postmaster@bücher.example", address_id=address.id))
    server = InboundServer(runtime)
    loop_thread.run(server.start())
    try:
        raw = b"From: reports@outside.example\r\nSubject: idn report\r\n\r\nhi\r\n"
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
            assert client.sendmail("reports@outside.example", ["postmaster"], raw) == {}
    finally:
        loop_thread.run(server.stop(grace=5))
    assert inbox(runtime, anna) == ["idn report"]


def test_asking_for_a_postmaster_without_mailbox_still_ends_the_session(
    inbound: InboundServer,
) -> None:
    """Each such RCPT costs a database read and a warning: the 451s count towards the
    session's refusal limit like a 5xx, so one connection cannot ask without end."""
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        client.ehlo("reports.example")
        client.mail("reports@outside.example")
        codes = {client.rcpt("postmaster")[0] for _ in range(ERROR_LIMIT)}
        assert codes == {451}
        code, reply = client.rcpt("postmaster")
    assert (code, reply[:5]) == (421, b"4.7.0")
