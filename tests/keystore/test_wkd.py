"""Web Key Directory over real HTTPS (cheroot, throwaway CA), checked with gpg.

Both the bare blueprint (in a minimal Flask app) and the full portal app are
served, each on its own TLS port. gpg imports what both WKD methods return and
recognises it as the address's current key; everything that is not a hosted
address gets 404.
"""

from __future__ import annotations

import datetime as dt
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask

from gateway.models import AuditEvent
from gateway.runtime import Runtime
from keystore import store
from keystore.masterkey import MasterKeyRing
from keystore.models import StoredKey
from keystore.wkd import local_part_hash, zbase32
from tests.gnupg import GnuPG
from tests.keystore.conftest import audit_sink
from webportal import create_app, wkd
from webportal.server import PortalServer

NOW = dt.datetime(2026, 5, 4, 8, 30, tzinfo=dt.UTC)
ALICE = "alice@example.test"
ALICE_HASH = local_part_hash("alice")
Sessions = so.sessionmaker[so.Session]


@dataclass
class Fetched:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Portal:
    url: str
    ssl_context: ssl.SSLContext

    def get(self, path: str, host: str) -> Fetched:
        request = urllib.request.Request(self.url + path, headers={"Host": host})  # noqa: S310
        try:
            with urllib.request.urlopen(request, context=self.ssl_context, timeout=30) as resp:  # noqa: S310
                return Fetched(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return Fetched(exc.code, dict(exc.headers), exc.read())


def _minimal_app(runtime: Runtime) -> Flask:
    app = Flask("wkd-test")
    app.extensions["sealgate"] = runtime
    app.register_blueprint(wkd.bp)
    return app


@pytest.fixture(params=["blueprint", "portal"])
def portal(
    request: pytest.FixtureRequest,
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> Iterator[Portal]:
    app = _minimal_app(runtime) if request.param == "blueprint" else create_app(runtime)
    with PortalServer(app, runtime.settings) as server:
        assert server.url.startswith("https://")
        yield Portal(server.url, client_ssl_context)


def _current(sessions: Sessions, address: str = ALICE) -> store.StoredKey:
    with sessions() as session:
        row = store.current_key(session, address)
        assert row is not None
        return row


def _gpg_sees(gnupg: GnuPG, body: bytes) -> tuple[list[str], str]:
    status = gnupg.import_key(body)
    assert "IMPORT_OK" in status and "IMPORT_RES 1" in status, status
    colons = gnupg.run("--with-colons", "--list-keys", ALICE).stdout.decode()
    return gnupg.fingerprints(), colons


def test_gpg_imports_the_current_key_from_both_wkd_urls(
    portal: Portal,
    sessions: Sessions,
    ring: MasterKeyRing,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with sessions.begin() as session:
        store.get_or_create(session, ring, ALICE, NOW, events=audit_sink)
    key = _current(sessions)
    urls = {
        "direct": (f"/.well-known/openpgpkey/hu/{ALICE_HASH}?l=alice", "example.test"),
        "advanced": (
            f"/.well-known/openpgpkey/example.test/hu/{ALICE_HASH}?l=alice",
            "openpgpkey.example.test",
        ),
    }
    for method, (path, host) in urls.items():
        fetched = portal.get(path, host)
        assert fetched.status == 200, method
        assert fetched.headers["Content-Type"] == "application/octet-stream"
        assert fetched.headers["Access-Control-Allow-Origin"] == "*"
        assert not fetched.body.startswith(b"-----BEGIN")  # binary, not armored
        home = tmp_path_factory.mktemp(f"gnupg-{method}")
        home.chmod(0o700)
        fingerprints, colons = _gpg_sees(GnuPG(home), fetched.body)
        assert fingerprints == [key.fingerprint], method
        assert f"<{ALICE}>" in colons
        # Without ?l= the hash alone finds it too.
        bare = portal.get(path.split("?")[0], host)
        assert (bare.status, bare.body) == (200, fetched.body)

    with sessions.begin() as session:
        new = store.rotate(session, ring, ALICE, NOW, events=audit_sink)
    for path, host in urls.values():
        fetched = portal.get(path, host)
        home = tmp_path_factory.mktemp("gnupg-rotated")
        home.chmod(0o700)
        assert _gpg_sees(GnuPG(home), fetched.body)[0] == [new.fingerprint]


def test_a_hosted_address_without_a_key_gets_one_on_first_lookup(
    portal: Portal, sessions: Sessions
) -> None:
    """Addresses get their key when they are made; one from before that (until the
    backfill of `sealgate init` or `serve` has run) gets it from its first lookup."""
    with sessions.begin() as session:
        session.execute(sa.delete(StoredKey).where(StoredKey.address == "bob@example.test"))
    bob_hash = local_part_hash("bob")
    fetched = portal.get(f"/.well-known/openpgpkey/hu/{bob_hash}", "example.test")
    assert fetched.status == 200
    key = _current(sessions, "bob@example.test")
    assert key.public_key == fetched.body
    with sessions() as session:
        event = session.scalar(
            sa.select(AuditEvent).where(
                AuditEvent.action == "key.create", AuditEvent.actor == "wkd"
            )
        )
    assert event is not None and (event.actor, event.target) == ("wkd", "bob@example.test")


NOT_FOUND = [
    (f"/.well-known/openpgpkey/hu/{local_part_hash('carol')}", "example.test"),
    (f"/.well-known/openpgpkey/hu/{local_part_hash('carol')}?l=carol", "example.test"),
    (f"/.well-known/openpgpkey/hu/{ALICE_HASH}?l=bob", "example.test"),
    (f"/.well-known/openpgpkey/hu/{ALICE_HASH}?l=alice", "elsewhere.test"),
    (f"/.well-known/openpgpkey/hu/{ALICE_HASH}", "localhost"),
    (f"/.well-known/openpgpkey/hu/{ALICE_HASH}", "127.0.0.1"),
    (f"/.well-known/openpgpkey/elsewhere.test/hu/{ALICE_HASH}", "example.test"),
    ("/.well-known/openpgpkey/hu/not-a-hash", "example.test"),
    (f"/.well-known/openpgpkey/hu/{ALICE_HASH.upper()}", "example.test"),
    (f"/.well-known/openpgpkey/hu/{ALICE_HASH}?l={'a' * 300}", "example.test"),
    (f"/.well-known/openpgpkey/bad..domain/hu/{ALICE_HASH}", "example.test"),
    ("/.well-known/openpgpkey/elsewhere.test/policy", "example.test"),
    ("/.well-known/openpgpkey/policy", "elsewhere.test"),
]


def test_anything_but_a_hosted_address_is_404(portal: Portal) -> None:
    for path, host in NOT_FOUND:
        fetched = portal.get(path, host)
        assert fetched.status == 404, (path, host)
        assert b"BEGIN PGP" not in fetched.body


def test_policy_files(portal: Portal) -> None:
    for path, host in [
        ("/.well-known/openpgpkey/policy", "example.test"),
        ("/.well-known/openpgpkey/example.test/policy", "openpgpkey.example.test"),
    ]:
        fetched = portal.get(path, host)
        assert (fetched.status, fetched.body) == (200, b"")
        assert fetched.headers["Access-Control-Allow-Origin"] == "*"


def test_z_base_32_names() -> None:
    # The example in draft-koch-openpgp-webkey-service ("Joe.Doe@Example.ORG").
    assert local_part_hash("Joe.Doe") == "iy9q119eutrkn8s1mk4r39qejnbu3n5q"
    assert local_part_hash("JOE.doe") == local_part_hash("joe.doe")
    assert zbase32(b"\x00") == "yy"
    assert zbase32(b"\xff\xff\xff\xff\xff") == "99999999"
