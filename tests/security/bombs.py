"""Compression bombs (and other hostile contents) as real OpenPGP messages, built by hand so
they cost the test no memory.

The message is what a hostile sender could mail a hosted user: the user's own
session-key packet (made by pgpy for a small probe, so the key and its format are
the real ones) followed by an integrity-protected data packet
(SEIPD with MDC, AES-256) whose plaintext is one ZLIB- (or BZip2-) compressed packet
holding a literal data packet of `prefix` and then zeros. The zeros are compressed in
1 MiB steps, so 1 GiB of them never exists in the test's memory.
"""

from __future__ import annotations

import bz2
import datetime as dt
import hashlib
import os
import zlib
from typing import Any

import pgpy
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from pgpy.constants import CompressionAlgorithm, SymmetricKeyAlgorithm

from keystore import packets, pgp

CHUNK = 1024 * 1024
AES256 = 9
ZIP = 1
ZLIB = 2
BZIP2 = 3


def _packet(tag: int, body_length: int) -> bytes:
    """A new-format packet header with a five-octet length."""
    return bytes([0xC0 | tag, 0xFF]) + body_length.to_bytes(4, "big")


def _compressed_literal(prefix: bytes, zeros: int, algorithm: int = ZLIB) -> bytes:
    literal_body_length = 6 + len(prefix) + zeros  # format, name length, date, content
    squeezer: Any = bz2.BZ2Compressor(9) if algorithm == BZIP2 else zlib.compressobj(9)
    out = [
        squeezer.compress(
            _packet(11, literal_body_length) + b"b\x00" + (0).to_bytes(4, "big") + prefix
        )
    ]
    block = bytes(CHUNK)
    left = zeros
    while left:
        step = min(left, CHUNK)
        out.append(squeezer.compress(block[:step]))
        left -= step
    out.append(squeezer.flush())
    compressed = b"".join(out)
    return _packet(8, 1 + len(compressed)) + bytes([algorithm]) + compressed


def _wrapped(inner: bytes, algorithm: int = ZIP) -> bytes:
    """`inner` packets inside one more compressed packet (ZIP, raw deflate, by default)."""
    if algorithm == BZIP2:
        compressed = bz2.compress(inner, 9)
    else:
        squeezer = zlib.compressobj(9, zlib.DEFLATED, -15)
        compressed = squeezer.compress(inner) + squeezer.flush()
    return _packet(8, 1 + len(compressed)) + bytes([algorithm]) + compressed


def compression_bomb(
    public: pgp.PublicKey,
    secret: pgp.SecretKey | None = None,
    *,
    inflated: int,
    prefix: bytes = b"",
    nested: bool = False,
    outer_algorithm: int = ZIP,
    algorithm: int = ZLIB,
) -> bytes:
    """A binary OpenPGP message to `public` whose literal data inflates to `inflated` bytes
    in one compressed packet of `algorithm` (with `nested`, that packet sits inside a
    second one, of `outer_algorithm`). `secret` is not needed."""
    del secret
    packets_inside = _compressed_literal(prefix, max(0, inflated - len(prefix)), algorithm)
    if nested:
        packets_inside = _wrapped(packets_inside, outer_algorithm)
    return sealed_packets(public, packets_inside)


def sealed_packets(public: pgp.PublicKey, packets_inside: bytes) -> bytes:
    """A binary OpenPGP message to `public` whose encrypted data holds `packets_inside` as
    they are: a signed message a recipient unwrapped (`gpg --unwrap`) is sealed again,
    its signature untouched, for someone else.

    The session key is chosen here and wrapped for `public` by pgpy (the key
    library), so the session-key packet is a real one.
    """
    session_key = os.urandom(32)
    probe = public._key.encrypt(
        pgpy.PGPMessage.new(b"probe", format="b", compression=CompressionAlgorithm.Uncompressed),
        cipher=SymmetricKeyAlgorithm.AES256,
        sessionkey=session_key,
    )
    found = packets.session_key_packets(bytes(probe))
    random_prefix = os.urandom(16)
    body = random_prefix + random_prefix[-2:] + packets_inside + b"\xd3\x14"
    plain = body + hashlib.sha1(body).digest()  # noqa: S324  (the MDC is SHA-1 by RFC 4880)
    encryptor = Cipher(algorithms.AES(session_key), CFB(bytes(16))).encryptor()
    ciphertext = encryptor.update(plain) + encryptor.finalize()
    seipd = _packet(18, 1 + len(ciphertext)) + b"\x01" + ciphertext
    return b"".join(p.packet for p in found) + seipd


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
