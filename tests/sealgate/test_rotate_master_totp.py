"""`sealgate keys rotate-master` also moves TOTP secrets, so no second factor is stranded."""

from __future__ import annotations

import sqlalchemy as sa

from gateway import accounts, db, totp
from gateway.models import AccountSecurity
from gateway.runtime import Runtime
from keystore.masterkey import load_ring
from tests.keystore.conftest import run_sealgate

ALICE = "alice@example.test"


def test_rotate_master_rewraps_totp_secrets_before_retiring(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    old_ring = load_ring(runtime.settings.data_dir)
    with db.transaction(runtime.sessions) as session:
        account = accounts.find_account(session, ALICE)
        assert account is not None
        account_id = account.id
        session.add(
            AccountSecurity(
                account_id=account_id,
                totp_secret=totp.seal_secret(old_ring, "JBSWY3DPEHPK3PXP", account_id),
            )
        )

    result = run_sealgate(test_env, "keys", "rotate-master")
    assert result.returncode == 0, result.stderr

    new_ring = load_ring(runtime.settings.data_dir)
    assert old_ring.primary in new_ring.retired
    with db.transaction(runtime.sessions) as session:
        blob = session.scalar(
            sa.select(AccountSecurity.totp_secret).where(AccountSecurity.account_id == account_id)
        )
    assert blob is not None and totp.blob_version(blob) == new_ring.primary
    assert totp.open_secret(new_ring, blob, account_id) == "JBSWY3DPEHPK3PXP"
