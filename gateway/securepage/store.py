"""Secure-page rows: create, find by token, count tries, revoke, extend, re-seal, list.

Every function takes the caller's session and `now`; the caller commits. The
password check is split in two around the Argon2 run, which must not hold a
transaction open: `reserve_attempt` counts the try first (one conditional
UPDATE, so any number of portal processes together allow at most
`max_failures` wrong passwords per link), then `record_success` gives the try
back or `record_failure` locks the link at the limit and tells the sender.

Unknown, expired, locked, revoked and purged links are all just "not usable":
`usable_link` answers None for each, so the visitor's page cannot tell them apart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import audit, mailbox, mails
from gateway.accounts import find_address
from gateway.imap import folders
from gateway.models import Account, Address, MailboxMessage, SecureLink, SecureMessage
from gateway.pipeline import pgpmime
from gateway.securepage import access, crypto, links, notify, sent_copy
from gateway.securepage.crypto import KdfParams, MessageKey, Sealed
from gateway.settings import SecurePageSettings, Settings

log = logging.getLogger(__name__)

ACTOR = "securepage"


class SecurePageError(ValueError):
    """A sender's request that cannot be carried out; the text is safe to show."""


class LinkState(enum.Enum):
    ACTIVE = "active"
    EXPIRED = "expired"
    LOCKED = "locked"
    REVOKED = "revoked"
    PURGED = "purged"


def new_public_id() -> str:
    return secrets.token_hex(16)


def page_content(raw: bytes) -> bytes:
    """What a page shows of a message: its headers except Bcc, and the whole MIME entity.

    The whole message rather than only the MIME entity, so sender, recipients,
    date and subject are inside the ciphertext and nothing of the message needs
    to be stored in clear. Bcc goes: one ciphertext serves every recipient.
    """
    return pgpmime.outer_headers(raw) + b"MIME-Version: 1.0\r\n" + pgpmime.inner_entity(raw)


@dataclass(frozen=True)
class NewLink:
    recipient: str
    token: str = dataclasses.field(repr=False)
    expires_at: dt.datetime


def add_message(
    session: so.Session,
    *,
    public_id: str,
    queue_id: str,
    account_id: int,
    sender_address: str,
    sealed: Sealed,
    new_links: list[NewLink],
    now: dt.datetime,
) -> SecureMessage:
    message = SecureMessage(
        public_id=public_id,
        queue_id=queue_id,
        account_id=account_id,
        sender_address=sender_address,
        created_at=now,
        generation=1,
        kdf_salt=sealed.params.salt,
        kdf_time_cost=sealed.params.time_cost,
        kdf_memory_cost=sealed.params.memory_cost,
        kdf_parallelism=sealed.params.parallelism,
        wrapped_key=sealed.wrapped_key,
        ciphertext=sealed.ciphertext,
        size=len(sealed.ciphertext),
    )
    for link in new_links:
        message.links.append(
            SecureLink(
                recipient=link.recipient,
                token_digest=links.digest(link.token),
                created_at=now,
                expires_at=link.expires_at,
                failures=0,
                open_count=0,
                reply_count=0,
            )
        )
    session.add(message)
    return message


def state_of(link: SecureLink, now: dt.datetime, settings: SecurePageSettings) -> LinkState:
    if link.message.purged_at is not None:
        return LinkState.PURGED
    if link.revoked_at is not None:
        return LinkState.REVOKED
    if link.locked_at is not None or link.failures >= settings.max_failures:
        return LinkState.LOCKED
    if link.expires_at <= now:
        return LinkState.EXPIRED
    return LinkState.ACTIVE


def _usable(now: dt.datetime, settings: SecurePageSettings) -> sa.ColumnElement[bool]:
    return sa.and_(
        SecureLink.revoked_at.is_(None),
        SecureLink.locked_at.is_(None),
        SecureLink.failures < settings.max_failures,
        SecureLink.expires_at > now,
    )


