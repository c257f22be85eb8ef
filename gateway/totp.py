"""Two-factor login: TOTP (RFC 6238) codes and one-time recovery codes.

The TOTP secret is wrapped with AES-256-GCM under a key derived (HKDF-SHA256,
label `sealgate totp secret v1`) from the master-key ring, so a stolen database
holds no usable secret. The blob names the master-key version that wrapped it
and its associated data binds it to the account row, so it cannot be moved to
another account. A secret read under an older version is re-wrapped under the
primary one the next time it is used; `rewrap_secrets` moves them all.

Codes are checked within ±1 time step (30 s) of the server's clock, and each is
accepted once: `totp_last_step` remembers the step of the last accepted code and
only a later step passes (RFC 6238 §5.2). The check-and-advance is a single
conditional UPDATE, so two requests racing with one code cannot both win.

Recovery codes are 16 random characters (80 bits) from a 32-letter alphabet,
stored as SHA-256 digests bound to the account. A slow hash (Argon2) protects
guessable, human-chosen passwords; against 80 random bits a fast hash is already
out of reach, and it lets a login try the ten codes without ten Argon2 runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import secrets
import struct
import threading
from pathlib import Path
from typing import Literal

import pyotp
import segno
import sqlalchemy as sa
import sqlalchemy.exc
import sqlalchemy.orm as so
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway import audit, sessions
from gateway.models import Account, AccountSecurity, RecoveryCode
from gateway.settings import Settings
from keystore.leftbehind import LeftBehind, Rewrapped, why_unopenable
from keystore.masterkey import MasterKeyError, MasterKeyRing, RingFile

STEP_SECONDS = 30
DIGITS = 6
WINDOW = 1
RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_LENGTH = 16
# No 0/o, 1/l: codes are copied by hand from paper.
CODE_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
# An enrolment not confirmed within a day starts over with a new secret.
PENDING_LIFETIME = dt.timedelta(days=1)

WRAP_LABEL = b"sealgate totp secret v1"
RECOVERY_LABEL = b"sealgate recovery code v1"
FORMAT_V1 = 1
_HEADER = struct.Struct(">BI")
NONCE_BYTES = 12

CodeKind = Literal["totp", "recovery"]

log = logging.getLogger(__name__)


class TotpError(ValueError):
    """A 2FA request that cannot be carried out; the text is safe to show."""


class SetUpExpired(TotpError):
    """The unconfirmed set-up no longer opens (its master-key version was destroyed)."""

    def __init__(self) -> None:
        super().__init__("the two-factor set-up had expired: start it again")


class SecretUnavailable(Exception):
    """The wrapped secret cannot be opened (wrong row, tampered, or master key retired)."""

    def __init__(self) -> None:
        super().__init__("the two-factor secret cannot be opened")


# -- the master-key ring --------------------------------------------------------

_rings: dict[Path, RingFile] = {}
_rings_guard = threading.Lock()


def ring_for(settings: Settings) -> MasterKeyRing:
    """The current ring of this data dir (re-read when `rotate-master` replaces the file)."""
    with _rings_guard:
        ring_file = _rings.setdefault(settings.data_dir, RingFile(settings.data_dir))
    return ring_file.get()


# -- wrapping the secret ----------------------------------------------------------


def _wrapping_key(master_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=WRAP_LABEL).derive(master_key)


def _associated_data(header: bytes, account_id: int) -> bytes:
    return WRAP_LABEL + header + struct.pack(">Q", account_id)


def seal_secret(ring: MasterKeyRing, secret: str, account_id: int) -> bytes:
    header = _HEADER.pack(FORMAT_V1, ring.primary)
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(_wrapping_key(ring.key(ring.primary))).encrypt(
        nonce, secret.encode("ascii"), _associated_data(header, account_id)
    )
    return header + nonce + sealed


def blob_version(blob: bytes) -> int:
    if len(blob) < _HEADER.size + NONCE_BYTES + 16 or blob[0] != FORMAT_V1:
        raise SecretUnavailable()
    return int(_HEADER.unpack_from(blob)[1])


def open_secret(ring: MasterKeyRing, blob: bytes, account_id: int) -> str:
    version = blob_version(blob)
    header, nonce, sealed = (
        blob[: _HEADER.size],
        blob[_HEADER.size : _HEADER.size + NONCE_BYTES],
        blob[_HEADER.size + NONCE_BYTES :],
    )
    try:
        key = _wrapping_key(ring.key(version))
        plain = AESGCM(key).decrypt(nonce, sealed, _associated_data(header, account_id))
    except (MasterKeyError, InvalidTag):
        raise SecretUnavailable() from None
    return plain.decode("ascii")


def rewrap_secrets(session: so.Session, ring: MasterKeyRing) -> Rewrapped:
    """Re-wrap every TOTP secret under the ring's primary version.

    A master-key rotation must run this before it retires a version, or the
    secrets wrapped under it can no longer be opened. A secret that does not open
    (its version was destroyed) stays as it is and is named in the result by its
    account: its codes are refused either way, and failing here would stop the
    rotation of everything else. An unconfirmed set-up that does not open is named and
    dropped: it holds nothing the owner relies on, and kept it would name a destroyed
    version in every later rotation and backup.
    """
    moved = 0
    left: list[LeftBehind] = []
    rows = session.execute(
        sa.select(AccountSecurity, Account.email)
        .join(Account, Account.id == AccountSecurity.account_id)
        .where(
            sa.or_(
                AccountSecurity.totp_secret.is_not(None), AccountSecurity.totp_pending.is_not(None)
            )
        )
        .order_by(Account.email)
    ).all()
    for row, email in rows:
        for column in ("totp_secret", "totp_pending"):
            blob: bytes | None = getattr(row, column)
            if blob is None:
                continue
            version: int | None = None
            try:
                version = blob_version(blob)
                if version == ring.primary:
                    continue
                secret = open_secret(ring, blob, row.account_id)
            except SecretUnavailable:
                left.append(_left_behind(ring, email, column, version))
                if column == "totp_pending":
                    _discard_pending(row)  # unconfirmed: nothing is lost, a new one is made
                continue
            setattr(row, column, seal_secret(ring, secret, row.account_id))
            moved += 1
    session.flush()
    return Rewrapped(moved, tuple(left))


def _left_behind(ring: MasterKeyRing, email: str, column: str, version: int | None) -> LeftBehind:
    why = why_unopenable(ring, version)
    if column == "totp_pending":
        return LeftBehind(
            f"the unconfirmed two-factor set-up of {email}",
            why,
            "discarded, a new one is made when they next set up two-factor login",
        )
    return LeftBehind(
        f"the two-factor secret of {email}",
        why,
        f"{email} signs in with a recovery code, then turns two-factor login off and on"
        " again (portal: Security) to get a new one",
    )


# -- codes --------------------------------------------------------------------------


def time_step(now: dt.datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)


def clean_code(typed: str) -> str:
    """What the user typed, without spaces and dashes, lower case (codes get copied oddly)."""
    return "".join(c for c in typed if c not in " -\t").lower()


def looks_like_totp(typed: str) -> bool:
    code = clean_code(typed)
    return len(code) == DIGITS and code.isascii() and code.isdigit()


def matching_step(secret: str, typed: str, now: dt.datetime, last_step: int | None) -> int | None:
    """The time step whose code `typed` is, within ±1 step of `now` and after `last_step`."""
    if not looks_like_totp(typed):
        return None
    code = clean_code(typed)
    current = time_step(now)
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(code_at(secret, step), code):
            found = step
    return found


def new_secret() -> str:
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=email, issuer_name=issuer
    )


def qr_svg_data_uri(uri: str) -> str:
    """The otpauth URI as a QR code, an SVG data: URI made here (no remote service)."""
    qr = segno.make(uri, error="m")
    data_uri: str = qr.svg_data_uri(scale=5, border=2, dark="#1d2330", light="#ffffff")
    return data_uri


def format_secret(secret: str) -> str:
    """In groups of four, as authenticator apps show and accept it."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


