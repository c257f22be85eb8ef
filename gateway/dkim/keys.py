"""DKIM keys of the hosted domains: made, sealed under the master key, opened to sign.

A key's selector names its algorithm and the month it was made (`ed202612`,
`rsa202612`), so a later key can be published next to the old one before it
takes over. The private key is sealed with keystore.seal, bound to the domain and
selector: a blob copied to another row does not open.

A key the ring can no longer open (its master-key version was destroyed) signs
nothing; `renew` replaces it with a new one under a selector of its own (the
minute it was made: `ed202612061430`), never one a receiver may still hold a
cached record of.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
import sqlalchemy.orm as so
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from gateway.models import DkimKey, Domain
from keystore import seal
from keystore.leftbehind import LeftBehind, Rewrapped, why_unopenable
from keystore.masterkey import MasterKeyRing

Algorithm = Literal["ed25519", "rsa"]
ALGORITHMS: tuple[Algorithm, ...] = ("rsa", "ed25519")
SEAL_PURPOSE = "dkim private key"
RSA_BITS = 2048
SIGNATURE_ALGORITHMS: dict[str, bytes] = {"ed25519": b"ed25519-sha256", "rsa": b"rsa-sha256"}
_SELECTOR_PREFIX: dict[str, str] = {"ed25519": "ed", "rsa": "rsa"}
# The way out for a key that no longer opens (its master-key version was destroyed).
RENEW_HINT = (
    "`sealgate keys renew-dkim {domain}` replaces what does not open (then publish the new record)"
)

# ... for an admin without a shell (the console): the server's operator runs it.
CONSOLE_RENEW_HINT = (
    "ask the server's operator to renew the DKIM keys of {domain} that do not open,"
    " then publish the new DNS record"
)


@dataclass(frozen=True)
class SigningKey:
    """An opened private key, in the form dkimpy takes; never printed."""

    domain: str
    selector: str
    algorithm: str
    private: bytes = dataclasses.field(repr=False)

    @property
    def signature_algorithm(self) -> bytes:
        return SIGNATURE_ALGORITHMS[self.algorithm]


def selector_for(algorithm: Algorithm, now: dt.datetime) -> str:
    return f"{_SELECTOR_PREFIX[algorithm]}{now.astimezone(dt.UTC):%Y%m}"


def _binding(domain: str, selector: str) -> bytes:
    return f"{domain}\0{selector}".encode()


def _generate(algorithm: Algorithm) -> tuple[bytes, str]:
    """(private key as dkimpy reads it, public key as the DNS `p=` tag carries it)."""
    if algorithm == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(seed), base64.b64encode(public).decode("ascii")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, base64.b64encode(der).decode("ascii")


def domain_keys(session: so.Session, domain_id: int) -> list[DkimKey]:
    return list(
        session.scalars(
            sa.select(DkimKey)
            .where(DkimKey.domain_id == domain_id)
            .order_by(DkimKey.algorithm, DkimKey.created_at.desc(), DkimKey.id.desc())
        )
    )


def ensure_keys(
    session: so.Session,
    ring: MasterKeyRing,
    domain: Domain,
    now: dt.datetime,
    *,
    renewing: frozenset[str] = frozenset(),
) -> list[DkimKey]:
    """The domain's keys, making the ones it lacks (one per algorithm).

    `renewing`: selectors of keys just removed as unusable; a new key gets a
    selector of the minute instead of the month's, unlike any of these.
    """
    rows = domain_keys(session, domain.id) if domain.id else []
    have = {row.algorithm for row in rows}
    if set(ALGORITHMS) - have:
        # Sealed under the same ring as the address keys: not under another installation's.
        from gateway import master_records  # it reads DKIM keys too (this module)

        master_records.check_ring(session, ring)
    taken = renewing | {row.selector for row in rows}
    for algorithm in ALGORITHMS:
        if algorithm in have:
            continue
        private, public = _generate(algorithm)
        selector = _new_selector(algorithm, now, taken, renewing=bool(renewing))
        taken |= {selector}
        session.add(
            DkimKey(
                domain=domain,
                selector=selector,
                algorithm=algorithm,
                public_key=public,
                sealed_private_key=seal.seal(
                    ring, private, purpose=SEAL_PURPOSE, binding=_binding(domain.name, selector)
                ),
                master_version=ring.primary,
                created_at=now,
            )
        )
        del private
    session.flush()
    return domain_keys(session, domain.id)


def _new_selector(
    algorithm: Algorithm, now: dt.datetime, taken: frozenset[str], *, renewing: bool
) -> str:
    base = selector_for(algorithm, now)
    if renewing:
        base += f"{now.astimezone(dt.UTC):%d%H%M}"
    for suffix in ("", *"bcdefghijklmnopqrstuvwxyz"):
        selector: str = base + suffix
        if selector not in taken:
            return selector
    raise ValueError(f"no free DKIM selector left for {base}")  # 26 renewals in a minute


def current_keys(session: so.Session, domain_id: int) -> list[DkimKey]:
    """The newest key of each algorithm: the ones that sign and that DNS must publish."""
    newest: dict[str, DkimKey] = {}
    for row in domain_keys(session, domain_id):
        newest.setdefault(row.algorithm, row)
    return [newest[a] for a in ALGORITHMS if a in newest]


def txt_record(row: DkimKey) -> str:
    """The `<selector>._domainkey.<domain>` TXT value (RFC 6376 s.3.6.1, RFC 8463)."""
    return f"v=DKIM1; k={row.algorithm}; p={row.public_key}"


def open_key(ring: MasterKeyRing, row: DkimKey, domain: str) -> SigningKey:
    """Raises keystore.seal.SealedRecordError if the ring cannot open it."""
    private = seal.open_sealed(
        ring,
        row.sealed_private_key,
        purpose=SEAL_PURPOSE,
        binding=_binding(domain, row.selector),
    )
    return SigningKey(
        domain=domain, selector=row.selector, algorithm=row.algorithm, private=private
    )


def unopenable(
    session: so.Session, ring: MasterKeyRing, domain: Domain
) -> list[tuple[DkimKey, str]]:
    """The domain's keys the ring cannot open, each with why (no secret in it)."""
    found = []
    rows = session.scalars(
        sa.select(DkimKey)
        .where(DkimKey.domain_id == domain.id)
        .options(so.undefer(DkimKey.sealed_private_key))
        .order_by(DkimKey.algorithm, DkimKey.created_at.desc(), DkimKey.id.desc())
    )
    for row in rows:
        try:
            open_key(ring, row, domain.name)
        except seal.SealedRecordError:
            found.append((row, why_unopenable(ring, row.master_version)))
    return found


