"""The per-message lookups are cached, and a change still reaches the next message.

In the process that makes it (the CLI, the admin console and the portal all write
through SQLAlchemy sessions), a change applies to the very next message; made by
another process, it applies once the cached answer is older than
`[database] lookup_cache_seconds`. The store step writes a message's rows in a
few statements and still gives each folder increasing UIDs without gaps, also
when several messages share a transaction and when several processes deliver at
once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import accounts, audit, autoresponder, db, lookups, rawheaders
from gateway.admin import Actor
from gateway.admin import domains as admin_domains
from gateway.admin import policy as admin_policy
from gateway.imap import folders
from gateway.models import (
    Account,
    Address,
    Autoresponder,
    MailboxMessage,
    MailFolder,
    MailLogEntry,
)
from gateway.pipeline import ClientInfo, RejectMessage, Sender, Submission, submit
from gateway.pipeline.context import Copy, Handling
from gateway.pipeline.deliver import store_all
from gateway.pipeline.keys import resolve_keys
from gateway.runtime import Runtime
from gateway.smtp_codes import UNKNOWN_LOCAL_RECIPIENT
from gateway.smtp_server import hosted_refusal
from gateway.timeutil import utcnow
from keystore import store
from keystore.models import StoredKey
from tests.conftest import CHEAP_ARGON2, TEST_DATABASE_URL
from tests.gnupg import GnuPG

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
ADMIN = Actor("test-admin")


def account_id(runtime: Runtime, address: str) -> int:
    with db.read_only(runtime.sessions) as session:
        row = accounts.find_address(session, address)
        assert row is not None
        return row.account_id


def send(runtime: Runtime, rcpt: str, subject: str = "hello", sender: str = ALICE) -> str:
    raw = (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}-{utcnow().timestamp()}@example.test>\r\n\r\n"
        "The body.\r\n"
    ).encode()
    submission = Submission(
        sender=Sender(account_id=account_id(runtime, sender), address=sender),
        envelope_from=sender,
        recipients=[rcpt],
        raw=raw,
        client=ClientInfo(helo="client.test", ip="192.0.2.1", protocol="ESMTPSA"),
        received_at=utcnow(),
    )
    return submit(runtime, submission)


def stored(runtime: Runtime, queue_id: str, address: str) -> MailboxMessage:
    with db.read_only(runtime.sessions) as session:
        row = session.scalar(
            sa.select(MailboxMessage)
            .join(MailboxMessage.address)
            .where(
                MailboxMessage.queue_id == queue_id,
                MailboxMessage.folder == folders.INBOX,
                Address.address == address,
            )
        )
        assert row is not None, f"no copy of {queue_id} for {address}"
        return row


def inbox_uids(runtime: Runtime, address: str) -> tuple[list[int], int]:
    """The INBOX's UIDs, in order, and its UIDNEXT."""
    with db.read_only(runtime.sessions) as session:
        owner = accounts.find_address(session, address)
        assert owner is not None
        folder = session.scalar(
            sa.select(MailFolder).where(
                MailFolder.account_id == owner.account_id, MailFolder.name == "INBOX"
            )
        )
        assert folder is not None
        uids = session.scalars(
            sa.select(MailboxMessage.uid)
            .where(MailboxMessage.folder_id == folder.id)
            .order_by(MailboxMessage.uid)
        )
        return [u for u in uids if u is not None], folder.uid_next


def current_key(runtime: Runtime, address: str) -> StoredKey:
    with db.read_only(runtime.sessions) as session:
        row = store.current_key(session, address)
        assert row is not None
        return row


# --- the cache itself -------------------------------------------------------------------


