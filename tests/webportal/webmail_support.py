"""Helpers for the webmail tests: an app with Web Key Directory lookups off (no network),
a client that logs in and sends the compose form as a browser does, and mailbox reads."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import io
import re
from email.message import EmailMessage
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from gateway import audit, db, login_alerts, mailbox
from gateway.models import Account, Address, MailboxMessage, QueueItem
from gateway.runtime import Runtime
from keystore import directory, pgp
from keystore.models import SOURCE_IMPORT
from tests.gateway.test_secure_page import as_relayed
from tests.gnupg import GnuPG
from tests.keystore.gpgkeys import export, make_key
from webportal import create_app, extensions

from .conftest import csrf_from

ALICE, BOB = "alice@example.test", "bob@example.test"
PASSWORDS = {ALICE: "portal-alice-smtp-pw", BOB: "portal-bob-smtp-pw"}
CAROL = "carol@elsewhere.example"  # external, no key
DAVE = "dave@partner.example"  # external, with an imported key
MESSAGE_LINK = re.compile(r'href="/mail/(\d+)"')


def webmail_app(runtime: Runtime) -> Flask:
    """The portal on a runtime whose key lookups never leave the machine."""
    quiet = dataclasses.replace(runtime, settings=runtime.settings.replace(keys={"wkd": False}))
    return create_app(quiet, testing=True)


class Webmail:
    """A logged-in browser, as far as forms and cookies go."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        client.environ_base["wsgi.url_scheme"] = "https"

    def login(self, address: str) -> Webmail:
        """Log in; the new-device alert is switched off first, since it would be stored
        in the very inbox these tests read (alerts have tests of their own)."""
        runtime = extensions.runtime(self.client.application)
        quiet_login_alerts(runtime, address)
        page = self.client.get("/login")
        done = self.client.post(
            "/login",
            data={
                "email": address,
                "password": PASSWORDS[address],
                "csrf_token": csrf_from(page.text),
            },
        )
        assert done.status_code == 302, done.text
        return self

    def get(self, path: str) -> TestResponse:
        return self.client.get(path)

    def post(self, path: str, data: dict[str, object], page: str) -> TestResponse:
        token = csrf_from(self.client.get(page).text)
        return self.client.post(path, data={**data, "csrf_token": token})

    def compose(
        self,
        *,
        files: list[tuple[bytes, str, str]] = (),  # type: ignore[assignment]
        page: str = "/compose",
        **fields: object,
    ) -> TestResponse:
        """Send the compose form (action "send" unless given), with uploads if any."""
        data: dict[str, object] = {"action": "send", **fields}
        if files:
            data["attachments"] = [
                (io.BytesIO(content), name, kind) for content, name, kind in files
            ]
        token = csrf_from(self.client.get(page).text)
        return self.client.post(
            "/compose",
            data={**data, "csrf_token": token},
            content_type="multipart/form-data",
        )

    def message_ids(self, path: str) -> list[int]:
        return [int(i) for i in MESSAGE_LINK.findall(self.get(path).text)]


def quiet_login_alerts(runtime: Runtime, address: str) -> None:
    """Switch the new-device alert off for the account of `address`."""
    with db.transaction(runtime.sessions) as session:
        account = session.scalars(sa.select(Account).where(Account.email == address)).one()
        login_alerts.set_preferences(session, account.id, new_device=False, failed_login=True)


def rows(runtime: Runtime, address: str, folder: str = mailbox.INBOX) -> list[MailboxMessage]:
    with db.read_only(runtime.sessions) as session:
        return list(
            session.scalars(
                sa.select(MailboxMessage)
                .join(Address, MailboxMessage.address_id == Address.id)
                .where(Address.address == address, MailboxMessage.folder == folder)
                .order_by(MailboxMessage.id)
            )
        )


def queued(runtime: Runtime, *, everything: bool = False) -> list[QueueItem]:
    """Mail waiting for the relay, but (unless `everything`) the sign-in alerts that the
    logins themselves queue for the account addresses."""
    with db.read_only(runtime.sessions) as session:
        items = session.scalars(sa.select(QueueItem).order_by(QueueItem.id))
        waiting = [item for item in items if everything or item.rcpt_to not in PASSWORDS]
    return as_relayed(runtime, waiting)


def deliver(
    runtime: Runtime,
    address: str,
    message: EmailMessage | bytes,
    *,
    folder: str = mailbox.INBOX,
    when: dt.datetime | None = None,
) -> int:
    """Put a plain message straight into a mailbox (as inbound delivery would)."""
    raw = message if isinstance(message, bytes) else message.as_bytes(policy=email.policy.SMTP)
    with db.transaction(runtime.sessions) as session:
        row = session.scalar(sa.select(Address).where(Address.address == address))
        assert row is not None
        stored = mailbox.store(
            session,
            row,
            raw,
            queue_id="test",
            envelope_from="someone@elsewhere.example",
            now=when or dt.datetime.now(dt.UTC),
            folder=folder,
        )
        session.flush()
        return stored.id


def import_key(runtime: Runtime, address: str, home: Path) -> str:
    """An external correspondent's key, made by their own GnuPG and stored as
    `sealgate keys import` stores it; its fingerprint."""
    home.mkdir(mode=0o700)
    gpg = GnuPG(home)
    fingerprint = make_key(gpg, f"<{address}>")
    now = dt.datetime.now(dt.UTC)
    vetting = pgp.vet_public_keys(export(gpg, fingerprint), now, address=address)
    (vetted,) = vetting.accepted
    with db.transaction(runtime.sessions) as session:
        directory.save(session, vetted, SOURCE_IMPORT, now, events=audit.key_event_sink("test"))
    return fingerprint


def grouped(fingerprint: str) -> str:
    return " ".join(fingerprint[i : i + 4] for i in range(0, len(fingerprint), 4))


def field_value(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no field {name}"
    return match.group(1)


def textarea(page: str, name: str) -> str:
    """The text a browser puts in the textarea: HTML drops one newline right after
    the start tag, so a text that starts with a line break must be written after one."""
    match = re.search(rf'name="{name}"[^>]*>([^<]*)</textarea>', page)
    assert match, f"no textarea {name}"
    text = match.group(1)
    return text[1:] if text.startswith("\n") else text
