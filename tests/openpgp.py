"""The project's message crypto as the tests use it: pgpy-made keys in, Sequoia messages out.

`encrypt` is `keystore.messages.encrypt` (armored as mail carries it, unless told
otherwise); `decrypt` opens a message the way stored mail is opened, in the
sandbox of `keystore.untrusted`, and reports the signature against `senders`.
"""

from __future__ import annotations

from collections.abc import Sequence

from keystore import messages, packets, pgp, untrusted


def signing(secret: pgp.SecretKey) -> messages.SigningKey:
    return messages.signing_key(pgp.secret_key_bytes(secret), secret.public)


def encrypt(
    data: bytes,
    recipients: Sequence[pgp.PublicKey],
    signer: pgp.SecretKey | messages.SigningKey | None = None,
    *,
    armor: bool = True,
) -> bytes:
    if isinstance(signer, pgp.SecretKey):
        signer = signing(signer)
    binary = messages.encrypt(data, recipients, signer)
    return packets.armor(binary) if armor else binary


def decrypt(
    message: bytes,
    keys: Sequence[pgp.SecretKey],
    senders: Sequence[pgp.PublicKey] = (),
    *,
    max_output: int = untrusted.STORED_MESSAGE_MAX_OUTPUT,
) -> messages.Decrypted:
    """Raises `pgp.PgpError` for data that is no OpenPGP message, as `store.decrypt_for`
    does, and `untrusted.UntrustedDataError` ("invalid" for one the keys do not open)."""
    try:
        binary = packets.dearmor(message)
    except packets.PacketError as exc:
        raise pgp.PgpError(str(exc)) from None
    opened = untrusted.decrypt_message(
        binary,
        [pgp.secret_key_bytes(k) for k in keys],
        [k.to_bytes() for k in senders],
        untrusted.STORED_MESSAGE_BUDGET,
        max_output=max_output,
    )
    return messages.signature_status(opened, senders)
