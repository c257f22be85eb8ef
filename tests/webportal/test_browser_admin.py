"""The admin console in a real headless Chromium, as an admin with two-factor login (Must show 1).

The admin signs in with password and TOTP code, creates a domain, an account
and an address (the address password is read off the page it is shown on
once), turns "always encrypt" on for the account and adds a "require
encryption" rule for the partner's domain. A real SMTP submission over TLS
from that address then leaves through the relay to a recording smarthost as
PGP/MIME that the partner's GnuPG opens; the mail log names it with the
smarthost's answer. The admin rotates the address key and the master key (the
re-wrap runs in the background task `sealgate serve` runs, the page polls its
progress) and finds both events in the audit viewer.

Screenshots of every console page go to the test's tmp dir; with
SEALGATE_SCREENSHOTS_DIR set (e.g. docs/screenshots) they are copied there for
the README.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import shutil
import smtplib
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, BrowserContext, Page, expect

from gateway import db
from gateway.admin import keys as admin_keys
from gateway.relay import Relay
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from keystore import store
from keystore.masterkey import load_ring
from keystore.models import StoredKey
from tests.conftest import LoopThread
from tests.fakes.smarthost import FakeSmarthost, relay_settings_for
from tests.gnupg import GnuPG
from webportal import create_app
from webportal.server import PortalServer

from .admin_support import ROOT, ROOT_PW, current_code, make_admin
from .webmail_support import import_key

PARTNER = "carol@partner.example"
DANA = "dana@shop.test"
SECRET = "Die Zugangsdaten für das Lager: Tor 7, Code 4711."
FILLER_KEYS = 24
SHOTS = (
    "admin-01-overview.png",
    "admin-02-domains.png",
    "admin-03-accounts.png",
    "admin-04-account.png",
    "admin-05-policy.png",
    "admin-06-keys.png",
    "admin-07-master-rotation.png",
    "admin-08-audit.png",
    "admin-09-mail-log.png",
    "admin-10-queue.png",
)


@pytest.fixture
def rt(runtime: Runtime, smarthost: FakeSmarthost) -> Runtime:
    settings = relay_settings_for(runtime.settings, smarthost).replace(
        admin={"rotation_poll_interval": 0.2, "rotation_batch_size": 4}
    )
    return dataclasses.replace(runtime, settings=settings)


@pytest.fixture
def secret(rt: Runtime) -> str:
    made = make_admin(rt)
    assert made is not None
    return made


@pytest.fixture
def servers(
    rt: Runtime, secret: str, loop_thread: LoopThread
) -> Iterator[tuple[PortalServer, SubmissionServer]]:
    """The portal, SMTP submission and the background rotation task, as `serve` runs them."""
    portal = PortalServer(create_app(rt), rt.settings)
    portal.start()
    smtp = SubmissionServer(rt)
    loop_thread.run(smtp.start())

    async def start_rotations() -> tuple[object, object]:
        import asyncio

        stop = asyncio.Event()
        task = asyncio.create_task(admin_keys.run_rotations(rt, stop))
        return stop, task

    stop, task = loop_thread.run(start_rotations())
    yield portal, smtp

    async def stop_rotations() -> None:
        stop.set()  # type: ignore[attr-defined]
        await task  # type: ignore[misc]

    loop_thread.run(stop_rotations())
    loop_thread.run(smtp.stop(grace=5))
    portal.stop()


@pytest.fixture
def page(chromium: Browser, servers: tuple[PortalServer, SubmissionServer]) -> Iterator[Page]:
    context: BrowserContext = chromium.new_context(
        ignore_https_errors=True, locale="en-US", viewport={"width": 1280, "height": 900}
    )
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


def send_smtp(smtp: SubmissionServer, ctx: ssl.SSLContext, password: str) -> None:
    msg = EmailMessage()
    msg["From"] = DANA
    msg["To"] = PARTNER
    msg["Subject"] = "Lager"
    msg["Message-ID"] = "<admin-walk-1@shop.test>"
    msg.set_content(SECRET)  # no encryption header, no subject tag: the policy decides
    with smtplib.SMTP_SSL("127.0.0.1", smtp.tls_port, context=ctx, timeout=60) as client:
        client.login(DANA, password)
        assert client.sendmail(DANA, [PARTNER], msg.as_bytes()) == {}


@pytest.mark.browser
def test_admin_walks_the_console(
    page: Page,
    servers: tuple[PortalServer, SubmissionServer],
    rt: Runtime,
    secret: str,
    smarthost: FakeSmarthost,
    client_ssl_context: ssl.SSLContext,
    loop_thread: LoopThread,
    tmp_path: Path,
) -> None:
    portal, smtp = servers
    base = portal.url
    shots = tmp_path / "screenshots"
    shots.mkdir()
    partner_gpg_home = tmp_path / "partner"
    import_key(rt, PARTNER, partner_gpg_home)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

    def shot(name: str) -> None:
        page.screenshot(path=str(shots / name), full_page=True)

    def flash() -> str:
        return page.locator("p.notice").first.inner_text()

    # Sign in: password, then the TOTP code.
    page.goto(f"{base}/login")
    page.fill("#email", ROOT)
    page.fill("#password", ROOT_PW)
    page.click("button.primary")
    expect(page).to_have_url(f"{base}/login/code")
    page.fill("#code", current_code(secret))
    page.click("button.primary")
    expect(page).to_have_url(f"{base}/inbox")
    page.click("a.admin-link")
    expect(page.locator("h1")).to_have_text("Administration")
    shot(SHOTS[0])

    # A domain.
    page.click("nav.admin-nav >> text=Domains")
    page.fill("input[name=name]", "shop.test")
    page.click("button:has-text('Add domain')")
    expect(page.locator("tr[data-domain='shop.test']")).to_contain_text("active")
    shot(SHOTS[1])

    # An account and its address; each password is shown once.
    page.click("nav.admin-nav >> text=Accounts")
    page.fill("input[name=email]", DANA)
    page.click("button:has-text('Create account')")
    expect(page.locator("h1")).to_have_text("Password made")
    assert len(page.inner_text("#new-password")) >= 16
    page.click("text=Done")
    expect(page.locator("h1")).to_have_text(DANA)
    page.fill("input[name=address]", DANA)
    page.click("button:has-text('Add address')")
    smtp_password = page.inner_text("#new-password")
    assert len(smtp_password) >= 16
    page.click("text=Done")

    # Always encrypt for the account.
    page.check("input[name=always_encrypt]")
    page.click("button:has-text('Save settings')")
    assert f"Settings of {DANA} saved." in flash()
    expect(page.locator("input[name=always_encrypt]")).to_be_checked()
    shot(SHOTS[3])
    page.click("nav.admin-nav >> text=Accounts")
    page.fill("input[type=search]", "dana")
    page.click("button:has-text('Search')")
    expect(page.locator("table.list tbody tr")).to_have_count(1)
    shot(SHOTS[2])

    # A "require encryption" rule for the partner's domain.
    page.click("nav.admin-nav >> text=Encryption policy")
    page.fill("form[action$='/policy/rules'] input[name=domain]", "partner.example")
    page.click("button:has-text('Require encryption')")
    assert "Mail to partner.example is now always encrypted." in flash()
    shot(SHOTS[4])

    # An SMTP message from the account leaves encrypted.
    send_smtp(smtp, client_ssl_context, smtp_password)

    async def sweep() -> None:
        import asyncio

        await Relay(rt).sweep()
        await asyncio.sleep(0.3)

    loop_thread.run(sweep())
    arrived = smarthost.wait_for(1)
    [relayed] = [m for m in arrived if m.rcpt_tos == (PARTNER,)]
    assert relayed.tls
    assert SECRET.encode() not in relayed.content and b"Zugangsdaten" not in relayed.content
    assert b"multipart/encrypted" in relayed.content
    armored = re.search(
        rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----", relayed.content, re.S
    )
    assert armored is not None
    # The partner's GnuPG opens it (it exits 2 only because it lacks the sender's key
    # to check the signature; the decryption itself succeeded).
    opened = GnuPG(partner_gpg_home).run("--decrypt", input=armored.group(0), check=False)
    assert b"Zugangsdaten" in opened.stdout and b"Tor 7, Code 4711." in opened.stdout
    assert b"Can't check signature: No public key" in opened.stderr

    # The mail log finds it by recipient, with the handling and the smarthost's answer.
    page.click("nav.admin-nav >> text=Mail log")
    page.fill("input[name=address]", PARTNER)
    page.click("button:has-text('Search')")
    row = page.locator("table.maillog tbody tr").first
    expect(row).to_contain_text("pgp")
    expect(row).to_contain_text("sent")
    expect(row).to_contain_text("250")
    shot(SHOTS[8])

    # Rotate the address key.
    with db.transaction(rt.sessions) as session:
        now = dt.datetime.now(dt.UTC)
        for i in range(FILLER_KEYS):  # enough keys for the master rotation to take batches
            store.get_or_create(
                session, rt.ring.get(), f"filler{i}@shop.test", now, events=lambda *a: None
            )
        old = store.current_key(session, DANA)
        assert old is not None
        old_fingerprint = old.fingerprint
    page.click("nav.admin-nav >> text=Keys")
    page.fill("input[name=address]", DANA)
    page.click("button:has-text('Show')")
    page.click(f"button:has-text('Rotate the key of {DANA}')")
    assert "the old one stays for reading" in flash()
    expect(page.locator("table.keys")).to_contain_text("retired")
    with db.read_only(rt.sessions) as session:
        new = store.current_key(session, DANA)
        assert new is not None and new.fingerprint != old_fingerprint
        key_count = session.scalar(sa.select(sa.func.count()).select_from(StoredKey))
    shot(SHOTS[5])

    # Rotate the master key: the page polls the background job until it is done.
    old_version = load_ring(rt.settings.data_dir).primary
    seen: list[dict[str, object]] = []
    page.on(
        "response",
        lambda r: seen.append(r.json()) if r.url.endswith("/progress") and r.ok else None,
    )
    page.click("button:has-text('Rotate the master key')")
    expect(page).to_have_url(re.compile(r"/admin/keys/master/\d+$"))
    expect(page.locator("#rotation-state")).to_have_text("done", timeout=60_000)
    expect(page.locator("#rotation-percent")).to_have_text("100")
    assert page.inner_text("#rotation-done") == page.inner_text("#rotation-total") == str(key_count)
    assert seen and seen[-1]["state"] == "done" and seen[-1]["done"] == key_count
    shot(SHOTS[6])
    ring = load_ring(rt.settings.data_dir)
    assert ring.primary != old_version and old_version not in ring.active_versions
    with db.read_only(rt.sessions) as session:
        versions = set(session.scalars(sa.select(StoredKey.master_version)))
    assert versions == {ring.primary}

    # Both events in the audit viewer.
    page.click("nav.admin-nav >> text=Audit log")
    page.fill("input[name=action]", "key.rotate")
    page.click("button:has-text('Filter')")
    rotated = page.locator("tr[data-action='key.rotate']")
    expect(rotated).to_have_count(1)
    expect(rotated).to_contain_text(DANA)
    expect(rotated).to_contain_text(ROOT)
    page.fill("input[name=action]", "master")
    page.click("button:has-text('Filter')")
    expect(page.locator("tr[data-action='master.rotate_requested']")).to_contain_text(ROOT)
    expect(page.locator("tr[data-action='master.rotate']")).to_have_count(1)
    expect(page.locator("tr[data-action='master.retire']")).to_have_count(1)
    shot(SHOTS[7])

    page.click("nav.admin-nav >> text=Queue")
    expect(page.locator("h1")).to_have_text("Outbound queue")
    shot(SHOTS[9])
    # No failed request (but the favicon the portal does not have), no CSP violation.
    assert [url for url in failed if not url.endswith("/favicon.ico")] == []
    assert [e for e in console_errors if "favicon" not in e and "404" not in e] == []

    for name in SHOTS:
        assert (shots / name).stat().st_size > 1000
    target = os.environ.get("SEALGATE_SCREENSHOTS_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for name in SHOTS:
            shutil.copy2(shots / name, Path(target) / name)
