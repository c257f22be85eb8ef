"""known mail clients: the networks an account's mail programs logged in from

The per-account lockout counted wrong passwords from anyone, so a few per lock
period kept the owner's own mail programs out for ever. A network (an IPv4 address,
an IPv6 /64) from which the account logged in over SMTP or IMAP within
`[security] known_client_days` is now a known client whose failures count, and lock,
on their own (gateway.known_clients). One row per account and network; the audit
log also holds these addresses, but finding one there meant scanning an account's
whole month of events (attackers' failures included) on every attempt against a
locked account.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.timeutil

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "known_mail_clients",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.Column("last_seen_at", gateway.timeutil.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_known_mail_clients_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "network", name=op.f("pk_known_mail_clients")),
    )


def downgrade() -> None:
    op.drop_table("known_mail_clients")
