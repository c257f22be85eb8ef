"""Keys: every use of pgpy in the project (generation, parsing, rotation, revocation, export).

pgpy makes and manages the hosted keys; everything done to messages (sign,
encrypt, decrypt, verify) is Sequoia's, in `keystore.messages`, but for one step
Sequoia cannot take: opening the session key of a BZip2 message
(`open_session_key`, for `keystore.bzip2_messages`). Keeping pgpy
behind this one module means its quirks (warnings, str-or-bytes results,
exceptions of every type on malformed input) stop here, and the rest of the code
deals in `PublicKey`, `SecretKey` and bytes. The keys it makes: Ed25519 primary
(certify, sign) with one user id for the address, and a Curve25519 ECDH subkey
(encrypt communications and storage); preferences AES-256, SHA-512 then SHA-256,
no compression (compression gains little on mail bodies and opens length side
channels).

Everything parsed here may come from outside; parsing failures become `PgpError`
with a message that is safe to show and never contains key or message bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

# pgpy 0.6.0 uses cipher APIs that `cryptography` has moved (and the imghdr module);
# the notices concern pgpy's code, not anything an admin can act on, so they stay out
# of the server's log. Only these messages, only from pgpy.
for _notice in (r"\w+ has been moved", r"'imghdr' is deprecated"):
    warnings.filterwarnings("ignore", message=_notice, module=r"pgpy(\.|$)")

import pgpy  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from pgpy.constants import (  # noqa: E402
    CompressionAlgorithm,
    EllipticCurveOID,
    HashAlgorithm,
    KeyFlags,
    PubKeyAlgorithm,
    RevocationReason,
    SecurityIssues,
    SignatureType,
    SymmetricKeyAlgorithm,
)
from pgpy.packet import Packet as _PgpyPacket  # noqa: E402
from pgpy.packet.subpackets.signature import ByteFlag as _ByteFlag  # noqa: E402
from pgpy.packet.types import Opaque as _OpaquePacket  # noqa: E402

from keystore import packets  # noqa: E402


def _keep_flag_octets() -> None:
    """Make pgpy write a parsed flag subpacket back exactly as it read it.

    pgpy reads every octet of a flag subpacket (Key Flags, Features, Key Server
    Preferences: its `ByteFlag`) as if it were the first, keeps the bits it knows and
    writes one octet back: SEIPDv2 (Features 0x08, which Sequoia sets) and AEAD (0x02,
    which GnuPG 2.3 and later set) were dropped, and so were Key Flags in a second
    octet (RFC 9580 section 5.2.3.29: 0x0C 0x08 became 0x0C 0x00) and Key Server
    Preferences past 0x80. The data a signature is checked over is that rewrite, so
    every self-signature or binding carrying such a subpacket failed vetting, and the
    minimal key that is stored would have carried a signature its owner never made.
    The subpacket now keeps its octets and writes them back while its flags are the
    ones read; a flag subpacket pgpy makes (hosted keys) is written as before.
    """
    parse, write = _ByteFlag.parse, _ByteFlag.__bytearray__

    def parse_keeping(self: Any, packet: bytearray) -> None:
        before = bytes(packet)
        parse(self, packet)
        body = int(self.header.length) - 1  # the length counts the type octet
        consumed = len(before) - len(packet)
        self._sealgate_octets = before[consumed - body : consumed] if body > 0 else b""
        self._sealgate_flags = frozenset(self.flags)

    def write_keeping(self: Any) -> bytearray:
        octets: bytes | None = getattr(self, "_sealgate_octets", None)
        if octets is None or frozenset(self.flags) != self._sealgate_flags:
            return bytearray(write(self))
        return bytearray(super(_ByteFlag, self).__bytearray__()) + octets

    _ByteFlag.parse = parse_keeping
    _ByteFlag.__bytearray__ = write_keeping


_keep_flag_octets()

MESSAGE_CIPHER = SymmetricKeyAlgorithm.AES256
SIGNATURE_HASH = HashAlgorithm.SHA512
# Large enough for any key with a few hundred signatures; a bigger "key" is refused
# before pgpy parses it, since its parser holds everything in memory.
MAX_KEY_BYTES = 256 * 1024

REVOCATION_REASONS = {
    "compromised": RevocationReason.Compromised,
    "superseded": RevocationReason.Superseded,
    "retired": RevocationReason.Retired,
    "unspecified": RevocationReason.NotSpecified,
}
RevocationCode = Literal["compromised", "superseded", "retired", "unspecified"]


class PgpError(ValueError):
    """OpenPGP data was malformed or unusable; the message is safe to show."""


def _fail(what: str) -> NoReturn:
    raise PgpError(what) from None


def _out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is, or was caused by, a MemoryError (pgpy wraps it in its own errors)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, MemoryError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


@contextmanager
def _untrusted(what: str) -> Iterator[None]:
    """Turn whatever pgpy raises on bad input into one `PgpError` (it raises many types).

    Running out of memory stays a `MemoryError`, so a sandboxed parse can tell a
    memory bomb from malformed input.
    """
    try:
        yield
    except (PgpError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001
        if _out_of_memory(exc):
            raise MemoryError from None
        _fail(what)


@dataclass(frozen=True, eq=False)
class PublicKey:
    """A parsed public key (certificate). Immutable once made: it sits in a shared cache."""

    fingerprint: str
    key_id: str
    subkey_ids: tuple[str, ...]
    _key: Any = field(repr=False)
    # The key as it arrived, when that was exactly this one key: pgpy rewrote the
    # Features subpacket of keys that advertise SEIPDv2 (Sequoia's do) when it
    # serialised, and their self-signatures then failed for Sequoia, which encrypts
    # (`_keep_flag_octets` now prevents that; the bytes as they came stay exact).
    _raw: bytes | None = field(default=None, repr=False)

    def to_bytes(self) -> bytes:
        return self._raw if self._raw is not None else bytes(self._key)

    def armored(self) -> str:
        return str(self._key)

    @property
    def user_ids(self) -> list[str]:
        return [uid.name if not uid.email else uid.email for uid in self._key.userids]

    @property
    def is_revoked(self) -> bool:
        return any(True for _ in self._key.revocation_signatures)


@dataclass(frozen=True, eq=False)
class SecretKey:
    """An unlocked secret key. It prints no material and refuses to be pickled."""

    fingerprint: str
    key_id: str
    subkey_ids: tuple[str, ...]
    _key: Any = field(repr=False)

    def __repr__(self) -> str:
        return f"SecretKey(fingerprint={self.fingerprint!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("secret keys are not picklable")

    @property
    def public(self) -> PublicKey:
        return _public(self._key.pubkey)

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset((self.key_id, *self.subkey_ids))


def _ids(key: Any) -> tuple[str, str, tuple[str, ...]]:
    fingerprint = str(key.fingerprint).replace(" ", "").upper()
    return fingerprint, fingerprint[-16:], tuple(sorted(str(k).upper() for k in key.subkeys))


def _public(key: Any) -> PublicKey:
    fingerprint, key_id, subkey_ids = _ids(key)
    return PublicKey(fingerprint, key_id, subkey_ids, key)


def _secret(key: Any) -> SecretKey:
    fingerprint, key_id, subkey_ids = _ids(key)
    return SecretKey(fingerprint, key_id, subkey_ids, key)


def user_id_for(address: str) -> str:
    return f"<{address}>"


def generate(address: str, now: dt.datetime) -> SecretKey:
    """A new key for `address`: Ed25519 certify+sign primary, Curve25519 encryption subkey."""
    created = now.astimezone(dt.UTC)
    primary = pgpy.PGPKey.new(PubKeyAlgorithm.EdDSA, EllipticCurveOID.Ed25519, created=created)
    uid = pgpy.PGPUID.new(user_id_for(address))
    primary.add_uid(
        uid,
        usage={KeyFlags.Certify, KeyFlags.Sign},
        hashes=[HashAlgorithm.SHA512, HashAlgorithm.SHA256],
        ciphers=[SymmetricKeyAlgorithm.AES256],
        compression=[CompressionAlgorithm.Uncompressed],
        created=created,
    )
    subkey = pgpy.PGPKey.new(PubKeyAlgorithm.ECDH, EllipticCurveOID.Curve25519, created=created)
    primary.add_subkey(
        subkey,
        usage={KeyFlags.EncryptCommunications, KeyFlags.EncryptStorage},
        created=created,
    )
    return _secret(primary)


def secret_key_bytes(key: SecretKey) -> bytes:
    """The transferable secret key, unprotected: only ever handed to `keystore.wrap`."""
    return bytes(key._key)


def protected_export(keys: Sequence[SecretKey], passphrase: str) -> str:
    """The secret keys, armored and each locked with `passphrase` (AES-256, iterated and
    salted SHA-256 S2K), for the owner's own mail program. The stored keys stay as
    they are: each is copied before it is locked."""
    if not passphrase:
        raise ValueError("an exported secret key needs a passphrase")
    blocks: list[str] = []
    for key in keys:
        copy, _others = pgpy.PGPKey.from_blob(bytes(key._key))
        copy.protect(passphrase, SymmetricKeyAlgorithm.AES256, HashAlgorithm.SHA256)
        blocks.append(str(copy))
    return "\n".join(blocks)


def _parse_key(data: bytes | str) -> Any:
    if len(data) > MAX_KEY_BYTES:
        _fail("OpenPGP key is too large")
    with _untrusted("not a valid OpenPGP key"):
        key, _others = pgpy.PGPKey.from_blob(data)
        # pgpy hands back an empty shell for input with no key packet in it.
        if key._key is None or not key.userids:
            _fail("not a valid OpenPGP key")
        _ids(key)
    return key


def parse_secret_key(data: bytes) -> SecretKey:
    key = _parse_key(data)
    if key.is_public:
        _fail("expected a secret key, got a public key")
    if key.is_protected:
        _fail("the secret key is passphrase-protected")
    return _secret(key)


def open_session_key(secret: SecretKey, key_id: str, packet: bytes) -> tuple[int, bytes] | None:
    """The cipher (its RFC 9580 number) and session key of a public-key encrypted
    session-key packet addressed to `secret`'s subkey `key_id`, None when it does not
    open. Only for BZip2 messages, which Sequoia cannot read (`keystore.bzip2_messages`);
    the sandbox child calls it."""
    subkey = next(
        (sub for kid, sub in secret._key.subkeys.items() if str(kid).upper() == key_id), None
    )
    if subkey is None:
        return None
    try:
        parsed = _PgpyPacket(bytearray(packet))
        cipher, session_key = parsed.decrypt_sk(subkey._key)
    except Exception as exc:  # noqa: BLE001  (pgpy raises anything on a foreign packet)
        if _out_of_memory(exc):
            raise MemoryError from None
        return None
    return int(cipher), bytes(session_key)


def parse_public_key(data: bytes | str) -> PublicKey:
    key = _parse_key(data)
    if not key.is_public:
        # Never keep secret material that arrived where a public key was expected.
        with _untrusted("not a valid OpenPGP key"):
            key = key.pubkey
        return _public(key)
    parsed = _public(key)
    # Binary input of the same length as pgpy's serialisation holds this key and
    # nothing else; it is kept as it came (see PublicKey._raw).
    if isinstance(data, bytes) and len(data) == len(parsed.to_bytes()):
        return PublicKey(parsed.fingerprint, parsed.key_id, parsed.subkey_ids, key, bytes(data))
    return parsed


def revoke(secret: SecretKey, public: PublicKey, code: RevocationCode, comment: str) -> PublicKey:
    """`public` with a key revocation signature by `secret` added (a fresh object)."""
    if secret.fingerprint != public.fingerprint:
        raise ValueError("the revocation must be made by the key itself")
    sig = secret._key.revoke(secret._key, reason=REVOCATION_REASONS[code], comment=comment)
    fresh = _parse_key(public.to_bytes())
    fresh |= sig
    return _public(fresh)


def revocation_reasons(public: PublicKey) -> list[str]:
    """The comments of the key's revocation signatures (for display)."""
    reasons = []
    for sig in public._key.revocation_signatures:
        reason = sig.revocation_reason
        reasons.append(str(reason.comment) if reason is not None else "")
    return reasons


