"""Read-side queries over hosted mailboxes, for the portal's message lists.

They select the list columns only: `raw` can be tens of megabytes per row and a
list page must not pull it. Every query is scoped by account, so a page can show
only mail of addresses the account owns.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway.models import Address, MailboxMessage

MAX_PER_PAGE = 200


@dataclass(frozen=True)
class MessageSummary:
    id: int
    address: str
    from_addr: str
    subject: str
    date: dt.datetime
    size: int
    encrypted: bool
    flags: str
    to_addr: str = ""
    folder: str = ""
    # The row's `signed_fields`: "differ" when its reader found it arrived under other
    # outer fields than the signed ones it now lists (gateway.reading).
    signed_fields: str = ""

    @property
    def fields_differ(self) -> bool:
        return self.signed_fields == "differ"

    @property
    def seen(self) -> bool:
        """Read, in the webmail and in every IMAP program (the shared `\\Seen` flag)."""
        return "\\Seen" in self.flags.split()


@dataclass(frozen=True)
class FolderPage:
    items: list[MessageSummary]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_newer(self) -> bool:
        return self.page > 1

    @property
    def has_older(self) -> bool:
        return self.page < self.pages


def list_folder(
    session: so.Session, account_id: int, folder: str, page: int, per_page: int
) -> FolderPage:
    """One page of `folder` across all the account's addresses, newest first.

    Out-of-range pages are clamped rather than refused: a stale "older" link after
    mail was deleted should land on the last page, not on an error.
    """
    conditions = [Address.account_id == account_id, MailboxMessage.folder == folder]
    return _page(session, conditions, page, per_page)


def _page(
    session: so.Session, conditions: list[sa.ColumnElement[bool]], page: int, per_page: int
) -> FolderPage:
    per_page = min(max(per_page, 1), MAX_PER_PAGE)
    scope = (
        sa.select(MailboxMessage.id)
        .join(Address, MailboxMessage.address_id == Address.id)
        .where(*conditions)
    )
    total = session.scalar(sa.select(sa.func.count()).select_from(scope.subquery())) or 0
    pages = max(1, math.ceil(total / per_page))
    page = min(max(page, 1), pages)
    rows = session.execute(
        sa.select(
            MailboxMessage.id,
            Address.address,
            MailboxMessage.from_addr,
            MailboxMessage.subject,
            MailboxMessage.date,
            MailboxMessage.received_at,
            MailboxMessage.size,
            MailboxMessage.encrypted,
            MailboxMessage.flags,
            MailboxMessage.to_addr,
            MailboxMessage.folder,
            MailboxMessage.signed_fields,
        )
        .join(Address, MailboxMessage.address_id == Address.id)
        .where(*conditions)
        .order_by(MailboxMessage.received_at.desc(), MailboxMessage.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    items = [
        MessageSummary(
            id=row.id,
            address=row.address,
            from_addr=row.from_addr,
            subject=row.subject,
            # The Date header is what the sender claims; fall back to arrival time.
            date=row.date or row.received_at,
            size=row.size,
            encrypted=row.encrypted,
            flags=row.flags,
            to_addr=row.to_addr,
            folder=row.folder,
            signed_fields=row.signed_fields,
        )
        for row in rows
    ]
    return FolderPage(items=items, total=total, page=page, per_page=per_page)


@dataclass(frozen=True)
class SearchQuery:
    """What the search form asks; empty fields do not filter."""

    text: str = ""
    sender: str = ""
    recipient: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    folder: str | None = None


def _contains(
    column: so.QueryableAttribute[str] | sa.ColumnElement[str], needle: str
) -> sa.ColumnElement[bool]:
    """Case-insensitive substring match with the user's % and _ taken literally."""
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return sa.func.lower(column).like(f"%{escaped.lower()}%", escape="\\")


def search(
    session: so.Session, account_id: int, query: SearchQuery, page: int, per_page: int
) -> FolderPage:
    """Messages of the account matching `query`, newest first.

    The text matches the subject of every message, and the body only of plain
    ones: an encrypted message's body is ciphertext, and it is never indexed.
    """
    conditions: list[sa.ColumnElement[bool]] = [Address.account_id == account_id]
    if query.folder:
        conditions.append(MailboxMessage.folder == query.folder)
    if query.text.strip():
        text = query.text.strip()
        conditions.append(
            sa.or_(
                _contains(MailboxMessage.subject, text),
                sa.and_(
                    MailboxMessage.encrypted.is_(False),
                    MailboxMessage.search_text.is_not(None),
                    _contains(sa.func.coalesce(MailboxMessage.search_text, ""), text),
                ),
            )
        )
    if query.sender.strip():
        conditions.append(_contains(MailboxMessage.from_addr, query.sender.strip()))
    if query.recipient.strip():
        conditions.append(_contains(MailboxMessage.to_addr, query.recipient.strip()))
    if query.since is not None:
        conditions.append(MailboxMessage.received_at >= query.since)
    if query.until is not None:
        conditions.append(MailboxMessage.received_at < query.until)

    return _page(session, conditions, page, per_page)
