"""DKIM keys of the hosted domains: made, sealed under the master key, opened to sign.

A key's selector names its algorithm and the month it was made (`ed202612`,
`rsa202612`), so a later key can be published next to the old one before it
takes over. The private key is sealed with keystore.seal, bound to the domain and
selector: a blob copied to another row does not open.
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
    session: so.Session, ring: MasterKeyRing, domain: Domain, now: dt.datetime
) -> list[DkimKey]:
    """The domain's keys, making the ones it lacks (one per algorithm)."""
    have = {row.algorithm for row in domain_keys(session, domain.id)} if domain.id else set()
    if set(ALGORITHMS) - have:
        # Sealed under the same ring as the address keys: not under another installation's.
        from gateway import master_records  # it reads DKIM keys too (this module)

        master_records.check_ring(session, ring)
    for algorithm in ALGORITHMS:
        if algorithm in have:
            continue
        private, public = _generate(algorithm)
        selector = selector_for(algorithm, now)
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
                    f"it signs nothing: mail from {row.domain.name} goes out without it",
                )
            )
            continue
        row.master_version = ring.primary
        moved += 1
    session.flush()
    return Rewrapped(moved, tuple(left))