def armor_public_keys(keys: Iterable[PublicKey]) -> str:
    return "".join(k.armored().rstrip("\n") + "\n" for k in keys)


# --- vetting keys from outside --------------------------------------------------------
#
# pgpy parses a key without checking any of its signatures, so everything below
# decides for itself which parts of an outside key hold: a user id counts only with a
# self-signature that verifies, a subkey only with a binding signature that verifies,
# and revocations only when the key itself made them. Time is the caller's `now`, not
# pgpy's wall clock. These functions run in the sandboxed child of
# `keystore.untrusted`, never on the server's own threads: pgpy's armor parser can
# spin for hours and its decompression has no bound.

ENCRYPTION_ALGORITHMS = frozenset({PubKeyAlgorithm.RSAEncryptOrSign, PubKeyAlgorithm.ECDH})
ENCRYPTION_FLAGS = frozenset({KeyFlags.EncryptCommunications, KeyFlags.EncryptStorage})
CERTIFICATIONS = frozenset(
    {
        SignatureType.Generic_Cert,
        SignatureType.Persona_Cert,
        SignatureType.Casual_Cert,
        SignatureType.Positive_Cert,
    }
)
SELF_SIGNATURE_HASHES = frozenset(
    {HashAlgorithm.SHA224, HashAlgorithm.SHA256, HashAlgorithm.SHA384, HashAlgorithm.SHA512}
)
# A self-signature needs only second-preimage resistance, which SHA-1 still has; like
# Sequoia's standard policy, SHA-1 self-signatures made after this date are refused.
SHA1_SELF_SIGNATURE_CUTOFF = dt.datetime(2023, 2, 1, tzinfo=dt.UTC)
MAX_ADDRESS_LENGTH = 254
# Correspondents' clocks run a little ahead at times: a key or self-signature made
# "in the future" by less than this still counts. Revocations count whatever their date.
CLOCK_SKEW = dt.timedelta(minutes=10)
# RFC 9580 bounds no user id, but one names a person and an address: GnuPG refuses
# to make one of about 4 KiB or more. A longer one only bloats what is stored and shown
# (a hostile key carried hundreds of kilobytes in one), so such a user id is not used.
MAX_USER_ID_BYTES = 4096

