"""Domains, accounts and hosted addresses: creation, lookup and password checks.

An account is a person's portal login; each of its addresses has its own address
password, which mail programs use for SMTP AUTH and IMAP (as in the reference mail
host). Logins are checked in gateway.logins.

A name under an IDN domain is one name in both of its forms (A-label and U-label,
`gateway.addresses.other_form`): the `find_*` functions look it up as given, then in
its other form, so `anna@xn--strae-oqa.test` finds the address stored as
`anna@straße.test` (and logs in, and is refused as a duplicate).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import address_keys, audit, credential_cache, db
from gateway.addresses import (
    domain_of,
    in_domain_form,
    normalize_hosted_domain,
    normalize_new_address,
    other_domain,
    other_form,
)
from gateway.dkim import keys as dkim_keys
from gateway.models import Account, Address, Alias, Domain
from gateway.passwords import PasswordHasher
from gateway.timeutil import utcnow
from keystore.masterkey import MasterKeyError, MasterKeyRing


class AccountError(ValueError):
    """A request about accounts that cannot be carried out; the text is safe to show."""


class DomainNotHosted(AccountError):
    """An address in a domain that is not hosted here.

    The text names no remedy: the command line and the console each say how to add a
    domain in their own terms (sealgate/cli/base.py, webportal/admin/common.py).
    """

    def __init__(self, domain: str) -> None:
        self.domain = domain
        super().__init__(f"{domain} is not a hosted domain")


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
    name = normalize_hosted_domain(name)
    if (found := find_domain(session, name)) is not None:
        raise AccountError(f"domain {found.name} exists already")
    now = now or utcnow()
    domain = Domain(name=name, created_at=now)
    session.add(domain)
    session.flush()
    ring = ring or db.session_ring(session)
    if ring is not None:
        try:
            dkim_keys.ensure_keys(session, ring, domain, now)
        except MasterKeyError as exc:
            raise AccountError(f"cannot make the DKIM keys of {name}: {exc}") from None
    audit.record(session, "domain.add", actor=actor, target=name)
    return domain


def list_domains(session: so.Session) -> list[Domain]:
    return list(session.scalars(sa.select(Domain).order_by(Domain.name)))


def find_domain(session: so.Session, name: str) -> Domain | None:
    name = name.strip().lower()
    row = session.scalar(sa.select(Domain).where(Domain.name == name))
    if row is None and (other := other_domain(name)) is not None:
        row = session.scalar(sa.select(Domain).where(Domain.name == other))
    return row


def is_hosted(session: so.Session, address: str) -> bool:
    return find_domain(session, domain_of(address)) is not None


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
    email = normalize_new_address(email)
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
    email = email.strip().lower()
    row = session.scalar(sa.select(Account).where(Account.email == email))
    if row is None and (other := other_form(email)) is not None:
        row = session.scalar(sa.select(Account).where(Account.email == other))
    return row


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
    address = normalize_new_address(address)
    domain = find_domain(session, domain_of(address))
    if domain is None:
        raise DomainNotHosted(domain_of(address))
    # One form per address: the domain's as stored (lookups try the other form).
    address = in_domain_form(address, domain.name)
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
    address = address.strip().lower()
    row = session.scalar(sa.select(Address).where(Address.address == address))
    if row is None and (other := other_form(address)) is not None:
        row = session.scalar(sa.select(Address).where(Address.address == other))
    return row


def _alias_target(session: so.Session, alias: str) -> Address | None:
    return session.scalar(
        sa.select(Address).join(Alias, Alias.address_id == Address.id).where(Alias.alias == alias)
    )


def find_deliverable(session: so.Session, rcpt: str) -> Address | None:
    """The hosted address mail for `rcpt` goes to: the address itself, or an alias's target."""
    row = find_address(session, rcpt)
    if row is not None:
        return row
    rcpt = rcpt.strip().lower()
    row = _alias_target(session, rcpt)
    if row is None and (other := other_form(rcpt)) is not None:
        row = _alias_target(session, other)
    return row


def list_addresses(session: so.Session) -> list[Address]:
    return list(session.scalars(sa.select(Address).order_by(Address.address)))


def set_address_password(
    session: so.Session, hasher: PasswordHasher, address: Address, password: str, *, actor: str
) -> None:
    address.password_hash = hasher.hash(password)
    credential_cache.forget_account(address.account_id)
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
    credential_cache.forget_account(account.id)
    audit.record(
        session, "account.password", actor=actor, target=account.email, account_id=account.id
    )


def owned_addresses(session: so.Session, account_id: int) -> list[str]:
    return list(
        session.scalars(
            sa.select(Address.address)
            .where(Address.account_id == account_id)
            .order_by(Address.address)
        )
    )
