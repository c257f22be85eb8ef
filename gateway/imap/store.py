"""The mailbox operations IMAP needs, as plain functions over one database session.

They run in worker threads (SQLAlchemy blocks) and are testable without a
socket. Every query is scoped by the account: a folder id from a client is only
ever looked up together with the account that logged in.

An APPEND never leaves the plaintext of mail the gateway sent encrypted: when
the appended message's Message-ID is that of an encrypted message of the same
account, the encrypted copy is what the folder gets.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from typing import cast

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import mailbox, rawheaders
from gateway.imap import folders
from gateway.imap.folders import FolderError
from gateway.mail import header_line_ends, served_line_ends
from gateway.models import Address, MailboxMessage, MailFolder
from gateway.pipeline.passthrough import is_pgp_mime


@dataclass(frozen=True)
class FolderInfo:
    id: int
    name: str
    special_use: str
    uid_validity: int
    uid_next: int
    modseq: int
    subscribed: bool


@dataclass(frozen=True)
class MessageMeta:
    uid: int
    flags: frozenset[str]
    received_at: dt.datetime
    size: int
    encrypted: bool


def _info(row: MailFolder) -> FolderInfo:
    return FolderInfo(
        row.id,
        row.name,
        row.special_use,
        row.uid_validity,
        row.uid_next,
        row.modseq,
        row.subscribed,
    )


# The columns of FolderInfo, read as rows: loading up to MAX_FOLDERS ORM objects to copy
# them cost a LIST more than the rest of its work, in a thread holding the GIL.
_FOLDER_COLUMNS = (
    MailFolder.id,
    MailFolder.name,
    MailFolder.special_use,
    MailFolder.uid_validity,
    MailFolder.uid_next,
    MailFolder.modseq,
    MailFolder.subscribed,
)


def list_folders(session: so.Session, account_id: int) -> list[FolderInfo]:
    folders.ensure_folders(session, account_id)
    rows = session.execute(
        sa.select(*_FOLDER_COLUMNS)
        .where(MailFolder.account_id == account_id)
        .order_by(MailFolder.name)
    )
    return [FolderInfo(*row) for row in rows]


def get_folder(session: so.Session, account_id: int, name: str) -> FolderInfo | None:
    row = session.scalar(
        sa.select(MailFolder).where(MailFolder.account_id == account_id, MailFolder.name == name)
    )
    if row is None and name in folders.SPECIAL_FOLDERS:
        folders.ensure_folders(session, account_id)
        return get_folder(session, account_id, name)
    return _info(row) if row is not None else None


def folder_by_id(session: so.Session, account_id: int, folder_id: int) -> FolderInfo | None:
    row = session.scalar(
        sa.select(MailFolder).where(MailFolder.account_id == account_id, MailFolder.id == folder_id)
    )
    return _info(row) if row is not None else None


def modseq(session: so.Session, folder_id: int) -> int | None:
    return session.scalar(sa.select(MailFolder.modseq).where(MailFolder.id == folder_id))


def metas(session: so.Session, folder_id: int) -> list[MessageMeta]:
    rows = session.execute(
        sa.select(
            MailboxMessage.uid,
            MailboxMessage.flags,
            MailboxMessage.received_at,
            MailboxMessage.size,
            MailboxMessage.encrypted,
        )
        .where(MailboxMessage.folder_id == folder_id)
        .order_by(MailboxMessage.uid)
    )
    return [
        MessageMeta(r.uid, folders.parse_flags(r.flags), r.received_at, r.size, r.encrypted)
        for r in rows
    ]


def raw_messages(session: so.Session, folder_id: int, uids: Sequence[int]) -> dict[int, bytes]:
    """The messages as IMAP serves them: CRLF line ends only (gateway.mail.served_line_ends)."""
    out: dict[int, bytes] = {}
    for start in range(0, len(uids), 500):
        chunk = list(uids[start : start + 500])
        for uid, raw in session.execute(
            sa.select(MailboxMessage.uid, MailboxMessage.raw).where(
                MailboxMessage.folder_id == folder_id, MailboxMessage.uid.in_(chunk)
            )
        ):
            if uid is not None:
                out[uid] = served_line_ends.served(raw)
    return out


def envelopes(session: so.Session, folder_id: int, uids: Sequence[int]) -> dict[int, bytes]:
    """The kept IMAP envelopes of these messages (those computed before)."""
    out: dict[int, bytes] = {}
    for start in range(0, len(uids), 1000):
        for uid, envelope in session.execute(
            sa.select(MailboxMessage.uid, MailboxMessage.envelope).where(
                MailboxMessage.folder_id == folder_id,
                MailboxMessage.uid.in_(list(uids[start : start + 1000])),
                MailboxMessage.envelope.is_not(None),
            )
        ):
            if uid is not None and envelope is not None:
                out[uid] = envelope
    return out


def keep_envelopes(session: so.Session, folder_id: int, computed: dict[int, bytes]) -> None:
    """Keep computed envelopes; Core updates (one executemany, not a statement per
    message), so no folder change is announced for them."""
    if not computed:
        return
    table = cast(sa.Table, MailboxMessage.__table__)
    session.execute(
        sa.update(table)
        .where(table.c.folder_id == sa.bindparam("f_id"), table.c.uid == sa.bindparam("m_uid"))
        .values(envelope=sa.bindparam("env")),
        [{"f_id": folder_id, "m_uid": uid, "env": env} for uid, env in computed.items()],
    )


def _rows(session: so.Session, folder_id: int, uids: Iterable[int]) -> list[MailboxMessage]:
    wanted = sorted(set(uids))
    out: list[MailboxMessage] = []
    for start in range(0, len(wanted), 500):
        out.extend(
            session.scalars(
                sa.select(MailboxMessage)
                .where(
                    MailboxMessage.folder_id == folder_id,
                    MailboxMessage.uid.in_(wanted[start : start + 500]),
                )
                .order_by(MailboxMessage.uid)
            )
        )
    return out


def _folder_row(session: so.Session, account_id: int, name: str) -> MailFolder:
    if name in folders.SPECIAL_FOLDERS:
        folders.ensure_folders(session, account_id)
    row = session.scalar(
        sa.select(MailFolder).where(MailFolder.account_id == account_id, MailFolder.name == name)
    )
    if row is None:
        raise KeyError(name)
    return row


def message_id_of(raw: bytes) -> str:
    headers = BytesHeaderParser(policy=default_policy).parsebytes(rawheaders.header_block(raw))
    try:
        value = headers["Message-ID"]
    except Exception:  # noqa: BLE001  (a malformed header is no Message-ID)
        return ""
    return "" if value is None else str(value).strip()[:250]


def append(
    session: so.Session,
    account_id: int,
    address_id: int,
    folder_name: str,
    raw: bytes,
    flags: Iterable[str],
    when: dt.datetime,
) -> tuple[int, int]:
    """Store the message in the folder; (UIDVALIDITY, UID) of what the folder now holds.

    A message that is one RFC 3156 PGP/MIME encrypted message (a mail program's own
    encrypted Sent copy, say) is stored as encrypted, as the MX and the submission
    store such mail, so the webmail decrypts it for its reader.

    Its header section's odd line ends are made plain first, as for mail that arrives
    by SMTP (gateway.mail.header_line_ends): the same readers show the folder."""
    raw = header_line_ends.normalize(raw)
    target = _folder_row(session, account_id, folder_name)
    wanted = folders.format_flags(flags)
    message_id = message_id_of(raw)
    encrypted = _encrypted_twin(session, account_id, message_id) if message_id else None
    if encrypted is not None:
        if encrypted.folder_id == target.id:
            merged = folders.parse_flags(encrypted.flags) | folders.parse_flags(wanted)
            encrypted.flags = folders.format_flags(merged)
            session.flush()
            assert encrypted.uid is not None
            return target.uid_validity, encrypted.uid
        row = _clone(encrypted, folder_name)
        row.flags = wanted
        session.add(row)
    else:
        address = session.get(Address, address_id)
        assert address is not None
        row = mailbox.store(
            session,
            address,
            raw,
            queue_id="",
            envelope_from="",
            now=when,
            folder=folder_name,
            encrypted=is_pgp_mime(raw),
        )
        row.flags = wanted
        session.add(row)
    session.flush()
    assert row.uid is not None
    return target.uid_validity, row.uid


def append_all(
    session: so.Session,
    account_id: int,
    address_id: int,
    folder_name: str,
    messages: Sequence[tuple[bytes, Sequence[str], dt.datetime]],
) -> tuple[int, list[int]]:
    """Store the messages of one APPEND, each (raw, flags, when), in the folder: in the
    caller's one transaction, so a message refused (a FlagsError) leaves none stored,
    as RFC 3502 asks of MULTIAPPEND. (UIDVALIDITY, their UIDs in order)."""
    validity, uids = 0, []
    for raw, flags, when in messages:
        validity, uid = append(session, account_id, address_id, folder_name, raw, flags, when)
        uids.append(uid)
    return validity, uids


def _encrypted_twin(session: so.Session, account_id: int, message_id: str) -> MailboxMessage | None:
    """The account's encrypted message with this Message-ID (its Sent copy first)."""
    rows = session.scalars(
        sa.select(MailboxMessage)
        .join(Address, MailboxMessage.address_id == Address.id)
        .where(
            Address.account_id == account_id,
            MailboxMessage.message_id == message_id,
            MailboxMessage.encrypted.is_(True),
        )
        .order_by((MailboxMessage.folder == folders.SENT).desc(), MailboxMessage.id)
        .limit(1)
    )
    return rows.first()


