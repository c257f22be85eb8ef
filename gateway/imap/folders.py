"""Folders, UIDs and flags of the hosted mailboxes, kept consistent for every writer.

Whoever stores or moves a message (the SMTP pipeline, the webmail, IMAP) just
sets `MailboxMessage.folder`; at flush time `allocate` resolves the folder row
of the owner's account and gives the message the folder's next UID with an
UPDATE ... RETURNING in the writer's own transaction. Row locks make that safe
across processes on PostgreSQL; SQLite has one writer at a time anyway. Each
change also raises the folder's `modseq`, and on PostgreSQL queues a NOTIFY
(delivered at commit) that wakes IMAP IDLE in every `serve` process.
"""

from __future__ import annotations

import secrets
import weakref
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.dialects import postgresql, sqlite

from gateway import driversql
from gateway.models import Address, MailboxMessage, MailFolder
from gateway.timeutil import utcnow

INBOX = "INBOX"
SENT = "Sent"
DRAFTS = "Drafts"
TRASH = "Trash"
# Folder name -> RFC 6154 attribute; INBOX has none (it is special by name).
SPECIAL_FOLDERS = {INBOX: "", SENT: "Sent", DRAFTS: "Drafts", TRASH: "Trash"}
NOTIFY_CHANNEL = "sealgate_mail"
DELIMITER = "/"
MAX_NAME_LENGTH = 200
# What LIST shows of an account: its folders and each level above one ("a" of "a/b").
# pymap answered LIST at about half a millisecond an entry on the event loop, every
# listener of serve waiting meanwhile: unbounded, one client's folders (a few thousand
# CREATEs a minute) held every other for seconds, then minutes. Written as bytes
# (`listlines`) an entry costs about a fiftieth of that, but a LIST still grows with
# the folders, and so does every client's sync of them: the bound stays.
MAX_FOLDERS = 1000
# A message's flags together, as stored: a client cannot grow a row.
MAX_FLAGS_LENGTH = 4000
# One keyword. Dovecot refuses past 50 (mail_max_keyword_length), so no mail program
# counts on longer ones; four times that leaves room for keywords brought over from
# servers without a limit, and MAX_FLAGS_LENGTH still holds 19 of this length.
MAX_KEYWORD_LENGTH = 200

SEEN = "\\Seen"
ANSWERED = "\\Answered"
FLAGGED = "\\Flagged"
DELETED = "\\Deleted"
DRAFT = "\\Draft"
SYSTEM_FLAGS = frozenset({SEEN, ANSWERED, FLAGGED, DELETED, DRAFT})


class FolderError(ValueError):
    """A folder request that cannot be carried out; the text is safe to show."""


class FolderLimitError(FolderError):
    """A folder request refused because the account would pass MAX_FOLDERS."""


class FlagsError(ValueError):
    """Flags a message cannot hold (a limit, RFC 9051 LIMIT); the text is safe to show."""


def parse_flags(stored: str) -> frozenset[str]:
    return frozenset(stored.split())


def format_flags(flags: Iterable[str]) -> str:
    """System flags first, then keywords, each once; bounded so a client cannot grow a row.

    A backslash flag that is no system flag a client may set is left out: `\\Recent`
    is the server's to give (RFC 3501 §2.3.2), and an invented one (`\\Bogus`) would
    read back as a system flag no program knows. A keyword over MAX_KEYWORD_LENGTH, or
    flags over MAX_FLAGS_LENGTH together, are refused (FlagsError), never cut: the
    client would believe kept what is not."""
    wanted = {f for f in flags if not f.startswith("\\") or f in SYSTEM_FLAGS}
    if any(len(f) > MAX_KEYWORD_LENGTH for f in wanted):
        raise FlagsError(f"Keyword longer than {MAX_KEYWORD_LENGTH} characters.")
    stored = " ".join(sorted(wanted, key=lambda f: (f not in SYSTEM_FLAGS, f.lower())))
    if len(stored) > MAX_FLAGS_LENGTH:
        raise FlagsError(f"Flags of one message longer than {MAX_FLAGS_LENGTH} characters.")
    return stored


def is_seen(stored: str) -> bool:
    return SEEN in parse_flags(stored)


