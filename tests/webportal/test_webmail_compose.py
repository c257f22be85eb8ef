"""Webmail compose: Send runs the submission pipeline, the lock encrypts, refusals keep the text.

Threats and promises covered: a Bcc recipient never shows in any copy; the lock
gives hosted recipients and key holders PGP/MIME and everyone else a secure page
that only the sender's password opens; a closed lock with a recipient who needs
a password is never sent without one (no JavaScript needed for that check); an
account cannot send as an address it does not own; what the user wrote comes
back on every refusal, a pipeline refusal included; the recipient-class answer
for the chips matches what the send does.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import html
import re
from pathlib import Path

import pytest
from flask import Flask

from gateway import accounts, db
from gateway.mailbox import SENT
from gateway.models import MailboxMessage
from gateway.pipeline.secure_page import PASSWORD_ALPHABET
from gateway.runtime import Runtime
from keystore import pgp
from tests.gateway.test_secure_page import decrypt_as, open_with, token_of
from webportal import create_app

from .webmail_support import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    Webmail,
    deliver,
    field_value,
    grouped,
    import_key,
    queued,
    rows,
    textarea,
    webmail_app,
)

ERIN = "erin@example.test"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 16 + b"\n%%EOF\n"
SECRET_TEXT = "Der Tresorcode ist 4711-Okapi."
PASSWORD = "Tulpen-und-Regen-42"


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return webmail_app(runtime)


# Plain clients, not `with` blocks: a preserved app context (and flask-login's user in
# `g`) would carry one user into the other's requests.
@pytest.fixture
def alice(app: Flask, mail_users: dict[str, str]) -> Webmail:
    return Webmail(app.test_client()).login(ALICE)


@pytest.fixture
def bob(app: Flask, mail_users: dict[str, str]) -> Webmail:
    return Webmail(app.test_client()).login(BOB)


def parse(raw: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def add_erin(runtime: Runtime) -> None:
    with db.transaction(runtime.sessions) as session:
        account = accounts.add_account(session, runtime.hasher, ERIN, "erin-pw", actor="test")
        accounts.add_address(session, runtime.hasher, ERIN, account, "erin-smtp", actor="test")


def test_plain_message_reaches_the_inbox_files_a_sent_copy_and_hides_bcc(
    alice: Webmail, runtime: Runtime
) -> None:
    add_erin(runtime)
    sent = alice.compose(
        **{"from": ALICE, "to": BOB, "bcc": ERIN, "subject": "Grüße", "text": "Hallo Bob ✓"},
        files=[(PDF, "plan.pdf", "application/pdf")],
    )
    assert sent.status_code == 303 and sent.headers["Location"] == "/sent"
    assert "Your message was sent." in alice.get("/sent").text

    (to_bob,) = rows(runtime, BOB)
    (to_erin,) = rows(runtime, ERIN)
    (sent_copy,) = rows(runtime, ALICE, SENT)
    for row in (to_bob, to_erin, sent_copy):
        assert not row.encrypted
        message = parse(row.raw)
        if row is sent_copy:  # the sender's own record keeps the Bcc, as mail programs do
            assert message["Bcc"] == ERIN
        else:
            assert message["Bcc"] is None and ERIN.encode() not in row.raw
        assert not any(name.lower().startswith("x-sealgate") for name in message)
        assert message["Subject"] == "Grüße" and message["From"] == ALICE
        body = message.get_body(preferencelist=("plain",))
        assert body is not None and body.get_content().strip() == "Hallo Bob ✓"
        (attached,) = list(message.iter_attachments())
        assert attached.get_filename() == "plan.pdf"
        assert attached.get_payload(decode=True) == PDF
    assert "Received: from webmail" in to_bob.raw.decode("ascii", "replace")
    assert queued(runtime) == []


# A subject whose encoded word, decoded once, is itself an encoded word holding CR LF
# and two header fields: the page shows the once-decoded text, and Python's email
# package (CVE-2024-6923 on the Pythons before 3.11.10/3.12.5) decoded it again when
# the reply was built, writing the fields into the hosted user's outgoing mail.
INJECTING_SUBJECT = (
    "=?utf-8?q?=3D=3Futf-8=3Fq=3Fhello=3D0D=3D0AReply-To=3A=5Fmallory=40evil.example"
    "=3D0D=3D0AX-Injected=3A=5Fyes=3F=3D?="
)


# The same, once decoded, as a message id: In-Reply-To of the message answered, which
# a reply puts into its References.
INJECTING_ID = (
    "=?utf-8?b?PD0/dXRmLTg/cT9hPTBEPTBBUmVwbHktVG86X21hbGxvcnlAZXZpbC5leGFtcGxl?="
    " =?utf-8?b?PTBEPTBBWC1JbmplY3RlZDpfaXJ0Pz1AZXZpbC5leGFtcGxlPg==?="
)


@pytest.mark.parametrize("how", ["reply", "typed", "references"])
def test_an_encoded_word_in_the_subject_or_references_cannot_add_header_fields(
    alice: Webmail, runtime: Runtime, how: str
) -> None:
    fields: dict[str, str] = {}
    if how == "references":
        hostile = (
            b"From: mallory@evil.example\r\nTo: " + ALICE.encode() + b"\r\n"
            b"Subject: hello\r\nIn-Reply-To: " + INJECTING_ID.encode() + b"\r\n"
            b"Message-ID: <m1@evil.example>\r\n\r\nhello\r\n"
        )
        received = deliver(runtime, ALICE, hostile)
        page = alice.get(f"/compose?reply={received}").text
        subject = html.unescape(field_value(page, "subject"))
        # The reply form no longer carries the id; a form posted by hand still could.
        assert "Reply-To" not in html.unescape(field_value(page, "references"))
        once_decoded = (
            "<=?utf-8?q?a=0D=0AReply-To:_mallory@evil.example=0D=0AX-Injected:_irt?=@evil.example>"
        )
        fields = {"in_reply_to": once_decoded, "references": f"<m0@evil.example> {once_decoded}"}
    elif how == "reply":
        hostile = (
            b"From: mallory@evil.example\r\nTo: " + ALICE.encode() + b"\r\n"
            b"Subject: " + INJECTING_SUBJECT.encode() + b"\r\n"
            b"Message-ID: <m1@evil.example>\r\n\r\nhello\r\n"
        )
        received = deliver(runtime, ALICE, hostile)
        page = alice.get(f"/compose?reply={received}").text
        subject = html.unescape(field_value(page, "subject"))
        assert subject.startswith("Re: =?utf-8?q?hello=0D=0AReply-To:")
    else:
        subject = "Re: =?utf-8?q?hello=0D=0AReply-To:_mallory@evil.example=0D=0AX-Injected:_yes?="
    sent = alice.compose(
        **{"from": ALICE, "to": BOB, "subject": subject, "text": "answer", **fields}
    )
    assert sent.status_code == 303, sent.text
    (to_bob,) = rows(runtime, BOB)
    (sent_copy,) = rows(runtime, ALICE, SENT)
    for row in (to_bob, sent_copy):
        message = parse(row.raw)
        assert message["X-Injected"] is None and message["Reply-To"] is None
        assert b"\nX-Injected:" not in row.raw and b"\nReply-To:" not in row.raw
        assert "\n" not in str(message["Subject"]) and "\r" not in str(message["Subject"])


def test_guesses_at_a_sealed_sent_copy_are_limited_per_account_from_any_address(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """A stolen session that changes its address for each guess still gets the
    account's budget of password tries, not a fresh one per address."""
    settings = runtime.settings.replace(keys={"wkd": False}, securepage={"rate_limit": "3/minute"})
    app = create_app(dataclasses.replace(runtime, settings=settings), testing=True)
    alice = Webmail(app.test_client()).login(ALICE)
    sent = alice.compose(
        **{
            "from": ALICE,
            "to": CAROL,
            "subject": "Vertrag",
            "text": SECRET_TEXT,
            "encrypt": "yes",
            "password": PASSWORD,
        }
    )
    assert sent.status_code == 303, sent.text
    (copy,) = rows(runtime, ALICE, SENT)
    page = f"/mail/{copy.id}"
    answers = []
    for n in range(4):
        alice.client.environ_base["REMOTE_ADDR"] = f"192.0.2.{n + 1}"
        answers.append(alice.post(f"{page}/unlock", {"password": f"guess {n}"}, page))
    assert [a.status_code for a in answers] == [403, 403, 403, 429]
    # Another account keeps its own budget.
    bob = Webmail(app.test_client()).login(BOB)
    bob.client.environ_base["REMOTE_ADDR"] = "192.0.2.99"
    assert bob.post(f"{page}/unlock", {"password": "x"}, "/inbox").status_code == 404


