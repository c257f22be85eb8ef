"""Typed text posted while the database or the ring is away comes back, nothing sent.

Found in review (2026-12-06): webmail Send during an outage answered the bare 503
page, and the message the user wrote was gone (only the browser's Back might have it);
the same for a secure-page answer and an away message. Now such a post comes back as
the compose form filled in (drawn without the database: the account cannot be loaded),
or, where the form needs the database, as the 503 page holding what was posted in a
read-only box to copy; status 503 and Retry-After either way, and nothing stored or
queued. Only a post with this session's own CSRF token gets its text back: no other
site can make the portal show a page filled with its text.
"""

from __future__ import annotations

import html
import re
from email.message import EmailMessage

import pytest
from flask.testing import FlaskClient

from gateway import db
from gateway.models import Autoresponder
from gateway.runtime import Runtime
from tests.conftest import TEST_DATABASE_URL
from tests.gateway.outage_support import (
    fresh_watch,
    ring_unavailable,
    sqlite_file_unavailable,
    tracebacks,
)
from tests.webportal.conftest import csrf_from
from tests.webportal.test_expired_form import aged_token
from tests.webportal.test_nul_in_typed_text import opened  # noqa: F401
from tests.webportal.test_secure import ALICE, inbox
from tests.webportal.webmail_support import (
    BOB,
    Webmail,
    deliver,
    field_value,
    queued,
    rows,
    textarea,
    webmail_app,
)

__all__ = ["fresh_watch"]

NOTE = "The server cannot store or send anything right now, so nothing was sent."
NOTE_DE = "Der Server kann gerade nichts speichern oder senden; es wurde nichts gesendet."
TEXT = "Dear Bob,\n\nthe figures <b>I</b> took two hours to write & check.\nAlice"
on_sqlite = pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="the SQLite file is taken away")


@pytest.fixture
def alice(runtime: Runtime, mail_users: dict[str, str]) -> Webmail:
    app = webmail_app(runtime)
    # As `serve` does: an error no view caught goes to the error handlers (an outage
    # while loading the account is one), not to the test.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return Webmail(app.test_client()).login(ALICE)


def compose_fields(alice: Webmail) -> dict[str, str]:
    page = alice.get("/compose").text
    return {
        "action": "send",
        "encrypt": "yes",  # sealed and signed: the ring is needed
        "from": ALICE,
        "to": BOB,
        "subject": "Zahlen",
        "text": TEXT,
        "send_token": field_value(page, "send_token"),
        "csrf_token": csrf_from(page),
    }


def assert_compose_back(answer: object, note: str = NOTE) -> str:
    status = getattr(answer, "status_code", None)
    headers = getattr(answer, "headers", {})
    page = str(getattr(answer, "text", ""))
    assert (status, headers.get("Retry-After")) == (503, "60"), page[:400]
    assert note in html.unescape(page)
    assert html.unescape(textarea(page, "text")).replace("\r\n", "\n") == TEXT
    assert 'value="Zahlen"' in page and BOB in page and f'value="{ALICE}"' in page
    assert "<b>" not in page  # escaped, as everywhere
    assert "after_post.js" in page  # Back or a reload gets the form, never a re-post
    return page


@pytest.mark.usefixtures("fresh_watch")
@on_sqlite
def test_send_with_the_database_away_gives_the_form_back_and_sends_after(
    alice: Webmail, runtime: Runtime
) -> None:
    fields = compose_fields(alice)
    with sqlite_file_unavailable(runtime):
        answer = alice.client.post("/compose", data=fields, content_type="multipart/form-data")
        german = alice.client.post(
            "/compose",
            data=fields,
            content_type="multipart/form-data",
            headers={"Accept-Language": "de"},
        )
    page = assert_compose_back(answer)
    assert_compose_back(german, NOTE_DE)
    assert field_value(page, "send_token") == fields["send_token"]
    assert rows(runtime, BOB) == [] and queued(runtime) == []
    sent = alice.client.post(
        "/compose",
        data={**fields, "csrf_token": csrf_from(page)},
        content_type="multipart/form-data",
    )
    assert sent.status_code == 303
    (row,) = rows(runtime, BOB)
    assert row.subject == "Zahlen"


@pytest.mark.usefixtures("fresh_watch")
def test_send_with_the_ring_away_gives_the_form_back_and_sends_after(
    alice: Webmail, runtime: Runtime
) -> None:
    fields = compose_fields(alice)
    with ring_unavailable(runtime):
        answer = alice.client.post("/compose", data=fields, content_type="multipart/form-data")
    page = assert_compose_back(answer)
    assert rows(runtime, BOB) == [] and queued(runtime) == []
    sent = alice.client.post(
        "/compose",
        data={**fields, "csrf_token": csrf_from(page)},
        content_type="multipart/form-data",
    )
    assert sent.status_code == 303
    assert len(rows(runtime, BOB)) == 1


