"""A compose form larger than a message may be: the page comes back, nothing typed lost.

Threat: the form (many or large attachments, or a huge text) past MAX_CONTENT_LENGTH
got Werkzeug's bare 413 before the view ran, and the text and recipients the user had
written were gone. Now, with JavaScript, the form is not posted at all and the compose
view says the message is too large, with the limit in MB; without it (or past the
script's estimate), the server reads the form anyway (up to twice the limit, a
signed-in user's only) and gives it back filled in, naming the uploads it dropped;
past even that, a page says so and how to get the form back. An upload dropped past
the limit is never sent as an empty file, and nothing is sent or saved as a draft.
The settings are small here (200 000 bytes a message, 100 000 of attachments) so the
tests post little; the default limit (25 MiB) is shown as "25.0 MB".
"""

from __future__ import annotations

import dataclasses
import html
import io
from collections.abc import Iterator

import pytest
from flask import Flask
from playwright.sync_api import Browser, expect
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from gateway.mailbox import SENT
from gateway.runtime import Runtime
from webportal import create_app
from webportal.extensions import RUNTIME_KEY
from webportal.server import PortalServer

from .conftest import csrf_from
from .test_browser_webmail import sign_in
from .webmail_support import (
    ALICE,
    BOB,
    CAROL,
    Webmail,
    field_value,
    queued,
    rows,
    textarea,
)

MESSAGE_LIMIT = 200_000
ATTACHMENT_LIMIT = 100_000
TEXT = "Bitte nicht verlieren: drei Absätze Text.\n\nZweiter Absatz.\n\nDritter."


def small(runtime: Runtime) -> Runtime:
    settings = runtime.settings.replace(
        smtp={"max_message_size": MESSAGE_LIMIT},
        webmail={"max_attachment_bytes": ATTACHMENT_LIMIT},
        keys={"wkd": False},
    )
    return dataclasses.replace(runtime, settings=settings)


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return create_app(small(runtime), testing=True)


@pytest.fixture
def alice(app: Flask, mail_users: dict[str, str]) -> Webmail:
    return Webmail(app.test_client()).login(ALICE)


