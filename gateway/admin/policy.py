"""The encryption policy an admin edits: stored in the database, the settings file as default.

Before this, the subject tag and the secure-page lifetimes and Argon2 cost came
only from `[encryption]` and `[securepage]` in sealgate.toml, "always encrypt"
and the per-domain rules only from hand-written SQL. Now every value here has a
row in `policy_settings` once an admin sets it; a missing row means the
settings file's value. Every value is checked against its bounds when written
and again when read (a hand-edited row must not make the portal spend unbounded
Argon2 memory), and a bad stored value falls back to the default.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway.addresses import InvalidAddress, normalize_domain
from gateway.admin import Actor, AdminError
from gateway.models import EncryptionRule, PolicySetting
from gateway.settings import (
    SECUREPAGE_MAX_MEMORY_COST,
    SECUREPAGE_MAX_PARALLELISM,
    SECUREPAGE_MAX_TIME_COST,
    SecurePageSettings,
    Settings,
)

log = logging.getLogger(__name__)

MAX_VALID_DAYS = 365
MAX_TAG_CHARS = 64
LANGUAGES = ("de", "en", "fr")


@dataclass(frozen=True)
class Policy:
    """The policy in force: what the pipeline and the secure page use for new mail."""

    subject_tag: str
    securepage_valid_days: int
    securepage_max_valid_days: int
    securepage_kdf_time_cost: int
    securepage_kdf_memory_cost: int
    securepage_kdf_parallelism: int
    new_account_always_encrypt: bool
    new_account_language: str

    def securepage(self, base: SecurePageSettings) -> SecurePageSettings:
        """`base` with the admin's lifetimes and Argon2 cost for newly sealed pages."""
        return dataclasses.replace(
            base,
            valid_days=self.securepage_valid_days,
            max_valid_days=self.securepage_max_valid_days,
            kdf_time_cost=self.securepage_kdf_time_cost,
            kdf_memory_cost=self.securepage_kdf_memory_cost,
            kdf_parallelism=self.securepage_kdf_parallelism,
        )


def defaults(settings: Settings) -> Policy:
    page = settings.securepage
    return Policy(
        subject_tag=settings.encryption.subject_tag,
        securepage_valid_days=page.valid_days,
        securepage_max_valid_days=page.max_valid_days,
        securepage_kdf_time_cost=page.kdf_time_cost,
        securepage_kdf_memory_cost=page.kdf_memory_cost,
        securepage_kdf_parallelism=page.kdf_parallelism,
        new_account_always_encrypt=False,
        new_account_language="en",
    )


def _int_between(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value.strip())
            else:
                raise AdminError(f"expected a whole number between {low} and {high}")
        if not low <= value <= high:
            raise AdminError(f"must be between {low} and {high}")
        return int(value)

    return check


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise AdminError("expected on or off")


def _tag(value: Any) -> str:
    text = str(value).strip()
    if len(text) > MAX_TAG_CHARS or not text.isprintable():
        raise AdminError(f"a subject tag is at most {MAX_TAG_CHARS} printable characters")
    return text


def _language(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in LANGUAGES:
        raise AdminError(f"must be one of {', '.join(LANGUAGES)}")
    return text


# key → (check, what it means); the order is the order `policy show` lists them in.
FIELDS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "subject_tag": (_tag, "subject tag that asks for encryption (empty: no tag)"),
    "securepage_valid_days": (
        _int_between(1, MAX_VALID_DAYS),
        "days a secure-page link works by default",
    ),
    "securepage_max_valid_days": (
        _int_between(1, MAX_VALID_DAYS),
        "longest a sender may extend a link, in days",
    ),
    "securepage_kdf_time_cost": (
        _int_between(1, SECUREPAGE_MAX_TIME_COST),
        "Argon2id iterations for new secure pages",
    ),
    "securepage_kdf_memory_cost": (
        _int_between(8, SECUREPAGE_MAX_MEMORY_COST),
        "Argon2id memory in KiB for new secure pages",
    ),
    "securepage_kdf_parallelism": (
        _int_between(1, SECUREPAGE_MAX_PARALLELISM),
        "Argon2id lanes for new secure pages",
    ),
    "new_account_always_encrypt": (_bool, 'new accounts start with "always encrypt" on'),
    "new_account_language": (_language, "language of new accounts"),
}


