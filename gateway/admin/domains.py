"""Hosted domains: list, add, disable (no new mail), enable, delete (empty, or purged)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import accounts
from gateway.accounts import AccountError
from gateway.addresses import InvalidAddress
from gateway.admin import Actor, AdminError, NotFound
from gateway.admin import accounts as admin_accounts
from gateway.models import Address, Alias, Domain, MailboxMessage


@dataclass(frozen=True)
class DomainInfo:
    name: str
    created_at: dt.datetime
    disabled_at: dt.datetime | None
    addresses: int

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True)
class DeletePreview:
    """What deleting a domain removes: shown before the admin confirms a purge."""

    domain: str
    addresses: tuple[str, ...]
    aliases: int
    messages: int


def list_domains(session: so.Session) -> list[DomainInfo]:
    query = sa.select(Address.domain_id, sa.func.count()).group_by(Address.domain_id)
    counts = {domain_id: int(n) for domain_id, n in session.execute(query)}
    return [
        DomainInfo(d.name, d.created_at, d.disabled_at, counts.get(d.id, 0))
        for d in accounts.list_domains(session)
    ]


def get(session: so.Session, name: str) -> Domain:
    row = accounts.find_domain(session, name.strip())
    if row is None:
        raise NotFound(f"no hosted domain {name.strip()[:253]}")
    return row


def add(session: so.Session, name: str, *, actor: Actor) -> Domain:
    try:
        row = accounts.add_domain(session, name, actor=actor.name)
    except (AccountError, InvalidAddress) as exc:
        raise AdminError(str(exc)) from None
    actor.stamp(session)
    session.flush()
    return row


def set_disabled(
    session: so.Session, name: str, disabled: bool, *, actor: Actor, now: dt.datetime
) -> Domain:
    """Disable: SMTP refuses new mail to and from the domain; stored mail stays readable."""
    row = get(session, name)
    if disabled and row.disabled_at is None:
        row.disabled_at = now
        actor.record(session, "domain.disable", target=row.name)
    elif not disabled and row.disabled_at is not None:
        row.disabled_at = None
        actor.record(session, "domain.enable", target=row.name)
    return row


def preview_delete(session: so.Session, name: str) -> DeletePreview:
    row = get(session, name)
    addresses = tuple(
        session.scalars(
            sa.select(Address.address).where(Address.domain_id == row.id).order_by(Address.address)
        )
    )
    messages = session.scalar(
        sa.select(sa.func.count())
        .select_from(MailboxMessage)
        .join(Address, MailboxMessage.address_id == Address.id)
        .where(Address.domain_id == row.id)
    )
    aliases = session.scalar(
        sa.select(sa.func.count()).select_from(Alias).where(Alias.alias.like(f"%@{row.name}"))
    )
    return DeletePreview(row.name, addresses, int(aliases or 0), int(messages or 0))


def delete(
    session: so.Session, name: str, *, actor: Actor, now: dt.datetime, purge: bool = False
) -> DeletePreview:
    """Delete an empty domain; with `purge`, first delete every address in it (mail purged,
    keys retired), as `preview_delete` listed."""
    preview = preview_delete(session, name)
    if preview.addresses and not purge:
        raise AdminError(
            f"domain {preview.domain} still has {len(preview.addresses)} address(es);"
            " delete them first, or purge the domain (its mail is deleted, its keys retired)"
        )
    for address in preview.addresses:
        admin_accounts.delete_address(session, address, actor=actor, now=now)
    session.execute(sa.delete(Alias).where(Alias.alias.like(f"%@{preview.domain}")))
    session.delete(get(session, name))
    actor.record(
        session,
        "domain.delete",
        target=preview.domain,
        detail=(
            f"purged {len(preview.addresses)} address(es), {preview.messages} message(s)"
            if preview.addresses
            else "empty"
        ),
    )
    return preview
