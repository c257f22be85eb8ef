"""Autoresponder rules, one test each: window, weekdays, exclusions, 7-day rule, RFC 3834."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import itertools
import smtplib
import ssl
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import sqlalchemy.exc
import sqlalchemy.orm as so
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import accounts, autoresponder, db
from gateway.models import Address, Autoresponder, MailboxMessage, QueueItem
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer

BOB = "bob@example.test"
STRANGER = "someone@elsewhere.example"
# A Wednesday, 10:00 UTC.
WEDNESDAY = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def session(runtime: Runtime, mail_users: dict[str, str]) -> Iterator[so.Session]:
    with runtime.sessions() as s, s.begin():
        yield s


@pytest.fixture
def bob(session: so.Session) -> Address:
    address = accounts.find_address(session, BOB)
    assert address is not None
    return address


def away(session: so.Session, bob: Address, **fields: object) -> Autoresponder:
    values: dict[str, object] = {
        "name": "holiday",
        "subject": "Away:",
        "body": "I am on holiday until Monday.",
    }
    values.update(fields)
    responder = Autoresponder(address_id=bob.id, **values)
    session.add(responder)
    session.flush()
    autoresponder.activate(session, responder)
    return responder


def incoming(sender: str = STRANGER, **headers: str) -> bytes:
    lines = [f"From: {sender}", f"To: {BOB}", "Subject: question", "Message-ID: <q1@elsewhere>"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\nhello\r\n").encode()


def respond(
    session: so.Session,
    bob: Address,
    raw: bytes,
    sender: str = STRANGER,
    now: dt.datetime = WEDNESDAY,
) -> bool:
    return autoresponder.respond(session, bob, raw, envelope_from=sender, now=now, queue_id="Q1")


def replies(session: so.Session) -> list[QueueItem]:
    return list(session.scalars(sa.select(QueueItem).order_by(QueueItem.id)))


def test_reply_goes_out_threaded_with_empty_return_path(session: so.Session, bob: Address) -> None:
    away(session, bob)
    assert respond(session, bob, incoming())
    (reply,) = replies(session)
    assert reply.mail_from == "" and reply.rcpt_to == STRANGER
    parsed = email.message_from_bytes(reply.raw, policy=email.policy.default)
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["In-Reply-To"] == "<q1@elsewhere>"
    assert parsed["Subject"] == "Away: question"
    assert parsed["From"] == BOB and parsed["To"] == STRANGER
    assert "on holiday" in parsed.get_content()


def test_time_window(session: so.Session, bob: Address) -> None:
    away(
        session,
        bob,
        starts_at=WEDNESDAY + dt.timedelta(hours=1),
        ends_at=WEDNESDAY + dt.timedelta(days=1),
    )
    assert not respond(session, bob, incoming(), now=WEDNESDAY)  # not started yet
    assert not respond(session, bob, incoming(), now=WEDNESDAY + dt.timedelta(days=1))  # ended
    assert respond(session, bob, incoming(), now=WEDNESDAY + dt.timedelta(hours=2))


def test_weekdays(session: so.Session, bob: Address) -> None:
    saturday_and_sunday = (1 << 5) | (1 << 6)
    away(session, bob, weekdays=saturday_and_sunday)
    assert not respond(session, bob, incoming(), now=WEDNESDAY)
    assert respond(session, bob, incoming(), now=WEDNESDAY + dt.timedelta(days=3))  # Saturday


def test_excluded_address_and_domain(session: so.Session, bob: Address) -> None:
    away(session, bob, excluded="boss@work.example\n@newsletter.example, ")
    assert not respond(session, bob, incoming("Boss@Work.example"), "Boss@Work.example")
    assert not respond(session, bob, incoming("x@newsletter.example"), "x@newsletter.example")
    # A subdomain is not the excluded domain.
    assert respond(session, bob, incoming("x@mail.newsletter.example"), "x@mail.newsletter.example")


def test_once_per_sender_per_seven_days_and_reset(session: so.Session, bob: Address) -> None:
    away(session, bob)
    assert respond(session, bob, incoming())
    assert not respond(session, bob, incoming(), now=WEDNESDAY + dt.timedelta(days=6, hours=23))
    assert respond(session, bob, incoming(), now=WEDNESDAY + dt.timedelta(days=7))
    assert not respond(session, bob, incoming(), now=WEDNESDAY + dt.timedelta(days=7, hours=1))
    assert autoresponder.reset(session, bob.id) == 1
    assert respond(session, bob, incoming(), now=WEDNESDAY + dt.timedelta(days=7, hours=2))
    assert len(replies(session)) == 3


@pytest.mark.parametrize(
    ("sender", "headers"),
    [
        (STRANGER, {"Auto_Submitted": "auto-replied"}),
        (STRANGER, {"Auto_Submitted": "auto-generated; owner-email=x@y"}),
        (STRANGER, {"Precedence": "bulk"}),
        (STRANGER, {"Precedence": "list"}),
        (STRANGER, {"Precedence": "JUNK"}),
        (STRANGER, {"List_Id": "<announce.elsewhere.example>"}),
        ("", {}),  # empty return path (a bounce)
        (BOB, {}),  # from the address itself
        # RFC 3834 §2: programs, not people.
        ("MAILER-DAEMON@elsewhere.example", {}),
        ("owner-announce@lists.example", {}),
        ("announce-request@lists.example", {}),
        ("announce-bounces@lists.example", {}),
        ("LISTSERV@lists.example", {}),
    ],
)
def test_rfc3834_never_answers(
    session: so.Session, bob: Address, sender: str, headers: dict[str, str]
) -> None:
    away(session, bob)
    assert not respond(session, bob, incoming(sender or STRANGER, **headers), sender)
    assert replies(session) == []


def test_auto_submitted_no_is_answered(session: so.Session, bob: Address) -> None:
    away(session, bob)
    assert respond(session, bob, incoming(Auto_Submitted="no"))


def test_only_one_active_message_per_address(session: so.Session, bob: Address) -> None:
    first = away(session, bob, name="holiday")
    second = away(session, bob, name="conference")
    session.refresh(first)
    assert (first.active, second.active) == (False, True)
    assert autoresponder.active_responder(session, bob.id) is second
    # The database itself refuses a second active one.
    with pytest.raises(sqlalchemy.exc.IntegrityError), session.begin_nested():
        session.add(Autoresponder(address_id=bob.id, name="x", subject="x", body="x", active=True))
        session.flush()


def test_reply_subject_cannot_inject_headers(session: so.Session, bob: Address) -> None:
    away(session, bob)
    raw = (
        f"From: {STRANGER}\r\nTo: {BOB}\r\nSubject: =?UTF-8?Q?hi=0ABcc:_victim@x.example?=\r\n"
        "\r\nx\r\n"
    ).encode()
    assert respond(session, bob, raw)
    (reply,) = replies(session)
    parsed = email.message_from_bytes(reply.raw, policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert sorted(parsed.keys()) == sorted(
        [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "Auto-Submitted",
            "MIME-Version",
            "Content-Type",
            "Content-Transfer-Encoding",
        ]
    )


def test_answers_encrypted_mail_over_smtp(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    alice = "alice@example.test"
    with db.transaction(runtime.sessions) as s:
        bob = accounts.find_address(s, BOB)
        assert bob is not None
        away(s, bob, body="Back on Monday.")
    raw = f"From: {alice}\r\nTo: {BOB}\r\nSubject: [encrypt] contract\r\n\r\nsecret\r\n".encode()
    with smtplib.SMTP_SSL(
        "127.0.0.1", submission_server.tls_port, context=client_ssl_context, timeout=60
    ) as client:
        client.login(alice, mail_users[alice])
        assert client.sendmail(alice, [BOB], raw) == {}
    with db.transaction(runtime.sessions) as s:
        inbox = s.scalars(
            sa.select(MailboxMessage)
            .join(MailboxMessage.address)
            .where(Address.address == alice, MailboxMessage.folder == "INBOX")
        ).all()
    (reply,) = inbox
    assert reply.subject == "Away: contract"
    assert b"Back on Monday." in reply.raw and b"Auto-Submitted: auto-replied" in reply.raw


def test_reply_threading_cannot_inject_headers(session: so.Session, bob: Address) -> None:
    """A Message-ID that decodes to an encoded word with CR LF is not threaded to."""
    away(session, bob)
    hostile = "<=?utf-8?q?a=0D=0AReply-To:_mallory@evil.example?=@elsewhere>"
    raw = incoming(Message_ID=hostile).replace(b"Message-ID: <q1@elsewhere>\r\n", b"")
    assert respond(session, bob, raw)
    (reply,) = replies(session)
    parsed = email.message_from_bytes(reply.raw, policy=email.policy.default)
    assert parsed["Reply-To"] is None and b"mallory" not in reply.raw
    assert parsed["In-Reply-To"] is None and parsed["References"] is None


_SENDERS = itertools.count()
# Loop markers (RFC 3834 §2, RFC 2369/2919, Exchange) and values that mean "do not answer".
MARKERS = {
    "Auto-Submitted": ["auto-replied", "auto-generated", "auto-notified", "Auto-Replied; x=y"],
    "Precedence": ["bulk", "list", "junk", "bulk (newsletter)"],
    "List-Id": ["<team.lists.example>"],
    "List-Unsubscribe": ["<mailto:leave@lists.example>"],
    "List-Post": ["<mailto:team@lists.example>"],
    "X-Auto-Response-Suppress": ["OOF", "All", "DR, OOF"],
}


def _case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.swapcase() if flip else c for c, flip in zip(text, flips, strict=True))


@st.composite
def marker_fields(draw: st.DrawFn) -> tuple[str, str, str, bool]:
    """(field text without line end, its name, its value, whether it is in the obsolete
    syntax): any spelling a lenient reader takes as that field."""
    name = draw(st.sampled_from(sorted(MARKERS)))
    value = draw(st.sampled_from(MARKERS[name]))
    spelled_value = _case(draw, value)
    if draw(st.booleans()) and ";" not in value and "," not in value:
        # An RFC 2047 encoded word: Python's default policy hands the value decoded.
        spelled_value = draw(
            st.sampled_from(
                [
                    f"=?us-ascii?q?{value.replace(' ', '_')}?=",
                    f"=?utf-8?b?{base64.b64encode(value.encode()).decode()}?=",
                ]
            )
        )
    before_colon = draw(st.text(alphabet=" \t", max_size=3))  # RFC 5322 §4.5.3
    after_colon = draw(st.sampled_from(["", " ", "\t", "  ", "\r\n ", " \r\n\t"]))
    text = f"{_case(draw, name)}{before_colon}:{after_colon}{spelled_value}"
    return text, name, value, bool(before_colon)


@pytest.fixture
def bob_away(session: so.Session, bob: Address) -> Address:
    away(session, bob)
    return bob


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(marker=marker_fields(), position=st.integers(0, 3), line_end=st.sampled_from(["\r\n", "\n"]))
def test_no_away_reply_to_a_loop_marker_in_any_spelling(
    session: so.Session,
    bob_away: Address,
    marker: tuple[str, str, str, bool],
    position: int,
    line_end: str,
) -> None:
    """Whatever the spelling of a loop marker that a lenient reader (Python's email with
    the default policy; Postfix, which also reads the obsolete syntax with white space
    before the colon) takes as the field, no away reply goes out. The same message
    without the marker is answered, so the marker alone made the difference."""
    text, name, value, obsolete = marker
    sender = f"s{next(_SENDERS)}@elsewhere.example"  # a new one: answered once per 7 days

    def message(*extra: str) -> bytes:
        fields = [f"From: {sender}", f"To: {BOB}", "Subject: question", "Message-ID: <q@x>"]
        fields[position:position] = list(extra)
        return (line_end.join(fields) + line_end + line_end + "hello" + line_end).encode()

    marked = message(text.replace("\r\n", line_end))
    if not obsolete:  # the premise, for Python's reader: it takes the field, value intact
        parsed = email.message_from_bytes(marked, policy=email.policy.default)
        assert str(parsed[name]).strip().lower() == value.lower()
    assert not respond(session, bob_away, marked, sender)
    assert respond(session, bob_away, message(), sender)
