"""The delivery report: how each recipient was handled, in the sender's language.

A message to a hosted recipient, to an external recipient whose key an admin
imported, and to one without a key goes out three ways; the sender finds one
report in the INBOX (encrypted to their key) that names each recipient, the
key's fingerprint and where it came from, and the secure page's expiry. The
answer to a secure-page reply goes back through a secure page again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import db
from gateway.models import Account, MailboxMessage
from gateway.pipeline import ClientInfo, Sender, Submission, submit
from gateway.pipeline.context import Handling
from gateway.pipeline.external_keys import parse_budget
from gateway.pipeline.report import format_fingerprint, needs_report
from gateway.pipeline.secure_page import SecurePageResult
from gateway.runtime import Runtime
from keystore import directory, untrusted
from keystore import store as keystore
from tests.gateway.test_secure_page import decrypt_as, folder, queued, token_of
from tests.gnupg import GnuPG
from tests.keystore.conftest import audit_sink
from tests.keystore.gpgkeys import export, make_key

ALICE, BOB = "alice@example.test", "bob@example.test"
CAROL, DAN = "carol@partner.example", "dan@elsewhere.example"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _now() -> None:
    """Each test's "now" is taken when it starts: keys the test makes with GnuPG are
    created then, and a clock fixed at import (minutes earlier in a loaded suite) would
    see them as made in the future."""
    global NOW
    NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
def partner(tmp_path: Path) -> GnuPG:
    home = tmp_path / "partner"
    home.mkdir(mode=0o700)
    return GnuPG(home)


@pytest.fixture
def no_wkd(runtime: Runtime) -> Runtime:
    return dataclasses.replace(runtime, settings=runtime.settings.replace(keys={"wkd": False}))


def set_language(runtime: Runtime, language: str) -> int:
    with db.transaction(runtime.sessions) as session:
        account = session.scalar(sa.select(Account).where(Account.email == ALICE))
        assert account is not None
        account.language = language
        return account.id


def run(runtime: Runtime, account_id: int, raw: bytes, rcpts: list[str]) -> Submission:
    submission = Submission(
        sender=Sender(account_id, ALICE),
        envelope_from=ALICE,
        recipients=rcpts,
        raw=raw,
        client=ClientInfo("test", "127.0.0.1", "ESMTPSA"),
        received_at=NOW,
    )
    submit(runtime, submission)
    return submission


def report_of(runtime: Runtime) -> tuple[MailboxMessage, email.message.EmailMessage]:
    (report,) = [m for m in folder(runtime, ALICE) if m.envelope_from == ""]
    inner = email.message_from_bytes(
        decrypt_as(runtime, ALICE, report.raw), policy=email.policy.default
    )
    assert isinstance(inner, email.message.EmailMessage)
    return report, inner


def text_of(message: email.message.EmailMessage, kind: str = "plain") -> str:
    body = message.get_body(preferencelist=(kind,))
    assert body is not None
    return str(body.get_content())


def test_three_ways_in_one_report_in_german(
    no_wkd: Runtime, mail_users: dict[str, str], partner: GnuPG
) -> None:
    carol = make_key(partner, f"Carol <{CAROL}>")
    # The sandboxed parse's wall-clock limit is for outside data; under a loaded CI
    # machine the import itself is not what this test is about.
    budget = dataclasses.replace(parse_budget(no_wkd.settings.keys), timeout=120.0)
    vetting = untrusted.vet_keys(export(partner, carol), NOW, budget)
    assert len(vetting.accepted) == 1, vetting
    with db.transaction(no_wkd.sessions) as session:
        directory.save(session, vetting.accepted[0], "import", NOW, events=audit_sink)
    account_id = set_language(no_wkd, "de")
    raw = (
        f"From: Alice <{ALICE}>\r\nTo: {BOB}, {CAROL}, {DAN}\r\nSubject: Drei Wege\r\n"
        "X-Sealgate-Encrypt: yes\r\nX-Sealgate-Password: ein langes Passwort\r\n\r\nHallo\r\n"
    ).encode()
    submission = run(no_wkd, account_id, raw, [BOB, CAROL, DAN])
    assert [(h.recipient, h.method, h.key_source) for h in submission.handling] == [
        (BOB, "pgp", "hosted"),
        (CAROL, "pgp", "import"),
        (DAN, "secure-page", ""),
    ]

    report, inner = report_of(no_wkd)
    assert report.encrypted and report.subject == "Zustellbericht: Drei Wege"
    with db.read_only(no_wkd.sessions) as session:
        bob_key = keystore.current_key(session, BOB)
    assert bob_key is not None
    text = text_of(inner)
    bob_fpr, carol_fpr = format_fingerprint(bob_key.fingerprint), format_fingerprint(carol)
    assert f"- {BOB}: verschlüsselt mit dem Schlüssel {bob_fpr}, hier gehostet" in text
    assert f"- {CAROL}: verschlüsselt mit dem Schlüssel {carol_fpr}, von der Administration" in text
    expires = (NOW + dt.timedelta(days=30)).strftime("%d.%m.%Y, %H:%M UTC")
    assert f"- {DAN}: sichere Seite (Link und Ihr Passwort), erreichbar bis {expires}" in text
    assert "ein langes Passwort" not in text and "erzeugt" not in text  # the sender chose it
    html = text_of(inner, "html")
    assert '<html lang="de">' in html and carol_fpr in html

    # The notification to Dan speaks the sender's language too.
    (notice,) = [q for q in queued(no_wkd) if q.rcpt_to == DAN]
    parsed = email.message_from_bytes(notice.raw, policy=email.policy.default)
    assert parsed["Subject"] == "Alice hat Ihnen eine verschlüsselte Nachricht gesendet"


def test_generated_password_report_in_french(no_wkd: Runtime, mail_users: dict[str, str]) -> None:
    account_id = set_language(no_wkd, "fr")
    raw = f"From: {ALICE}\r\nTo: {DAN}\r\nSubject: [encrypt] Bonjour\r\n\r\nsalut\r\n".encode()
    run(no_wkd, account_id, raw, [DAN])
    report, inner = report_of(no_wkd)
    assert report.subject == "Rapport de distribution : Bonjour"
    text = text_of(inner)
    assert "celui-ci a donc été créé pour le message" in text
    assert f"- {DAN} : page sécurisée" in text


def test_the_answer_to_a_secure_reply_goes_back_through_a_secure_page(
    no_wkd: Runtime, mail_users: dict[str, str]
) -> None:
    """The sender answers the recipient's reply with encryption on: a new link, no clear text."""
    account_id = set_language(no_wkd, "en")
    answer = (
        f"From: {ALICE}\r\nTo: {DAN}\r\nSubject: [encrypt] Re: Re: Vertrag\r\n"
        "In-Reply-To: <reply-from-dan@example.test>\r\n"
        "X-Sealgate-Password: the password typed again\r\n\r\nThanks, the signed copy arrived.\r\n"
    ).encode()
    run(no_wkd, account_id, answer, [DAN])
    (notice,) = queued(no_wkd)
    assert notice.rcpt_to == DAN and b"signed copy" not in notice.raw
    assert token_of(notice.raw)
    assert folder(no_wkd, ALICE) == []  # one way only, password given: no report


@pytest.mark.parametrize(
    ("methods", "generated", "expected"),
    [
        (["pgp", "pgp"], False, False),
        (["secure-page", "secure-page"], False, False),
        (["secure-page"], True, True),
        (["pgp", "secure-page"], False, True),
        (["plain", "passthrough"], False, True),
    ],
)
def test_when_a_report_is_made(methods: list[str], generated: bool, expected: bool) -> None:
    handling = [Handling(f"r{i}@x.example", m) for i, m in enumerate(methods)]  # type: ignore[arg-type]
    secure = SecurePageResult(("r0@x.example",), NOW, "x" * 16 if generated else None)
    assert needs_report(handling, secure if "secure-page" in methods else None) is expected