RejectCode = Literal[
    "secret-key",
    "weak-key",
    "created-in-future",
    "revoked",
    "user-id-revoked",
    "subkey-revoked",
    "expired",
    "no-user-id",
    "address-mismatch",
    "no-encryption-subkey",
    "bad-binding",
    "signature-predates-key",
    "user-id-too-long",
    "user-id-not-utf8",
    "unusable",
    "malformed",
]


@dataclass(frozen=True)
class VettedKey:
    """An outside key that holds for one address: its minimal re-serialisation (primary
    key, the address's user id and self-signature, one encryption subkey and its
    binding signature; nothing else from the input survives). `expires_at` is when the
    first of the key, the user id self-signature or the binding runs out."""

    address: str
    fingerprint: str
    subkey_id: str
    created: dt.datetime
    expires_at: dt.datetime | None
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class RejectedKey:
    """An outside key that is not used, and why (the reason is safe to show). Only
    `code == "revoked"` means the key itself is revoked."""

    fingerprint: str
    addresses: tuple[str, ...]
    code: RejectCode
    reason: str


@dataclass(frozen=True)
class KeyVetting:
    accepted: tuple[VettedKey, ...]
    rejected: tuple[RejectedKey, ...]


class _Rejected(Exception):
    def __init__(self, code: RejectCode, reason: str) -> None:
        super().__init__(reason)
        self.code: RejectCode = code
        self.reason = reason


