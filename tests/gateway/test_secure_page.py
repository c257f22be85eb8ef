"""Secure-page delivery over real SMTP: external recipients without a key get a link.

What is shown: the message is sealed once for all such recipients under the one
password; each gets their own link in a notification queued for the relay; the
notification carries no body; a generated password reaches the sender only, in
the delivery report, which is encrypted to the sender's key; the sender's Sent
copy is sealed under the same password; the report lists how each recipient was
handled; Bcc stays out of the sealed message.
"""

from __future__ import annotations

import base64
import email
import email.policy
import re
import smtplib
import ssl
from email.message import EmailMessage

import pytest
import sqlalchemy as sa

from gateway import db, queue, rawheaders
from gateway.models import MailboxMessage, QueueItem, SecureLink, SecureMessage
from gateway.pipeline import pgpmime
from gateway.runtime import Runtime
from gateway.securepage import crypto, links, sent_copy
from gateway.securepage import store as pages
from gateway.smtp_server import SubmissionServer
from gateway.timeutil import utcnow
from keystore import store as keystore

ALICE, BOB = "alice@example.test", "bob@example.test"
CAROL, DAN = "carol@elsewhere.example", "dan@elsewhere.example"
PASSWORD = "correct horse battery"
MARKER = "Okapi-5d1e-Narwhal"
LINK_RE = re.compile(r"https?://[^\s<>\"]+/s/([A-Za-z0-9_-]{43})")


def message_with_attachment(
    *, to: str = CAROL, subject: str = "[encrypt] Vertrag", password: str | None = PASSWORD
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Alice Example <{ALICE}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = "<secure-1@example.test>"
    if password is not None:
        msg["X-Sealgate-Password"] = password
    msg.set_content(f"Hello Carol, the contract: {MARKER}\n")
    msg.add_attachment(
        b"%PDF-1.4\n" + bytes(range(256)) * 8,
        maintype="application",
        subtype="pdf",
        filename="vertrag.pdf",
    )
    return msg


def send(
    server: SubmissionServer,
    ctx: ssl.SSLContext,
    password: str,
    raw: bytes,
    rcpts: list[str],
    sender: str = ALICE,
) -> str:
    with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=ctx, timeout=60) as client:
        client.login(sender, password)
        client.mail(sender, ["SMTPUTF8", "BODY=8BITMIME"])
        for rcpt in rcpts:
            assert client.rcpt(rcpt)[0] == 250
        code, reply = client.data(raw)
        assert code == 250, reply
        return reply.decode().rsplit(" ", 1)[1]


def queued(runtime: Runtime) -> list[QueueItem]:
    """Mail waiting for the relay, as the relay will send it (see `as_relayed`)."""
    with db.read_only(runtime.sessions) as session:
        items = list(session.scalars(sa.select(QueueItem).order_by(QueueItem.id)))
    return as_relayed(runtime, items)


def as_relayed(runtime: Runtime, items: list[QueueItem]) -> list[QueueItem]:
    """The rows with `raw` opened where it is sealed at rest (the objects are detached
    copies: nothing stored changes). `sealed` still tells which were sealed."""
    ring = runtime.ring.get()
    for item in items:
        item.raw = queue.open_raw(ring, item)
    return items


def folder(runtime: Runtime, address: str, name: str = "INBOX") -> list[MailboxMessage]:
    with db.read_only(runtime.sessions) as session:
        return list(
            session.scalars(
                sa.select(MailboxMessage)
                .join(MailboxMessage.address)
                .where(sa.text("addresses.address = :a"), MailboxMessage.folder == name)
                .params(a=address)
                .order_by(MailboxMessage.id)
            )
        )


def token_of(raw: bytes) -> str:
    match = LINK_RE.search(raw.decode("utf-8", "replace"))
    assert match, "no secure-page link in the notification"
    return match.group(1)


def decrypt_as(runtime: Runtime, address: str, raw: bytes) -> bytes:
    payload = pgpmime.encrypted_payload(raw)
    assert payload is not None
    with db.read_only(runtime.sessions) as session:
        return keystore.decrypt_for(session, runtime.ring.get(), address, payload).data


def open_sent_copy(runtime: Runtime, row: MailboxMessage, password: str) -> bytes:
    """What the webmail does with the password the sender types for a sealed Sent copy."""
    blob = sent_copy.blob_of(row.raw)
    assert blob is not None
    binding = sent_copy.binding(row.queue_id, ALICE)
    params = crypto.copy_params(blob)
    kek = crypto.password_key(password, runtime.settings.securepage, params)
    return crypto.open_copy(crypto.unwrap_copy(kek, blob, binding=binding), blob, binding=binding)


