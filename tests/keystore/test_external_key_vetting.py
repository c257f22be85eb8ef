"""Which outside keys are used: real gpg keys, revoked, expired, cut and forged ones.

pgpy checks no self-signature when it parses, so a key whose user id, subkey or
binding was swapped would look fine to it. Threats covered: a forged user id
(someone else's address added without the key owner's signature), a subkey
grafted from another key, a binding signature that does not verify, revoked
keys, user ids and subkeys, expired keys, keys without an encryption subkey,
and a secret key handed in where a public key belongs. What comes back for a
good key is our own minimal re-serialisation, which gpg accepts.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from keystore import pgp, untrusted
from tests.gnupg import GnuPG
from tests.keystore.gpgkeys import (
    PUBLIC_KEY,
    PUBLIC_SUBKEY,
    SIGNATURE,
    USER_ID,
    export,
    flip_last_byte,
    join,
    make_key,
    packets,
    revoke_key,
    revoke_subkey,
    user_id_packet,
)

BUDGET = untrusted.Budget(max_bytes=512 * 1024, timeout=10.0, memory_mb=256)
CAROL = "carol@partner.example"


@pytest.fixture
def partner(tmp_path: Path) -> GnuPG:
    home = tmp_path / "partner"
    home.mkdir(mode=0o700)
    return GnuPG(home)


def vet(
    data: bytes, *, address: str | None = None, at: dt.datetime | None = None
) -> pgp.KeyVetting:
    return untrusted.vet_keys(data, at or dt.datetime.now(dt.UTC), BUDGET, address=address)


def only_rejection(vetting: pgp.KeyVetting) -> pgp.RejectedKey:
    assert vetting.accepted == ()
    (rejected,) = vetting.rejected
    return rejected


def test_good_key_is_used_for_each_valid_user_id(partner: GnuPG, tmp_path: Path) -> None:
    fpr = make_key(partner, f"Carol <{CAROL}>")
    partner.run("--quick-add-uid", fpr, "C. Partner <c.partner@partner.example>")
    partner.run("--quick-add-uid", fpr, "no address here")
    vetting = vet(export(partner, fpr, armor=True))
    assert vetting.rejected == ()
    assert sorted(v.address for v in vetting.accepted) == ["c.partner@partner.example", CAROL]
    for vetted in vetting.accepted:
        assert vetted.fingerprint == fpr
        assert vetted.expires_at is not None and vetted.expires_at > dt.datetime.now(dt.UTC)
        # Minimal: primary, one user id, its self-signature, one subkey, its binding.
        tags = [p.tag for p in packets(vetted.data)]
        assert tags == [PUBLIC_KEY, USER_ID, SIGNATURE, PUBLIC_SUBKEY, SIGNATURE]
        assert vetted.address.encode() in packets(vetted.data)[1].raw

    # gpg takes the re-serialised key and can encrypt to it.
    home = tmp_path / "check"
    home.mkdir(mode=0o700)
    check = GnuPG(home)
    assert "IMPORT_OK" in check.import_key(vetting.accepted[0].data)
    check.run("--encrypt", "--recipient", fpr, input=b"probe")


def test_third_party_signatures_do_not_survive(partner: GnuPG, tmp_path: Path) -> None:
    fpr = make_key(partner, f"Carol <{CAROL}>")
    signer = make_key(partner, "Notary <notary@elsewhere.example>")
    partner.run("--default-key", signer, "--quick-sign-key", fpr)
    signed = export(partner, fpr)
    assert len([p for p in packets(signed) if p.tag == SIGNATURE]) == 3
    (vetted,) = vet(signed).accepted
    assert len([p for p in packets(vetted.data) if p.tag == SIGNATURE]) == 2
    assert signer[-16:].encode() not in vetted.data


def test_several_keys_in_one_file_each_get_their_verdict(partner: GnuPG) -> None:
    good = make_key(partner, f"Carol <{CAROL}>")
    signing_only = make_key(partner, "Dan <dan@partner.example>", algo="ed25519", usage="sign")
    vetting = vet(export(partner, good) + export(partner, signing_only))
    assert [v.fingerprint for v in vetting.accepted] == [good]
    rejected = only_rejection(pgp.KeyVetting((), vetting.rejected))
    assert (rejected.fingerprint, rejected.code) == (signing_only, "no-encryption-subkey")
    assert rejected.addresses == ("dan@partner.example",)


def test_concatenated_armored_blocks_are_all_read(partner: GnuPG) -> None:
    # pgpy alone reads only the first armored block of a file.
    one = make_key(partner, f"Carol <{CAROL}>")
    two = make_key(partner, "Dan <dan@partner.example>")
    both = export(partner, one, armor=True) + b"\n" + export(partner, two, armor=True)
    assert sorted(v.fingerprint for v in vet(both).accepted) == sorted([one, two])


def test_revoked_key_is_refused(partner: GnuPG) -> None:
    fpr = make_key(partner, f"Carol <{CAROL}>")
    rejected = only_rejection(vet(revoke_key(partner, fpr)))
    assert (rejected.fingerprint, rejected.code, rejected.reason) == (
        fpr,
        "revoked",
        "the key is revoked",
    )


def test_revoked_user_id_is_dropped_others_stay(partner: GnuPG) -> None:
    fpr = make_key(partner, f"Carol <{CAROL}>")
    partner.run("--quick-add-uid", fpr, "Old <old@partner.example>")
    partner.run("--quick-revoke-uid", fpr, "Old <old@partner.example>")
    vetting = vet(export(partner, fpr))
    assert [v.address for v in vetting.accepted] == [CAROL]
    rejected = only_rejection(vet(export(partner, fpr), address="old@partner.example"))
    assert rejected.code == "user-id-revoked"


def test_revoked_subkey_leaves_no_encryption_key(partner: GnuPG) -> None:
    fpr = make_key(partner, f"Carol <{CAROL}>")
    assert only_rejection(vet(revoke_subkey(partner, fpr))).code == "subkey-revoked"


def test_expired_key_is_refused(partner: GnuPG) -> None:
    fpr = make_key(partner, f"Carol <{CAROL}>", faked_time="20200101T000000")
    rejected = only_rejection(vet(export(partner, fpr)))
    assert rejected.code == "expired"
    assert "2020-12-31" in rejected.reason

    fresh = make_key(partner, "Dan <dan@partner.example>", expire="1d")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    assert only_rejection(vet(export(partner, fresh), at=later)).code == "expired"


def test_key_without_encryption_subkey_is_refused(partner: GnuPG) -> None:
    fpr = make_key(partner, f"Carol <{CAROL}>", algo="ed25519", usage="sign")
    rejected = only_rejection(vet(export(partner, fpr)))
    assert (rejected.code, rejected.reason) == (
        "no-encryption-subkey",
        "the key has no encryption subkey",
    )


def test_broken_binding_signature_is_refused(partner: GnuPG) -> None:
    fpr = make_key(partner, f"Carol <{CAROL}>")
    parts = packets(export(partner, fpr))
    assert [p.tag for p in parts] == [PUBLIC_KEY, USER_ID, SIGNATURE, PUBLIC_SUBKEY, SIGNATURE]
    broken = join([*parts[:-1], flip_last_byte(parts[-1])])
    assert pgp.parse_public_key(broken).fingerprint == fpr  # pgpy alone takes it
    assert only_rejection(vet(broken)).code == "bad-binding"


def test_subkey_grafted_from_another_key_is_refused(partner: GnuPG) -> None:
    carol = packets(export(partner, make_key(partner, f"Carol <{CAROL}>")))
    mallory = packets(export(partner, make_key(partner, "Mallory <m@evil.example>")))
    grafted = join(carol[:3] + mallory[3:])
    assert only_rejection(vet(grafted)).code in ("bad-binding", "no-encryption-subkey")


def test_forged_user_id_is_refused(partner: GnuPG) -> None:
    # Mallory puts Carol's address on his own key, reusing his user id's self-signature.
    mallory = packets(export(partner, make_key(partner, "Mallory <m@evil.example>")))
    forged = join([mallory[0], user_id_packet(f"Carol <{CAROL}>"), *mallory[2:]])
    assert pgp.parse_public_key(forged).user_ids == [CAROL]  # pgpy alone believes it
    rejected = only_rejection(vet(forged, address=CAROL))
    assert rejected.code == "no-user-id"
    assert rejected.reason == f"the user id {CAROL} has no valid self-signature"


def test_wkd_answer_must_name_the_address(partner: GnuPG) -> None:
    fpr = make_key(partner, "Someone <someone@else.example>")
    rejected = only_rejection(vet(export(partner, fpr), address=CAROL))
    assert (rejected.code, rejected.reason) == (
        "address-mismatch",
        f"no user id of the key names {CAROL}",
    )
    # Case does not matter in the comparison.
    other = make_key(partner, "Carol <Carol@Partner.Example>")
    assert [v.address for v in vet(export(partner, other), address=CAROL).accepted] == [CAROL]


def test_secret_key_is_not_taken(partner: GnuPG) -> None:
    fpr = make_key(partner, f"Carol <{CAROL}>")
    secret = partner.run("--export-secret-keys", fpr).stdout
    rejected = only_rejection(vet(secret))
    assert rejected.code == "secret-key"
    assert "import its public key" in rejected.reason


def test_rsa_key_from_gpg_is_accepted(partner: GnuPG) -> None:
    fpr = make_key(partner, f"Carol <{CAROL}>", algo="rsa3072", usage="cert,sign")
    partner.run("--quick-add-key", fpr, "rsa3072", "encr", "1y")
    (vetted,) = vet(export(partner, fpr)).accepted
    assert vetted.fingerprint == fpr


def test_uid_address_parsing() -> None:
    assert pgp.uid_address("Carol Partner <Carol@Partner.example>") == CAROL
    assert pgp.uid_address("carol@partner.example") == CAROL
    assert pgp.uid_address("Carol (work)") is None
    assert pgp.uid_address("x <a b@c>") is None
    assert pgp.uid_address("x <@c>") is None
