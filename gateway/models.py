"""The gateway's tables: domains, accounts and addresses, mailboxes, the outbound queue, audit.

Every schema change goes through an Alembic migration in `gateway/migrations`;
the naming convention keeps constraint names the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway.timeutil import UTCDateTime, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(so.DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UTCDateTime()}


class Domain(Base):
    """A mail domain this gateway hosts; its addresses get mailboxes and keys."""

    __tablename__ = "domains"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(253), unique=True)
    created_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)
    # Set by an admin: the domain accepts no new mail (SMTP refuses it) until enabled again.
    disabled_at: so.Mapped[dt.datetime | None]


class Account(Base):
    """A person's portal login; it owns one or more hosted addresses."""

    __tablename__ = "accounts"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    email: so.Mapped[str] = so.mapped_column(sa.String(320), unique=True)
    password_hash: so.Mapped[str] = so.mapped_column(sa.String(200))
    is_admin: so.Mapped[bool] = so.mapped_column(default=False)
    language: so.Mapped[str] = so.mapped_column(sa.String(5), default="en")
    always_encrypt: so.Mapped[bool] = so.mapped_column(default=False, server_default=sa.false())
    created_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)
    # Set by an admin: no portal login, no SMTP AUTH, until enabled again.
    disabled_at: so.Mapped[dt.datetime | None]

    addresses: so.Mapped[list[Address]] = so.relationship(
        back_populates="account", order_by="Address.address"
    )


class Address(Base):
    """A hosted address with its own password, used for SMTP submission."""

    __tablename__ = "addresses"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    address: so.Mapped[str] = so.mapped_column(sa.String(320), unique=True)
    account_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("accounts.id"), index=True)
    domain_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("domains.id"), index=True)
    password_hash: so.Mapped[str] = so.mapped_column(sa.String(200))
    created_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)

    account: so.Mapped[Account] = so.relationship(back_populates="addresses")
    domain: so.Mapped[Domain] = so.relationship()


class EncryptionRule(Base):
    """An admin rule: mail to this recipient domain is always encrypted."""

    __tablename__ = "encryption_rules"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    domain: so.Mapped[str] = so.mapped_column(sa.String(253), unique=True)
    created_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)


class Alias(Base):
    """Another hosted address whose mail goes to an existing address's mailbox."""

    __tablename__ = "aliases"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    alias: so.Mapped[str] = so.mapped_column(sa.String(320), unique=True)
    address_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("addresses.id", ondelete="CASCADE"), index=True
    )
    created_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)

    address: so.Mapped[Address] = so.relationship()


class PolicySetting(Base):
    """One admin-set encryption policy value; a missing row means the settings file's default.

    `value` is JSON, checked against its bounds by gateway.admin.policy on write and read.
    """

    __tablename__ = "policy_settings"

    key: so.Mapped[str] = so.mapped_column(sa.String(64), primary_key=True)
    value: so.Mapped[str] = so.mapped_column(sa.Text)
    updated_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)
    updated_by: so.Mapped[str] = so.mapped_column(sa.String(320), default="")


class MailLogEntry(Base):
    """How one recipient of one message was handled and where its delivery stands.

    Written by the pipeline's store step and by the relay; no body, no secret,
    only addresses, the handling and the smarthost's last answer. Purged after
    `[admin] mail_log_days`.
    """

    __tablename__ = "mail_log"
    __table_args__ = (sa.Index("ix_mail_log_queue_rcpt", "queue_id", "recipient"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    queue_id: so.Mapped[str] = so.mapped_column(sa.String(32))
    message_id: so.Mapped[str] = so.mapped_column(sa.String(998), default="")
    sender: so.Mapped[str] = so.mapped_column(sa.String(320), index=True)
    recipient: so.Mapped[str] = so.mapped_column(sa.String(320), index=True)
    handling: so.Mapped[str] = so.mapped_column(sa.String(16))
    status: so.Mapped[str] = so.mapped_column(sa.String(16))
    last_reply: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    created_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow, index=True)
    updated_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)


