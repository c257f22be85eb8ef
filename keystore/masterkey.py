"""The master key ring: versioned 256-bit keys that wrap every secret key at rest.

It lives outside the database, in `<data dir>/master.keys` (mode 0600, checked at
start) or in the `SEALGATE_MASTER_KEYS` environment variable for containers, so a
stolen database or backup alone opens nothing. Exactly one version is primary and
wraps new blobs; older versions only unwrap until a re-wrap moves every blob off
them and they are retired.

A retired version stays in the ring, decrypt-only: a database backup taken before
the rotation names it, and must still open after it. Only `with_destroyed` (the
separate `sealgate keys destroy-master` command, which asks first) forgets a key;
the ring then remembers the version number as destroyed, so an error can say why
an old blob no longer opens.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import secrets
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

MASTER_KEYS_FILE = "master.keys"
MASTER_KEYS_ENV = "SEALGATE_MASTER_KEYS"
KEY_BYTES = 32

log = logging.getLogger(__name__)


class MasterKeyError(RuntimeError):
    """The ring is missing, malformed, or its file is readable by others.

    `str()` is the whole message, for the command line and the log: what is wrong and
    the step on the server that puts it right (a command, a file mode). A front end
    without a shell (the admin console) shows `fact`, what is wrong, and asks the
    server's operator to take `step`, that step in words ("" when there is none)."""

    def __init__(self, message: str, *, fact: str | None = None, step: str = "") -> None:
        super().__init__(message)
        self.fact = message if fact is None else fact
        self.step = step


class RingUnavailable(MasterKeyError):
    """A running process could not load the ring it had (`RingFile.get`): the file went
    missing, unreadable, malformed or too open. An outage of the process, not a fault of
    the record being opened; the message names the file and why, never key material."""