def test_closed_lock_encrypts_for_hosted_and_key_holders_and_seals_the_rest(
    alice: Webmail, bob: Webmail, runtime: Runtime, tmp_path: Path
) -> None:
    fingerprint = import_key(runtime, DAVE, tmp_path / "gpg")
    sent = alice.compose(
        **{
            "from": ALICE,
            "to": f"{BOB}, {CAROL}",
            "cc": DAVE,
            "subject": "Vertrag",
            "text": SECRET_TEXT,
            "encrypt": "yes",
            "password": PASSWORD,
        }
    )
    assert sent.status_code == 303, sent.text
    notice = html.unescape(alice.get("/sent").text)
    assert "1 recipient(s) get a link to a secure page" in notice

    # Bob (hosted): encrypted at rest, decrypted in his webmail, signature checked.
    (stored,) = rows(runtime, BOB)
    assert stored.encrypted and SECRET_TEXT.encode() not in stored.raw
    (message_id,) = bob.message_ids("/inbox")
    inbox = bob.get("/inbox").text
    assert inbox.count('class="badge-lock"') == 1
    view = html.unescape(bob.get(f"/mail/{message_id}").text)
    assert SECRET_TEXT in view and "Encrypted" in view
    assert "Signed by the sender: the signature is valid." in view

    # Dave (external key): PGP/MIME to his key; Carol (no key): a notification only.
    items = {item.rcpt_to: item for item in queued(runtime)}
    assert set(items) == {DAVE, CAROL}
    assert b"BEGIN PGP MESSAGE" in items[DAVE].raw and SECRET_TEXT.encode() not in items[DAVE].raw
    assert SECRET_TEXT.encode() not in items[CAROL].raw
    token = token_of(items[CAROL].raw)
    opened = open_with(runtime, token, PASSWORD)
    assert opened is not None and SECRET_TEXT.encode() in opened
    assert open_with(runtime, token, "not-the-password") is None

    # No ciphertext names Alice's key: with secure-page recipients, database plus
    # master key (which unwrap her key) must not open the message anywhere.
    for ciphertext in (stored.raw, items[DAVE].raw):
        with pytest.raises(pgp.PgpError, match="not encrypted to a key of"):
            decrypt_as(runtime, ALICE, ciphertext)

    # Alice's Sent copy is sealed under the same password: its view asks for it, and
    # shows the secure page and its controls meanwhile.
    (copy,) = rows(runtime, ALICE, SENT)
    assert copy.encrypted and SECRET_TEXT.encode() not in copy.raw
    page = html.unescape(alice.get(f"/mail/{copy.id}").text)
    assert SECRET_TEXT not in page and 'name="password"' in page
    assert re.search(
        r"Expires on \d{4}-\d\d-\d\d \d\d:\d\d for 1 recipient\(s\) with a password", page
    )
    assert CAROL in page and "/secure/links/" in page and "/revoke" in page
    assert "/secure/messages/" in page  # the new-password control
    reply = alice.get(f"/compose?reply={copy.id}")
    assert reply.status_code == 303 and reply.headers["Location"].endswith(f"/mail/{copy.id}")
    unlock_page = f"/mail/{copy.id}"
    wrong = alice.post(f"/mail/{copy.id}/unlock", {"password": "not-the-password"}, unlock_page)
    assert wrong.status_code == 403 and "The password is wrong." in wrong.text
    right = alice.post(f"/mail/{copy.id}/unlock", {"password": PASSWORD}, unlock_page)
    assert right.status_code == 303
    page = html.unescape(alice.get(f"/mail/{copy.id}").text)
    assert SECRET_TEXT in page and "Sealed with the message's password" in page
    assert "for 1 recipient(s) with a password" in page
    assert SECRET_TEXT in html.unescape(alice.get(f"/compose?reply={copy.id}").text)

    # A Sent copy that no longer opens still shows (and controls) its secure page.
    with db.transaction(runtime.sessions) as session:
        broken = session.get(MailboxMessage, copy.id)
        assert broken is not None
        head, sep, body = broken.raw.partition(b"\r\n\r\n")
        broken.raw = head + sep + b"AAAA" + body[4:]
    page = html.unescape(alice.get(f"/mail/{copy.id}").text)
    assert SECRET_TEXT not in page and 'name="password"' in page
    assert "for 1 recipient(s) with a password" in page and "/revoke" in page
    with db.transaction(runtime.sessions) as session:
        broken = session.get(MailboxMessage, copy.id)
        assert broken is not None
        broken.raw = broken.raw.rstrip() + b"!\r\n"  # no longer base64 at all
    page = html.unescape(alice.get(f"/mail/{copy.id}").text)
    assert "This message cannot be decrypted with your keys." in page
    assert 'name="password"' not in page and "/revoke" in page
    assert grouped(fingerprint)  # the key is the one the chips name (see the JSON test)


