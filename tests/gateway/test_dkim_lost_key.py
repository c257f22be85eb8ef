"""A domain's DKIM key that can no longer be opened: said, shown, and mended.

Failure: a DKIM key sealed under a master-key version that was destroyed signs
nothing. The relay logged an error for every message it sent (a busy domain
buried the log in identical lines) and nothing else told the admin: not
`sealgate domain show`, not the console, not `sealgate dns`, and no command made a
new key, so the domain's mail went out unsigned for good.

Mail still goes out (signed by the domain's other key, or unsigned): only a new key
and its DNS record mend this, so holding the mail back would delay it for nothing
(docs/dns.md). The relay now says it at error level once per domain per hour, with
the way out; `sealgate domain show`, `sealgate dns DOMAIN` and the console's domain
list name the key; `sealgate keys renew-dkim DOMAIN` replaces it under a new
selector and prints the record to publish. The relay runs its real loop against
the fake smarthost; signatures are verified with dkimpy over a fake name server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import dkim
import pytest
import sqlalchemy as sa

from gateway import db, master_records
from gateway.dkim import keys as dkim_keys
from gateway.dnsrecords import records
from gateway.models import AuditEvent, DkimKey, Domain
from gateway.relay import run_relay
from gateway.runtime import Runtime
from keystore import rotation, seal
from keystore.masterkey import MasterKeyRing, load_ring, save_ring
from tests.fakes.dns_server import FakeDns
from tests.fakes.smarthost import FakeSmarthost
from tests.gateway.test_dkim import signatures
from tests.gateway.test_relay import RAW, T0, FakeClock, enqueue, rows, sweep, with_relay
from tests.keystore.conftest import audit_sink, run_sealgate

HOUR = 3600.0
LOST_LINE = "dkim: the ed25519 key {selector} (master-key version 1 was destroyed) of example.test"


def lose_keys(runtime: Runtime, algorithms: tuple[str, ...] = ("ed25519",)) -> None:
    """Rotate (version 2 primary), put the domain's keys of `algorithms` back under
    version 1 (as a backup or a process with the old ring would hold them), and
    destroy version 1: those keys can never be opened again."""
    data_dir = runtime.settings.data_dir
    old = load_ring(data_dir, env={})
    rotation.rotate_master(
        data_dir, runtime.sessions, T0, events=audit_sink, other_blobs=master_records.rewrap
    )
    ring = runtime.ring.get()
    under_1 = MasterKeyRing(primary=1, keys={1: old.key(1)})
    with db.transaction(runtime.sessions) as session:
        for key in session.scalars(sa.select(DkimKey).where(DkimKey.algorithm.in_(algorithms))):
            binding = f"example.test\0{key.selector}".encode()
            private = seal.open_sealed(
                ring, key.sealed_private_key, purpose=dkim_keys.SEAL_PURPOSE, binding=binding
            )
            key.sealed_private_key = seal.seal(
                under_1, private, purpose=dkim_keys.SEAL_PURPOSE, binding=binding
            )
            key.master_version = 1
    save_ring(data_dir, load_ring(data_dir, env={}).with_destroyed(1))


def selector(runtime: Runtime, algorithm: str) -> str:
    with db.read_only(runtime.sessions) as session:
        found = session.scalar(
            sa.select(DkimKey.selector)
            .where(DkimKey.algorithm == algorithm)
            .order_by(DkimKey.id.desc())
            .limit(1)
        )
    assert found is not None
    return found


def name_server(runtime: Runtime) -> FakeDns:
    """example.test's DNS, serving what `sealgate dns` prints now."""
    with db.read_only(runtime.sessions) as session:
        domain = session.scalar(sa.select(Domain).where(Domain.name == "example.test"))
        assert domain is not None
        found = records.domain_records(
            runtime.settings, domain.name, dkim_keys.current_keys(session, domain.id)
        )
    return FakeDns(records.zone_text(found, 300), origin="example.test.")


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def test_the_relay_says_it_once_an_hour_and_the_other_key_still_signs(
    runtime: Runtime,
    mail_users: dict[str, str],
    smarthost: FakeSmarthost,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    lose_keys(runtime)
    rt = with_relay(runtime, smarthost)
    clock = FakeClock()

    def lost_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith("dkim: the ed25519")]

    async def scenario() -> None:
        stop = asyncio.Event()
        worker = asyncio.create_task(run_relay(rt, stop, clock))
        try:
            for n in range(3):
                enqueue(rt, queue_id=f"Q{n}", now=clock.now)
            await asyncio.to_thread(smarthost.wait_for, 3)
            clock.advance(HOUR / 2)  # within the hour: not said again
            enqueue(rt, queue_id="Q3", now=clock.now)
            await asyncio.to_thread(smarthost.wait_for, 4)
            clock.advance(HOUR / 2)  # an hour after the first line: said again
            enqueue(rt, queue_id="Q4", now=clock.now)
            await asyncio.to_thread(smarthost.wait_for, 5)
            await asyncio.to_thread(wait_until, lambda: not rows(rt), "an empty queue")
        finally:
            stop.set()
            await worker

    asyncio.run(scenario())

    ed, rsa = selector(runtime, "ed25519"), selector(runtime, "rsa")
    assert len(smarthost.messages) == 5
    with name_server(runtime) as dns:
        for sent in smarthost.messages:
            [signature] = signatures(sent.content)
            assert (signature[b"a"], signature[b"s"]) == (b"rsa-sha256", rsa.encode())
            assert dkim.DKIM(sent.content).verify(idx=0, dnsfunc=dns.txt_lookup)
    lines = lost_lines()
    assert [r.levelno for r in lines] == [logging.ERROR, logging.ERROR]
    assert all(
        r.getMessage()
        == (
            f"{LOST_LINE.format(selector=ed)} cannot be opened: mail from example.test is signed"
            f" by {rsa} only; `sealgate keys renew-dkim example.test` replaces what does not"
            " open (then publish the new record); said again in an hour if still so"
        )
        for r in lines
    )


