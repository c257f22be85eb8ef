"""Web Key Directory names: z-base-32 of the SHA-1 of the lower-cased local part.

The keystore stores this hash beside each key so the directory finds a key with
one indexed lookup; the HTTP side lives in `webportal.wkd` (serving) and
`gateway.wkd_client` (asking other domains).

The local part is hashed as the address spells it, with only A-Z lower-cased
(draft-koch-openpgp-webkey-service, section 3.1): a quoted one keeps its quotes
and its backslashes. That is GnuPG's name too (dirmngr's WKD_GET, gpg
--with-wkd-hash and the gpg-wks tools hash the local part of the mailbox as the
user id writes it), so a key GnuPG publishes for `<"a..b"@example.org>` is found;
unquoting would look elsewhere. One address has one spelling here, though: a
local part that needs no quotes is written without them before it is looked up
(`gateway.addresses.canonical_recipient`), as the key's own user id writes it.
`tests/gateway/test_wkd_gnupg_parity.py` holds both sides to gpg's output.
"""

from __future__ import annotations

import hashlib

ZBASE32_ALPHABET = "ybndrfg8ejkmcpqxot1uwisza345h769"
HASH_LENGTH = 32


def zbase32(data: bytes) -> str:
    bits = int.from_bytes(data, "big")
    nbits = len(data) * 8
    chars = []
    for shift in range(nbits - 5, -5, -5):
        index = (bits >> shift) & 31 if shift >= 0 else (bits << -shift) & 31
        chars.append(ZBASE32_ALPHABET[index])
    return "".join(chars)


def local_part_hash(local_part: str) -> str:
    """The `hu/` name for a local part (ASCII lower-casing, as the WKD draft says)."""
    lowered = "".join(c.lower() if c.isascii() else c for c in local_part)
    return zbase32(hashlib.sha1(lowered.encode("utf-8"), usedforsecurity=False).digest())


def address_hash(address: str) -> str:
    return local_part_hash(address.rpartition("@")[0])


def is_wkd_hash(value: str) -> bool:
    return len(value) == HASH_LENGTH and all(c in ZBASE32_ALPHABET for c in value)