def uid_address(userid: str) -> str | None:
    """The mail address a user id names (`Name <a@b>` or a bare `a@b`), lower-cased."""
    text = userid.strip()
    if text.endswith(">") and "<" in text:
        text = text[text.rindex("<") + 1 : -1]
    local, at, domain = text.rpartition("@")
    if not (at and local and domain) or len(text) > MAX_ADDRESS_LENGTH:
        return None
    if not text.isprintable() or any(c in text for c in " <>\"'"):
        return None
    return text.lower()


def _expiry(created: dt.datetime, lifetime: dt.timedelta | None) -> dt.datetime | None:
    if lifetime is None or lifetime.total_seconds() <= 0:
        return None
    return created + lifetime


def _signature_end(sig: Any) -> dt.datetime | None:
    """When a self-signature or binding stops holding by its own expiry (RFC 9580
    section 5.2.3.18), None if never. The key it certifies ends with it: Sequoia, which
    encrypts, takes no key whose self-signature has run out, so a vetted key must not be
    used past this moment either (a stored key Sequoia refuses fails every message)."""
    expires: dt.datetime | None = sig.expires_at
    if expires is None or expires == sig.created:  # an expiry of zero: never
        return None
    return expires


def _earliest(*ends: dt.datetime | None) -> dt.datetime | None:
    return min((e for e in ends if e is not None), default=None)


