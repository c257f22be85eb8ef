"""`sealgate keys destroy-master` refuses a version records still use, naming them.

Threat: a new admin destroys a retired master-key version while records in the
database are still sealed under it (written by a process that had not yet read the
new ring, or put back from a backup), and with `--yes` nothing stood in the way:
the listing of what dies was printed, zeros and all, and the version was gone. Those
TOTP secrets, DKIM keys, address keys and queued notifications were lost for good,
although a `sealgate keys rotate-master` would have moved them. Now the command
names whose records they are and refuses unless `--force`; after a rotation it
destroys the version with nothing lost.
"""

from __future__ import annotations

import sqlalchemy as sa

from gateway import accounts, db, master_records, queue, totp
from gateway.models import AccountSecurity, DkimKey
from gateway.runtime import Runtime
from keystore import rotation, store
from keystore.masterkey import load_ring
from tests.keystore.conftest import audit_sink, run_sealgate
from tests.sealgate.test_rotate_master_lost_records import ALICE, NOW

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
CAROL = "carol@elsewhere.example"
NOTIFICATION = b"Subject: a link\r\n\r\nhttps://portal.example/s/secret-token\r\n"


def records_under_version_1(runtime: Runtime) -> None:
    """A rotation (version 2 primary, 1 retired), then records under version 1 all the
    same: Alice's address key and the RSA DKIM key put back from before it (a backup),
    a TOTP secret and a queued notification sealed by a process with the old ring."""
    data_dir = runtime.settings.data_dir
    old = load_ring(data_dir, env={})
    with db.read_only(runtime.sessions) as session:
        key = store.current_key(session, ALICE)
        dkim = session.scalar(sa.select(DkimKey).where(DkimKey.algorithm == "rsa"))
        assert key is not None and dkim is not None
        key_blob, dkim_blob = key.wrapped_secret, dkim.sealed_private_key
    rotation.rotate_master(
        data_dir, runtime.sessions, NOW, events=audit_sink, other_blobs=master_records.rewrap
    )
    with db.transaction(runtime.sessions) as session:
        key = store.current_key(session, ALICE)
        dkim = session.scalar(sa.select(DkimKey).where(DkimKey.algorithm == "rsa"))
        assert key is not None and dkim is not None
        key.wrapped_secret, key.master_version = key_blob, 1
        dkim.sealed_private_key, dkim.master_version = dkim_blob, 1
        account = accounts.find_account(session, ALICE)
        assert account is not None
        session.add(
            AccountSecurity(
                account_id=account.id, totp_secret=totp.seal_secret(old, SECRET, account.id)
            )
        )
        queue.enqueue(
            session,
            queue_id="QOLD",
            mail_from=ALICE,
            rcpt_to=CAROL,
            raw=queue.seal_raw(old, NOTIFICATION, queue_id="QOLD", rcpt_to=CAROL),
            now=NOW,
            sealed=True,
        )


def test_it_names_them_and_refuses_without_force(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    records_under_version_1(runtime)
    with db.read_only(runtime.sessions) as session:
        selector = session.scalar(sa.select(DkimKey.selector).where(DkimKey.algorithm == "rsa"))

    refused = run_sealgate(test_env, "keys", "destroy-master", "1", "--yes")
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert refused.stdout.splitlines()[:5] == [
        "Destroying master-key version 1 makes these unreadable for good:",
        f"  1 secret keys of hosted addresses in the database ({ALICE})",
        f"  1 TOTP secrets in the database ({ALICE})",
        f"  1 queued secure-page notifications in the database (QOLD to {CAROL})",
        f"  1 DKIM private keys in the database ({selector} of example.test)",
    ]
    assert refused.stderr.strip() == (
        "Error: master-key version 1 still wraps 1 secret keys of hosted addresses, 1 TOTP"
        " secrets, 1 queued secure-page notifications, 1 DKIM private keys in the database"
        " (listed above): run `sealgate keys rotate-master` to move them under the primary"
        " version first, or pass --force to destroy them with it"
    )
    for secret in (SECRET, "secret-token"):
        assert secret not in refused.stdout + refused.stderr
    assert load_ring(runtime.settings.data_dir, env={}).decrypt_only_versions == [1]

    # The way it names: a rotation moves every one of them, and then nothing is lost.
    assert run_sealgate(test_env, "keys", "rotate-master").returncode == 0
    destroyed = run_sealgate(test_env, "keys", "destroy-master", "1", "--yes")
    assert destroyed.returncode == 0, destroyed.stderr
    assert "master-key version 1 destroyed" in destroyed.stdout
    ring = load_ring(runtime.settings.data_dir, env={})
    assert ring.destroyed_versions == [1]
    with db.read_only(runtime.sessions) as session:
        account = accounts.find_account(session, ALICE)
        assert account is not None
        blob = session.scalar(
            sa.select(AccountSecurity.totp_secret).where(AccountSecurity.account_id == account.id)
        )
        assert blob is not None and totp.open_secret(ring, blob, account.id) == SECRET
        key = store.current_key(session, ALICE)
        assert key is not None
        assert store.unlock_row(ring, key).fingerprint == key.fingerprint


def test_force_destroys_them_after_asking(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    records_under_version_1(runtime)
    declined = run_sealgate(test_env, "keys", "destroy-master", "1", "--force", input="n\n")
    assert declined.returncode == 1
    assert "Destroy master-key version 1? [y/N]" in declined.stdout
    assert load_ring(runtime.settings.data_dir, env={}).decrypt_only_versions == [1]
    forced = run_sealgate(test_env, "keys", "destroy-master", "1", "--force", input="y\n")
    assert forced.returncode == 0, forced.stderr
    assert load_ring(runtime.settings.data_dir, env={}).destroyed_versions == [1]
