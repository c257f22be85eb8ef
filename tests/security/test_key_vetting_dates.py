"""Threat: an outside key carries a self-signature or binding dated before the key it certifies.

The shape that once broke it: a key made on 1 June whose user id self-signature (or
subkey binding) says 1 January. Key vetting took it, though no signature can be
older than the key it was made over: its date is forged, and with it the order in
which signatures supersede one another (the newest self-signature decides expiry,
flags and revocation standing). Such a signature is now never used, and a key left
without a usable one is refused with the code `signature-predates-key` and a reason
that says so. The keys come from real GnuPG, which makes backdated signatures with a
fixed `--faked-system-time` and `--ignore-time-conflict`, vetted in the sandbox
(`keystore.untrusted`) exactly as imports and Web Key Directory answers are.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from keystore import pgp, untrusted
from tests.gnupg import GnuPG
from tests.keystore.gpgkeys import PUBLIC_SUBKEY, USER_ID, export, join, make_key, packets

BUDGET = untrusted.Budget(max_bytes=512 * 1024, timeout=10.0, memory_mb=256)
CAROL = "carol@partner.example"
OLD = "old@partner.example"
KEY_MADE = "20260601T000000"
EARLIER = "20260101T000000!"  # "!": the clock stands still, so gpg signs at exactly this time


@pytest.fixture
def partner(tmp_path: Path) -> GnuPG:
    home = tmp_path / "partner"
    home.mkdir(mode=0o700)
    return GnuPG(home)


def _vet(data: bytes, address: str | None = None) -> pgp.KeyVetting:
    return untrusted.vet_keys(data, dt.datetime.now(dt.UTC), BUDGET, address=address)


def _backdated(gpg: GnuPG, *args: str) -> None:
    gpg.run("--faked-system-time", EARLIER, "--ignore-time-conflict", *args)


def _key(gpg: GnuPG) -> str:
    return make_key(gpg, f"Carol <{CAROL}>", expire="3y", faked_time=KEY_MADE)


def test_backdated_user_id_self_signature_is_not_used(partner: GnuPG) -> None:
    fpr = _key(partner)
    _backdated(partner, "--quick-add-uid", fpr, f"Old <{OLD}>")
    listing = partner.run("--list-packets", input=export(partner, fpr)).stdout.decode()
    assert "sig created 2026-01-01" in listing  # the shape is really there

    vetting = _vet(export(partner, fpr))
    assert [v.address for v in vetting.accepted] == [CAROL]  # the honest user id still counts
    assert all(OLD.encode() not in v.data for v in vetting.accepted)

    asked = _vet(export(partner, fpr), address=OLD)  # as a WKD answer for the old address
    assert asked.accepted == ()
    (refused,) = asked.rejected
    assert refused.code == "signature-predates-key"
    assert refused.reason == f"the self-signature on the user id {OLD} is dated before the key"


def test_key_whose_only_user_id_is_backdated_is_refused(partner: GnuPG) -> None:
    fpr = _key(partner)
    _backdated(partner, "--quick-add-uid", fpr, f"Old <{OLD}>")
    parts = packets(export(partner, fpr))
    # Cut Carol's user id and its self-signature: only the backdated one is left.
    carol = next(i for i, p in enumerate(parts) if p.tag == USER_ID and CAROL.encode() in p.raw)
    only_old = join(parts[:carol] + parts[carol + 2 :])
    vetting = _vet(only_old)
    assert vetting.accepted == ()
    (refused,) = vetting.rejected
    assert (refused.code, refused.reason) == (
        "signature-predates-key",
        f"the self-signature on the user id {OLD} is dated before the key",
    )


def test_binding_signature_older_than_the_key_is_not_used(partner: GnuPG) -> None:
    fpr = _key(partner)
    _backdated(partner, "--quick-add-key", fpr, "cv25519", "encr", "2y")
    parts = packets(export(partner, fpr))
    subkeys = [i for i, p in enumerate(parts) if p.tag == PUBLIC_SUBKEY]
    assert len(subkeys) == 2
    honest, backdated = subkeys

    # Both present: the honest subkey is used.
    (vetted,) = _vet(join(parts)).accepted
    honest_only = pgp.vet_public_keys(join(parts[:backdated]), dt.datetime.now(dt.UTC))
    assert vetted.subkey_id == honest_only.accepted[0].subkey_id

    # Only the subkey whose binding predates the primary key: refused, and why.
    without_honest = join(parts[:honest] + parts[backdated:])
    vetting = _vet(without_honest)
    assert vetting.accepted == ()
    (refused,) = vetting.rejected
    assert refused.code == "signature-predates-key"
    assert (
        refused.reason == "a subkey's binding signature is dated before the key or subkey it binds"
    )


def test_signatures_made_with_the_key_or_later_still_hold(partner: GnuPG) -> None:
    """The check refuses only what predates: a key signed at its own creation time and a
    user id added later are both used (the boundary is 'not before', not 'after')."""
    fpr = _key(partner)
    partner.run("--faked-system-time", "20260701T000000!", "--quick-add-uid", fpr, f"Later <{OLD}>")
    vetting = _vet(export(partner, fpr))
    assert sorted(v.address for v in vetting.accepted) == [CAROL, OLD]
    assert vetting.rejected == ()