def test_closed_lock_without_a_password_comes_back_filled_in_with_a_suggestion(
    alice: Webmail, runtime: Runtime
) -> None:
    fields = {
        "from": ALICE,
        "to": f"{BOB}, {CAROL}",
        "cc": "",
        "subject": "Nur mit Passwort",
        "text": SECRET_TEXT,
        "encrypt": "yes",
    }
    refused = alice.compose(**fields)
    assert refused.status_code == 400
    page = html.unescape(refused.text)
    assert f"need a password for their secure page: {CAROL}" in page
    assert field_value(refused.text, "to") == html.escape(f"{BOB}, {CAROL}")
    assert field_value(refused.text, "subject") == "Nur mit Passwort"
    assert html.unescape(textarea(refused.text, "text")) == SECRET_TEXT
    assert 'name="encrypt" value="yes" checked' in refused.text
    suggested = field_value(refused.text, "password")
    assert len(suggested) == 16 and set(suggested) <= set(PASSWORD_ALPHABET)
    assert 'id="server-needs-password"' in refused.text
    assert rows(runtime, BOB) == [] and queued(runtime) == []

    short = alice.compose(**fields, password="kurz")
    assert short.status_code == 400
    assert "The password must have at least 8 characters." in short.text
    assert rows(runtime, BOB) == [] and queued(runtime) == []

    # The suggested password works as it stands.
    assert alice.compose(**fields, password=suggested).status_code == 303
    token = token_of(queued(runtime)[0].raw)
    assert open_with(runtime, token, suggested) is not None


