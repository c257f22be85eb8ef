"""Step `store-and-queue`: mailbox copies into mailboxes, relay copies into the outbound queue.

Runs inside the one transaction the whole submission commits in, so the `250`
is given only once every delivery is on disk, and a crash leaves all or nothing.
`store_all` writes the rows of the messages of a group commit
(gateway.groupcommit) in the session it is given, in a few statements for the
whole group: one SELECT of the hosted addresses, one UID reservation per folder
(gateway.imap.folders.allocate), one INSERT for the mailbox rows, one for the
queue rows and one for the mail log; nothing is parsed or encrypted here.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import autoresponder, db, driversql, lookups, mailbox, queue
from gateway.admin import maillog
from gateway.imap import folders
from gateway.models import Address, MailboxMessage, QueueItem
from gateway.pipeline.context import Copy, Handling, Submission
from gateway.pipeline.errors import RejectMessage
from gateway.pipeline.passthrough import is_pgp_mime
from gateway.smtp_codes import UNKNOWN_LOCAL_RECIPIENT

# Core statements: the rows need no ORM bookkeeping.
_MAILBOX = cast(sa.Table, MailboxMessage.__table__)
_QUEUE = cast(sa.Table, QueueItem.__table__)
# The IN list has one parameter per address (statements by count, compiled once each;
# an expanding parameter would be rendered anew for every group).
_MAX_LISTED = 16


@functools.cache
def _addresses_statement(count: int) -> sa.Select[str, int, int]:
    return sa.select(Address.address, Address.id, Address.account_id).where(
        Address.address.in_([sa.bindparam(f"b_address_{n}") for n in range(count)])
    )


def plain_copies(submission: Submission, *, already_encrypted: bool = False) -> None:
    """Mail the gateway does not encrypt: the same bytes for everyone, exactly as
    submitted (plus Received).

    A message the sender's own mail program encrypted as one RFC 3156 PGP/MIME message
    is stored for hosted recipients as encrypted, as the MX stores such mail from
    outside (gateway.inbound), so the webmail decrypts it for its reader; any other
    shape passed through (inline PGP, S/MIME) is stored and shown as it came. Its
    handling stays "passthrough": the gateway encrypted nothing (gateway.metrics)."""
    method: Literal["passthrough", "plain"] = "passthrough" if already_encrypted else "plain"
    submission.handling.extend(Handling(r, method) for r in submission.hosted + submission.external)
    if submission.hosted:
        encrypted = already_encrypted and is_pgp_mime(submission.raw)
        submission.copies.append(
            Copy("mailbox", list(submission.hosted), submission.raw, encrypted=encrypted)
        )
    submission.copies.extend(Copy("queue", [r], submission.raw) for r in submission.external)


def describe_copies(submission: Submission) -> None:
    """The list columns of every copy bound for a mailbox, read now, outside any transaction.

    An encrypted message's Sent copy is the recipients' copy itself (the same bytes,
    see `encrypt_copies`): its columns are read once for both."""
    read: dict[tuple[int, bool], dict[str, Any]] = {}
    for copy in submission.copies:
        if copy.destination == "queue" or copy.columns is not None:
            continue
        key = (id(copy.raw), copy.encrypted)
        if key not in read:
            read[key] = _columns(submission, copy)
        copy.columns = read[key]


def _columns(submission: Submission, copy: Copy) -> dict[str, Any]:
    return mailbox.message_values(
        copy.raw,
        queue_id=submission.queue_id,
        envelope_from=submission.envelope_from,
        now=submission.received_at,
        encrypted=copy.encrypted,
    )


def store_all(session: so.Session, submissions: Sequence[Submission]) -> None:
    """Write the rows of `submissions` in the caller's transaction, each kind of row in
    one statement for all of them: the writer's turn (SQLite's write lock, the folder
    rows' locks on PostgreSQL) is held while this runs, and each statement costs its
    round through SQLAlchemy and the driver whatever its number of rows. Raises
    RejectMessage, leaving the transaction to be rolled back, if a recipient is no
    longer hosted.

    The mail log entries (one per recipient, so at least one per message) are also
    the record that a message was committed: the SMTP server reads them when a worker
    process dies between its commit and its answer (`maillog.handled`), so they must
    stay in this transaction."""
    queued: list[dict[str, Any]] = []
    logged: list[dict[str, Any]] = []
    for submission in submissions:
        queued.extend(_queued_rows(submission))
        logged.extend(maillog.submission_rows(submission))
    conn = session.connection()  # once: each call through the session costs again
    stored = [(s, c) for s in submissions for c in s.copies if c.destination != "queue"]
    owners = _addresses(conn, {r for _s, c in stored for r in c.recipients})
    rows: list[dict[str, Any]] = []
    responders: list[tuple[Submission, Copy, _Owner]] = []
    for submission, copy in stored:
        folder = mailbox.SENT if copy.destination == "sent" else mailbox.INBOX
        # The header columns once per copy, not once per recipient.
        values = copy.columns if copy.columns is not None else _columns(submission, copy)
        for rcpt in copy.recipients:
            owner = owners.get(rcpt.strip().lower())
            if owner is None:
                raise RejectMessage(UNKNOWN_LOCAL_RECIPIENT.format(rcpt=rcpt))
            rows.append({**values, "address_id": owner.id, "folder": folder, "_account": owner})
            if copy.destination != "sent" and lookups.has_autoresponder(session, owner.id):
                responders.append((submission, copy, owner))
    # The rows that need no UID first: on PostgreSQL the UID reservation locks the
    # folder rows until the commit, and every other writer to those folders waits.
    db.insert_rows(conn, _QUEUE, queued)
    maillog.insert(conn, logged)
    _give_uids(session, rows)
    db.insert_rows(conn, _MAILBOX, rows)
    for submission, copy, owner in responders:
        address = session.get(Address, owner.id)
        if address is not None:
            autoresponder.respond(
                session,
                address,
                copy.raw,
                envelope_from=submission.envelope_from,
                now=submission.received_at,
                queue_id=submission.queue_id,
            )
    for submission in submissions:
        for finish in submission.finalizers:
            finish(session)


def _queued_rows(submission: Submission) -> list[dict[str, Any]]:
    return [
        queue.item_values(
            queue_id=submission.queue_id,
            mail_from=submission.envelope_from,
            rcpt_to=rcpt,
            raw=copy.raw,
            now=submission.received_at,
            sealed=copy.sealed,
        )
        for copy in submission.copies
        if copy.destination == "queue"
        for rcpt in copy.recipients
    ]


@dataclass(frozen=True, slots=True)
class _Owner:
    id: int
    account_id: int


def _addresses(conn: sa.Connection, wanted: set[str]) -> dict[str, _Owner]:
    """The hosted addresses among `wanted` (checked in the writing transaction itself)."""
    keys = sorted({w.strip().lower() for w in wanted})
    owners: dict[str, _Owner] = {}
    for first in range(0, len(keys), _MAX_LISTED):
        chunk = keys[first : first + _MAX_LISTED]
        values = {f"b_address_{n}": key for n, key in enumerate(chunk)}
        found = driversql.run(conn, _addresses_statement(len(chunk)), [values])
        owners.update((address, _Owner(id_, account_id)) for address, id_, account_id in found)
    return owners


def _give_uids(session: so.Session, rows: list[dict[str, Any]]) -> None:
    """Reserve each folder's UIDs in one statement, in (account, folder) order."""
    by_folder: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_folder[(row.pop("_account").account_id, row["folder"])].append(row)
    for (account_id, name), members in sorted(by_folder.items()):
        # allocate raises the folder's modseq and announces it to IMAP IDLE.
        folder_id, first = folders.allocate(session, account_id, name, len(members))
        for offset, row in enumerate(members):
            row["folder_id"] = folder_id
            row["uid"] = first + offset
