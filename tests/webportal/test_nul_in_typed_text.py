"""A NUL in text a person wrote at length never loses that text (webportal.typed_text).

Threat: one NUL in an outside recipient's answer on the secure page (pasted from a
PDF or a terminal, or put there by a script) got the generic 400 page, and the answer
was gone; the same in a webmail message and an away message. Now the form comes back
filled in, each NUL shown as U+FFFD and the problem named, and nothing is sent or
saved until the writer sends the text again as it now reads. A NUL anywhere else (a
password, a query string) is still refused before any view reads it: PostgreSQL
stores none.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import html
import io
import re

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from gateway import db
from gateway.models import Autoresponder
from gateway.pipeline import pgpmime
from gateway.runtime import Runtime
from keystore import store as keystore
from tests.webportal.conftest import csrf_from
from tests.webportal.test_secure import ALICE, CAROL, PASSWORD, compose, inbox, send, unlock
from tests.webportal.webmail_support import BOB, Webmail, rows, textarea, webmail_app
from webportal import create_app

NUL, SHOWN = "\x00", "\ufffd"
NOTE = "NUL character(s), an invisible control character"
TEXTAREA = re.compile(r'<textarea id="reply-text" name="text"[^>]*>([^<]*)</textarea>')

# Text a form can carry (no lone surrogates: no browser sends one), with NULs in it.
typed = st.lists(
    st.one_of(st.text(st.characters(exclude_categories=["Cs"]), max_size=40), st.just(NUL)),
    max_size=8,
).map("".join)
with_nul = st.tuples(typed, typed).map(lambda parts: parts[0] + NUL + parts[1])


def answer_in_form(page: str) -> str:
    """The answer textarea's text as a browser reads it: one line end after the opening
    tag is the HTML parser's, not the text's."""
    match = TEXTAREA.search(page)
    assert match, "no answer form"
    return html.unescape(match.group(1)).removeprefix("\n")


@pytest.fixture
def opened(runtime: Runtime, mail_users: dict[str, str]) -> tuple[FlaskClient, str]:
    """Carol's browser with her secure page open (a limit high enough for many answers)."""
    token = send(runtime, compose(), [CAROL])[CAROL]
    roomy = runtime.settings.replace(securepage={"rate_limit": "10000/minute"})
    client = create_app(dataclasses.replace(runtime, settings=roomy), testing=True).test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    assert unlock(client, token, PASSWORD).status_code == 303
    return client, token


def post_answer(client: FlaskClient, token: str, text: str, *, files: bool = False) -> TestResponse:
    page = client.get(f"/s/{token}")
    data: dict[str, object] = {"csrf_token": csrf_from(page.text), "text": text}
    if files:
        data["files"] = [(io.BytesIO(b"%PDF-1.4 signed"), "signed.pdf")]
    return client.post(f"/s/{token}/reply", data=data, content_type="multipart/form-data")


def test_a_nul_in_an_answer_brings_it_back_shown_and_sends_it_only_when_sent_again(
    opened: tuple[FlaskClient, str], runtime: Runtime
) -> None:
    client, token = opened
    text = "Dear Alice,\n\nsigned\x00 and sent back.\x00\nCarol"
    refused = post_answer(client, token, text, files=True)
    assert refused.status_code == 400
    page = refused.text
    assert "held 2 NUL character(s)" in page and "Please attach your files again." in page
    assert answer_in_form(page) == text.replace(NUL, SHOWN)
    assert inbox(runtime, ALICE) == []

    sent = post_answer(client, token, answer_in_form(page))
    assert sent.status_code == 303
    (stored,) = inbox(runtime, ALICE)
    payload = pgpmime.encrypted_payload(stored.raw)
    assert payload is not None
    with db.read_only(runtime.sessions) as session:
        inner = keystore.decrypt_for(session, runtime.ring.get(), ALICE, payload).data
    body = email.message_from_bytes(inner, policy=email.policy.default).get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == text.replace(NUL, SHOWN) + "\n"


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=with_nul)
def test_an_answer_with_a_nul_comes_back_whole(
    opened: tuple[FlaskClient, str], runtime: Runtime, text: str
) -> None:
    """Whatever else the answer holds, the form gives back every character of it, each
    NUL as U+FFFD, and sends nothing."""
    client, token = opened
    refused = post_answer(client, token, text)
    assert refused.status_code == 400
    assert NOTE in refused.text
    assert answer_in_form(refused.text) == text.replace(NUL, SHOWN)
    assert inbox(runtime, ALICE) == []