def problem(
    session: so.Session, ring: MasterKeyRing, domain: Domain, *, remedy: str = RENEW_HINT
) -> str:
    """What an admin must know about the domain's signing keys ("" when all is well), and
    `remedy` (its `{domain}` filled in): the command's by default, a front end without a
    shell passes its own (CONSOLE_RENEW_HINT)."""
    current = current_keys(session, domain.id)
    bad = {row.id: why for row, why in unopenable(session, ring, domain)}
    broken = [row for row in current if row.id in bad]
    if not broken:
        return ""
    named = ", ".join(f"{row.selector} ({bad[row.id]})" for row in broken)
    good = [row.selector for row in current if row.id not in bad]
    signed = f"signed by {', '.join(good)} only" if good else "sent without a DKIM signature"
    keys = "key" if len(broken) == 1 else "keys"
    return (
        f"DKIM {keys} {named} cannot be opened: mail from {domain.name} is {signed};"
        f" {remedy.format(domain=domain.name)}"
    )


@dataclass(frozen=True)
class Renewed:
    old_selector: str
    key: DkimKey


def renew(
    session: so.Session, ring: MasterKeyRing, domain: Domain, now: dt.datetime
) -> list[Renewed]:
    """Replace every key of `domain` the ring cannot open with a new one of its algorithm.

    The unusable rows go (nothing can ever sign with them); each new key gets a
    selector none of them had, so a receiver's cached record of an old one cannot
    get in the way. The new keys sign from now on: their records must be published.
    """
    gone = unopenable(session, ring, domain)
    if not gone:
        return []
    for row, _why in gone:
        session.delete(row)
    session.flush()
    before = {row.id for row in domain_keys(session, domain.id)}
    made = [
        row
        for row in ensure_keys(
            session, ring, domain, now, renewing=frozenset(row.selector for row, _ in gone)
        )
        if row.id not in before
    ]
    replaced = {row.algorithm: row.selector for row, _why in gone}
    return [Renewed(replaced[row.algorithm], row) for row in made]


def rewrap(session: so.Session, ring: MasterKeyRing) -> Rewrapped:
    """Re-seal every private key under the ring's primary version.

    A key that does not open (its master-key version was destroyed) stays as it is
    and is named in the result by domain and selector: it cannot sign either way,
    and failing here would stop the rotation of everything else.
    """
    moved = 0
    left: list[LeftBehind] = []
    rows = session.scalars(
        sa.select(DkimKey)
        .where(DkimKey.master_version != ring.primary)
        .options(so.undefer(DkimKey.sealed_private_key), so.joinedload(DkimKey.domain))
        .order_by(DkimKey.id)
    ).all()
    for row in rows:
        try:
            row.sealed_private_key = seal.reseal(
                ring,
                row.sealed_private_key,
                purpose=SEAL_PURPOSE,
                binding=_binding(row.domain.name, row.selector),
            )
        except seal.SealedRecordError:
            left.append(
                LeftBehind(
                    f"the DKIM key {row.selector} ({row.algorithm}) of {row.domain.name}",
                    why_unopenable(ring, row.master_version),
                    f"it signs nothing; {RENEW_HINT.format(domain=row.domain.name)}",
                    console="it signs nothing; "
                    + CONSOLE_RENEW_HINT.format(domain=row.domain.name),
                )
            )
            continue
        row.master_version = ring.primary
        moved += 1
    session.flush()
    return Rewrapped(moved, tuple(left))