def check_name(name: str) -> str:
    """A user folder name as stored; refuses what IMAP or the webmail could not show.

    A name is stored exactly as given, or refused: white space around it is refused
    rather than trimmed, or an IMAP client told OK for `" spaced "` could not find the
    folder by that name (the webmail trims what its users type before it asks)."""
    if name != name.strip():
        raise FolderError("a folder name does not begin or end with white space")
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise FolderError("a folder name is 1 to 200 printable characters")
    if name.upper() == INBOX and name != INBOX:
        return INBOX
    parts = name.split(DELIMITER)
    if any(not p.strip() for p in parts):
        raise FolderError("a folder name has no empty part between slashes")
    return name


def listed_names(names: Iterable[str]) -> set[str]:
    """Every name LIST shows for these folders: each one, and each level above it."""
    shown: set[str] = set()
    for name in names:
        parts = name.split(DELIMITER)
        shown.update(DELIMITER.join(parts[:depth]) for depth in range(1, len(parts) + 1))
    return shown


def check_room(names: Iterable[str]) -> None:
    """Refuse folders (FolderLimitError) that LIST would show as more than MAX_FOLDERS."""
    if len(listed_names(names)) > MAX_FOLDERS:
        raise FolderLimitError(
            f"an account has at most {MAX_FOLDERS} folders, each level of a name counted"
        )


def new_uid_validity() -> int:
    return secrets.randbelow(2**31 - 2) + 1


def ensure_folders(session: so.Session, account_id: int, *names: str) -> None:
    """Create the special folders (and `names`) of the account if they are missing.

    INSERT ... ON CONFLICT DO NOTHING, so two processes racing to create the
    same folder both succeed and share one row.
    """
    wanted = dict(SPECIAL_FOLDERS)
    for name in names:
        wanted.setdefault(name, "")
    dialect = session.get_bind().dialect.name
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    conn = session.connection()
    existing = set(
        conn.execute(
            sa.select(MailFolder.name).where(
                MailFolder.account_id == account_id, MailFolder.name.in_(list(wanted))
            )
        ).scalars()
    )
    for name, special in wanted.items():
        if name in existing:
            continue
        conn.execute(
            insert(MailFolder.__table__)
            .values(
                account_id=account_id,
                name=name,
                special_use=special,
                uid_validity=new_uid_validity(),
                uid_next=1,
                modseq=1,
                subscribed=True,
                created_at=now,
            )
            .on_conflict_do_nothing()
        )


def _account_of(session: so.Session, message: MailboxMessage) -> int:
    state = sa.inspect(message)
    address = state.attrs.address.loaded_value
    if isinstance(address, Address) and address.account_id is not None:
        return address.account_id
    account_id = (
        session.connection()
        .execute(sa.select(Address.account_id).where(Address.id == message.address_id))
        .scalar_one()
    )
    return int(account_id)


# Built once: constructing the statement cost more than running it.
_RESERVE = (
    sa.update(MailFolder)
    .where(
        MailFolder.account_id == sa.bindparam("b_account"),
        MailFolder.name == sa.bindparam("b_name"),
    )
    .values(uid_next=MailFolder.uid_next + sa.bindparam("b_count"), modseq=MailFolder.modseq + 1)
    .returning(MailFolder.id, MailFolder.uid_next)
)
# On PostgreSQL the same statement announces the folder (the notification goes out at
# commit, as `announce`'s does): one round trip fewer while the folder row is locked.
_RESERVE_AND_ANNOUNCE = _RESERVE.returning(
    sa.func.pg_notify(NOTIFY_CHANNEL, sa.cast(MailFolder.id, sa.Text))
)
_BUMP = (
    sa.update(MailFolder)
    .where(MailFolder.id.in_(sa.bindparam("b_ids", expanding=True)))
    .values(modseq=MailFolder.modseq + 1)
)


