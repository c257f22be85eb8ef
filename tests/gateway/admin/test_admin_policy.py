"""The admin policy in the database is what new mail gets; the settings file stays the default.

Threat: an admin tightens the policy in the console and mail keeps going out
under the old rules; or a stored value makes the server spend unbounded Argon2.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest
import sqlalchemy as sa

from gateway import accounts, db
from gateway.admin import Actor, AdminError, policy
from gateway.models import PolicySetting, QueueItem, SecureLink, SecureMessage
from gateway.pipeline import ClientInfo, Sender, Submission, submit
from gateway.runtime import Runtime
from gateway.settings import SECUREPAGE_MAX_MEMORY_COST

ADMIN = Actor("root@example.test", ip="192.0.2.1")
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def send(runtime: Runtime, subject: str, rcpt: str = "carol@partner.example") -> str:
    with db.read_only(runtime.sessions) as session:
        alice = accounts.find_account(session, "alice@example.test")
        assert alice is not None
        alice_id = alice.id
    raw = f"From: alice@example.test\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nhello\r\n"
    return submit(
        runtime,
        Submission(
            sender=Sender(alice_id, "alice@example.test"),
            envelope_from="alice@example.test",
            recipients=[rcpt],
            raw=raw.encode(),
            client=ClientInfo("test", "127.0.0.1", "ESMTPSA"),
            received_at=NOW,
        ),
    )


def test_new_mail_gets_the_policys_subject_tag_lifetime_and_argon2_cost(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    with db.transaction(runtime.sessions) as session:
        policy.set_values(
            session,
            runtime.settings,
            {
                "subject_tag": "[vertraulich]",
                "securepage_valid_days": "7",
                "securepage_kdf_memory_cost": "512",
                "securepage_kdf_time_cost": "2",
            },
            actor=ADMIN,
            now=NOW,
        )
    # The old tag no longer asks for encryption: the message leaves as it came.
    plain = send(runtime, "[encrypt] hello")
    # The new one does: a secure page under the policy's lifetime and cost.
    sealed = send(runtime, "[vertraulich] hello")
    with db.read_only(runtime.sessions) as session:
        rows = {r.queue_id: r for r in session.scalars(sa.select(QueueItem))}
        assert not rows[plain].sealed and b"[encrypt] hello" in rows[plain].raw
        assert rows[sealed].sealed
        message = session.scalar(sa.select(SecureMessage).where(SecureMessage.queue_id == sealed))
        assert message is not None
        assert (message.kdf_memory_cost, message.kdf_time_cost) == (512, 2)
        link = session.scalar(sa.select(SecureLink))
        assert link is not None and link.expires_at == NOW + dt.timedelta(days=7)


def test_a_domain_rule_encrypts_mail_to_that_domain(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    with db.transaction(runtime.sessions) as session:
        policy.add_rule(session, "partner.example", actor=ADMIN)
    queue_id = send(runtime, "no tag at all")
    with db.read_only(runtime.sessions) as session:
        assert session.scalar(sa.select(SecureMessage.queue_id)) == queue_id


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("securepage_kdf_memory_cost", str(SECUREPAGE_MAX_MEMORY_COST + 1), "must be between"),
        ("securepage_kdf_time_cost", "0", "must be between"),
        ("securepage_kdf_parallelism", "65", "must be between"),
        ("securepage_valid_days", "366", "must be between"),
        ("securepage_valid_days", "seven", "whole number"),
        ("subject_tag", "x" * 65, "at most 64"),
        ("subject_tag", "tag\r\nBcc: x@y", "printable"),
        ("new_account_language", "it", "one of"),
        ("new_account_always_encrypt", "maybe", "on or off"),
    ],
)
def test_values_outside_their_bounds_are_refused(
    runtime: Runtime, key: str, value: str, error: str
) -> None:
    with db.transaction(runtime.sessions) as session:
        with pytest.raises(AdminError, match=error):
            policy.set_values(session, runtime.settings, {key: value}, actor=ADMIN, now=NOW)
        assert session.scalar(sa.select(sa.func.count()).select_from(PolicySetting)) == 0


def test_a_tampered_stored_value_falls_back_to_the_default(runtime: Runtime) -> None:
    with db.transaction(runtime.sessions) as session:
        session.add(PolicySetting(key="securepage_kdf_memory_cost", value="99999999999"))
        session.add(PolicySetting(key="securepage_valid_days", value='"x"'))
    with db.read_only(runtime.sessions) as session:
        effective = policy.effective(session, runtime.settings)
    assert effective == policy.defaults(runtime.settings)


POLICY_KEYS = sorted(policy.FIELDS)
ODD_VALUES = [
    "on",
    "off",
    "yes",
    "0",
    "de",
    "fr",
    "xx",
    "[x]",
    "8",
    "65536",
    "",
    " 7 ",
    "-1",
    "1e3",
    "\x00",
    "\u202e",
    "365",
    "366",
    str(2**40),
    "true",
    "Tag\r\nBcc: x",
]


def random_changes(rng: random.Random) -> dict[str, str]:
    """A few keys with odd values: numbers around every bound, text, control characters."""
    changes = {}
    for key in rng.sample(POLICY_KEYS, rng.randint(1, 4)):
        kind = rng.random()
        if kind < 0.4:
            changes[key] = str(rng.choice([rng.randint(-3, 20), rng.randint(0, 2**23)]))
        elif kind < 0.7:
            changes[key] = rng.choice(ODD_VALUES)
        else:
            changes[key] = "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 70)))
    return changes


def test_whatever_an_admin_types_the_policy_in_force_stays_within_bounds(
    runtime: Runtime,
) -> None:
    """Invariant, over 150 seeded random writes applied one after another: each is either
    refused (nothing changes) or stored within every bound, and the policy read back always
    fits together (lifetimes ordered, enough memory per lane)."""
    rng = random.Random(12)
    accepted = 0
    for _ in range(150):
        changes = random_changes(rng)
        with db.transaction(runtime.sessions) as session:
            before = policy.effective(session, runtime.settings)
            try:
                policy.set_values(session, runtime.settings, changes, actor=ADMIN, now=NOW)
                accepted += 1
            except AdminError:
                assert policy.effective(session, runtime.settings) == before
        with db.read_only(runtime.sessions) as session:
            current = policy.effective(session, runtime.settings)
        assert 1 <= current.securepage_valid_days <= current.securepage_max_valid_days <= 365
        assert 1 <= current.securepage_kdf_time_cost <= 16
        assert 1 <= current.securepage_kdf_parallelism <= 64
        assert 8 * current.securepage_kdf_parallelism <= current.securepage_kdf_memory_cost
        assert current.securepage_kdf_memory_cost <= SECUREPAGE_MAX_MEMORY_COST
        assert len(current.subject_tag) <= 64 and current.subject_tag.isprintable()
        assert current.new_account_language in ("de", "en", "fr")
    assert accepted >= 10  # the generator reaches valid values too, not only refusals
