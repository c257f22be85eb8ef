"""administration: disabled domains and accounts, aliases, policy, mail log, master-key jobs

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.timeutil

UTCDateTime = gateway.timeutil.UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_at", UTCDateTime(), nullable=True))
    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(length=320), nullable=False),
        sa.Column("address_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["address_id"],
            ["addresses.id"],
            name=op.f("fk_aliases_address_id_addresses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aliases")),
        sa.UniqueConstraint("alias", name=op.f("uq_aliases_alias")),
    )
    op.create_index(op.f("ix_aliases_address_id"), "aliases", ["address_id"])
    op.create_table(
        "policy_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=320), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_policy_settings")),
    )
    op.create_table(
        "mail_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("queue_id", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("handling", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_reply", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_log")),
    )
    op.create_index(op.f("ix_mail_log_sender"), "mail_log", ["sender"])
    op.create_index(op.f("ix_mail_log_recipient"), "mail_log", ["recipient"])
    op.create_index(op.f("ix_mail_log_created_at"), "mail_log", ["created_at"])
    op.create_index("ix_mail_log_queue_rcpt", "mail_log", ["queue_id", "recipient"])
    op.create_table(
        "master_rotation_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=320), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
        sa.Column("primary_version", sa.Integer(), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_master_rotation_jobs")),
    )


def downgrade() -> None:
    op.drop_table("master_rotation_jobs")
    op.drop_index("ix_mail_log_queue_rcpt", table_name="mail_log")
    op.drop_index(op.f("ix_mail_log_created_at"), table_name="mail_log")
    op.drop_index(op.f("ix_mail_log_recipient"), table_name="mail_log")
    op.drop_index(op.f("ix_mail_log_sender"), table_name="mail_log")
    op.drop_table("mail_log")
    op.drop_table("policy_settings")
    op.drop_index(op.f("ix_aliases_address_id"), table_name="aliases")
    op.drop_table("aliases")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("disabled_at")
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.drop_column("disabled_at")