class MasterRotationJob(Base):
    """A master-key rotation an admin asked for, run in the background by `sealgate serve`.

    `heartbeat_at` tells a second process that the job is being worked on; a job
    whose heartbeat went stale (its process died) is picked up again and resumes.
    """

    __tablename__ = "master_rotation_jobs"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    state: so.Mapped[str] = so.mapped_column(sa.String(16), default="requested")
    requested_by: so.Mapped[str] = so.mapped_column(sa.String(320))
    requested_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)
    started_at: so.Mapped[dt.datetime | None]
    finished_at: so.Mapped[dt.datetime | None]
    heartbeat_at: so.Mapped[dt.datetime | None]
    primary_version: so.Mapped[int | None]
    total: so.Mapped[int] = so.mapped_column(default=0)
    done: so.Mapped[int] = so.mapped_column(default=0)
    error: so.Mapped[str] = so.mapped_column(sa.Text, default="")


class MailFolder(Base):
    """One folder of an account's mailbox, as IMAP sees it: its UIDs are allocated here.

    `uid_next` and `modseq` are only ever raised by an UPDATE in the writer's
    transaction (gateway.imap.folders), so several processes on one PostgreSQL
    hand out distinct, increasing UIDs. `modseq` rises with every change to the
    folder's messages: an IMAP session compares it to see whether to look again.
    """

    __tablename__ = "mail_folders"
    __table_args__ = (sa.UniqueConstraint("account_id", "name"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    account_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: so.Mapped[str] = so.mapped_column(sa.String(200))
    # RFC 6154 attribute without the backslash ("Sent", "Drafts", "Trash"); "" for none.
    special_use: so.Mapped[str] = so.mapped_column(sa.String(16), default="")
    uid_validity: so.Mapped[int] = so.mapped_column(sa.BigInteger)
    uid_next: so.Mapped[int] = so.mapped_column(default=1)
    modseq: so.Mapped[int] = so.mapped_column(sa.BigInteger, default=1)
    subscribed: so.Mapped[bool] = so.mapped_column(default=True)
    created_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)


class MailboxMessage(Base):
    """One message in one hosted address's folder, raw bytes included.

    Writers set `folder` (the name); `folder_id` and `uid` follow from it at
    flush time (gateway.imap.folders), a new UID whenever the message enters a
    folder. `flags` holds the IMAP system flags and keywords, space-separated.
    """

    __tablename__ = "mailbox_messages"
    __table_args__ = (
        sa.Index("ix_mailbox_folder_date", "address_id", "folder", "received_at"),
        sa.Index("ix_mailbox_folder_uid", "folder_id", "uid", unique=True),
        sa.Index("ix_mailbox_message_id", "message_id"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    address_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("addresses.id"))
    folder: so.Mapped[str] = so.mapped_column(sa.String(200), default="INBOX")
    folder_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("mail_folders.id", ondelete="CASCADE")
    )
    uid: so.Mapped[int | None]
    flags: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    message_id: so.Mapped[str] = so.mapped_column(sa.String(250), default="", server_default="")
    # The IMAP ENVELOPE of `raw`, kept once computed (as Dovecot's index cache keeps it):
    # a mail program's folder listing then reads no message bodies.
    envelope: so.Mapped[bytes | None] = so.mapped_column(sa.LargeBinary, deferred=True)
    queue_id: so.Mapped[str] = so.mapped_column(sa.String(32), index=True)
    subject: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    from_addr: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    to_addr: so.Mapped[str] = so.mapped_column(sa.Text, default="", server_default="")
    # The text of a plain message, for search; NULL for encrypted mail (subject only).
    search_text: so.Mapped[str | None] = so.mapped_column(sa.Text)
    envelope_from: so.Mapped[str] = so.mapped_column(sa.String(320), default="")
    date: so.Mapped[dt.datetime | None]
    received_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)
    size: so.Mapped[int]
    encrypted: so.Mapped[bool] = so.mapped_column(default=False)
    # Whether subject, from_addr, to_addr and date are the fields the message's signature
    # covers (RFC 9788), as its owner's reading last verified them (gateway.reading):
    # "" not verified (or nothing signed: the outer fields), "signed" as they arrived,
    # "differ" arrived under other outer fields. Only a reader decrypts, so the list
    # learns it when the message is first opened, never at delivery.
    signed_fields: so.Mapped[str] = so.mapped_column(sa.String(16), default="", server_default="")
    raw: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)

    address: so.Mapped[Address] = so.relationship()