def test_cache_keeps_an_answer_for_its_lifetime_and_drops_one_loaded_across_a_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(lookups.time, "monotonic", lambda: now[0])
    cache: lookups.TtlCache[str, int] = lookups.TtlCache()
    loads: list[int] = []

    def load(value: int) -> int:
        loads.append(value)
        return value

    assert cache.get("k", 5.0, lambda: load(1)) == 1
    now[0] += 4.9
    assert cache.get("k", 5.0, lambda: load(2)) == 1  # still fresh: not loaded again
    now[0] += 0.2
    assert cache.get("k", 5.0, lambda: load(3)) == 3  # expired: loaded again
    assert cache.get("k", 0, lambda: load(4)) == 4  # lifetime 0: always loaded
    assert loads == [1, 3, 4]

    def racing() -> int:
        cache.clear()  # a change commits while this load runs
        return 5

    assert cache.get("other", 5.0, racing) == 5
    assert cache.get("other", 5.0, lambda: 6) == 6  # the racing answer was not kept


def test_cache_is_bounded() -> None:
    cache: lookups.TtlCache[int, int] = lookups.TtlCache(maxsize=3)
    for i in range(10):
        cache.get(i, 60.0, lambda i=i: i)
    assert len(cache) == 3


# --- a change applies to the next message ----------------------------------------------


