"""`sealgate keys import FILE` as an admin runs it (its own process): keys from gpg,
clear verdicts for each key, revocations honoured, hostile files refused, all audited."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import db
from gateway.models import AuditEvent
from gateway.runtime import Runtime
from keystore import directory
from tests.gnupg import GnuPG
from tests.keystore.conftest import run_sealgate
from tests.keystore.gpgkeys import export, make_key, revocation_certificate
from tests.keystore.hostile import hostile_armor

CAROL = "carol@partner.example"


@pytest.fixture
def partner(tmp_path: Path) -> GnuPG:
    home = tmp_path / "partner"
    home.mkdir(mode=0o700)
    return GnuPG(home)


def audit(runtime: Runtime) -> list[tuple[str, str, str, str]]:
    with db.read_only(runtime.sessions) as session:
        rows = session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.action.startswith("external-key"))
            .order_by(AuditEvent.id)
        )
        return [(e.action, e.actor, e.target, e.detail) for e in rows]


def test_import_stores_each_valid_key_and_names_each_refusal(
    runtime: Runtime, test_env: dict[str, str], partner: GnuPG, tmp_path: Path
) -> None:
    carol = make_key(partner, f"Carol <{CAROL}>")
    partner.run("--quick-add-uid", carol, "Carol Work <carol@work.example>")
    signing_only = make_key(partner, "Dan <dan@partner.example>", algo="ed25519", usage="sign")
    expired = make_key(partner, "Old <old@partner.example>", faked_time="20200101T000000")
    keyfile = tmp_path / "partners.asc"
    keyfile.write_bytes(
        b"Our partners' keys, exported with gpg --armor:\n\n"
        + export(partner, carol, armor=True)
        + export(partner, signing_only, armor=True)
        + b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n"
        + b"-----END PGP PUBLIC KEY BLOCK-----\n"
        + export(partner, expired, armor=True)
    )

    result = run_sealgate(test_env, "keys", "import", str(keyfile))
    assert result.returncode == 0, result.stderr
    assert f"{CAROL}: key {carol} added, expires " in result.stdout
    assert f"carol@work.example: key {carol} added" in result.stdout
    assert (
        f"rejected key {signing_only} (dan@partner.example): the key has no encryption subkey"
        in result.stderr
    )
    assert f"rejected key {expired} (old@partner.example): the key expired on 2020-12-31" in (
        result.stderr
    )
    assert "rejected key data: armored block 3: not a valid OpenPGP key" in result.stderr
    assert "Traceback" not in result.stderr

    now = dt.datetime.now(dt.UTC)
    with db.read_only(runtime.sessions) as session:
        for address in (CAROL, "carol@work.example"):
            row = directory.usable(session, address, "import", now)
            assert row is not None and row.fingerprint == carol
        assert directory.usable(session, "dan@partner.example", "import", now) is None
    assert sorted(audit(runtime)) == [
        ("external-key.add", "cli", "carol@partner.example", f"import key {carol}"),
        ("external-key.add", "cli", "carol@work.example", f"import key {carol}"),
        ("external-key.import", "cli", str(keyfile), "2 imported, 0 revoked, 3 rejected"),
    ]

    again = run_sealgate(test_env, "keys", "import", str(keyfile))
    assert again.returncode == 0 and f"{CAROL}: key {carol} unchanged" in again.stdout

    listing = run_sealgate(test_env, "keys", "list-external", CAROL)
    assert listing.returncode == 0
    assert f"{CAROL}\t{carol}\timport\t" in listing.stdout and "\tin use" in listing.stdout


def test_importing_a_revocation_stops_the_key(
    runtime: Runtime, test_env: dict[str, str], partner: GnuPG, tmp_path: Path
) -> None:
    carol = make_key(partner, f"Carol <{CAROL}>")
    keyfile, revocation = tmp_path / "carol.pgp", tmp_path / "carol-rev.asc"
    keyfile.write_bytes(export(partner, carol))
    assert run_sealgate(test_env, "keys", "import", str(keyfile)).returncode == 0

    partner.import_key(revocation_certificate(partner, carol))
    revocation.write_bytes(export(partner, carol, armor=True))
    result = run_sealgate(test_env, "keys", "import", str(revocation))
    assert result.returncode == 0, result.stderr
    assert f"key {carol} ({CAROL}) is revoked: no longer used for {CAROL}" in result.stdout

    # The old file again does not bring the key back.
    again = run_sealgate(test_env, "keys", "import", str(keyfile))
    assert again.returncode == 1
    assert f"rejected key {carol} for {CAROL}: it was revoked earlier" in again.stderr
    with db.read_only(runtime.sessions) as session:
        assert directory.usable(session, CAROL, "import", dt.datetime.now(dt.UTC)) is None
    assert ("external-key.revoke", "cli", CAROL, f"import key {carol} revoked") in audit(runtime)


def test_a_revocation_imported_first_refuses_the_key_later(
    runtime: Runtime, test_env: dict[str, str], partner: GnuPG, tmp_path: Path
) -> None:
    """Threat: the revocation reaches the admin before the key ever did (Carol sends it
    round after losing her device); an old copy imported, served by WKD or sent in an
    Autocrypt header later must not be used."""
    carol = make_key(partner, f"Carol <{CAROL}>")
    keyfile, revocation = tmp_path / "carol.pgp", tmp_path / "carol-rev.asc"
    keyfile.write_bytes(export(partner, carol))
    partner.import_key(revocation_certificate(partner, carol))
    revocation.write_bytes(export(partner, carol, armor=True))

    result = run_sealgate(test_env, "keys", "import", str(revocation))
    assert result.returncode == 0, result.stderr
    assert f"key {carol} ({CAROL}) is revoked: it was not in use" in result.stdout
    again = run_sealgate(test_env, "keys", "import", str(keyfile))
    assert again.returncode == 1
    assert f"rejected key {carol} for {CAROL}: it was revoked earlier" in again.stderr
    with db.read_only(runtime.sessions) as session:
        assert directory.is_revoked(session, carol)
        assert directory.usable(session, CAROL, "import", dt.datetime.now(dt.UTC)) is None
    assert ("external-key.revoke", "cli", CAROL, f"import key {carol} seen revoked") in audit(
        runtime
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is no key\n", "not a valid OpenPGP key"),
        (b"", "no key data"),
        (hostile_armor(), "parsing took longer than 2 s and was stopped"),
    ],
)
def test_bad_files_get_one_clear_line(
    runtime: Runtime, test_env: dict[str, str], tmp_path: Path, content: bytes, message: str
) -> None:
    keyfile = tmp_path / "bad.asc"
    keyfile.write_bytes(content)
    env = {**test_env, "SEALGATE_KEYS_PARSE_TIMEOUT": "2"}
    result = run_sealgate(env, "keys", "import", str(keyfile))
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: {keyfile}: {message}")
    assert "Traceback" not in result.stderr


def test_too_large_file_is_refused_before_parsing(
    runtime: Runtime, test_env: dict[str, str], tmp_path: Path
) -> None:
    keyfile = tmp_path / "big.asc"
    keyfile.write_bytes(b"x" * 2048)
    env = {**test_env, "SEALGATE_KEYS_MAX_KEY_BYTES": "1024"}
    result = run_sealgate(env, "keys", "import", str(keyfile))
    assert result.returncode == 1
    assert "the key data is too large (more than 1024 bytes)" in result.stderr  # a 2048-byte file
    assert "raise the limits in [keys]" in result.stderr


def test_missing_file_is_a_usage_error(runtime: Runtime, test_env: dict[str, str]) -> None:
    result = run_sealgate(test_env, "keys", "import", "/nonexistent/keys.asc")
    assert result.returncode == 2
    assert "No such file or directory" in result.stderr and "Traceback" not in result.stderr


def test_refresh_with_wkd_off_contacts_nothing_and_says_so(
    test_env: dict[str, str], runtime: Runtime
) -> None:
    """serve skips its refresh when `[keys] wkd = false`; by hand it must not ask the
    directories either, and must say why nothing happened (and audit nothing)."""
    before = audit(runtime)
    refused = run_sealgate({**test_env, "SEALGATE_KEYS_WKD": "false"}, "keys", "refresh")
    assert refused.returncode == 1, refused.stdout
    assert "WKD lookups are off ([keys] wkd = false)" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert audit(runtime) == before
