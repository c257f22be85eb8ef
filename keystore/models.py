"""The keystore's own tables. keystore/ imports nothing from gateway/ or webportal/.

`keystore_keys` holds one row per OpenPGP key ever made for an address: the public
key in the clear, the secret key only as a wrapped blob. The database itself keeps
one current key per address (a partial unique index over `status = 'active'`), so
two processes that both make a first key for an address end with one winner.
`keystore_master_versions` records which master-key versions are retired, so a
process still holding an old ring cannot wrap under a version the rotation has
already declared empty. `keystore_external_keys` holds vetted public keys of
addresses hosted elsewhere (admin imports, Web Key Directory answers), and
`keystore_wkd_misses` the WKD lookups that recently found nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, Final

import sqlalchemy as sa
import sqlalchemy.orm as so

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STATUS_ACTIVE = "active"
STATUS_RETIRED = "retired"
STATUS_REVOKED = "revoked"
KEY_STATUSES = (STATUS_ACTIVE, STATUS_RETIRED, STATUS_REVOKED)

VERSION_ACTIVE = "active"
VERSION_RETIRED = "retired"


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """Stores naive UTC (SQLite has no time zones) and always returns aware UTC."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class KeystoreBase(so.DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UTCDateTime()}


_ACTIVE_ONLY = sa.text("status = 'active'")


