"""Hosted domains: list, add, disable (no new mail), enable, delete (empty, or purged)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import accounts
from gateway.accounts import AccountError
from gateway.addresses import InvalidAddress, other_domain
from gateway.admin import Actor, AdminError, NotFound
from gateway.admin import accounts as admin_accounts
from gateway.dkim import keys as dkim_keys
from gateway.models import Account, Address, Alias, Domain, MailboxMessage
from keystore.masterkey import MasterKeyRing


@dataclass(frozen=True)
class DomainInfo:
    name: str
    created_at: dt.datetime
    disabled_at: dt.datetime | None
    addresses: int
    # What is wrong with its DKIM keys ("" when they sign, or no ring was given).
    dkim_problem: str = ""

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True)
class DeletePreview:
    """What deleting a domain removes: shown before the admin confirms a purge.

    An account goes with the domain when nothing of it is left elsewhere: all its
    addresses are in the domain (or it has none and its login is there). Kept, an
    account would sign in with a login in no hosted domain, holding its 2FA secret,
    app passwords and sessions. An account that still has an address in another
    domain stays (`kept_accounts`), losing only its addresses here.

    A kept account whose login is in the domain signs in afterwards with one of the
    addresses it keeps (`moved_logins`: old, new): the one with the login's local
    part, else the first. Left, the login would name a domain hosted no more, where
    its security alerts and key exports would be sent. When each address it keeps
    is already another account's login, the purge is refused (`stuck_logins`).
    """

    domain: str
    addresses: tuple[str, ...]
    aliases: int
    messages: int
    accounts: tuple[str, ...]
    kept_accounts: tuple[str, ...]
    # The enabled admin among `accounts` when no other enabled admin would be left.
    last_admin: str | None
    moved_logins: tuple[tuple[str, str], ...] = ()
    stuck_logins: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.addresses and not self.accounts

    def refusal(self, *, purge: bool) -> str | None:
        """Why the deletion cannot go ahead as asked, or None."""
        if not self.empty and not purge:
            held = [f"{len(self.addresses)} address(es)"] if self.addresses else []
            if self.accounts:
                held.append(f"{len(self.accounts)} account(s) with no address elsewhere")
            return (
                f"domain {self.domain} still has {' and '.join(held)}; delete them first, or"
                " purge the domain (its mail is deleted, its keys retired, and accounts with"
                " no address elsewhere deleted)"
            )
        if purge and self.last_admin is not None:
            return (
                f"purging {self.domain} would delete {self.last_admin}, the last admin who"
                " can sign in; make an account outside this domain an admin first"
            )
        if purge and self.stuck_logins:
            return (
                f"purging {self.domain} would leave the login of {', '.join(self.stuck_logins)}"
                " in it, and every address it keeps is another account's login; delete"
                " those accounts or give it another address first"
            )
        return None


def list_domains(
    session: so.Session,
    ring: MasterKeyRing | None = None,
    *,
    dkim_remedy: str = dkim_keys.RENEW_HINT,
) -> list[DomainInfo]:
    """Every hosted domain; with `ring`, each says if a DKIM key of it cannot be opened,
    and `dkim_remedy` (gateway.dkim.keys.problem)."""
    query = sa.select(Address.domain_id, sa.func.count()).group_by(Address.domain_id)
    counts = {domain_id: int(n) for domain_id, n in session.execute(query)}
    return [
        DomainInfo(
            d.name,
            d.created_at,
            d.disabled_at,
            counts.get(d.id, 0),
            dkim_keys.problem(session, ring, d, remedy=dkim_remedy) if ring is not None else "",
        )
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
    aliases = session.scalar(sa.select(sa.func.count()).select_from(Alias).where(_in(row.name)))
    deleted, kept = _accounts_of(session, row)
    moved, stuck = _new_logins(session, row, kept)
    return DeletePreview(
        row.name,
        addresses,
        int(aliases or 0),
        int(messages or 0),
        accounts=tuple(a.email for a in deleted),
        kept_accounts=tuple(a.email for a in kept),
        last_admin=_last_admin(session, deleted),
        moved_logins=moved,
        stuck_logins=stuck,
    )


def _forms(domain: Domain) -> list[str]:
    """The domain's name in both IDNA forms (a login may be stored in either)."""
    return [domain.name] + [f for f in (other_domain(domain.name),) if f is not None]


