"""A NUL in an answer or a message, in a real headless Chromium: the text comes back.

Threat: an outside recipient's answer on the secure page holding one NUL (pasted, or
put there by a script) got the generic 400 page, and everything typed was gone; the
webmail's compose form the same. Chromium sends the NUL as it is (a form field may
carry one); the page comes back with the text in the field, each NUL shown as U+FFFD,
and the problem named; sent again as it now reads, it goes.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from gateway.runtime import Runtime
from tests.webportal.test_secure import ALICE, CAROL, PASSWORD, compose, inbox, send
from webportal.server import PortalServer

from . import test_browser_webmail as webmail
from .test_browser_webmail import Browsers, sign_in
from .webmail_support import BOB, rows

served = webmail.served
portal = webmail.portal
rt = webmail.rt
browsers = webmail.browsers

NOTE = "NUL character(s), an invisible control character"


def put_nul_in(page: Page, selector: str) -> None:
    """What a paste of a NUL leaves in a text field (Playwright's typing drops it)."""
    page.eval_on_selector(
        selector, "field => { field.value = field.value.replace('|', '\\u0000'); }"
    )


@pytest.mark.browser
@pytest.mark.slow
def test_a_nul_in_a_secure_page_answer_brings_the_answer_back(
    browsers: Browsers, portal: PortalServer, rt: Runtime
) -> None:
    token = send(rt, compose(), [CAROL])[CAROL]
    page = browsers.page()
    page.goto(f"{portal.url}/s/{token}")
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    expect(page.locator("#reply-text")).to_be_visible()

    page.fill("#reply-text", "Dear Alice,\nsigned| and back.\nCarol")
    put_nul_in(page, "#reply-text")
    assert page.eval_on_selector("#reply-text", "f => f.value.includes('\\u0000')")
    page.click(".secure-reply button.primary")
    expect(page.locator(".secure-reply .error")).to_contain_text("held 1 " + NOTE)
    expect(page.locator("#reply-text")).to_have_value("Dear Alice,\nsigned\ufffd and back.\nCarol")
    assert inbox(rt, ALICE) == []

    page.click(".secure-reply button.primary")
    expect(page.locator(".notice")).to_have_text("Your answer was sent, encrypted.")
    assert len(inbox(rt, ALICE)) == 1


@pytest.mark.browser
@pytest.mark.slow
def test_a_nul_in_a_webmail_message_brings_the_message_back(
    browsers: Browsers, portal: PortalServer, rt: Runtime
) -> None:
    page = browsers.page()
    sign_in(page, portal, ALICE)
    page.goto(f"{portal.url}/compose")
    page.fill("#to", BOB)
    page.fill("#subject", "Vertrag|")
    page.fill("#text", "Hallo Bob,\n\nanbei| der Vertrag.")
    put_nul_in(page, "#subject")
    put_nul_in(page, "#text")
    page.click("#send")
    expect(page.locator("body")).to_contain_text("held 2 " + NOTE)
    expect(page.locator("#text")).to_have_value("Hallo Bob,\n\nanbei\ufffd der Vertrag.")
    expect(page.locator("#subject")).to_have_value("Vertrag\ufffd")
    expect(page.locator("#to")).to_have_value(BOB)
    assert rows(rt, BOB) == []

    page.click("#send")
    expect(page).to_have_url(f"{portal.url}/sent")
    (row,) = rows(rt, BOB)
    assert row.subject == "Vertrag\ufffd"