class QueueItem(Base):
    """One message for one external recipient, waiting for the outbound relay.

    A row is handed to one worker at a time through `leased_until`; a worker that
    dies leaves a lease that simply runs out, and the row is tried again.
    """

    __tablename__ = "outbound_queue"
    __table_args__ = (sa.Index("ix_queue_due", "status", "next_attempt_at"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    queue_id: so.Mapped[str] = so.mapped_column(sa.String(32), index=True)
    mail_from: so.Mapped[str] = so.mapped_column(sa.String(320))
    rcpt_to: so.Mapped[str] = so.mapped_column(sa.String(320))
    raw: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
    # True when `raw` is sealed under the master key (gateway.queue.seal_raw): a
    # notification carries a secure-page link, which a stolen database must not show.
    sealed: so.Mapped[bool] = so.mapped_column(default=False, server_default=sa.false())
    status: so.Mapped[str] = so.mapped_column(sa.String(16), default="queued")
    attempts: so.Mapped[int] = so.mapped_column(default=0)
    created_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)
    next_attempt_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)
    leased_until: so.Mapped[dt.datetime | None]
    last_error: so.Mapped[str] = so.mapped_column(sa.Text, default="")


class AuditEvent(Base):
    """Who did what, when, from where: admin actions, key events, logins, SMTP AUTH.

    The per-account rows are what the user's "recent activity" page lists.
    Never store a secret in `detail`.
    """

    __tablename__ = "audit_events"
    __table_args__ = (sa.Index("ix_audit_account_at", "account_id", "at"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow, index=True)
    actor: so.Mapped[str] = so.mapped_column(sa.String(320))
    account_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("accounts.id", ondelete="SET NULL")
    )
    action: so.Mapped[str] = so.mapped_column(sa.String(64))
    target: so.Mapped[str] = so.mapped_column(sa.String(320), default="")
    success: so.Mapped[bool] = so.mapped_column(default=True)
    ip: so.Mapped[str] = so.mapped_column(sa.String(64), default="")
    user_agent: so.Mapped[str] = so.mapped_column(sa.String(300), default="")
    detail: so.Mapped[str] = so.mapped_column(sa.Text, default="")


# -- account security (issue 6) ------------------------------------------------


class AccountSecurity(Base):
    """An account's second factor and alert choices; no row means no 2FA, every alert on.

    The TOTP secret is stored only wrapped under the master-key ring
    (gateway.totp); `totp_last_step` is the replay guard: a code is accepted
    only for a time step after the last one used.
    """

    __tablename__ = "account_security"

    account_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    totp_secret: so.Mapped[bytes | None] = so.mapped_column(sa.LargeBinary)
    totp_enabled_at: so.Mapped[dt.datetime | None]
    totp_last_step: so.Mapped[int | None] = so.mapped_column(sa.BigInteger)
    totp_pending: so.Mapped[bytes | None] = so.mapped_column(sa.LargeBinary)
    totp_pending_at: so.Mapped[dt.datetime | None]
    alert_new_device: so.Mapped[bool] = so.mapped_column(default=True)
    alert_failed_login: so.Mapped[bool] = so.mapped_column(default=True)


class RecoveryCode(Base):
    """One one-time recovery code, as a digest; `used_at` is set when it is spent."""

    __tablename__ = "recovery_codes"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    account_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    digest: so.Mapped[str] = so.mapped_column(sa.String(64))
    created_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)
    used_at: so.Mapped[dt.datetime | None]


class AppPassword(Base):
    """A named password for one mail program, as a digest; SMTP AUTH only."""

    __tablename__ = "app_passwords"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    account_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: so.Mapped[str] = so.mapped_column(sa.String(64))
    digest: so.Mapped[str] = so.mapped_column(sa.String(64))
    created_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)
    last_used_at: so.Mapped[dt.datetime | None]
    last_used_ip: so.Mapped[str] = so.mapped_column(sa.String(64), default="")


