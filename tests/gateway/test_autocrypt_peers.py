"""The Autocrypt peer-state update rules as invariants, over messages in any order.

Mail arrives out of order (retries, slow relays): the spec's rules make the key
in use depend only on which messages arrived, not on their order: it is the key
of the newest message that had a header.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import db
from gateway.autocrypt import inbound as autocrypt_inbound
from gateway.autocrypt import peers
from gateway.runtime import Runtime
from keystore import directory, pgp, untrusted
from keystore.models import AutocryptPeer

PEER = "carol@partner.example"
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def vetted(n: int) -> pgp.VettedKey:
    fingerprint = f"{n:040X}"
    return pgp.VettedKey(PEER, fingerprint, fingerprint[-16:], NOW, None, f"key {n}".encode())


def no_events(*_args: object) -> None:
    pass


# A message: (days before NOW, key number or None for no header); distinct dates.
messages = st.lists(
    st.tuples(st.integers(0, 400), st.one_of(st.none(), st.integers(1, 5))),
    min_size=1,
    max_size=8,
    unique_by=lambda m: m[0],
)


def apply(runtime: Runtime, batch: list[tuple[int, int | None]]) -> AutocryptPeer | None:
    with db.transaction(runtime.sessions) as session:
        session.execute(sa.delete(AutocryptPeer))
    for days, key in batch:
        with db.transaction(runtime.sessions) as session:
            peers.update(
                session,
                PEER,
                NOW - dt.timedelta(days=days),
                vetted(key) if key is not None else None,
                "mutual",
                NOW,
                events=no_events,
            )
    with db.read_only(runtime.sessions) as session:
        return peers.peer(session, PEER)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=messages, order=st.randoms(use_true_random=False))
def test_the_key_in_use_is_the_newest_headers_whatever_the_order(
    runtime: Runtime, batch: list[tuple[int, int | None]], order: object
) -> None:
    shuffled = list(batch)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    row = apply(runtime, shuffled)
    with_header = [(days, key) for days, key in batch if key is not None]
    if not with_header:
        assert row is None  # header-less mail from a stranger keeps no state
        return
    newest_days, newest_key = min(with_header)
    assert row is not None
    assert row.fingerprint == vetted(newest_key).fingerprint
    assert row.autocrypt_timestamp == NOW - dt.timedelta(days=newest_days)
    assert row.autocrypt_timestamp <= row.last_seen <= NOW - dt.timedelta(days=min(batch)[0])
    # In arrival order by date, every message counts towards last_seen.
    in_order = apply(runtime, sorted(batch, reverse=True))
    assert in_order is not None and in_order.last_seen == NOW - dt.timedelta(days=min(batch)[0])


def test_a_revoked_key_is_never_taken_again_and_stops_being_used(runtime: Runtime) -> None:
    with db.transaction(runtime.sessions) as session:
        assert (
            peers.update(session, PEER, NOW, vetted(1), "mutual", NOW, events=no_events) == "added"
        )
        assert peers.usable_key(session, PEER, NOW) is not None
        assert directory.mark_revoked(session, vetted(1).fingerprint, NOW, events=no_events) == [
            PEER
        ]
        assert peers.usable_key(session, PEER, NOW) is None
        later = NOW + dt.timedelta(hours=1)
        assert (
            peers.update(session, PEER, later, vetted(1), "mutual", later, events=no_events)
            == "seen"
        )
        assert peers.usable_key(session, PEER, later) is None
        # A new key is taken.
        assert (
            peers.update(session, PEER, later, vetted(2), "mutual", later, events=no_events)
            == "replaced"
        )
        assert peers.usable_key(session, PEER, later) is not None


@pytest.mark.parametrize(("days", "used"), [(35, True), (36, False)])
def test_thirty_five_days_without_a_header_is_the_reset(
    runtime: Runtime, days: int, used: bool
) -> None:
    with db.transaction(runtime.sessions) as session:
        peers.update(session, PEER, NOW, vetted(1), "mutual", NOW, events=no_events)
        later = NOW + dt.timedelta(days=days)
        assert (
            peers.update(session, PEER, later, None, "nopreference", later, events=no_events)
            == "seen"
        )
        assert (peers.usable_key(session, PEER, later) is not None) == used


def test_an_expired_autocrypt_key_is_not_used(runtime: Runtime) -> None:
    expiring = dataclasses.replace(vetted(1), expires_at=NOW + dt.timedelta(days=1))
    with db.transaction(runtime.sessions) as session:
        peers.update(session, PEER, NOW, expiring, "mutual", NOW, events=no_events)
        assert peers.usable_key(session, PEER, NOW) is not None
        assert peers.usable_key(session, PEER, NOW + dt.timedelta(days=2)) is None


def test_the_same_header_again_is_not_parsed_again(
    runtime: Runtime, mail_users: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Autocrypt programs send their header with every message: one sandboxed parse."""
    key = pgp.generate(PEER, NOW).public.to_bytes()
    raw = (
        f"From: {PEER}\r\nTo: alice@example.test\r\nDate: Wed, 02 Dec 2026 12:00:00 +0000\r\n"
        f"Autocrypt: addr={PEER}; keydata={base64.b64encode(key).decode()}\r\n\r\nhi\r\n"
    ).encode()
    calls: list[bytes] = []
    real = untrusted.vet_keys

    def counting(data: bytes, *args: Any, **kwargs: Any) -> pgp.KeyVetting:
        calls.append(data)
        return real(data, *args, **kwargs)

    monkeypatch.setattr(untrusted, "vet_keys", counting)
    first = autocrypt_inbound.observe(runtime, raw, NOW)
    second = autocrypt_inbound.observe(runtime, raw, NOW + dt.timedelta(minutes=5))
    assert first is not None and first.vetted is not None
    assert second is not None and second.vetted == first.vetted
    assert len(calls) == 1