def _clone(row: MailboxMessage, folder_name: str) -> MailboxMessage:
    return MailboxMessage(
        address_id=row.address_id,
        folder=folder_name,
        flags=row.flags,
        queue_id=row.queue_id,
        subject=row.subject,
        from_addr=row.from_addr,
        to_addr=row.to_addr,
        search_text=row.search_text,
        envelope_from=row.envelope_from,
        message_id=row.message_id,
        envelope=row.envelope,
        date=row.date,
        received_at=row.received_at,
        size=row.size,
        encrypted=row.encrypted,
        signed_fields=row.signed_fields,
        raw=row.raw,
    )


def copy(
    session: so.Session, account_id: int, folder_id: int, uids: Sequence[int], dest_name: str
) -> list[tuple[int, int]]:
    _folder_row(session, account_id, dest_name)
    pairs: list[tuple[int, MailboxMessage]] = []
    for row in _rows(session, folder_id, uids):
        clone = _clone(row, dest_name)
        session.add(clone)
        assert row.uid is not None
        pairs.append((row.uid, clone))
    session.flush()
    return [(src, int(clone.uid or 0)) for src, clone in pairs]


def move(
    session: so.Session, account_id: int, folder_id: int, uids: Sequence[int], dest_name: str
) -> list[tuple[int, int]]:
    _folder_row(session, account_id, dest_name)
    moved: list[tuple[int, MailboxMessage]] = []
    for row in _rows(session, folder_id, uids):
        assert row.uid is not None
        moved.append((row.uid, row))
        row.folder = dest_name
    session.flush()
    return [(src, int(row.uid or 0)) for src, row in moved]