def test_closed_lock_to_hosted_recipients_only_needs_no_password(
    alice: Webmail, runtime: Runtime
) -> None:
    sent = alice.compose(
        **{"from": ALICE, "to": BOB, "subject": "s", "text": "t", "encrypt": "yes"}
    )
    assert sent.status_code == 303
    (stored,) = rows(runtime, BOB)
    assert stored.encrypted and queued(runtime) == []


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"from": BOB, "to": CAROL}, f"You cannot send from {BOB}."),
        ({"to": "not-an-address"}, "not-an-address is not a valid mail address."),
        ({"to": "nobody@example.test"}, "There is no mailbox nobody@example.test here."),
        ({"to": ""}, "Add at least one recipient."),
    ],
)
def test_refusals_keep_what_was_written(
    alice: Webmail, runtime: Runtime, fields: dict[str, str], error: str
) -> None:
    refused = alice.compose(**{"from": ALICE, "subject": "Betreff", "text": SECRET_TEXT, **fields})
    assert refused.status_code == 400
    assert error in html.unescape(refused.text)
    assert html.unescape(textarea(refused.text, "text")) == SECRET_TEXT
    assert field_value(refused.text, "subject") == "Betreff"
    assert rows(runtime, BOB) == [] and rows(runtime, ALICE, SENT) == [] and queued(runtime) == []


def test_a_text_that_starts_with_an_empty_line_comes_back_as_written(alice: Webmail) -> None:
    text = "\n\nGleich nach zwei Leerzeilen."
    refused = alice.compose(**{"from": ALICE, "to": "", "subject": "Betreff", "text": text})
    assert refused.status_code == 400
    assert html.unescape(textarea(refused.text, "text")) == text


