"""Two-factor login in a real headless Chromium against the portal over TLS.

Must show 1: enable 2FA by reading the secret off the page, log out, log in
with password and code; a reused code is refused; a recovery code works once.
It also shows what only a browser can: the QR code (an SVG data: URI) renders
under the portal's Content-Security-Policy, cookies with the `__Host-` prefix
work, and the forms pass the CSRF and Sec-Fetch-Site checks as browsers send them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from gateway.runtime import Runtime
from webportal import create_app
from webportal.clock import set_clock
from webportal.server import PortalServer

from .account_support import ALICE, ALICE_PW, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def portal(
    runtime: Runtime, mail_users: dict[str, str], clock: FakeClock
) -> Iterator[PortalServer]:
    app = create_app(runtime)
    set_clock(app, clock)
    server = PortalServer(app, runtime.settings)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def new_page(chromium: Browser, portal: PortalServer) -> Iterator[Callable[[], Page]]:
    """Pages in fresh browser contexts (separate cookie jars), closed before the portal
    stops so no keep-alive connection holds its shutdown up."""
    contexts: list[BrowserContext] = []

    def make() -> Page:
        context = chromium.new_context(ignore_https_errors=True, locale="en-US")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        return page

    yield make
    for context in contexts:
        context.close()


def sign_in(page: Page, portal: PortalServer) -> None:
    page.goto(f"{portal.url}/login")
    page.fill("#email", ALICE)
    page.fill("#password", ALICE_PW)
    page.click("button.primary")


def sign_out(page: Page, portal: PortalServer) -> None:
    page.click("text=Sign out")
    expect(page).to_have_url(f"{portal.url}/login")


@pytest.mark.browser
def test_enable_2fa_then_sign_in_with_code_replay_and_recovery_code(
    new_page: Callable[[], Page], portal: PortalServer, clock: FakeClock, tmp_path: Path
) -> None:
    page = new_page()
    context = page.context
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)

    sign_in(page, portal)
    expect(page).to_have_url(f"{portal.url}/inbox")
    cookies = {c["name"]: c for c in context.cookies()}
    assert set(cookies) == {"__Host-sealgate", "__Host-sealgate_device"}
    # Chromium took the device cookie (webportal.devices) as sent: HttpOnly, Secure, Strict.
    device = cookies["__Host-sealgate_device"]
    assert (device["httpOnly"], device["secure"], device["sameSite"]) == (True, True, "Strict")

    page.click("text=Security")
    expect(page.locator("#two-factor")).to_contain_text("Off.")
    page.click("text=Turn on two-factor login")
    expect(page).to_have_url(f"{portal.url}/account/2fa/enable")
    qr = page.locator(".qr img")
    expect(qr).to_be_visible()
    # The CSP allows data: images; a blocked image would have no natural size.
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")
    secret = page.inner_text("#totp-secret").replace(" ", "")
    assert len(secret) == 32
    page.screenshot(path=str(tmp_path / "2fa-enable.png"), full_page=True)

    page.fill("#code", clock.code(secret))
    page.click("button.primary")
    expect(page.locator("#recovery-codes code")).to_have_count(10)
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10 and len(set(codes)) == 10
    page.screenshot(path=str(tmp_path / "2fa-recovery-codes.png"), full_page=True)
    page.click("text=I have stored the codes")
    expect(page.locator("#two-factor")).to_contain_text("On since")
    sign_out(page, portal)

    # Password, then a fresh code.
    clock.advance(seconds=60)
    sign_in(page, portal)
    expect(page).to_have_url(f"{portal.url}/login/code")
    code = clock.code(secret)
    page.fill("#code", code)
    page.click("button.primary")
    expect(page).to_have_url(f"{portal.url}/inbox")
    sign_out(page, portal)

    # The same code again (still inside its 30 s): refused.
    sign_in(page, portal)
    expect(page).to_have_url(f"{portal.url}/login/code")
    page.fill("#code", code)
    page.click("button.primary")
    expect(page.locator("p.error")).to_have_text("The code is wrong or was already used.")
    expect(page).to_have_url(f"{portal.url}/login/code")
    page.screenshot(path=str(tmp_path / "2fa-replay-refused.png"), full_page=True)

    # A recovery code works...
    page.fill("#code", codes[0])
    page.click("button.primary")
    expect(page).to_have_url(f"{portal.url}/inbox")
    expect(page.locator("p.notice")).to_contain_text("You signed in with a recovery code.")
    sign_out(page, portal)

    # ...once.
    sign_in(page, portal)
    page.fill("#code", codes[0])
    page.click("button.primary")
    expect(page.locator("p.error")).to_have_text("The code is wrong or was already used.")
    page.goto(f"{portal.url}/inbox")
    expect(page).to_have_url(f"{portal.url}/login?next=/inbox")

    # No CSP violation, no failed request (but the favicon the portal does not have).
    assert [url for url in failed if not url.endswith("/favicon.ico")] == []
    assert [e for e in console_errors if "favicon" not in e and "404" not in e] == []


@pytest.mark.browser
def test_ending_a_session_in_one_browser_logs_out_the_other(
    new_page: Callable[[], Page], portal: PortalServer, clock: FakeClock, tmp_path: Path
) -> None:
    laptop, phone = new_page(), new_page()
    for page in (laptop, phone):
        sign_in(page, portal)
        expect(page).to_have_url(f"{portal.url}/inbox")

    phone.goto(f"{portal.url}/account/sessions")
    rows = phone.locator("table.sessions tbody tr")
    expect(rows).to_have_count(2)
    other = phone.locator("table.sessions tbody tr:not(.current)")
    phone.screenshot(path=str(tmp_path / "sessions.png"), full_page=True)
    other.locator("text=End this session").click()
    expect(phone.locator("p.notice")).to_have_text("The session was ended.")
    expect(rows).to_have_count(1)

    laptop.reload()
    expect(laptop).to_have_url(f"{portal.url}/login?next=/inbox")
    phone.goto(f"{portal.url}/inbox")
    expect(phone).to_have_url(f"{portal.url}/inbox")