def _signature_holds(
    primary: Any, sig: Any, subject: Any, now: dt.datetime, *, revocation: bool = False
) -> bool:
    """A signature made by `primary` over `subject` that verifies and is in force at `now`."""
    try:
        if str(sig.signer).upper() != primary.fingerprint.keyid.upper():
            return False
        issuer = str(sig.signer_fingerprint or "").replace(" ", "").upper()
        if issuer and issuer != _ids(primary)[0]:
            return False
        created = sig.created
        if created > now + CLOCK_SKEW and not revocation:
            return False
        expires = sig.expires_at
        if expires is not None and expires != created and expires <= now:
            return False
        algorithm = sig.hash_algorithm
        if algorithm not in SELF_SIGNATURE_HASHES and not (
            algorithm == HashAlgorithm.SHA1 and created < SHA1_SELF_SIGNATURE_CUTOFF
        ):
            return False
        digest = getattr(hashes, algorithm.name)()
        return primary._key.verify(sig.hashdata(subject), sig.__sig__, digest) is True
    except Exception as exc:  # noqa: BLE001  (malformed signature material: it does not hold)
        if _out_of_memory(exc):
            raise MemoryError from None
        return False


def _newest_holding(
    primary: Any, sigs: Iterable[Any], subject: Any, now: dt.datetime, *, not_before: dt.datetime
) -> Any:
    """The newest signature that holds and is no older than what it certifies.

    A self-signature or binding dated before the key (or subkey) it certifies cannot
    have been made when it says: its date was forged, and with it the order in which
    signatures supersede each other. Such a signature is never used.
    """
    holding = [
        s for s in sigs if s.created >= not_before and _signature_holds(primary, s, subject, now)
    ]
    return max(holding, key=lambda s: s.created, default=None)


def _any_predating(
    primary: Any, sigs: Iterable[Any], subject: Any, now: dt.datetime, *, not_before: dt.datetime
) -> bool:
    """Whether a signature that would hold is refused only for being dated too early."""
    return any(s.created < not_before and _signature_holds(primary, s, subject, now) for s in sigs)


def _user_id_problem(uid: Any, named: str | None) -> tuple[RejectCode, str] | None:
    """Why a user id packet is not used whatever its signatures say, or None.

    pgpy decodes a user id that is not UTF-8 as Latin-1 (one character per byte), so
    the packet's length tells: the text re-encoded as UTF-8 has the packet's length
    exactly when the packet was UTF-8.
    """
    size = int(uid._uid.header.length)
    label = f"the user id for {named}" if named else "a user id"
    if size > MAX_USER_ID_BYTES:
        return (
            "user-id-too-long",
            f"{label} is {size} bytes long; at most {MAX_USER_ID_BYTES} are accepted",
        )
    text = uid.userid or ""
    if len(text.encode("utf-8", "surrogatepass")) != size:
        return ("user-id-not-utf8", f"{label} is not valid UTF-8 (RFC 9580 section 5.11)")
    return None


def _is_revoked(primary: Any, subject: Any, kind: SignatureType, now: dt.datetime) -> bool:
    return any(
        _signature_holds(primary, s, subject, now, revocation=True)
        for s in subject._signatures
        if s.type == kind
    )


def _sound_algorithm(key: Any) -> bool:
    issues = key.key_algorithm.validate_params(key.key_size)
    return not issues & (
        SecurityIssues.BrokenAsymmetricFunc | SecurityIssues.AsymmetricKeyLengthIsTooShort
    )


@dataclass(frozen=True)
class _Uid:
    address: str
    uid: Any
    selfsig: Any
    expires_at: dt.datetime | None