@dataclass(frozen=True)
class MasterKeyRing:
    primary: int
    keys: Mapping[int, bytes] = field(repr=False)
    retired: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if self.primary not in self.keys or self.primary in self.retired:
            raise MasterKeyError("the primary master-key version is missing or retired")
        for version, key in self.keys.items():
            if len(key) != KEY_BYTES:
                raise MasterKeyError(f"master key version {version} is not {KEY_BYTES} bytes")

    def __repr__(self) -> str:
        return f"MasterKeyRing(primary={self.primary}, versions={sorted(self.keys)})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("master keys are not picklable")

    def key(self, version: int) -> bytes:
        """The key of a version the ring holds (retired ones only open; wrapping uses primary)."""
        if version not in self.keys:
            if version in self.retired:
                raise MasterKeyError(f"master key version {version} was destroyed")
            raise MasterKeyError(f"master key version {version} is not in the ring")
        return self.keys[version]

    @property
    def active_versions(self) -> list[int]:
        return sorted(v for v in self.keys if v not in self.retired)

    @property
    def decrypt_only_versions(self) -> list[int]:
        """Retired versions still held: they open old blobs (and old backups), never wrap."""
        return sorted(v for v in self.keys if v in self.retired)

    @property
    def destroyed_versions(self) -> list[int]:
        return sorted(v for v in self.retired if v not in self.keys)

    def with_new_primary(self) -> MasterKeyRing:
        version = max(self.keys) + 1
        keys = dict(self.keys)
        keys[version] = secrets.token_bytes(KEY_BYTES)
        return MasterKeyRing(primary=version, keys=keys, retired=self.retired)

    def with_retired(self, version: int) -> MasterKeyRing:
        """`version` kept, decrypt-only: backups made before the rotation still open."""
        if version == self.primary:
            raise MasterKeyError("the primary version cannot be retired")
        if version not in self.keys:
            raise MasterKeyError(f"master key version {version} is not in the ring")
        return MasterKeyRing(
            primary=self.primary, keys=self.keys, retired=self.retired | frozenset({version})
        )

    def with_destroyed(self, version: int) -> MasterKeyRing:
        """`version` forgotten for good; only a retired version can be destroyed."""
        if version == self.primary:
            raise MasterKeyError("the primary version cannot be destroyed")
        if version not in self.keys:
            raise MasterKeyError(f"master key version {version} is not in the ring")
        if version not in self.retired:
            raise MasterKeyError(
                f"master key version {version} is not retired; finish `sealgate keys"
                " rotate-master` first",
                fact=f"master key version {version} is not retired",
                step="finish the master-key rotation first",
            )
        keys = {v: k for v, k in self.keys.items() if v != version}
        return MasterKeyRing(primary=self.primary, keys=keys, retired=self.retired)

    def merged_with(self, other: MasterKeyRing) -> MasterKeyRing:
        """This ring plus the versions only `other` holds (a restored backup's ring).

        The primary stays this ring's; versions that are only in `other` join
        decrypt-only. A version both hold must be the same key, else the rings
        belong to different installations and merging them would be a mistake.
        """
        keys = dict(self.keys)
        retired = set(self.retired)
        for version, key in other.keys.items():
            if version in keys:
                if not hmac.compare_digest(keys[version], key):
                    raise MasterKeyError(
                        f"master key version {version} differs between the two rings;"
                        " they belong to different installations"
                    )
                continue
            if version in self.retired:
                continue  # destroyed here on purpose: stays destroyed
            keys[version] = key
            if version != self.primary:
                retired.add(version)
        return MasterKeyRing(primary=self.primary, keys=keys, retired=frozenset(retired))

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": 1,
                "primary": self.primary,
                "keys": {str(v): base64.b64encode(k).decode() for v, k in self.keys.items()},
                "retired": sorted(self.retired),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> MasterKeyRing:
        try:
            data: dict[str, Any] = json.loads(text)
            keys = {int(v): base64.b64decode(k, validate=True) for v, k in data["keys"].items()}
            return cls(
                primary=int(data["primary"]),
                keys=keys,
                retired=frozenset(int(v) for v in data.get("retired", [])),
            )
        except (ValueError, KeyError, TypeError) as exc:
            reason = type(exc).__name__
            raise MasterKeyError(f"the master key ring is malformed ({reason})") from None

    @classmethod
    def generate(cls) -> MasterKeyRing:
        return cls(primary=1, keys={1: secrets.token_bytes(KEY_BYTES)})


def ring_path(data_dir: Path) -> Path:
    return data_dir / MASTER_KEYS_FILE


# The operator's step for a ring file that is gone or damaged (MasterKeyError.step).
_FROM_BACKUP = "put this installation's master key ring back from a backup (docs/backup.md)"
# ... and for one the service cannot read, or others can.
_MODE = "make it a file that the user sealgate runs as, and no other, can read (mode 600)"


def _missing(path: Path) -> MasterKeyError:
    """Not "run init" alone: a new ring opens none of an installation's existing keys."""
    return MasterKeyError(
        f"{path} does not exist (`sealgate init` writes one for a new installation; one"
        " that holds keys needs its own copy back from a backup, see docs/backup.md)",
        fact=f"{path} does not exist",
        step=_FROM_BACKUP,
    )


