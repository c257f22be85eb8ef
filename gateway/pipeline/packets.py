"""Is this an encrypted OpenPGP message? Decided from packet headers alone, with bounded effort.

An encrypted OpenPGP message (RFC 9580 §10.3) is one or more session-key
packets (PKESK, tag 1; SKESK, tag 3), optionally after a Marker packet (tag
10), followed by exactly one encrypted-data packet (SEIPD, tag 18; the
LibrePGP OCB packet, tag 20; the old unprotected SED, tag 9) that runs to the
end of the data. Nothing else may come before, between or after: a literal,
compressed or signature packet, a padding packet, trailing bytes, a truncated
length. Both header formats are read (RFC 9580 §4.2: old-format lengths of 1, 2,
4 octets or "to the end"; new-format lengths and partial body lengths, which
only the encrypted-data packet may use). The contents are not opened: with no
key, ciphertext cannot be told from random bytes, and that is all a structural
check can promise. The walk reads headers only and gives up past
MAX_PACKETS or MAX_CHUNKS, so a hostile length chain costs little.

`dearmor_whole` is the strict counterpart of `pgpmime.dearmor`: the text must be
one armored PGP MESSAGE and nothing else but whitespace around it.
"""

from __future__ import annotations

import base64
import binascii
import re

MAX_PACKETS = 1024  # session-key packets: one per recipient key or password
MAX_CHUNKS = 1 << 16  # partial-length chunks of the encrypted-data packet

PKESK, SKESK, SED, MARKER, SEIPD, OCB = 1, 3, 9, 10, 18, 20
_SESSION_KEY = {PKESK: {3, 6}, SKESK: {4, 5, 6}}  # tag → known versions
_ENCRYPTED_DATA = {SEIPD: {1, 2}, OCB: {1}, SED: None}  # None: no version octet
_MARKER_BODY = b"PGP"


class _Malformed(ValueError):
    pass


def is_encrypted_message(data: bytes) -> bool:
    """Whether `data` is, by its packet headers, exactly one encrypted OpenPGP message."""
    try:
        return _walk(data)
    except _Malformed:
        return False


def _walk(data: bytes) -> bool:
    pos, session_keys = 0, 0
    for _ in range(MAX_PACKETS + 2):
        tag, body_start, body_end, to_end = _packet(data, pos)
        if tag in _ENCRYPTED_DATA:
            versions = _ENCRYPTED_DATA[tag]
            if versions is not None and data[body_start] not in versions:
                return False
            return session_keys > 0 and to_end
        if tag == MARKER and session_keys == 0 and data[body_start:body_end] == _MARKER_BODY:
            pos = body_end
            continue
        if tag not in _SESSION_KEY or data[body_start] not in _SESSION_KEY[tag]:
            return False
        session_keys += 1
        pos = body_end
    return False


def _packet(data: bytes, pos: int) -> tuple[int, int, int, bool]:
    """(tag, body start, body end, whether the body runs to the end of `data`).

    For a packet with partial lengths the "body" spans the chunks and their
    length octets: only the encrypted-data packet may have them, and it is the
    last packet, so its contents are never read.
    """
    if pos >= len(data):
        raise _Malformed("no packet")
    first = data[pos]
    if not first & 0x80:
        raise _Malformed("not a packet header")
    if first & 0x40:  # new format
        tag = first & 0x3F
        end, partial = _new_length(data, pos + 1)
        if partial:
            if tag not in _ENCRYPTED_DATA:
                raise _Malformed("partial length on a packet that may not have one")
            end = _partial_chain(data, end)
        body_start = _body_start_new(data, pos + 1)
    else:
        tag = (first >> 2) & 0x0F
        kind = first & 0x03
        if kind == 3:  # indeterminate: to the end of the data
            body_start, end = pos + 1, len(data)
        else:
            width = (1, 2, 4)[kind]
            body_start = pos + 1 + width
            if body_start > len(data):
                raise _Malformed("truncated length")
            end = body_start + int.from_bytes(data[pos + 1 : body_start], "big")
    if end > len(data) or body_start >= end:
        raise _Malformed("truncated or empty packet")
    return tag, body_start, end, end == len(data)


def _new_length(data: bytes, at: int) -> tuple[int, int]:
    """(end of this length's data, partial chunk size or 0) for a new-format length at `at`."""
    if at >= len(data):
        raise _Malformed("truncated length")
    octet = data[at]
    if octet < 192:
        return at + 1 + octet, 0
    if octet < 224:
        if at + 2 > len(data):
            raise _Malformed("truncated length")
        return at + 2 + ((octet - 192) << 8) + data[at + 1] + 192, 0
    if octet == 255:
        if at + 5 > len(data):
            raise _Malformed("truncated length")
        return at + 5 + int.from_bytes(data[at + 1 : at + 5], "big"), 0
    size = 1 << (octet & 0x1F)
    return at + 1 + size, size


def _partial_chain(data: bytes, end: int) -> int:
    """The end of a packet whose first chunk ends at `end`: chunks until a definite length."""
    for _ in range(MAX_CHUNKS):
        if end > len(data):
            raise _Malformed("truncated partial chunk")
        end, partial = _new_length(data, end)
        if not partial:
            return end
    raise _Malformed("too many partial chunks")


def _body_start_new(data: bytes, at: int) -> int:
    octet = data[at]
    if octet < 192 or 224 <= octet < 255:
        return at + 1
    return at + 2 if octet < 224 else at + 5


_ARMOR = re.compile(
    rb"\A\s*-----BEGIN PGP MESSAGE-----[ \t]*\r?\n"
    rb"(?P<headers>(?:[A-Za-z]+: [^\r\n]*\r?\n){0,8})"
    rb"[ \t]*\r?\n"
    rb"(?P<data>(?:[A-Za-z0-9+/=]+[ \t]*\r?\n)+?)"
    rb"(?:=(?P<crc>[A-Za-z0-9+/]{4})[ \t]*\r?\n)?"
    rb"-----END PGP MESSAGE-----\s*\Z"
)
# Armor headers that carry no text of the sender's (RFC 9580 §6.2.2.1; Comment can).
_ARMOR_KEYS = {b"version", b"charset", b"hash"}


def dearmor_whole(text: bytes) -> bytes | None:
    """The packets of `text` when it is entirely one armored PGP MESSAGE, else None."""
    if len(text) > 64 * 1024 * 1024 or b"-----BEGIN PGP MESSAGE-----" not in text[:4096]:
        return None
    match = _ARMOR.match(text)
    if match is None:
        return None
    for line in match["headers"].splitlines():
        if line.split(b":", 1)[0].lower() not in _ARMOR_KEYS:
            return None
    payload = b"".join(match["data"].split())
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error:
        return None
