"""Domains, accounts and hosted addresses: creation, lookup and password checks.

An account is a person's portal login; each of its addresses has its own address
password, which mail programs use for SMTP AUTH (as in the reference mail host).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import address_keys, app_passwords, audit, db, lockout, login_alerts, smtp_codes, totp
from gateway.addresses import domain_of, normalize_address, normalize_domain
from gateway.dkim import keys as dkim_keys
from gateway.models import Account, Address, Alias, Domain
from gateway.passwords import PasswordHasher, PasswordTooLong
from gateway.settings import SecuritySettings, Settings
from gateway.timeutil import utcnow
from keystore.masterkey import MasterKeyError, MasterKeyRing


class AccountError(ValueError):
    """A request about accounts that cannot be carried out; the text is safe to show."""


def add_domain(
    session: so.Session,
    name: str,
    *,
    actor: str,
    ring: MasterKeyRing | None = None,
    now: dt.datetime | None = None,
) -> Domain:
    """Add a hosted domain with its DKIM keys (Ed25519 and RSA, sealed under the master key).

    The ring comes from `ring`, else from the session (sessions made by a Runtime
    carry it, see gateway.db.session_factory). Without either, the keys are made
    when the domain first needs them (`sealgate dns`, the relay's first signature).
    """
    name = normalize_domain(name)
    if session.scalar(sa.select(Domain).where(Domain.name == name)):
        raise AccountError(f"domain {name} exists already")
    now = now or utcnow()
    domain = Domain(name=name, created_at=now)
    session.add(domain)
    session.flush()
    ring = ring or db.session_ring(session)
    if ring is not None:
        dkim_keys.ensure_keys(session, ring, domain, now)
    audit.record(session, "domain.add", actor=actor, target=name)
    return domain


def list_domains(session: so.Session) -> list[Domain]:
    return list(session.scalars(sa.select(Domain).order_by(Domain.name)))


def find_domain(session: so.Session, name: str) -> Domain | None:
    return session.scalar(sa.select(Domain).where(Domain.name == name.lower()))


def is_hosted(session: so.Session, address: str) -> bool:
    return find_domain(session, domain_of(address)) is not None


def disabled_domain_reply(session: so.Session, address: str) -> str | None:
    """The SMTP refusal for an address in a domain an admin disabled, else None."""
    domain = find_domain(session, domain_of(address))
    if domain is None or domain.disabled_at is None:
        return None
    return smtp_codes.DOMAIN_DISABLED.format(rcpt=address[:320], domain=domain.name)


def add_account(
    session: so.Session,
    hasher: PasswordHasher,
    email: str,
    password: str,
    *,
    actor: str,
    is_admin: bool = False,
    language: str = "en",
) -> Account:
    email = normalize_address(email)
    if find_account(session, email):
        raise AccountError(f"account {email} exists already")
    account = Account(
        email=email,
        password_hash=hasher.hash(password),
        is_admin=is_admin,
        language=language,
    )
    session.add(account)
    session.flush()
    audit.record(
        session,
        "account.add",
        actor=actor,
        target=email,
        account_id=account.id,
        detail="admin" if is_admin else "",
    )
    return account


def find_account(session: so.Session, email: str) -> Account | None:
    return session.scalar(sa.select(Account).where(Account.email == email.strip().lower()))


def list_accounts(session: so.Session) -> list[Account]:
    return list(session.scalars(sa.select(Account).order_by(Account.email)))


def add_address(
    session: so.Session,
    hasher: PasswordHasher,
    address: str,
    account: Account,
    password: str,
    *,
    actor: str,
    ring: MasterKeyRing | None = None,
    now: dt.datetime | None = None,
) -> Address:
    """Create a hosted address and its OpenPGP key, in the caller's transaction.

    The key is made here, the one place addresses are created, so nothing ever
    meets an address without one. `ring` defaults to the master-key ring bound to
    the session by the runtime (`gateway.address_keys`).
    """
    address = normalize_address(address)
    domain = find_domain(session, domain_of(address))
    if domain is None:
        raise AccountError(
            f"{domain_of(address)} is not a hosted domain (add it with `sealgate domain add`)"
        )
    if find_address(session, address):
        raise AccountError(f"address {address} exists already")
    row = Address(
        address=address,
        account=account,
        domain=domain,
        password_hash=hasher.hash(password),
    )
    session.add(row)
    audit.record(session, "address.add", actor=actor, target=address, account_id=account.id)
    try:
        address_keys.make_key(session, address, now or utcnow(), actor=actor, ring=ring)
    except (MasterKeyError, address_keys.NoRingError) as exc:
        raise AccountError(f"cannot make the OpenPGP key of {address}: {exc}") from None
    return row


def find_address(session: so.Session, address: str) -> Address | None:
    return session.scalar(sa.select(Address).where(Address.address == address.strip().lower()))


def find_deliverable(session: so.Session, rcpt: str) -> Address | None:
    """The hosted address mail for `rcpt` goes to: the address itself, or an alias's target."""
    row = find_address(session, rcpt)
    if row is not None:
        return row
    return session.scalar(
        sa.select(Address)
        .join(Alias, Alias.address_id == Address.id)
        .where(Alias.alias == rcpt.strip().lower())
    )


def list_addresses(session: so.Session) -> list[Address]:
    return list(session.scalars(sa.select(Address).order_by(Address.address)))


def set_address_password(
    session: so.Session, hasher: PasswordHasher, address: Address, password: str, *, actor: str
) -> None:
    address.password_hash = hasher.hash(password)
    audit.record(
        session,
        "address.password",
        actor=actor,
        target=address.address,
        account_id=address.account_id,
    )


def set_account_password(
    session: so.Session, hasher: PasswordHasher, account: Account, password: str, *, actor: str
) -> None:
    account.password_hash = hasher.hash(password)
    audit.record(
        session, "account.password", actor=actor, target=account.email, account_id=account.id
    )


def authenticate_address(
    session: so.Session, hasher: PasswordHasher, login: str, password: str
) -> Address | None:
    """The address whose address password this is, or None. Unknown logins cost a full verify."""
    row = find_address(session, login)
    ok = hasher.verify(row.password_hash if row else None, password)
    if not (ok and row):
        return None
    if hasher.needs_rehash(row.password_hash):
        row.password_hash = hasher.hash(password)
    return row


def authenticate_account(
    session: so.Session, hasher: PasswordHasher, email: str, password: str
) -> Account | None:
    """The account for this portal login, or None. Unknown logins cost a full verify."""
    account = find_account(session, email)
    ok = hasher.verify(account.password_hash if account else None, password)
    if not (ok and account):
        return None
    if hasher.needs_rehash(account.password_hash):
        account.password_hash = hasher.hash(password)
    return account


def owned_addresses(session: so.Session, account_id: int) -> list[str]:
    return list(
        session.scalars(
            sa.select(Address.address)
            .where(Address.account_id == account_id)
            .order_by(Address.address)
        )
    )


@dataclass(frozen=True)
class SmtpLogin:
    """The outcome of one SMTP AUTH: the address on success, else the reply to give.

    `known` is the address the login named, if it exists (for the audit log);
    `detail` says how it went, never with a secret in it.
    """

    address: Address | None
    known: Address | None = None
    reply: str | None = None
    detail: str = ""


# The mail-program protocols one login function serves; each names its audit action.
MAIL_PROTOCOLS = {"SMTP": "smtp.auth", "IMAP": "imap.auth"}


def authenticate_smtp(
    session: so.Session,
    hasher: PasswordHasher,
    security: SecuritySettings,
    login: str,
    password: str,
    *,
    ip: str,
    now: dt.datetime,
    protocol: str = "SMTP",
) -> SmtpLogin:
    """Check a mail program's login (SMTP AUTH, IMAP LOGIN): the address password, or an
    app password of its account.

    An account with two-factor login accepts app passwords only, and a refusal
    says so. Failures of every mail protocol count towards the one mail-program
    lockout of the account (`lockout.smtp_key`); a locked account is refused
    without a password check. Unknown logins cost a full Argon2 verify.
    """
    if protocol not in MAIL_PROTOCOLS:
        raise ValueError(f"unknown mail protocol {protocol!r}")
    row = find_address(session, login) if login.isprintable() and len(login) <= 320 else None
    if row is None:
        hasher.verify(None, password)
        return SmtpLogin(None)
    counters = lockout.store_for(session, security)
    key = lockout.smtp_key(row.account_id)
    if counters.locked_until(key, now) is not None:
        return SmtpLogin(None, row, lockout.SMTP_LOCKED, "account locked")
    if row.account.disabled_at is not None or row.domain.disabled_at is not None:
        hasher.verify(None, password)  # the same cost as a check: no timing tell
        return SmtpLogin(None, row, smtp_codes.ACCOUNT_DISABLED, "account or domain disabled")
    app = app_passwords.verify(session, row.account_id, password, now, ip=ip)
    if app is not None:
        counters.clear(key)
        return SmtpLogin(row, row, detail=f"app password {app.name!r}")
    if totp.is_enabled(session, row.account_id):
        counters.record_failure(key, now)
        return SmtpLogin(
            None, row, app_passwords.AUTH_APP_PASSWORD_REQUIRED, "two-factor login: no app password"
        )
    if not hasher.verify(row.password_hash, password):
        counters.record_failure(key, now)
        return SmtpLogin(None, row)
    if hasher.needs_rehash(row.password_hash):
        row.password_hash = hasher.hash(password)
    counters.clear(key)
    return SmtpLogin(row, row)


def login_mail_program(
    session: so.Session,
    hasher: PasswordHasher,
    settings: Settings,
    login: str,
    password: str,
    *,
    ip: str,
    now: dt.datetime,
    protocol: str,
) -> SmtpLogin:
    """One mail-program login, whatever the protocol: checked by `authenticate_smtp`,
    written to the account's activity, and a failure announced by the failed-login
    alert mail (rate-limited like the portal's)."""
    try:
        result = authenticate_smtp(
            session, hasher, settings.security, login, password, ip=ip, now=now, protocol=protocol
        )
    except PasswordTooLong:
        result = SmtpLogin(None)
    known = result.known
    audit.record(
        session,
        MAIL_PROTOCOLS[protocol],
        actor=login[:320],
        target=login[:320],
        account_id=known.account_id if known else None,
        success=result.address is not None,
        ip=ip,
        detail=result.detail,
    )
    if result.address is None and known is not None and result.detail != "account locked":
        login_alerts.queue_alert(
            session,
            settings,
            known.account,
            "failed_login",
            login_alerts.LoginContext(ip=ip, user_agent="", at=now),
            reason="password",
        )
    return result
