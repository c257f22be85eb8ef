"""Mail programs from the portal's side: the secret-key download (fresh login, 2FA code,
passphrase, audit, alert mail), Thunderbird autoconfig, the Apple profile, the setup page.

Threat: a session left open (or a stolen cookie) walks off with the secret key
unnoticed, or with a key anyone can use without a passphrase.
"""

from __future__ import annotations

import plistlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from gateway import db
from gateway.models import AppPassword, AuditEvent
from gateway.runtime import Runtime
from keystore import store
from webportal import create_app
from webportal.clock import set_clock

from .account_support import ALICE, Browser, FakeClock, enable_2fa, queued, text_of

PASSPHRASE = "long enough passphrase"


@pytest.fixture
def clock(app: Flask) -> FakeClock:
    fake = FakeClock()
    set_clock(app, fake)
    return fake


def _no_events(session: object, action: str, target: str, detail: str) -> None:
    return None


@pytest.fixture
def alice(app: Flask, clock: FakeClock, mail_users: dict[str, str], runtime: Runtime) -> Browser:
    with db.transaction(runtime.sessions) as session:
        store.get_or_create(session, runtime.ring.get(), ALICE, clock.now, events=_no_events)
    browser = Browser(app.test_client())
    assert browser.login().status_code == 302
    return browser


def test_secret_key_download_needs_a_passphrase_and_is_locked_with_it(
    alice: Browser, runtime: Runtime, clock: FakeClock
) -> None:
    form = {"address": ALICE, "passphrase": PASSPHRASE, "repeat": PASSPHRASE}
    short = alice.post("/account/secret-key", {**form, "passphrase": "short", "repeat": "short"})
    assert short.status_code == 400 and "at least 10 characters" in text_of(short.text)
    mismatch = alice.post("/account/secret-key", {**form, "repeat": PASSPHRASE + "!"})
    assert mismatch.status_code == 400 and "not the same" in text_of(mismatch.text)
    foreign = alice.post("/account/secret-key", {**form, "address": "bob@example.test"})
    assert foreign.status_code == 400

    before = len(queued(runtime))
    done = alice.post("/account/secret-key", form)
    assert done.status_code == 200
    assert done.headers["Content-Disposition"].startswith("attachment")
    assert done.headers["Cache-Control"] == "no-store"
    assert done.data.startswith(b"-----BEGIN PGP PRIVATE KEY BLOCK-----")
    with db.read_only(runtime.sessions) as session:
        [event] = session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "key.export"))
    assert event.target == ALICE and event.ip == "198.51.100.7"
    alerts = queued(runtime)[before:]
    assert len(alerts) == 1 and b"Your secret key was downloaded" in alerts[0].raw
    activity = text_of(alice.get("/account/activity").text)
    assert "Secret key downloaded" in activity


def test_secret_key_download_needs_a_fresh_login(alice: Browser, clock: FakeClock) -> None:
    clock.advance(minutes=30)
    stale = alice.get("/account/secret-key")
    assert stale.status_code == 302 and "/account/confirm" in stale.headers["Location"]


def test_with_two_factor_login_the_download_needs_a_current_code(
    alice: Browser, clock: FakeClock
) -> None:
    secret, _codes = enable_2fa(alice, clock)
    clock.advance(seconds=30)
    form = {"address": ALICE, "passphrase": PASSPHRASE, "repeat": PASSPHRASE}
    refused = alice.post("/account/secret-key", {**form, "code": "000000"})
    assert refused.status_code == 400 and "The code is wrong" in text_of(refused.text)
    done = alice.post("/account/secret-key", {**form, "code": clock.code(secret)})
    assert done.status_code == 200 and b"PRIVATE KEY BLOCK" in done.data


@pytest.fixture
def unlimited_alice(
    runtime: Runtime, clock: FakeClock, mail_users: dict[str, str]
) -> Iterator[tuple[Runtime, Browser]]:
    """`alice` on a portal whose per-client limit is out of the way: the lockout's
    whole allowance is sent at once."""
    rt = Runtime.open(runtime.settings.replace(portal={"login_rate_limit": "1000/minute"}))
    app = create_app(rt, testing=True)
    set_clock(app, clock)
    with db.transaction(rt.sessions) as session:
        store.get_or_create(session, rt.ring.get(), ALICE, clock.now, events=_no_events)
    browser = Browser(app.test_client())
    assert browser.login().status_code == 302
    yield rt, browser
    rt.close()


def test_wrong_codes_on_the_download_count_towards_the_lockout(
    unlimited_alice: tuple[Runtime, Browser], clock: FakeClock
) -> None:
    """A stolen cookie plus the password (a fresh login needs no code) must not get
    unlimited guesses at the 2FA code that guards the secret key: wrong codes here
    count towards the account's one lockout, as wrong codes at sign-in do (and are
    limited per client too, tests/webportal/test_password_checks_rate_limited.py)."""
    runtime, alice = unlimited_alice
    secret, _codes = enable_2fa(alice, clock)
    clock.advance(seconds=30)
    form = {"address": ALICE, "passphrase": PASSPHRASE, "repeat": PASSPHRASE}
    for _ in range(runtime.settings.security.lockout_threshold):
        refused = alice.post("/account/secret-key", {**form, "code": "000000"})
        assert refused.status_code == 400
    # Locked: the right code no longer downloads the key, and sign-in is paused too.
    locked = alice.post("/account/secret-key", {**form, "code": clock.code(secret)})
    assert locked.status_code == 400 and "Too many failed sign-ins" in text_of(locked.text)
    assert b"PRIVATE KEY BLOCK" not in locked.data
    with db.read_only(runtime.sessions) as session:
        failures = session.scalars(
            sa.select(AuditEvent).where(
                AuditEvent.action == "reauth", AuditEvent.success.is_(False)
            )
        ).all()
    assert len(failures) == runtime.settings.security.lockout_threshold
    assert all("code" in event.detail for event in failures)
    # This browser holds Alice's device cookie (webportal.devices), so its failures
    # counted, and lock, under its own key: its sign-in is paused too...
    alice.logout()
    assert "Too many failed sign-ins" in alice.login().text
    # ...and a browser without the cookie answers to the account's count, which these
    # failures did not touch (a stolen session costs the owner's other clients nothing).
    fresh = Browser(alice.client.application.test_client())
    assert fresh.login().status_code == 302


