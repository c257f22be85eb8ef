"""Stored messages compressed with BZip2, which Sequoia as pysequoia is built cannot read.

RFC 9580 section 9.4 lists BZip2, and GnuPG writes it when told to (`--compress-algo
bzip2`, or for a key that prefers it); pysequoia is built without it, so such mail
from a correspondent could not be opened at all. This module opens it, only in the
sandbox child of `keystore.untrusted` and only after Sequoia refused the message:

1. pgpy, the key library, opens the session-key packet addressed to one of the
   address's keys (`keystore.pgp.open_session_key`);
2. the integrity-protected data (SEIPD version 1, AES, RFC 9580 section 5.13.1) is
   decrypted here and its MDC checked before anything in it is read;
3. only when it holds exactly one BZip2-compressed packet is that inflated, to at
   most the caller's output limit plus room for the packets around the literal data,
   so a BZip2 bomb stops at the same bound as any other (and the child's address
   space is capped besides);
4. what comes out, the sender's own packets (literal data, one-pass signatures,
   signatures), goes to Sequoia as an unencrypted message: Sequoia reads the literal
   data and verifies the signatures exactly as for any other message. A ZIP or ZLIB
   layer inside is Sequoia's, under the child's address-space limit.

Anything else (SEIPD version 2, the OCB packet, no BZip2 inside) stays Sequoia's refusal.
"""

from __future__ import annotations

import bz2
import hashlib
import hmac
from collections.abc import Sequence

from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from keystore import messages, packets, pgp

BZIP2 = 3
# Room for the packets around the literal data: its header, one-pass signatures and
# signatures. The caller still holds the literal data itself to its output limit.
PACKET_ROOM = 1024 * 1024
AES_KEY_SIZES = {7: 16, 8: 24, 9: 32}  # RFC 9580 section 9.3: AES-128, -192, -256
_BLOCK = 16
_MDC = b"\xd3\x14"  # the MDC packet's header: tag 19, 20 octets of SHA-1


class OutputTooLarge(Exception):
    """The BZip2 data inflates past the limit."""


def open_message(
    message: bytes, secret_keys: Sequence[bytes], senders: Sequence[bytes], *, max_output: int
) -> messages.Opened | None:
    """Open `message` (binary) when it is BZip2-compressed inside its encryption, with
    whichever of `secret_keys` it names; None when it is not such a message or no key
    opens it. Raises `OutputTooLarge` past `max_output` (plus `PACKET_ROOM`)."""
    try:
        tag, body = packets.encrypted_data(message)
        addressed = packets.session_key_packets(message)
    except packets.PacketError:
        return None
    if tag != packets.SEIPD or body[:1] != b"\x01":
        return None
    for secret in secret_keys:
        try:
            key = pgp.parse_secret_key(secret)
        except pgp.PgpError:
            continue
        for packet in addressed:
            opened = pgp.open_session_key(key, packet.key_id, packet.packet)
            inner = _decrypt(memoryview(body)[1:], *opened) if opened is not None else None
            if inner is None:
                continue
            compressed = packets.compressed_packet(inner)
            if compressed is None or compressed[0] != BZIP2:
                return None
            plain = _inflate(compressed[1], max_output + PACKET_ROOM)
            return None if plain is None else messages.open_unencrypted(plain, secret, senders)
    return None


def _decrypt(ciphertext: memoryview, cipher: int, session_key: bytes) -> bytes | None:
    """The packets inside SEIPD version 1 data, or None when its MDC does not hold."""
    if AES_KEY_SIZES.get(cipher) != len(session_key) or len(ciphertext) < _BLOCK + 2 + 22:
        return None
    decryptor = Cipher(algorithms.AES(session_key), CFB(bytes(_BLOCK))).decryptor()
    plain = decryptor.update(ciphertext) + decryptor.finalize()
    view = memoryview(plain)
    digest = hashlib.sha1(view[:-20], usedforsecurity=False).digest()
    if view[-22:-20] != _MDC or not hmac.compare_digest(view[-20:], digest):
        return None
    return bytes(view[_BLOCK + 2 : -22])


def _inflate(data: bytes, limit: int) -> bytes | None:
    """`data` inflated (one BZip2 stream), at most `limit` bytes; None when it is broken."""
    inflater = bz2.BZ2Decompressor()
    try:
        out = inflater.decompress(data, max_length=limit + 1)
    except (OSError, EOFError, ValueError):
        return None
    if len(out) > limit or (not inflater.eof and not inflater.needs_input):
        raise OutputTooLarge
    if not inflater.eof or inflater.unused_data:
        return None
    return out
