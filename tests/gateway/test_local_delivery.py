"""Mail the gateway writes to a hosted address is stored in its mailbox, never relayed:
sign-in alerts, automatic replies to hosted senders (bounces and delivery reports are
stored directly by their writers). An address outside the hosted domains is queued."""

from __future__ import annotations

import asyncio
import datetime as dt

import sqlalchemy as sa

from gateway import accounts, db, local_delivery, login_alerts, queue
from gateway.models import Account, Alias, AuditEvent, MailboxMessage, QueueItem
from gateway.relay import Relay
from gateway.runtime import Runtime

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
RAW = b"From: noreply@localhost\r\nTo: x\r\nSubject: alert\r\n\r\nbody\r\n"


def where(runtime: Runtime) -> tuple[list[tuple[str, str]], list[str]]:
    with db.read_only(runtime.sessions) as session:
        stored = [
            (row.address.address, row.folder)
            for row in session.scalars(sa.select(MailboxMessage).order_by(MailboxMessage.id))
        ]
        queued = list(session.scalars(sa.select(QueueItem.rcpt_to).order_by(QueueItem.id)))
    return stored, queued


def deliver(runtime: Runtime, recipient: str, account: Account | None = None) -> str:
    with db.transaction(runtime.sessions) as session:
        if account is not None:
            account = session.merge(account)
        return local_delivery.deliver_generated(
            session,
            RAW,
            sender="noreply@localhost",
            recipient=recipient,
            queue_id="Q1",
            now=NOW,
            account=account,
        )


def test_hosted_address_is_stored_and_external_one_queued(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    assert deliver(runtime, "Alice@Example.test") == "mailbox"
    assert deliver(runtime, "carol@elsewhere.example") == "queue"
    assert where(runtime) == (
        [("alice@example.test", "INBOX")],
        ["carol@elsewhere.example"],
    )


def test_an_alias_is_delivered_to_the_address_it_names(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """A bounce or an away reply to a hosted user who wrote from an alias was dropped
    (an audited `local.undeliverable`): the alias is hosted, but it is no address row."""
    with db.transaction(runtime.sessions) as session:
        bob = accounts.find_address(session, "bob@example.test")
        assert bob is not None
        session.add(Alias(alias="robert@example.test", address_id=bob.id))
    assert deliver(runtime, "Robert@Example.test") == "mailbox"
    assert where(runtime) == ([("bob@example.test", "INBOX")], [])


def test_account_login_without_its_own_address_uses_the_accounts_first_address(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    with db.transaction(runtime.sessions) as session:
        owner = accounts.add_account(session, runtime.hasher, "frank@example.test", "pw", actor="t")
        accounts.add_address(session, runtime.hasher, "f.m@example.test", owner, "pw", actor="t")
        nobody = accounts.add_account(session, runtime.hasher, "gina@example.test", "pw", actor="t")
    assert deliver(runtime, "frank@example.test", owner) == "mailbox"
    # Hosted domain, no mailbox at all: dropped with an audit record, never relayed home.
    assert deliver(runtime, "gina@example.test", nobody) == "dropped"
    assert where(runtime) == ([("f.m@example.test", "INBOX")], [])
    with db.read_only(runtime.sessions) as session:
        [event] = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "local.undeliverable")
        ).all()
        assert event.target == "gina@example.test" and not event.success


def test_sign_in_alert_to_a_hosted_account_lands_in_its_inbox(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    login = login_alerts.LoginContext(ip="203.0.113.5", user_agent="curl/8", at=NOW)
    with db.transaction(runtime.sessions) as session:
        bob = session.scalars(sa.select(Account).where(Account.email == "bob@example.test")).one()
        assert login_alerts.queue_alert(session, runtime.settings, bob, "new_device", login)
    assert where(runtime) == ([("bob@example.test", "INBOX")], [])


def test_the_relay_takes_home_what_older_releases_queued_for_hosted_addresses(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """With no smarthost configured, such an alert used to wait in the queue for ever."""
    with db.transaction(runtime.sessions) as session:
        for rcpt in ("alice@example.test", "carol@elsewhere.example"):
            queue.enqueue(
                session, queue_id="OLD1", mail_from="noreply@localhost", rcpt_to=rcpt,
                raw=RAW, now=NOW,
            )  # fmt: skip
    assert not runtime.settings.relay.host
    stop = asyncio.Event()
    stop.set()
    asyncio.run(Relay(runtime).run(stop))
    assert where(runtime) == ([("alice@example.test", "INBOX")], ["carol@elsewhere.example"])