def post(
    user: Webmail,
    files: list[tuple[str, int]],
    *,
    action: str = "send",
    text: str = TEXT,
    status: int = 413,
) -> str:
    """The compose form with `files` (name, size) attached; the answer's page."""
    token = csrf_from(user.get("/compose").text)
    # Encoded here, in memory: the test client spools a large body to a file of its own
    # that it leaves open when the app answers without reading it all.
    boundary, body = encode_multipart(
        MultiDict(
            [
                ("csrf_token", token),
                ("action", action),
                ("from", ALICE),
                ("to", f"Bob <{BOB}>, {CAROL}"),
                ("cc", ""),
                ("bcc", "dora@elsewhere.example"),
                ("subject", "Große Anhänge"),
                ("text", text),
                *[
                    ("attachments", FileStorage(io.BytesIO(b"x" * size), name, "attachments"))
                    for name, size in files
                ],
            ]
        )
    )
    answer = user.client.post(
        "/compose", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert answer.status_code == status, (answer.status_code, answer.text[:300])
    return html.unescape(answer.text)


def assert_nothing_went_out(runtime: Runtime) -> None:
    assert rows(runtime, BOB) == [] and queued(runtime) == []
    assert rows(runtime, ALICE, SENT) == [] and rows(runtime, ALICE, "Drafts") == []


@pytest.mark.parametrize("action", ["send", "draft"])
def test_a_form_over_the_limit_comes_back_filled_in_naming_what_was_dropped(
    alice: Webmail, runtime: Runtime, action: str
) -> None:
    page = post(alice, [("klein.txt", 20_000), ("riesig.iso", 300_000)], action=action)
    assert "The message is too large: it may hold at most 195 KB in all" in page
    assert "its attachments at most 98 KB together. Nothing was sent." in page
    assert "Not kept: riesig.iso (293 KB)." in page
    assert "Please attach your files again." in page
    assert textarea(page, "text") == TEXT
    assert field_value(page, "to") == f"Bob <{BOB}>, {CAROL}"
    assert field_value(page, "bcc") == "dora@elsewhere.example"
    assert field_value(page, "subject") == "Große Anhänge"
    assert_nothing_went_out(runtime)


def test_an_upload_past_the_attachment_limit_is_never_sent_empty(
    alice: Webmail, runtime: Runtime
) -> None:
    """Under the message limit, over the attachments' one: the dropped upload is named,
    and the message does not go out without it."""
    page = post(alice, [("a.txt", 60_000), ("b.txt", 60_000), ("c.txt", 30_000)], status=400)
    assert "The attachments are larger than 100000 bytes. Not kept: b.txt (59 KB)." in page
    assert textarea(page, "text") == TEXT
    assert_nothing_went_out(runtime)


def test_past_what_is_read_a_page_says_how_to_get_the_form_back(
    alice: Webmail, runtime: Runtime
) -> None:
    page = post(alice, [("viel-zu-gross.iso", 2 * MESSAGE_LIMIT + 1)])
    assert "Message too large" in page
    assert "it may hold at most 195 KB in all, text and attachments together" in page
    assert "Go back to it with your browser's Back button" in page
    assert "Request too large" not in page
    assert_nothing_went_out(runtime)

    page = post(alice, [], text="x" * (MESSAGE_LIMIT + 1))
    assert "Message too large" in page and "Go back to it" in page
    assert_nothing_went_out(runtime)


def test_a_stranger_is_not_read_past_the_limit(app: Flask, mail_users: dict[str, str]) -> None:
    """The larger read is for a signed-in user only: anyone else's form is not read
    (read, it would have failed its CSRF check, 400)."""
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    answer = client.post(
        "/compose",
        data={"text": "x", "attachments": [(io.BytesIO(b"x" * (MESSAGE_LIMIT + 1)), "a", "x/y")]},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 413 and "Message too large" in answer.text


@pytest.fixture
def served(runtime: Runtime, mail_users: dict[str, str]) -> Iterator[PortalServer]:
    quiet = small(runtime)
    app = create_app(quiet)
    server = PortalServer(app, quiet.settings)
    server.start()
    app.extensions[RUNTIME_KEY] = dataclasses.replace(
        quiet, settings=quiet.settings.replace(portal={"base_url": server.url})
    )
    yield server
    server.stop()


def fill(page: object, files: list[tuple[str, int]]) -> None:
    page.fill("#to", f"{BOB}, {CAROL}")  # type: ignore[attr-defined]
    page.fill("#subject", "Große Anhänge")  # type: ignore[attr-defined]
    page.fill("#text", TEXT)  # type: ignore[attr-defined]
    page.set_input_files(  # type: ignore[attr-defined]
        "#attachments",
        [{"name": n, "mimeType": "text/plain", "buffer": b"x" * size} for n, size in files],
    )


@pytest.mark.browser
@pytest.mark.slow
def test_in_chromium_a_form_over_the_limit_is_not_posted_and_nothing_is_lost(
    chromium: Browser, served: PortalServer, runtime: Runtime
) -> None:
    """The attachments fit their own limit, but with a long text the message does not:
    Send and Save draft post nothing; the compose view says why, with the limit in MB."""
    context = chromium.new_context(ignore_https_errors=True, locale="en-US")
    try:
        page = context.new_page()
        sign_in(page, served, ALICE)
        page.goto(f"{served.url}/compose")
        fill(page, [("a.txt", 50_000), ("b.txt", 45_000)])
        page.fill("#text", TEXT + "\n" + "Lang. " * 20_000)
        posts: list[str] = []
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        for button in ("#send", "#save-draft"):
            page.click(button)
            error = page.locator("#size-error")
            expect(error).to_be_visible()
            expect(error).to_have_text(
                "The message is too large: it may hold at most 195 KB in all, text and"
                " attachments together. Remove attachments or shorten the text."
            )
        assert posts == []
        assert page.url == f"{served.url}/compose"
        assert page.input_value("#to") == f"{BOB}, {CAROL}"
        assert page.input_value("#text").startswith(TEXT)
        assert page.evaluate("document.getElementById('attachments').files.length") == 2
        expect(page.locator("#chips-to .chip")).to_have_count(2)

        page.fill("#text", TEXT)  # short enough now: it goes
        page.click("#send")
        expect(page).to_have_url(f"{served.url}/sent")
        expect(page.locator("#size-error")).to_have_count(0)
    finally:
        context.close()
    assert len(rows(runtime, BOB)) == 1


@pytest.mark.browser
@pytest.mark.slow
def test_in_chromium_without_javascript_the_form_comes_back_filled_in(
    chromium: Browser, served: PortalServer, runtime: Runtime
) -> None:
    """Without the script (or past its estimate) the server reads the form anyway: the
    page Chromium shows is the compose view, filled in, naming the file it dropped; and
    past what the server reads, a page that says how to get the form back."""
    context = chromium.new_context(
        ignore_https_errors=True, locale="en-US", java_script_enabled=False
    )
    try:
        page = context.new_page()
        sign_in(page, served, ALICE)
        page.goto(f"{served.url}/compose")
        fill(page, [("klein.txt", 20_000), ("riesig.iso", 300_000)])
        page.click("#send")
        expect(page.locator("#compose-error")).to_contain_text(
            "The message is too large: it may hold at most 195 KB in all"
        )
        expect(page.locator("#compose-error")).to_contain_text("Not kept: riesig.iso (293 KB).")
        assert page.input_value("#to") == f"{BOB}, {CAROL}"
        assert page.input_value("#subject") == "Große Anhänge"
        assert page.input_value("#text") == TEXT

        # Past what is read, from a compose page of its own (Back to a page that was a
        # POST's answer would post the form again).
        page.goto(f"{served.url}/compose")
        fill(page, [("x.iso", 3 * MESSAGE_LIMIT)])
        page.click("#send")
        expect(page.locator("h1")).to_have_text("Message too large")
        expect(page.locator("body")).to_contain_text("Go back to it with your browser's Back")
        page.go_back()
        expect(page.locator("#text")).to_have_value(TEXT)
        expect(page.locator("#to")).to_have_value(f"{BOB}, {CAROL}")
        expect(page.locator("#subject")).to_have_value("Große Anhänge")
    finally:
        context.close()
    assert_nothing_went_out(runtime)
