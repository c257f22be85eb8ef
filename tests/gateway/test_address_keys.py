"""A hosted address has its key from the minute it exists (issue 13, Must show 1).

The real command line creates an address; `sealgate keys export` prints its key
at once, and the running portal serves the same key by Web Key Directory, over
HTTPS with the advanced (`openpgpkey.<domain>`) and the direct method, fetched
by the gateway's own WKD client. Addresses made before keys came with them get
theirs from the backfill that `sealgate init` runs after the schema upgrade.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import trustme

from gateway import accounts, address_keys, db
from gateway.models import Address
from gateway.runtime import Runtime
from gateway.settings import load_settings
from gateway.wkd_client import HostNotFound, WkdClient
from keystore import pgp
from keystore.models import StoredKey
from tests.conftest import CHEAP_ARGON2, TEST_DATABASE_URL, reset_database
from webportal import create_app
from webportal.server import PortalServer

DOMAIN = "example.test"
NEW = f"new.person@{DOMAIN}"


def sealgate(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    env = {**os.environ, **CHEAP_ARGON2, "SEALGATE_PORTAL_PORT": "0"}
    if TEST_DATABASE_URL:
        env["SEALGATE_DATABASE_URL"] = TEST_DATABASE_URL
    done = subprocess.run(
        [sys.executable, "-m", "sealgate", "--data-dir", str(data_dir), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    if TEST_DATABASE_URL:
        reset_database(TEST_DATABASE_URL)
    path = tmp_path / "data"
    sealgate(path, "init", "--domain", DOMAIN)
    return path


@pytest.fixture
def portal(data_dir: Path, tls_ca: trustme.CA) -> Iterator[PortalServer]:
    """The portal of that data dir, with a certificate for the domain's WKD host names."""
    env = {**CHEAP_ARGON2, "SEALGATE_PORTAL_PORT": "0"}
    if TEST_DATABASE_URL:
        env["SEALGATE_DATABASE_URL"] = TEST_DATABASE_URL
    settings = load_settings(data_dir, env=env)
    cert = tls_ca.issue_cert(DOMAIN, f"openpgpkey.{DOMAIN}", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(settings.path(settings.smtp.tls_cert)))
    cert.private_key_pem.write_to_path(str(settings.path(settings.smtp.tls_key)))
    runtime = Runtime.open(settings)
    server = PortalServer(create_app(runtime), settings)
    server.start()
    yield server
    server.stop()
    runtime.close()


def wkd_client(portal: PortalServer, ctx: ssl.SSLContext, *, advanced: bool) -> WkdClient:
    served = {DOMAIN} | ({f"openpgpkey.{DOMAIN}"} if advanced else set())

    def resolver(host: str, port: int) -> list[tuple[str, int]]:
        if host not in served:
            raise HostNotFound(f"{host} does not exist")
        return [("127.0.0.1", portal.port)]

    return WkdClient(timeout=10, max_bytes=64 * 1024, resolver=resolver, ssl_context=ctx)


def test_a_new_address_is_exported_and_served_by_wkd_with_one_fingerprint(
    data_dir: Path, portal: PortalServer, client_ssl_context: ssl.SSLContext
) -> None:
    sealgate(data_dir, "user", "add", NEW, "--password-stdin", stdin="portal password 1\n")
    sealgate(
        data_dir,
        "address",
        "add",
        NEW,
        "--user",
        NEW,
        "--password-stdin",
        stdin="smtp password 1\n",
    )

    exported = pgp.parse_public_key(sealgate(data_dir, "keys", "export", NEW))
    listed = sealgate(data_dir, "keys", "list", NEW).splitlines()[1].split("\t")
    assert listed[:2] == [NEW, exported.fingerprint] and listed[3] == "active"

    fetched = {}
    for advanced in (True, False):
        answer = wkd_client(portal, client_ssl_context, advanced=advanced).fetch(NEW)
        fetched[answer.method] = pgp.parse_public_key(answer.body).fingerprint
    assert fetched == {"advanced": exported.fingerprint, "direct": exported.fingerprint}


def test_init_gives_addresses_without_a_key_theirs_after_the_upgrade(data_dir: Path) -> None:
    """As after an upgrade from a version that made keys on first use: 25 addresses
    have no key; the next `init` makes them all, with progress, and says so."""
    sealgate(data_dir, "user", "add", NEW, "--password-stdin", stdin="portal password 1\n")
    names = [f"user{i:02d}@{DOMAIN}" for i in range(25)]
    env = {**CHEAP_ARGON2}
    if TEST_DATABASE_URL:
        env["SEALGATE_DATABASE_URL"] = TEST_DATABASE_URL
    runtime = Runtime.open(load_settings(data_dir, env=env))
    try:
        # In process: `sealgate address add` itself is tested above, 25 runs of it
        # would only add 25 process starts.
        with db.transaction(runtime.sessions) as session:
            account = accounts.find_account(session, NEW)
            assert account is not None
            for name in names:
                accounts.add_address(session, runtime.hasher, name, account, "pw", actor="test")
        with db.transaction(runtime.sessions) as session:
            session.execute(sa.delete(StoredKey).where(StoredKey.address.in_(names)))
            assert address_keys.count_without_key(session) == 25

        out = sealgate(data_dir, "init", "--domain", DOMAIN)
        assert "keys made for 25 address(es) that had none" in out
        assert "making keys" in out

        with db.read_only(runtime.sessions) as session:
            assert address_keys.count_without_key(session) == 0
            count = session.scalar(sa.select(sa.func.count()).select_from(Address))
            keys = session.scalar(
                sa.select(sa.func.count())
                .select_from(StoredKey)
                .where(StoredKey.status == "active")
            )
        assert count == keys == 26  # the admin's address and the 25
    finally:
        runtime.close()
    again = sealgate(data_dir, "init", "--domain", DOMAIN)
    assert "nothing changed" in again
    assert pgp.parse_public_key(sealgate(data_dir, "keys", "export", names[0])).fingerprint


def test_without_the_master_key_no_address_is_made_and_the_cli_says_why(
    data_dir: Path, tmp_path: Path
) -> None:
    """The key is part of the address: when it cannot be made, neither is the address."""
    sealgate(data_dir, "user", "add", NEW, "--password-stdin", stdin="portal password 1\n")
    ring = data_dir / "master.keys"
    ring.rename(tmp_path / "master.keys.away")
    env = {**os.environ, **CHEAP_ARGON2}
    if TEST_DATABASE_URL:
        env["SEALGATE_DATABASE_URL"] = TEST_DATABASE_URL
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sealgate",
            "--data-dir",
            str(data_dir),
            "address",
            "add",
            NEW,
            "--user",
            NEW,
            "--password-stdin",
        ],
        input="smtp password 1\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert f"cannot make the OpenPGP key of {NEW}" in done.stderr
    assert "Traceback" not in done.stderr
    (tmp_path / "master.keys.away").rename(ring)
    assert NEW not in sealgate(data_dir, "address", "list")
