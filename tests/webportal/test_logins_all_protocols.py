"""One lockout for every way in (issue 11, must show 4): wrong passwords over IMAP, SMTP
and the portal count together, and the lock then holds on all three.

Threat: an attacker who spreads guesses over protocols (a few in the portal, a few
over SMTP AUTH, a few over IMAP) must not get three times the guesses. Every peer is
real: smtplib over implicit TLS, imaplib over implicit TLS, and the portal served by
its own HTTPS server, logged into with a form post as a browser sends it.
"""

from __future__ import annotations

import email
import email.policy
import http.cookiejar
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
import sqlalchemy as sa

from gateway import db
from gateway.imap.notify import Notifier
from gateway.imap.server import ImapServer
from gateway.models import Account, Address, AuditEvent, LoginLockout, MailboxMessage
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from tests.conftest import LoopThread
from tests.gateway.imap.test_imap_login import imap_login, smtp_auth
from tests.gateway.test_smtp_2fa import enable_2fa, new_app_password
from webportal import create_app
from webportal.server import PortalServer

from .account_support import ALICE, BOB
from .conftest import csrf_from

THRESHOLD = 4


@pytest.fixture
def strict(runtime: Runtime) -> Iterator[Runtime]:
    """Lock after four failures; one alert mail per failure (no quiet interval), so each
    names its protocol; the per-client limits out of the way."""
    rt = Runtime.open(
        runtime.settings.replace(
            security={"lockout_threshold": THRESHOLD, "alert_interval": 0},
            smtp={"max_auth_failures_per_client": 100},
            portal={"login_rate_limit": "1000/minute"},
        )
    )
    yield rt
    rt.close()


class Servers:
    def __init__(self, rt: Runtime, loop_thread: LoopThread) -> None:
        self.imap = ImapServer(rt, Notifier())
        self.smtp = SubmissionServer(rt)
        self.portal = PortalServer(create_app(rt), rt.settings)
        self.loop_thread = loop_thread

    def __enter__(self) -> Servers:
        self.loop_thread.run(self.imap.start())
        self.loop_thread.run(self.smtp.start())
        self.portal.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.portal.stop()
        self.loop_thread.run(self.smtp.stop(grace=1))
        self.loop_thread.run(self.imap.stop())


@pytest.fixture
def servers(strict: Runtime, loop_thread: LoopThread) -> Iterator[Servers]:
    with Servers(strict, loop_thread) as running:
        yield running


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None  # a 302 after a right login is the answer we look at


