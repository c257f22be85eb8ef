"""Which browser grants a link honours: what a grant is bound to, and Close.

A grant (webportal.grants) is the message key sealed in the browser's signed
session cookie, so the next request needs no second Argon2 run. The server keeps
no list of grants and cannot call a cookie back: a copy saved earlier (a shared
computer, a browser restoring its session) works as long as the grant's binding
still holds. So the binding names two counters in the database, and changing
either voids every grant issued before:

- the message's seal generation, bumped by a new password (`store.apply_reseal`);
- the link's grant generation, bumped by the recipient's Close (`close`), for that
  link only: every device of that recipient is closed, other recipients are not.
"""

from __future__ import annotations

import struct

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway.models import SecureLink


def binding(public_id: str, seal_generation: int, grant_generation: int) -> bytes:
    """What a grant is sealed to: the message, its seal and the link's Close count."""
    return struct.pack(">II", seal_generation, grant_generation) + public_id.encode()


def link_binding(link: SecureLink) -> bytes:
    """The binding a grant must carry to open `link` now (its message loaded)."""
    return binding(link.message.public_id, link.message.generation, link.grant_generation)


def current_generation(session: so.Session, link_id: int) -> int:
    """The grant generation a grant issued now is to carry.

    Read after the opening is recorded (`store.record_success`), in the same
    transaction: a Close that commits before it counts, one after it voids it.
    """
    generation = session.scalar(
        sa.select(SecureLink.grant_generation).where(SecureLink.id == link_id)
    )
    return generation if generation is not None else 0


def close(session: so.Session, link_id: int, grant_generation: int) -> bool:
    """Void every grant of the link issued so far; True if this call did it.

    `grant_generation` is the one the caller's valid grant was issued under: the
    conditional UPDATE bumps the counter once however many Close requests race,
    and never for a grant that an earlier Close voided. The caller checks the
    grant first: only a browser that could read the message closes it for all.
    """
    result = session.execute(
        sa.update(SecureLink)
        .where(SecureLink.id == link_id, SecureLink.grant_generation == grant_generation)
        .values(grant_generation=SecureLink.grant_generation + 1)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0)) == 1
