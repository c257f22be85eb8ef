"""Back in a real headless Chromium after a form: a page, never "Confirm Form Resubmission".

Threat: Back to a page that had answered a POST made Chromium ask to send the form
again, and sending it did the thing again: the password change (its steps page was
the POST's answer) counted the old password, now wrong, against the lockout; an app
password or recovery codes were made a second time; a secure-page password was
tried again. A form that succeeds redirects (Post/Redirect/Get); a page that answers
the POST itself (a form shown again with its errors, something shown once) turns its
history entry into a plain GET (webportal/after_post.py). Each case goes Back after
the form and checks the page that loads.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from gateway.runtime import Runtime
from tests.webportal.test_secure import CAROL, MARKER, PASSWORD, compose, send
from webportal.server import PortalServer

from . import test_browser_webmail as webmail
from .test_browser_webmail import Browsers, sign_in
from .webmail_support import ALICE, BOB, PASSWORDS, rows

served = webmail.served
portal = webmail.portal
rt = webmail.rt
browsers = webmail.browsers

RESUBMISSION = "Confirm Form Resubmission"


def back(page: Page) -> None:
    """Back one page; it must load (Chromium's resubmission page fails the navigation
    with net::ERR_CACHE_MISS, which Playwright raises)."""
    page.go_back()
    expect(page.locator("body")).not_to_contain_text(RESUBMISSION)


def open_secure_page(page: Page, url: str, *, wrong_first: bool = False) -> None:
    page.goto(url)
    if wrong_first:
        page.fill("#password", "not the password")
        page.press("#password", "Enter")
        expect(page.locator(".error")).to_contain_text("The password is wrong.")
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    expect(page.locator("#reply-text")).to_be_visible()


@pytest.mark.browser
@pytest.mark.slow
def test_back_after_a_form_that_worked_loads_the_page_before_it(
    browsers: Browsers, portal: PortalServer, rt: Runtime
) -> None:
    # The secure page: the password opens it, the answer is sent; Back shows the message.
    token = send(rt, compose(), [CAROL])[CAROL]
    carol = browsers.page()
    open_secure_page(carol, f"{portal.url}/s/{token}")
    carol.fill("#reply-text", "Signed, Carol")
    carol.click(".secure-reply button.primary")
    expect(carol.locator(".notice")).to_have_text("Your answer was sent, encrypted.")
    back(carol)
    expect(carol).to_have_url(f"{portal.url}/s/{token}")
    expect(carol.locator("body")).to_contain_text(MARKER)

    # Sign-in: Back goes to the sign-in page, which sends a signed-in browser on.
    alice = browsers.page()
    sign_in(alice, portal, ALICE)
    back(alice)
    expect(alice).to_have_url(f"{portal.url}/inbox")

    # Settings saved: Back from the next page shows the settings again.
    alice.goto(f"{portal.url}/account/settings")
    alice.click("main form button[type=submit]")
    expect(alice.locator(".notice")).to_have_text("Your settings were saved.")
    alice.goto(f"{portal.url}/inbox")
    back(alice)
    expect(alice).to_have_url(f"{portal.url}/account/settings")
    expect(alice.locator("h1")).to_have_text("Settings")

    # A message sent: Back goes to the compose page.
    alice.goto(f"{portal.url}/compose")
    alice.fill("#to", BOB)
    alice.fill("#subject", "Zurück")
    alice.fill("#text", "Einmal.")
    alice.click("#send")
    expect(alice).to_have_url(f"{portal.url}/sent")
    back(alice)
    expect(alice).to_have_url(f"{portal.url}/compose")
    assert len(rows(rt, BOB)) == 1

    # The password changed, then one of its steps taken: Back shows the steps again,
    # and the old password was not sent a second time (no failed sign-in counted).
    alice.goto(f"{portal.url}/account/password")
    alice.fill("#current", PASSWORDS[ALICE])
    alice.fill("#new", "a-new-portal-password")
    alice.fill("#repeat", "a-new-portal-password")
    alice.click("main form button.primary")
    expect(alice).to_have_url(f"{portal.url}/account/password/changed")
    alice.click("text=End all other sessions")
    expect(alice).to_have_url(f"{portal.url}/account/security")
    back(alice)
    expect(alice).to_have_url(f"{portal.url}/account/password/changed")
    expect(alice.locator("h1")).to_have_text("Password changed")
    alice.goto(f"{portal.url}/account/activity")
    expect(alice.locator("main")).not_to_contain_text("Sign-in failed")


@pytest.mark.browser
@pytest.mark.slow
def test_back_to_a_form_shown_again_with_its_errors_loads_it_without_sending_it(
    browsers: Browsers, portal: PortalServer, rt: Runtime
) -> None:
    # A wrong password, then the right one: Back shows the page, now open.
    token = send(rt, compose(), [CAROL])[CAROL]
    carol = browsers.page()
    open_secure_page(carol, f"{portal.url}/s/{token}", wrong_first=True)
    back(carol)
    expect(carol).to_have_url(f"{portal.url}/s/{token}")
    expect(carol.locator("body")).to_contain_text(MARKER)

    # An empty answer is refused on the reply URL; Back to it from the next page
    # loads the page again.
    carol.fill("#reply-text", "   ")
    carol.click(".secure-reply button.primary")
    expect(carol.locator(".secure-reply .error")).to_contain_text("Write an answer")
    carol.goto(f"{portal.url}/s/{token}")
    back(carol)
    expect(carol.locator("body")).to_contain_text(MARKER)

    # A wrong sign-in password, then the right one: Back goes on to the inbox.
    alice = browsers.page()
    alice.goto(f"{portal.url}/login")
    alice.fill("#email", ALICE)
    alice.fill("#password", "not the password")
    alice.click("button.primary")
    expect(alice.locator(".error")).to_be_visible()
    alice.fill("#password", PASSWORDS[ALICE])
    alice.click("button.primary")
    expect(alice).to_have_url(f"{portal.url}/inbox")
    back(alice)
    expect(alice).to_have_url(f"{portal.url}/inbox")

    # A message refused (no such address), then sent: Back loads the compose page and
    # sends nothing.
    alice.goto(f"{portal.url}/compose")
    alice.fill("#to", "not an address")
    alice.fill("#subject", "Fehler")
    alice.fill("#text", "Erst falsch.")
    alice.click("#send")
    expect(alice.locator("#compose-error")).to_contain_text("not a valid mail address")
    alice.fill("#to", BOB)
    alice.click("#send")
    expect(alice).to_have_url(f"{portal.url}/sent")
    back(alice)
    expect(alice).to_have_url(f"{portal.url}/compose")
    assert len(rows(rt, BOB)) == 1


@pytest.mark.browser
@pytest.mark.slow
def test_back_to_something_shown_once_neither_shows_it_again_nor_makes_it_again(
    browsers: Browsers, portal: PortalServer, rt: Runtime
) -> None:
    alice = browsers.page()
    sign_in(alice, portal, ALICE)
    alice.goto(f"{portal.url}/account/app-passwords")
    alice.fill("#name", "Telefon")
    alice.click("main form button.secondary")
    shown = alice.locator("#new-app-password").inner_text()
    assert len(shown) > 10
    alice.goto(f"{portal.url}/account/security")
    back(alice)
    expect(alice).to_have_url(f"{portal.url}/account/app-passwords")
    expect(alice.locator("#new-app-password")).to_have_count(0)
    expect(alice.locator("main")).not_to_contain_text(shown)
    expect(alice.locator("main")).to_contain_text("Telefon")
    alice.reload()
    expect(alice.locator("main table tbody tr")).to_have_count(1)  # made once