def open_with(runtime: Runtime, token: str, password: str) -> bytes | None:
    """What the portal does: count a try, run Argon2, open the ciphertext."""
    page = runtime.settings.securepage
    with db.transaction(runtime.sessions) as session:
        attempt = pages.reserve_attempt(session, token, utcnow(), page)
    if attempt is None:
        return None
    key = pages.try_password(attempt, password, page)
    with db.transaction(runtime.sessions) as session:
        if key is None:
            pages.record_failure(session, attempt, utcnow(), runtime.settings)
            return None
        pages.record_success(session, attempt, utcnow())
        link = session.get(SecureLink, attempt.link_id)
        assert link is not None
        return pages.open_message(link, key)


def report_text(runtime: Runtime) -> str:
    reports = [m for m in folder(runtime, ALICE) if m.envelope_from == ""]
    assert len(reports) == 1, reports
    inner = decrypt_as(runtime, ALICE, reports[0].raw)
    parsed = email.message_from_bytes(inner, policy=email.policy.default)
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def test_external_recipient_without_key_gets_a_link_and_nothing_in_clear(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    raw = message_with_attachment().as_bytes(policy=email.policy.SMTP)
    queue_id = send(submission_server, client_ssl_context, mail_users[ALICE], raw, [CAROL])

    (notification,) = queued(runtime)
    assert notification.rcpt_to == CAROL and notification.mail_from == ALICE
    with db.read_only(runtime.sessions) as session:
        (stored,) = session.scalars(sa.select(QueueItem))
        assert stored.sealed and b"/s/" not in stored.raw and b"Subject:" not in stored.raw
    assert MARKER.encode() not in notification.raw and b"%PDF" not in notification.raw
    assert PASSWORD.encode() not in notification.raw
    parsed = email.message_from_bytes(notification.raw, policy=email.policy.default)
    assert parsed["To"] == CAROL
    assert parsed["From"] == f"Alice Example <{ALICE}>"
    assert parsed["Subject"] == "Alice Example sent you an encrypted message"  # subject hidden
    assert "Vertrag" not in notification.raw.decode()
    token = token_of(notification.raw)
    found = LINK_RE.search(notification.raw.decode())
    assert found is not None
    assert found.group(0).startswith(runtime.settings.portal.base_url + "/s/")

    with db.read_only(runtime.sessions) as session:
        (message,) = session.scalars(sa.select(SecureMessage)).all()
        (link,) = message.links
        assert message.queue_id == queue_id and link.recipient == CAROL
        assert link.token_digest == links.digest(token)  # only the digest is stored
        assert message.ciphertext is not None and MARKER.encode() not in message.ciphertext
        lifetime = link.expires_at - message.created_at
        assert lifetime.days == runtime.settings.securepage.valid_days
        assert (message.kdf_time_cost, message.kdf_memory_cost) == (1, 256)  # test settings

    content = open_with(runtime, token, PASSWORD)
    assert content is not None
    opened = email.message_from_bytes(content, policy=email.policy.default)
    assert opened["Subject"] == "Vertrag"  # the tag is gone, the subject is inside
    assert opened["Message-ID"] == "<secure-1@example.test>"
    assert MARKER in content.decode()
    assert rawheaders.get(content, "X-Sealgate-Password") is None
    assert open_with(runtime, token, "wrong password") is None

    # The Sent copy is sealed under the same password, not encrypted to Alice's key;
    # it holds the whole message, Bcc and all. One recipient kind: no report.
    (sent,) = folder(runtime, ALICE, "Sent")
    assert sent.encrypted and pgpmime.encrypted_payload(sent.raw) is None
    pdf_base64 = base64.b64encode(b"%PDF-1.4\n")[:8]
    assert MARKER.encode() not in sent.raw and pdf_base64 not in sent.raw
    assert rawheaders.get(sent.raw, "Subject") == "Vertrag"  # in clear, as on every Sent copy
    copy = open_sent_copy(runtime, sent, PASSWORD)
    assert MARKER in copy.decode() and pdf_base64 in copy
    with pytest.raises(crypto.SealError):
        open_sent_copy(runtime, sent, "wrong password")
    assert folder(runtime, ALICE) == []


def test_generated_password_reaches_only_the_sender_in_an_encrypted_report(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    raw = message_with_attachment(to=f"{BOB}, {CAROL}", password=None).as_bytes(
        policy=email.policy.SMTP
    )
    send(submission_server, client_ssl_context, mail_users[ALICE], raw, [BOB, CAROL])

    (report,) = [m for m in folder(runtime, ALICE) if m.envelope_from == ""]
    assert report.encrypted
    text = report_text(runtime)
    match = re.search(r"^    ([A-Za-z0-9]{16})\r?$", text, re.MULTILINE)
    assert match, text
    generated = match.group(1)
    assert generated.encode() not in report.raw  # at rest only inside the encryption
    with db.read_only(runtime.sessions) as session:
        bob_fpr = keystore.current_key(session, BOB).fingerprint  # type: ignore[union-attr]
    grouped = " ".join(bob_fpr[i : i + 4] for i in range(0, len(bob_fpr), 4))
    assert f"- {BOB}: encrypted to their key {grouped}, hosted here" in text
    assert f"- {CAROL}: secure page (a link and your password), open until " in text

    # The password is nowhere else: not in the notification, Bob's copy or any row.
    (notification,) = queued(runtime)
    assert generated.encode() not in notification.raw
    for row in folder(runtime, BOB) + folder(runtime, ALICE, "Sent"):
        assert generated.encode() not in row.raw
    assert open_with(runtime, token_of(notification.raw), generated) is not None


def test_one_password_one_ciphertext_own_links_and_bcc_stays_out(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    msg = message_with_attachment(to=CAROL)
    msg["Bcc"] = DAN
    raw = msg.as_bytes(policy=email.policy.SMTP)
    send(submission_server, client_ssl_context, mail_users[ALICE], raw, [CAROL, DAN])

    notes = {item.rcpt_to: item.raw for item in queued(runtime)}
    assert set(notes) == {CAROL, DAN}
    assert DAN.encode() not in notes[CAROL]  # Carol's notice does not name the Bcc
    assert CAROL.encode() not in rawheaders.split_message(notes[DAN])[0]
    tokens = {rcpt: token_of(raw) for rcpt, raw in notes.items()}
    assert tokens[CAROL] != tokens[DAN]
    with db.read_only(runtime.sessions) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(SecureMessage)) == 1
    for token in tokens.values():
        content = open_with(runtime, token, PASSWORD)
        assert content is not None and MARKER.encode() in content
        assert rawheaders.get(content, "Bcc") is None and DAN.encode() not in content


@pytest.mark.parametrize(
    ("password", "code_text"), [("short", b"at least 8"), ("x" * 1025, b"longer than 1024")]
)
def test_unusable_password_is_refused_and_nothing_is_kept(
    password: str,
    code_text: bytes,
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    raw = message_with_attachment(password=password).as_bytes(policy=email.policy.SMTP)
    with smtplib.SMTP_SSL(
        "127.0.0.1", submission_server.tls_port, context=client_ssl_context, timeout=60
    ) as client:
        client.login(ALICE, mail_users[ALICE])
        with pytest.raises(smtplib.SMTPDataError) as err:
            client.sendmail(ALICE, [CAROL], raw)
    assert err.value.smtp_code == 550 and code_text in err.value.smtp_error
    assert password.encode() not in err.value.smtp_error
    assert queued(runtime) == []
    assert folder(runtime, ALICE, "Sent") == []
    with db.read_only(runtime.sessions) as session:
        assert session.scalars(sa.select(SecureMessage)).all() == []


def test_wrapped_key_does_not_open_with_tampered_parameters(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    raw = message_with_attachment().as_bytes(policy=email.policy.SMTP)
    send(submission_server, client_ssl_context, mail_users[ALICE], raw, [CAROL])
    token = token_of(queued(runtime)[0].raw)
    with db.transaction(runtime.sessions) as session:
        message = session.scalars(sa.select(SecureMessage)).one()
        message.kdf_time_cost = 2  # an attacker lowering (or raising) the stored cost
    assert open_with(runtime, token, PASSWORD) is None
    with db.transaction(runtime.sessions) as session:
        message = session.scalars(sa.select(SecureMessage)).one()
        message.kdf_time_cost = 1
        message.kdf_memory_cost = 64 * 1024 * 1024  # 64 GiB: refused unread, not computed
    assert open_with(runtime, token, PASSWORD) is None
    params = crypto.KdfParams(1, 64 * 1024 * 1024, 1, b"\0" * 16)
    with pytest.raises(crypto.SealError):
        crypto.derive_kek(PASSWORD, params, max_concurrent=1)
