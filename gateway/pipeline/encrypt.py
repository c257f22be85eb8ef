"""Step `encrypt-pgp`: one PGP/MIME copy per group of recipients who may see each other.

Recipients named in To/Cc share one ciphertext (one session key, every visible
recipient's key); each Bcc recipient gets a ciphertext of their own, naming only
their key. The sender's Sent copy is encrypted to the sender's key. Everything
is signed with the sender's key. Output is always SEIPD with MDC, AES-256.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.pipeline import pgpmime
from gateway.pipeline.context import Copy, Handling, Submission
from gateway.pipeline.visibility import split_visible
from keystore import pgp


@dataclass(frozen=True)
class RecipientKey:
    """The key a recipient's copy is encrypted to, and where it came from."""

    address: str
    key: pgp.PublicKey
    source: str  # "hosted", "import" or "wkd"

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint


@dataclass(frozen=True)
class SenderKeys:
    signer: pgp.SecretKey
    public: pgp.PublicKey


def encrypt_copies(
    submission: Submission, keys: dict[str, RecipientKey], sender: SenderKeys
) -> None:
    """Fill `submission.copies` with encrypted copies for every recipient in `keys`."""
    raw = submission.raw
    inner = pgpmime.inner_entity(raw)
    autocrypt = pgpmime.autocrypt_header(submission.sender.address, sender.public.to_bytes())
    recipients = [r for r in submission.hosted + submission.external if r in keys]
    visible, hidden = split_visible(raw, recipients)

    submission.handling.extend(
        Handling(r, "pgp", fingerprint=keys[r].fingerprint, key_source=keys[r].source)
        for r in recipients
    )
    groups = ([visible] if visible else []) + [[r] for r in hidden]
    for group in groups:
        armored = _encrypt(inner, [keys[r].key for r in group], sender.signer)
        hosted = [r for r in group if keys[r].source == "hosted"]
        external = [r for r in group if keys[r].source != "hosted"]
        if hosted:
            submission.copies.append(
                Copy("mailbox", hosted, pgpmime.build_encrypted(raw, armored), encrypted=True)
            )
        if external:
            message = pgpmime.build_encrypted(raw, armored, extra_headers=autocrypt)
            submission.copies.extend(Copy("queue", [r], message, encrypted=True) for r in external)

    sent = _encrypt(inner, [sender.public], sender.signer)
    submission.copies.append(
        Copy("sent", [submission.sender.address], pgpmime.build_encrypted(raw, sent), True)
    )


def _encrypt(inner: bytes, recipients: list[pgp.PublicKey], signer: pgp.SecretKey) -> bytes:
    return pgpmime.armor(pgp.encrypt_and_sign(inner, recipients, signer, armor=False))