@pytest.mark.usefixtures("fresh_watch")
@on_sqlite
def test_no_token_of_this_session_gets_the_bare_503_page(alice: Webmail, runtime: Runtime) -> None:
    fields = compose_fields(alice)
    with sqlite_file_unavailable(runtime):
        for token in ("", "forged"):
            answer = alice.client.post(
                "/compose",
                data={**fields, "csrf_token": token},
                content_type="multipart/form-data",
            )
            assert answer.status_code in (400, 503)
            assert "two hours to write" not in answer.text and NOTE not in answer.text


def readonly_box(page: str, name: str) -> str:
    match = re.search(
        rf'<textarea[^>]*data-field="{name}"[^>]*readonly[^>]*>([^<]*)</textarea>', page
    )
    assert match, page[:600]
    return html.unescape(match.group(1)).removeprefix("\n").replace("\r\n", "\n")


@pytest.mark.usefixtures("fresh_watch")
@on_sqlite
def test_a_secure_page_answer_with_the_database_away_is_kept_to_copy(
    opened: tuple[FlaskClient, str],  # noqa: F811
    runtime: Runtime,
) -> None:
    client, token = opened
    client.application.config["PROPAGATE_EXCEPTIONS"] = False
    csrf = csrf_from(client.get(f"/s/{token}").text)
    with sqlite_file_unavailable(runtime):
        answer = client.post(
            f"/s/{token}/reply",
            data={"csrf_token": csrf, "text": TEXT},
            content_type="multipart/form-data",
            headers={"Accept-Language": "de"},
        )
    assert (answer.status_code, answer.headers.get("Retry-After")) == (503, "60")
    assert NOTE_DE in html.unescape(answer.text)
    assert readonly_box(answer.text, "text") == TEXT
    assert inbox(runtime, ALICE) == []
    sent = client.post(
        f"/s/{token}/reply",
        data={"csrf_token": csrf_from(client.get(f"/s/{token}").text), "text": TEXT},
        content_type="multipart/form-data",
    )
    assert sent.status_code == 303
    assert len(inbox(runtime, ALICE)) == 1


@pytest.mark.usefixtures("fresh_watch")
@on_sqlite
def test_an_away_message_with_the_database_away_is_kept_to_copy(
    alice: Webmail, runtime: Runtime
) -> None:
    match = re.search(r'href="(/autoresponder/new/\d+)"', alice.get("/autoresponder").text)
    assert match
    csrf = csrf_from(alice.get(match.group(1)).text)
    form = {"name": "Urlaub", "subject": "Weg", "body": TEXT, "weekday": "0"}
    with sqlite_file_unavailable(runtime):
        answer = alice.client.post(match.group(1), data={**form, "csrf_token": csrf})
    assert (answer.status_code, answer.headers.get("Retry-After")) == (503, "60")
    assert NOTE in html.unescape(answer.text)
    assert readonly_box(answer.text, "body") == TEXT
    with db.read_only(runtime.sessions) as session:
        assert session.query(Autoresponder).count() == 0
    saved = alice.client.post(match.group(1), data={**form, "csrf_token": csrf})
    assert saved.status_code == 303
    with db.read_only(runtime.sessions) as session:
        assert session.query(Autoresponder).count() == 1


@pytest.mark.usefixtures("fresh_watch")
@on_sqlite
def test_an_expired_form_sent_during_an_outage_still_comes_back(
    alice: Webmail, runtime: Runtime
) -> None:
    """Its form cannot be drawn as an expired one (that needs the database): the
    outage's way gives it back, with a fresh token."""
    fields = {**compose_fields(alice), "csrf_token": aged_token(alice.client, "/compose")}
    with sqlite_file_unavailable(runtime):
        answer = alice.client.post("/compose", data=fields, content_type="multipart/form-data")
    page = assert_compose_back(answer)
    assert rows(runtime, BOB) == [] and queued(runtime) == []
    sent = alice.client.post(
        "/compose",
        data={**fields, "csrf_token": csrf_from(page)},
        content_type="multipart/form-data",
    )
    assert sent.status_code == 303


@pytest.mark.usefixtures("fresh_watch")
def test_an_expired_forward_sent_with_the_ring_away_comes_back_not_as_a_500(
    alice: Webmail, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """Drawing the expired form reads the forwarded message (the ring is needed): the
    outage page gives the form back instead of "Form expired" with the text lost."""
    original = EmailMessage()
    original["From"], original["To"], original["Subject"] = BOB, ALICE, "Anhang"
    original.set_content("see attached")
    original.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
    forwarded = deliver(runtime, ALICE, original)
    fields = {
        **compose_fields(alice),
        "carry_from": str(forwarded),
        "carry": "1",
        "csrf_token": aged_token(alice.client, "/compose"),
    }
    with ring_unavailable(runtime):
        answer = alice.client.post("/compose", data=fields, content_type="multipart/form-data")
    assert_compose_back(answer)
    assert "Please attach your files again." in answer.text
    assert rows(runtime, BOB) == [] and queued(runtime) == []
    assert tracebacks(caplog) == []