def allocate(session: so.Session, account_id: int, name: str, count: int = 1) -> tuple[int, int]:
    """Reserve `count` consecutive UIDs in the account's folder `name` (made if missing);
    returns (folder id, first UID). On PostgreSQL the folder is announced too (see
    `announce`): the caller need not.

    One UPDATE ... RETURNING: its row lock (PostgreSQL) or the writer lock (SQLite)
    holds until the writer's commit, and a rollback returns the UIDs with it, so each
    folder's UIDs stay increasing and without gaps whatever the number of writers.
    Callers that reserve in several folders do it in (account, name) order, so two
    writers never wait on each other's folders crosswise.
    """
    if count < 1:
        raise ValueError("count must be positive")
    conn = session.connection()
    reserve = _RESERVE_AND_ANNOUNCE if conn.dialect.name == "postgresql" else _RESERVE
    values = {"b_account": account_id, "b_name": name, "b_count": count}
    for attempt in range(2):
        # Through the driver (gateway.driversql): every stored message passes here.
        reserved = driversql.run(conn, reserve, [values])
        if reserved:
            return int(reserved[0][0]), int(reserved[0][1]) - count
        if attempt == 0:
            ensure_folders(session, account_id, name)
    raise RuntimeError(f"folder {name!r} could not be created")  # pragma: no cover


def _place(session: so.Session, message: MailboxMessage, touched: set[int]) -> None:
    """Give the message the next UID of the folder it names (creating the folder if need be)."""
    folder_id, uid = allocate(session, _account_of(session, message), message.folder or INBOX)
    message.folder_id = folder_id
    message.uid = uid
    touched.add(folder_id)


def renumber(session: so.Session, message: MailboxMessage) -> None:
    """Give a stored message whose bytes were rewritten a new UID in its folder.

    IMAP promises that the message a UID names never changes (RFC 9051 §2.3.1.1):
    programs cache bodies by UID and never fetch them again. Under a new UID they see
    the old one expunged and the rewritten message arrive, as after a move.
    """
    with session.no_autoflush:
        _place(session, message, set())


def _changed(message: MailboxMessage, attr: str) -> bool:
    return bool(sa.inspect(message).attrs[attr].history.has_changes())


def before_flush(session: so.Session, _context: Any, _instances: Any) -> None:
    """Allocate UIDs for messages entering a folder; note which folders changed."""
    touched: set[int] = set()
    with session.no_autoflush:
        for obj in list(session.new):
            if isinstance(obj, MailboxMessage):
                _place(session, obj, touched)
        for obj in list(session.dirty):
            if not isinstance(obj, MailboxMessage):
                continue
            if _changed(obj, "folder"):
                if obj.folder_id is not None:
                    touched.add(obj.folder_id)
                _place(session, obj, touched)
            elif _changed(obj, "flags") and obj.folder_id is not None:
                touched.add(obj.folder_id)
        for obj in list(session.deleted):
            if isinstance(obj, MailboxMessage) and obj.folder_id is not None:
                touched.add(obj.folder_id)
        bump(session, touched)


def bump(session: so.Session, folder_ids: Iterable[int]) -> None:
    """Raise the folders' modseq and, on PostgreSQL, announce them at commit."""
    ids = sorted(set(folder_ids))
    if not ids:
        return
    session.connection().execute(_BUMP, {"b_ids": ids})
    announce(session.connection(), ids)


# Built once: a statement made per call costs its construction and its cache key.
_NOTIFY = sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, sa.bindparam("b_payload")))


def announce(conn: sa.Connection, folder_ids: Iterable[int]) -> None:
    """On PostgreSQL, tell the other processes' IMAP IDLE at commit that the folders
    changed (`allocate` and `bump` raise their modseq)."""
    ids = sorted(set(folder_ids))
    if ids and conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY, {"b_payload": " ".join(str(i) for i in ids)})


# Factories already given the listener. Not `sa.event.contains`: it knows a factory by
# its id(), which a new factory inherits once an old one is collected, and then it
# answered "installed" for a factory whose sessions handed out no UIDs.
_installed: weakref.WeakSet[so.sessionmaker[so.Session]] = weakref.WeakSet()


def install(factory: so.sessionmaker[so.Session]) -> None:
    """Keep folders and UIDs right in every session the factory makes."""
    if factory not in _installed:
        sa.event.listen(factory, "before_flush", before_flush)
        _installed.add(factory)