def load_ring(data_dir: Path, env: Mapping[str, str] | None = None) -> MasterKeyRing:
    env = os.environ if env is None else env
    if env.get(MASTER_KEYS_ENV):
        return _parsed(env[MASTER_KEYS_ENV], MASTER_KEYS_ENV)
    path = ring_path(data_dir)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise _missing(path) from None
    except OSError as exc:  # a directory on the way that this user may not enter
        raise _unreadable(path, exc) from None
    if stat.S_IMODE(mode) & 0o077:
        raise MasterKeyError(
            f"{path} is readable by others (mode {stat.S_IMODE(mode):o}); run chmod 600 on it",
            fact=f"{path} is readable by others (mode {stat.S_IMODE(mode):o})",
            step=_MODE,
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise MasterKeyError(
            f"{path}: the master key ring is malformed (not UTF-8)", step=_FROM_BACKUP
        ) from None
    except OSError as exc:
        # A file a command run as root left behind for the service user, or a directory
        # of that name: one line naming it, as for every other ring problem, not a traceback.
        raise _unreadable(path, exc) from None
    return _parsed(text, str(path), hint="put back a good copy from a backup (docs/backup.md)")


def _unreadable(path: Path, exc: OSError) -> MasterKeyError:
    return MasterKeyError(
        f"{path}: cannot read it ({exc.strerror or exc}); it must be a file the user sealgate"
        " runs as can read (mode 600)",
        fact=f"{path}: cannot read it ({exc.strerror or exc})",
        step=_MODE,
    )


def _parsed(text: str, source: str, *, hint: str = "") -> MasterKeyRing:
    """The ring read from `source`, whose name a malformed ring's error carries: with a
    ring file and the environment both possible, the admin must learn which one is bad."""
    try:
        return MasterKeyRing.from_json(text)
    except MasterKeyError as exc:
        raise MasterKeyError(
            f"{source}: {exc}" + (f"; {hint}" if hint else ""),
            fact=f"{source}: {exc}",
            step=_FROM_BACKUP if hint else f"set {MASTER_KEYS_ENV} to this installation's ring",
        ) from None


def save_ring(data_dir: Path, ring: MasterKeyRing) -> None:
    """Replace the ring file atomically, so a crash leaves the old ring or the new one."""
    path = ring_path(data_dir)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(ring.to_json())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class RingFile:
    """The ring as a long-running process sees it: read again whenever the file changes.

    `sealgate keys rotate-master` replaces the file (a new primary, later a retired
    version) while gateways and portals keep running; each of them asks `get()` per
    unit of work, so they start wrapping under the new version and unwrapping
    re-wrapped blobs without a restart. The check costs one `stat()`. A ring from
    `SEALGATE_MASTER_KEYS` is fixed for the life of the process.

    The mode is part of what is watched: a chmod that opens the file to others (it
    changes no content, size or inode) makes the next `get()` refuse the ring as a
    start does (`load_ring`), until the file is back at 0600. That a loaded ring
    stopped loading is logged once per change of the file, at error level.
    """

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self._data_dir = data_dir
        self._env = dict(os.environ if env is None else env)
        self._lock = threading.Lock()
        self._ring: MasterKeyRing | None = None
        self._stamp: tuple[int, int, int, int] | None = None
        self._refused: tuple[int, int, int, int] | None = None

    def __repr__(self) -> str:
        return f"RingFile({ring_path(self._data_dir)})"

    def get(self) -> MasterKeyRing:
        try:
            return self._get()
        except RingUnavailable:
            raise
        except MasterKeyError as exc:
            raise RingUnavailable(str(exc), fact=exc.fact, step=exc.step) from None

    def _get(self) -> MasterKeyRing:
        with self._lock:
            if self._env.get(MASTER_KEYS_ENV):
                if self._ring is None:
                    self._ring = load_ring(self._data_dir, self._env)
                return self._ring
            try:
                st = ring_path(self._data_dir).stat()
            except FileNotFoundError:
                raise _missing(ring_path(self._data_dir)) from None
            except OSError as exc:
                raise MasterKeyError(
                    f"{ring_path(self._data_dir)} cannot be read ({exc.strerror}): it must be"
                    " a file the user sealgate runs as can read (mode 600)",
                    fact=f"{ring_path(self._data_dir)} cannot be read ({exc.strerror})",
                    step=_MODE,
                ) from None
            stamp = (st.st_mtime_ns, st.st_ino, st.st_size, st.st_mode)
            if self._ring is not None and stamp == self._stamp:
                self._refused = None  # back as it was loaded (a chmod undone)
            else:
                try:
                    ring = load_ring(self._data_dir, self._env)
                except MasterKeyError as exc:
                    if self._ring is not None and stamp != self._refused:
                        log.error("the master key ring no longer loads: %s", exc)
                    self._refused = stamp
                    raise
                self._ring, self._stamp, self._refused = ring, stamp, None
            return self._ring