def test_an_answer_refused_for_another_reason_comes_back_filled_in(
    opened: tuple[FlaskClient, str], runtime: Runtime
) -> None:
    """Every refusal of an answer gives the text back, not only a NUL's."""
    client, token = opened
    too_long = "Carol wrote: " + "x" * 200_000
    refused = post_answer(client, token, too_long)
    assert refused.status_code == 400
    assert "The answer is too large." in refused.text
    assert answer_in_form(refused.text) == too_long
    assert inbox(runtime, ALICE) == []


@pytest.fixture
def alice(runtime: Runtime, mail_users: dict[str, str]) -> Webmail:
    return Webmail(webmail_app(runtime).test_client()).login(ALICE)


def test_a_nul_in_a_webmail_message_brings_the_form_back_and_sends_nothing(
    alice: Webmail, runtime: Runtime
) -> None:
    fields = {
        "from": ALICE,
        "to": f"{BOB}\x00",
        "subject": "Vertrag\x00",
        "text": "Hallo Bob,\x00 anbei.",
    }
    refused = alice.compose(**fields)
    assert refused.status_code == 400
    assert "held 3 NUL character(s)" in refused.text
    assert html.unescape(textarea(refused.text, "text")) == "Hallo Bob,\ufffd anbei."
    assert 'value="Vertrag\ufffd"' in refused.text
    assert rows(runtime, BOB) == []

    sent = alice.compose(**{k: v.replace(NUL, SHOWN) for k, v in fields.items()} | {"to": BOB})
    assert sent.status_code == 303
    (row,) = rows(runtime, BOB)
    assert row.subject == "Vertrag\ufffd"


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=with_nul)
def test_a_webmail_text_with_a_nul_comes_back_whole(
    alice: Webmail, runtime: Runtime, text: str
) -> None:
    refused = alice.compose(**{"from": ALICE, "to": BOB, "subject": "s", "text": text})
    assert refused.status_code == 400 and NOTE in refused.text
    assert html.unescape(textarea(refused.text, "text")) == text.replace(NUL, SHOWN)
    assert rows(runtime, BOB) == []


def test_a_nul_in_an_away_message_brings_the_form_back_and_saves_nothing(
    alice: Webmail, runtime: Runtime
) -> None:
    overview = alice.get("/autoresponder").text
    match = re.search(r'href="(/autoresponder/new/\d+)"', overview)
    assert match
    form = {"name": "Urlaub", "subject": "Weg", "body": "Bis\x00 Montag.", "weekday": "0"}
    refused = alice.post(match.group(1), form, match.group(1))
    assert refused.status_code == 400 and "held 1 NUL character(s)" in refused.text
    assert html.unescape(textarea(refused.text, "body")) == "Bis\ufffd Montag."
    with db.read_only(runtime.sessions) as session:
        assert session.query(Autoresponder).count() == 0


def test_a_nul_outside_the_typed_text_is_still_a_bad_request(
    alice: Webmail, opened: tuple[FlaskClient, str], runtime: Runtime
) -> None:
    """The sender address, a secure-page password and a query string are no text
    anybody writes at length: a NUL there is refused before any view reads it."""
    refused = alice.compose(**{"from": f"{ALICE}\x00", "to": BOB, "text": "t"})
    assert refused.status_code == 400 and NOTE not in refused.text
    assert "The request could not be understood." in refused.text
    assert alice.get("/search?q=a%00b").status_code == 400
    client, token = opened
    page = client.get(f"/s/{token}")
    wrong = client.post(
        f"/s/{token}", data={"csrf_token": csrf_from(page.text), "password": f"{PASSWORD}\x00"}
    )
    assert wrong.status_code == 400 and NOTE not in wrong.text
    assert rows(runtime, BOB) == []
