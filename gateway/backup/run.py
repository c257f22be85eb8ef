"""Make a backup directory, and restore one into the configured data dir and database.

Restoring changes nothing until it has checked the checksums, that the database
kinds match, that the target database is empty (or `force`), and that the ring in
effect afterwards holds every master-key version the backed-up data names (the
current ring, whose retired versions stay decrypt-only, see keystore.masterkey,
merged with the backup's own) and opens a few of the backup's keys under each of
its versions (keystore.ringcheck), read from the backup's copy of the database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import os
import shutil
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from gateway import db, master_records, runlock
from gateway.backup import database
from gateway.backup.manifest import (
    MANIFEST,
    BackupError,
    Manifest,
    describe,
    read,
    verify,
    write,
)
from gateway.models import Domain, MailboxMessage, SecureMessage
from gateway.settings import SETTINGS_FILE, Settings
from keystore import ringcheck
from keystore.masterkey import (
    MASTER_KEYS_ENV,
    MASTER_KEYS_FILE,
    MasterKeyError,
    MasterKeyRing,
    load_ring,
    ring_path,
    save_ring,
)
from keystore.models import StoredKey

Progress = Callable[[str, int, int], None]  # (step, done, total)


@dataclass(frozen=True)
class RestoreResult:
    manifest: Manifest
    ring_versions: list[int]
    ring_written: bool
    settings_note: str


def _counts(engine: sa.Engine) -> tuple[dict[str, int], list[int], list[str]]:
    sessions = db.session_factory(engine)
    with db.read_only(sessions) as session:
        # The schema may be older than the code's (a backup before `sealgate init`
        # migrates): a table that is not there yet holds nothing.
        tables = set(sa.inspect(session.connection()).get_table_names())

        def count(model: type[Domain | MailboxMessage | StoredKey | SecureMessage]) -> int:
            if model.__tablename__ not in tables:
                return 0
            return int(session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)

        counts = {
            "domains": count(Domain),
            "mailbox messages": count(MailboxMessage),
            "address keys": count(StoredKey),
            "secure-page messages": count(SecureMessage),
        }
        versions = sorted(master_records.versions_in_use(session))
    return counts, versions, sorted(db.schema_revisions(engine))


def _version() -> str:
    try:
        return importlib.metadata.version("sealgate")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _refuse_inside_data_dir(settings: Settings, directory: Path) -> None:
    """A backup in the data dir, or beside an SQLite file that `[database] url` puts
    elsewhere, is lost with what it was meant to save, and the next backup would copy
    it. Paths are resolved first, so a symlink or `..` leads nowhere around this."""
    target = directory.resolve()
    places = [(f"the data dir {settings.data_dir}", settings.data_dir)]
    if database.kind(settings.database_url) == "sqlite":
        db_dir = database.sqlite_path(settings.database_url).parent
        places.append((f"the directory of the database {db_dir}", db_dir))
    for where, place in places:
        resolved = place.resolve()
        if target == resolved or resolved in target.parents:
            raise BackupError(
                f"{directory} is inside {where}: a backup there is lost with it (and the"
                " next backup would copy it); choose a directory elsewhere"
            )


def make_backup(
    settings: Settings,
    directory: Path,
    *,
    include_ring: bool = True,
    progress: Progress = lambda step, done, total: None,
    now: dt.datetime | None = None,
) -> Manifest:
    _refuse_inside_data_dir(settings, directory)
    try:
        return _make_backup(settings, directory, include_ring, progress, now)
    except OSError as exc:
        # A target under a file, on a read-only or full file system, not the user's.
        where = f" ({exc.filename})" if exc.filename else ""
        raise BackupError(
            f"cannot write the backup into {directory}: {exc.strerror or exc}{where}"
        ) from None
    except sqlite3.Error as exc:
        raise BackupError(f"cannot write the backup into {directory}: {exc}") from None


def _make_backup(
    settings: Settings,
    directory: Path,
    include_ring: bool,
    progress: Progress,
    now: dt.datetime | None,
) -> Manifest:
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise BackupError(f"{directory} exists and is not an empty directory")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    url = settings.database_url
    kind = database.kind(url)
    names = [database.dump(url, directory, lambda d, t: progress("database", d, t))]
    (directory / names[0]).chmod(0o600)  # hashes and wrapped secrets: the owner's only

    # Counts and master-key versions of what was copied (for SQLite: of the copy itself).
    source = f"sqlite:///{directory / names[0]}" if kind == "sqlite" else url
    engine = db.create_engine(source)
    try:
        counts, versions, revisions = _counts(engine)
    finally:
        engine.dispose()

    if include_ring:
        try:
            ring = load_ring(settings.data_dir)
        except MasterKeyError as exc:
            raise BackupError(str(exc)) from None
        fd = os.open(directory / MASTER_KEYS_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(ring.to_json())
        names.append(MASTER_KEYS_FILE)
    settings_file = settings.data_dir / SETTINGS_FILE
    if settings_file.exists():
        shutil.copyfile(settings_file, directory / SETTINGS_FILE)
        (directory / SETTINGS_FILE).chmod(0o600)
        names.append(SETTINGS_FILE)

    progress("checksums", 0, len(names))
    manifest = Manifest(
        created_at=(now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        sealgate_version=_version(),
        database=kind,
        schema_revisions=revisions,
        master_key_versions=versions,
        files=describe(directory, names),
        counts=counts,
    )
    write(directory, manifest)
    progress("checksums", len(names), len(names))
    return manifest


def _current_ring(settings: Settings) -> tuple[MasterKeyRing | None, bool]:
    """The ring in effect now (None if there is none yet), and whether it is from the env."""
    if os.environ.get(MASTER_KEYS_ENV):
        return load_ring(settings.data_dir), True
    if not ring_path(settings.data_dir).exists():
        return None, False
    return load_ring(settings.data_dir), False


def _ring_after(
    settings: Settings, directory: Path, manifest: Manifest
) -> tuple[MasterKeyRing, bool]:
    """The ring to use after the restore, and whether the ring file must be (re)written."""
    backup_ring = None
    if MASTER_KEYS_FILE in manifest.files:
        backup_ring = MasterKeyRing.from_json(
            (directory / MASTER_KEYS_FILE).read_text(encoding="utf-8")
        )
    current, from_env = _current_ring(settings)
    if current is None and backup_ring is None:
        raise BackupError(
            f"the backup holds no {MASTER_KEYS_FILE} and the data dir has none: nothing"
            " could open the restored keys (copy the ring you kept into the data dir first)"
        )
    if current is None:
        assert backup_ring is not None
        ring, write_ring = backup_ring, True
    elif backup_ring is None:
        ring, write_ring = current, False
    else:
        try:
            ring = current.merged_with(backup_ring)
        except MasterKeyError as exc:
            # Most often a `sealgate init` on the new machine before the restore: its
            # fresh ring is version 1 too. Say what to do, not only what is wrong.
            where = MASTER_KEYS_ENV if from_env else str(ring_path(settings.data_dir))
            raise BackupError(
                f"{exc}: the ring in {where} is not the one this backup was made with."
                f" If it is a fresh `sealgate init`'s that nothing needs yet, move"
                f" {MASTER_KEYS_FILE} aside and restore again with --force; nothing was"
                " changed"
            ) from None
        write_ring = sorted(ring.keys) != sorted(current.keys)
    missing = sorted(set(manifest.master_key_versions) - set(ring.keys))
    if missing:
        gone = [v for v in missing if v in ring.destroyed_versions]
        why = (
            f" (destroyed with `sealgate keys destroy-master`: {', '.join(map(str, gone))})"
            if gone
            else ""
        )
        raise BackupError(
            "the backed-up data is wrapped under master-key version(s)"
            f" {', '.join(map(str, missing))}, which no ring at hand holds{why};"
            " nothing was changed"
        )
    if from_env and write_ring:
        added = sorted(set(ring.keys) - set(current.keys if current else {}))
        raise BackupError(
            f"the ring comes from {MASTER_KEYS_ENV} and lacks version(s)"
            f" {', '.join(map(str, added))} of the backup's {MASTER_KEYS_FILE}; add them there"
        )
    return ring, write_ring


def _check_ring_opens_backup(
    settings: Settings, directory: Path, manifest: Manifest, db_file: str, ring: MasterKeyRing
) -> None:
    """Refuse a ring that opens none of the backup's keys under one of its versions.

    The version numbers alone prove nothing: the ring a fresh `sealgate init` writes
    is version 1 too, so a backup made `--without-master-keys` restored onto it would
    load keys that nothing opens, and every key made afterwards would be wrapped under
    the wrong ring. The backup's copy of the database is read, never the live one.
    """
    if MASTER_KEYS_FILE in manifest.files:
        source = f"the backup's {MASTER_KEYS_FILE}"
        if os.environ.get(MASTER_KEYS_ENV) or ring_path(settings.data_dir).exists():
            source += " with the data dir's ring"
    elif os.environ.get(MASTER_KEYS_ENV):
        source = f"${MASTER_KEYS_ENV}"
    else:
        source = str(ring_path(settings.data_dir))
    sample = database.key_sample(directory, db_file, ring.keys)
    try:
        ringcheck.check_ring_opens(
            ring,
            sample,
            source=source,
            holder="the backup's database",
            remedy=(
                f"put the {MASTER_KEYS_FILE} of the installation the backup was made on into"
                f" {settings.data_dir} (or ${MASTER_KEYS_ENV}) and restore again;"
                " nothing was changed"
            ),
        )
    except ringcheck.WrongRingError as exc:
        raise BackupError(str(exc)) from None


def _refuse_unknown_schema(directory: Path, manifest: Manifest, db_file: str) -> None:
    """Refuse a database copy that is no sealgate database, or whose schema this
    release's migrations do not know.

    A backup from a newer release was loaded, and only then did the migration fail
    with a traceback, leaving the live database at a schema this release cannot run.
    The copy itself is read (the manifest could say otherwise).
    """
    in_copy = database.schema_revisions(directory, db_file)
    if not in_copy:
        # Loaded, it would be migrated into an empty installation in place of the live one.
        raise BackupError(
            f"{db_file} in the backup holds no sealgate database (no schema revision):"
            " the backup is damaged or not a sealgate backup; nothing was changed"
        )
    found = set(manifest.schema_revisions) | in_copy
    unknown = sorted(db.unknown_revisions(frozenset(found)))
    if unknown:
        raise BackupError(
            f"the backup's database is at schema revision {', '.join(unknown)}, which"
            f" sealgate {_version()} does not know: it was made by a newer release;"
            " restore it with that release (or a newer one); nothing was changed"
        )


def restore(
    settings: Settings,
    directory: Path,
    *,
    force: bool = False,
    progress: Progress = lambda step, done, total: None,
) -> RestoreResult:
    manifest = read(directory)
    progress("checksums", 0, len(manifest.files))
    verify(directory, manifest)
    progress("checksums", len(manifest.files), len(manifest.files))
    url = settings.database_url
    if database.kind(url) != manifest.database:
        raise BackupError(
            f"the backup holds a {manifest.database} database; [database] url is"
            f" {database.kind(url)}"
        )
    db_files = [n for n in manifest.files if n in (database.SQLITE_FILE, database.PG_FILE)]
    if len(db_files) != 1:
        raise BackupError(
            f"{MANIFEST} lists {len(db_files)} database files; a backup holds exactly one"
            " (the backup is damaged); nothing was changed"
        )
    [db_file] = db_files
    _refuse_unknown_schema(directory, manifest, db_file)
    try:
        ring, write_ring = _ring_after(settings, directory, manifest)
    except MasterKeyError as exc:
        raise BackupError(f"{exc}; nothing was changed") from None
    _check_ring_opens_backup(settings, directory, manifest, db_file, ring)

    try:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.ExitStack() as held:
            held.enter_context(runlock.exclusive(settings.data_dir))
            try:
                held.enter_context(
                    runlock.exclusive_database(settings.database_url, "sealgate restore")
                )
            except sa.exc.OperationalError as exc:  # the run lock's own connection
                reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "no reason given"
                raise BackupError(
                    f"cannot open {runlock.describe_database(settings.database_url)}"
                    f" ({reason}); nothing was changed"
                ) from None
            try:
                return _replace(
                    settings, directory, manifest, db_file, ring, write_ring, force, progress
                )
            except (OSError, sqlite3.Error) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise BackupError(
                    f"the restore stopped part-way: {reason}; the backup is intact: fix that"
                    " and run the restore again (with --force)"
                ) from None
    except runlock.DataDirBusy as exc:
        raise BackupError(
            f"{exc}: stop it first (what it accepted meanwhile would be lost); nothing was changed"
        ) from None
    except OSError as exc:
        raise BackupError(
            f"cannot use the data dir {settings.data_dir}: {exc.strerror or exc};"
            " nothing was changed"
        ) from None


def _replace(
    settings: Settings,
    directory: Path,
    manifest: Manifest,
    db_file: str,
    ring: MasterKeyRing,
    write_ring: bool,
    force: bool,
    progress: Progress,
) -> RestoreResult:
    """The part of a restore that changes things, once every check has passed."""
    url = settings.database_url
    engine = db.create_engine(url)
    try:
        try:
            revisions = db.schema_revisions(engine)
        except sa.exc.SQLAlchemyError:
            revisions = frozenset()
        if revisions and not force:
            raise BackupError(
                "the database already holds a sealgate installation; stop sealgate and run"
                " again with --force to replace it"
            )
    finally:
        engine.dispose()
    extra = database.tables_not_in_archive(url, directory, db_file)
    if extra:
        raise BackupError(
            f"the database holds tables the backup does not hold: {', '.join(extra)} (made"
            " after the backup, by a newer schema, or not sealgate's); pg_restore or the"
            " migrations after it would fail on them. Restore into an empty database"
            " (dropdb and createdb it, see docs/deployment.md), or drop those tables if"
            " they are sealgate's, and run the restore again; nothing was changed"
        )
    database.load(url, directory, db_file, lambda d, t: progress("database", d, t))
    if write_ring:
        save_ring(settings.data_dir, ring)

    note = ""
    if SETTINGS_FILE in manifest.files:
        target = settings.data_dir / SETTINGS_FILE
        if not target.exists():
            shutil.copyfile(directory / SETTINGS_FILE, target)
            target.chmod(stat.S_IRUSR | stat.S_IWUSR)
            note = f"{SETTINGS_FILE} restored"
        elif target.read_bytes() != (directory / SETTINGS_FILE).read_bytes():
            shutil.copyfile(directory / SETTINGS_FILE, target.with_suffix(".toml.restored"))
            note = (
                f"{SETTINGS_FILE} differs from the backup's; the backup's copy is"
                f" {target.with_suffix('.toml.restored')}"
            )

    engine = db.create_engine(url)
    try:
        db.migrate(engine)  # a backup from an older release is brought up to date
    finally:
        engine.dispose()
    return RestoreResult(
        manifest=manifest,
        ring_versions=sorted(ring.keys),
        ring_written=write_ring,
        settings_note=note,
    )