def _valid_uids(key: Any, now: dt.datetime, address: str | None) -> list[_Uid]:
    found: dict[str, _Uid] = {}
    problems: list[tuple[RejectCode, str]] = []
    for uid in key.userids:
        text = uid.userid or ""
        named = uid_address(text) if len(text) <= MAX_USER_ID_BYTES else None
        if address is not None and named is not None and named != address:
            continue
        problem = _user_id_problem(uid, named)
        if problem is not None:
            if address is None or address in text.lower():
                problems.append(problem)
            continue
        if named is None:
            continue
        certifications = [s for s in uid._signatures if s.type in CERTIFICATIONS]
        selfsig = _newest_holding(key, certifications, uid, now, not_before=key.created)
        if selfsig is None:
            if _any_predating(key, certifications, uid, now, not_before=key.created):
                problems.append(
                    (
                        "signature-predates-key",
                        f"the self-signature on the user id {named} is dated before the key",
                    )
                )
            else:
                problems.append(("no-user-id", f"the user id {named} has no valid self-signature"))
            continue
        if _is_revoked(key, uid, SignatureType.CertRevocation, now):
            problems.append(("user-id-revoked", f"the user id {named} is revoked"))
            continue
        expires = _expiry(key.created, selfsig.key_expiration)
        if expires is not None and expires <= now:
            problems.append(("expired", f"the key expired on {expires:%Y-%m-%d}"))
            continue
        ends = _earliest(expires, _signature_end(selfsig))
        previous = found.get(named)
        if previous is None or selfsig.created > previous.selfsig.created:
            found[named] = _Uid(named, uid, selfsig, ends)
    if found:
        return list(found.values())
    if problems:
        raise _Rejected(*problems[0])
    if address is not None:
        raise _Rejected("address-mismatch", f"no user id of the key names {address}")
    raise _Rejected("no-user-id", "the key has no user id with a mail address")


def _encryption_subkey(
    key: Any, now: dt.datetime, *, left_out: bool = False
) -> tuple[Any, Any, dt.datetime | None]:
    problems: list[tuple[RejectCode, str]] = []
    usable: list[tuple[Any, Any, dt.datetime | None]] = []
    for subkey in key.subkeys.values():
        bindings = [s for s in subkey._signatures if s.type == SignatureType.Subkey_Binding]
        # A binding is made by a primary for a subkey that both exist already (the
        # subkey may be the older: an existing key added as a subkey).
        not_before = max(key.created, subkey.created)
        binding = _newest_holding(key, bindings, subkey, now, not_before=not_before)
        if binding is None:
            if _any_predating(key, bindings, subkey, now, not_before=not_before):
                problems.append(
                    (
                        "signature-predates-key",
                        "a subkey's binding signature is dated before the key or subkey it binds",
                    )
                )
            elif bindings:
                problems.append(("bad-binding", "a subkey's binding signature does not verify"))
            continue
        flags = set(binding.key_flags)
        if not (flags & ENCRYPTION_FLAGS if flags else subkey.key_algorithm.can_encrypt):
            continue
        if subkey.key_algorithm not in ENCRYPTION_ALGORITHMS or not _sound_algorithm(subkey):
            problems.append(
                ("weak-key", "the encryption subkey's algorithm is weak or unsupported")
            )
            continue
        if subkey.created > now + CLOCK_SKEW:
            problems.append(("created-in-future", "the encryption subkey is dated in the future"))
            continue
        if _is_revoked(key, subkey, SignatureType.SubkeyRevocation, now):
            problems.append(("subkey-revoked", "the encryption subkey is revoked"))
            continue
        expires = _expiry(subkey.created, binding.key_expiration)
        if expires is not None and expires <= now:
            problems.append(("expired", f"the encryption subkey expired on {expires:%Y-%m-%d}"))
            continue
        usable.append((subkey, binding, _earliest(expires, _signature_end(binding))))
    if usable:
        return max(usable, key=lambda u: u[0].created)
    if problems:
        raise _Rejected(*problems[0])
    if left_out:
        raise _Rejected(
            "no-encryption-subkey",
            "the key has no encryption subkey of an algorithm this gateway supports",
        )
    raise _Rejected("no-encryption-subkey", "the key has no encryption subkey")


