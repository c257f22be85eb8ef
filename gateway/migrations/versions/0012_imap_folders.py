"""imap: folders per account with UIDs allocated in the database, flags and Message-ID per message

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

import gateway.timeutil

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SPECIAL = (("INBOX", ""), ("Sent", "Sent"), ("Drafts", "Drafts"), ("Trash", "Trash"))


def upgrade() -> None:
    op.create_table(
        "mail_folders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("special_use", sa.String(length=16), nullable=False),
        sa.Column("uid_validity", sa.BigInteger(), nullable=False),
        sa.Column("uid_next", sa.Integer(), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.Column("created_at", gateway.timeutil.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"],
            name=op.f("fk_mail_folders_account_id_accounts"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_folders")),
        sa.UniqueConstraint("account_id", "name", name=op.f("uq_mail_folders_account_id")),
    )
    with op.batch_alter_table("mail_folders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mail_folders_account_id"), ["account_id"], unique=False)
    with op.batch_alter_table("mailbox_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("folder_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("uid", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("message_id", sa.String(length=250), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("envelope", sa.LargeBinary(), nullable=True))
        batch_op.alter_column(
            "folder", existing_type=sa.String(length=32), type_=sa.String(length=200),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "flags", existing_type=sa.String(length=200), type_=sa.Text(), existing_nullable=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_mailbox_messages_folder_id_mail_folders"),
            "mail_folders", ["folder_id"], ["id"], ondelete="CASCADE",
        )
        batch_op.create_index("ix_mailbox_folder_uid", ["folder_id", "uid"], unique=True)
        batch_op.create_index("ix_mailbox_message_id", ["message_id"], unique=False)
    _backfill()


def _backfill() -> None:
    """Every account gets the four special folders plus the folders its mail is in; every
    stored message a UID in arrival order (its Message-ID is filled on the next IMAP look)."""
    conn = op.get_bind()
    now = gateway.timeutil.utcnow()
    folders = sa.table(
        "mail_folders",
        sa.column("id", sa.Integer), sa.column("account_id", sa.Integer),
        sa.column("name", sa.String), sa.column("special_use", sa.String),
        sa.column("uid_validity", sa.BigInteger), sa.column("uid_next", sa.Integer),
        sa.column("modseq", sa.BigInteger), sa.column("subscribed", sa.Boolean),
        sa.column("created_at", gateway.timeutil.UTCDateTime()),
    )
    messages = sa.table(
        "mailbox_messages",
        sa.column("id", sa.Integer), sa.column("address_id", sa.Integer),
        sa.column("folder", sa.String), sa.column("folder_id", sa.Integer),
        sa.column("uid", sa.Integer), sa.column("received_at", sa.DateTime),
    )
    addresses = sa.table("addresses", sa.column("id", sa.Integer), sa.column("account_id", sa.Integer))
    accounts = sa.table("accounts", sa.column("id", sa.Integer))
    for (account_id,) in conn.execute(sa.select(accounts.c.id)).all():
        names = dict(SPECIAL)
        for (name,) in conn.execute(
            sa.select(messages.c.folder).distinct()
            .join(addresses, addresses.c.id == messages.c.address_id)
            .where(addresses.c.account_id == account_id)
        ).all():
            names.setdefault(name, "")
        for name, special in names.items():
            rows = conn.execute(
                sa.select(messages.c.id)
                .join(addresses, addresses.c.id == messages.c.address_id)
                .where(addresses.c.account_id == account_id, messages.c.folder == name)
                .order_by(messages.c.received_at, messages.c.id)
            ).scalars().all()
            folder_id = conn.execute(
                sa.insert(folders).values(
                    account_id=account_id, name=name, special_use=special,
                    uid_validity=secrets.randbelow(2**31 - 2) + 1, uid_next=len(rows) + 1,
                    modseq=1, subscribed=True, created_at=now,
                ).returning(folders.c.id)
            ).scalar_one()
            for uid, message_id in enumerate(rows, start=1):
                conn.execute(
                    sa.update(messages).where(messages.c.id == message_id)
                    .values(folder_id=folder_id, uid=uid)
                )


def downgrade() -> None:
    with op.batch_alter_table("mailbox_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_mailbox_message_id")
        batch_op.drop_index("ix_mailbox_folder_uid")
        batch_op.drop_constraint(
            batch_op.f("fk_mailbox_messages_folder_id_mail_folders"), type_="foreignkey"
        )
        batch_op.alter_column(
            "flags", existing_type=sa.Text(), type_=sa.String(length=200), existing_nullable=False
        )
        batch_op.alter_column(
            "folder", existing_type=sa.String(length=200), type_=sa.String(length=32),
            existing_nullable=False,
        )
        batch_op.drop_column("envelope")
        batch_op.drop_column("message_id")
        batch_op.drop_column("uid")
        batch_op.drop_column("folder_id")
    with op.batch_alter_table("mail_folders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mail_folders_account_id"))
    op.drop_table("mail_folders")
