"""App passwords: one named, random password per mail program, for SMTP AUTH only.

When an account has two-factor login, its address passwords no longer open SMTP
AUTH (a phished password would otherwise bypass the second factor); each mail
program gets its own app password instead, which can be revoked alone.

An app password is 20 characters from a 32-letter alphabet (100 bits), made by
the server and shown once. It is stored as a SHA-256 digest bound to the
account: Argon2 slows down guessing of passwords people choose, which buys
nothing against 100 random bits, and a fast digest keeps every SMTP connection
from paying for one Argon2 run per app password of the account.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import struct

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import audit
from gateway.models import Account, AppPassword

LENGTH = 20
ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
MAX_NAME_LENGTH = 64
MAX_PER_ACCOUNT = 50
LABEL = b"sealgate app password v1"

# The reply for a 2FA account whose client sent something other than an app password.
AUTH_APP_PASSWORD_REQUIRED = "535 5.7.8 This account uses two-factor login: use an app password"  # noqa: S105


class AppPasswordError(ValueError):
    """A request about app passwords that cannot be carried out; the text is safe to show."""


def clean(typed: str) -> str:
    """Without the spaces and dashes it is shown with, lower case."""
    return "".join(c for c in typed if c not in " -\t").lower()


def digest(account_id: int, password: str) -> str:
    return hashlib.sha256(LABEL + struct.pack(">Q", account_id) + password.encode()).hexdigest()


def format_for_display(password: str) -> str:
    return " ".join(password[i : i + 4] for i in range(0, len(password), 4))


def clean_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise AppPasswordError("Give the app password a name, such as the mail program's.")
    if len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise AppPasswordError(f"The name must be at most {MAX_NAME_LENGTH} printable characters.")
    return name


def create(
    session: so.Session,
    account: Account,
    name: str,
    now: dt.datetime,
    *,
    ip: str = "",
    user_agent: str = "",
) -> tuple[AppPassword, str]:
    """A new app password; the plain text is returned this once and never stored."""
    name = clean_name(name)
    if len(list_for(session, account.id)) >= MAX_PER_ACCOUNT:
        raise AppPasswordError(
            f"An account can have at most {MAX_PER_ACCOUNT} app passwords; revoke unused ones."
        )
    password = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    row = AppPassword(
        account_id=account.id, name=name, digest=digest(account.id, password), created_at=now
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        "app_password.create",
        actor=account.email,
        target=name,
        account_id=account.id,
        ip=ip,
        user_agent=user_agent,
    )
    return row, password


def list_for(session: so.Session, account_id: int) -> list[AppPassword]:
    return list(
        session.scalars(
            sa.select(AppPassword)
            .where(AppPassword.account_id == account_id)
            .order_by(AppPassword.created_at, AppPassword.id)
        )
    )


def find(session: so.Session, account_id: int, typed: str) -> AppPassword | None:
    """The app password of this account that `typed` is; reads only."""
    password = clean(typed)
    if len(password) != LENGTH or any(c not in ALPHABET for c in password):
        return None
    wanted = digest(account_id, password)
    match = None
    for row in list_for(session, account_id):
        if hmac.compare_digest(row.digest, wanted):
            match = row
    return match


def note_use(session: so.Session, app_password_id: int, now: dt.datetime, *, ip: str = "") -> None:
    """Record a login with it (shown on the Security page); nothing if it was revoked since."""
    session.execute(
        sa.update(AppPassword)
        .where(AppPassword.id == app_password_id)
        .values(last_used_at=now, last_used_ip=ip[:64])
        .execution_options(synchronize_session=False)
    )


def verify(
    session: so.Session, account_id: int, typed: str, now: dt.datetime, *, ip: str = ""
) -> AppPassword | None:
    """The app password of this account that `typed` is, with its last use updated."""
    match = find(session, account_id, typed)
    if match is not None:
        match.last_used_at = now
        match.last_used_ip = ip[:64]
    return match


def revoke(
    session: so.Session,
    account: Account,
    app_password_id: int,
    *,
    ip: str = "",
    user_agent: str = "",
) -> str:
    """Delete one of the account's app passwords; its name."""
    row = session.scalar(
        sa.select(AppPassword).where(
            AppPassword.id == app_password_id, AppPassword.account_id == account.id
        )
    )
    if row is None:
        raise AppPasswordError("There is no such app password.")
    session.delete(row)
    audit.record(
        session,
        "app_password.revoke",
        actor=account.email,
        target=row.name,
        account_id=account.id,
        ip=ip,
        user_agent=user_agent,
    )
    return row.name


def revoke_all(session: so.Session, account: Account, *, ip: str = "", user_agent: str = "") -> int:
    result = session.execute(sa.delete(AppPassword).where(AppPassword.account_id == account.id))
    count = int(getattr(result, "rowcount", 0))
    audit.record(
        session,
        "app_password.revoke_all",
        actor=account.email,
        target=account.email,
        account_id=account.id,
        ip=ip,
        user_agent=user_agent,
        detail=f"{count} revoked",
    )
    return count