def _new_logins(
    session: so.Session, domain: Domain, kept: list[Account]
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """For each kept account with its login in `domain`: (old, new) where one of its
    other addresses is no other account's login, else its login among the stuck."""
    forms = _forms(domain)
    moved: list[tuple[str, str]] = []
    stuck: list[str] = []
    for account in kept:
        local, _, where = account.email.rpartition("@")
        if where not in forms:
            continue
        left = sorted(
            (a.address for a in account.addresses if a.domain_id != domain.id),
            key=lambda address: (address.rpartition("@")[0] != local, address),
        )
        free = next((a for a in left if accounts.find_account(session, a) is None), None)
        if free is None:
            stuck.append(account.email)
        else:
            moved.append((account.email, free))
    return tuple(moved), tuple(stuck)


def _in(domain: str) -> sa.ColumnElement[bool]:
    """An alias in `domain`: LIKE with the name's `_` and `%` taken literally."""
    return Alias.alias.endswith(f"@{domain}", autoescape=True)


def _accounts_of(session: so.Session, domain: Domain) -> tuple[list[Account], list[Account]]:
    """The accounts the domain's deletion touches: (deleted with it, kept), by login.

    Touched: an account with an address in the domain, or with its login there (in
    either IDNA form). Kept: one that still has an address in another domain.
    """
    forms = _forms(domain)
    owning = sa.select(Address.account_id).where(Address.domain_id == domain.id)
    in_domain = sa.or_(*(Account.email.endswith(f"@{f}", autoescape=True) for f in forms))
    touched = session.scalars(
        sa.select(Account).where(sa.or_(Account.id.in_(owning), in_domain)).order_by(Account.email)
    ).all()
    elsewhere = set(
        session.scalars(
            sa.select(Address.account_id)
            .where(Address.domain_id != domain.id)
            .where(Address.account_id.in_([a.id for a in touched]))
        )
    )
    deleted = [a for a in touched if a.id not in elsewhere]
    kept = [a for a in touched if a.id in elsewhere]
    return deleted, kept


def _last_admin(session: so.Session, deleted: list[Account]) -> str | None:
    gone = {a.id for a in deleted}
    enabled_admins = session.scalars(
        sa.select(Account).where(Account.is_admin.is_(True), Account.disabled_at.is_(None))
    ).all()
    if any(a.id not in gone for a in enabled_admins):
        return None
    return next((a.email for a in enabled_admins), None)


def delete(
    session: so.Session, name: str, *, actor: Actor, now: dt.datetime, purge: bool = False
) -> DeletePreview:
    """Delete an empty domain; with `purge`, first what `preview_delete` listed: the
    accounts with nothing outside the domain (with everything they own), then the
    domain's other addresses (mail purged, keys retired) and its aliases."""
    preview = preview_delete(session, name)
    if (refusal := preview.refusal(purge=purge)) is not None:
        raise AdminError(refusal)
    why = f"purged with domain {preview.domain}"
    for login in preview.accounts:
        admin_accounts.delete_account(
            session, admin_accounts.get(session, login), actor=actor, now=now, why=why
        )
    for address in preview.addresses:
        if accounts.find_address(session, address) is not None:
            admin_accounts.delete_address(session, address, actor=actor, now=now)
    for old, new in preview.moved_logins:
        account = admin_accounts.get(session, old)
        account.email = new
        actor.record(
            session, "account.login", target=new, account_id=account.id, detail=f"was {old}; {why}"
        )
    session.execute(sa.delete(Alias).where(_in(preview.domain)))
    session.delete(get(session, name))
    detail = "empty"
    if not preview.empty:
        detail = (
            f"purged {len(preview.addresses)} address(es), {preview.messages} message(s);"
            f" {len(preview.accounts)} account(s) deleted, {len(preview.kept_accounts)} kept"
            " (addresses in other domains)"
            + (f", {len(preview.moved_logins)} login(s) moved" if preview.moved_logins else "")
        )
    actor.record(session, "domain.delete", target=preview.domain, detail=detail)
    return preview