def _consistent(policy: Policy) -> str | None:
    """Why the values do not fit together, or None."""
    if policy.securepage_max_valid_days < policy.securepage_valid_days:
        return "securepage_max_valid_days must not be less than securepage_valid_days"
    if policy.securepage_kdf_memory_cost < 8 * policy.securepage_kdf_parallelism:
        return "securepage_kdf_memory_cost must be at least 8 KiB per lane"
    return None


def _stored(session: so.Session) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for row in session.scalars(sa.select(PolicySetting)):
        if row.key not in FIELDS:
            continue
        try:
            values[row.key] = FIELDS[row.key][0](json.loads(row.value))
        except (AdminError, ValueError):
            log.warning("policy value %s in the database is invalid; using the default", row.key)
    return values


def effective(session: so.Session, settings: Settings) -> Policy:
    """The settings file's policy with the admin's stored values over it."""
    base = defaults(settings)
    stored = _stored(session)
    policy = dataclasses.replace(base, **stored)
    if _consistent(policy) is not None:
        log.warning("stored policy values do not fit together; using the settings file's")
        return base
    return policy


@dataclass(frozen=True)
class PolicyValue:
    key: str
    value: Any
    default: Any
    meaning: str

    @property
    def overridden(self) -> bool:
        return bool(self.value != self.default)


def show(session: so.Session, settings: Settings) -> list[PolicyValue]:
    policy, base = effective(session, settings), defaults(settings)
    return [
        PolicyValue(key, getattr(policy, key), getattr(base, key), meaning)
        for key, (_check, meaning) in FIELDS.items()
    ]


@dataclass(frozen=True)
class PolicyUpdate:
    """The policy after a `set_values`, and which of the keys given changed it.

    A key whose value was in force already changes nothing and gets no audit event
    (as a role or language set to what it is), so the front ends can say "unchanged"
    rather than "updated".
    """

    policy: Policy
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]


def set_values(
    session: so.Session,
    settings: Settings,
    changes: dict[str, Any],
    *,
    actor: Actor,
    now: dt.datetime,
) -> PolicyUpdate:
    """Check and store several values at once (they are checked together, e.g. the two
    lifetimes); a value equal to the settings file's default removes the override."""
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise AdminError(f"unknown policy setting {unknown[0]} (known: {', '.join(FIELDS)})")
    checked: dict[str, Any] = {}
    for key, raw in changes.items():
        try:
            checked[key] = FIELDS[key][0](raw)
        except AdminError as exc:
            raise AdminError(f"{key}: {exc}") from None
    current = effective(session, settings)
    proposed = dataclasses.replace(current, **checked)
    problem = _consistent(proposed)
    if problem:
        raise AdminError(problem)
    base = defaults(settings)
    changed = tuple(key for key, value in checked.items() if getattr(current, key) != value)
    for key in changed:
        value = checked[key]
        row = session.get(PolicySetting, key)
        if value == getattr(base, key):
            if row is not None:
                session.delete(row)
        elif row is None:
            session.add(
                PolicySetting(
                    key=key, value=json.dumps(value), updated_at=now, updated_by=actor.name
                )
            )
        else:
            row.value, row.updated_at, row.updated_by = json.dumps(value), now, actor.name
        actor.record(session, "policy.set", target=key, detail=json.dumps(value))
    session.flush()
    unchanged = tuple(key for key in checked if key not in changed)
    return PolicyUpdate(proposed, changed, unchanged)


# -- per recipient domain "require encryption" rules --------------------------------


def list_rules(session: so.Session) -> list[EncryptionRule]:
    return list(session.scalars(sa.select(EncryptionRule).order_by(EncryptionRule.domain)))


def add_rule(session: so.Session, domain: str, *, actor: Actor) -> EncryptionRule:
    """Mail to recipients in `domain` is always encrypted (PGP, or a secure page)."""
    try:
        name = normalize_domain(domain)
    except InvalidAddress as exc:
        raise AdminError(str(exc)) from None
    if session.scalar(sa.select(EncryptionRule).where(EncryptionRule.domain == name)):
        raise AdminError(f"a rule for {name} exists already")
    rule = EncryptionRule(domain=name)
    session.add(rule)
    actor.record(session, "rule.add", target=name, detail="require encryption")
    return rule


def remove_rule(session: so.Session, domain: str, *, actor: Actor) -> None:
    name = domain.strip().lower()[:253]
    rule = session.scalar(sa.select(EncryptionRule).where(EncryptionRule.domain == name))
    if rule is None:
        raise AdminError(f"no rule for {name}")
    session.delete(rule)
    actor.record(session, "rule.remove", target=name)
