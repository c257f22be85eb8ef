"""Step `check-already-encrypted`: pass through only what is really encrypted, by its structure.

A message already encrypted by the sender's client is relayed and stored as it
came (encrypting it again would only bury it one level deeper). Taking a
message for encrypted when it is not would send its text in clear after the
sender asked for encryption, so the test is structural and strict, never a
text search:

- RFC 3156 PGP/MIME: the top-level entity is `multipart/encrypted` with
  `protocol="application/pgp-encrypted"` and exactly two parts, an
  `application/pgp-encrypted` part saying `Version: 1` and an
  `application/octet-stream` part that is one armored OpenPGP message whose
  packets are session-key packets and one encrypted-data packet
  (keystore.packets); nothing in the preamble but a usual notice line,
  nothing in the epilogue but whitespace, no other header field in a part than
  Content-*;
- S/MIME: the top-level entity is `application/pkcs7-mime` whose base64 body
  is a DER CMS ContentInfo of envelopedData or authEnvelopedData with
  encrypted content, parsed by asn1crypto (a maintained, pure-Python ASN.1/CMS
  parser without native code, so a hostile DER cannot crash the process);
- inline PGP: a `text/plain` body that is entirely one armored PGP MESSAGE
  (whitespace around it only) passing the same packet check.

A quoted armor block, a declared but fake `multipart/encrypted`, an S/MIME
type around something else: none of these is encrypted, so each is encrypted
like any other message. Headers and parts are read with the gateway's one
header/body split (gateway.rawheaders), the one the rest of the pipeline uses.
"""

from __future__ import annotations

import base64
import binascii
import functools
import quopri
import re
from email.message import Message

from asn1crypto import cms

from gateway import rawheaders
from keystore import packets

# Only whitespace may stand before the armor of an inline PGP message.
_ARMOR_FIRST = re.compile(rb"\s*-----BEGIN PGP MESSAGE-----")  # as keystore.packets._ARMOR
_PLAIN_ENCODINGS = {"", "7bit", "8bit", "binary"}
_CMS_ENCRYPTED = {"enveloped_data", "authenticated_enveloped_data"}
# What mail clients write before the first part of a multipart/encrypted message.
_NOTICES = {
    b"",
    b"this is an openpgp/mime encrypted message (rfc 4880 and 3156)",
    b"this is an openpgp/mime encrypted message (rfc 2440 and 3156)",
    b"this is an openpgp/mime encrypted message",
    b"this is a multi-part message in mime format.",
    b"this is a mime-encapsulated message",
}