@pytest.mark.parametrize(
    "path", ["/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml"]
)
def test_thunderbird_autoconfig(
    app: Flask, mail_users: dict[str, str], runtime: Runtime, path: str
) -> None:
    client = app.test_client()
    answer = client.get(path, query_string={"emailaddress": ALICE})
    assert answer.status_code == 200 and answer.mimetype == "application/xml"
    root = ET.fromstring(answer.data)  # noqa: S314  (our own output)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    [provider] = root.findall("emailProvider")
    assert provider.get("id") == "example.test"
    assert [d.text for d in provider.findall("domain")] == ["example.test"]
    settings = runtime.settings
    found = {
        (s.tag, s.get("type"), s.findtext("socketType"), s.findtext("port"))
        for s in provider
        if s.tag in ("incomingServer", "outgoingServer")
    }
    assert found == {
        ("incomingServer", "imap", "SSL", str(settings.imap.tls_port)),
        ("incomingServer", "imap", "STARTTLS", str(settings.imap.port)),
        ("outgoingServer", "smtp", "SSL", str(settings.smtp.tls_port)),
        ("outgoingServer", "smtp", "STARTTLS", str(settings.smtp.submission_port)),
    }
    for server in provider.findall("incomingServer") + provider.findall("outgoingServer"):
        assert server.findtext("hostname") == settings.smtp.hostname
        assert server.findtext("authentication") == "password-cleartext"
        assert server.findtext("username") == "%EMAILADDRESS%"
    # Thunderbird tries the implicit-TLS server first: it comes first.
    assert provider.find("incomingServer").findtext("socketType") == "SSL"  # type: ignore[union-attr]
    assert client.get(path, query_string={"emailaddress": "x@elsewhere.test"}).status_code == 404


def test_apple_profile_round_trips_through_plistlib(alice: Browser, runtime: Runtime) -> None:
    answer = alice.get("/setup/sealgate.mobileconfig")
    assert answer.status_code == 200
    assert answer.mimetype == "application/x-apple-aspen-config"
    profile = plistlib.loads(answer.data)
    assert plistlib.loads(plistlib.dumps(profile)) == profile
    assert profile["PayloadType"] == "Configuration" and profile["PayloadVersion"] == 1
    [mail] = profile["PayloadContent"]
    assert mail["PayloadType"] == "com.apple.mail.managed"
    assert mail["EmailAccountType"] == "EmailTypeIMAP" and mail["EmailAddress"] == ALICE
    assert mail["IncomingMailServerPortNumber"] == runtime.settings.imap.tls_port
    assert mail["IncomingMailServerUseSSL"] is True
    assert mail["OutgoingMailServerPortNumber"] == runtime.settings.smtp.tls_port
    assert mail["IncomingMailServerUsername"] == ALICE
    assert not any(
        "Password" in key and key != "OutgoingPasswordSameAsIncomingPassword" for key in mail
    )
    assert len({profile["PayloadUUID"], mail["PayloadUUID"]}) == 2


def test_the_profile_and_setup_page_need_a_login(app: Flask, mail_users: dict[str, str]) -> None:
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    assert client.get("/setup/sealgate.mobileconfig").status_code == 302
    assert client.get("/setup").status_code == 302


def test_setup_page_names_servers_ports_and_login(alice: Browser, runtime: Runtime) -> None:
    page = text_of(alice.get("/setup").text)
    settings = runtime.settings
    assert f"Incoming (IMAP) {settings.smtp.hostname} {settings.imap.tls_port} SSL/TLS" in page
    assert (
        f"Outgoing (SMTP) {settings.smtp.hostname} {settings.smtp.submission_port} STARTTLS" in page
    )
    assert ALICE in page and "User name: the full address" in page


def test_with_two_factor_login_an_app_password_needs_a_current_code(
    alice: Browser, runtime: Runtime, clock: FakeClock
) -> None:
    """An app password signs mail programs in without a code: with 2FA on, making one
    takes a code, and wrong codes count towards the account's lockout."""
    secret, _codes = enable_2fa(alice, clock)
    clock.advance(seconds=30)
    page = alice.get("/account/app-passwords").text
    assert 'name="code"' in page
    for typed in ("", "000000"):
        refused = alice.post("/account/app-passwords", {"name": "phone", "code": typed})
        assert refused.status_code == 400 and "new-app-password" not in refused.text
    with db.read_only(runtime.sessions) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(AppPassword)) == 0
        failures = session.scalars(
            sa.select(AuditEvent).where(
                AuditEvent.action == "reauth", AuditEvent.success.is_(False)
            )
        ).all()
    assert [e.detail for e in failures] == ["wrong second-factor code (app password)"] * 2
    made = alice.post("/account/app-passwords", {"name": "phone", "code": clock.code(secret)})
    assert made.status_code == 200 and "new-app-password" in made.text
