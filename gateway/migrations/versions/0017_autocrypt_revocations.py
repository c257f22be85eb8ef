"""autocrypt revocations: an external-key tombstone may come from an Autocrypt header

A key first seen revoked gets a revoked row without key material, so that an older
copy without the revocation is refused later (keystore.directory.mark_revoked). The
WKD and import paths could leave one; the Autocrypt path could not, because the
source column allowed only 'import' and 'wkd', and the peer table holds one row per
address (the key in use, not past revocations). The constraint now allows the
source 'autocrypt' for revoked rows only: keys in use from Autocrypt stay in
keystore_autocrypt_peers. No row changes.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

TABLE = "keystore_external_keys"
CONSTRAINT = "ck_keystore_external_keys_source_known"  # the models' naming convention
BEFORE = "source IN ('import', 'wkd')"
AFTER = "source IN ('import', 'wkd') OR (source = 'autocrypt' AND revoked_at IS NOT NULL)"


def upgrade() -> None:
    _replace(AFTER)


def downgrade() -> None:
    # The tombstones the old constraint refuses go: the key is then refused again only
    # while another row remembers its revocation.
    op.execute("DELETE FROM keystore_external_keys WHERE source = 'autocrypt'")
    _replace(BEFORE)


def _replace(condition: str) -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_constraint(op.f(CONSTRAINT), type_="check")
        batch_op.create_check_constraint(op.f(CONSTRAINT), condition)