class _Entity:
    """A MIME entity read with the gateway's header/body split: its fields and body."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        end, self.start = rawheaders.header_bounds(raw)
        self.fields = list(rawheaders.iter_headers(raw[:end]))

    @functools.cached_property
    def body(self) -> bytes:
        """Copied only when a check needs it (a message may be tens of MiB)."""
        return self.raw[self.start :]

    def only(self, name: str) -> str | None:
        """The value of the field `name`, None when absent; ValueError when it repeats
        (readers disagree on which of two Content-Type fields wins)."""
        found = [f.value for f in self.fields if f.name.lower() == name]
        if len(found) > 1:
            raise ValueError(f"{name} given twice")
        return found[0] if found else None

    def content_type(self) -> Message:
        """A Message holding only the Content-Type, for its parsed type and parameters."""
        holder = Message()
        holder["Content-Type"] = self.only("content-type") or "text/plain"
        return holder

    def encoding(self) -> str:
        return (self.only("content-transfer-encoding") or "").strip().lower()

    def decoded_body(self) -> bytes:
        encoding = self.encoding()
        if encoding in _PLAIN_ENCODINGS:
            return self.body
        if encoding == "base64":
            try:
                return base64.b64decode(b"".join(self.body.split()), validate=True)
            except binascii.Error:
                raise ValueError("invalid base64") from None
        if encoding == "quoted-printable":
            return quopri.decodestring(self.body)
        raise ValueError(f"unknown transfer encoding {encoding!r}")


def is_already_encrypted(raw: bytes) -> bool:
    """Whether the whole message is one PGP/MIME, S/MIME enveloped or inline PGP message."""
    try:
        entity = _Entity(raw)
        holder = entity.content_type()
        kind = holder.get_content_type()
        if kind == "multipart/encrypted":
            return _is_pgp_mime(entity, holder)
        if kind in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
            return _is_cms_enveloped(entity.decoded_body())
        if kind == "text/plain":
            if entity.encoding() in _PLAIN_ENCODINGS and not _ARMOR_FIRST.match(
                entity.raw, entity.start
            ):
                return False  # text that does not open with the armor: no copy of it needed
            return _is_armored_message(entity.decoded_body())
    except ValueError:
        return False
    return False


def is_pgp_mime(raw: bytes) -> bool:
    """Whether the whole message is one RFC 3156 PGP/MIME encrypted message (the first
    shape above): the one shape a reader decrypts as a whole, with nothing in clear
    beside the ciphertext but the header fields."""
    try:
        entity = _Entity(raw)
        holder = entity.content_type()
        return holder.get_content_type() == "multipart/encrypted" and _is_pgp_mime(entity, holder)
    except ValueError:
        return False


def _is_armored_message(text: bytes) -> bool:
    data = packets.dearmor_whole(text)
    return data is not None and packets.is_encrypted_message(data)


def _is_pgp_mime(entity: _Entity, holder: Message) -> bool:
    protocol = str(holder.get_param("protocol", "")).strip().lower()
    boundary = holder.get_boundary()
    if protocol != "application/pgp-encrypted" or not boundary:
        return False
    if entity.encoding() not in _PLAIN_ENCODINGS:
        return False
    split = _split_parts(entity.body, boundary.encode("utf-8", "replace"))
    if split is None:
        return False
    preamble, parts, epilogue = split
    if b" ".join(preamble.split()).lower() not in _NOTICES or epilogue.strip():
        return False
    if len(parts) != 2:
        return False
    version, payload = (_Entity(p) for p in parts)
    for part in (version, payload):
        if any(not f.name.lower().startswith("content-") for f in part.fields):
            return False
    if version.content_type().get_content_type() != "application/pgp-encrypted":
        return False
    if b" ".join(version.decoded_body().split()).lower() != b"version: 1":
        return False
    if payload.content_type().get_content_type() != "application/octet-stream":
        return False
    return _is_armored_message(payload.decoded_body())


def _split_parts(body: bytes, boundary: bytes) -> tuple[bytes, list[bytes], bytes] | None:
    """(preamble, parts, epilogue) of a multipart body (RFC 2046 §5.1.1), None without a
    close delimiter. The line break before a delimiter belongs to the delimiter."""
    delimiter = b"--" + boundary
    starts: list[tuple[int, int]] = []  # (where the delimiter's line break begins, line end)
    pos, size = 0, len(body)
    while pos < size:
        newline = body.find(b"\n", pos)
        end = size if newline == -1 else newline + 1
        line = body[pos:end]
        if line.startswith(delimiter):
            rest = line[len(delimiter) :]
            closing = rest.startswith(b"--")
            if not (rest[2:] if closing else rest).strip():
                cut = pos - 2 if body[pos - 2 : pos] == b"\r\n" else max(pos - 1, 0)
                starts.append((cut if pos else 0, end))
                if closing:
                    break
        pos = end
    else:
        return None
    if len(starts) < 2:
        return None
    preamble = body[: starts[0][0]]
    parts = [body[starts[i][1] : starts[i + 1][0]] for i in range(len(starts) - 1)]
    return preamble, parts, body[starts[-1][1] :]


def _is_cms_enveloped(der: bytes) -> bool:
    """Whether `der` is exactly one CMS ContentInfo of (auth)enveloped data with content."""
    if not der:
        return False
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native not in _CMS_ENCRYPTED:
            return False
        content = info["content"]
        if len(content["recipient_infos"]) == 0:
            return False
        name = (
            "encrypted_content_info"
            if info["content_type"].native == "enveloped_data"
            else "auth_encrypted_content_info"
        )
        encrypted = content[name]["encrypted_content"]
        return bool(encrypted.contents)
    except (ValueError, TypeError, KeyError, RecursionError, OverflowError):
        return False