def portal_login(server: PortalServer, ctx: ssl.SSLContext, login: str, password: str) -> str:
    """ "OK" (redirected into the portal), "CODE" (redirected to the second step), else
    the error the login page shows."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=ctx),
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
        _NoRedirect(),
    )
    headers = {"Sec-Fetch-Site": "same-origin", "User-Agent": "Mozilla/5.0 Firefox/128.0"}
    assert server.url.startswith("https://")
    login_page = urllib.request.Request(f"{server.url}/login", headers=headers)  # noqa: S310
    with opener.open(login_page) as page:
        token = csrf_from(page.read().decode())
    form = urllib.parse.urlencode({"email": login, "password": password, "csrf_token": token})
    request = urllib.request.Request(  # noqa: S310  (https, checked above)
        f"{server.url}/login", data=form.encode(), headers=headers, method="POST"
    )
    try:
        with opener.open(request) as reply:
            text = reply.read().decode()
    except urllib.error.HTTPError as exc:
        if exc.code == 302:
            location = urllib.parse.urlsplit(exc.headers["Location"]).path
            return "CODE" if location == "/login/code" else "OK"
        raise
    found = re.search(r'<p class="error" role="alert">([^<]+)<', text)
    assert found, "the login page shows no error"
    return found.group(1).strip()


def alerts(rt: Runtime, address: str) -> list[EmailMessage]:
    with db.read_only(rt.sessions) as session:
        raws = session.scalars(
            sa.select(MailboxMessage.raw)
            .join(Address, MailboxMessage.address_id == Address.id)
            .where(Address.address == address, MailboxMessage.envelope_from == "noreply@localhost")
            .order_by(MailboxMessage.id)
        ).all()
    return [email.message_from_bytes(raw, policy=email.policy.default) for raw in raws]


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def test_failures_over_three_protocols_lock_the_account_on_all_three(
    servers: Servers,
    strict: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    ctx = client_ssl_context
    portal_pw, smtp_pw = "portal-" + mail_users[ALICE], mail_users[ALICE]
    assert portal_login(servers.portal, ctx, ALICE, "guess-1") == "Email or password is wrong."
    assert smtp_auth(servers.smtp, ctx, ALICE, "guess-2") == 535
    assert "AUTHENTICATIONFAILED" in imap_login(servers.imap, ctx, ALICE, "guess-3")
    # Three failures: not locked yet, the right password still opens each door...
    with db.read_only(strict.sessions) as session:
        [row] = session.scalars(sa.select(LoginLockout)).all()
        alice_id = session.scalars(sa.select(Account.id).where(Account.email == ALICE)).one()
    assert (row.key, row.failures, row.locked_until) == (f"account:{alice_id}", 3, None)
    # ...and the fourth, over the portal, locks the account.
    assert portal_login(servers.portal, ctx, ALICE, "guess-4") == "Email or password is wrong."

    # Locked everywhere, even with the right passwords.
    assert portal_login(servers.portal, ctx, ALICE, portal_pw).startswith(
        "Too many failed sign-ins"
    )
    assert smtp_auth(servers.smtp, ctx, ALICE, smtp_pw) == 454
    refused = imap_login(servers.imap, ctx, ALICE, smtp_pw)
    assert "UNAVAILABLE" in refused and "Too many failed logins" in refused
    # Another account is not affected.
    assert portal_login(servers.portal, ctx, BOB, "portal-" + mail_users[BOB]) == "OK"
    assert smtp_auth(servers.smtp, ctx, BOB, mail_users[BOB]) == 235
    assert imap_login(servers.imap, ctx, BOB, mail_users[BOB]) == "OK"

    with db.read_only(strict.sessions) as session:
        [lock] = session.scalars(
            sa.select(LoginLockout).where(LoginLockout.key == f"account:{alice_id}")
        ).all()
        events = session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.account_id == alice_id, AuditEvent.success.is_(False))
            .order_by(AuditEvent.id)
        ).all()
    assert lock.locked_until is not None
    # The activity log names the protocol of each attempt (the action), and the lock.
    assert [(e.action, e.detail) for e in events] == [
        ("login", ""),
        ("smtp.auth", ""),
        ("imap.auth", ""),
        ("login", ""),
        ("login", "account locked"),
        ("smtp.auth", "account locked"),
        ("imap.auth", "account locked"),
    ]
    # One alert mail per counted failure, each naming the way in; none for the locked tries.
    mails = alerts(strict, ALICE)
    assert [m["Subject"] for m in mails] == ["Failed sign-in to your sealgate account"] * 4
    vias = [re.search(r"Via: +(.+)", text_of(m)) for m in mails]
    assert [v.group(1).strip() if v else None for v in vias] == [
        "the portal (web)",
        "a mail program (SMTP)",
        "a mail program (IMAP)",
        "the portal (web)",
    ]
    assert "Browser:" in text_of(mails[0]) and "Browser:" not in text_of(mails[1])


def test_two_factor_rule_holds_for_imap_and_smtp_and_the_portal_waits_for_the_code(
    servers: Servers,
    strict: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    ctx = client_ssl_context
    smtp_pw = mail_users[ALICE]
    # Logged in once before 2FA: the verified-credential cache knows this password.
    assert imap_login(servers.imap, ctx, ALICE, smtp_pw) == "OK"
    enable_2fa(strict, ALICE)
    _id, app_password = new_app_password(strict, ALICE, "Thunderbird")
    # The address password no longer opens IMAP or SMTP (the cache changes nothing)...
    assert "two-factor login: use an app password" in imap_login(servers.imap, ctx, ALICE, smtp_pw)
    assert smtp_auth(servers.smtp, ctx, ALICE, smtp_pw) == 535
    # ...an app password does, on both...
    assert imap_login(servers.imap, ctx, ALICE, app_password) == "OK"
    assert smtp_auth(servers.smtp, ctx, ALICE, app_password) == 235
    # ...and the right portal password leads to the second step, not into the portal.
    assert portal_login(servers.portal, ctx, ALICE, "portal-" + smtp_pw) == "CODE"
    with db.read_only(strict.sessions) as session:
        steps = session.execute(
            sa.select(AuditEvent.action, AuditEvent.detail)
            .where(
                AuditEvent.actor == ALICE,
                AuditEvent.success.is_(True),
                AuditEvent.action.in_(("login", "login.password", "smtp.auth", "imap.auth")),
            )
            .order_by(AuditEvent.id)
        ).all()
    assert [tuple(step) for step in steps] == [
        ("imap.auth", ""),
        ("imap.auth", "app password 'Thunderbird'"),
        ("smtp.auth", "app password 'Thunderbird'"),
        ("login.password", "second factor required"),
    ]
