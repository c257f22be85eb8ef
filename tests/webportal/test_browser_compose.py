"""The compose page in a real headless Chromium: a double click sends once, the
recipient chips read a field as the server does, and Back brings the page back whole.

Threats covered: a double click on Send sending the message twice (Chromium
posts it once; re-posts are test_compose_double_send's); the chips splitting a
quoted display name at its comma or showing a group's name as an address, so
that what the lock says it will do (who needs a password) differs from what the
server then does; Back to the compose page losing the recipients or showing a lock
that differs from the one the form sends.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from playwright.sync_api import expect

from gateway.mailbox import SENT
from gateway.relay import Relay
from gateway.runtime import Runtime
from tests.conftest import LoopThread
from tests.fakes.smarthost import FakeSmarthost
from webportal.server import PortalServer

from . import test_browser_webmail as webmail
from .test_browser_webmail import Browsers, chip, sign_in
from .webmail_support import ALICE, BOB, CAROL, deliver, queued, rows

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


@pytest.mark.browser
@pytest.mark.slow
def test_back_to_the_compose_page_brings_back_recipients_chips_and_lock(
    browsers: Browsers, portal: PortalServer, rt: Runtime
) -> None:
    """Threat: after Back, Chromium refilled the subject and text but not To, Cc and Bcc
    (autocomplete="off" keeps a field out of the restored form state), so the chips and
    the recipients were gone; and the lock button, drawn before the restore, could show
    open over a closed lock checkbox. The recipients, their chips and the lock come back,
    and the restored page sends."""
    page = browsers.page()
    sign_in(page, portal, ALICE)
    page.goto(f"{portal.url}/compose")
    page.fill("#to", BOB)
    page.fill("#cc", CAROL)
    page.fill("#bcc", "dora@elsewhere.example")
    page.fill("#subject", "Zurück")
    page.fill("#text", "Nach dem Zurück noch da.")
    page.click("#lock")
    page.click("#confirm-lock")
    expect(chip(page, "cc", CAROL)).to_have_attribute("data-kind", "password")
    page.click("#cancel-password")

    page.goto(f"{portal.url}/inbox")
    page.go_back()
    expect(page).to_have_url(f"{portal.url}/compose")
    expect(page.locator("#text")).to_have_value("Nach dem Zurück noch da.")
    expect(page.locator("#to")).to_have_value(BOB)
    expect(page.locator("#cc")).to_have_value(CAROL)
    expect(page.locator("#bcc")).to_have_value("dora@elsewhere.example")
    expect(page.locator("#lock")).to_have_attribute("aria-pressed", "true")
    expect(chip(page, "to", BOB)).to_have_attribute("data-kind", "hosted")
    expect(chip(page, "cc", CAROL)).to_have_attribute("data-kind", "password")
    expect(chip(page, "bcc", "dora@elsewhere.example")).to_have_attribute("data-kind", "password")

    dialog = page.locator("#password-dialog")
    expect(dialog).to_be_visible()
    page.click("#use-password")
    page.click("#send")
    expect(page).to_have_url(f"{portal.url}/sent")
    assert len(rows(rt, BOB)) == 1
    assert sorted(item.rcpt_to for item in queued(rt)) == [CAROL, "dora@elsewhere.example"]


@pytest.mark.browser
@pytest.mark.slow
def test_quoted_local_parts_are_sent_quoted_to_header_and_envelope(
    browsers: Browsers,
    portal: PortalServer,
    rt: Runtime,
    smarthost: FakeSmarthost,
    loop_thread: LoopThread,
) -> None:
    """Threat: `"john doe"@example.com` and `"a@b"@example.com` (valid RFC 5321/5322
    addresses) were refused as not valid, and their chips said "invalid". They are
    sent, quoted exactly so, in RCPT TO and in the To field."""
    john, ab = '"john doe"@elsewhere.example', '"a@b"@elsewhere.example'
    page = browsers.page()
    sign_in(page, portal, ALICE)
    page.goto(f"{portal.url}/compose")
    page.fill("#to", f'"Doe, John" <{john}>, {ab}')
    page.fill("#subject", "Zitiert")
    page.fill("#text", "Mit Anführungszeichen.")
    chips = page.locator("#chips-to .chip")
    expect(chips).to_have_count(2)
    page.click("#lock")
    page.click("#confirm-lock")
    expect(chips.nth(0)).to_have_attribute("data-kind", "password")
    expect(chips.nth(1)).to_have_attribute("data-kind", "password")
    assert [chips.nth(i).get_attribute("data-address") for i in range(2)] == [john, ab]
    page.click("#cancel-password")
    page.click("#lock")  # open again: sent as it is, through the relay
    expect(page.locator("#lock")).to_have_attribute("aria-pressed", "false")
    page.click("#send")
    expect(page).to_have_url(f"{portal.url}/sent")

    assert sorted(item.rcpt_to for item in queued(rt)) == sorted([john, ab])
    loop_thread.run(Relay(rt).sweep())
    received = smarthost.wait_for(2)
    assert sorted(rcpt for m in received for rcpt in m.rcpt_tos) == sorted([john, ab])
    for message in received:
        head = message.content.split(b"\r\n\r\n", 1)[0]
        assert f'\r\nTo: "Doe, John" <{john}>, {ab}\r\n'.encode() in head
        parsed = email.message_from_bytes(message.content, policy=email.policy.default)
        assert [a.addr_spec for a in parsed["To"].addresses] == [john, ab]


@pytest.mark.browser
@pytest.mark.slow
def test_back_to_a_refused_reply_or_forward_brings_back_everything_it_showed(
    browsers: Browsers, portal: PortalServer, rt: Runtime
) -> None:
    """Threat: a send refused (a mistyped address) answered with the form filled in;
    the user went to look the address up, and Back loaded a blank /compose over which
    Chromium put back only the fields typed into after the refusal: the recipients, the
    subject and the text typed before were gone, and so were a reply's threading and a
    forward's attachments, which a send from that page then silently lacked."""
    original = EmailMessage()
    original["From"] = BOB
    original["To"] = ALICE
    original["Subject"] = "Unterlagen"
    original["Message-ID"] = "<unterlagen@example.test>"
    original.set_content("Hier die Unterlagen.")
    original.add_attachment(
        b"%PDF-1.4 plan", maintype="application", subtype="pdf", filename="plan.pdf"
    )
    ident = deliver(rt, ALICE, original)
    page = browsers.page()
    sign_in(page, portal, ALICE)
    for kind in ("reply", "forward"):
        page.goto(f"{portal.url}/compose?{kind}={ident}")
        page.fill("#to", "bob at example")
        page.fill("#bcc", "dora@elsewhere.example")
        page.fill("#subject", f"{kind}: Unterlagen, zweiter Versuch")
        page.fill("#text", f"{kind}: written before the refusal")
        page.click("#send")
        expect(page.locator("#compose-error")).to_contain_text("not a valid mail address")
        page.fill("#cc", CAROL)  # typed after the refusal
        page.goto(f"{portal.url}/inbox")  # to look the address up
        page.go_back()
        expect(page.locator("#to")).to_have_value("bob at example")
        expect(page.locator("#cc")).to_have_value(CAROL)
        expect(page.locator("#bcc")).to_have_value("dora@elsewhere.example")
        expect(page.locator("#subject")).to_have_value(f"{kind}: Unterlagen, zweiter Versuch")
        expect(page.locator("#text")).to_have_value(f"{kind}: written before the refusal")
        # Forward, then Back again: the same.
        page.go_forward()
        expect(page).to_have_url(f"{portal.url}/inbox")
        page.go_back()
        expect(page.locator("#to")).to_have_value("bob at example")
        if kind == "reply":
            expect(page.locator("input[name=in_reply_to]")).to_have_value(
                "<unterlagen@example.test>"
            )
        else:
            expect(page.locator("input[name=carry]")).to_be_checked()
        page.fill("#to", BOB)
        page.fill("#cc", "")
        page.fill("#bcc", "")
        page.click("#send")
        expect(page).to_have_url(f"{portal.url}/sent")
        sent = email.message_from_bytes(rows(rt, BOB)[-1].raw, policy=email.policy.default)
        assert sent["Subject"] == f"{kind}: Unterlagen, zweiter Versuch"
        if kind == "reply":
            assert sent["In-Reply-To"] == "<unterlagen@example.test>"
        else:
            assert [p.get_filename() for p in sent.iter_attachments()] == ["plan.pdf"]  # type: ignore[attr-defined]
        # Back to the page that sent it, and Send again: told so, not sent twice.
        delivered = len(rows(rt, BOB))
        page.go_back()
        expect(page.locator("#subject")).to_have_value(f"{kind}: Unterlagen, zweiter Versuch")
        page.click("#send")
        expect(page.locator("#compose-error")).to_contain_text("This message was sent already")
        assert len(rows(rt, BOB)) == delivered
