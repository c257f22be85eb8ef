"""The webmail in a real headless Chromium over TLS (issue 7, Must show 1 and 4).

Alice logs in and writes to one hosted address (Bob) and one external address
without a key (Carol). She closes the lock (confirming it, the first time);
the chips show Bob as hosted and Carol as needing a password; the password
dialog offers a generated 16-character password, Send stays disabled until she
uses it; she copies it and sends. Bob's webmail lists the message with the lock
badge and shows it decrypted, with a valid signature. Carol's notification is
taken from a test smarthost after a relay sweep, and her link opens with the
copied password. On the way, the key chip of a third address (an imported key)
shows its fingerprint on hover, and Alice's Sent view shows the secure-page
expiry. Not one request leaves the portal, and the strict CSP reports nothing.

Screenshots go to the test's tmp dir; with SEALGATE_SCREENSHOTS_DIR set (e.g.
docs/screenshots) the four the README shows are copied there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import shutil
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from gateway.pipeline.secure_page import PASSWORD_ALPHABET
from gateway.relay import Relay
from gateway.runtime import Runtime
from tests.conftest import LoopThread
from tests.fakes.smarthost import FakeSmarthost, relay_settings_for
from tests.gateway.test_secure_page import token_of
from webportal import create_app
from webportal.extensions import RUNTIME_KEY
from webportal.server import PortalServer

from .webmail_support import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    PASSWORDS,
    deliver,
    grouped,
    import_key,
    queued,
)

SUBJECT = "Vertrag für März"
SECRET = "Der Tresorcode lautet 4711-Okapi-Quetzal."
SHOTS = {
    "01-compose-lock-open.png": "webmail-compose-lock-open.png",
    "02-compose-lock-closed-password.png": "webmail-compose-password-dialog.png",
    "05-inbox.png": "webmail-inbox.png",
    "06-message.png": "webmail-message.png",
}


@pytest.fixture
def served(
    runtime: Runtime, smarthost: FakeSmarthost, mail_users: dict[str, str]
) -> Iterator[tuple[PortalServer, Runtime]]:
    """The portal on a port of its own choosing, and the runtime it runs on: links in
    notifications point at it, the relay reaches the test smarthost, key lookups stay
    on this machine (no Web Key Directory)."""
    quiet = dataclasses.replace(
        runtime,
        settings=relay_settings_for(runtime.settings, smarthost).replace(keys={"wkd": False}),
    )
    app = create_app(quiet)
    server = PortalServer(app, quiet.settings)
    server.start()
    # The URL is known once the port is bound; every request reads the runtime anew.
    linked = dataclasses.replace(
        quiet, settings=quiet.settings.replace(portal={"base_url": server.url})
    )
    app.extensions[RUNTIME_KEY] = linked
    yield server, linked
    server.stop()


@pytest.fixture
def portal(served: tuple[PortalServer, Runtime]) -> PortalServer:
    return served[0]


@pytest.fixture
def rt(served: tuple[PortalServer, Runtime]) -> Runtime:
    return served[1]


class Browsers:
    """Browser contexts (separate cookie jars and storage), closed before the portal stops."""

    def __init__(self, chromium: Browser, portal: PortalServer) -> None:
        self.chromium = chromium
        self.portal = portal
        self.contexts: list[BrowserContext] = []
        self.requests: list[str] = []
        self.console_errors: list[str] = []
        self.failed: list[str] = []

    def page(self) -> Page:
        context = self.chromium.new_context(
            ignore_https_errors=True,
            locale="en-US",
            accept_downloads=True,
            viewport={"width": 1280, "height": 860},
        )
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=self.portal.url)
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("response", lambda r: self.failed.append(r.url) if r.status >= 400 else None)
        page.on(
            "console",
            lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None,
        )
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def browsers(chromium: Browser, portal: PortalServer) -> Iterator[Browsers]:
    made = Browsers(chromium, portal)
    yield made
    made.close()


def sign_in(page: Page, portal: PortalServer, address: str) -> None:
    page.goto(f"{portal.url}/login")
    page.fill("#email", address)
    page.fill("#password", PASSWORDS[address])
    page.click("button.primary")
    expect(page).to_have_url(f"{portal.url}/inbox")


def chip(page: Page, field: str, address: str) -> Locator:
    return page.locator(f'#chips-{field} .chip[data-address="{address}"]')


def shoot(page: Page, folder: Path, name: str, *, full_page: bool = True) -> None:
    page.screenshot(path=str(folder / name), full_page=full_page)


@pytest.mark.browser
@pytest.mark.slow
def test_compose_with_the_lock_then_read_as_hosted_and_external_recipient(
    browsers: Browsers,
    portal: PortalServer,
    rt: Runtime,
    smarthost: FakeSmarthost,
    loop_thread: LoopThread,
    tmp_path: Path,
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    dave_fingerprint = import_key(rt, DAVE, tmp_path / "gpg")

    # 1. Alice writes to Bob (hosted) and Carol (external, no key); the lock is open.
    alice = browsers.page()
    sign_in(alice, portal, ALICE)
    alice.click("a.compose-button")
    expect(alice.locator("h1")).to_have_text("Write a message")
    expect(alice.locator("#lock")).to_be_visible()
    expect(alice.locator("#lock")).to_have_attribute("aria-pressed", "false")
    expect(alice.locator("fieldset.encryption")).to_be_hidden()  # the no-JS fallback
    alice.fill("#to", f"{BOB}, {CAROL}")
    alice.fill("#subject", SUBJECT)
    alice.fill("#text", f"Hallo zusammen,\n\n{SECRET}\n\nGrüße, Alice")
    expect(chip(alice, "to", BOB)).to_have_attribute("data-kind", "plain")
    expect(chip(alice, "to", CAROL)).to_have_attribute("data-kind", "plain")
    expect(alice.locator("#send")).to_be_enabled()
    shoot(alice, shots, "01-compose-lock-open.png")

    # 2. Close the lock: confirmed on first use, then the chips show each recipient's class.
    alice.click("#lock")
    expect(alice.locator("#lock-confirm")).to_be_visible()
    expect(alice.locator("#lock-confirm")).to_contain_text("Encrypt this message?")
    alice.click("#confirm-lock")
    expect(alice.locator("#lock")).to_have_attribute("aria-pressed", "true")
    bob_chip, carol_chip = chip(alice, "to", BOB), chip(alice, "to", CAROL)
    expect(bob_chip).to_have_attribute("data-kind", "hosted")
    expect(bob_chip).to_have_class(re.compile(r"\bchip-hosted\b"))
    expect(carol_chip).to_have_attribute("data-kind", "password")
    expect(carol_chip).to_have_class(re.compile(r"\bchip-password\b"))
    expect(carol_chip).to_contain_text("needs a password")

    # 3. The password dialog: a generated 16-character password, a copy button, the warning.
    dialog = alice.locator("#password-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#needs-password-list")).to_have_text(CAROL)
    expect(dialog).to_contain_text("it cannot be shown again after sending")
    expect(alice.locator("#send")).to_be_disabled()
    password = alice.input_value("#dialog-password")
    assert len(password) == 16 and set(password) <= set(PASSWORD_ALPHABET)
    # The viewport only: a modal dialog's backdrop covers the viewport, not the whole page.
    shoot(alice, shots, "02-compose-lock-closed-password.png", full_page=False)
    alice.click("#copy-password")
    expect(alice.locator("#copy-password")).to_have_text("Copied")
    assert alice.evaluate("navigator.clipboard.readText()") == password
    # Cancelling leaves Send disabled; the status line reopens the dialog.
    alice.click("#cancel-password")
    expect(dialog).to_be_hidden()
    expect(alice.locator("#send")).to_be_disabled()
    expect(alice.locator("#password-status")).to_contain_text("Set a password")
    alice.click("#change-password")
    expect(dialog).to_be_visible()
    assert alice.input_value("#dialog-password") == password
    alice.click("#use-password")
    expect(dialog).to_be_hidden()
    expect(alice.locator("#password-status")).to_contain_text(
        "Password set for recipients without a key."
    )
    expect(alice.locator("#send")).to_be_enabled()
    assert alice.input_value("#password") == password

    # A recipient with an imported key: the key chip, its fingerprint on hover.
    alice.fill("#cc", DAVE)
    dave_chip = chip(alice, "cc", DAVE)
    expect(dave_chip).to_have_attribute("data-kind", "key")
    expect(dave_chip).to_have_attribute("title", f"Has an OpenPGP key: {grouped(dave_fingerprint)}")
    dave_chip.hover()
    shoot(alice, shots, "03-compose-key-chip.png")
    alice.fill("#cc", "")
    expect(alice.locator("#chips-cc .chip")).to_have_count(0)

    # 4. Send.
    alice.click("#send")
    expect(alice).to_have_url(f"{portal.url}/sent")
    expect(alice.locator("p.notice")).to_contain_text("1 recipient(s) get a link to a secure page")
    alice.locator("td.subject a", has_text=SUBJECT).click()
    expect(alice.locator(".secure-summary")).to_contain_text("for 1 recipient(s) with a password.")
    expect(alice.locator(".secure-links td.recipient")).to_have_text(CAROL)
    # Her Sent copy is sealed under the password she just set: she types it to read it.
    expect(alice.locator(".text-body")).to_have_count(0)
    alice.fill("#sealed-password", password)
    alice.click("form.sealed-unlock button")
    expect(alice.locator(".text-body")).to_contain_text(SECRET)
    expect(alice.locator(".secure-summary")).to_contain_text("for 1 recipient(s) with a password.")
    shoot(alice, shots, "04-sent-secure-page.png")

    # 5. Bob: the lock badge in the inbox, the message decrypted, the signature valid.
    # (Two older plain messages beside it, as an inbox has.)
    for days, subject, sender in (
        (3, "Protokoll der Sitzung", "lena.berger@partner.example"),
        (1, "Mittagessen am Freitag?", "tom@elsewhere.example"),
    ):
        older = EmailMessage()
        older["From"], older["To"], older["Subject"] = sender, BOB, subject
        older.set_content("Hallo Bob")
        deliver(rt, BOB, older, when=dt.datetime.now(dt.UTC) - dt.timedelta(days=days))
    bob = browsers.page()
    sign_in(bob, portal, BOB)
    row = bob.locator("table.messages tbody tr", has_text=SUBJECT)
    expect(row.locator(".badge-lock")).to_be_visible()
    expect(bob.locator("table.messages .badge-lock")).to_have_count(1)
    expect(row.locator("td.from")).to_have_text(ALICE)
    shoot(bob, shots, "05-inbox.png")
    row.locator("td.subject a").click()
    expect(bob.locator("h1.subject")).to_have_text(SUBJECT)
    expect(bob.locator(".badge.encrypted")).to_have_text(re.compile("Encrypted"))
    expect(bob.locator(".signature")).to_have_text("Signed by the sender: the signature is valid.")
    expect(bob.locator(".text-body")).to_contain_text(SECRET)
    shoot(bob, shots, "06-message.png")

    # 6. Carol: the notification from the smarthost, her link opens with the copied password.
    waiting = len(queued(rt, everything=True))
    loop_thread.run(Relay(rt).sweep())
    smarthost.wait_for(waiting)
    (notification,) = [m for m in smarthost.messages if m.rcpt_tos == (CAROL,)]
    assert notification.tls and SECRET.encode() not in notification.content
    link = f"{portal.url}/s/{token_of(notification.content)}"
    assert link in notification.content.decode()
    carol = browsers.page()
    carol.goto(link)
    expect(carol.locator("h1")).to_have_text("Encrypted message")
    carol.fill("#password", password)
    carol.click("button.primary")
    expect(carol.locator("h1.subject")).to_have_text(SUBJECT)
    expect(carol.locator(".text-body").first).to_contain_text(SECRET)
    shoot(carol, shots, "07-secure-page.png")

    # Nothing left the portal; the CSP refused nothing (no inline script or style).
    others = [url for url in browsers.requests if not url.startswith(portal.url + "/")]
    assert others == []
    assert [url for url in browsers.failed if not url.endswith("/favicon.ico")] == []
    # The favicon's 404 is the only console error: a CSP refusal would be one too.
    assert [e for e in browsers.console_errors if "404 (NOT FOUND)" not in e] == []

    for name in SHOTS:
        assert (shots / name).stat().st_size > 5000
    target = os.environ.get("SEALGATE_SCREENSHOTS_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for name, published in SHOTS.items():
            shutil.copy2(shots / name, Path(target) / published)