def test_with_both_keys_lost_mail_goes_out_unsigned_and_says_so(
    runtime: Runtime,
    mail_users: dict[str, str],
    smarthost: FakeSmarthost,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lose_keys(runtime, ("ed25519", "rsa"))
    rt = with_relay(runtime, smarthost)
    enqueue(rt)
    caplog.set_level(logging.ERROR, logger="gateway.dkim.sign")
    sweep(rt, FakeClock())
    [sent] = smarthost.messages
    assert signatures(sent.content) == []
    assert sent.content == RAW
    [line] = caplog.records
    assert "mail from example.test is sent without a DKIM signature" in line.getMessage()


def test_the_admin_sees_it_and_renew_dkim_mends_it(
    runtime: Runtime,
    mail_users: dict[str, str],
    smarthost: FakeSmarthost,
    test_env: dict[str, str],
) -> None:
    lose_keys(runtime)
    ed, rsa = selector(runtime, "ed25519"), selector(runtime, "rsa")
    problem = (
        f"DKIM key {ed} (master-key version 1 was destroyed) cannot be opened: mail from"
        f" example.test is signed by {rsa} only; `sealgate keys renew-dkim example.test`"
        " replaces what does not open (then publish the new record)"
    )

    shown = run_sealgate(test_env, "domain", "show")
    assert shown.returncode == 0, shown.stderr
    assert f"example.test\tactive\t2 address(es)\t{problem}" in shown.stdout.splitlines()
    printed = run_sealgate(test_env, "dns", "example.test")
    assert printed.returncode == 0, printed.stderr
    assert printed.stderr.strip() == f"warning: {problem}"

    renewed = run_sealgate(test_env, "keys", "renew-dkim", "example.test")
    assert renewed.returncode == 0, renewed.stderr
    new = selector(runtime, "ed25519")
    assert new != ed and new.startswith(ed)  # the minute, after the month: a new name
    assert f"example.test: DKIM key {ed} -> {new} (ed25519)" in renewed.stdout
    with db.read_only(runtime.sessions) as session:
        row = session.scalar(sa.select(DkimKey).where(DkimKey.selector == new))
        assert row is not None and row.master_version == runtime.ring.get().primary
        assert session.scalar(sa.select(DkimKey).where(DkimKey.selector == ed)) is None
        txt = records.txt_value(dkim_keys.txt_record(row))
        [event] = session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "dkim.renew"))
        assert (event.target, event.detail) == ("example.test", f"{ed} -> {new} (ed25519)")
    assert f"{new}._domainkey.example.test. 3600 IN TXT   {txt}" in renewed.stdout
    assert rsa not in renewed.stdout  # the key that opens is left alone

    # Both keys sign again, and verify with the records `sealgate dns` now prints.
    rt = with_relay(runtime, smarthost)
    enqueue(rt)
    sweep(rt, FakeClock())
    [sent] = smarthost.messages
    assert sorted(s[b"s"] for s in signatures(sent.content)) == sorted([new.encode(), rsa.encode()])
    with name_server(runtime) as dns:
        verifier = dkim.DKIM(sent.content)
        assert all(verifier.verify(idx=i, dnsfunc=dns.txt_lookup) for i in range(2))

    assert run_sealgate(test_env, "domain", "show").stdout.splitlines() == [
        "example.test\tactive\t2 address(es)"
    ]
    again = run_sealgate(test_env, "keys", "renew-dkim", "example.test")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "every DKIM key of example.test opens: nothing to renew\n"
    unknown = run_sealgate(test_env, "keys", "renew-dkim", "nowhere.example")
    assert unknown.returncode == 1
    assert "nowhere.example is not a hosted domain" in unknown.stderr
