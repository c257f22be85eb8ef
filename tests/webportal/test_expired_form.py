"""A form of typed text posted after its CSRF token expired comes back filled in, undone.

Threat and loss: a token lasts `[portal] session_minutes`. A message, a secure-page
answer or an away message written for longer got the "Form expired" page, and the
text lived on only in the browser's Back. The refusal must stand (a post with an old
token does nothing), but the form now comes back filled in, with a fresh token and a
note (webportal.expired_form). Only the session's own token, merely old, does that:
a forged, foreign or missing token, or a cross-site post, still gets the error page,
so no other site can have the portal fill a form with its text.
"""

from __future__ import annotations

import html
import re
import time

import pytest
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from gateway import db
from gateway.models import Autoresponder
from gateway.runtime import Runtime
from tests.webportal.conftest import csrf_from
from tests.webportal.test_nul_in_typed_text import answer_in_form, opened  # noqa: F401
from tests.webportal.test_secure import ALICE, inbox
from tests.webportal.webmail_support import BOB, Webmail, queued, rows, textarea, webmail_app

NOTE = "This page was open too long for its form to be sent, so nothing was done."
ERROR_PAGE = "This form has expired or was sent from another site."
TEXT = "Dear Bob,\n\nhere are the figures I took two hours to write.\nAlice"


def aged_token(client: FlaskClient, page: str, *, secret: bytes | None = None) -> str:
    """The token `page` gave this browser, as it was issued a day ago (or, with
    `secret`, one signed with a key that is not the portal's)."""
    assert csrf_from(client.get(page).text)
    with client.session_transaction() as session:
        raw = session["csrf_token"]

    class ADayAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 24 * 3600

    key = secret or client.application.config["WTF_CSRF_SECRET_KEY"]
    return URLSafeTimedSerializer(key, salt="wtf-csrf-token", signer=ADayAgo).dumps(raw)


@pytest.fixture
def alice(runtime: Runtime, mail_users: dict[str, str]) -> Webmail:
    return Webmail(webmail_app(runtime).test_client()).login(ALICE)


def post_compose(alice: Webmail, token: str, **headers: str) -> str:
    fields = {"action": "send", "from": ALICE, "to": BOB, "subject": "Zahlen", "text": TEXT}
    answer = alice.client.post(
        "/compose",
        data={**fields, "csrf_token": token},
        content_type="multipart/form-data",
        headers=headers,
    )
    assert answer.status_code == 400
    return answer.text


def test_a_message_sent_after_its_form_expired_comes_back_filled_in_and_unsent(
    alice: Webmail, runtime: Runtime
) -> None:
    old = aged_token(alice.client, "/compose")
    page = post_compose(alice, old)
    assert NOTE in html.unescape(page)
    assert html.unescape(textarea(page, "text")).replace("\r\n", "\n") == TEXT
    assert 'value="Zahlen"' in page and BOB in page
    assert "after_post.js" in page  # Back or a reload gets the form, never a re-post
    assert rows(runtime, BOB) == [] and queued(runtime) == []
    # The page's token is fresh: sent again, the message goes.
    fresh = csrf_from(page)
    assert fresh != old
    sent = alice.client.post(
        "/compose",
        data={
            "action": "send",
            "from": ALICE,
            "to": BOB,
            "subject": "Zahlen",
            "text": TEXT,
            "csrf_token": fresh,
        },
        content_type="multipart/form-data",
    )
    assert sent.status_code == 303
    (row,) = rows(runtime, BOB)
    assert row.subject == "Zahlen"


def test_no_token_of_this_session_brings_text_back(
    alice: Webmail, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """Forged, foreign, missing, or cross-site: the error page, no text in it."""
    forged = aged_token(alice.client, "/compose", secret=b"not the portal's key" * 2)
    bob = Webmail(webmail_app(runtime).test_client()).login(BOB)
    foreign = aged_token(bob.client, "/compose")
    own = aged_token(alice.client, "/compose")
    for page in (
        post_compose(alice, forged),
        post_compose(alice, foreign),
        post_compose(alice, ""),
        post_compose(alice, own, **{"Sec-Fetch-Site": "cross-site"}),
    ):
        assert ERROR_PAGE in page and NOTE not in page
        assert "two hours to write" not in page
    assert rows(runtime, BOB) == [] and queued(runtime) == []


def test_a_secure_page_answer_sent_after_its_form_expired_comes_back_unsent(
    opened: tuple[FlaskClient, str],  # noqa: F811
    runtime: Runtime,
) -> None:
    client, token = opened
    old = aged_token(client, f"/s/{token}")
    refused = client.post(
        f"/s/{token}/reply",
        data={"csrf_token": old, "text": TEXT},
        content_type="multipart/form-data",
    )
    assert refused.status_code == 400
    assert NOTE in html.unescape(refused.text)
    assert answer_in_form(refused.text).replace("\r\n", "\n") == TEXT
    assert inbox(runtime, ALICE) == []
    sent = client.post(
        f"/s/{token}/reply",
        data={"csrf_token": csrf_from(refused.text), "text": TEXT},
        content_type="multipart/form-data",
    )
    assert sent.status_code == 303
    assert len(inbox(runtime, ALICE)) == 1


def test_an_away_message_saved_after_its_form_expired_comes_back_unsaved(
    alice: Webmail, runtime: Runtime
) -> None:
    match = re.search(r'href="(/autoresponder/new/\d+)"', alice.get("/autoresponder").text)
    assert match
    old = aged_token(alice.client, match.group(1))
    form = {"name": "Urlaub", "subject": "Weg", "body": "Bis Montag.", "weekday": "0"}
    refused = alice.client.post(match.group(1), data={**form, "csrf_token": old})
    assert refused.status_code == 400
    assert NOTE in html.unescape(refused.text)
    assert html.unescape(textarea(refused.text, "body")) == "Bis Montag."
    with db.read_only(runtime.sessions) as session:
        assert session.query(Autoresponder).count() == 0
    saved = alice.client.post(match.group(1), data={**form, "csrf_token": csrf_from(refused.text)})
    assert saved.status_code == 303
    with db.read_only(runtime.sessions) as session:
        assert session.query(Autoresponder).count() == 1
