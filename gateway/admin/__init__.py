"""The administration layer: every admin action as a plain function, for the console and the CLI.

One module per area (domains, accounts, policy, keys, audit queries, mail log,
queue). Each function takes the caller's session, the acting admin (`Actor`)
and `now`; it changes rows, writes the audit events, and leaves the commit to
the caller (the request or the command). Neither Flask nor click is imported
here, so the console's views and the `sealgate` commands stay thin and the
rules live in one place, testable without a request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import sqlalchemy.orm as so

from gateway import audit
from gateway.models import AuditEvent
from keystore.masterkey import MasterKeyError

T = TypeVar("T")


class AdminError(ValueError):
    """An admin request that cannot be carried out; the text is safe to show to the admin."""


def ring_problem(exc: MasterKeyError) -> str:
    """A master-key ring problem as an admin without a shell (the console) reads it: what
    is wrong, and the step the server's operator takes, in words (the ring is a file on
    the server, out of the console's reach). The command line shows `str(exc)`."""
    step = exc.step or "look into the master key ring on the server"
    return f"{exc.fact}; ask the server's operator to {step}"


class NotFound(AdminError):
    """The account, address, domain or job a request names by its id or name is not there."""


class NotHosted(AdminError):
    """A name outside the hosted domains where the request needs a hosted one.

    `login` is set when an account's login was refused (an outside login can be
    allowed). The text names no remedy: each front end adds its own (a command and
    its option, or a console page and its checkbox), so neither gives the other's.
    """

    def __init__(self, domain: str, *, login: str | None = None) -> None:
        self.domain = domain
        self.login = login
        super().__init__(
            f"{login} is not in a hosted domain" if login else f"{domain} is not a hosted domain"
        )


@dataclass(frozen=True)
class Actor:
    """Who acts, and from where: every audit event of an admin action carries both.

    `name` is the admin's login (or "cli" for the command line); `ip` and
    `user_agent` are the console client's, empty for the CLI.
    """

    name: str
    ip: str = ""
    user_agent: str = ""

    def record(
        self,
        session: so.Session,
        action: str,
        *,
        target: str = "",
        account_id: int | None = None,
        detail: str = "",
        success: bool = True,
    ) -> AuditEvent:
        return audit.record(
            session,
            action,
            actor=self.name,
            target=target,
            account_id=account_id,
            success=success,
            ip=self.ip,
            user_agent=self.user_agent,
            detail=detail,
        )

    def stamp(self, session: so.Session) -> None:
        """Give this actor's client address to audit events written by shared functions.

        gateway.accounts (add_domain, add_address, ...) records events with the
        actor's name only; once stamped, the session tells `audit.record` the
        client for that name, and events already pending get it too.
        """
        # A copy: the session's info starts as a shallow copy of its sessionmaker's, and
        # the client of one session must not leak into the next.
        clients = dict(session.info.get(audit.CLIENT_KEY, {}))
        clients[self.name] = (self.ip, self.user_agent)
        session.info[audit.CLIENT_KEY] = clients
        for obj in session.new:
            if isinstance(obj, AuditEvent) and obj.actor == self.name and not obj.ip:
                obj.ip = self.ip
                obj.user_agent = self.user_agent


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a longer list; `page` counts from 1."""

    items: Sequence[T]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def has_previous(self) -> bool:
        return self.page > 1


MAX_ROW_ID = 2**31 - 1


def valid_id(value: int) -> bool:
    """Whether `value` can be a row id (PostgreSQL refuses a larger integer with an error)."""
    return 0 < value <= MAX_ROW_ID


def clamp_page(page: int, per_page: int, total: int) -> int:
    """A page number inside 1..pages (a hand-edited URL gets the nearest page, not an error)."""
    pages = max(1, math.ceil(total / per_page))
    return min(max(page, 1), pages)
