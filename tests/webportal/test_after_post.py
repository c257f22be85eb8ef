"""Which pages turn their history entry into a GET, and into which (webportal.after_post).

Threat: Back to a page that answered a POST re-sent the form (Chromium's "Confirm Form
Resubmission"), doing again what it did; the browser side is
test_browser_back_after_post.py. Here: every page that answers a POST and has a URL to
come back to carries the script, naming a URL only when its own answers no GET (so a
secure page's token is never written into a page for it); pages answering a GET, and
the secure page's "not available" page (the same bytes for every dead link), carry none.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.runtime import Runtime
from tests.webportal.conftest import csrf_from
from tests.webportal.test_secure import CAROL, PASSWORD, compose, send, unlock
from webportal.clock import set_clock

from .account_support import Browser, FakeClock, enable_2fa

SCRIPT = re.compile(r'<script src="/static/after_post\.js"(?: data-url="([^"]*)")?></script>')


def marker(page: str) -> tuple[bool, str | None]:
    """(whether the page carries the script, the URL it names if any)."""
    found = SCRIPT.findall(page)
    assert len(found) <= 1
    return (True, found[0] or None) if found else (False, None)


@pytest.fixture
def clock(app: Flask) -> FakeClock:
    fake = FakeClock()
    set_clock(app, fake)
    return fake


def test_a_form_shown_again_comes_back_to_its_own_url_and_a_get_page_to_none(
    app: Flask, clock: FakeClock, mail_users: dict[str, str]
) -> None:
    alice = Browser(app.test_client())
    assert marker(alice.get("/login").text) == (False, None)
    wrong = alice.post("/login", {"email": "alice@example.test", "password": "nope"})
    assert wrong.status_code == 200 and marker(wrong.text) == (True, None)
    assert alice.login().status_code == 302
    for path in ("/inbox", "/compose", "/account/security", "/account/app-passwords"):
        assert marker(alice.get(path).text) == (False, None), path
    # Shown once, on a URL that also answers GET: that GET lists, it does not show.
    created = alice.post("/account/app-passwords", {"name": "phone"})
    assert created.status_code == 200 and marker(created.text) == (True, None)


def test_a_page_on_a_post_only_url_names_where_back_goes(
    app: Flask, clock: FakeClock, mail_users: dict[str, str]
) -> None:
    alice = Browser(app.test_client())
    assert alice.login().status_code == 302
    enable_2fa(alice, clock)
    codes = alice.post("/account/2fa/recovery-codes", page="/account/security")
    assert codes.status_code == 200 and marker(codes.text) == (True, "/account/security")


def test_the_secure_page_names_no_token_and_its_dead_links_carry_nothing(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    token = send(runtime, compose(), [CAROL])[CAROL]
    form = client.get(f"/s/{token}")
    wrong = client.post(
        f"/s/{token}", data={"csrf_token": csrf_from(form.text), "password": "not it"}
    )
    assert wrong.status_code == 403 and marker(wrong.text) == (True, None)
    assert token not in wrong.text

    assert unlock(client, token, PASSWORD).status_code == 303
    page = client.get(f"/s/{token}")
    refused = client.post(
        f"/s/{token}/reply", data={"csrf_token": csrf_from(page.text), "text": " "}
    )
    assert refused.status_code == 400 and marker(refused.text) == (True, None)
    # Back to it loads the answer's URL, which sends the browser on to the page.
    again = client.get(f"/s/{token}/reply")
    assert again.status_code == 303 and again.headers["Location"] == f"/s/{token}"

    dead = client.post(
        "/s/not-a-link-at-all", data={"csrf_token": csrf_from(page.text), "password": "x"}
    )
    assert dead.status_code == 404 and marker(dead.text) == (False, None)
