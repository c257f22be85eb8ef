"""Database plus master key do not open a secure page: only its password does.

Threat: a thief (or a curious admin) with the database, the master key ring and
the portal's session key. The test sends a secure-page message over SMTP, takes
a copy of the database (its files on SQLite, every row on PostgreSQL) and of the
data dir's key files, and plays the attacker:

- the message body, the attachment, the password, the link token and the
  message key appear nowhere in what was taken (the queued notification that
  carries the link is sealed under the master key);
- no key the attacker can derive (each master-key version, raw and as the
  keystore's wrapping key; the portal's session key and its sub-keys; every
  hosted secret key, unwrapped with the ring) opens the wrapped message key or
  the ciphertext;
- the password opens both (the control).

The sender's own Sent copy is no way in either: it is sealed under the same
password, not encrypted to the sender's key (which the master key unwraps). The
test opens every stored mail with every hosted secret key and finds the message
in none.

The boundary, stated by the last test so nobody reads more into this: when the
sender gives no password, the gateway makes one and mails it to the sender in the
delivery report, which is hosted mail, encrypted to the sender's key. Whoever
holds database and master key reads hosted mail (DESIGN, "Trust model"), so they
read that password too. Senders who need the strict guarantee choose their own
(the webmail's dialog, or `X-Sealgate-Password`).
"""

from __future__ import annotations

import email.policy
import re
import shutil
import sqlite3
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway import db
from gateway.models import MailboxMessage
from gateway.pipeline import pgpmime
from gateway.runtime import Runtime
from gateway.securepage import crypto, links, sent_copy
from gateway.smtp_server import SubmissionServer
from keystore import pgp, untrusted, wrap
from keystore.masterkey import MasterKeyRing
from keystore.models import StoredKey
from keystore.store import unlock_row
from tests.gateway.test_secure_page import (
    ALICE,
    CAROL,
    MARKER,
    PASSWORD,
    decrypt_as,
    message_with_attachment,
    open_with,
    queued,
    send,
    token_of,
)
from tests.openpgp import decrypt
from webportal import create_app, grants, session_key

ATTACHMENT_PIECE = bytes(range(256))


@dataclass
class SealedRow:
    """The secure_messages row, as read from the stolen copy."""

    public_id: str
    generation: int
    params: crypto.KdfParams
    wrapped: bytes
    ciphertext: bytes


@dataclass
class Stolen:
    """What the attacker took."""

    everything: bytes  # every byte of the database and the data dir's files
    ring: MasterKeyRing
    session_root: bytes
    row: SealedRow
    link_digests: list[str]


def steal(runtime: Runtime, loot: Path) -> Stolen:
    data_dir = runtime.settings.data_dir
    loot.mkdir()
    for path in data_dir.rglob("*"):
        if path.is_file():
            shutil.copy2(path, loot / path.name)
    files = b"".join(p.read_bytes() for p in sorted(loot.iterdir()))
    columns = (
        "public_id, generation, kdf_salt, kdf_time_cost, kdf_memory_cost,"
        " kdf_parallelism, wrapped_key, ciphertext"
    )
    query = f"SELECT {columns} FROM secure_messages"  # noqa: S608
    if runtime.engine.dialect.name == "sqlite":
        conn = sqlite3.connect(loot / "sealgate.db")  # the copy (its -wal came along)
        try:
            values = conn.execute(query).fetchone()
            digests = [r[0] for r in conn.execute("SELECT token_digest FROM secure_links")]
        finally:
            conn.close()
        dump = b""
    else:
        chunks: list[bytes] = []
        with runtime.engine.connect() as pg:
            for table in sa.inspect(pg).get_table_names():
                for record in pg.execute(sa.text(f'SELECT * FROM "{table}"')):  # noqa: S608
                    chunks.extend(
                        bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                        for v in record
                    )
            values = tuple(pg.execute(sa.text(query)).one())
            digests = list(pg.execute(sa.text("SELECT token_digest FROM secure_links")).scalars())
        dump = b"\n".join(chunks)
    public_id, generation, salt, t, m, p, wrapped, ciphertext = values
    return Stolen(
        everything=files + dump,
        ring=MasterKeyRing.from_json((loot / "master.keys").read_text()),
        session_root=(loot / "session.key").read_bytes(),
        row=SealedRow(
            public_id=str(public_id),
            generation=int(generation),
            params=crypto.KdfParams(int(t), int(m), int(p), bytes(salt)),
            wrapped=bytes(wrapped),
            ciphertext=bytes(ciphertext),
        ),
        link_digests=[str(d) for d in digests],
    )


