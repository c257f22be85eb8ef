"""The session-key packets at the head of an OpenPGP message, read by hand with bounded effort.

Reading stored mail unlocks a secret key in the server process, but the message
itself is outside data: pgpy must only see it inside the sandbox of
`keystore.untrusted`. So the server reads just the packets it needs to pick and
use its key (the public-key encrypted session keys, RFC 4880 section 5.1) with
this small framing reader: it decodes at most `MAX_HEAD_BYTES` of the message,
walks packet headers without interpreting bodies, and stops at the first packet
that is not a session key. Nothing here grows with the size of the message.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

PKESK_TAG = 1
SKESK_TAG = 3
MAX_HEAD_BYTES = 64 * 1024
MAX_SESSION_KEY_PACKETS = 64
MAX_SESSION_KEY_PACKET_BYTES = 4096
ARMOR_BEGIN = b"-----BEGIN PGP MESSAGE-----"


class PacketError(ValueError):
    """The head of the message is not a sequence of OpenPGP packets; safe to show."""


@dataclass(frozen=True)
class SessionKeyPacket:
    """One PKESK packet: the key id it names (upper-case hex) and the whole packet."""

    key_id: str
    packet: bytes


def dearmor(message: bytes, limit: int | None = None) -> bytes:
    """The binary message (at most about `limit` bytes of it when given), dearmored when
    it is armored.

    A linear scan over lines, no regular expression (pgpy's armor expression
    backtracks for hours on hostile input): the armor header lines are skipped up
    to the first empty line, then base64 lines are decoded until the checksum or
    END line. The checksum is not checked; the MDC protects the data.
    """
    start = message.find(ARMOR_BEGIN)
    if start < 0:
        if message[:1] and message[0] & 0x80:
            return message if limit is None else message[:limit]
        raise PacketError("not an OpenPGP message")
    position = message.find(b"\n", start)
    if position < 0:
        raise PacketError("the armored message has no body")
    # The armor headers end at the first empty line.
    while True:
        end = message.find(b"\n", position + 1)
        if end < 0:
            raise PacketError("the armored message has no body")
        if not message[position + 1 : end].strip():
            position = end
            break
        position = end
    stop = len(message)
    for marker in (b"\n=", b"\n-----"):
        found = message.find(marker, position)
        if 0 <= found < stop:
            stop = found
    if limit is not None:
        stop = min(stop, position + 1 + (limit * 4 // 3 + 4) * 80 // 76 + 256)
    encoded = b"".join(message[position + 1 : stop].split())
    usable = len(encoded) - len(encoded) % 4
    try:
        binary = binascii.a2b_base64(encoded[:usable], strict_mode=True)
    except binascii.Error:
        raise PacketError("the armored message is not valid base64") from None
    return binary if limit is None else binary[:limit]


def message_head(message: bytes) -> bytes:
    """Up to `MAX_HEAD_BYTES` of the binary message (dearmored when armored)."""
    return dearmor(message, MAX_HEAD_BYTES)


def _header(data: bytes, offset: int) -> tuple[int, int, int] | None:
    """(tag, header length, body length) of the packet at `offset`, None if cut short."""
    if offset >= len(data):
        return None
    first = data[offset]
    if not first & 0x80:
        raise PacketError("not an OpenPGP packet")
    if first & 0x40:  # new format
        tag = first & 0x3F
        if offset + 1 >= len(data):
            return None
        octet = data[offset + 1]
        if octet < 192:
            return tag, 2, octet
        if octet < 224:
            if offset + 2 >= len(data):
                return None
            return tag, 3, ((octet - 192) << 8) + data[offset + 2] + 192
        if octet == 255:
            if offset + 6 > len(data):
                return None
            return tag, 6, int.from_bytes(data[offset + 2 : offset + 6], "big")
        return tag, 2, -1  # partial body length: never used by session-key packets
    tag = (first >> 2) & 0x0F
    size = {0: 1, 1: 2, 2: 4}.get(first & 0x03)
    if size is None:
        return tag, 1, -1  # indeterminate length
    if offset + 1 + size > len(data):
        return None
    return tag, 1 + size, int.from_bytes(data[offset + 1 : offset + 1 + size], "big")


def session_key_packets(message: bytes) -> list[SessionKeyPacket]:
    """The PKESK packets that open the message, in order (SKESK packets are skipped).

    Raises `PacketError` when the head is malformed, holds too many or too large
    session-key packets, or holds none at all.
    """
    head = message_head(message)
    found: list[SessionKeyPacket] = []
    offset = 0
    seen = 0
    while True:
        header = _header(head, offset)
        if header is None:
            break
        tag, header_length, body_length = header
        if tag not in (PKESK_TAG, SKESK_TAG):
            break
        if body_length < 0 or body_length > MAX_SESSION_KEY_PACKET_BYTES:
            raise PacketError("a session-key packet is too large")
        seen += 1
        if seen > MAX_SESSION_KEY_PACKETS:
            raise PacketError("the message names too many session keys")
        end = offset + header_length + body_length
        if end > len(head):
            raise PacketError("a session-key packet is cut short")
        body = head[offset + header_length : end]
        if tag == PKESK_TAG:
            if len(body) < 10 or body[0] != 3:
                raise PacketError("unsupported session-key packet version")
            found.append(SessionKeyPacket(body[1:9].hex().upper(), bytes(head[offset:end])))
        offset = end
    if not found:
        raise PacketError("the OpenPGP message is not encrypted to a public key")
    return found
