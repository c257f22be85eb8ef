"""Threat: a hosted user sends mail whose `From:` header names somebody else.

The shape that once broke it: `MAIL FROM:<alice@…>` (checked, hers) with
`From: ceo@bank.example` in the header (never checked), so any user could send
as anyone; the reference's own spoofing guide is about exactly this. Variants
tried here, each over real SMTP under TLS: a foreign From, a colleague's
address, a foreign address hidden in the display name (plain, as an encoded
word, with a full-width at sign), in a comment, or as an encoded word standing
for the address itself; several From mailboxes without Sender; a foreign
Sender; repeated From or Sender fields; group syntax; no From at all. Every
refusal is `553 5.7.1` with a text naming the problem, and nothing is stored or
queued; one's own address and aliases (any case, any display name) get `250`.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import ssl

import pytest
import sqlalchemy as sa

from gateway import accounts, db
from gateway.models import Account, MailboxMessage, QueueItem
from gateway.pipeline.context import ClientInfo, Sender, Submission
from gateway.pipeline.errors import RejectMessage
from gateway.pipeline.header_sender import check_header_sender
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from gateway.timeutil import utcnow

ALICE, BOB = "alice@example.test", "bob@example.test"
ALIAS = "alice.alias@example.test"
CAROL = "carol@elsewhere.example"
CEO = "ceo@bank.example"


@pytest.fixture
def alias(runtime: Runtime, mail_users: dict[str, str]) -> str:
    """A second address of Alice's account (its own SMTP password, as every address has)."""
    with db.transaction(runtime.sessions) as session:
        account = session.scalars(sa.select(Account).where(Account.email == ALICE)).one()
        accounts.add_address(session, runtime.hasher, ALIAS, account, "alias-smtp-pw", actor="t")
    return ALIAS


def _send(
    server: SubmissionServer, ctx: ssl.SSLContext, password: str, header: str
) -> tuple[int, bytes]:
    """Log in as Alice (MAIL FROM hers, always) and send `header` + a body to Bob and Carol."""
    raw = f"{header}To: {BOB}\r\nSubject: who am I\r\n\r\nbody\r\n".encode()
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as client:
        client.starttls(context=ctx)
        client.login(ALICE, password)
        client.mail(ALICE, ["SMTPUTF8", "BODY=8BITMIME"])
        assert client.rcpt(BOB)[0] == 250
        assert client.rcpt(CAROL)[0] == 250
        try:
            code, reply = client.data(raw)
        except smtplib.SMTPDataError as refused:
            return refused.smtp_code, refused.smtp_error
        return code, reply


def _kept(runtime: Runtime) -> int:
    with db.read_only(runtime.sessions) as session:
        stored = session.scalar(sa.select(sa.func.count()).select_from(MailboxMessage))
        queued = session.scalar(sa.select(sa.func.count()).select_from(QueueItem))
    return (stored or 0) + (queued or 0)


REFUSED = [
    pytest.param(f"From: {CEO}\r\n", CEO, id="foreign"),
    pytest.param(f"From: Bob <{BOB}>\r\n", BOB, id="colleague-same-domain"),
    pytest.param(f'From: "{CEO}" <{ALICE}>\r\n', CEO, id="address-in-display-name"),
    pytest.param(f"From: {CEO} <{ALICE}>\r\n", CEO, id="unquoted-address-before-angle"),
    pytest.param(f"From: =?utf-8?q?ceo=40bank=2Eexample?= <{ALICE}>\r\n", CEO, id="encoded-name"),
    pytest.param(
        f"From: =?utf-8?b?Y2VvQGJhbmsuZXhhbXBsZQ==?= <{ALICE}>\r\n", CEO, id="base64-name"
    ),
    pytest.param(f"From: ceo\uff20bank.example <{ALICE}>\r\n", "ceo", id="fullwidth-at"),
    pytest.param(f"From: {ALICE} ({CEO})\r\n", CEO, id="comment"),
    pytest.param("From: =?utf-8?q?ceo=40bank.example?=\r\n", "no address", id="encoded-addr"),
    pytest.param("From: <=?utf-8?q?x?=@example.test>\r\n", "example.test", id="encoded-local"),
    pytest.param("From: <<<\r\n", "no address", id="unreadable"),
    pytest.param("From: \r\n", "no address", id="empty"),
    pytest.param("From: Undisclosed:;\r\n", "no address", id="empty-group"),
    pytest.param(f"From: {ALICE}, {CEO}\r\nSender: {ALICE}\r\n", CEO, id="second-mailbox"),
    pytest.param(f"From: {ALICE}, {ALIAS}\r\n", "Sender", id="several-without-sender"),
    pytest.param(f"From: Team: {ALICE}, {CEO};\r\nSender: {ALICE}\r\n", CEO, id="group-member"),
    pytest.param(f"From: {ALICE}\r\nSender: {CEO}\r\n", CEO, id="foreign-sender"),
    pytest.param(f"From: {ALICE}\r\nSender: {ALICE}, {ALIAS}\r\n", "exactly one", id="2-senders"),
    pytest.param(f"From: {ALICE}\r\nFrom: {CEO}\r\n", "2 From", id="repeated-from"),
    pytest.param(f"From: {ALICE}\r\nFrom: {ALICE}\r\n", "2 From", id="repeated-own-from"),
    pytest.param(f"From: {ALICE}\r\nSender: {ALICE}\r\nsender: {CEO}\r\n", "2 Sender", id="2xS"),
    pytest.param(f"From: {ALICE}\r\n  ,{CEO}\r\nSender: {ALICE}\r\n", CEO, id="folded-second"),
    pytest.param(f"fRoM : {CEO}\r\n", CEO, id="odd-case-and-space"),
    # The parser recurses per comment level: a refusal, not a 451 and a traceback.
    pytest.param(
        f"From: {ALICE}\r\n " + "\r\n ".join(["(" * 300] * 3 + [")" * 300] * 3) + "\r\n",
        "no address",
        id="deep-comments",
    ),
]