def hkdf(key: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(key)


def attacker_keys(stolen: Stolen) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    labels = [
        wrap.WRAP_LABEL,
        crypto.KDF_LABEL,
        crypto.WRAP_LABEL,
        crypto.BODY_LABEL,
        crypto.SENT_WRAP_LABEL,
        crypto.SENT_BODY_LABEL,
        b"",
    ]
    for version, master in stolen.ring.keys.items():
        keys[f"master v{version}"] = master
        for label in labels:
            keys[f"HKDF(master v{version}, {label!r})"] = hkdf(master, label)
    keys["session root"] = stolen.session_root
    for purpose in ("session-cookie", "csrf"):
        derived = session_key.derive(stolen.session_root, purpose)
        keys[f"session {purpose}"] = derived
        keys[f"grant key from {purpose}"] = hkdf(derived, grants.LABEL)
    return keys


def blob_opens(key: bytes, blob: bytes, ad: bytes) -> bool:
    """Whether `key` opens the AES-GCM blob; the attacker knows the format (`ad`) from the code."""
    try:
        AESGCM(key).decrypt(blob[1:13], blob[13:], ad)
    except InvalidTag:
        return False
    return True


@pytest.fixture
def sent(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> str:
    create_app(runtime)  # the portal has run: its session key is in the data dir too
    raw = message_with_attachment().as_bytes(policy=email.policy.SMTP)
    send(submission_server, client_ssl_context, mail_users[ALICE], raw, [CAROL])
    return token_of(queued(runtime)[0].raw)


def test_database_and_master_key_do_not_open_the_secure_page(
    sent: str, runtime: Runtime, tmp_path: Path
) -> None:
    stolen = steal(runtime, tmp_path / "loot")
    row = stolen.row
    params, wrapped, ciphertext = row.params, row.wrapped, row.ciphertext
    public_id, generation = row.public_id, row.generation

    # The control: the password opens it (this is how the test knows the message key).
    message_key = crypto.unwrap_key(
        PASSWORD, params, wrapped, public_id=public_id, generation=generation, max_concurrent=1
    )
    opened = crypto.open_body(message_key, ciphertext, public_id=public_id, generation=generation)
    assert MARKER.encode() in opened and ATTACHMENT_PIECE not in ciphertext

    for needle, what in (
        (MARKER.encode(), "body"),
        (ATTACHMENT_PIECE, "attachment"),
        (PASSWORD.encode(), "password"),
        (message_key.material, "message key"),
        (sent.encode(), "link token"),
    ):
        assert needle not in stolen.everything, what
    # The link table holds the token's digest only; the notification that carries
    # the token waits in the outbound queue sealed under the master key (the
    # master key opens it, and the link alone opens nothing without the password).
    assert stolen.link_digests == [links.digest(sent)]

    keys = attacker_keys(stolen)
    with db.read_only(runtime.sessions) as session:
        secret_keys = [unlock_row(stolen.ring, r) for r in session.scalars(sa.select(StoredKey))]
    assert len(keys) >= 10 and len(secret_keys) >= 1
    wrap_ad = crypto._wrap_ad(public_id, generation, params)
    body_ad = crypto._body_ad(public_id, generation)
    assert blob_opens(message_key.material, ciphertext, body_ad)  # the check itself works
    for name, key in keys.items():
        assert not blob_opens(key, wrapped, wrap_ad), name
        assert not blob_opens(key, ciphertext, body_ad), name
    for secret in secret_keys:  # the blobs are no OpenPGP messages any hosted key could open
        for blob in (wrapped, ciphertext):
            with pytest.raises((pgp.PgpError, untrusted.UntrustedDataError)):
                decrypt(blob, [secret])
    for guess in ("", "password", sent, ALICE, CAROL, public_id):
        with pytest.raises(crypto.SealError):
            crypto.unwrap_key(
                guess,
                params,
                wrapped,
                public_id=public_id,
                generation=generation,
                max_concurrent=1,
            )


def stored_mail(runtime: Runtime) -> list[MailboxMessage]:
    with db.read_only(runtime.sessions) as session:
        return list(session.scalars(sa.select(MailboxMessage).order_by(MailboxMessage.id)))


def test_database_and_master_key_do_not_open_the_senders_sent_copy(
    sent: str, runtime: Runtime, tmp_path: Path
) -> None:
    stolen = steal(runtime, tmp_path / "loot")
    with db.read_only(runtime.sessions) as session:
        secret_keys = [unlock_row(stolen.ring, r) for r in session.scalars(sa.select(StoredKey))]
    mail = stored_mail(runtime)
    (copy,) = [m for m in mail if m.folder == "Sent"]
    assert mail == [copy]  # one recipient kind, a password given: no delivery report

    # Every hosted secret key against every OpenPGP message stored: none is there.
    for row in mail:
        assert MARKER.encode() not in row.raw
        payload = pgpmime.encrypted_payload(row.raw)
        for secret in secret_keys:
            if payload is not None:
                with pytest.raises((pgp.PgpError, untrusted.UntrustedDataError)):
                    decrypt(payload, [secret])

    # The Sent copy is sealed under the password; no key the attacker derives opens it.
    blob = sent_copy.blob_of(copy.raw)
    assert blob is not None
    binding = sent_copy.binding(copy.queue_id, ALICE)
    params = crypto.copy_params(blob)
    _params, wrapped, body = crypto._split_copy(blob)
    wrap_ad = crypto._copy_ad(crypto.SENT_WRAP_LABEL, binding, params)
    body_ad = crypto._copy_ad(crypto.SENT_BODY_LABEL, binding)
    copy_key = crypto.unwrap_copy(
        crypto.password_key(PASSWORD, runtime.settings.securepage, params), blob, binding=binding
    )
    assert blob_opens(copy_key.material, body, body_ad)  # the control: the password opens it
    assert MARKER.encode() in crypto.open_copy(copy_key, blob, binding=binding)
    assert copy_key.material not in stolen.everything
    for name, key in attacker_keys(stolen).items():
        assert not blob_opens(key, wrapped, wrap_ad), name
        assert not blob_opens(key, body, body_ad), name


def test_the_boundary_a_generated_password_is_in_the_senders_report(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    """Stated, not hidden: a password the gateway made is mailed to the sender, as hosted mail."""
    raw = message_with_attachment(password=None).as_bytes(policy=email.policy.SMTP)
    send(submission_server, client_ssl_context, mail_users[ALICE], raw, [CAROL])
    (report,) = [m for m in stored_mail(runtime) if m.folder == "INBOX"]
    text = decrypt_as(runtime, ALICE, report.raw).decode()  # what the master key allows
    match = re.search(r"^    ([A-Za-z0-9]{16})\r?$", text, re.MULTILINE)
    assert match, text
    token = token_of(queued(runtime)[0].raw)
    content = open_with(runtime, token, match.group(1))
    assert content is not None and MARKER.encode() in content
