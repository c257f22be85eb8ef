"""Mail that cannot leave still ages: no smarthost, or a master key ring that stops loading.

Failure: with no smarthost configured the relay claimed nothing, so every queued
row waited for ever and no sender ever heard that the mail had not left (serve only
warned once at start). When the ring file stopped loading while serve ran (a bad
edit, a lost file), every sweep ended in a traceback, once a second, and again
nothing was claimed: plain mail too waited for ever. Now:

- with no smarthost, serve says so at error level with the fix; rows wait (the
  README promises that) and each bounces to its sender at `[relay] max_age`, saying
  why, as any undeliverable mail does;
- with no ring, the relay says so at error level once an hour (not per sweep),
  naming the file and the fix; mail that needs no key is sent; mail that would be
  DKIM-signed and sealed notifications wait for the ring, and bounce at the
  lifetime if it never comes back; once it loads, they go, signed.

The relay runs its real loop against the fake smarthost, with a clock moved by hand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.message
import email.policy
import logging
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from gateway import db
from gateway.models import QueueItem
from gateway.relay import run_relay
from gateway.runtime import Runtime
from keystore.masterkey import ring_path
from tests.fakes.smarthost import FakeSmarthost
from tests.gateway.test_dkim import signatures
from tests.gateway.test_relay import (
    ALICE,
    RAW,
    FakeClock,
    enqueue,
    enqueue_sealed,
    mailbox_of,
    rows,
    with_relay,
)
from tests.keystore.conftest import run_sealgate

DAY, HOUR = 86400.0, 3600.0
FOREIGN = RAW.replace(b"From: Alice <alice@example.test>", b"From: Zed <zed@elsewhere.example>")


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def row(runtime: Runtime, queue_id: str) -> QueueItem | None:
    with db.read_only(runtime.sessions) as session:
        return session.scalar(sa.select(QueueItem).where(QueueItem.queue_id == queue_id))


def attempts(runtime: Runtime, queue_id: str) -> int:
    found = row(runtime, queue_id)
    return -1 if found is None else found.attempts


def run_loop(rt: Runtime, clock: FakeClock, steps: Callable[[], None]) -> None:
    """Run the relay loop while `steps` (blocking, in a thread) drives the clock."""

    async def scenario() -> None:
        stop = asyncio.Event()
        worker = asyncio.create_task(run_relay(rt, stop, clock))
        try:
            await asyncio.to_thread(steps)
        finally:
            stop.set()
            await worker  # ends normally: the loop never failed

    asyncio.run(scenario())


def bounce_of(runtime: Runtime, queue_id: str) -> email.message.EmailMessage:
    found = []
    for stored in mailbox_of(runtime, ALICE):
        msg = email.message_from_bytes(stored.raw, policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        if f"X-Sealgate-Queue-ID: {queue_id}".encode() in stored.raw:
            found.append(msg)
    [bounce] = found
    return bounce


def diagnostic(bounce: email.message.EmailMessage) -> tuple[str, str, str | None]:
    status = next(p for p in bounce.walk() if p.get_content_type() == "message/delivery-status")
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    per_recipient = blocks[1]
    assert isinstance(per_recipient, email.message.Message)
    return (
        per_recipient["Status"],
        per_recipient["Diagnostic-Code"],
        per_recipient["Remote-MTA"],
    )


# -- no smarthost ---------------------------------------------------------------------


def test_with_no_smarthost_mail_waits_and_bounces_at_the_lifetime(
    runtime: Runtime, mail_users: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rt = dataclasses.replace(
        runtime, settings=runtime.settings.replace(relay={"poll_interval": 0.05})
    )
    assert not rt.settings.relay.host
    max_age = rt.settings.relay.max_age
    clock = FakeClock()
    enqueue(rt, queue_id="QPLAIN", now=clock.now)
    enqueue_sealed(rt, rt.ring.get(), queue_id="QSEALED")  # queued at the same time

    def steps() -> None:
        time.sleep(0.5)  # several sweeps: nothing is due to bounce yet
        assert (attempts(rt, "QPLAIN"), attempts(rt, "QSEALED")) == (0, 0)
        clock.advance(max_age / 2)
        enqueue(rt, queue_id="QLATER", now=clock.now)
        time.sleep(0.3)
        assert attempts(rt, "QPLAIN") == 0
        clock.advance(max_age / 2)  # the first two are max_age old now
        wait_until(lambda: row(rt, "QPLAIN") is None and row(rt, "QSEALED") is None, "bounces")

    run_loop(rt, clock, steps)

    assert [r.queue_id for r in rows(rt)] == ["QLATER"]  # not old enough: still waiting
    for queue_id in ("QPLAIN", "QSEALED"):
        assert diagnostic(bounce_of(rt, queue_id)) == (
            "4.4.7",
            "X-Sealgate; no smarthost configured ([relay] host is empty)",
            None,  # no server was ever asked
        )
    said = [r for r in caplog.records if "no smarthost configured" in r.getMessage()]
    assert said[0].levelno == logging.WARNING
    assert said[0].getMessage() == (
        "relay: no smarthost configured ([relay] host is empty): mail to other domains cannot"
        " leave; it stays queued and bounces to its sender 5 day(s) after it was queued"
        " ([relay] max_age). Set [relay] host (and port, security) in sealgate.toml, or"
        " SEALGATE_RELAY_HOST, and restart"
    )
    assert [r.levelno for r in said[1:]] == [logging.WARNING, logging.WARNING]  # the bounces
    assert "sweep failed" not in caplog.text


def test_queue_list_says_there_is_no_smarthost(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    enqueue(runtime, queue_id="QPLAIN")
    listed = run_sealgate(test_env, "queue", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr == (
        "no smarthost is configured ([relay] host is empty): mail to other domains cannot"
        " leave; it waits here and bounces to its sender 5 day(s) after it was queued\n"
    )
    assert "QPLAIN" in listed.stdout


# -- no master key ring -----------------------------------------------------------------


def break_the_ring(runtime: Runtime) -> bytes:
    """Overwrite master.keys with something that is not a ring; the good bytes."""
    path = ring_path(runtime.settings.data_dir)
    good = path.read_bytes()
    path.write_text("{not a ring\n")
    return good


def mend_the_ring(runtime: Runtime, good: bytes) -> None:
    ring_path(runtime.settings.data_dir).write_bytes(good)


def test_without_a_ring_other_mail_goes_signed_mail_waits_and_goes_once_it_is_back(
    runtime: Runtime,
    mail_users: dict[str, str],
    smarthost: FakeSmarthost,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    rt = with_relay(runtime, smarthost)
    clock = FakeClock()
    enqueue(rt, queue_id="QOURS", now=clock.now)  # From alice@example.test: DKIM-signed
    enqueue(rt, queue_id="QFOREIGN", raw=FOREIGN, now=clock.now)  # From not ours
    enqueue_sealed(rt, rt.ring.get(), queue_id="QSEALED")
    good = break_the_ring(rt)

    def steps() -> None:
        smarthost.wait_for(1)
        wait_until(lambda: attempts(rt, "QOURS") == 1 and attempts(rt, "QSEALED") == 1, "defers")
        time.sleep(0.3)  # many more sweeps: the error is not said again within the hour
        clock.advance(HOUR)
        wait_until(lambda: attempts(rt, "QOURS") == 2 and attempts(rt, "QSEALED") == 2, "retries")
        mend_the_ring(rt, good)
        clock.advance(HOUR)
        wait_until(lambda: not rows(rt), "an empty queue")

    run_loop(rt, clock, steps)

    # Sent at once, unsigned as ever (its From is not ours); the other two once the
    # ring was back, with both DKIM signatures.
    foreign, *later = smarthost.messages
    assert foreign.content == FOREIGN and signatures(foreign.content) == []
    assert len(later) == 2
    assert all(
        m.content.endswith(RAW.split(b"\r\n\r\n", 1)[1]) and len(signatures(m.content)) == 2
        for m in later
    )

    lines = [r for r in caplog.records if "master key ring cannot be loaded" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.ERROR, logging.ERROR]  # once an hour
    assert all(
        r.getMessage()
        == (
            f"relay: the master key ring cannot be loaded: {ring_path(rt.settings.data_dir)}:"
            " the master key ring is malformed (JSONDecodeError); put back a good copy"
            " from a backup (docs/backup.md). Until it loads again, sealed notifications and"
            " mail to be DKIM-signed wait (and bounce to their senders at [relay] max_age);"
            " other mail is sent. Said again in an hour if still so"
        )
        for r in lines
    )
    assert "relay: the master key ring loads again" in caplog.text
    deferred = [r.getMessage() for r in caplog.records if "deferred until" in r.getMessage()]
    assert any(
        "queue QOURS" in line
        and "waiting for the master key ring to sign it (DKIM)" in line
        and "it goes once the master key ring loads again" in line
        for line in deferred
    )
    assert any(
        "queue QSEALED" in line and "no master key ring is loaded" in line for line in deferred
    )
    assert "sweep failed" not in caplog.text and "Traceback" not in caplog.text


def test_without_a_ring_mail_that_needs_it_bounces_at_the_lifetime(
    runtime: Runtime,
    mail_users: dict[str, str],
    smarthost: FakeSmarthost,
) -> None:
    rt = with_relay(runtime, smarthost)
    clock = FakeClock()
    enqueue(rt, queue_id="QOURS", now=clock.now)
    break_the_ring(rt)

    def steps() -> None:
        wait_until(lambda: attempts(rt, "QOURS") == 1, "a first try")
        clock.advance(rt.settings.relay.max_age)
        wait_until(lambda: row(rt, "QOURS") is None, "the bounce")

    run_loop(rt, clock, steps)

    assert smarthost.messages == []
    status, why, remote = diagnostic(bounce_of(rt, "QOURS"))
    assert (status, remote) == ("4.4.7", None)
    # The sender learns what held it, not where the gateway keeps its keys.
    assert why == "X-Sealgate; waiting for the master key ring to sign it (DKIM)"


def test_serve_refuses_to_start_without_its_ring_and_says_what_to_do(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    path = ring_path(runtime.settings.data_dir)
    good = path.read_bytes()
    path.unlink()
    missing = run_sealgate(test_env, "serve")
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr
    assert (
        f"Error: {path} does not exist (`sealgate init` writes one for a new installation;"
        " one that holds keys needs its own copy back from a backup, see docs/backup.md)"
    ) in missing.stderr
    path.write_text("{not a ring\n")
    path.chmod(0o600)
    broken = run_sealgate(test_env, "serve")
    assert broken.returncode == 1
    assert (
        f"Error: {path}: the master key ring is malformed (JSONDecodeError); put back a good"
        " copy from a backup (docs/backup.md)"
    ) in broken.stderr
    path.write_bytes(good)
