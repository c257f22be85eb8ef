"""The master key ring as long-running processes see it (`RingFile`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from keystore.masterkey import (
    MASTER_KEYS_ENV,
    MasterKeyError,
    MasterKeyRing,
    RingFile,
    RingUnavailable,
    load_ring,
    ring_path,
    save_ring,
)


def test_ring_file_rereads_the_ring_when_the_file_is_replaced(tmp_path: Path) -> None:
    save_ring(tmp_path, MasterKeyRing.generate())
    ring_file = RingFile(tmp_path, env={})
    first = ring_file.get()
    assert ring_file.get() is first  # unchanged file: no re-read
    save_ring(tmp_path, first.with_new_primary())
    second = ring_file.get()
    assert (second.primary, second.active_versions) == (2, [1, 2])
    save_ring(tmp_path, second.with_retired(1))
    assert ring_file.get().retired == {1}
    assert str(tmp_path) in repr(ring_file)
    assert all(key.hex() not in repr(ring_file) for key in second.keys.values())


def test_ring_file_checks_the_mode_on_every_reload(tmp_path: Path) -> None:
    save_ring(tmp_path, MasterKeyRing.generate())
    ring_file = RingFile(tmp_path, env={})
    ring_file.get()
    ring = load_ring(tmp_path, env={})
    save_ring(tmp_path, ring.with_new_primary())
    ring_path(tmp_path).chmod(0o644)
    with pytest.raises(MasterKeyError, match="readable by others"):
        ring_file.get()
    ring_path(tmp_path).unlink()
    with pytest.raises(MasterKeyError, match="does not exist"):
        ring_file.get()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644], ids=lambda m: f"{m:o}")
def test_a_chmod_alone_while_running_is_noticed_and_refused(
    tmp_path: Path, mode: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The file's content stays, only its mode opens it to others (an admin's chmod, a
    backup tool's copy-back): the next `get()` refuses it as a start does, says so once
    at error level, and loads it again once it is back at 600."""
    save_ring(tmp_path, MasterKeyRing.generate())
    ring_file = RingFile(tmp_path, env={})
    first = ring_file.get()
    ring_path(tmp_path).chmod(mode)
    with (
        caplog.at_level(logging.ERROR, logger="keystore.masterkey"),
        pytest.raises(MasterKeyError, match=f"readable by others \\(mode {mode:o}\\)"),
    ):
        ring_file.get()
    with pytest.raises(MasterKeyError, match="readable by others"):
        ring_file.get()  # still refused while the mode stays, not said again
    said = [r.getMessage() for r in caplog.records if r.name == "keystore.masterkey"]
    assert len(said) == 1
    assert "readable by others" in said[0] and "chmod 600" in said[0]
    assert all(key.hex() not in said[0] for key in first.keys.values())
    ring_path(tmp_path).chmod(0o600)
    assert ring_file.get().keys == first.keys


def test_ring_from_the_environment_is_fixed(tmp_path: Path) -> None:
    ring = MasterKeyRing.generate()
    ring_file = RingFile(tmp_path, env={MASTER_KEYS_ENV: ring.to_json()})
    got = ring_file.get()
    assert got.keys == ring.keys
    assert ring_file.get() is got


def test_retired_versions_stay_decrypt_only_and_merging_keeps_destroyed_ones_destroyed() -> None:
    """A retired key is kept (old backups open); only destroying forgets it, and a
    restored backup's ring cannot bring a destroyed version back."""
    old = MasterKeyRing.generate()
    rotated = old.with_new_primary().with_retired(1)
    assert (rotated.primary, rotated.decrypt_only_versions) == (2, [1])
    assert rotated.key(1) == old.key(1)
    assert MasterKeyRing.from_json(rotated.to_json()).decrypt_only_versions == [1]
    with pytest.raises(MasterKeyError, match="not retired"):
        old.with_new_primary().with_destroyed(1)
    destroyed = rotated.with_destroyed(1)
    with pytest.raises(MasterKeyError, match="destroyed"):
        destroyed.key(1)
    assert destroyed.merged_with(old).destroyed_versions == [1]
    # A fresh installation's ring plus a backup's: the backup's versions join, decrypt-only.
    merged = rotated.merged_with(old)
    assert (merged.primary, sorted(merged.keys)) == (2, [1, 2])
    # Rings of two installations share version numbers with other keys: refused.
    with pytest.raises(MasterKeyError, match="different installations"):
        rotated.merged_with(MasterKeyRing.generate())


@pytest.mark.parametrize("damage", ["directory", "not-utf8", "not-json"])
def test_a_ring_file_that_cannot_be_read_is_one_error_naming_it(
    tmp_path: Path, damage: str
) -> None:
    """A `master.keys` a command run as root left unreadable for the service user, or one
    that is no text, ended every command that opens the ring in a traceback."""
    path = ring_path(tmp_path)
    if damage == "directory":
        path.mkdir(mode=0o700)
    else:
        path.write_bytes(b"\xff\xfe" if damage == "not-utf8" else b"not json\n")
        path.chmod(0o600)
    with pytest.raises(MasterKeyError) as caught:
        load_ring(tmp_path, env={})
    assert str(caught.value).startswith(f"{path}: ")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_malformed_ring_in_the_environment_names_the_variable(tmp_path: Path) -> None:
    save_ring(tmp_path, MasterKeyRing.generate())  # a good file, which the variable overrides
    expected = f"^{MASTER_KEYS_ENV}: the master key ring is malformed"
    with pytest.raises(MasterKeyError, match=expected):
        load_ring(tmp_path, env={MASTER_KEYS_ENV: "{not json"})


def test_a_ring_that_stops_loading_keeps_its_console_wording(tmp_path: Path) -> None:
    """RingFile turns a load error into RingUnavailable (an outage); the admin console
    still needs the fact and the operator's step the load error carried."""
    save_ring(tmp_path, MasterKeyRing.generate())
    ring_file = RingFile(tmp_path, env={})
    ring_file.get()
    ring_path(tmp_path).unlink()
    with pytest.raises(MasterKeyError) as direct:
        load_ring(tmp_path, env={})
    with pytest.raises(RingUnavailable) as running:
        ring_file.get()
    assert direct.value.step  # the missing ring names a step: its copy from a backup
    assert (running.value.fact, running.value.step) == (direct.value.fact, direct.value.step)
    assert str(running.value) == str(direct.value)