def test_changes_made_in_this_process_apply_to_the_next_message(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    cache = lookups.of(runtime.sessions)
    assert cache is not None and cache.ttl > 0
    cache.ttl = 3600.0  # nothing expires during the test: only invalidation can help

    assert not stored(runtime, send(runtime, BOB, "first"), BOB).encrypted
    assert not stored(runtime, send(runtime, BOB, "second"), BOB).encrypted  # from the caches

    # An admin rule for the recipient's domain (the console and `sealgate rule add`).
    with db.transaction(runtime.sessions) as session:
        admin_policy.add_rule(session, "example.test", actor=ADMIN)
    assert stored(runtime, send(runtime, BOB, "rule"), BOB).encrypted
    with db.transaction(runtime.sessions) as session:
        admin_policy.remove_rule(session, "example.test", actor=ADMIN)
    assert not stored(runtime, send(runtime, BOB, "no rule"), BOB).encrypted

    # The account's "always encrypt" (the portal's settings page).
    with db.transaction(runtime.sessions) as session:
        account = session.get(Account, account_id(runtime, ALICE))
        assert account is not None
        account.always_encrypt = True
    assert stored(runtime, send(runtime, BOB, "always"), BOB).encrypted
    with db.transaction(runtime.sessions) as session:
        account = session.get(Account, account_id(runtime, ALICE))
        assert account is not None
        account.always_encrypt = False

    # The admin policy's subject tag.
    with db.transaction(runtime.sessions) as session:
        admin_policy.set_values(
            session, runtime.settings, {"subject_tag": "[secret]"}, actor=ADMIN, now=utcnow()
        )
    assert stored(runtime, send(runtime, BOB, "[secret] tagged"), BOB).encrypted
    assert not stored(runtime, send(runtime, BOB, "[encrypt] old tag"), BOB).encrypted


def test_a_new_address_and_a_new_alias_receive_the_next_message(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    cache = lookups.of(runtime.sessions)
    assert cache is not None
    cache.ttl = 3600.0
    with pytest.raises(RejectMessage, match=r"5\.1\.1"):
        send(runtime, CAROL)
    with db.transaction(runtime.sessions) as session:
        bob = accounts.find_account(session, BOB)
        assert bob is not None
        accounts.add_address(session, runtime.hasher, CAROL, bob, "carol-pw-123", actor="test")
    queue_id = send(runtime, CAROL)
    assert stored(runtime, queue_id, CAROL).size > 0


def test_an_autoresponder_switched_on_answers_the_next_message(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    cache = lookups.of(runtime.sessions)
    assert cache is not None
    cache.ttl = 3600.0
    send(runtime, BOB, "before")
    with db.transaction(runtime.sessions) as session:
        bob = accounts.find_address(session, BOB)
        assert bob is not None
        session.add(
            Autoresponder(address_id=bob.id, name="away", subject="Away:", body="Back soon.")
        )
        session.flush()
        responder = session.scalar(
            sa.select(Autoresponder).where(Autoresponder.address_id == bob.id)
        )
        assert responder is not None
        autoresponder.activate(session, responder)
    send(runtime, BOB, "after")
    with db.read_only(runtime.sessions) as session:
        subjects = list(
            session.scalars(
                sa.select(MailboxMessage.subject)
                .join(MailboxMessage.address)
                .where(Address.address == ALICE)
            )
        )
    assert subjects == ["Away: after"]


def test_a_rotated_key_encrypts_the_next_message(
    runtime: Runtime, mail_users: dict[str, str], tmp_path: Path
) -> None:
    cache = lookups.of(runtime.sessions)
    assert cache is not None
    cache.ttl = 3600.0
    gpg = GnuPG(tmp_path / "gnupg")
    (tmp_path / "gnupg").mkdir(mode=0o700)

    def key_ids(queue_id: str) -> set[str]:
        raw = stored(runtime, queue_id, BOB).raw
        armored = re.search(rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----", raw, re.S)
        assert armored is not None
        return set(re.findall(r"keyid ([0-9A-F]{16})", gpg.list_packets(armored.group(0))))

    def subkey_of(address: str) -> str:
        return current_key(runtime, address).subkey_id.upper()

    old = subkey_of(BOB)
    assert old in key_ids(send(runtime, BOB, "[encrypt] before"))
    with db.transaction(runtime.sessions) as session:
        store.rotate(
            session, runtime.ring.get(), BOB, utcnow(), events=audit.key_event_sink("test")
        )
    new = subkey_of(BOB)
    assert new != old
    found = key_ids(send(runtime, BOB, "[encrypt] after"))
    assert new in found and old not in found


def test_a_rotated_sender_key_signs_the_next_message(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """The sender's key stays unlocked between messages (keystore.unlocked); a new
    key made in this process must still sign the very next one."""
    cache = lookups.of(runtime.sessions)
    assert cache is not None
    cache.ttl = cache.signing_keys.lifetime = 3600.0

    def signer_of(subject: str) -> str:
        submission = Submission(
            sender=Sender(account_id=account_id(runtime, ALICE), address=ALICE),
            envelope_from=ALICE,
            recipients=[BOB],
            raw=f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: {subject}\r\n\r\nHi.\r\n".encode(),
            client=ClientInfo(helo="client.test", ip="192.0.2.1", protocol="ESMTPSA"),
            received_at=utcnow(),
            hosted=[BOB],
        )
        _keys, sender = resolve_keys(runtime, submission, {})
        assert sender.signer is not None
        return sender.signer.fingerprint

    def current(address: str) -> str:
        return current_key(runtime, address).fingerprint.upper()

    old = current(ALICE)
    assert signer_of("[encrypt] one") == old
    assert len(cache.signing_keys) == 1
    assert signer_of("[encrypt] two") == old
    with db.transaction(runtime.sessions) as session:
        store.rotate(
            session, runtime.ring.get(), ALICE, utcnow(), events=audit.key_event_sink("test")
        )
    assert len(cache.signing_keys) == 0  # the key table changed: every unlocked key went
    new = current(ALICE)
    assert new != old
    assert signer_of("[encrypt] three") == new


# --- another process -------------------------------------------------------------------


def test_a_change_from_another_process_applies_within_the_lifetime(
    runtime: Runtime,
    mail_users: dict[str, str],
    test_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = lookups.of(runtime.sessions)
    assert cache is not None
    cache.ttl = 60.0
    clock = [1000.0]
    monkeypatch.setattr(lookups.time, "monotonic", lambda: clock[0])

    assert not stored(runtime, send(runtime, BOB, "first"), BOB).encrypted
    done = subprocess.run(
        [sys.executable, "-m", "sealgate", "rule", "add", "example.test"],
        env={**os.environ, **test_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    clock[0] += 30.0  # within the lifetime the answer read before may still be used
    assert not stored(runtime, send(runtime, BOB, "cached"), BOB).encrypted
    clock[0] += 31.0  # past it, the rule applies
    assert stored(runtime, send(runtime, BOB, "after"), BOB).encrypted


def test_the_header_split_shared_by_the_steps_ends_with_the_message(
    runtime: Runtime, mail_users: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The steps share one split of each header block while a message is prepared; the
    clear header block of a message to be encrypted is not kept once it is through."""
    kept: list[int] = []
    forget = rawheaders.forget_cached

    def counting_forget() -> None:
        kept.append(rawheaders.cached_blocks())
        forget()

    monkeypatch.setattr(rawheaders, "forget_cached", counting_forget)
    send(runtime, BOB, "[encrypt] the subject is secret")
    assert kept and kept[-1] > 0  # the steps shared splits while the message was prepared
    assert rawheaders.cached_blocks() == 0


# --- the store step's writes -------------------------------------------------------------


def _prepared(runtime: Runtime, subject: str) -> Submission:
    raw = f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: {subject}\r\n\r\nBody.\r\n".encode()
    submission = Submission(
        sender=Sender(account_id=account_id(runtime, ALICE), address=ALICE),
        envelope_from=ALICE,
        recipients=[BOB],
        raw=raw,
        client=ClientInfo(helo="client.test", ip="192.0.2.1", protocol="ESMTPSA"),
        received_at=utcnow(),
        hosted=[BOB],
    )
    submission.copies.append(Copy("mailbox", [BOB], raw))
    submission.copies.append(Copy("sent", [ALICE], raw))
    submission.handling.append(Handling(BOB, "plain"))
    return submission


def test_messages_sharing_a_transaction_get_consecutive_uids_and_a_rollback_leaves_no_gap(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    send(runtime, BOB, "one")
    group = [_prepared(runtime, f"batch {i}") for i in range(3)]
    with db.transaction(runtime.sessions) as session:
        store_all(session, group)  # each kind of row in one statement for the group
    with pytest.raises(RuntimeError, match="crash"), db.transaction(runtime.sessions) as session:
        store_all(session, [_prepared(runtime, "lost")])
        raise RuntimeError("crash before commit")
    gone = _prepared(runtime, "to someone not hosted")
    gone.copies[0].recipients.append("nobody@example.test")
    with pytest.raises(RejectMessage), db.transaction(runtime.sessions) as session:
        store_all(session, [_prepared(runtime, "lost too"), gone])
    send(runtime, BOB, "last")
    uids, uid_next = inbox_uids(runtime, BOB)
    assert uids == [1, 2, 3, 4, 5]
    assert uid_next == 6
    with db.read_only(runtime.sessions) as session:
        sent = session.scalars(
            sa.select(MailboxMessage.uid).where(MailboxMessage.folder == folders.SENT)
        ).all()
        logged = session.scalars(
            sa.select(MailLogEntry.queue_id).where(
                MailLogEntry.queue_id.in_([s.queue_id for s in group])
            )
        ).all()
    assert sorted(u for u in sent if u is not None) == [1, 2, 3]
    assert sorted(logged) == sorted(s.queue_id for s in group)  # one entry per recipient


WRITER = textwrap.dedent(
    """
    import sys
    from gateway.pipeline import ClientInfo, Sender, Submission, submit
    from gateway.runtime import Runtime
    from gateway.settings import load_settings
    from gateway.timeutil import utcnow

    account_id, count, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    runtime = Runtime.open(load_settings())
    for i in range(count):
        head = "From: alice@example.test\\r\\nTo: bob@example.test\\r\\n"
        raw = head + f"Subject: {name} {i}\\r\\n\\r\\nx\\r\\n"
        submit(runtime, Submission(
            sender=Sender(account_id=account_id, address="alice@example.test"),
            envelope_from="alice@example.test",
            recipients=["bob@example.test"],
            raw=raw.encode(),
            client=ClientInfo(helo="h", ip="192.0.2.1", protocol="ESMTPSA"),
            received_at=utcnow(),
        ))
    runtime.close()
    """
)


def test_several_processes_delivering_at_once_leave_no_gap_and_no_duplicate_uid(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    per_process, processes = 8, 3
    env = {**os.environ, **test_env, **CHEAP_ARGON2}
    if TEST_DATABASE_URL:
        env["SEALGATE_DATABASE_URL"] = TEST_DATABASE_URL
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(account_id(runtime, ALICE)),
                str(per_process),
                f"p{n}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
    uids, uid_next = inbox_uids(runtime, BOB)
    total = per_process * processes
    assert uids == list(range(1, total + 1))
    assert uid_next == total + 1


def test_the_rows_of_one_message_take_a_few_statements(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """The store step writes with one INSERT per table, whatever the number of copies."""
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(" ".join(statement.split()[:3]).replace('"', ""))

    send(runtime, BOB, "[encrypt] makes the folders (INBOX, Sent)")
    submission = _prepared(runtime, "counted")
    submission.copies.append(Copy("queue", ["x@elsewhere.test"], submission.raw))
    submission.copies.append(Copy("queue", ["y@elsewhere.test"], submission.raw))
    with db.transaction(runtime.sessions) as session:
        sa.event.listen(runtime.engine, "before_cursor_execute", count)
        try:
            store_all(session, [submission])
            session.flush()
        finally:
            sa.event.remove(runtime.engine, "before_cursor_execute", count)
    inserts = sorted(s for s in statements if s.startswith("INSERT"))
    assert inserts == [
        "INSERT INTO mail_log",
        "INSERT INTO mailbox_messages",
        "INSERT INTO outbound_queue",
    ]
    # The addresses, a UID reservation per folder (INBOX, Sent), the modseq, 3 INSERTs,
    # (on SQLite) BEGIN IMMEDIATE, (on PostgreSQL) the NOTIFY for IMAP IDLE.
    assert len(statements) <= 9, statements


def test_without_installed_caches_every_answer_is_read(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    factory = db.session_factory(runtime.engine)
    assert lookups.of(factory) is None
    with lookups.reader(factory) as known:
        assert known.destination(BOB) == lookups.Destination(hosted=True, address=BOB)
        assert known.destination("x@elsewhere.test") == lookups.Destination(hosted=False)
        assert ALICE in known.sender(account_id(runtime, ALICE)).owned


def test_received_at_is_kept(runtime: Runtime, mail_users: dict[str, str]) -> None:
    submission = _prepared(runtime, "dated")
    submission.received_at = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
    with db.transaction(runtime.sessions) as session:
        store_all(session, [submission])
    row = stored(runtime, submission.queue_id, BOB)
    assert row.received_at == submission.received_at
    assert row.subject == "dated" and row.from_addr == ALICE and not row.encrypted


def test_rcpt_answers_come_from_the_cache_and_a_disabled_domain_applies_at_once(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """The SMTP servers ask at every RCPT; a cached answer costs no statement (and no
    thread), and disabling the domain in this process refuses the very next RCPT."""
    cache = lookups.of(runtime.sessions)
    assert cache is not None
    cache.ttl = 3600.0
    first = asyncio.run(lookups.destination_at_rcpt(runtime.sessions, BOB))
    assert first == lookups.Destination(hosted=True, address=BOB)
    assert hosted_refusal(first, BOB) is None

    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    sa.event.listen(runtime.engine, "before_cursor_execute", count)
    try:
        again = asyncio.run(lookups.destination_at_rcpt(runtime.sessions, " Bob@Example.TEST"))
    finally:
        sa.event.remove(runtime.engine, "before_cursor_execute", count)
    assert again == first and statements == []

    with db.transaction(runtime.sessions) as session:
        admin_domains.set_disabled(session, "example.test", True, actor=ADMIN, now=utcnow())
    disabled = asyncio.run(lookups.destination_at_rcpt(runtime.sessions, BOB))
    assert disabled.disabled_domain == "example.test"
    refusal = hosted_refusal(disabled, BOB)
    assert refusal is not None and refusal.startswith("550 5.7.1")
    unknown = asyncio.run(lookups.destination_at_rcpt(runtime.sessions, "nobody@example.test"))
    assert hosted_refusal(unknown, "nobody@example.test") == UNKNOWN_LOCAL_RECIPIENT.format(
        rcpt="nobody@example.test"
    )
    outside = asyncio.run(lookups.destination_at_rcpt(runtime.sessions, "x@elsewhere.test"))
    assert not outside.hosted and hosted_refusal(outside, "x@elsewhere.test") is None