def set_flags(
    session: so.Session, folder_id: int, uids: Sequence[int], flags: Iterable[str], mode: str
) -> dict[int, frozenset[str]]:
    """ADD, DELETE or REPLACE flags; the new flags of each message that still exists."""
    operand = frozenset(flags)
    out: dict[int, frozenset[str]] = {}
    for row in _rows(session, folder_id, uids):
        current = folders.parse_flags(row.flags)
        if mode == "ADD":
            new = current | operand
        elif mode == "DELETE":
            new = current - operand
        else:
            new = operand
        stored = folders.format_flags(new)
        if stored != row.flags:
            row.flags = stored
        assert row.uid is not None
        out[row.uid] = folders.parse_flags(stored)
    session.flush()
    return out


def expunge(session: so.Session, folder_id: int, uids: Iterable[int]) -> None:
    for row in _rows(session, folder_id, uids):
        session.delete(row)
    session.flush()


def create_folder(session: so.Session, account_id: int, name: str) -> FolderInfo:
    name = folders.check_name(name)
    folders.ensure_folders(session, account_id)
    exists = session.scalar(
        sa.select(MailFolder.id).where(MailFolder.account_id == account_id, MailFolder.name == name)
    )
    if exists is not None:
        raise FolderError(f"a folder {name} exists already")
    names = session.scalars(sa.select(MailFolder.name).where(MailFolder.account_id == account_id))
    folders.check_room([*names, name])
    row = MailFolder(
        account_id=account_id, name=name, special_use="", uid_validity=folders.new_uid_validity()
    )
    session.add(row)
    session.flush()
    return _info(row)


def delete_folder(session: so.Session, account_id: int, name: str) -> None:
    """A user folder goes with its messages; the special folders stay."""
    if name in folders.SPECIAL_FOLDERS:
        raise FolderError(f"{name} cannot be deleted")
    row = _folder_row(session, account_id, name)
    for message in session.scalars(
        sa.select(MailboxMessage).where(MailboxMessage.folder_id == row.id)
    ):
        session.delete(message)
    session.flush()
    session.delete(row)
    session.flush()


def rename_folder(session: so.Session, account_id: int, before: str, after: str) -> None:
    """Rename a user folder and the folders below it; their UIDs stay."""
    if before in folders.SPECIAL_FOLDERS:
        raise FolderError(f"{before} cannot be renamed")
    after = folders.check_name(after)
    if after in folders.SPECIAL_FOLDERS:
        raise FolderError(f"{after} is a special folder")
    rows = session.scalars(sa.select(MailFolder).where(MailFolder.account_id == account_id)).all()
    by_name = {r.name: r for r in rows}
    if before not in by_name:
        raise KeyError(before)
    if after in by_name:
        raise FolderError(f"a folder {after} exists already")
    prefix = before + folders.DELIMITER
    folders.check_room(
        after + name[len(before) :] if name == before or name.startswith(prefix) else name
        for name in by_name
    )
    for row in rows:
        if row.name == before or row.name.startswith(prefix):
            new_name = after + row.name[len(before) :]
            # Core updates: the folder's messages keep their UIDs (no re-allocation).
            session.execute(
                sa.update(MailboxMessage)
                .where(MailboxMessage.folder_id == row.id)
                .values(folder=new_name)
            )
            row.name = new_name
            folders.bump(session, [row.id])
    session.flush()


def set_subscribed(session: so.Session, account_id: int, name: str, subscribed: bool) -> None:
    row = session.scalar(
        sa.select(MailFolder).where(MailFolder.account_id == account_id, MailFolder.name == name)
    )
    if row is not None:
        row.subscribed = subscribed
