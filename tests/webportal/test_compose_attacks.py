"""Webmail compose under attack and under odd use: what is sent is what was typed, once.

Threats and promises covered: a typed recipient silently dropped (or one added)
by the To/Cc/Bcc parsing; display names lost; a draft that silently
keeps a truncated attachment or answers 500 and loses what was written; a form
posted without its CSRF token; the lock: with it on, no byte of the text is in
clear in the Sent copy, the draft, the queue or the log; a reply or forward of
an encrypted message keeps the lock; hostile mail (odd charsets, no headers, a
message/rfc822 part, a huge quoted text) answered or forwarded without a 500.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import html
import logging

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from gateway import accounts, db
from gateway.mailbox import SENT
from gateway.runtime import Runtime
from webportal import create_app

from .conftest import csrf_from
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

DRAFTS = "Drafts"
SECRET_TEXT = "Der Tresorcode ist 4711-Okapi."
PASSWORD = "Tulpen-und-Regen-42"


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return webmail_app(runtime)


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


def test_display_names_and_quoted_commas_reach_the_recipient(
    alice: Webmail, runtime: Runtime
) -> None:
    sent = alice.compose(
        **{
            "from": ALICE,
            "to": f'"Builder, Bob" <{BOB}>',
            "cc": f"Carol Müller <{CAROL}>",
            "subject": "Namen",
            "text": "t",
        }
    )
    assert sent.status_code == 303, sent.text
    (to_bob,) = rows(runtime, BOB)
    message = parse(to_bob.raw)
    assert [(a.display_name, a.addr_spec) for a in message["To"].addresses] == [
        ("Builder, Bob", BOB)
    ]
    assert [(a.display_name, a.addr_spec) for a in message["Cc"].addresses] == [
        ("Carol Müller", CAROL)
    ]
    assert [item.rcpt_to for item in queued(runtime)] == [CAROL]


def test_undisclosed_recipients_with_bcc_only(alice: Webmail, runtime: Runtime) -> None:
    sent = alice.compose(
        **{
            "from": ALICE,
            "to": "undisclosed-recipients:;",
            "bcc": BOB,
            "subject": "Rundbrief",
            "text": "t",
        }
    )
    assert sent.status_code == 303, sent.text
    (to_bob,) = rows(runtime, BOB)
    assert BOB.encode() not in to_bob.raw.split(b"\r\n\r\n", 1)[0].split(b"Received:")[0]
    assert parse(to_bob.raw)["Bcc"] is None


def test_a_recipient_that_would_be_dropped_is_a_friendly_error_with_the_text_kept(
    alice: Webmail, runtime: Runtime
) -> None:
    typed = f"Bob <{BOB}> {CAROL}"
    refused = alice.compose(**{"from": ALICE, "to": typed, "subject": "s", "text": SECRET_TEXT})
    assert refused.status_code == 400
    page = html.unescape(refused.text)
    assert f"{typed} is not a valid mail address." in page
    assert html.unescape(field_value(refused.text, "to")) == typed
    assert html.unescape(textarea(refused.text, "text")) == SECRET_TEXT
    assert rows(runtime, BOB) == [] and queued(runtime) == []


@pytest.mark.parametrize("action", ["send", "draft"])
def test_compose_posts_without_the_csrf_token_are_refused(
    alice: Webmail, runtime: Runtime, action: str
) -> None:
    answer = alice.client.post(
        "/compose", data={"from": ALICE, "to": BOB, "subject": "s", "text": "t", "action": action}
    )
    assert answer.status_code == 400
    assert rows(runtime, BOB) == [] and rows(runtime, ALICE, DRAFTS) == []


def small_attachments(runtime: Runtime) -> Webmail:
    small = dataclasses.replace(
        runtime,
        settings=runtime.settings.replace(
            keys={"wkd": False}, webmail={"max_attachment_bytes": 1000}
        ),
    )
    return Webmail(create_app(small, testing=True).test_client()).login(ALICE)


def test_a_draft_with_attachments_over_the_limit_is_refused_not_cut(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    alice = small_attachments(runtime)
    refused = alice.compose(
        action="draft",
        **{"from": ALICE, "to": BOB, "subject": "big", "text": SECRET_TEXT},
        files=[(b"y" * 1500, "big.bin", "application/octet-stream")],
    )
    assert refused.status_code == 400
    page = html.unescape(refused.text)
    assert "The attachments are larger than 1000 bytes." in page
    assert "Please attach your files again." in page
    assert html.unescape(textarea(refused.text, "text")) == SECRET_TEXT
    assert rows(runtime, ALICE, DRAFTS) == []


@pytest.mark.parametrize(
    "content_type", ["multipart/mixed", "message/rfc822", "multipart/signed", "message/partial"]
)
def test_an_upload_claiming_a_container_type_is_sent_as_opaque_bytes(
    alice: Webmail, runtime: Runtime, content_type: str
) -> None:
    """A browser's (or a forged form's) type for an upload is a claim: a multipart or
    message type with a base64 body is no valid MIME, and readers differ on it."""
    data = b"From: mallory@evil.example\r\nSubject: inner\r\n\r\nhi\r\n"
    sent = alice.compose(
        **{"from": ALICE, "to": BOB, "subject": "s", "text": "t"},
        files=[(data, "x.eml", content_type)],
    )
    assert sent.status_code == 303, sent.text
    (to_bob,) = rows(runtime, BOB)
    (attached,) = parse(to_bob.raw).iter_attachments()
    assert attached.get_content_type() == "application/octet-stream"
    assert attached.get_payload(decode=True) == data
    assert attached.get_filename() == "x.eml"


def test_odd_attachments_empty_same_name_dots_and_undecodable_names(
    alice: Webmail, runtime: Runtime
) -> None:
    sent = alice.compose(
        **{"from": ALICE, "to": BOB, "subject": "files", "text": "t"},
        files=[
            (b"", "empty.txt", "text/plain"),
            (b"1", "same.txt", "text/plain"),
            (b"2", "same.txt", "text/plain"),
            (b"3", "../../x", "text/plain"),
            (b"4", "...", "text/plain"),
            (b"5", "na\udcffme.txt".encode("utf-8", "surrogateescape").decode("latin-1"), "x/y"),
            (b"6", "a\u2028b\u0085c.txt", "text/plain"),
        ],
    )
    assert sent.status_code == 303, sent.text
    (to_bob,) = rows(runtime, BOB)
    attached = list(parse(to_bob.raw).iter_attachments())
    assert [a.get_payload(decode=True) for a in attached] == [
        b"",
        b"1",
        b"2",
        b"3",
        b"4",
        b"5",
        b"6",
    ]
    names = [a.get_filename() for a in attached]
    assert names[:5] == ["empty.txt", "same.txt", "same.txt", "x", "attachment-4.bin"]
    for name in names:
        assert name and "/" not in name and all(c.isprintable() for c in name)


def test_with_the_lock_nothing_is_in_clear_sent_draft_queue_or_log(
    alice: Webmail, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fields = {
        "from": ALICE,
        "to": f"{BOB}, {CAROL}",
        "bcc": "dave@partner.example",
        "subject": "Vertrag",
        "text": SECRET_TEXT,
        "encrypt": "yes",
        "password": PASSWORD,
    }
    saved = alice.compose(action="draft", **fields, files=[(SECRET_TEXT.encode(), "s.txt", "t/p")])
    assert saved.status_code == 303, saved.text
    (draft,) = rows(runtime, ALICE, DRAFTS)
    assert draft.encrypted and SECRET_TEXT.encode() not in draft.raw
    assert b"dave@partner.example" not in draft.raw
    draft_page = saved.headers["Location"]
    reopened = alice.get(draft_page).text
    assert 'name="encrypt" value="yes" checked' in reopened
    assert PASSWORD not in reopened  # a draft never keeps the secure-page password
    sent = alice.compose(page=draft_page, draft_id=str(draft.id), **fields)
    assert sent.status_code == 303, sent.text
    assert rows(runtime, ALICE, DRAFTS) == []
    secret = SECRET_TEXT.encode()
    for row in rows(runtime, BOB) + rows(runtime, ALICE, SENT):
        assert row.encrypted and secret not in row.raw
    for item in queued(runtime):
        assert secret not in item.raw and PASSWORD.encode() not in item.raw
    assert SECRET_TEXT not in caplog.text and PASSWORD not in caplog.text


@pytest.mark.parametrize("how", ["reply", "reply&all=1", "forward"])
def test_answering_an_encrypted_message_keeps_the_lock(
    alice: Webmail, bob: Webmail, runtime: Runtime, how: str
) -> None:
    sent = alice.compose(
        **{"from": ALICE, "to": BOB, "subject": "Geheim", "text": SECRET_TEXT, "encrypt": "yes"}
    )
    assert sent.status_code == 303, sent.text
    (message_id,) = bob.message_ids("/inbox")
    query = how.replace("reply", f"reply={message_id}").replace("forward", f"forward={message_id}")
    page = bob.get(f"/compose?{query}").text
    assert 'name="encrypt" value="yes" checked' in page
    assert SECRET_TEXT in html.unescape(textarea(page, "text"))


HOSTILE = [
    # No header at all, a body in an unknown charset.
    b"\r\n\xff\xfe hello",
    # An unknown charset and an encoded word in an unknown one.
    b"From: =?x-unknown?q?M=FCller?= <m@evil.example>\r\nSubject: =?koi8-r?b?8NLJ18XU?=\r\n"
    b"Content-Type: text/plain; charset=x-made-up\r\n\r\n\xe4\xf6\xfc\r\n",
    # A message/rfc822 part holding a message with its own From and Bcc.
    b"From: m@evil.example\r\nTo: alice@example.test\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
    b"see inside\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@evil.example\r\n"
    b"Bcc: y@evil.example\r\nSubject: inner\r\n\r\ninner text\r\n--b--\r\n",
    # A Reply-To with many addresses and a group.
    b"From: m@evil.example\r\nReply-To: a@evil.example, list: b@evil.example, c@evil.example;\r\n"
    b"Subject: many\r\n\r\nhi\r\n",
    # A huge quoted text.
    b"From: m@evil.example\r\nSubject: long\r\n\r\n" + (b"> " * 40 + b"x" * 900 + b"\r\n") * 2000,
]


@pytest.mark.parametrize("raw", HOSTILE, ids=["bare", "charsets", "rfc822", "reply-to", "huge"])
@pytest.mark.parametrize("how", ["reply", "forward"])
def test_answering_hostile_mail_works_and_adds_nobody(
    alice: Webmail, runtime: Runtime, raw: bytes, how: str
) -> None:
    received = deliver(runtime, ALICE, raw)
    page = alice.get(f"/compose?{how}={received}")
    assert page.status_code == 200
    to = html.unescape(field_value(page.text, "to"))
    assert "y@evil.example" not in to and "x@evil.example" not in to
    text = html.unescape(textarea(page.text, "text"))
    sent = alice.compose(
        page=f"/compose?{how}={received}",
        **{
            "from": ALICE,
            "to": BOB,
            "subject": html.unescape(field_value(page.text, "subject")),
            "text": text,
            "in_reply_to": html.unescape(field_value(page.text, "in_reply_to")),
            "references": html.unescape(field_value(page.text, "references")),
            **({"carry_from": str(received), "carry": "0"} if how == "forward" else {}),
        },
    )
    assert sent.status_code in (303, 400), sent.text
    if sent.status_code == 303:
        (to_bob,) = rows(runtime, BOB)
        message = parse(to_bob.raw)
        assert message["Bcc"] is None and message["Reply-To"] is None
        assert [a.addr_spec for a in message["To"].addresses] == [BOB]


def test_a_draft_with_non_ascii_names_and_bcc_reopens_as_typed(
    alice: Webmail, runtime: Runtime
) -> None:
    with db.transaction(runtime.sessions) as session:
        assert accounts.find_address(session, BOB) is not None
    fields = {
        "from": ALICE,
        "to": f'"Builder, Bob" <{BOB}>',
        "cc": f"Zoë Ümlaut <{CAROL}>",
        "bcc": "dave@partner.example",
        "subject": "Entwurf ✓",
        "text": "Zeile 1\nZeile 2",
    }
    saved = alice.compose(action="draft", **fields)
    assert saved.status_code == 303, saved.text
    page = alice.get(saved.headers["Location"]).text
    assert html.unescape(field_value(page, "to")) == fields["to"]
    assert html.unescape(field_value(page, "cc")) == fields["cc"]
    assert html.unescape(field_value(page, "bcc")) == fields["bcc"]
    assert html.unescape(field_value(page, "subject")) == fields["subject"]
    assert html.unescape(textarea(page, "text")) == fields["text"]


def test_many_recipients_ours_and_outside_and_duplicates(alice: Webmail, runtime: Runtime) -> None:
    outside = [f"user{n}@elsewhere.example" for n in range(60)]
    to = ", ".join([BOB, *outside, BOB.upper(), outside[0]])
    sent = alice.compose(
        **{"from": ALICE, "to": to, "bcc": outside[1], "subject": "s", "text": "t"}
    )
    assert sent.status_code == 303, sent.text
    assert len(rows(runtime, BOB)) == 1
    assert sorted(item.rcpt_to for item in queued(runtime)) == sorted(outside)


def test_a_long_subject_and_names_are_folded_not_cut_into_new_fields(
    alice: Webmail, runtime: Runtime
) -> None:
    subject = ("Sehr langer Betreff äöü " * 40).strip()
    name = "N" * 150
    sent = alice.compose(
        **{"from": ALICE, "to": f"{name} <{BOB}>", "subject": subject, "text": "t"}
    )
    assert sent.status_code == 303, sent.text
    (to_bob,) = rows(runtime, BOB)
    header = to_bob.raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in header.split(b"\r\n"))
    message = parse(to_bob.raw)
    assert message["Subject"] == subject
    assert message["To"].addresses[0].display_name == name


def post_form(user: Webmail, fields: dict[str, str]) -> TestResponse:
    """The compose form sent URL-encoded (a big multipart body would make the test
    client spool it to a temporary file that it never closes)."""
    token = csrf_from(user.get("/compose").text)
    return user.client.post("/compose", data={"action": "send", **fields, "csrf_token": token})


def test_a_long_text_is_sent_whole_and_one_too_long_comes_back_whole(
    alice: Webmail, runtime: Runtime
) -> None:
    """Past Flask's 500 kB form-field default the page answered 413 (the text lost);
    past MAX_TEXT the text was cut without a word."""
    long_text = ("Zeile mit Umlauten äöü und etwas mehr Text.\n" * 15_000).strip()
    assert len(long_text.encode()) > 500_000
    sent = post_form(alice, {"from": ALICE, "to": BOB, "subject": "lang", "text": long_text})
    assert sent.status_code == 303, sent.text[:300]
    (to_bob,) = rows(runtime, BOB)
    body = parse(to_bob.raw).get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n").rstrip("\n") == long_text

    too_long = "x" * 1_000_001
    refused = post_form(alice, {"from": ALICE, "to": BOB, "subject": "zu lang", "text": too_long})
    assert refused.status_code == 400
    assert "The text is longer than 1000000 characters" in refused.text
    assert textarea(refused.text, "text") == too_long
    assert len(rows(runtime, BOB)) == 1


def test_a_hosted_idn_address_typed_in_either_form_is_delivered(
    alice: Webmail, runtime: Runtime
) -> None:
    with db.transaction(runtime.sessions) as session:
        accounts.add_domain(session, "straße.test", actor="test")
        account = accounts.add_account(
            session, runtime.hasher, "jo@straße.test", "jo-pw", actor="test"
        )
        accounts.add_address(session, runtime.hasher, "jo@straße.test", account, "x", actor="t")
    for typed in ("Jo <jo@straße.test>", "jo@xn--strae-oqa.test"):
        sent = alice.compose(**{"from": ALICE, "to": typed, "subject": "IDN", "text": "t"})
        assert sent.status_code == 303, sent.text
    assert len(rows(runtime, "jo@straße.test")) == 2
    assert queued(runtime) == []


def test_carrying_attachments_of_another_accounts_message_carries_nothing(
    alice: Webmail, bob: Webmail, runtime: Runtime
) -> None:
    sent = alice.compose(
        **{"from": ALICE, "to": CAROL, "subject": "privat", "text": "t"},
        files=[(SECRET_TEXT.encode(), "geheim.txt", "text/plain")],
    )
    assert sent.status_code == 303
    (alices,) = rows(runtime, ALICE, SENT)
    forged = bob.compose(
        **{
            "from": BOB,
            "to": BOB,
            "subject": "mine now?",
            "text": "t",
            "carry_from": str(alices.id),
            "carry": "0",
        }
    )
    assert forged.status_code in (303, 404)
    for row in rows(runtime, BOB) + rows(runtime, BOB, SENT):
        assert SECRET_TEXT.encode() not in row.raw and b"geheim.txt" not in row.raw


@pytest.mark.parametrize("action", ["send", "draft"])
def test_a_draft_id_naming_a_message_that_is_no_draft_deletes_nothing(
    alice: Webmail, runtime: Runtime, action: str
) -> None:
    kept = deliver(runtime, ALICE, b"From: m@elsewhere.example\r\nSubject: keep\r\n\r\nhi\r\n")
    answer = alice.compose(
        action=action,
        **{"from": ALICE, "to": BOB, "subject": "s", "text": "t", "draft_id": str(kept)},
    )
    assert answer.status_code == 303, answer.text
    assert [row.id for row in rows(runtime, ALICE)] == [kept]
