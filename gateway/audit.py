"""Append-only audit log: admin actions, key events, logins and SMTP AUTH attempts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy.orm as so

from gateway.models import AuditEvent
from gateway.timeutil import utcnow

if TYPE_CHECKING:  # the keystore (and pgpy) is not needed to write an audit row
    from keystore.store import KeyEventSink


# session.info key: actor name → (ip, user agent) of the client a request acts for
# (gateway.admin.Actor.stamp), used by events that shared functions record by name only.
CLIENT_KEY = "sealgate.audit_client"


def record(
    session: so.Session,
    action: str,
    *,
    actor: str,
    target: str = "",
    account_id: int | None = None,
    success: bool = True,
    ip: str = "",
    user_agent: str = "",
    detail: str = "",
) -> AuditEvent:
    """Add one event to the caller's transaction (so it commits with what it describes)."""
    if not ip:
        ip, user_agent = session.info.get(CLIENT_KEY, {}).get(actor, ("", user_agent))
    event = AuditEvent(
        at=utcnow(),
        action=action,
        actor=actor,
        target=target,
        account_id=account_id,
        success=success,
        ip=ip,
        user_agent=user_agent[:300],
        detail=detail,
    )
    session.add(event)
    return event


def key_event_sink(actor: str) -> KeyEventSink:
    """A keystore `KeyEventSink` that writes key events to this log as `actor`."""

    def sink(session: so.Session, action: str, target: str, detail: str) -> None:
        record(session, action, actor=actor, target=target, detail=detail)

    return sink