# -- per-account state ----------------------------------------------------------------


def _security_row(session: so.Session, account_id: int, *, lock: bool = False) -> AccountSecurity:
    query = sa.select(AccountSecurity).where(AccountSecurity.account_id == account_id)
    if lock:
        query = query.with_for_update()
    row = session.scalar(query)
    if row is None:
        try:
            with session.begin_nested():
                row = AccountSecurity(
                    account_id=account_id, alert_new_device=True, alert_failed_login=True
                )
                session.add(row)
        except sqlalchemy.exc.IntegrityError:
            row = session.scalars(query).one()  # another request made it meanwhile
    return row


def security_row(session: so.Session, account_id: int) -> AccountSecurity:
    """The account's row, made (with every alert on) if it has none yet."""
    return _security_row(session, account_id)


def is_enabled(session: so.Session, account_id: int) -> bool:
    return (
        session.scalar(
            sa.select(AccountSecurity.totp_secret.is_not(None)).where(
                AccountSecurity.account_id == account_id
            )
        )
        or False
    )


def enabled_since(session: so.Session, account_id: int) -> dt.datetime | None:
    return session.scalar(
        sa.select(AccountSecurity.totp_enabled_at).where(
            AccountSecurity.account_id == account_id, AccountSecurity.totp_secret.is_not(None)
        )
    )