def _minimal(key: Any, uid: _Uid, subkey: Any, binding: Any) -> bytes:
    parts = (key._key, uid.uid._uid, uid.selfsig._signature, subkey._key, binding._signature)
    return b"".join(bytes(p) for p in parts)


def _check_minimal(data: bytes, fingerprint: str, subkey_id: str) -> None:
    """The re-serialised key parses back to the same key and Sequoia, which encrypts
    every message (`keystore.messages`), can encrypt to it."""
    again, _ = pgpy.PGPKey.from_blob(data)
    if _ids(again)[0] != fingerprint or list(again.subkeys) != [subkey_id]:
        raise _Rejected("unusable", "the key does not survive re-serialisation")
    from keystore import messages  # it builds on this module's PublicKey

    if not messages.can_encrypt_to(data):
        raise _Rejected("unusable", "the key cannot be encrypted to")


def _vet_one(
    key: Any, now: dt.datetime, address: str | None, *, left_out: bool = False
) -> list[VettedKey]:
    if not key.is_public:
        raise _Rejected("secret-key", "a secret key was given; import its public key instead")
    fingerprint = _ids(key)[0]
    if not _sound_algorithm(key):
        raise _Rejected("weak-key", "the primary key's algorithm is weak or unsupported")
    if key.created > now + CLOCK_SKEW:
        raise _Rejected("created-in-future", "the key is dated in the future")
    if _is_revoked(key, key, SignatureType.KeyRevocation, now):
        raise _Rejected("revoked", "the key is revoked")
    directs = [s for s in key._signatures if s.type == SignatureType.DirectlyOnKey]
    if _any_predating(key, directs, key, now, not_before=key.created):
        # It may carry the key's expiry or preferences: ignoring it would lift them.
        raise _Rejected(
            "signature-predates-key", "a signature on the key is dated before the key itself"
        )
    direct = _newest_holding(key, directs, key, now, not_before=key.created)
    direct_expiry = _expiry(key.created, direct.key_expiration) if direct is not None else None
    if direct_expiry is not None and direct_expiry <= now:
        raise _Rejected("expired", f"the key expired on {direct_expiry:%Y-%m-%d}")
    uids = _valid_uids(key, now, address)
    subkey, binding, subkey_expiry = _encryption_subkey(key, now, left_out=left_out)
    subkey_id = str(subkey.fingerprint.keyid).upper()
    vetted = []
    for uid in uids:
        data = _minimal(key, uid, subkey, binding)
        _check_minimal(data, fingerprint, subkey_id)
        ends = [e for e in (uid.expires_at, subkey_expiry, direct_expiry) if e is not None]
        expires = min(ends, default=None)
        vetted.append(VettedKey(uid.address, fingerprint, subkey_id, key.created, expires, data))
    return vetted


def _named_addresses(key: Any) -> tuple[str, ...]:
    try:
        named = (uid_address(uid.userid or "") for uid in key.userids)
        return tuple(sorted({a for a in named if a is not None}))
    except Exception:  # noqa: BLE001
        return ()


ARMOR_BEGIN = b"-----BEGIN PGP "


def _armor_blocks(data: bytes) -> list[bytes]:
    """Each armored block of `data` on its own (pgpy reads only the first of several);
    binary data stays whole. A linear scan, no regular expression."""
    if ARMOR_BEGIN not in data:
        return [data]
    blocks: list[bytes] = []
    current: list[bytes] | None = None
    end = b""
    for line in data.splitlines(keepends=True):
        stripped = line.strip()
        if current is None:
            if stripped.startswith(ARMOR_BEGIN) and stripped.endswith(b"-----"):
                current = [line]
                end = b"-----END PGP " + stripped[len(ARMOR_BEGIN) : -5] + b"-----"
            continue
        current.append(line)
        if stripped == end:
            blocks.append(b"".join(current))
            current = None
    if current is not None:
        blocks.append(b"".join(current))  # unterminated: pgpy has the last word
    return blocks


def _pgpy_reads(packet: packets.Packet) -> bool:
    """Whether pgpy parses this one packet (a subkey) into something it knows."""
    try:
        parsed = _PgpyPacket(bytearray(packet.raw))
    except Exception as exc:  # noqa: BLE001  (pgpy raises anything on what it does not know)
        if _out_of_memory(exc):
            raise MemoryError from None
        return False
    return not isinstance(parsed, _OpaquePacket)