class PortalSession(Base):
    """One portal login: the server-side half of the session cookie.

    The cookie holds a random nonce; this row holds its SHA-256, so a session
    ended here is refused on its next request whatever cookie the browser keeps.
    """

    __tablename__ = "portal_sessions"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    account_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    token_digest: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    created_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)
    authenticated_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)
    last_seen_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)
    ip: so.Mapped[str] = so.mapped_column(sa.String(64), default="")
    user_agent: so.Mapped[str] = so.mapped_column(sa.String(300), default="")
    ended_at: so.Mapped[dt.datetime | None]
    end_reason: so.Mapped[str] = so.mapped_column(sa.String(32), default="")


class KnownDevice(Base):
    """A network prefix and browser family an account has logged in from before."""

    __tablename__ = "known_devices"
    __table_args__ = (sa.UniqueConstraint("account_id", "network", "browser"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    account_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"))
    network: so.Mapped[str] = so.mapped_column(sa.String(64))
    browser: so.Mapped[str] = so.mapped_column(sa.String(32))
    first_seen_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)
    last_seen_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)


class KnownMailClient(Base):
    """A network (an IPv4 address, an IPv6 /64) from which the account's mail program
    logged in; `last_seen_at` is refreshed at most daily per process. While it is
    recent, that network's failures lock only itself (gateway.known_clients)."""

    __tablename__ = "known_mail_clients"

    account_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    network: so.Mapped[str] = so.mapped_column(sa.String(64), primary_key=True)
    last_seen_at: so.Mapped[dt.datetime]


class AlertSent(Base):
    """When the last alert mail of a kind went to an account (the rate limit's memory)."""

    __tablename__ = "alerts_sent"

    account_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    kind: so.Mapped[str] = so.mapped_column(sa.String(32), primary_key=True)
    last_sent_at: so.Mapped[dt.datetime]


class LoginLockout(Base):
    """Failure counter and lock of one account (`account:<id>`, for every protocol) or of
    a name that is no account (`name:<address>`); see gateway.lockout."""

    __tablename__ = "login_lockouts"

    key: so.Mapped[str] = so.mapped_column(sa.String(400), primary_key=True)
    failures: so.Mapped[int] = so.mapped_column(default=0)
    window_started_at: so.Mapped[dt.datetime]
    locked_until: so.Mapped[dt.datetime | None]
    lock_count: so.Mapped[int] = so.mapped_column(default=0)
    last_failure_at: so.Mapped[dt.datetime]


# -- secure page (issue 5) -----------------------------------------------------


class SecureMessage(Base):
    """A message for recipients without a key, sealed under the sender's password.

    `ciphertext` is the message (minus Bcc) under a random message key;
    `wrapped_key` is that key under Argon2id(password, salt) with the stored
    parameters. Neither opens without the password: the master key plays no
    part. `generation` counts re-seals (a new password makes a new message key).
    Purging drops both blobs and keeps the row for the sender's history.
    """

    __tablename__ = "secure_messages"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    public_id: so.Mapped[str] = so.mapped_column(sa.String(32), unique=True)
    queue_id: so.Mapped[str] = so.mapped_column(sa.String(32), index=True)
    account_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    sender_address: so.Mapped[str] = so.mapped_column(sa.String(320))
    created_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)
    generation: so.Mapped[int] = so.mapped_column(default=1)
    kdf_salt: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
    kdf_time_cost: so.Mapped[int]
    kdf_memory_cost: so.Mapped[int]
    kdf_parallelism: so.Mapped[int]
    wrapped_key: so.Mapped[bytes | None] = so.mapped_column(sa.LargeBinary)
    ciphertext: so.Mapped[bytes | None] = so.mapped_column(sa.LargeBinary, deferred=True)
    size: so.Mapped[int] = so.mapped_column(default=0)
    purged_at: so.Mapped[dt.datetime | None]

    links: so.Mapped[list[SecureLink]] = so.relationship(
        back_populates="message", order_by="SecureLink.id", cascade="all, delete-orphan"
    )


