"""Accounts, addresses and aliases as an admin manages them.

Domains and addresses are created only through gateway.accounts
(`add_domain`, `add_address`): key and DKIM set-up hang off those. Deleting an
address purges its mail and retires its keys (they stay in the keystore,
decrypt-only, like any rotated key, so nothing under them is silently lost
from backups); deleting an account deletes its addresses first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import accounts, credential_cache, lockout, sessions, totp
from gateway.accounts import AccountError, DomainNotHosted
from gateway.addresses import (
    InvalidAddress,
    domain_of,
    in_domain_form,
    normalize_address,
    normalize_new_address,
    other_form,
)
from gateway.admin import Actor, AdminError, NotFound, NotHosted, Page, clamp_page, valid_id
from gateway.admin import policy as admin_policy
from gateway.models import Account, Address, Alias, MailboxMessage
from gateway.passwords import PasswordHasher, PasswordTooLong, generate_password
from gateway.settings import SecuritySettings, Settings
from keystore.models import STATUS_ACTIVE, STATUS_RETIRED, StoredKey

LANGUAGES = ("de", "en", "fr")
ROLES = ("user", "admin")
MAX_QUERY = 200


@dataclass(frozen=True)
class AccountInfo:
    id: int
    email: str
    role: str
    language: str
    always_encrypt: bool
    disabled: bool
    two_factor: bool
    addresses: tuple[str, ...]
    created_at: dt.datetime


def _info(session: so.Session, account: Account) -> AccountInfo:
    return AccountInfo(
        id=account.id,
        email=account.email,
        role="admin" if account.is_admin else "user",
        language=account.language,
        always_encrypt=account.always_encrypt,
        disabled=account.disabled_at is not None,
        two_factor=totp.is_enabled(session, account.id),
        addresses=tuple(a.address for a in account.addresses),
        created_at=account.created_at,
    )


def get(session: so.Session, email: str) -> Account:
    row = accounts.find_account(session, email[:320])
    if row is None:
        raise AdminError(f"no account {email.strip()[:320]}")
    return row


def get_by_id(session: so.Session, account_id: int) -> Account:
    row = session.get(Account, account_id) if valid_id(account_id) else None
    if row is None:
        raise NotFound(f"no account #{account_id}")
    return row


def address_by_id(session: so.Session, address_id: int) -> Address:
    row = session.get(Address, address_id) if valid_id(address_id) else None
    if row is None:
        raise NotFound(f"no address #{address_id}")
    return row


def info(session: so.Session, email: str) -> AccountInfo:
    return _info(session, get(session, email))


def search(session: so.Session, query: str, page: int, per_page: int) -> Page[AccountInfo]:
    """Accounts whose login or one of whose addresses contains `query`, by login."""
    condition: sa.ColumnElement[bool] = sa.true()
    needle = query.strip().lower()[:MAX_QUERY]
    if needle:
        pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        owning = sa.select(Address.account_id).where(Address.address.like(pattern, escape="\\"))
        condition = sa.or_(Account.email.like(pattern, escape="\\"), Account.id.in_(owning))
    total = int(
        session.scalar(sa.select(sa.func.count()).select_from(Account).where(condition)) or 0
    )
    page = clamp_page(page, per_page, total)
    rows = session.scalars(
        sa.select(Account)
        .where(condition)
        .order_by(Account.email)
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return Page([_info(session, r) for r in rows], page, per_page, total)


def create(
    session: so.Session,
    settings: Settings,
    hasher: PasswordHasher,
    email: str,
    password: str,
    *,
    actor: Actor,
    role: str = "user",
    language: str | None = None,
    always_encrypt: bool | None = None,
    external_login: bool = False,
) -> Account:
    """A new account; its login must be in a hosted domain unless `external_login`.

    Language and "always encrypt" default to the admin policy's defaults for new accounts.
    """
    try:
        login = normalize_address(email)
    except InvalidAddress as exc:
        raise AdminError(str(exc)) from None
    if not external_login and not accounts.is_hosted(session, login):
        raise NotHosted(domain_of(login), login=login)
    if role not in ROLES:
        raise AdminError(f"role must be one of {', '.join(ROLES)}")
    policy = admin_policy.effective(session, settings)
    language = language or policy.new_account_language
    if language not in LANGUAGES:
        raise AdminError(f"language must be one of {', '.join(LANGUAGES)}")
    try:
        account = accounts.add_account(
            session,
            hasher,
            login,
            password,
            actor=actor.name,
            is_admin=role == "admin",
            language=language,
        )
    except (AccountError, InvalidAddress, PasswordTooLong) as exc:
        raise AdminError(str(exc)) from None
    account.always_encrypt = (
        policy.new_account_always_encrypt if always_encrypt is None else always_encrypt
    )
    actor.stamp(session)
    session.flush()
    return account


def add_address(
    session: so.Session,
    hasher: PasswordHasher,
    address: str,
    owner: str,
    password: str,
    *,
    actor: Actor,
) -> Address:
    account = get(session, owner)
    try:
        normalized = normalize_address(address)
    except InvalidAddress as exc:
        raise AdminError(str(exc)) from None
    if _find_alias(session, normalized) is not None:
        raise AdminError(f"{normalized} is an alias already")
    try:
        row = accounts.add_address(session, hasher, normalized, account, password, actor=actor.name)
    except DomainNotHosted as exc:
        raise NotHosted(exc.domain) from None
    except (AccountError, InvalidAddress, PasswordTooLong) as exc:
        raise AdminError(str(exc)) from None
    actor.stamp(session)
    session.flush()
    return row


def set_disabled(
    session: so.Session, email: str, disabled: bool, *, actor: Actor, now: dt.datetime
) -> Account:
    """Disable: no portal login (open sessions end) and no SMTP AUTH; mail still arrives."""
    account = get(session, email)
    if disabled and account.disabled_at is None:
        _keep_an_admin(session, account)
        account.disabled_at = now
        credential_cache.forget_account(account.id)
        ended = sessions.end_all(session, account.id, reason=sessions.END_BY_ADMIN, now=now)
        actor.record(
            session,
            "account.disable",
            target=account.email,
            account_id=account.id,
            detail=f"{ended} session(s) ended",
        )
    elif not disabled and account.disabled_at is not None:
        account.disabled_at = None
        actor.record(session, "account.enable", target=account.email, account_id=account.id)
    return account


def set_language(session: so.Session, email: str, language: str, *, actor: Actor) -> Account:
    if language not in LANGUAGES:
        raise AdminError(f"language must be one of {', '.join(LANGUAGES)}")
    account = get(session, email)
    if account.language != language:
        account.language = language
        actor.record(
            session,
            "account.language",
            target=account.email,
            account_id=account.id,
            detail=language,
        )
    return account


def set_role(session: so.Session, email: str, role: str, *, actor: Actor) -> Account:
    """Make an account admin or user; the last admin cannot be made a user (no lock-out)."""
    if role not in ROLES:
        raise AdminError(f"role must be one of {', '.join(ROLES)}")
    account = get(session, email)
    make_admin = role == "admin"
    if not make_admin:
        _keep_an_admin(session, account)
    if account.is_admin != make_admin:
        account.is_admin = make_admin
        actor.record(
            session, "account.role", target=account.email, account_id=account.id, detail=role
        )
    return account


def set_always_encrypt(session: so.Session, email: str, on: bool, *, actor: Actor) -> Account:
    account = get(session, email)
    if account.always_encrypt != on:
        account.always_encrypt = on
        actor.record(
            session,
            "account.always_encrypt",
            target=account.email,
            account_id=account.id,
            detail="on" if on else "off",
        )
    return account


def reset_password(
    session: so.Session, hasher: PasswordHasher, email: str, *, actor: Actor, now: dt.datetime
) -> str:
    """Give the account a generated password and end its sessions; returns it, to show once."""
    account = get(session, email)
    password = generate_password()
    accounts.set_account_password(session, hasher, account, password, actor=actor.name)
    sessions.end_all(session, account.id, reason=sessions.END_BY_ADMIN, now=now)
    actor.stamp(session)
    return password


def reset_address_password(
    session: so.Session, hasher: PasswordHasher, address: str, *, actor: Actor
) -> str:
    row = accounts.find_address(session, address[:320])
    if row is None:
        raise AdminError(f"no address {address.strip()[:320]}")
    password = generate_password()
    accounts.set_address_password(session, hasher, row, password, actor=actor.name)
    actor.stamp(session)
    return password


def unlock(session: so.Session, security: SecuritySettings, email: str, *, actor: Actor) -> Account:
    """Lift the account's lockout after failed logins (one for the portal, SMTP and IMAP),
    and the locks of each of its known clients."""
    account = get(session, email)
    counters = lockout.store_for(session, security)
    counters.clear_account(account.id)
    counters.clear(lockout.name_key(account.email))
    actor.record(session, "account.unlock", target=account.email, account_id=account.id)
    return account


def delete(
    session: so.Session, email: str, *, actor: Actor, now: dt.datetime, confirm: str
) -> list[str]:
    """Delete the account and its addresses (mail purged, keys retired); returns the addresses.

    `confirm` must repeat the login: a mistyped click cannot delete mail.
    """
    account = get(session, email)
    if confirm.strip().lower() != account.email:
        raise AdminError(f"type the login {account.email} to confirm the deletion")
    return delete_account(session, account, actor=actor, now=now)


def delete_account(
    session: so.Session, account: Account, *, actor: Actor, now: dt.datetime, why: str = ""
) -> list[str]:
    """Delete `account` with its addresses and everything it owns, once confirmed.

    Its 2FA secret, recovery codes, app passwords, sessions, devices, folders and
    secure pages go with the row (foreign keys ON DELETE CASCADE); its audit events
    stay, unlinked. `why` is added to the audit entry (a purged domain names itself).
    """
    _keep_an_admin(session, account)
    gone = [a.address for a in account.addresses]
    for address in gone:
        delete_address(session, address, actor=actor, now=now)
    login, account_id = account.email, account.id
    session.delete(account)
    session.flush()
    actor.record(
        session,
        "account.delete",
        target=login,
        detail=f"id {account_id}; addresses: {', '.join(gone) or 'none'}"
        + (f"; {why}" if why else ""),
    )
    return gone


def delete_address(session: so.Session, address: str, *, actor: Actor, now: dt.datetime) -> int:
    """Delete a hosted address: its mail is purged, its keys retired; how many messages went."""
    row = accounts.find_address(session, address[:320])
    if row is None:
        raise AdminError(f"no address {address.strip()[:320]}")
    purged = session.execute(sa.delete(MailboxMessage).where(MailboxMessage.address_id == row.id))
    messages = int(getattr(purged, "rowcount", 0))
    retired = session.execute(
        sa.update(StoredKey)
        .where(StoredKey.address == row.address, StoredKey.status == STATUS_ACTIVE)
        .values(status=STATUS_RETIRED, status_changed_at=now)
    )
    keys = int(getattr(retired, "rowcount", 0))
    session.execute(sa.delete(Alias).where(Alias.address_id == row.id))
    name, account_id = row.address, row.account_id
    session.delete(row)
    session.flush()
    actor.record(
        session,
        "address.delete",
        target=name,
        account_id=account_id,
        detail=f"{messages} message(s) purged, {keys} key(s) retired",
    )
    return messages


# -- aliases ----------------------------------------------------------------------


@dataclass(frozen=True)
class AliasInfo:
    alias: str
    address: str


def _find_alias(session: so.Session, alias: str) -> Alias | None:
    """The alias in either IDNA form of its domain (it is stored in the domain's form)."""
    row = session.scalar(sa.select(Alias).where(Alias.alias == alias))
    if row is None and (other := other_form(alias)) is not None:
        row = session.scalar(sa.select(Alias).where(Alias.alias == other))
    return row


def list_aliases(session: so.Session, address: str | None = None) -> list[AliasInfo]:
    query = sa.select(Alias.alias, Address.address).join(Address, Alias.address_id == Address.id)
    if address:
        query = query.where(Address.address == address.strip().lower())
    return [AliasInfo(a, t) for a, t in session.execute(query.order_by(Alias.alias))]


def aliases_by_address(session: so.Session, account: Account) -> dict[str, list[str]]:
    """Each of the account's addresses with its aliases (an address without any: [])."""
    grouped: dict[str, list[str]] = {a.address: [] for a in account.addresses}
    for row in list_aliases(session):
        if row.address in grouped:
            grouped[row.address].append(row.alias)
    return grouped


def add_alias(session: so.Session, alias: str, address: str, *, actor: Actor) -> Alias:
    """Mail to `alias` (in a hosted domain) goes to the hosted `address`."""
    try:
        name = normalize_new_address(alias)
    except InvalidAddress as exc:
        raise AdminError(str(exc)) from None
    target = accounts.find_address(session, address[:320])
    if target is None:
        raise AdminError(f"no address {address.strip()[:320]}")
    domain = accounts.find_domain(session, domain_of(name))
    if domain is None:
        raise NotHosted(domain_of(name))
    name = in_domain_form(name, domain.name)
    if accounts.find_address(session, name) is not None or _find_alias(session, name):
        raise AdminError(f"{name} exists already")
    row = Alias(alias=name, address_id=target.id)
    session.add(row)
    actor.record(
        session, "alias.add", target=name, account_id=target.account_id, detail=target.address
    )
    return row


def remove_alias(session: so.Session, alias: str, *, actor: Actor) -> None:
    row = _find_alias(session, alias.strip().lower()[:320])
    if row is None:
        raise AdminError(f"no alias {alias.strip()[:320]}")
    session.delete(row)
    actor.record(session, "alias.remove", target=row.alias)


def resolve_alias(session: so.Session, address: str) -> str | None:
    """The hosted address an alias delivers to, or None when `address` is no alias."""
    return session.scalar(
        sa.select(Address.address)
        .join(Alias, Alias.address_id == Address.id)
        .where(Alias.alias == address.strip().lower())
    )


def owner_of(session: so.Session, address: str) -> int | None:
    """The id of the account that owns the hosted `address`, or None."""
    return session.scalar(
        sa.select(Address.account_id).where(Address.address == address.strip().lower()[:320])
    )


def _keep_an_admin(session: so.Session, account: Account) -> None:
    """Refuse to disable, demote or delete the last admin who can still sign in.

    A disabled admin cannot sign in, so counting every admin would let the only one left
    who can be disabled, and the console would have nobody to open it.
    """
    if account.is_admin and account.disabled_at is None and _enabled_admin_count(session) <= 1:
        raise AdminError(
            f"{account.email} is the last admin who can sign in; make another admin"
            " (or enable a disabled one) first"
        )


def _enabled_admin_count(session: so.Session) -> int:
    return int(
        session.scalar(
            sa.select(sa.func.count())
            .select_from(Account)
            .where(Account.is_admin.is_(True), Account.disabled_at.is_(None))
        )
        or 0
    )