def usable_link(
    session: so.Session, token: str, now: dt.datetime, settings: SecurePageSettings
) -> SecureLink | None:
    """The link for `token` if it can be opened now; None for every other case alike."""
    if not links.is_well_formed(token):
        return None
    link = session.scalar(
        sa.select(SecureLink)
        .join(SecureLink.message)
        .options(so.contains_eager(SecureLink.message))
        .where(
            SecureLink.token_digest == links.digest(token),
            SecureMessage.purged_at.is_(None),
            _usable(now, settings),
        )
    )
    return link


@dataclass(frozen=True)
class Attempt:
    """A counted password try: what the Argon2 run needs, outside any transaction."""

    link_id: int
    public_id: str
    generation: int
    params: KdfParams
    wrapped_key: bytes = dataclasses.field(repr=False)


def reserve_attempt(
    session: so.Session, token: str, now: dt.datetime, settings: SecurePageSettings
) -> Attempt | None:
    """Count one try against the link before the password is checked; None if not usable."""
    link = usable_link(session, token, now, settings)
    wrapped_key = None if link is None else link.message.wrapped_key
    if link is None or wrapped_key is None:
        return None
    result = session.execute(
        sa.update(SecureLink)
        .where(SecureLink.id == link.id, _usable(now, settings))
        .values(failures=SecureLink.failures + 1)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result) != 1:
        return None
    message = link.message
    return Attempt(
        link_id=link.id,
        public_id=message.public_id,
        generation=message.generation,
        params=params_of(message),
        wrapped_key=wrapped_key,
    )


def params_of(message: SecureMessage) -> KdfParams:
    return KdfParams(
        time_cost=message.kdf_time_cost,
        memory_cost=message.kdf_memory_cost,
        parallelism=message.kdf_parallelism,
        salt=message.kdf_salt,
    )


def try_password(
    attempt: Attempt, password: str, settings: SecurePageSettings
) -> MessageKey | None:
    """The message key if the password is right (one Argon2 run; no transaction open)."""
    try:
        return crypto.unwrap_key(
            password,
            attempt.params,
            attempt.wrapped_key,
            public_id=attempt.public_id,
            generation=attempt.generation,
            max_concurrent=settings.max_concurrent_derivations,
        )
    except crypto.SealError:
        return None


