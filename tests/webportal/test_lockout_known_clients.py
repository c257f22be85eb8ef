"""Lockout as a denial of service: others' guesses must not lock the owner's known clients out.

Threat: the account lockout counted wrong passwords from anyone, so about
`lockout_threshold` guesses per lock period, from one address, kept the owner out
for ever, in the portal and in their own mail programs. A browser holding the
account's device cookie (set after a full portal login) and a mail program's network
from which the account logged in over SMTP or IMAP are known clients: they still get
their password checked while the account is locked for everyone else, and their own
failures lock only themselves. Every peer is real: smtplib and imaplib over TLS from
chosen loopback addresses, the portal through the Flask test client from chosen
client addresses (as the other lockout tests of the portal), and the `sealgate` CLI.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import smtplib
import ssl
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask import Flask

from gateway import db
from gateway.imap.notify import Notifier
from gateway.imap.server import ImapServer
from gateway.models import Account, KnownMailClient, LoginLockout
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from sealgate.cli import cli
from tests.conftest import LoopThread
from webportal import create_app
from webportal.clock import set_clock

from .account_support import ALICE, ALICE_PW, CHROME, Browser, FakeClock

THRESHOLD = 3
OWNER_MAIL_IP = "127.0.0.2"  # the owner's mail program: known once it logged in
ATTACKER_MAIL_IP = "127.0.0.3"
OWNER_BROWSER_IP = "198.51.100.7"
ATTACKER_IP = "203.0.113.66"
LOCKED_PAGE = "Too many failed sign-ins"
COOKIE = "__Host-sealgate_device"  # the portal is served by https in the tests


@pytest.fixture
def strict(runtime: Runtime) -> Iterator[Runtime]:
    """Lock after three failures; the per-client limits out of the way."""
    rt = Runtime.open(
        runtime.settings.replace(
            security={"lockout_threshold": THRESHOLD},
            smtp={"max_auth_failures_per_client": 100},
            portal={"login_rate_limit": "1000/minute"},
        )
    )
    yield rt
    rt.close()


@pytest.fixture
def servers(
    strict: Runtime, loop_thread: LoopThread
) -> Iterator[tuple[SubmissionServer, ImapServer]]:
    smtp = SubmissionServer(strict)
    imap = ImapServer(strict, Notifier())
    loop_thread.run(smtp.start())
    loop_thread.run(imap.start())
    yield smtp, imap
    loop_thread.run(imap.stop())
    loop_thread.run(smtp.stop(grace=1))


@pytest.fixture
def portal(strict: Runtime) -> tuple[Flask, FakeClock]:
    app = create_app(strict, testing=True)
    clock = FakeClock()
    set_clock(app, clock)
    return app, clock


def smtp_auth(server: SubmissionServer, ctx: ssl.SSLContext, source: str, password: str) -> int:
    """One AUTH PLAIN as Alice over implicit TLS, from the loopback address `source`."""
    with smtplib.SMTP_SSL(
        "127.0.0.1", server.tls_port, context=ctx, timeout=30, source_address=(source, 0)
    ) as client:
        client.ehlo()
        client.user, client.password = ALICE, password
        try:
            return client.auth("PLAIN", client.auth_plain)[0]
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code


class _SourcedIMAP(imaplib.IMAP4_SSL):
    """imaplib over TLS from a chosen loopback address."""

    def __init__(self, port: int, ctx: ssl.SSLContext, source: str) -> None:
        self.source = source
        super().__init__("127.0.0.1", port, ssl_context=ctx, timeout=30)

    def _create_socket(self, timeout: float | None) -> ssl.SSLSocket:
        import socket

        sock = socket.create_connection(
            (self.host, self.port), timeout, source_address=(self.source, 0)
        )
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


def imap_login(server: ImapServer, ctx: ssl.SSLContext, source: str, password: str) -> str:
    client = _SourcedIMAP(server.tls_port, ctx, source)
    try:
        client.login(ALICE, password)
    except imaplib.IMAP4.error as exc:
        client.shutdown()
        return str(exc)
    client.logout()
    return "OK"


def lock_rows(rt: Runtime) -> dict[str, bool]:
    """Each lockout key → whether it is locked now."""
    now = dt.datetime.now(dt.UTC)
    with db.read_only(rt.sessions) as session:
        rows = session.scalars(sa.select(LoginLockout)).all()
        return {r.key: r.locked_until is not None and r.locked_until > now for r in rows}


def alice_id(rt: Runtime) -> int:
    with db.read_only(rt.sessions) as session:
        return session.scalars(sa.select(Account.id).where(Account.email == ALICE)).one()


def test_an_attacker_locks_the_account_but_not_the_owners_known_clients(
    strict: Runtime,
    servers: tuple[SubmissionServer, ImapServer],
    portal: tuple[Flask, FakeClock],
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    test_env: dict[str, str],
) -> None:
    smtp, imap = servers
    app, _clock = portal
    ctx = client_ssl_context
    mail_pw = mail_users[ALICE]
    account = alice_id(strict)

    # The owner's mail program and browser have logged in before.
    assert smtp_auth(smtp, ctx, OWNER_MAIL_IP, mail_pw) == 235
    owner = Browser(app.test_client(), ip=OWNER_BROWSER_IP)
    signed_in = owner.login()
    assert signed_in.status_code == 302
    cookie = next(c for c in signed_in.headers.getlist("Set-Cookie") if c.startswith(COOKIE))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "max-age", "path"} <= attributes
    assert "SameSite=Strict" in cookie and f"Max-Age={30 * 86400}" in cookie
    owner.logout()

    # The attacker, from one address, guesses in the portal: the account locks...
    attacker = Browser(app.test_client(), ip=ATTACKER_IP, agent=CHROME)
    for _ in range(THRESHOLD):
        assert "Email or password is wrong." in attacker.login(ALICE, "guess").text
    assert lock_rows(strict) == {f"account:{account}": True}
    # ...for every unknown client, even with the right password: the attacker's browser,
    # a mail program on an unknown network, and a device cookie forged or moved to
    # another account.
    assert LOCKED_PAGE in attacker.login().text
    assert smtp_auth(smtp, ctx, ATTACKER_MAIL_IP, mail_pw) == 454
    assert "UNAVAILABLE" in imap_login(imap, ctx, ATTACKER_MAIL_IP, mail_pw)
    owners_cookie = owner.client.get_cookie(COOKIE)
    assert owners_cookie is not None
    fields = owners_cookie.value.split(":")
    for forged in (
        ":".join([fields[0], fields[1], fields[2], fields[3][:-2] + "AA"]),  # bad signature
        ":".join([str(account + 1), *fields[1:]]),  # another account's id
        ":".join([fields[0], fields[1], str(int(fields[2]) + 60), fields[3]]),  # re-dated
    ):
        forger = Browser(app.test_client(), ip=ATTACKER_IP)
        forger.client.set_cookie(COOKIE, forged, domain="localhost", secure=True)
        assert LOCKED_PAGE in forger.login().text

    # The owner's known clients are not locked out.
    assert owner.login().status_code == 302
    assert smtp_auth(smtp, ctx, OWNER_MAIL_IP, mail_pw) == 235
    assert imap_login(imap, ctx, OWNER_MAIL_IP, mail_pw) == "OK"

    # The owner's login from a known browser did not lift the account's lock (a guesser
    # gets no fresh budget whenever the owner signs in), and the owner, signed in, can
    # still confirm the password (to change it, say).
    assert lock_rows(strict)[f"account:{account}"]
    assert LOCKED_PAGE in attacker.login().text
    confirmed = owner.post("/account/confirm", {"password": ALICE_PW})
    assert confirmed.status_code == 302, confirmed.text
    owner.logout()

    # A known client's own wrong passwords lock that client alone.
    for _ in range(THRESHOLD):
        assert "Email or password is wrong." in owner.login(ALICE, "typo").text
    assert LOCKED_PAGE in owner.login().text
    assert smtp_auth(smtp, ctx, OWNER_MAIL_IP, mail_pw) == 235
    for _ in range(THRESHOLD):
        assert smtp_auth(smtp, ctx, OWNER_MAIL_IP, "old-password") == 535
    assert smtp_auth(smtp, ctx, OWNER_MAIL_IP, mail_pw) == 454
    locks = lock_rows(strict)
    device_keys = [k for k in locks if k.startswith(f"account:{account}:device:")]
    assert len(device_keys) == 1 and locks[device_keys[0]]
    assert locks[f"account:{account}"] and locks[f"account:{account}:net:{OWNER_MAIL_IP}/32"]

    # `sealgate user unlock` clears the account's lock and every client's.
    result = CliRunner().invoke(cli, ["user", "unlock", ALICE], env=test_env)
    assert result.exit_code == 0, result.output
    assert lock_rows(strict) == {}
    assert smtp_auth(smtp, ctx, OWNER_MAIL_IP, mail_pw) == 235
    assert smtp_auth(smtp, ctx, ATTACKER_MAIL_IP, mail_pw) == 235
    assert owner.login().status_code == 302


def test_known_mail_networks_are_written_once_and_ipv6_counts_by_its_64(
    strict: Runtime,
    servers: tuple[SubmissionServer, ImapServer],
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    """A mail program logging in for every message writes its network once (per day and
    process), not on every login."""
    smtp, _ = servers
    for _ in range(3):
        assert smtp_auth(smtp, client_ssl_context, OWNER_MAIL_IP, mail_users[ALICE]) == 235
    with db.read_only(strict.sessions) as session:
        [row] = session.scalars(sa.select(KnownMailClient)).all()
        first_seen = row.last_seen_at
    assert row.network == f"{OWNER_MAIL_IP}/32"
    assert smtp_auth(smtp, client_ssl_context, OWNER_MAIL_IP, mail_users[ALICE]) == 235
    with db.read_only(strict.sessions) as session:
        assert session.scalars(sa.select(KnownMailClient.last_seen_at)).one() == first_seen
