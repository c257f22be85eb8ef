"""account security: second factor, recovery codes, app passwords, portal sessions,
known devices, alert rate limits and login lockouts

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.timeutil

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _account_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["account_id"],
        ["accounts.id"],
        name=op.f(f"fk_{table}_account_id_accounts"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "account_security",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("totp_secret", sa.LargeBinary(), nullable=True),
        sa.Column("totp_enabled_at", gateway.timeutil.UTCDateTime(), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("totp_pending", sa.LargeBinary(), nullable=True),
        sa.Column("totp_pending_at", gateway.timeutil.UTCDateTime(), nullable=True),
        sa.Column("alert_new_device", sa.Boolean(), nullable=False),
        sa.Column("alert_failed_login", sa.Boolean(), nullable=False),
        _account_fk("account_security"),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_security")),
    )
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", gateway.timeutil.UTCDateTime(), nullable=False),
        sa.Column("used_at", gateway.timeutil.UTCDateTime(), nullable=True),
        _account_fk("recovery_codes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_codes")),
    )
    op.create_index(op.f("ix_recovery_codes_account_id"), "recovery_codes", ["account_id"])
    op.create_table(
        "app_passwords",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", gateway.timeutil.UTCDateTime(), nullable=False),
        sa.Column("last_used_at", gateway.timeutil.UTCDateTime(), nullable=True),
        sa.Column("last_used_ip", sa.String(length=64), nullable=False),
        _account_fk("app_passwords"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_passwords")),
    )
    op.create_index(op.f("ix_app_passwords_account_id"), "app_passwords", ["account_id"])
    op.create_table(
        "portal_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", gateway.timeutil.UTCDateTime(), nullable=False),
        sa.Column("authenticated_at", gateway.timeutil.UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", gateway.timeutil.UTCDateTime(), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=300), nullable=False),
        sa.Column("ended_at", gateway.timeutil.UTCDateTime(), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=False),
        _account_fk("portal_sessions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_sessions")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_portal_sessions_token_digest")),
    )
    op.create_index(op.f("ix_portal_sessions_account_id"), "portal_sessions", ["account_id"])
    op.create_table(
        "known_devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.Column("browser", sa.String(length=32), nullable=False),
        sa.Column("first_seen_at", gateway.timeutil.UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", gateway.timeutil.UTCDateTime(), nullable=False),
        _account_fk("known_devices"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_known_devices")),
        sa.UniqueConstraint(
            "account_id", "network", "browser", name=op.f("uq_known_devices_account_id")
        ),
    )
    op.create_table(
        "alerts_sent",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("last_sent_at", gateway.timeutil.UTCDateTime(), nullable=False),
        _account_fk("alerts_sent"),
        sa.PrimaryKeyConstraint("account_id", "kind", name=op.f("pk_alerts_sent")),
    )
    op.create_table(
        "login_lockouts",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", gateway.timeutil.UTCDateTime(), nullable=False),
        sa.Column("locked_until", gateway.timeutil.UTCDateTime(), nullable=True),
        sa.Column("lock_count", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", gateway.timeutil.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_lockouts")),
    )


def downgrade() -> None:
    op.drop_table("login_lockouts")
    op.drop_table("alerts_sent")
    op.drop_table("known_devices")
    op.drop_index(op.f("ix_portal_sessions_account_id"), table_name="portal_sessions")
    op.drop_table("portal_sessions")
    op.drop_index(op.f("ix_app_passwords_account_id"), table_name="app_passwords")
    op.drop_table("app_passwords")
    op.drop_index(op.f("ix_recovery_codes_account_id"), table_name="recovery_codes")
    op.drop_table("recovery_codes")
    op.drop_table("account_security")
