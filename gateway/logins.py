"""The one password check for every way in: the portal, SMTP AUTH and IMAP.

Each login goes through `check` in three steps, so Argon2 never runs while a
database transaction or the SQLite writer lock (`gateway.db.transaction`'s turn) is
held, and runs at most once:

1. read (a read-only transaction, no write lock): the account the name belongs
   to, its stored hash, whether it or its domain is disabled, whether it has
   two-factor login, its lockout, and (mail programs) its app passwords;
2. decide, outside any transaction: a locked account is refused without a
   check; otherwise the password is compared with an app password (SHA-256),
   looked up in the verified-credential cache (`gateway.credential_cache`:
   a hit only against the very hash just read), or verified by Argon2 once. A
   right password made with an outdated Argon2 cost is rehashed here too;
3. write (one short transaction): the lockout count (one per account, for all
   protocols, or a known client's own, `gateway.lockout`), a mail program's
   network as known (`gateway.known_clients`, at most daily), the activity entry
   naming the protocol, the failed-login alert mail, an app password's last use,
   and the new hash (only if the stored one is still the one verified).

Rules, the same for every protocol: a name under an IDN domain is the same login
in both forms of the domain (A-label and U-label, `gateway.addresses.other_form`),
and counts as one; an unknown name costs a full Argon2 verify
and is counted under its own name; a locked account is refused and not counted,
except by its known clients (a browser with its device cookie, a mail program's
network it logged in from), which answer to locks of their own;
a mail program's right login does not clear the account's count (only a portal
login that passed every factor does, from a browser not yet known);
an account with two-factor login lets mail programs in with app passwords only,
and the portal only after its second step (webportal.auth); a mail program is told
to use an app password only when the address password it sent was right (verified
as any other), so the reply names no account with two-factor login to a guesser, and
a wrong one is refused and counted as any wrong password.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import (
    accounts,
    app_passwords,
    audit,
    db,
    known_clients,
    lockout,
    login_alerts,
    smtp_codes,
    totp,
)
from gateway.addresses import InvalidAddress, normalize_address, other_form
from gateway.credential_cache import CredentialCache
from gateway.models import Account, AccountSecurity, Address, AppPassword, Domain
from gateway.passwords import PasswordHasher
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.runtime import Runtime

Protocol = Literal["portal", "SMTP", "IMAP"]
PROTOCOLS: tuple[Protocol, ...] = ("portal", "SMTP", "IMAP")
# The activity entry of each protocol's attempt (the portal's success is written by
# webportal.auth when the session starts, after the second factor if there is one).
AUDIT_ACTIONS: dict[Protocol, str] = {"portal": "login", "SMTP": "smtp.auth", "IMAP": "imap.auth"}
MAX_LOGIN_LENGTH = 320
UNKNOWN_ACTOR = "(not an address)"

Refusal = Literal["wrong", "locked", "disabled", "app_password_required"]
MAIL_REPLIES: dict[Refusal, str] = {
    "wrong": smtp_codes.AUTH_INVALID,
    "locked": lockout.SMTP_LOCKED,
    "disabled": smtp_codes.ACCOUNT_DISABLED,
    "app_password_required": app_passwords.AUTH_APP_PASSWORD_REQUIRED,
}
# What the cache keys a password by: the account password opens the portal, an
# address password a mail program; the same text is two different credentials.
_CACHE_KIND: dict[Protocol, str] = {"portal": "account", "SMTP": "address", "IMAP": "address"}


@dataclass(frozen=True)
class Attempt:
    """One login as the client sent it; `user_agent` and `devices` only from browsers:
    (account id, device id) of each device cookie the portal verified
    (`gateway.known_clients`)."""

    protocol: Protocol
    login: str
    password: str
    ip: str
    user_agent: str = ""
    devices: frozenset[tuple[int, str]] = frozenset()

    def __repr__(self) -> str:
        return f"Attempt({self.protocol}, {self.login[:80]!r}, ip={self.ip!r})"


@dataclass(frozen=True)
class Credential:
    """What a mail program's login rested on, checked again while its connection lasts
    (`still_valid`): the address and account, and the app password used or a digest of
    the stored address-password hash the password was verified against."""

    account_id: int
    address_id: int
    app_password_id: int | None = None
    hash_digest: bytes = field(default=b"", repr=False)


def _hash_digest(stored_hash: str) -> bytes:
    return hashlib.sha256(stored_hash.encode()).digest()


@dataclass(frozen=True)
class LoginResult:
    """How one attempt went. `account_id` is set when the credentials were right.

    `subject_id` is the address (mail programs) or account (portal) the login
    named; `addresses` are the account's addresses (what SMTP may send as).
    `detail` says how it went, never with a secret in it.
    """

    protocol: Protocol
    account_id: int | None
    known_account_id: int | None = None
    subject_id: int | None = None
    login: str = ""
    refusal: Refusal | None = None
    needs_second_factor: bool = False
    cached: bool = False
    detail: str = ""
    addresses: frozenset[str] = field(default_factory=frozenset)
    credential: Credential | None = None  # a mail program's right login

    @property
    def ok(self) -> bool:
        return self.account_id is not None

    @property
    def reply(self) -> str | None:
        """The SMTP reply of a refusal (IMAP maps the same refusals to its own codes)."""
        return MAIL_REPLIES[self.refusal] if self.refusal else None


@dataclass(frozen=True)
class _Seen:
    """What step 1 read: plain values, so nothing is loaded lazily after the read ends."""

    account_id: int | None
    subject_id: int | None
    name: str  # the address or account email as stored; the login as typed if unknown
    email: str
    stored_hash: str | None
    disabled: bool
    two_factor: bool
    locked: bool  # for this client: the account's lock, or a known client's own
    app_password: tuple[int, str] | None
    addresses: frozenset[str]
    client: str | None = None  # the client's name under the account (`lockout.client_key`)
    known: bool | None = None  # whether it is known; None when not looked up yet


def _clean_login(login: str) -> str:
    """'' for what cannot be a login (too long, control characters: no NUL for PostgreSQL)."""
    if len(login) > MAX_LOGIN_LENGTH or not login.isprintable():
        return ""
    return login


def _unknown_name_key(login: str) -> str | None:
    """The lockout key of a name that is no account, if it could be one (an address).

    Anything else can never become an account, so a lock on it would tell nothing;
    and it is not written down, since people type passwords into the name field.
    """
    try:
        return lockout.name_key(normalize_address(login)) if login else None
    except InvalidAddress:
        return None


def _read(
    session: so.Session, settings: Settings, attempt: Attempt, now: dt.datetime
) -> _Seen | None:
    """The account behind the login, or None for an unknown name."""
    counters = lockout.store_for(session, settings.security)
    login = _clean_login(attempt.login)
    if login and attempt.protocol != "portal":
        return _read_address(session, settings, counters, attempt, login, now)
    account = accounts.find_account(session, login) if login else None
    if account is None:
        return _unknown(counters, login, now)
    client, known, locked = _lock_state(session, settings, counters, attempt, account.id, now)
    return _Seen(
        account_id=account.id,
        subject_id=account.id,
        name=account.email,
        email=account.email,
        stored_hash=account.password_hash,
        disabled=account.disabled_at is not None,
        two_factor=totp.is_enabled(session, account.id),
        locked=locked,
        app_password=None,
        addresses=frozenset(),
        client=client,
        known=known,
    )


def _lock_state(
    session: so.Session,
    settings: Settings,
    counters: lockout.Store,
    attempt: Attempt,
    account_id: int,
    now: dt.datetime,
) -> tuple[str | None, bool | None, bool]:
    """(the client's name, whether it is known, whether it is locked out) for a login
    to this account (`gateway.lockout`): a known client answers to its own key alone,
    anyone else to the account's. Whether a mail program's network is known is read
    only when a lock makes it matter (one statement reads both locks)."""
    security = settings.security
    client: str | None = None
    known: bool | None = False
    if known_clients.enabled(security):
        if attempt.protocol == "portal":
            device = next((d for a, d in attempt.devices if a == account_id), None)
            if device is not None:
                client, known = known_clients.device_client(device), True
        else:
            client, known = known_clients.mail_client(attempt.ip), None
    own = lockout.client_key(account_id, client) if client is not None else None
    shared = lockout.account_key(account_id)
    locked = counters.locked_among([shared] if own is None else [shared, own], now)
    if not locked:
        return client, known, False
    if known is None:
        known = known_clients.is_known_mail_client(session, security, account_id, attempt.ip, now)
    if known:
        return client, True, own in locked
    return client, False, shared in locked


def _unknown(counters: lockout.Store, login: str, now: dt.datetime) -> _Seen | None:
    """An unknown name: None, or a locked stand-in when that name is locked out."""
    key = _unknown_name_key(login)
    if key is None or counters.locked_until(key, now) is None:
        return None
    return _Seen(None, None, login, "", None, False, False, True, None, frozenset())


def _address_state(*columns: Any) -> sa.Select[Any]:
    """`columns` of an address, with what decides whether it may log in: its account's
    and domain's `disabled_at` and whether the account has a second factor."""
    return (
        sa.select(
            *columns,
            Account.disabled_at.label("account_disabled_at"),
            Domain.disabled_at.label("domain_disabled_at"),
            AccountSecurity.totp_secret.is_not(None).label("two_factor"),
        )
        .join(Account, Account.id == Address.account_id)
        .join(Domain, Domain.id == Address.domain_id)
        .outerjoin(AccountSecurity, AccountSecurity.account_id == Address.account_id)
    )


# What a mail program's login needs of its address, its account, its domain and the
# second factor, in one statement: mail programs log in once per message they send,
# and the ORM path (the address, then its account and domain loaded lazily, then the
# second factor) was four statements and most of a cached login's CPU.
_ADDRESS_LOGIN = _address_state(
    Address.id, Address.address, Address.password_hash, Address.account_id, Account.email
).where(Address.address == sa.bindparam("b_address"))


def _read_address(
    session: so.Session,
    settings: Settings,
    counters: lockout.Store,
    attempt: Attempt,
    login: str,
    now: dt.datetime,
) -> _Seen | None:
    """`_read` for SMTP and IMAP, whose logins are hosted addresses."""
    name = login.strip().lower()
    row = session.execute(_ADDRESS_LOGIN, {"b_address": name}).first()
    if row is None and (other := other_form(name)) is not None:
        row = session.execute(_ADDRESS_LOGIN, {"b_address": other}).first()
    if row is None:
        return _unknown(counters, login, now)
    found = app_passwords.find(session, row.account_id, attempt.password)
    client, known, locked = _lock_state(session, settings, counters, attempt, row.account_id, now)
    return _Seen(
        account_id=row.account_id,
        subject_id=row.id,
        name=row.address,
        email=row.email,
        stored_hash=row.password_hash,
        disabled=row.account_disabled_at is not None or row.domain_disabled_at is not None,
        two_factor=bool(row.two_factor),
        locked=locked,
        app_password=(found.id, found.name) if found is not None else None,
        addresses=frozenset(accounts.owned_addresses(session, row.account_id)),
        client=client,
        known=known,
    )


@dataclass(frozen=True)
class _Decision:
    result: LoginResult
    counted: bool = False
    app_password_id: int | None = None
    rehash: tuple[str, str] | None = None  # (hash verified, new hash)


def _decide(
    hasher: PasswordHasher,
    cache: CredentialCache,
    attempt: Attempt,
    seen: _Seen | None,
    now: dt.datetime,
) -> _Decision:
    """Step 2, outside any transaction: at most one Argon2 run."""
    protocol, password = attempt.protocol, attempt.password
    if seen is None or seen.account_id is None or seen.subject_id is None:
        if seen is not None and seen.locked:
            return _Decision(LoginResult(protocol, None, refusal="locked", detail="locked"))
        hasher.verify(None, password)  # an unknown name costs what a known one does
        detail = "password too long" if _too_long(hasher, password) else ""
        return _Decision(LoginResult(protocol, None, refusal="wrong", detail=detail), counted=True)
    base = LoginResult(
        protocol,
        None,
        known_account_id=seen.account_id,
        subject_id=seen.subject_id,
        login=seen.name,
        addresses=seen.addresses,
    )

    def refused(refusal: Refusal, detail: str = "", *, counted: bool = True) -> _Decision:
        return _Decision(_replace(base, refusal=refusal, detail=detail), counted=counted)

    if seen.locked:
        return refused("locked", "account locked", counted=False)
    if seen.disabled:
        hasher.verify(None, password)  # the same cost as a check: no timing tell
        # The portal answers as for a wrong password, and counts it so that a
        # disabled account locks like any other; a mail program is told why.
        return refused("disabled", "account disabled", counted=protocol == "portal")
    if seen.app_password is not None:
        app_id, app_name = seen.app_password
        return _Decision(
            _replace(
                base,
                account_id=seen.account_id,
                detail=f"app password {app_name!r}",
                credential=Credential(seen.account_id, seen.subject_id, app_password_id=app_id),
            ),
            app_password_id=app_id,
        )
    stored = seen.stored_hash
    if protocol != "portal" and seen.two_factor:
        # The hint only for the right address password: told to anyone, it would name
        # every account with two-factor login. One Argon2 run either way, never the
        # cache (which keeps no address password of such an account).
        if not hasher.verify(stored, password):
            detail = "password too long" if _too_long(hasher, password) else ""
            return refused("wrong", detail)
        return refused("app_password_required", "two-factor login: no app password")
    kind = _CACHE_KIND[protocol]
    if stored is None:
        hasher.verify(None, password)
        return refused("wrong")
    cached = cache.hit(kind, seen.subject_id, password, stored, now)
    if not cached and not hasher.verify(stored, password):
        detail = "password too long" if _too_long(hasher, password) else ""
        return refused("wrong", detail)
    rehash = None
    remembered = stored
    if not cached:
        if hasher.needs_rehash(stored):
            rehash = (stored, hasher.hash(password))
        remembered = rehash[1] if rehash else stored
        cache.remember(kind, seen.subject_id, seen.account_id, password, remembered, now)
    second = protocol == "portal" and seen.two_factor
    detail = "second factor required" if second else ""
    credential = None
    if protocol != "portal":
        credential = Credential(
            seen.account_id, seen.subject_id, hash_digest=_hash_digest(remembered)
        )
    return _Decision(
        _replace(
            base,
            account_id=seen.account_id,
            needs_second_factor=second,
            cached=cached,
            detail=detail,
            credential=credential,
        ),
        rehash=rehash,
    )


def _too_long(hasher: PasswordHasher, password: str) -> bool:
    return hasher.too_long(password)


def _replace(result: LoginResult, **changes: object) -> LoginResult:
    return dataclasses.replace(result, **changes)  # type: ignore[arg-type]


def _actor(attempt: Attempt, seen: _Seen | None) -> str:
    """Who the activity entry names: an unknown login only when it is an address
    (people type passwords into the name field)."""
    if seen is not None and seen.account_id is not None:
        return seen.email if attempt.protocol == "portal" else seen.name
    try:
        return normalize_address(_clean_login(attempt.login))
    except InvalidAddress:
        return UNKNOWN_ACTOR


def _write(
    session: so.Session,
    settings: Settings,
    attempt: Attempt,
    seen: _Seen | None,
    decision: _Decision,
    now: dt.datetime,
) -> known_clients.Noted | None:
    """Step 3, in one short transaction; a mail program's network it noted as known."""
    result = decision.result
    protocol = attempt.protocol
    counters = lockout.store_for(session, settings.security)
    known = result.known_account_id
    if decision.rehash is not None and result.subject_id is not None:
        verified, new_hash = decision.rehash
        table = Account if protocol == "portal" else Address
        # Only if no one changed the password since it was read.
        session.execute(
            sa.update(table)
            .where(table.id == result.subject_id, table.password_hash == verified)
            .values(password_hash=new_hash)
            .execution_options(synchronize_session=False)
        )
    if decision.app_password_id is not None:
        app_passwords.note_use(session, decision.app_password_id, now, ip=attempt.ip)
    # A mail program's right login leaves the count alone: it proves an address or
    # app password, not the account password or the second factor that may be being
    # guessed meanwhile, and a phone logging in every few minutes would otherwise
    # keep the lockout from ever tripping. Only a portal login that passed every
    # factor clears it (webportal.auth.start_session); quiet counts end with the window.
    if decision.counted:
        if known is not None and seen is not None:
            key: str | None = _failure_key(session, settings, attempt, seen, known, now)
        else:
            key = _unknown_name_key(_clean_login(attempt.login))
        if key is not None:
            counters.record_failure(key, now)
    noted = None
    if result.ok and protocol != "portal" and result.account_id is not None:
        noted = known_clients.note_mail_login(
            session, settings.security, result.account_id, attempt.ip, now
        )
    if result.ok and protocol == "portal" and not result.needs_second_factor:
        return None  # webportal.auth.start_session writes the login and clears the count
    actor = _actor(attempt, seen)
    action = AUDIT_ACTIONS[protocol]
    if result.needs_second_factor:
        action = "login.password"
    audit.record(
        session,
        action,
        actor=actor,
        target=actor if known is not None or protocol != "portal" else "",
        account_id=known,
        success=result.ok,
        ip=attempt.ip,
        user_agent=attempt.user_agent,
        detail=result.detail,
    )
    if not result.ok and known is not None and result.refusal != "locked":
        account = session.get(Account, known)
        if account is not None:
            login_alerts.queue_alert(
                session,
                settings,
                account,
                "failed_login",
                login_alerts.LoginContext(
                    ip=attempt.ip, user_agent=attempt.user_agent, at=now, protocol=protocol
                ),
                reason="password",
            )
    return noted


def _failure_key(
    session: so.Session,
    settings: Settings,
    attempt: Attempt,
    seen: _Seen,
    account_id: int,
    now: dt.datetime,
) -> str:
    """Where a failure for the account counts: a known client's own key, else the account's."""
    known = seen.known
    if known is None and seen.client is not None:
        known = known_clients.is_known_mail_client(
            session, settings.security, account_id, attempt.ip, now
        )
    if known and seen.client is not None:
        return lockout.client_key(account_id, seen.client)
    return lockout.account_key(account_id)


def check(
    sessions: so.sessionmaker[so.Session],
    hasher: PasswordHasher,
    cache: CredentialCache,
    settings: Settings,
    attempt: Attempt,
    *,
    now: dt.datetime,
) -> LoginResult:
    """One login, whatever the protocol; blocking (call it from a worker thread).

    Opens its own transactions: the caller must not hold one on SQLite (its write
    lock would block step 3).
    """
    if attempt.protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {attempt.protocol!r}")
    with db.read_only(sessions) as session:
        seen = _read(session, settings, attempt, now)
    decision = _decide(hasher, cache, attempt, seen, now)
    with db.transaction(sessions) as session:
        noted = _write(session, settings, attempt, seen, decision, now)
    if noted is not None:
        known_clients.noted(noted, now)
    return decision.result


def check_for(runtime: Runtime, attempt: Attempt, *, now: dt.datetime) -> LoginResult:
    """`check` with the parts a running server keeps in its Runtime (SMTP, IMAP)."""
    return check(
        runtime.sessions,
        runtime.hasher,
        runtime.credentials,
        runtime.settings,
        attempt,
        now=now,
    )


# What `still_valid` reads of a mail program's login, in one statement per check.
_CREDENTIAL_NOW = _address_state(Address.password_hash, Address.account_id).where(
    Address.id == sa.bindparam("b_address_id")
)


def still_valid(
    sessions: so.sessionmaker[so.Session], credential: Credential
) -> frozenset[str] | None:
    """The account's addresses if a mail program's login still holds, else None.

    A connection authenticates once and may send or read for hours: each transaction
    (SMTP) or command (IMAP) asks again whether the account and its domain are enabled,
    the address is still the account's, and the credential is unchanged: the app
    password still exists, or the address password is the very one verified (any new
    password has a new salt) and no two-factor login was turned on since. A lockout
    does not end sessions (a guesser could otherwise cut off the owner's mail programs);
    it stops new logins. Blocking: call it from a worker thread.
    """
    with db.read_only(sessions) as session:
        row = session.execute(_CREDENTIAL_NOW, {"b_address_id": credential.address_id}).first()
        if (
            row is None
            or row.account_id != credential.account_id
            or row.account_disabled_at is not None
            or row.domain_disabled_at is not None
        ):
            return None
        if credential.app_password_id is not None:
            kept = session.scalar(
                sa.select(AppPassword.id).where(
                    AppPassword.id == credential.app_password_id,
                    AppPassword.account_id == credential.account_id,
                )
            )
            if kept is None:
                return None
        elif (
            row.two_factor
            or row.password_hash is None
            or not hmac.compare_digest(_hash_digest(row.password_hash), credential.hash_digest)
        ):
            return None
        return frozenset(accounts.owned_addresses(session, credential.account_id))
