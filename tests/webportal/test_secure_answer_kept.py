"""An answer written while the secure page's grant ran out is not lost with the grant.

Threat: the grant that lets a browser read and answer lasts `unlock_minutes` (30);
an outside recipient who took longer to write, or whose page another device closed
meanwhile, sent the answer into a redirect to the password form, and the answer was
gone. Now the password form carries the answer (hidden, as it came); the right
password opens the message with the answer back in its form, not sent; a wrong one
keeps carrying it. Nothing reaches the sender before the recipient sends it again.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Page, expect

from gateway.runtime import Runtime
from tests.webportal.conftest import csrf_from
from tests.webportal.test_secure import ALICE, CAROL, MARKER, PASSWORD, compose, inbox, send
from tests.webportal.test_secure import unlock as open_with
from webportal.clock import set_clock
from webportal.server import PortalServer

from . import test_browser_webmail as webmail
from .test_browser_webmail import Browsers

served = webmail.served
portal = webmail.portal
rt = webmail.rt
browsers = webmail.browsers

ANSWER = "Dear Alice,\n\nsigned & sent back <today>.\nCarol"
KEPT = "Your answer is kept, not sent"
CARRIED = re.compile(r'<textarea name="text" hidden>\n([^<]*)</textarea>')
IN_FORM = re.compile(r'<textarea id="reply-text" name="text"[^>]*>\n([^<]*)</textarea>')


def carried(page: str) -> str:
    match = CARRIED.search(page)
    assert match, "the password form carries no answer"
    return html.unescape(match.group(1))


def in_form(page: str) -> str:
    match = IN_FORM.search(page)
    assert match, "no answer form"
    return html.unescape(match.group(1))


def test_an_answer_sent_after_the_grant_ran_out_comes_back_once_the_page_is_open(
    app: Flask, client: FlaskClient, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    token = send(runtime, compose(), [CAROL])[CAROL]
    assert open_with(client, token, PASSWORD).status_code == 303
    page = client.get(f"/s/{token}")
    assert MARKER in page.text

    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=45)
    set_clock(app, lambda: later)
    asked = client.post(
        f"/s/{token}/reply",
        data={
            "csrf_token": csrf_from(page.text),
            "text": ANSWER,
            "files": [(io.BytesIO(b"%PDF-1.4"), "signed.pdf")],
        },
        content_type="multipart/form-data",
    )
    assert asked.status_code == 403 and MARKER not in asked.text
    assert KEPT in asked.text and "Please attach your files again." in asked.text
    assert carried(asked.text) == ANSWER and token not in asked.text
    assert inbox(runtime, ALICE) == []

    # The form posts to its own URL (no action: the page holds no token).
    fields = {"csrf_token": csrf_from(asked.text), "text": carried(asked.text)}
    wrong = client.post(f"/s/{token}/reply", data={**fields, "password": "not it"})
    assert wrong.status_code == 403 and "The password is wrong" in wrong.text
    assert carried(wrong.text) == ANSWER

    right = client.post(f"/s/{token}/reply", data={**fields, "password": PASSWORD})
    assert right.status_code == 200 and MARKER in right.text
    assert "Your answer is not sent yet" in right.text
    assert in_form(right.text) == ANSWER
    assert inbox(runtime, ALICE) == []

    sent = client.post(
        f"/s/{token}/reply",
        data={"csrf_token": csrf_from(right.text), "text": in_form(right.text)},
    )
    assert sent.status_code == 303
    assert len(inbox(runtime, ALICE)) == 1


def test_an_empty_answer_without_a_grant_just_asks_for_the_password(
    app: Flask, client: FlaskClient, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    token = send(runtime, compose(), [CAROL])[CAROL]
    assert open_with(client, token, PASSWORD).status_code == 303
    page = client.get(f"/s/{token}")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=45)
    set_clock(app, lambda: later)
    asked = client.post(
        f"/s/{token}/reply", data={"csrf_token": csrf_from(page.text), "text": " \n"}
    )
    assert asked.status_code == 303 and asked.headers["Location"] == f"/s/{token}"
    again = client.get(f"/s/{token}")
    assert "Please enter the password again." in again.text
    assert CARRIED.search(again.text) is None
    # With the password the page opens as usual: redirected, nothing carried.
    assert open_with(client, token, PASSWORD).status_code == 303


def open_in(page: Page, url: str) -> None:
    page.goto(url)
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    expect(page.locator("#reply-text")).to_be_visible()


@pytest.mark.browser
@pytest.mark.slow
def test_in_chromium_an_answer_outlives_a_close_on_another_device(
    browsers: Browsers, portal: PortalServer, rt: Runtime
) -> None:
    """Carol writes on her laptop while her phone closes the page (which ends every
    device's grant): her answer comes back after the password, and then goes."""
    token = send(rt, compose(), [CAROL])[CAROL]
    laptop, phone = browsers.page(), browsers.page()
    open_in(laptop, f"{portal.url}/s/{token}")
    open_in(phone, f"{portal.url}/s/{token}")
    laptop.fill("#reply-text", ANSWER)
    phone.click(".secure-close button")
    expect(phone.locator("#password")).to_be_visible()

    laptop.click(".secure-reply button.primary")
    expect(laptop.locator(".error")).to_contain_text(KEPT)
    assert inbox(rt, ALICE) == []
    laptop.fill("#password", PASSWORD)
    laptop.press("#password", "Enter")
    expect(laptop.locator("#reply-text")).to_have_value(ANSWER)
    expect(laptop.locator(".secure-reply .error")).to_contain_text("not sent yet")
    assert inbox(rt, ALICE) == []

    laptop.click(".secure-reply button.primary")
    expect(laptop.locator(".notice")).to_have_text("Your answer was sent, encrypted.")
    assert len(inbox(rt, ALICE)) == 1