def _readable_subkeys(block: bytes) -> tuple[bytes, frozenset[str]]:
    """`block` without the subkeys pgpy cannot read, and the fingerprints of the keys
    that lost one.

    pgpy refuses a whole key when one subkey has an algorithm (X448, Ed448, the
    post-quantum ones of RFC 9580's successors) or a curve it does not know, so a
    correspondent who added such a subkey beside a Curve25519 one could not be
    written to. Such a subkey is left out with the signatures that follow it (its
    binding and any revocation of it: they concern that subkey alone); nothing else
    of the key is touched, so no revocation or signature on the key or a user id is
    ever dropped. Data that does not split into key packets is returned unchanged,
    for pgpy to judge as before.
    """
    kind = packets.armor_kind(block)
    try:
        binary = block if kind is None else packets.dearmor(block, kind=kind)
        parts = packets.key_packets(binary)
    except packets.PacketError:
        return block, frozenset()
    kept: list[bytes] = []
    lost: set[str] = set()
    primary: packets.Packet | None = None
    skipping = False
    for part in parts:
        if part.tag in (packets.PUBLIC_KEY, packets.SECRET_KEY):
            primary = part
        if part.tag != packets.SIGNATURE:
            skipping = False
        if part.tag in (packets.PUBLIC_SUBKEY, packets.SECRET_SUBKEY) and not _pgpy_reads(part):
            skipping = True
            if primary is not None:
                lost.add(_packet_fingerprint(primary))
        if not skipping:
            kept.append(part.raw)
    if not lost:
        return block, frozenset()
    return b"".join(kept), frozenset(lost)


def _packet_fingerprint(key: packets.Packet) -> str:
    """The v4 fingerprint of a key packet (RFC 9580 section 5.5.4.2), as `_ids` writes it."""
    body = key.body
    prefix = b"\x99" + len(body).to_bytes(2, "big")
    return hashlib.sha1(prefix + body, usedforsecurity=False).hexdigest().upper()


def vet_public_keys(data: bytes, now: dt.datetime, *, address: str | None = None) -> KeyVetting:
    """Every key in `data` (armored or binary, one or more), sorted into the usable
    (per address) and the refused (with the reason). With `address`, only user ids
    naming that address count, as a Web Key Directory answer requires.

    Raises `PgpError` when `data` holds no OpenPGP key at all.
    """
    wanted = address.lower() if address is not None else None
    primaries: dict[str, Any] = {}
    broken: list[RejectedKey] = []
    left_out: set[str] = set()
    blocks = _armor_blocks(data)
    for number, block in enumerate(blocks, start=1):
        block, lost = _readable_subkeys(block)
        left_out |= lost
        try:
            with _untrusted("not a valid OpenPGP key"):
                first, others = pgpy.PGPKey.from_blob(block)
                found = 0
                for candidate in [first, *others.values()]:
                    if candidate._key is None or not candidate.is_primary:
                        continue
                    primaries.setdefault(_ids(candidate)[0], candidate)
                    found += 1
                if not found:
                    _fail("not a valid OpenPGP key")
        except PgpError as exc:
            reason = f"armored block {number}: {exc}" if len(blocks) > 1 else str(exc)
            broken.append(RejectedKey("", (), "malformed", reason))
    if not primaries:
        _fail("not a valid OpenPGP key")
    accepted: list[VettedKey] = []
    rejected: list[RejectedKey] = []
    for fingerprint, key in primaries.items():
        try:
            accepted.extend(_vet_one(key, now, wanted, left_out=fingerprint in left_out))
        except _Rejected as exc:
            rejected.append(RejectedKey(fingerprint, _named_addresses(key), exc.code, exc.reason))
        except Exception as exc:  # noqa: BLE001  (pgpy raises anything on odd packets)
            if _out_of_memory(exc):
                raise MemoryError from None
            rejected.append(
                RejectedKey(fingerprint, _named_addresses(key), "unusable", "the key is malformed")
            )
    return KeyVetting(tuple(accepted), tuple(rejected + broken))
