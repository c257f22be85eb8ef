"""Bcc: in the sender's Sent copy, as mail programs keep it, and in no other copy.

Threats and promises covered: a Bcc recipient named in a copy another recipient
reads (a header, the encrypted entity, a key id); and the sender's own record
losing whom the message went to in secret: the Sent copy, plain, PGP-encrypted
or sealed for a secure page, carries the Bcc field, and the webmail shows it.
"""

from __future__ import annotations

import email
import email.policy
import html

import pytest
from flask import Flask

from gateway.mailbox import SENT
from gateway.runtime import Runtime
from tests.gateway.test_secure_page import decrypt_as, open_with, token_of

from .webmail_support import ALICE, BOB, CAROL, Webmail, queued, rows, webmail_app

SECRET_TEXT = "Der Tresorcode ist 4711-Okapi."
PASSWORD = "Tulpen-und-Regen-42"
HIDDEN = "hidden@elsewhere.example"


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return webmail_app(runtime)


@pytest.fixture
def alice(app: Flask, mail_users: dict[str, str]) -> Webmail:
    return Webmail(app.test_client()).login(ALICE)


def parse(raw: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def test_plain_sent_copy_keeps_the_bcc_no_other_copy_has_it(
    alice: Webmail, runtime: Runtime
) -> None:
    sent = alice.compose(
        **{
            "from": ALICE,
            "to": CAROL,
            "bcc": f"Bob Builder <{BOB}>, {HIDDEN}",
            "subject": "s",
            "text": "t",
        }
    )
    assert sent.status_code == 303, sent.text
    (copy,) = rows(runtime, ALICE, SENT)
    bcc = parse(copy.raw)["Bcc"]
    assert [(a.display_name, a.addr_spec) for a in bcc.addresses] == [
        ("Bob Builder", BOB),
        ("", HIDDEN),
    ]
    (to_bob,) = rows(runtime, BOB)
    assert parse(to_bob.raw)["Bcc"] is None and HIDDEN.encode() not in to_bob.raw
    for item in queued(runtime):
        assert b"Bcc" not in item.raw.split(b"\r\n\r\n", 1)[0]
        assert BOB.encode() not in item.raw and (
            item.rcpt_to == HIDDEN or HIDDEN.encode() not in item.raw
        )
    assert f"<dt>Bcc</dt><dd>Bob Builder <{BOB}>, {HIDDEN}</dd>" in html.unescape(
        alice.get(f"/mail/{copy.id}").text
    )


def test_encrypted_sent_copy_holds_the_bcc_inside_only_for_the_sender(
    alice: Webmail, runtime: Runtime
) -> None:
    """All recipients hosted: PGP/MIME everywhere; the Sent copy is its own ciphertext
    (to the sender's key alone), the Bcc inside it, not in its clear outer header."""
    sent = alice.compose(
        **{
            "from": ALICE,
            "to": ALICE,
            "bcc": BOB,
            "subject": "Geheim",
            "text": SECRET_TEXT,
            "encrypt": "yes",
        }
    )
    assert sent.status_code == 303, sent.text
    (copy,) = rows(runtime, ALICE, SENT)
    assert copy.encrypted and SECRET_TEXT.encode() not in copy.raw
    assert BOB.encode() not in copy.raw  # not in the clear outer header
    inner = decrypt_as(runtime, ALICE, copy.raw)
    assert f"Bcc: {BOB}".encode() in inner
    (to_bob,) = rows(runtime, BOB)
    assert b"Bcc" not in decrypt_as(runtime, BOB, to_bob.raw)
    (to_alice,) = rows(runtime, ALICE)
    assert BOB.encode() not in decrypt_as(runtime, ALICE, to_alice.raw)
    page = html.unescape(alice.get(f"/mail/{copy.id}").text)
    assert SECRET_TEXT in page and f"<dt>Bcc</dt><dd>{BOB}</dd>" in page


def test_sealed_sent_copy_holds_the_bcc_the_secure_page_does_not(
    alice: Webmail, runtime: Runtime
) -> None:
    sent = alice.compose(
        **{
            "from": ALICE,
            "to": CAROL,
            "bcc": HIDDEN,
            "subject": "Geheim",
            "text": SECRET_TEXT,
            "encrypt": "yes",
            "password": PASSWORD,
        }
    )
    assert sent.status_code == 303, sent.text
    (copy,) = rows(runtime, ALICE, SENT)
    assert HIDDEN.encode() not in copy.raw and SECRET_TEXT.encode() not in copy.raw
    items = {item.rcpt_to: item for item in queued(runtime)}
    opened = open_with(runtime, token_of(items[CAROL].raw), PASSWORD)
    assert opened is not None and HIDDEN.encode() not in opened
    page = f"/mail/{copy.id}"
    assert alice.post(f"{page}/unlock", {"password": PASSWORD}, page).status_code == 303
    shown = html.unescape(alice.get(page).text)
    assert SECRET_TEXT in shown and f"<dt>Bcc</dt><dd>{HIDDEN}</dd>" in shown
