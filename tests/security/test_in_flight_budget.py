"""Threat: many large messages at once take the server's memory (issue 10, point 5).

The shape that once broke it: four 24 MiB encrypted submissions at the same time
took `sealgate serve` from 104 MB to 1.2 GB, with 20 connections allowed per
client. Memory was bounded per message, not in total. Now every message in flight
holds its size in one budget (`[limits] in_flight_bytes`); past it a new DATA gets
`451 4.3.1` before the client sends the data, the webmail says the server is busy
and keeps the form, the relay leaves rows queued, and a retry after the budget is
released succeeds. Nothing is lost. Here with a budget of 64 KiB and messages of
40 KiB; bench/memory.py drives the full-size case against a real `sealgate serve`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import smtplib
import ssl
import urllib.parse
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from gateway import db, mailbox
from gateway import queue as outbound
from gateway.inflight import InFlightBudget
from gateway.relay import Relay
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from tests.conftest import LoopThread
from tests.fakes.smarthost import FakeSmarthost, relay_settings_for
from tests.webportal.conftest import csrf_from
from tests.webportal.webmail_support import Webmail, rows, webmail_app
from webportal.compose import SERVER_BUSY
from webportal.i18n import translate

ALICE, BOB = "alice@example.test", "bob@example.test"
BUDGET = 64 * 1024
SIZE = 40 * 1024


@pytest.fixture
def tight(runtime: Runtime) -> Runtime:
    """The runtime with a 64 KiB in-flight budget, as Runtime.open builds it from settings."""
    settings = runtime.settings.replace(limits={"in_flight_bytes": BUDGET})
    return dataclasses.replace(
        runtime, settings=settings, inflight=InFlightBudget(settings.limits.in_flight_bytes)
    )


@pytest.fixture
def server(tight: Runtime, loop_thread: LoopThread) -> Iterator[SubmissionServer]:
    made = SubmissionServer(tight)
    loop_thread.run(made.start())
    yield made
    loop_thread.run(made.stop(grace=5))


def body(n: int) -> bytes:
    head = f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: [encrypt] load {n}\r\n\r\n".encode()
    line = b"y" * 78 + b"\r\n"
    return head + line * ((SIZE - len(head)) // len(line))


def connect(server: SubmissionServer, ctx: ssl.SSLContext, password: str) -> smtplib.SMTP_SSL:
    client = smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=ctx, timeout=60)
    client.login(ALICE, password)
    return client


def test_data_past_the_budget_gets_451_and_a_retry_after_release_is_delivered(
    server: SubmissionServer,
    tight: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    first = connect(server, client_ssl_context, mail_users[ALICE])
    second = connect(server, client_ssl_context, mail_users[ALICE])
    try:
        # The first client is inside DATA (half its message sent): its 40 KiB are held.
        first.mail(ALICE, [f"SIZE={SIZE}"])
        first.rcpt(BOB)
        first.putcmd("data")
        assert first.getreply()[0] == 354
        data = body(1)
        first.send(data[: len(data) // 2])
        assert tight.inflight.used == SIZE

        # The second would pass the budget: 451 4.3.1 at DATA, before any data is sent.
        with pytest.raises(smtplib.SMTPDataError) as refused:
            second.sendmail(ALICE, [BOB], body(2))
        assert refused.value.smtp_code == 451
        assert refused.value.smtp_error.startswith(b"4.3.1")
        assert rows(tight, BOB) == []

        # The first finishes and is committed; its hold is released with its 250.
        first.send(data[len(data) // 2 :] + b".\r\n")
        code, reply = first.getreply()
        assert code == 250, reply
        assert tight.inflight.used == 0

        # The second retries on the same connection and is accepted.
        assert second.sendmail(ALICE, [BOB], body(2)) == {}
    finally:
        first.quit()
        second.quit()
    delivered = rows(tight, BOB, mailbox.INBOX)
    assert sorted(row.subject for row in delivered) == ["load 1", "load 2"]  # tag stripped
    assert all(row.encrypted for row in delivered)
    assert tight.inflight.used == 0


def test_a_size_declared_too_small_is_checked_again_before_the_pipeline(
    server: SubmissionServer,
    tight: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    held = tight.inflight.try_reserve(BUDGET - 1024)  # someone else is in flight
    assert held is not None
    with connect(server, client_ssl_context, mail_users[ALICE]) as client:
        client.mail(ALICE, ["SIZE=100"])
        client.rcpt(BOB)
        code, reply = client.data(body(3))
        assert (code, reply[:5]) == (451, b"4.3.1")
        held.release()
        client.rset()
        client.mail(ALICE, ["SIZE=100"])
        client.rcpt(BOB)
        assert client.data(body(3))[0] == 250
    assert [(row.subject, row.encrypted) for row in rows(tight, BOB)] == [("load 3", True)]
    assert tight.inflight.used == 0


@pytest.fixture
def webmail(tight: Runtime, mail_users: dict[str, str]) -> Iterator[Webmail]:
    app = webmail_app(tight)
    client: FlaskClient
    with app.test_client() as client:
        yield Webmail(client).login(ALICE)


def test_the_webmail_says_busy_keeps_the_form_and_sends_once_released(
    webmail: Webmail, tight: Runtime
) -> None:
    held = tight.inflight.try_reserve(BUDGET)
    assert held is not None
    text = "Ein Gruß, der nicht verloren gehen darf."
    busy = webmail.compose(
        **{"from": ALICE, "to": BOB, "subject": "busy", "text": text, "encrypt": "yes"}
    )
    assert busy.status_code == 503
    assert translate("en", SERVER_BUSY) in busy.text
    assert text in busy.text  # what was written comes back
    assert rows(tight, BOB) == []

    held.release()
    sent = webmail.compose(
        **{"from": ALICE, "to": BOB, "subject": "busy", "text": text, "encrypt": "yes"}
    )
    assert sent.status_code == 303, sent.text
    assert [row.subject for row in rows(tight, BOB)] == ["busy"]
    assert tight.inflight.used == 0
    for language in ("de", "fr"):
        assert translate(language, SERVER_BUSY) != SERVER_BUSY


def test_a_chunked_post_is_held_at_the_largest_body_it_may_have(
    webmail: Webmail, tight: Runtime
) -> None:
    """A body sent chunked has no length to hold: it is held at the most the app reads
    (a browser always gives the length, which the test above holds)."""
    fields = {"action": "send", "from": ALICE, "to": BOB, "subject": "chunked", "text": "hi"}
    held = tight.inflight.try_reserve(SIZE)  # another message in flight: the rest is free
    assert held is not None
    token = csrf_from(webmail.client.get("/compose").text)
    form = urllib.parse.urlencode({**fields, "csrf_token": token}).encode()
    chunked = webmail.client.post(
        "/compose",
        input_stream=io.BytesIO(form),
        content_type="application/x-www-form-urlencoded",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert chunked.status_code == 503, chunked.status_code
    assert rows(tight, BOB) == [] and tight.inflight.used == SIZE
    # The same form with its length fits in what is free.
    assert webmail.compose(**fields).status_code == 303
    held.release()
    assert [row.subject for row in rows(tight, BOB)] == ["chunked"]


def test_the_relay_claims_only_what_the_budget_holds_and_sends_the_rest_later(
    tight: Runtime, smarthost: FakeSmarthost
) -> None:
    rt = dataclasses.replace(tight, settings=relay_settings_for(tight.settings, smarthost))
    now = dt.datetime.now(dt.UTC)
    with db.transaction(rt.sessions) as session:
        for n in range(3):
            outbound.enqueue(
                session,
                queue_id=f"R{n}",
                mail_from=ALICE,
                rcpt_to=f"carol{n}@elsewhere.example",
                raw=body(n),
                now=now,
            )
    worker = Relay(rt, clock=lambda: now)
    held = rt.inflight.try_reserve(BUDGET - SIZE)  # something else is in flight
    assert held is not None
    first = asyncio.run(worker.sweep())
    assert [r.queue_id for r in first] == ["R0"]  # the 2nd row would pass 64 KiB
    assert rt.inflight.used == BUDGET - SIZE  # its hold came back after the send
    held.release()
    rest = asyncio.run(worker.sweep())
    rest += asyncio.run(worker.sweep())
    assert sorted(r.queue_id for r in first + rest) == ["R0", "R1", "R2"]
    assert len(smarthost.messages) == 3
    assert rt.inflight.used == 0


def test_a_forward_holds_its_carried_attachment_too(webmail: Webmail, tight: Runtime) -> None:
    """The request is small, but the attachment carried over from the store is not."""
    attachment = bytes(range(256)) * 120  # 30 KiB
    first = webmail.compose(
        files=[(attachment, "plan.bin", "application/octet-stream")],
        **{"from": ALICE, "to": BOB, "subject": "Plan", "text": "anbei", "encrypt": "yes"},
    )
    assert first.status_code == 303, first.text
    (sent,) = rows(tight, ALICE, mailbox.SENT)
    forward = {
        "from": ALICE,
        "to": BOB,
        "subject": "Fwd: Plan",
        "text": "siehe unten",
        "encrypt": "yes",
        "carry_from": str(sent.id),
        "carry": "0",
    }
    held = tight.inflight.try_reserve(BUDGET - 16 * 1024)  # room for the form, not the file
    assert held is not None
    busy = webmail.compose(page=f"/compose?forward={sent.id}", **forward)
    assert busy.status_code == 503
    assert translate("en", SERVER_BUSY) in busy.text
    assert len(rows(tight, BOB)) == 1
    held.release()
    done = webmail.compose(page=f"/compose?forward={sent.id}", **forward)
    assert done.status_code == 303, done.text
    assert [row.subject for row in rows(tight, BOB)] == ["Plan", "Fwd: Plan"]
    assert tight.inflight.used == 0