def record_success(session: so.Session, attempt: Attempt, now: dt.datetime) -> int:
    """Give the counted try back and note the opening; the grant generation to grant under.

    The generation is read after the UPDATE, which holds the row until commit: a
    Close committed before it counts, a Close after it voids the new grant too.
    """
    session.execute(
        sa.update(SecureLink)
        .where(SecureLink.id == attempt.link_id)
        .values(
            failures=sa.case((SecureLink.failures > 0, SecureLink.failures - 1), else_=0),
            first_opened_at=sa.func.coalesce(SecureLink.first_opened_at, now),
            last_opened_at=now,
            open_count=SecureLink.open_count + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return access.current_generation(session, attempt.link_id)


def record_failure(
    session: so.Session, attempt: Attempt, now: dt.datetime, settings: Settings
) -> bool:
    """Keep the counted try; at the limit lock the link and tell the sender. True if locked now."""
    limit = settings.securepage.max_failures
    result = session.execute(
        sa.update(SecureLink)
        .where(
            SecureLink.id == attempt.link_id,
            SecureLink.locked_at.is_(None),
            SecureLink.failures >= limit,
        )
        .values(locked_at=now)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result) != 1:
        return False
    link = session.get(SecureLink, attempt.link_id)
    assert link is not None
    _tell_sender_locked(session, link, now, settings)
    return True


def _tell_sender_locked(
    session: so.Session, link: SecureLink, now: dt.datetime, settings: Settings
) -> None:
    message = link.message
    account = session.get(Account, message.account_id)
    address = find_address(session, message.sender_address)
    audit.record(
        session,
        "securepage.lock",
        actor=ACTOR,
        target=link.recipient,
        account_id=message.account_id,
        success=False,
        detail=f"queue {message.queue_id}: {link.failures} wrong passwords",
    )
    if account is None or address is None:
        return
    notice = notify.build_lock_notice(
        settings,
        sender_address=message.sender_address,
        recipient=link.recipient,
        subject=sent_subject(session, message) or "",
        language=mails.mail_language(account.language),
        failures=link.failures,
        now=now,
    )
    mailbox.store(session, address, notice, queue_id=message.queue_id, envelope_from="", now=now)


def open_message(link: SecureLink, key: MessageKey) -> bytes | None:
    """The sealed message, with a key from the password (or a browser's grant); None if stale."""
    message = link.message
    if message.ciphertext is None:
        return None
    try:
        return crypto.open_body(
            key, message.ciphertext, public_id=message.public_id, generation=message.generation
        )
    except crypto.SealError:
        return None


def _rowcount(result: sa.Result[object]) -> int:
    return int(getattr(result, "rowcount", 0))


# -- the sender's side ---------------------------------------------------------------


def find_sent_copy(session: so.Session, message: SecureMessage) -> MailboxMessage | None:
    """The sender's Sent copy of the message (sealed under the same password)."""
    return session.scalar(
        sa.select(MailboxMessage)
        .join(MailboxMessage.address)
        .where(
            MailboxMessage.queue_id == message.queue_id,
            MailboxMessage.folder == mailbox.SENT,
            Address.account_id == message.account_id,
        )
        .order_by(MailboxMessage.id)
        .limit(1)
    )


def sent_subject(session: so.Session, message: SecureMessage) -> str | None:
    copy = find_sent_copy(session, message)
    return None if copy is None else copy.subject


@dataclass(frozen=True)
class LinkView:
    id: int
    recipient: str
    state: LinkState
    created_at: dt.datetime
    expires_at: dt.datetime
    failures: int
    first_opened_at: dt.datetime | None
    last_opened_at: dt.datetime | None
    open_count: int
    reply_count: int
    locked_at: dt.datetime | None
    revoked_at: dt.datetime | None
    can_extend: bool


@dataclass(frozen=True)
class MessageView:
    id: int
    queue_id: str
    subject: str
    sender_address: str
    created_at: dt.datetime
    purged: bool
    links: list[LinkView]


def list_for_account(
    session: so.Session, account_id: int, now: dt.datetime, settings: SecurePageSettings
) -> list[MessageView]:
    """The account's secure-page messages, newest first, with each recipient's link."""
    rows = session.scalars(
        sa.select(SecureMessage)
        .where(SecureMessage.account_id == account_id)
        .options(so.selectinload(SecureMessage.links))
        .order_by(SecureMessage.created_at.desc(), SecureMessage.id.desc())
    ).all()
    subjects: dict[str, str] = {
        queue_id: subject
        for queue_id, subject in session.execute(
            sa.select(MailboxMessage.queue_id, MailboxMessage.subject)
            .join(MailboxMessage.address)
            .where(
                Address.account_id == account_id,
                MailboxMessage.folder == mailbox.SENT,
                MailboxMessage.queue_id.in_([m.queue_id for m in rows]),
            )
        )
    }
    return [
        message_view(message, subjects.get(message.queue_id, ""), now, settings) for message in rows
    ]


def message_view(
    message: SecureMessage, subject: str, now: dt.datetime, settings: SecurePageSettings
) -> MessageView:
    """What the sender sees of one message: each link's state, openings and what it allows."""
    ceiling = max_expiry(message, settings)
    link_views = []
    for link in message.links:
        state = state_of(link, now, settings)
        link_views.append(
            LinkView(
                id=link.id,
                recipient=link.recipient,
                state=state,
                created_at=link.created_at,
                expires_at=link.expires_at,
                failures=link.failures,
                first_opened_at=link.first_opened_at,
                last_opened_at=link.last_opened_at,
                open_count=link.open_count,
                reply_count=link.reply_count,
                locked_at=link.locked_at,
                revoked_at=link.revoked_at,
                can_extend=state in (LinkState.ACTIVE, LinkState.EXPIRED, LinkState.LOCKED)
                and link.expires_at < ceiling,
            )
        )
    return MessageView(
        id=message.id,
        queue_id=message.queue_id,
        subject=subject,
        sender_address=message.sender_address,
        created_at=message.created_at,
        purged=message.purged_at is not None,
        links=link_views,
    )


def max_expiry(message: SecureMessage, settings: SecurePageSettings) -> dt.datetime:
    return message.created_at + dt.timedelta(days=settings.max_valid_days)


def owned_link(session: so.Session, account_id: int, link_id: int) -> SecureLink:
    """The link if it belongs to a message of the account; the same error otherwise."""
    link = session.get(SecureLink, link_id, with_for_update=True, populate_existing=True)
    if link is None or link.message.account_id != account_id:
        raise SecurePageError("There is no such link.")
    return link


def owned_message(session: so.Session, account_id: int, message_id: int) -> SecureMessage:
    message = session.get(SecureMessage, message_id, with_for_update=True, populate_existing=True)
    if message is None or message.account_id != account_id:
        raise SecurePageError("There is no such message.")
    return message


def revoke(
    session: so.Session, account_id: int, link_id: int, now: dt.datetime, *, actor: str
) -> SecureLink:
    link = owned_link(session, account_id, link_id)
    if link.revoked_at is None:
        link.revoked_at = now
        audit.record(
            session,
            "securepage.revoke",
            actor=actor,
            target=link.recipient,
            account_id=account_id,
            detail=f"queue {link.message.queue_id}",
        )
    return link


def extend(
    session: so.Session,
    account_id: int,
    link_id: int,
    days: int,
    now: dt.datetime,
    settings: SecurePageSettings,
    *,
    actor: str,
) -> SecureLink:
    """Push the link's expiry `days` further (from now if it has run out), up to the maximum."""
    link = owned_link(session, account_id, link_id)
    if link.revoked_at is not None or link.message.purged_at is not None:
        raise SecurePageError("A revoked or deleted link cannot be extended.")
    if not 1 <= days <= settings.max_valid_days:
        raise SecurePageError("Choose a number of days within the allowed range.")
    ceiling = max_expiry(link.message, settings)
    new_expiry = min(max(link.expires_at, now) + dt.timedelta(days=days), ceiling)
    if new_expiry <= link.expires_at:
        raise SecurePageError("This link is already at its latest possible expiry.")
    link.expires_at = new_expiry
    audit.record(
        session,
        "securepage.extend",
        actor=actor,
        target=link.recipient,
        account_id=account_id,
        detail=f"queue {link.message.queue_id} until {new_expiry.isoformat()}",
    )
    return link


@dataclass(frozen=True)
class ResealPlan:
    """A snapshot of what a new password needs, taken before the slow Argon2 runs.

    The sender types the current password: only it opens the page (and the Sent
    copy), the server alone cannot.
    """

    message_id: int
    public_id: str
    generation: int
    params: KdfParams
    wrapped_key: bytes = dataclasses.field(repr=False)
    ciphertext: bytes = dataclasses.field(repr=False)
    sent_copy_id: int | None
    sent_copy_raw: bytes | None = dataclasses.field(repr=False)
    sent_copy_binding: str


def reseal_plan(session: so.Session, message: SecureMessage) -> ResealPlan:
    if message.wrapped_key is None or message.ciphertext is None:
        raise SecurePageError("There is no such message.")
    copy = find_sent_copy(session, message)
    sealed_copy = copy if copy is not None and sent_copy.is_sealed(copy.raw) else None
    return ResealPlan(
        message_id=message.id,
        public_id=message.public_id,
        generation=message.generation,
        params=params_of(message),
        wrapped_key=message.wrapped_key,
        ciphertext=message.ciphertext,
        sent_copy_id=sealed_copy.id if sealed_copy is not None else None,
        sent_copy_raw=sealed_copy.raw if sealed_copy is not None else None,
        sent_copy_binding=sent_copy.binding(message.queue_id, message.sender_address),
    )


@dataclass(frozen=True)
class Resealed:
    """The new seal of the page, and of the Sent copy when it could be re-wrapped."""

    sealed: Sealed
    sent_copy_raw: bytes | None = dataclasses.field(repr=False)


def reseal(plan: ResealPlan, current: str, new: str, settings: SecurePageSettings) -> Resealed:
    """Open with the current password and seal under the new one; `SealError` if wrong.

    Two or three Argon2 runs (current, new, and the Sent copy's only if it was
    wrapped under other parameters): call it with no transaction open.
    """
    old_kek = crypto.password_key(current, settings, plan.params)
    key = crypto.unwrap_with(
        old_kek, plan.wrapped_key, public_id=plan.public_id, generation=plan.generation
    )
    content = crypto.open_body(
        key, plan.ciphertext, public_id=plan.public_id, generation=plan.generation
    )
    new_kek = crypto.password_key(new, settings)
    sealed = crypto.seal_with(
        content, new_kek, public_id=plan.public_id, generation=plan.generation + 1
    )
    return Resealed(sealed, _rewrapped_copy(plan, current, old_kek, new_kek, settings))


def _rewrapped_copy(
    plan: ResealPlan,
    current: str,
    old_kek: crypto.PasswordKey,
    new_kek: crypto.PasswordKey,
    settings: SecurePageSettings,
) -> bytes | None:
    raw = plan.sent_copy_raw
    blob = sent_copy.blob_of(raw) if raw is not None else None
    if raw is None or blob is None:
        return None
    try:
        params = crypto.copy_params(blob)
        kek = (
            old_kek if params == old_kek.params else crypto.password_key(current, settings, params)
        )
        key = crypto.unwrap_copy(kek, blob, binding=plan.sent_copy_binding)
        new_blob = crypto.rewrap_copy(blob, key, new_kek, binding=plan.sent_copy_binding)
    except crypto.SealError:
        return None  # sealed under another password: it keeps that one
    return sent_copy.with_blob(raw, new_blob)


def apply_reseal(
    session: so.Session,
    account_id: int,
    plan: ResealPlan,
    resealed: Resealed,
    now: dt.datetime,
    *,
    actor: str,
) -> SecureMessage:
    """Store the new seal (only if no other re-seal came first) and unlock the links."""
    message = owned_message(session, account_id, plan.message_id)
    if message.generation != plan.generation or message.purged_at is not None:
        raise SecurePageError("The message changed meanwhile; please try again.")
    sealed = resealed.sealed
    if resealed.sent_copy_raw is not None and plan.sent_copy_id is not None:
        copy = session.get(MailboxMessage, plan.sent_copy_id)
        if copy is not None and copy.raw == plan.sent_copy_raw:
            copy.raw = resealed.sent_copy_raw
            copy.size = len(resealed.sent_copy_raw)
            folders.renumber(session, copy)
    message.generation = plan.generation + 1
    message.kdf_salt = sealed.params.salt
    message.kdf_time_cost = sealed.params.time_cost
    message.kdf_memory_cost = sealed.params.memory_cost
    message.kdf_parallelism = sealed.params.parallelism
    message.wrapped_key = sealed.wrapped_key
    message.ciphertext = sealed.ciphertext
    message.size = len(sealed.ciphertext)
    for link in message.links:
        if link.revoked_at is None:
            link.failures = 0
            link.locked_at = None
    audit.record(
        session,
        "securepage.password",
        actor=actor,
        target=message.sender_address,
        account_id=account_id,
        detail=f"queue {message.queue_id}",
    )
    return message