@pytest.mark.parametrize(("header", "named"), REFUSED)
def test_foreign_or_malformed_from_is_refused_with_553_5_7_1(
    header: str,
    named: str,
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    alias: str,
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    code, reply = _send(submission_server, client_ssl_context, mail_users[ALICE], header)
    assert code == 553, reply
    assert reply.startswith(b"5.7.1 "), reply
    assert named.encode() in reply, reply
    assert b"\r" not in reply and b"\n" not in reply
    assert _kept(runtime) == 0


ACCEPTED = [
    pytest.param(f"From: {ALICE}\r\n", ALICE, id="own"),
    pytest.param(f"From: {ALIAS}\r\n", ALIAS, id="own-alias"),
    pytest.param(f"From: Alice Example <{ALIAS}>\r\n", ALIAS, id="alias-with-name"),
    pytest.param(f"From: {ALIAS.upper()}\r\n", ALIAS.upper(), id="alias-upper-case"),
    pytest.param(f"From: =?utf-8?q?Al=C3=AFce?= <{ALICE}>\r\n", ALICE, id="encoded-name"),
    pytest.param(f'From: "Alice at {ALIAS}" <{ALICE}>\r\n', ALICE, id="own-address-in-name"),
    pytest.param(f"From: {ALICE} (at home)\r\n", ALICE, id="comment"),
    pytest.param(f"From: {ALICE}, {ALIAS}\r\nSender: {ALIAS}\r\n", ALICE, id="several+sender"),
    pytest.param(f"From: Us: {ALICE}, {ALIAS};\r\nSender: {ALICE}\r\n", ALICE, id="group"),
    pytest.param(f"Sender: {ALIAS}\r\nFrom: {ALICE}\r\n", ALICE, id="own-sender"),
    pytest.param("", ALICE, id="no-from-gets-the-envelope-sender"),
]


@pytest.mark.parametrize(("header", "shown"), ACCEPTED)
def test_own_address_or_alias_is_accepted_with_250(
    header: str,
    shown: str,
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    alias: str,
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    code, reply = _send(submission_server, client_ssl_context, mail_users[ALICE], header)
    assert code == 250, reply
    with db.read_only(runtime.sessions) as session:
        (stored,) = session.scalars(sa.select(MailboxMessage)).all()
    parsed = email.message_from_bytes(stored.raw, policy=email.policy.default)
    assert parsed.get_all("From") is not None and len(parsed.get_all("From")) == 1
    assert shown in str(parsed["From"])


def test_webmail_sends_from_an_alias_picked_from_its_list(
    runtime: Runtime, mail_users: dict[str, str], alias: str
) -> None:
    """The webmail's From comes from the account's own addresses, so the check lets it pass."""
    from tests.webportal.webmail_support import Webmail, rows, webmail_app

    app = webmail_app(runtime)
    with app.test_client() as client:
        webmail = Webmail(client).login(ALICE)
        compose = webmail.get("/compose")
        assert f'value="{ALIAS}"' in compose.text  # offered in the From list
        sent = webmail.compose(to=BOB, subject="from my alias", text="hi", **{"from": ALIAS})
        assert sent.status_code == 303, sent.text
        assert "553 5." not in sent.text
    (stored,) = rows(runtime, BOB)
    parsed = email.message_from_bytes(stored.raw, policy=email.policy.default)
    assert parsed["From"].addresses[0].addr_spec == ALIAS


def _submission(raw: bytes) -> Submission:
    return Submission(
        sender=Sender(account_id=1, address=ALICE),
        envelope_from=ALICE,
        recipients=[BOB],
        raw=raw,
        client=ClientInfo(helo="t", ip="127.0.0.1", protocol="ESMTPSA"),
        received_at=utcnow(),
    )


# Foreign addresses of several shapes: another domain, a look-alike of one's own, a
# colleague on the same domain, one's own local part elsewhere, a sub-domain.
FOREIGN = [
    CEO,
    "alice@example-test.example",
    BOB,
    "alice@evil.example",
    "alice@mail.example.test",
    "ALICE.ALIAS@example.test.evil.example",
]


def _placements(foreign: str) -> list[str]:
    at = foreign.replace("@", "=40").replace(".", "=2E")
    return [
        foreign,
        f"<{foreign}>",
        f'"{foreign}" <{ALICE}>',
        f"{foreign} <{ALICE}>",
        f"=?utf-8?q?{at}?= <{ALICE}>",
        f"=?utf-8?q?Name_{at}?= <{ALICE}>",
        f"{ALICE} ({foreign})",
        f"{ALICE}, {foreign}",
        f"G: {ALICE}, {foreign};",
        foreign.replace("@", "\uff20") + f" <{ALICE}>",
        foreign.upper(),
    ]


@pytest.mark.parametrize("foreign", FOREIGN)
def test_a_foreign_address_anywhere_in_from_or_sender_is_refused(foreign: str) -> None:
    """Invariant: wherever a foreign address sits in From or Sender, the message is refused."""
    for placement in _placements(foreign):
        for header in (
            f"From: {placement}\r\nSender: {ALICE}\r\n",
            f"From: {ALICE}\r\nSender: {placement}\r\n",
            f"From: {placement}\n\n",  # bare LF line ends
        ):
            raw = f"{header}Subject: hi\r\n\r\nbody\r\n".encode()
            with pytest.raises(RejectMessage) as refused:
                check_header_sender(_submission(raw), [ALICE, ALIAS])
            assert refused.value.status.startswith("553 5.7.1 "), (header, refused.value.status)


@pytest.mark.parametrize(
    ("owned", "shown", "mine"),
    [
        ("anna@bücher.test", "anna@xn--bcher-kva.test", True),
        ("anna@bücher.test", "Anna <ANNA@XN--BCHER-KVA.test>", True),
        ("anna@xn--bcher-kva.test", "anna@bücher.test", True),
        ("anna@bücher.test", f"anna@xn--bcher-kva.test <{ALICE}>", True),
        # Other domains, whatever IDNA 2003 maps them to: never one's own.
        ("anna@bücher.test", "anna@xn--bcher-kva.example", False),
        ("anna@bücher.test", "bob@xn--bcher-kva.test", False),
        ("anna@strasse.test", "anna@straße.test", False),
        ("anna@straße.test", "anna@strasse.test", False),
        ("anna@example.test", "anna@ex\u00adample.test", False),
        ("anna@example.test", "anna@ｅｘａｍｐｌｅ.test", False),
        ("anna@bücher.test", "anna@bu\u0308cher.test", False),
    ],
)
def test_an_idn_address_is_ones_own_in_either_form_and_no_other(
    owned: str, shown: str, mine: bool
) -> None:
    """A hosted IDN address is one address under its A-label and its U-label (a program
    without SMTPUTF8 writes the A-label); `From: anna@xn--bcher-kva.test` from the owner
    of anna@bücher.test was refused 553 as someone else's. IDNA 2003 maps other names
    (straße, a soft hyphen, full-width letters) onto one's own A-label too: those stay
    foreign, as a reader sees another domain."""
    raw = f"From: {shown}\r\nSubject: hi\r\n\r\nbody\r\n".encode()
    if mine:
        check_header_sender(_submission(raw), [owned, ALICE])
        return
    with pytest.raises(RejectMessage) as refused:
        check_header_sender(_submission(raw), [owned, ALICE])
    assert refused.value.status.startswith("553 5.7.1 ")