def test_a_pipeline_refusal_is_a_friendly_error_with_the_text_kept(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    strict = dataclasses.replace(
        runtime,
        settings=runtime.settings.replace(keys={"wkd": False}, smtp={"max_mime_parts": 3}),
    )
    app = create_app(strict, testing=True)
    alice = Webmail(app.test_client()).login(ALICE)
    refused = alice.compose(
        **{"from": ALICE, "to": BOB, "subject": "Viele Anhänge", "text": SECRET_TEXT},
        files=[(b"x" * 10, f"file{n}.txt", "text/plain") for n in range(3)],
    )
    assert refused.status_code == 400
    page = html.unescape(refused.text)
    assert "The message was not sent: Message structure too complex" in page
    assert "Please attach your files again." in page
    # The SMTP reply's code and status ("554 5.6.0 ..."), not any "554" (the page holds
    # random tokens).
    assert "Traceback" not in page and "554 5." not in page
    assert html.unescape(textarea(refused.text, "text")) == SECRET_TEXT
    assert rows(runtime, BOB) == []


def test_attachments_over_the_limit_are_refused(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    small = dataclasses.replace(
        runtime,
        settings=runtime.settings.replace(
            keys={"wkd": False}, webmail={"max_attachment_bytes": 1000}
        ),
    )
    alice = Webmail(create_app(small, testing=True).test_client()).login(ALICE)
    assert 'data-max-attachments="1000"' in alice.get("/compose").text
    refused = alice.compose(
        **{"from": ALICE, "to": BOB, "subject": "big", "text": "t"},
        files=[(b"y" * 1001, "big.bin", "application/octet-stream")],
    )
    assert refused.status_code == 400
    assert "The attachments are larger than 1000 bytes." in refused.text
    assert rows(runtime, BOB) == []


def test_recipient_classes_for_the_chips(
    alice: Webmail, runtime: Runtime, app: Flask, tmp_path: Path
) -> None:
    fingerprint = import_key(runtime, DAVE, tmp_path / "gpg")
    query = "&".join(
        f"address={a}" for a in (BOB, DAVE, CAROL, "nobody@example.test", "not an address")
    )
    answer = alice.get(f"/compose/recipients?{query}")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    classes = {item["address"]: item for item in answer.json["recipients"]}
    assert classes[BOB]["kind"] == "hosted"
    assert classes[DAVE]["kind"] == "key" and classes[DAVE]["fingerprint"] == grouped(fingerprint)
    assert classes[CAROL]["kind"] == "password" and classes[CAROL]["fingerprint"] == ""
    assert classes["nobody@example.test"]["kind"] == "unknown-mailbox"
    assert classes["not an address"]["kind"] == "invalid"
    assert answer.headers["Cache-Control"] == "no-store"

    # A key holder needs no password: the lock closes and the send goes through.
    sent = alice.compose(
        **{"from": ALICE, "to": DAVE, "subject": "s", "text": "t", "encrypt": "yes"}
    )
    assert sent.status_code == 303
    (item,) = queued(runtime)
    assert b"BEGIN PGP MESSAGE" in item.raw

    anonymous = app.test_client().get(f"/compose/recipients?address={BOB}")
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login")


def test_the_compose_page_runs_under_the_strict_csp(alice: Webmail, app: Flask) -> None:
    page = alice.get("/compose")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    scripts = re.findall(r"<script([^>]*)>", page.text)
    assert scripts and all('src="/static/' in s or 'type="application/json"' in s for s in scripts)
    assert not re.search(r"\son[a-z]+=", page.text)  # no inline event handlers
    assert "style=" not in page.text
    script = alice.get("/static/webmail.js")
    script.close()
    assert script.status_code == 200
    # The lock sits left of Send; without JavaScript it is a checkbox and a field.
    assert page.text.index('id="lock"') < page.text.index('id="send"')
    assert 'name="encrypt" value="yes"' in page.text and 'name="password"' in page.text
    owned = re.findall(
        r'<option value="([^"]+)"', page.text.split('id="from"')[1].split("</select>")[0]
    )
    assert owned == [ALICE]


def test_closed_lock_seals_for_a_quoted_local_part_and_notifies_it_quoted(
    alice: Webmail, runtime: Runtime
) -> None:
    """A recipient `"john doe"@...` with the lock closed: a secure page, opened with the
    password, and a notification to the address written quoted, in RCPT TO and To."""
    john = '"john doe"@elsewhere.example'
    sent = alice.compose(
        **{
            "from": ALICE,
            "to": john,
            "subject": "Vertrag",
            "text": SECRET_TEXT,
            "encrypt": "yes",
            "password": PASSWORD,
        }
    )
    assert sent.status_code == 303, sent.text
    (item,) = queued(runtime)
    assert item.rcpt_to == john
    assert SECRET_TEXT.encode() not in item.raw
    assert parse(item.raw)["To"].addresses[0].addr_spec == john
    opened = open_with(runtime, token_of(item.raw), PASSWORD)
    assert opened is not None and SECRET_TEXT.encode() in opened


def test_a_refused_form_comes_back_to_the_page_it_was_built_from_and_no_other(
    alice: Webmail,
) -> None:
    """Back to a refusal loads the reply, forward or draft page the form came from
    (webportal.compose._come_back_to): its `origin` field is outside data, so only
    ids and the reply-all switch pass, into a URL of the compose page itself."""

    def back_url(origin: str) -> str:
        refused = alice.compose(**{"from": ALICE, "to": "no address", "origin": origin})
        assert refused.status_code == 400
        found = re.search(r'after_post\.js" data-url="([^"]*)"', refused.text)
        assert found, refused.text
        return html.unescape(found.group(1))

    assert back_url("") == "/compose"
    assert back_url("reply=5&all=1") == "/compose?reply=5&all=1"
    assert back_url("forward=7") == "/compose?forward=7"
    assert back_url("draft=9&all=1") == "/compose?draft=9"
    assert back_url("reply=x&next=https://evil.example/") == "/compose"
    assert back_url("reply=0") == "/compose"
    assert back_url("//evil.example/?reply=5") == "/compose"
