"""`sealgate keys ...` as an admin uses it: output, friendly errors, and the audit log."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from click.testing import CliRunner, Result

from gateway.models import AuditEvent
from gateway.runtime import Runtime
from gateway.settings import Settings
from keystore import pgp, store
from keystore.masterkey import MasterKeyRing, ring_path
from sealgate.cli import cli
from tests.keystore.conftest import audit_sink

ALICE = "alice@example.test"
Sessions = so.sessionmaker[so.Session]


Invoke = Callable[..., Result]


@pytest.fixture
def invoke(test_env: dict[str, str], runtime: Runtime) -> Invoke:
    def _invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=test_env, catch_exceptions=False)

    return _invoke


def _alice_key(sessions: Sessions, ring: MasterKeyRing) -> store.StoredKey:
    with sessions.begin() as session:
        return store.get_or_create(session, ring, ALICE, dt.datetime.now(dt.UTC), events=audit_sink)


def test_list_and_export(invoke: Invoke, sessions: Sessions, ring: MasterKeyRing) -> None:
    empty = invoke("keys", "list")
    assert empty.exit_code == 0
    assert empty.output.splitlines() == [
        "address\tfingerprint\tcreated\tstatus\tmaster-key version"
    ]
    row = _alice_key(sessions, ring)
    listed = invoke("keys", "list")
    [line] = listed.output.splitlines()[1:]
    address, fingerprint, created, status, version = line.split("\t")
    assert (address, fingerprint, status, version) == (ALICE, row.fingerprint, "active", "1")
    assert created == f"{row.created_at:%Y-%m-%d %H:%M:%S}Z"
    assert invoke("keys", "list", ALICE).output == listed.output

    exported = invoke("keys", "export", "Alice@Example.test")
    assert exported.exit_code == 0
    assert exported.output.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert pgp.parse_public_key(exported.output).fingerprint == row.fingerprint
    assert "PRIVATE" not in exported.output


def test_revoke_then_export_carries_the_revocation(
    invoke: Invoke,
    sessions: Sessions,
    ring: MasterKeyRing,
) -> None:
    old = _alice_key(sessions, ring)
    result = invoke("keys", "revoke", ALICE, "--reason", "laptop stolen", "--code", "compromised")
    assert result.exit_code == 0, result.output
    assert f"key {old.fingerprint} revoked (compromised)" in result.output
    exported = invoke("keys", "export", ALICE).output
    blocks = exported.split("-----END PGP PUBLIC KEY BLOCK-----")[:-1]
    keys = [pgp.parse_public_key(b + "-----END PGP PUBLIC KEY BLOCK-----\n") for b in blocks]
    assert [k.is_revoked for k in keys] == [False, True]
    assert keys[1].fingerprint == old.fingerprint
    assert pgp.revocation_reasons(keys[1]) == ["laptop stolen"]
    statuses = [line.split("\t")[3] for line in invoke("keys", "list").output.splitlines()[1:]]
    assert sorted(statuses) == ["active", "revoked"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("keys", "rotate", "nobody@example.test"), "nobody@example.test has no key"),
        (
            ("keys", "revoke", "nobody@example.test", "--reason", "x"),
            "nobody@example.test has no key",
        ),
        (("keys", "export", "nobody@example.test"), "nobody@example.test has no key"),
        (("keys", "list", "nobody@example.test"), "nobody@example.test has no key"),
        (("keys", "rotate", "not-an-address"), "not a valid mail address"),
        (("keys", "revoke", ALICE, "--reason", "   "), "the revocation reason must be"),
    ],
)
def test_friendly_errors(
    invoke: Invoke, sessions: Sessions, ring: MasterKeyRing, args: tuple[str, ...], message: str
) -> None:
    _alice_key(sessions, ring)
    result = invoke(*args)
    assert result.exit_code == 1
    assert f"Error: {message}" in result.output
    assert "Traceback" not in result.output


def test_a_bad_ring_file_is_a_clear_error(
    invoke: Invoke,
    settings: Settings,
    sessions: Sessions,
    ring: MasterKeyRing,
) -> None:
    _alice_key(sessions, ring)
    ring_path(settings.data_dir).chmod(0o644)
    result = invoke("keys", "rotate", ALICE)
    assert result.exit_code == 1
    assert "readable by others" in result.output


def test_every_key_event_is_audited_with_actor_and_time(
    invoke: Invoke,
    sessions: Sessions,
    ring: MasterKeyRing,
) -> None:
    before = dt.datetime.now(dt.UTC)
    _alice_key(sessions, ring)  # first use, by the gateway's sink in real life
    assert invoke("keys", "rotate", ALICE).exit_code == 0
    assert invoke("keys", "revoke", ALICE, "--reason", "left the company").exit_code == 0
    assert invoke("keys", "rotate-master").exit_code == 0
    after = dt.datetime.now(dt.UTC)
    with sessions() as session:
        events = session.scalars(
            sa.select(AuditEvent)
            .where(
                sa.or_(
                    AuditEvent.action.startswith("key."), AuditEvent.action.startswith("master.")
                )
            )
            .order_by(AuditEvent.id)
        ).all()
    assert [(e.action, e.actor, e.target) for e in events] == [
        ("key.create", "test", ALICE),
        ("key.rotate", "cli", ALICE),
        ("key.revoke", "cli", ALICE),
        ("master.rotate", "cli", "master-key"),
        ("master.retire", "cli", "master-key"),
    ]
    for event in events:
        assert before - dt.timedelta(seconds=1) <= event.at <= after + dt.timedelta(seconds=1)
    assert "left the company" in events[2].detail
    assert "version 2 added as primary" in events[3].detail
