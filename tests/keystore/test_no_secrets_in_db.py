"""A stolen database reveals no secret key and no master key.

The whole database is dumped after keys exist (made, rotated, revoked, and
re-wrapped by a master-key rotation): on SQLite the database and WAL file bytes
plus `iterdump()`, on PostgreSQL `pg_dump` plus every column of every table. The
dump is searched for each secret key's secret material (taken from the unwrapped
key's own serialization), raw, hex and base64, for any `PRIVATE KEY BLOCK` armor,
and for every master key (raw, hex, base64, and the derived wrapping key). A
positive control finds the public key material in the same dump, so the search
would see secrets if they were there.
"""

from __future__ import annotations

import base64
import datetime as dt
import shutil
import sqlite3
import subprocess
from pathlib import Path

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway.runtime import Runtime
from gateway.settings import Settings
from keystore import messages, pgp, rotation, store, wrap
from keystore.masterkey import MasterKeyRing, load_ring
from tests.keystore.conftest import audit_sink

NOW = dt.datetime(2026, 5, 4, 8, 30, tzinfo=dt.UTC)
ADDRESSES = ["alice@example.test", "bob@example.test", "carol@example.test"]


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    """(tag, body) of each packet; pgpy writes new-format headers."""
    out = []
    i = 0
    while i < len(data):
        ctb = data[i]
        assert ctb & 0xC0 == 0xC0, "expected new-format packets"
        tag = ctb & 0x3F
        first = data[i + 1]
        if first < 192:
            length, i = first, i + 2
        elif first < 224:
            length, i = ((first - 192) << 8) + data[i + 2] + 192, i + 3
        else:
            assert first == 255
            length, i = int.from_bytes(data[i + 2 : i + 6], "big"), i + 6
        out.append((tag, data[i : i + length]))
        i += length
    return out


def secret_material(secret_serialization: bytes) -> list[bytes]:
    """The secret parts of each secret (sub)key packet: what follows the public part."""
    parts = []
    packets = _packets(secret_serialization)
    for tag, body in packets:
        if tag not in (5, 7):
            continue
        # Public key fields for EdDSA/ECDH v4: version, time, algo, OID, MPI (+ KDF params).
        oid_len = body[6]
        pos = 7 + oid_len
        bits = int.from_bytes(body[pos : pos + 2], "big")
        pos += 2 + (bits + 7) // 8
        if body[5] == 18:  # ECDH: KDF parameters
            pos += 1 + body[pos]
        secret = body[pos:]
        assert secret[0] == 0, "the unwrapped key must be unprotected"
        sbits = int.from_bytes(secret[1:3], "big")
        scalar = secret[3 : 3 + (sbits + 7) // 8]
        assert len(scalar) >= 30
        parts += [body, secret, scalar]
    assert len(parts) == 6, "expected a primary key and one subkey"
    return parts


def _forms(value: bytes) -> list[bytes]:
    return [
        value,
        value.hex().encode(),
        value.hex().upper().encode(),
        base64.b64encode(value),
        base64.b64encode(value).rstrip(b"="),
    ]


def _dump_sqlite(settings: Settings, engine: sa.Engine) -> bytes:
    path = Path(engine.url.database or "")
    chunks = [path.read_bytes()]
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            chunks.append(side.read_bytes())
    conn = sqlite3.connect(path)
    try:
        chunks.append("\n".join(conn.iterdump()).encode())
    finally:
        conn.close()
    return b"\n".join(chunks)


def _dump_postgresql(engine: sa.Engine) -> bytes:
    chunks = []
    url = engine.url
    pg_dump = shutil.which("pg_dump")
    if pg_dump:
        result = subprocess.run(
            [
                pg_dump,
                "-h",
                url.host or "127.0.0.1",
                "-p",
                str(url.port or 5432),
                "-U",
                url.username or "postgres",
                url.database or "",
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
        chunks.append(result.stdout)
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):  # noqa: S608
                for value in row:
                    chunks.append(value if isinstance(value, bytes) else str(value).encode())
    return b"\n".join(chunks)


def _make_keys(runtime: Runtime, ring: MasterKeyRing) -> None:
    with runtime.sessions.begin() as session:
        for address in ADDRESSES:
            store.get_or_create(session, ring, address, NOW, events=audit_sink)
        store.rotate(session, ring, ADDRESSES[0], NOW, events=audit_sink)
        store.revoke(session, ring, ADDRESSES[1], "test", NOW, events=audit_sink)
        # Use the keys the way mail does, so nothing a message path writes is missed.
        signer = store.signing_key(session, ring, ADDRESSES[2], NOW, events=audit_sink)
        public = store.public_key(session, ADDRESSES[0])
        assert public is not None
        messages.encrypt(b"hello", [public], signer)


def test_a_database_dump_holds_no_secret_key_and_no_master_key(
    runtime: Runtime, settings: Settings, ring: MasterKeyRing
) -> None:
    _make_keys(runtime, ring)
    first_ring = ring
    rotation.rotate_master(settings.data_dir, runtime.sessions, NOW, events=audit_sink)
    ring = load_ring(settings.data_dir, env={})
    assert ring.primary == 2 and 1 in ring.retired

    secrets: list[bytes] = []
    publics: list[bytes] = []
    with so.Session(runtime.engine) as session:
        rows = store.list_keys(session)
        assert len(rows) == 5
        for row in rows:
            secret = store.unlock_row(ring, row)
            secrets += secret_material(pgp.secret_key_bytes(secret))
            publics += [body for tag, body in _packets(row.public_key) if tag in (6, 14)]
    masters = [*first_ring.keys.values(), *ring.keys.values()]
    masters += [wrap._wrapping_key(k) for k in masters]

    if runtime.engine.dialect.name == "sqlite":
        dump = _dump_sqlite(settings, runtime.engine)
    else:
        dump = _dump_postgresql(runtime.engine)

    # Positive control: the public halves are in the dump, in the same forms.
    for public in publics:
        assert any(form in dump for form in _forms(public))
    assert b"PRIVATE KEY BLOCK" not in dump
    assert b"PRIVATE KEY" not in dump.upper()
    for value in secrets:
        for form in _forms(value):
            assert form not in dump, "secret key material found in the database"
    for key in masters:
        for form in _forms(key):
            assert form not in dump, "master key material found in the database"