def start_enrolment(
    session: so.Session, ring: MasterKeyRing, account_id: int, now: dt.datetime
) -> str:
    """The secret to show for enrolment; the same one until confirmed (a reload keeps it)."""
    row = _security_row(session, account_id, lock=True)
    if row.totp_secret is not None:
        raise TotpError("two-factor login is already on")
    pending, since = row.totp_pending, row.totp_pending_at
    if pending is not None and since is not None and now - since < PENDING_LIFETIME:
        try:
            return open_secret(ring, pending, account_id)
        except SecretUnavailable:
            pass  # its version destroyed, or damaged: start over with a new one
    from gateway import master_records  # it opens two-factor secrets too (this module)

    master_records.check_ring(session, ring)  # not sealed under another installation's
    secret = new_secret()
    row.totp_pending = seal_secret(ring, secret, account_id)
    row.totp_pending_at = now
    return secret


def _discard_pending(row: AccountSecurity) -> None:
    row.totp_pending = None
    row.totp_pending_at = None


def confirm_enrolment(
    session: so.Session,
    ring: MasterKeyRing,
    account: Account,
    typed: str,
    now: dt.datetime,
    *,
    keep_session_id: int | None = None,
    ip: str = "",
    user_agent: str = "",
) -> list[str] | None:
    """Turn 2FA on if `typed` is a current code of the pending secret; the recovery codes.

    None when the code is wrong (nothing changes). Every portal session of the
    account but `keep_session_id` (the one that just proved the code) ends: they
    passed no second factor, and whoever turns 2FA on may do so because someone
    else knows the password (mail programs on address passwords stop too, in
    `gateway.logins.still_valid`).
    """
    row = _security_row(session, account.id, lock=True)
    if row.totp_secret is not None:
        raise TotpError("two-factor login is already on")
    if row.totp_pending is None:
        raise TotpError("start the set-up again: no secret is waiting for confirmation")
    try:
        secret = open_secret(ring, row.totp_pending, account.id)
    except SecretUnavailable:
        # Its master-key version was destroyed (or the blob is damaged): no code can ever
        # match it. Dropped here, in the caller's transaction; the next start makes a new one.
        _discard_pending(row)
        raise SetUpExpired() from None
    step = matching_step(secret, typed, now, None)
    if step is None:
        return None
    row.totp_secret = row.totp_pending
    row.totp_pending = None
    row.totp_pending_at = None
    row.totp_last_step = step
    row.totp_enabled_at = now
    codes = replace_recovery_codes(session, account.id, now)
    ended = sessions.end_all(
        session, account.id, reason=sessions.END_2FA_ENABLED, now=now, except_id=keep_session_id
    )
    audit.record(
        session,
        "2fa.enable",
        actor=account.email,
        target=account.email,
        account_id=account.id,
        ip=ip,
        user_agent=user_agent,
        detail=f"{ended} other session(s) ended",
    )
    return codes


