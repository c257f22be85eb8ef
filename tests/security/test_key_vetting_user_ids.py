"""Threat: an outside key carries a user id of hundreds of kilobytes, or one not in UTF-8.

The shape that once broke it: a key for carol@partner.example whose user id was
`<300 KB of name> <carol@partner.example>`. Vetting reads the address between the
angle brackets, so it took the key and stored (and would show) the whole user id; and
a user id in Latin-1 (`Caf\\xe9 <cafe@…>`, self-signed by GnuPG with --utf8-strings)
was read by pgpy as Latin-1 and taken as well. A user id over
`pgp.MAX_USER_ID_BYTES` (4 KiB) or not valid UTF-8 (RFC 9580 §5.11) is now never used;
a key left without another is refused with `user-id-too-long` or `user-id-not-utf8`
and a reason that names the limit or the encoding.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from keystore import pgp, untrusted
from tests.gnupg import GnuPG
from tests.keystore.gpgkeys import USER_ID, Packet, export, join, make_key, packets

BUDGET = untrusted.Budget(max_bytes=1024 * 1024, timeout=10.0, memory_mb=256)
CAROL = "carol@partner.example"
CAFE = "cafe@partner.example"


@pytest.fixture
def partner(tmp_path: Path) -> GnuPG:
    home = tmp_path / "partner"
    home.mkdir(mode=0o700)
    return GnuPG(home)


def _vet(data: bytes, address: str | None = None) -> pgp.KeyVetting:
    return untrusted.vet_keys(data, dt.datetime.now(dt.UTC), BUDGET, address=address)


def _user_id(body: bytes) -> Packet:
    """A new-format user id packet of any length (RFC 9580 §4.2.1)."""
    size = len(body)
    if size < 192:
        length = bytes([size])
    elif size < 8384:
        length = bytes([((size - 192) >> 8) + 192, (size - 192) & 0xFF])
    else:
        length = b"\xff" + size.to_bytes(4, "big")
    return Packet(USER_ID, bytes([0xC0 | USER_ID]) + length + body)


def _with_user_id(gpg: GnuPG, body: bytes) -> bytes:
    """Carol's real key with her user id packet replaced by `body` (same self-signature)."""
    parts = packets(export(gpg, make_key(gpg, f"Carol <{CAROL}>")))
    assert parts[1].tag == USER_ID
    return join([parts[0], _user_id(body), *parts[2:]])


@pytest.mark.parametrize("size", [pgp.MAX_USER_ID_BYTES + 1, 300 * 1024])
def test_oversized_user_id_is_refused_with_its_size(partner: GnuPG, size: int) -> None:
    tail = f" <{CAROL}>".encode()
    key = _with_user_id(partner, b"N" * (size - len(tail)) + tail)
    for address in (None, CAROL):
        vetting = _vet(key, address=address)
        assert vetting.accepted == ()
        (refused,) = vetting.rejected
        assert refused.code == "user-id-too-long"
        assert refused.reason == (
            f"a user id is {size} bytes long; at most {pgp.MAX_USER_ID_BYTES} are accepted"
        )


def test_user_id_at_the_limit_is_judged_on_its_signature_not_its_size(partner: GnuPG) -> None:
    tail = f" <{CAROL}>".encode()
    key = _with_user_id(partner, b"N" * (pgp.MAX_USER_ID_BYTES - len(tail)) + tail)
    (refused,) = _vet(key).rejected
    assert refused.code == "no-user-id"  # the swapped-in user id is not the signed one


def test_long_but_bounded_user_id_from_gnupg_is_used(partner: GnuPG) -> None:
    fpr = make_key(partner, f"Carol <{CAROL}>")
    partner.run("--quick-add-uid", fpr, "L" * 2000 + f" <{CAFE}>")
    vetting = _vet(export(partner, fpr))
    assert sorted(v.address for v in vetting.accepted) == [CAFE, CAROL]


def test_self_signed_latin1_user_id_is_refused(partner: GnuPG) -> None:
    fpr = make_key(partner, f"Carol <{CAROL}>")
    # --utf8-strings: gpg takes the bytes as they are, and signs them.
    partner.run(
        "--utf8-strings", "--quick-add-uid", fpr, os.fsdecode(b"Caf\xe9 <" + CAFE.encode() + b">")
    )
    data = export(partner, fpr)
    assert b"Caf\xe9 <" in data

    vetting = _vet(data)
    assert [v.address for v in vetting.accepted] == [CAROL]
    assert all(b"Caf\xe9" not in v.data for v in vetting.accepted)

    asked = _vet(data, address=CAFE)
    assert asked.accepted == ()
    (refused,) = asked.rejected
    assert refused.code == "user-id-not-utf8"
    assert refused.reason == f"the user id for {CAFE} is not valid UTF-8 (RFC 9580 section 5.11)"


def test_utf8_user_id_with_accents_is_used(partner: GnuPG) -> None:
    fpr = make_key(partner, f"Carol <{CAROL}>")
    partner.run("--quick-add-uid", fpr, f"Café Zürich <{CAFE}>")
    vetting = _vet(export(partner, fpr), address=CAFE)
    (vetted,) = vetting.accepted
    assert "Café Zürich".encode() in vetted.data
