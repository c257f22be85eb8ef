"""The relay against a hostile or broken remote server (tests/fakes/scripted_smtp.py).

Threats: a peer whose replies are malformed, 8-bit, mismatched or slow makes the
relay crash, hang, send twice, bounce what was accepted, or retry what was refused;
a STARTTLS that is offered and then fails makes it send in clear; a bounce carries
the body it was to keep encrypted.
"""

from __future__ import annotations

import dataclasses

import pytest

from gateway.relay import Outcome
from gateway.runtime import Runtime
from tests.fakes.scripted_smtp import ScriptedSmtp, Step
from tests.gateway.test_relay import (
    ALICE,
    RAW,
    FakeClock,
    delivery_status,
    enqueue,
    mailbox_of,
    rows,
    sweep,
)


def via(runtime: Runtime, peer: ScriptedSmtp, **relay: object) -> Runtime:
    values: dict[str, object] = {"host": peer.host, "port": peer.port, "security": "none"}
    values["timeout"] = 5.0
    values.update(relay)
    return dataclasses.replace(runtime, settings=runtime.settings.replace(relay=values))


def outcome_with(runtime: Runtime, script: dict[str, Step], **relay: object) -> Outcome:
    with ScriptedSmtp(script) as peer:
        rt = via(runtime, peer, **relay)
        enqueue(rt)
        [result] = sweep(rt, FakeClock())
        return result.outcome


@pytest.mark.parametrize(
    ("step", "reply"),
    [
        ("DOT", b"251 2.0.0 queued\r\n"),
        ("DOT", b"252 ok\r\n"),
        ("MAIL", b"251 2.1.0 ok\r\n"),
        ("RCPT", b"252 2.1.5 cannot verify, will try\r\n"),
    ],
)
def test_any_2xx_is_a_positive_reply(
    runtime: Runtime, mail_users: dict[str, str], step: str, reply: bytes
) -> None:
    """RFC 5321 4.2.1: 2yz is a positive completion. A 2xx other than 250 after the
    final dot (or to MAIL, or other than 250/251 to RCPT) was taken for a temporary
    failure: an accepted message was sent again on every retry for five days, then
    bounced to its sender as undelivered."""
    with ScriptedSmtp({step: reply}) as peer:
        rt = via(runtime, peer)
        enqueue(rt)
        assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.SENT]
        assert rows(rt) == []
        [sent] = peer.messages
        assert sent.endswith(RAW)  # after the DKIM signatures
        assert mailbox_of(rt, ALICE) == []


def test_an_enhanced_code_in_other_digits_gives_a_valid_status(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """RFC 3464 2.3.4: Status is ASCII digits. The enhanced code was matched with
    Unicode `\\d`, so a peer's "5.١.1" (an Arabic-Indic one) became "Status: 5.?.1"."""
    reply = "550 5.\u0661.1 no such user\r\n".encode()
    with ScriptedSmtp({"RCPT": reply}) as peer:
        rt = via(runtime, peer)
        enqueue(rt)
        assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.BOUNCED]
    [bounce] = mailbox_of(rt, ALICE)
    _msg, (_per_message, per_recipient) = delivery_status(bounce.raw)
    assert per_recipient["Status"] == "5.0.0"
