"""Webmail Send is idempotent per form: two clicks on Send send one message.

Threat: a double click, or a browser re-posting the form after a slow answer,
sent the message twice (two deliveries, two secure-page links, two Sent copies).
Each compose page carries a send token that becomes the message's Message-ID; the
store step refuses a second message of the sender's with that id, inside the
transaction that would write it, so even two posts racing each other send once.
The second post is told so, with the form and a new token: a user who came back
on purpose to send it again is never silently ignored.
"""

from __future__ import annotations

import html

import pytest
from flask import Flask

from gateway.mailbox import SENT
from gateway.runtime import Runtime

from .conftest import csrf_from
from .webmail_support import ALICE, BOB, CAROL, Webmail, field_value, queued, rows, webmail_app

SECRET_TEXT = "Der Tresorcode ist 4711-Okapi."
PASSWORD = "Tulpen-und-Regen-42"


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return webmail_app(runtime)


@pytest.fixture
def alice(app: Flask, mail_users: dict[str, str]) -> Webmail:
    return Webmail(app.test_client()).login(ALICE)


def send_token(page: str) -> str:
    return field_value(page, "send_token")


def test_two_clicks_on_send_send_once(alice: Webmail, runtime: Runtime) -> None:
    """The browser posts the same form twice (a double click, a reload after a slow
    answer): the second post finds the message sent and says so, sending nothing; the
    page it shows is the form, filled in, with a new token, so a user who came back
    on purpose to send it again can (nothing is dropped unseen)."""
    page = alice.get("/compose").text
    token = send_token(page)
    fields = {
        "from": ALICE,
        "to": f"{BOB}, {CAROL}",
        "subject": "Einmal",
        "text": "t",
        "action": "send",
        "send_token": token,
        "csrf_token": csrf_from(page),
    }
    first = alice.client.post("/compose", data=fields)
    second = alice.client.post("/compose", data=fields)
    assert first.status_code == 303 and second.status_code == 409, second.text
    assert "This message was sent already" in second.text
    assert html.unescape(field_value(second.text, "to")) == fields["to"]
    assert len(rows(runtime, BOB)) == 1
    assert len(rows(runtime, ALICE, SENT)) == 1
    assert [item.rcpt_to for item in queued(runtime)] == [CAROL]
    # Send once more from that page: sent again, on purpose.
    again = send_token(second.text)
    assert again != token
    resent = alice.client.post("/compose", data={**fields, "send_token": again})
    assert resent.status_code == 303
    assert len(rows(runtime, BOB)) == 2 and len(rows(runtime, ALICE, SENT)) == 2
    # A new form is a new message, even with the same text.
    assert send_token(alice.get("/compose").text) not in (token, again)


def test_two_clicks_on_send_with_the_lock_send_once(alice: Webmail, runtime: Runtime) -> None:
    page = alice.get("/compose").text
    fields = {
        "from": ALICE,
        "to": f"{BOB}, {CAROL}",
        "subject": "Einmal",
        "text": SECRET_TEXT,
        "encrypt": "yes",
        "password": PASSWORD,
        "action": "send",
        "send_token": send_token(page),
        "csrf_token": csrf_from(page),
    }
    assert alice.client.post("/compose", data=fields).status_code == 303
    second = alice.client.post("/compose", data=fields)
    assert second.status_code == 409
    assert len(rows(runtime, BOB)) == 1 and len(rows(runtime, ALICE, SENT)) == 1
    assert len(queued(runtime)) == 1
    assert SECRET_TEXT in html.unescape(second.text)  # the page keeps what was written


def test_a_refused_send_keeps_its_token_so_the_retry_is_the_same_message(
    alice: Webmail, runtime: Runtime
) -> None:
    page = alice.get("/compose").text
    token = send_token(page)
    refused = alice.client.post(
        "/compose",
        data={
            "from": ALICE,
            "to": "",
            "text": "t",
            "action": "send",
            "send_token": token,
            "csrf_token": csrf_from(page),
        },
    )
    assert refused.status_code == 400 and send_token(refused.text) == token


def test_two_clicks_on_save_draft_keep_one_draft_and_its_send_sends_once(
    alice: Webmail, runtime: Runtime
) -> None:
    page = alice.get("/compose").text
    fields = {
        "from": ALICE,
        "to": BOB,
        "subject": "Entwurf",
        "text": "t",
        "action": "draft",
        "send_token": send_token(page),
        "csrf_token": csrf_from(page),
    }
    first = alice.client.post("/compose", data=fields)
    second = alice.client.post("/compose", data=fields)
    assert first.status_code == 303 and second.status_code == 303
    (draft,) = rows(runtime, ALICE, "Drafts")
    reopened = alice.get(second.headers["Location"]).text
    assert send_token(reopened) == fields["send_token"]
    sent = {**fields, "action": "send", "draft_id": str(draft.id)}
    assert alice.client.post("/compose", data=sent).status_code == 303
    assert alice.client.post("/compose", data=sent).status_code == 409
    assert len(rows(runtime, BOB)) == 1 and rows(runtime, ALICE, "Drafts") == []