def disable(
    session: so.Session, account: Account, now: dt.datetime, *, ip: str = "", user_agent: str = ""
) -> None:
    row = _security_row(session, account.id, lock=True)
    row.totp_secret = None
    row.totp_pending = None
    row.totp_pending_at = None
    row.totp_last_step = None
    row.totp_enabled_at = None
    session.execute(sa.delete(RecoveryCode).where(RecoveryCode.account_id == account.id))
    audit.record(
        session,
        "2fa.disable",
        actor=account.email,
        target=account.email,
        account_id=account.id,
        ip=ip,
        user_agent=user_agent,
    )


def verify_totp(
    session: so.Session, ring: MasterKeyRing, account_id: int, typed: str, now: dt.datetime
) -> bool:
    """True once per time step for a right code; a replayed or stale code is refused."""
    row = session.scalar(sa.select(AccountSecurity).where(AccountSecurity.account_id == account_id))
    if row is None or row.totp_secret is None:
        return False
    secret = open_secret(ring, row.totp_secret, account_id)
    step = matching_step(secret, typed, now, row.totp_last_step)
    if step is None:
        return False
    # Advance only if no other request got there first with this (or a later) step.
    result = session.execute(
        sa.update(AccountSecurity)
        .where(
            AccountSecurity.account_id == account_id,
            AccountSecurity.totp_secret.is_not(None),
            sa.or_(AccountSecurity.totp_last_step.is_(None), AccountSecurity.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    if int(getattr(result, "rowcount", 0)) != 1:
        return False
    session.expire(row)
    if blob_version(row.totp_secret) != ring.primary:
        row.totp_secret = seal_secret(ring, secret, account_id)
    return True


def check_second_factor(
    session: so.Session, ring: MasterKeyRing, account_id: int, typed: str, now: dt.datetime
) -> CodeKind | None:
    """Which kind of code `typed` was when it passes (a TOTP code, or a recovery code).

    A secret that can no longer be opened (its master-key version was retired
    before `rewrap_secrets` ran) refuses every TOTP code; recovery codes still work.
    """
    if looks_like_totp(typed):
        try:
            return "totp" if verify_totp(session, ring, account_id, typed, now) else None
        except SecretUnavailable:
            log.error(
                "the TOTP secret of account %d cannot be opened; it needs to re-enrol", account_id
            )
            return None
    return "recovery" if use_recovery_code(session, account_id, typed, now) else None


# -- recovery codes -----------------------------------------------------------------


def recovery_digest(account_id: int, code: str) -> str:
    message = RECOVERY_LABEL + struct.pack(">Q", account_id) + clean_code(code).encode("utf-8")
    return hashlib.sha256(message).hexdigest()


def format_recovery_code(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def replace_recovery_codes(session: so.Session, account_id: int, now: dt.datetime) -> list[str]:
    """Ten new codes (formatted for display); the old ones stop working."""
    session.execute(sa.delete(RecoveryCode).where(RecoveryCode.account_id == account_id))
    codes = [
        "".join(secrets.choice(CODE_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        for _ in range(RECOVERY_CODE_COUNT)
    ]
    for code in codes:
        session.add(
            RecoveryCode(
                account_id=account_id, digest=recovery_digest(account_id, code), created_at=now
            )
        )
    session.flush()
    return [format_recovery_code(code) for code in codes]


def use_recovery_code(session: so.Session, account_id: int, typed: str, now: dt.datetime) -> bool:
    """Spend a recovery code: True once for each code, False for anything else."""
    code = clean_code(typed)
    if len(code) != RECOVERY_CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        return False
    digest = recovery_digest(account_id, code)
    unused = session.execute(
        sa.select(RecoveryCode.id, RecoveryCode.digest).where(
            RecoveryCode.account_id == account_id, RecoveryCode.used_at.is_(None)
        )
    ).all()
    match = None
    for row_id, stored in unused:
        if hmac.compare_digest(stored, digest):
            match = row_id
    if match is None:
        return False
    result = session.execute(
        sa.update(RecoveryCode)
        .where(RecoveryCode.id == match, RecoveryCode.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0)) == 1


def recovery_codes_left(session: so.Session, account_id: int) -> int:
    return int(
        session.scalar(
            sa.select(sa.func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.account_id == account_id, RecoveryCode.used_at.is_(None))
        )
        or 0
    )
