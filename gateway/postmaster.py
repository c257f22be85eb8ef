"""The postmaster of every hosted domain (RFC 5321 §4.5.1: a server that delivers mail
MUST take mail for "postmaster", case-insensitive, with or without a domain).

Mail for postmaster@<hosted domain>, or for the bare "postmaster", reaches the
address of that name when one is hosted, else the first address of the oldest
enabled admin account: bounce reports, DMARC reports and complaints reach someone
who can act on them, on a fresh install too.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import accounts, db
from gateway.models import Account, Address

LOCAL_PART = "postmaster"


def names_postmaster(address: str) -> bool:
    """Whether `address` is postmaster (any case), with a domain or without one."""
    return address.strip().rsplit("@", 1)[0].lower() == LOCAL_PART


def resolve(factory: so.sessionmaker[so.Session], address: str) -> str:
    """The address mail for `address` goes to: `address` itself unless it names the
    postmaster of a hosted domain (or no domain) and no such address is hosted."""
    if not names_postmaster(address):
        return address
    domain = address.strip().rpartition("@")[2].lower() if "@" in address else ""
    with db.read_only(factory) as session:
        if domain:
            if accounts.find_domain(session, domain) is None:
                return address  # not ours: the usual answer for another domain
            if accounts.find_address(session, address) is not None:
                return address
        admin = session.scalar(
            sa.select(Address.address)
            .join(Account, Address.account_id == Account.id)
            .where(Account.is_admin, Account.disabled_at.is_(None))
            .order_by(Account.id, Address.id)
            .limit(1)
        )
    return admin or address
