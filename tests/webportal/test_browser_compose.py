"""The compose page in a real headless Chromium: a double click sends once, and the
recipient chips read a field as the server does.

Threats covered: a double click on Send sending the message twice (Chromium
posts it once; re-posts are test_compose_double_send's); the chips splitting a
quoted display name at its comma or showing a group's name as an address, so
that what the lock says it will do (who needs a password) differs from what the
server then does.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from gateway.mailbox import SENT
from gateway.runtime import Runtime
from webportal.server import PortalServer

from . import test_browser_webmail as webmail
from .test_browser_webmail import Browsers, chip, sign_in
from .webmail_support import ALICE, BOB, CAROL, queued, rows

# The portal, its runtime and the browsers of the webmail's browser test.
served = webmail.served
portal = webmail.portal
rt = webmail.rt
browsers = webmail.browsers


@pytest.mark.browser
@pytest.mark.slow
def test_a_double_click_on_send_sends_once_and_chips_follow_the_server(
    browsers: Browsers, portal: PortalServer, rt: Runtime
) -> None:
    page = browsers.page()
    sign_in(page, portal, ALICE)
    page.goto(f"{portal.url}/compose")
    page.fill("#to", f'"Builder, Bob" <{BOB}>; team: {CAROL};')
    page.fill("#subject", "Doppelklick")
    page.fill("#text", "Einmal, bitte.")
    chips = page.locator("#chips-to .chip")
    expect(chips).to_have_count(2)
    expect(chip(page, "to", BOB)).to_be_visible()
    expect(chip(page, "to", CAROL)).to_be_visible()

    posts: list[str] = []
    page.on(
        "request",
        lambda request: posts.append(request.url) if request.method == "POST" else None,
    )
    page.dblclick("#send")
    expect(page).to_have_url(f"{portal.url}/sent")
    expect(page.locator("body")).to_contain_text("Your message was sent.")
    assert len(rows(rt, BOB)) == 1
    assert len(rows(rt, ALICE, SENT)) == 1
    assert [item.rcpt_to for item in queued(rt)] == [CAROL]
    assert posts  # Chromium posts a double click once; the server's guard is for re-posts