class StoredKey(KeystoreBase):
    """One address key. `status`: active (the one that encrypts and signs), retired
    (rotated out, decrypt-only) or revoked (a revocation signature is in `public_key`;
    still opens old mail)."""

    __tablename__ = "keystore_keys"
    __table_args__ = (
        sa.Index(
            "uq_keystore_keys_current_address",
            "address",
            unique=True,
            sqlite_where=_ACTIVE_ONLY,
            postgresql_where=_ACTIVE_ONLY,
        ),
        sa.CheckConstraint("status IN ('active', 'retired', 'revoked')", name="status_known"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    address: so.Mapped[str] = so.mapped_column(sa.String(320), index=True)
    # z-base-32 SHA-1 of the local part: the Web Key Directory looks keys up by it.
    wkd_hash: so.Mapped[str] = so.mapped_column(sa.String(32), index=True)
    fingerprint: so.Mapped[str] = so.mapped_column(sa.String(40), unique=True)
    key_id: so.Mapped[str] = so.mapped_column(sa.String(16), index=True)
    subkey_id: so.Mapped[str] = so.mapped_column(sa.String(16), index=True)
    public_key: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
    wrapped_secret: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary, deferred=True)
    master_version: so.Mapped[int] = so.mapped_column(index=True)
    status: so.Mapped[str] = so.mapped_column(sa.String(16), default=STATUS_ACTIVE)
    created_at: so.Mapped[dt.datetime]
    status_changed_at: so.Mapped[dt.datetime | None]
    revocation_reason: so.Mapped[str] = so.mapped_column(sa.Text, default="")

    def __repr__(self) -> str:
        return (
            f"StoredKey(address={self.address!r}, fingerprint={self.fingerprint!r},"
            f" status={self.status!r}, master_version={self.master_version})"
        )


class MasterKeyVersion(KeystoreBase):
    """A master-key version some blob was wrapped under, and whether it is retired."""

    __tablename__ = "keystore_master_versions"

    version: so.Mapped[int] = so.mapped_column(primary_key=True, autoincrement=False)
    state: so.Mapped[str] = so.mapped_column(sa.String(16), default=VERSION_ACTIVE)
    first_seen_at: so.Mapped[dt.datetime]
    retired_at: so.Mapped[dt.datetime | None]


SOURCE_IMPORT: Final = "import"
SOURCE_WKD: Final = "wkd"
# Autocrypt keys in use live in `AutocryptPeer`; `ExternalKey` holds only the revoked
# rows of keys a header showed revoked before any row held them (see the constraint).
SOURCE_AUTOCRYPT: Final = "autocrypt"
EXTERNAL_SOURCES = (SOURCE_IMPORT, SOURCE_WKD)

_NOT_REVOKED = sa.text("revoked_at IS NULL")
# Migration 0017 writes the same text: keep the two alike.
SOURCE_KNOWN = "source IN ('import', 'wkd') OR (source = 'autocrypt' AND revoked_at IS NOT NULL)"


class ExternalKey(KeystoreBase):
    """A public key of an address hosted elsewhere: imported by an admin or found by WKD.

    `public_key` is our own minimal re-serialisation of a key that passed vetting
    (primary key, the address's user id and self-signature, one encryption subkey
    and its binding), never the bytes that came from outside. At most one row per
    address and source is in use (a partial unique index over rows not revoked); a
    revoked row stays as a tombstone, so re-importing the same key without its
    revocation does not bring it back. A key an `Autocrypt:` header first showed
    revoked gets such a tombstone too, with the source "autocrypt": the peer table
    has one row per address, which holds the key in use, not past revocations.
    """

    __tablename__ = "keystore_external_keys"
    __table_args__ = (
        sa.Index(
            "uq_keystore_external_keys_current",
            "address",
            "source",
            unique=True,
            sqlite_where=_NOT_REVOKED,
            postgresql_where=_NOT_REVOKED,
        ),
        sa.CheckConstraint(SOURCE_KNOWN, name="source_known"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    address: so.Mapped[str] = so.mapped_column(sa.String(320), index=True)
    fingerprint: so.Mapped[str] = so.mapped_column(sa.String(40), index=True)
    subkey_id: so.Mapped[str] = so.mapped_column(sa.String(16))
    public_key: so.Mapped[bytes] = so.mapped_column(sa.LargeBinary)
    source: so.Mapped[str] = so.mapped_column(sa.String(16))
    # When this key was first stored for the address, and when its source last vouched
    # for it (an import, or a WKD answer that still served it).
    fetched_at: so.Mapped[dt.datetime]
    last_checked: so.Mapped[dt.datetime]
    expires_at: so.Mapped[dt.datetime | None]
    revoked_at: so.Mapped[dt.datetime | None]

    def __repr__(self) -> str:
        return (
            f"ExternalKey(address={self.address!r}, fingerprint={self.fingerprint!r},"
            f" source={self.source!r})"
        )


class WkdMiss(KeystoreBase):
    """A Web Key Directory lookup that found no usable key, remembered until `retry_after`
    so a failing or key-less domain is not asked again for every message."""

    __tablename__ = "keystore_wkd_misses"

    address: so.Mapped[str] = so.mapped_column(sa.String(320), primary_key=True)
    failed_at: so.Mapped[dt.datetime]
    retry_after: so.Mapped[dt.datetime]
    reason: so.Mapped[str] = so.mapped_column(sa.String(200))


PREFER_MUTUAL: Final = "mutual"
PREFER_NONE: Final = "nopreference"


class AutocryptPeer(KeystoreBase):
    """What Autocrypt (autocrypt.org Level 1, "peer state") learnt about an external address.

    `last_seen` is the effective date of the newest message from the address,
    `autocrypt_timestamp` that of the newest one with a valid `Autocrypt:` header,
    whose vetted key (our minimal re-serialisation, as for `ExternalKey`) and
    prefer-encrypt value are kept here. The rules that change a row live in
    `gateway.autocrypt.peers`.
    """

    __tablename__ = "keystore_autocrypt_peers"
    __table_args__ = (
        sa.CheckConstraint(
            "prefer_encrypt IN ('mutual', 'nopreference')", name="prefer_encrypt_known"
        ),
    )

    address: so.Mapped[str] = so.mapped_column(sa.String(320), primary_key=True)
    last_seen: so.Mapped[dt.datetime]
    autocrypt_timestamp: so.Mapped[dt.datetime | None]
    fingerprint: so.Mapped[str | None] = so.mapped_column(sa.String(40), index=True)
    public_key: so.Mapped[bytes | None] = so.mapped_column(sa.LargeBinary)
    expires_at: so.Mapped[dt.datetime | None]
    # Set when the key was seen revoked (an import, a WKD answer): it is never used
    # again, and a later header carrying it again is refused.
    revoked_at: so.Mapped[dt.datetime | None]
    prefer_encrypt: so.Mapped[str] = so.mapped_column(sa.String(16), default=PREFER_NONE)

    def __repr__(self) -> str:
        return f"AutocryptPeer(address={self.address!r}, fingerprint={self.fingerprint!r})"
