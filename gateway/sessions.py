"""The portal's session registry: every login is a row, so it can be listed and ended.

The browser's signed cookie carries a random nonce; the row keeps only its
SHA-256. On each request the portal looks the nonce up: a session that was
ended (by its owner from the sessions page, by logout, by a password reset) or
that sat idle longer than the portal's session lifetime is refused, whatever
cookie the browser still holds.

`authenticated_at` is when the password (and second factor) were last proven,
at login or by confirming the password again; sensitive pages ask that it be
recent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import purging
from gateway.models import PortalSession

NONCE_BYTES = 24
# Writing last_seen_at on every request would make every page view a write.
TOUCH_INTERVAL = dt.timedelta(seconds=60)

END_LOGOUT = "logout"
END_BY_USER = "ended by user"
END_PASSWORD_CHANGED = "password changed"  # noqa: S105  (a reason, not a password)
END_BY_ADMIN = "ended by admin"
END_2FA_ENABLED = "two-factor login turned on"


def new_nonce() -> str:
    return secrets.token_urlsafe(NONCE_BYTES)


def token_digest(nonce: str) -> str:
    return hashlib.sha256(nonce.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ActiveSession:
    """What the portal keeps of a looked-up session (detached from the DB session)."""

    id: int
    account_id: int
    authenticated_at: dt.datetime


def create(
    session: so.Session,
    account_id: int,
    nonce: str,
    *,
    ip: str,
    user_agent: str,
    now: dt.datetime,
) -> PortalSession:
    row = PortalSession(
        account_id=account_id,
        token_digest=token_digest(nonce),
        created_at=now,
        authenticated_at=now,
        last_seen_at=now,
        ip=ip[:64],
        user_agent=user_agent[:300],
    )
    session.add(row)
    session.flush()
    return row


def lookup(
    session: so.Session, account_id: int, nonce: str, *, now: dt.datetime, idle: dt.timedelta
) -> ActiveSession | None:
    """The live session for this cookie, its last activity noted; None if ended or idle."""
    row = session.scalar(
        sa.select(PortalSession).where(
            PortalSession.token_digest == token_digest(nonce),
            PortalSession.account_id == account_id,
        )
    )
    if row is None or row.ended_at is not None:
        return None
    if now - row.last_seen_at > idle:
        return None
    if now - row.last_seen_at >= TOUCH_INTERVAL:
        row.last_seen_at = now
    return ActiveSession(row.id, row.account_id, row.authenticated_at)


def confirm_password(session: so.Session, session_id: int, now: dt.datetime) -> None:
    """The password was proven again: the session counts as a fresh login from now."""
    session.execute(
        sa.update(PortalSession)
        .where(PortalSession.id == session_id)
        .values(authenticated_at=now, last_seen_at=now)
        .execution_options(synchronize_session=False)
    )


def _live(account_id: int, now: dt.datetime, idle: dt.timedelta) -> sa.ColumnElement[bool]:
    return sa.and_(
        PortalSession.account_id == account_id,
        PortalSession.ended_at.is_(None),
        PortalSession.last_seen_at >= now - idle,
    )


def list_active(
    session: so.Session, account_id: int, *, now: dt.datetime, idle: dt.timedelta
) -> list[PortalSession]:
    return list(
        session.scalars(
            sa.select(PortalSession)
            .where(_live(account_id, now, idle))
            .order_by(PortalSession.last_seen_at.desc(), PortalSession.id.desc())
        )
    )


def end(
    session: so.Session, account_id: int, session_id: int, *, reason: str, now: dt.datetime
) -> bool:
    """End one of the account's sessions; False if there is no such live session."""
    result = session.execute(
        sa.update(PortalSession)
        .where(
            PortalSession.id == session_id,
            PortalSession.account_id == account_id,
            PortalSession.ended_at.is_(None),
        )
        .values(ended_at=now, end_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0)) == 1


def end_all(
    session: so.Session,
    account_id: int,
    *,
    reason: str,
    now: dt.datetime,
    except_id: int | None = None,
) -> int:
    """End every live session of the account (but `except_id`); how many were ended."""
    condition = sa.and_(PortalSession.account_id == account_id, PortalSession.ended_at.is_(None))
    if except_id is not None:
        condition = sa.and_(condition, PortalSession.id != except_id)
    result = session.execute(
        sa.update(PortalSession)
        .where(condition)
        .values(ended_at=now, end_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0))


def purge(
    factory: so.sessionmaker[so.Session],
    cutoff: dt.datetime,
    batches: purging.Batches | None = None,
) -> int:
    """Forget sessions that ended, or were last used, before `cutoff` (in short
    transactions of their own, gateway.purging)."""
    return purging.delete_in_batches(factory, PortalSession, stale(cutoff), batches)


def stale(cutoff: dt.datetime) -> sa.ColumnElement[bool]:
    """The sessions `purge` forgets."""
    return sa.or_(PortalSession.ended_at < cutoff, PortalSession.last_seen_at < cutoff)
