"""The postmaster of every hosted domain (RFC 5321 §4.5.1: a server that delivers mail
MUST take mail for "postmaster", case-insensitive, with or without a domain).

Mail for postmaster@<hosted domain> reaches the address or alias of that name when
one is hosted, else the first address of the oldest enabled admin account: bounce
reports, DMARC reports and complaints reach someone who can act on them, on a fresh
install too. The bare "postmaster" is the postmaster of the primary hosted domain,
the oldest enabled one (the domain `sealgate init` made), as Postfix appends
$myorigin to a bare name.

When neither exists (no postmaster address, no enabled admin with an address)
nothing can hold the mail: `resolve` says so with None, and the SMTP edge answers
POSTMASTER_UNSET, a temporary refusal, so the reporter's server keeps the mail and
retries while an admin adds a mailbox (the log says how). A 5xx would refuse for good
what RFC 5321 says must be taken; storing it nowhere would lose it after a `250`.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import accounts, db
from gateway.addresses import other_form
from gateway.models import Account, Address, Domain

log = logging.getLogger(__name__)

LOCAL_PART = "postmaster"


def names_postmaster(address: str) -> bool:
    """Whether `address` is postmaster (any case), with a domain or without one."""
    return address.strip().rsplit("@", 1)[0].lower() == LOCAL_PART


def resolve(factory: so.sessionmaker[so.Session], address: str) -> str | None:
    """The address mail for `address` goes to: `address` itself unless it names the
    postmaster of a hosted domain (or no domain); None when that postmaster has no
    mailbox at all. Asked only for postmaster recipients, so it costs the MX nothing
    on other RCPTs."""
    if not names_postmaster(address):
        return address
    domain = address.strip().rpartition("@")[2].lower() if "@" in address else ""
    with db.read_only(factory) as session:
        if domain and accounts.find_domain(session, domain) is None:
            return address  # not ours: the usual answer for another domain
        if not domain and (domain := _primary_domain(session)):
            address = _ascii(f"{LOCAL_PART}@{domain}")
        if domain and accounts.find_deliverable(session, address) is not None:
            return address
        admin = session.scalar(
            sa.select(Address.address)
            .join(Account, Address.account_id == Account.id)
            .where(Account.is_admin, Account.disabled_at.is_(None))
            .order_by(Account.id, Address.id)
            .limit(1)
        )
    if admin is None:
        log.warning(
            "mail for %s has no mailbox and was refused for now: add a postmaster@ address"
            " (or alias) to %s, or an address to an admin account",
            address[:320],
            domain or "a hosted domain",
        )
        return None
    return _ascii(admin)


def _primary_domain(session: so.Session) -> str:
    """The oldest enabled hosted domain, or "" when there is none."""
    name = session.scalar(
        sa.select(Domain.name).where(Domain.disabled_at.is_(None)).order_by(Domain.id).limit(1)
    )
    return name or ""


def _ascii(address: str) -> str:
    """An address under an IDN domain in its A-label form: a client that sent a bare
    ASCII "postmaster" without SMTPUTF8 must not be refused for the domain we chose."""
    if address.isascii():
        return address
    other = other_form(address)
    return other if other is not None and other.isascii() else address
