"""The portal on a phone: every page fits 390 px (issue 14, Must show 6).

In a real headless Chromium at 390x844 (an iPhone-sized viewport, touch, device
scale 2) against the portal over TLS: the inbox, a message, compose, the
Security page, the sent secure-page list, and the external recipient's secure
page (password form and the opened message), then every other page a signed-in
user reaches (other folders, search, autoresponder, sessions, activity, app
passwords, password changes, 2FA setup). On each, no visible element reaches
past the viewport's right edge (or before its left), and the document does not
scroll sideways. The top bar collapses behind a menu button and the mail list
becomes a list of cards.

Screenshots go to the test's tmp dir; with SEALGATE_SCREENSHOTS_DIR set (e.g.
docs/screenshots) they are copied there for the README.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from gateway.pipeline import ClientInfo, Sender, Submission, submit
from gateway.runtime import Runtime
from tests.gateway.test_secure_page import queued, token_of
from webportal import create_app
from webportal.server import PortalServer

from .webmail_support import ALICE, PASSWORDS, deliver

WIDTH, HEIGHT = 390, 844
CAROL = "carol@elsewhere.example"
SECURE_PASSWORD = "Tulpe-Regen-42-Kiesel"
# Long unbroken words are what used to push a phone layout sideways.
LONG_SUBJECT = "Quartalsabrechnung-Vertragsverlaengerung-Rechnungsnummer-2026-000123456789"
LONG_SENDER = "accounts-receivable-department.notifications@very-long-subsidiary-name.example"

# Every visible element whose box leaves the viewport horizontally, described.
OVERFLOW_JS = """
() => {
  const vw = document.documentElement.clientWidth;
  const out = [];
  if (document.documentElement.scrollWidth > vw) {
    out.push(`document scrolls sideways: ${document.documentElement.scrollWidth} > ${vw}`);
  }
  for (const el of document.body.querySelectorAll("*")) {
    const style = getComputedStyle(el);
    if (style.display === "none" || style.visibility === "hidden") continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.right > vw + 0.5 || r.left < -0.5) {
      const classes = typeof el.className === "string" ? el.className.trim() : "";
      const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
        (classes ? "." + classes.split(/\\s+/).join(".") : "");
      out.push(`${name} spans ${Math.round(r.left)}..${Math.round(r.right)} of ${vw}`);
    }
  }
  return out;
}
"""


@pytest.fixture
def portal(runtime: Runtime, mail_users: dict[str, str]) -> Iterator[PortalServer]:
    quiet = runtime.settings.replace(keys={"wkd": False})
    opened = Runtime.open(quiet)
    server = PortalServer(create_app(opened), quiet)
    server.start()
    yield server
    server.stop()
    opened.close()


@pytest.fixture
def phone(chromium: Browser) -> Iterator[BrowserContext]:
    context = chromium.new_context(
        ignore_https_errors=True,
        locale="en-US",
        viewport={"width": WIDTH, "height": HEIGHT},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    yield context
    context.close()


def shots_dir(tmp_path: Path) -> Path:
    target = tmp_path / "screenshots"
    target.mkdir(exist_ok=True)
    return target


def check_fits(page: Page, name: str, tmp_path: Path, *, publish: bool = True) -> None:
    """Assert nothing leaves the viewport sideways, and keep a screenshot of the page."""
    page.wait_for_load_state("load")
    overflowing = page.evaluate(OVERFLOW_JS)
    path = shots_dir(tmp_path) / f"phone-{name}.png"
    page.screenshot(path=str(path), full_page=False)
    published = os.environ.get("SEALGATE_SCREENSHOTS_DIR")
    if published and publish:
        Path(published).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(published) / path.name)
    assert overflowing == [], f"{name} at {WIDTH} px: {overflowing}"


def _secure_page_token(runtime: Runtime) -> str:
    """Alice sends to an external address without a key: the pipeline seals a secure page."""
    msg = EmailMessage()
    msg["From"] = ALICE
    msg["To"] = CAROL
    msg["Subject"] = f"[encrypt] {LONG_SUBJECT}"
    msg["X-Sealgate-Password"] = SECURE_PASSWORD
    msg.set_content("Hello Carol,\n\nthe contract number is " + "7" * 80 + ".\n")
    with runtime.sessions() as session:
        from gateway import accounts

        address = accounts.find_address(session, ALICE)
        assert address is not None
        account_id = address.account_id
    submit(
        runtime,
        Submission(
            sender=Sender(account_id=account_id, address=ALICE),
            envelope_from=ALICE,
            recipients=[CAROL],
            raw=bytes(msg),
            client=ClientInfo(helo="phone-test", ip="127.0.0.1", protocol="ESMTPSA"),
            received_at=dt.datetime.now(dt.UTC),
        ),
    )
    [notification] = [item for item in queued(runtime) if item.rcpt_to == CAROL]
    return token_of(notification.raw)


def test_every_page_fits_a_phone(
    portal: PortalServer, phone: BrowserContext, runtime: Runtime, tmp_path: Path
) -> None:
    for n in range(3):
        msg = EmailMessage()
        msg["From"] = f"Accounts <{LONG_SENDER}>"
        msg["To"] = ALICE
        msg["Subject"] = f"{LONG_SUBJECT} #{n}" if n else "Lunch on Friday?"
        msg.set_content("Hi Alice,\n\n" + ("a-very-long-unbroken-token-" * 8) + "\n")
        message_id = deliver(runtime, ALICE, msg)
    token = _secure_page_token(runtime)

    page = phone.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{portal.url}/login")
    # The check sees an element that is too wide (so it can fail) ...
    page.evaluate(
        "() => { const d = document.createElement('div'); d.id = 'wide';"
        " d.style.width = '500px'; d.textContent = 'x'; document.body.append(d); }"
    )
    assert any("div#wide spans" in line for line in page.evaluate(OVERFLOW_JS))
    page.evaluate("() => document.getElementById('wide').remove()")
    check_fits(page, "login", tmp_path)
    page.fill("#email", ALICE)
    page.fill("#password", PASSWORDS[ALICE])
    page.click("button.primary")
    expect(page).to_have_url(f"{portal.url}/inbox")

    # The top bar collapsed: the account links sit behind the menu button.
    toggle = page.locator(".topbar .menu-toggle")
    expect(toggle).to_be_visible()
    expect(page.locator(".topbar nav.account a").first).to_be_hidden()
    # The mail list is cards: one row is as wide as the list, its cells stacked.
    row = page.locator("table.messages tbody tr").first
    cell_boxes = [c.bounding_box() for c in row.locator("td.from, td.subject").all()]
    assert all(box is not None for box in cell_boxes)
    assert cell_boxes[1]["y"] > cell_boxes[0]["y"]  # type: ignore[index]
    check_fits(page, "inbox", tmp_path)
    toggle.click()
    expect(page.locator(".topbar nav.account a", has_text="Security")).to_be_visible()
    check_fits(page, "menu-open", tmp_path)

    page.goto(f"{portal.url}/mail/{message_id}")
    expect(page.locator(".mail-message")).to_be_visible()
    check_fits(page, "message", tmp_path)

    page.goto(f"{portal.url}/compose")
    check_fits(page, "compose", tmp_path)

    page.goto(f"{portal.url}/account/security")
    check_fits(page, "security", tmp_path)

    page.goto(f"{portal.url}/secure/sent")
    check_fits(page, "secure-sent", tmp_path)

    # The other pages of the portal, for "every page": no screenshot needed in the README.
    for path in (
        "/sent",
        "/drafts",
        "/trash",
        f"/search?q={LONG_SUBJECT[:20]}",
        "/autoresponder",
        "/account/sessions",
        "/account/activity",
        "/account/app-passwords",
        "/account/password",
        "/account/address-password",
        "/account/2fa/enable",
    ):
        page.goto(f"{portal.url}{path}")
        assert page.url.startswith(f"{portal.url}{path.split('?')[0]}"), page.url
        check_fits(page, path.strip("/").split("?")[0].replace("/", "-"), tmp_path, publish=False)

    recipient = phone.new_page()
    recipient.goto(f"{portal.url}/s/{token}")
    check_fits(recipient, "secure-password", tmp_path)
    recipient.fill("input[type=password]", SECURE_PASSWORD)
    recipient.locator("button[type=submit]").first.click()
    expect(recipient.get_by_text("the contract number is")).to_be_visible()
    check_fits(recipient, "secure-message", tmp_path)