class SecureLink(Base):
    """One recipient's link to a secure message; only the SHA-256 of its token is kept.

    `failures` counts wrong passwords (an attempt is counted before the password
    is checked, so parallel guesses in several processes cannot pass the limit).
    `grant_generation` counts the recipient's "Close": a browser's grant (the
    message key in its signed cookie) is bound to the value it was issued under,
    so a Close voids every earlier grant of the link, on every device, copies of
    the cookie included; the cookie alone cannot be called back.
    """

    __tablename__ = "secure_links"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    message_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("secure_messages.id", ondelete="CASCADE"), index=True
    )
    recipient: so.Mapped[str] = so.mapped_column(sa.String(320))
    token_digest: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    created_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)
    expires_at: so.Mapped[dt.datetime] = so.mapped_column(index=True)
    failures: so.Mapped[int] = so.mapped_column(default=0)
    locked_at: so.Mapped[dt.datetime | None]
    revoked_at: so.Mapped[dt.datetime | None]
    first_opened_at: so.Mapped[dt.datetime | None]
    last_opened_at: so.Mapped[dt.datetime | None]
    open_count: so.Mapped[int] = so.mapped_column(default=0)
    reply_count: so.Mapped[int] = so.mapped_column(default=0)
    last_reply_at: so.Mapped[dt.datetime | None]
    grant_generation: so.Mapped[int] = so.mapped_column(default=0, server_default="0")

    message: so.Mapped[SecureMessage] = so.relationship(back_populates="links")


class Autoresponder(Base):
    """One saved away message of a hosted address; at most one per address is active."""

    __tablename__ = "autoresponders"
    __table_args__ = (
        sa.Index(
            "uq_autoresponders_one_active",
            "address_id",
            unique=True,
            sqlite_where=sa.text("active"),
            postgresql_where=sa.text("active"),
        ),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    address_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("addresses.id", ondelete="CASCADE"), index=True
    )
    name: so.Mapped[str] = so.mapped_column(sa.String(100))
    subject: so.Mapped[str] = so.mapped_column(sa.String(200))
    body: so.Mapped[str] = so.mapped_column(sa.Text)
    active: so.Mapped[bool] = so.mapped_column(default=False)
    starts_at: so.Mapped[dt.datetime | None]
    ends_at: so.Mapped[dt.datetime | None]
    weekdays: so.Mapped[int] = so.mapped_column(default=127)  # bit 0 = Monday
    reply_from_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("addresses.id", ondelete="SET NULL")
    )
    excluded: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    created_at: so.Mapped[dt.datetime] = so.mapped_column(default=utcnow)

    reply_from: so.Mapped[Address | None] = so.relationship(foreign_keys=[reply_from_id])


class AutoreplySent(Base):
    """When a sender last got an automatic reply from an address (the 7-day rule)."""

    __tablename__ = "autoreplies_sent"
    __table_args__ = (sa.UniqueConstraint("address_id", "sender"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    address_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("addresses.id", ondelete="CASCADE"))
    sender: so.Mapped[str] = so.mapped_column(sa.String(320))
    sent_at: so.Mapped[dt.datetime]


class DkimKey(Base):
    """A DKIM signing key of a hosted domain (gateway.dkim), one per algorithm.

    The private key is stored only sealed under the master key (keystore.seal,
    bound to the domain and selector), like every other secret; `master_version`
    names the version it is sealed under so a rotation finds it. The public key
    is what `sealgate dns` prints for the `<selector>._domainkey` TXT record.
    """

    __tablename__ = "dkim_keys"
    __table_args__ = (
        sa.UniqueConstraint("domain_id", "selector"),
        sa.CheckConstraint("algorithm IN ('ed25519', 'rsa')", name="algorithm_known"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    domain_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("domains.id", ondelete="CASCADE"), index=True
    )
    selector: so.Mapped[str] = so.mapped_column(sa.String(63))
    algorithm: so.Mapped[str] = so.mapped_column(sa.String(10))
    public_key: so.Mapped[str] = so.mapped_column(sa.Text)
    sealed_private_key: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary, deferred=True)
    master_version: so.Mapped[int]
    created_at: so.Mapped[dt.datetime]

    domain: so.Mapped[Domain] = so.relationship()
