"""Building webmail messages: what the form gives can add no header, and Bcc stays out.

Threats covered: a subject or reply reference with CR/LF (or an encoded-word
that would unfold into one, CVE-2024-6923) adding a header or a body; a Bcc
header reaching a copy the other recipients see; an attachment name walking a
path. And the plain Sent copy: the pipeline files it in the message's own
transaction, exactly the bytes the recipients got.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import threading
from email.message import EmailMessage
from typing import Any

import pytest
import sqlalchemy as sa

from gateway import compose, db, pipeline
from gateway.compose import ComposeError, Outgoing, Upload
from gateway.models import Address, MailboxMessage
from gateway.pipeline.errors import RejectMessage
from gateway.runtime import Runtime

NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
ALICE, BOB = "alice@example.test", "bob@example.test"


def parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_form_text_cannot_add_a_header() -> None:
    raw = compose.build(
        Outgoing(
            sender=ALICE,
            to=[BOB],
            subject="Hallo\r\nBcc: eve@evil.example\r\n\r\nbody",
            text="Text",
            in_reply_to="<a@b>\r\nX-Evil: 1",
            references="<ok@example.test> not-an-id <x@y>\nX-Evil: 2",
        ),
        now=NOW,
    )
    message = parsed(raw)
    assert message["Subject"] == "Hallo Bcc: eve@evil.example body"
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert message["In-Reply-To"] is None  # not a message id: left out
    assert message["References"] == "<ok@example.test> <x@y>"
    assert raw.count(b"\r\n\r\n") >= 1 and b"\r\nX-Evil" not in raw


def test_bcc_only_in_a_draft_and_the_lock_as_the_control_header() -> None:
    outgoing = Outgoing(sender=ALICE, to=[BOB], bcc=["eve@elsewhere.example"], encrypt=True)
    sent = parsed(compose.build(outgoing, now=NOW))
    draft = parsed(compose.build(outgoing, now=NOW, include_bcc=True))
    assert sent["Bcc"] is None and draft["Bcc"] == "eve@elsewhere.example"
    assert sent["X-Sealgate-Encrypt"] == "yes"
    assert sent["Message-ID"].endswith("@example.test>")
    assert outgoing.recipients == [BOB, "eve@elsewhere.example"]


def test_non_ascii_addresses_are_written_as_utf8_not_encoded_words() -> None:
    raw = compose.build(
        Outgoing(sender=ALICE, to=["jörg@bücher.example"], subject="Grüße", text="Schön"),
        now=NOW,
    )
    assert "To: jörg@bücher.example".encode() in raw
    assert b"=?utf-8?" not in raw.split(b"\r\n\r\n", 1)[0].split(b"Subject")[0]
    body = parsed(raw).get_body(preferencelist=("plain",))
    assert body is not None and body.get_content().strip() == "Schön"
    assert body["Content-Transfer-Encoding"] == "quoted-printable"


def test_attachment_names_lose_their_path() -> None:
    raw = compose.build(
        Outgoing(
            sender=ALICE,
            to=[BOB],
            attachments=[
                Upload("../../etc/passwd", "text/plain", b"x"),
                Upload("", "bad type", b"y"),
            ],
        ),
        now=NOW,
    )
    first, second = parsed(raw).iter_attachments()
    assert first.get_filename() == "passwd"
    assert second.get_filename() == "attachment-1.bin"
    assert second.get_content_type() == "application/octet-stream"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a@example.test, B <b@example.test>; c@example.test\nd@example.test", 4),
        ("", 0),
        (" , ;", 0),
    ],
)
def test_parse_addresses(text: str, expected: int) -> None:
    assert len(compose.parse_addresses(text)) == expected


def test_parse_addresses_names_the_bad_entry() -> None:
    with pytest.raises(ComposeError) as refused:
        compose.parse_addresses("ok@example.test, Eve <not an address>")
    assert refused.value.params == {"address": "Eve <not an address>"}


def test_plain_send_files_the_sent_copy_in_the_same_transaction(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    with db.read_only(runtime.sessions) as session:
        account_id = session.scalar(sa.select(Address.account_id).where(Address.address == ALICE))
    assert account_id is not None
    queue_id = compose.send(
        runtime,
        account_id,
        Outgoing(sender=ALICE, to=[BOB], subject="Plain", text="Hallo"),
        password=None,
        client_ip="198.51.100.7",
        now=NOW,
    )
    with db.read_only(runtime.sessions) as session:
        copies = session.execute(
            sa.select(Address.address, MailboxMessage.folder, MailboxMessage.raw)
            .join(Address, MailboxMessage.address_id == Address.id)
            .where(MailboxMessage.queue_id == queue_id)
            .order_by(MailboxMessage.id)
        ).all()
    assert [(c.address, c.folder) for c in copies] == [(BOB, "INBOX"), (ALICE, "Sent")]
    assert copies[0].raw == copies[1].raw
    assert copies[0].raw.startswith(b"Received: from webmail ([198.51.100.7])\r\n")
    assert f"with HTTPS id {queue_id}".encode() in copies[0].raw

    # Another account's address as From is refused before anything is built.
    with pytest.raises(ComposeError, match="You cannot send from"):
        compose.send(
            runtime,
            account_id,
            Outgoing(sender=BOB, to=[ALICE]),
            password=None,
            client_ip="198.51.100.7",
            now=NOW,
        )


@pytest.mark.parametrize(
    ("claimed", "sent_as"),
    [
        ("application/pdf", ("application", "pdf")),
        ("Image/PNG", ("image", "png")),
        ("multipart/mixed", ("application", "octet-stream")),
        ("message/rfc822", ("application", "octet-stream")),
        ("text/plain; charset=x", ("application", "octet-stream")),
        ("text/pla in", ("application", "octet-stream")),
        ("téxt/plain", ("application", "octet-stream")),
        ("text/", ("application", "octet-stream")),
    ],
)
def test_an_upload_is_sent_as_its_claimed_type_only_when_plain(
    claimed: str, sent_as: tuple[str, str]
) -> None:
    assert compose.attachment_type(claimed) == sent_as


def test_a_long_attachment_name_keeps_its_extension_and_one_line() -> None:
    raw = compose.build(
        Outgoing(
            sender=ALICE,
            to=[BOB],
            attachments=[
                Upload("a" * 400 + ".pdf", "application/pdf", b"x"),
                Upload("line\u2028sep\u2029ara\x85tor.txt", "text/plain", b"y"),
            ],
        ),
        now=NOW,
    )
    first, second = parsed(raw).iter_attachments()
    name = first.get_filename()
    assert name is not None and name.endswith(".pdf") and len(name) == 150
    assert second.get_filename() == "lineseparator.txt"


def test_two_sends_of_one_form_racing_each_other_send_once(
    runtime: Runtime, mail_users: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both posts pass the early look at the Sent folder before either commits: the
    check inside the transaction lets one through and refuses the other whole."""
    with db.read_only(runtime.sessions) as session:
        account_id = session.scalar(sa.select(Address.account_id).where(Address.address == ALICE))
    assert account_id is not None
    both_checked = threading.Barrier(2, timeout=30)
    real_build = compose.build

    def build_after_both_checked(*args: Any, **kwargs: Any) -> bytes:
        both_checked.wait()
        return real_build(*args, **kwargs)

    monkeypatch.setattr(compose, "build", build_after_both_checked)
    token = compose.new_send_token()
    outcomes: list[str] = []

    def send() -> None:
        try:
            outcomes.append(
                compose.send(
                    runtime,
                    account_id,
                    Outgoing(sender=ALICE, to=[BOB], subject="Einmal", send_token=token),
                    password=None,
                    client_ip="198.51.100.7",
                    now=NOW,
                )
            )
        except compose.AlreadySent:
            outcomes.append("already sent")

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(o == "already sent" for o in outcomes) == [False, True]
    with db.read_only(runtime.sessions) as session:
        stored = session.execute(
            sa.select(Address.address, MailboxMessage.folder, MailboxMessage.message_id).join(
                Address, MailboxMessage.address_id == Address.id
            )
        ).all()
    assert sorted((s.address, s.folder) for s in stored) == [(ALICE, "Sent"), (BOB, "INBOX")]
    assert {s.message_id for s in stored} == {f"<{token}@example.test>"}


def test_with_the_lock_a_missing_encrypted_sent_copy_is_no_clear_one(
    runtime: Runtime, mail_users: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the pipeline ever leave an encrypted message without its Sent copy, the
    webmail's fallback (a plain Sent copy) must not file the text in clear."""
    real = pipeline.encrypt_copies

    def without_sent_copy(*args: Any, **kwargs: Any) -> None:
        real(*args, **{**kwargs, "sent_copy": False})

    monkeypatch.setattr(pipeline, "encrypt_copies", without_sent_copy)
    with db.read_only(runtime.sessions) as session:
        account_id = session.scalar(sa.select(Address.account_id).where(Address.address == ALICE))
    assert account_id is not None
    with pytest.raises(RejectMessage):
        compose.send(
            runtime,
            account_id,
            Outgoing(sender=ALICE, to=[BOB], subject="Geheim", text="Tresor 4711", encrypt=True),
            password=None,
            client_ip="198.51.100.7",
            now=NOW,
        )
    with db.read_only(runtime.sessions) as session:
        assert session.scalars(sa.select(MailboxMessage)).all() == []
