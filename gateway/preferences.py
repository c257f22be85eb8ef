"""A user's own settings: the portal language and "always encrypt" for their mail.

Admins set the same two values in the console (gateway.admin.accounts); here the
account owner does, and each change is audited under the owner's name.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy.orm as so

from gateway import audit
from gateway.models import Account

LANGUAGES = ("de", "en", "fr")


class PreferenceError(ValueError):
    """A value the form should never send; the text is safe to show."""


@dataclass(frozen=True)
class Preferences:
    language: str
    always_encrypt: bool


def of(account: Account) -> Preferences:
    return Preferences(account.language, account.always_encrypt)


def save(
    session: so.Session,
    account: Account,
    preferences: Preferences,
    *,
    ip: str = "",
    user_agent: str = "",
) -> list[str]:
    """Store the changed values; returns the names of what changed."""
    if preferences.language not in LANGUAGES:
        raise PreferenceError(f"language must be one of {', '.join(LANGUAGES)}")
    changed = []

    def record(action: str, detail: str) -> None:
        audit.record(
            session,
            action,
            actor=account.email,
            target=account.email,
            account_id=account.id,
            ip=ip,
            user_agent=user_agent,
            detail=detail,
        )

    if account.language != preferences.language:
        account.language = preferences.language
        record("preferences.language", preferences.language)
        changed.append("language")
    if account.always_encrypt != preferences.always_encrypt:
        account.always_encrypt = preferences.always_encrypt
        record("preferences.always_encrypt", "on" if preferences.always_encrypt else "off")
        changed.append("always_encrypt")
    return changed
