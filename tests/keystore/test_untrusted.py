"""The sandboxed parser: hostile OpenPGP input is stopped within its budget, cleanly.

Threats: a 202-byte armored blob on which pgpy's armor regular expression
backtracks for hours (PGPy issue #466, and a variant through the armor header
lines that survives splitting a file into blocks), and a 400 KB compressed packet that
inflates to 400 MB inside pgpy's key parser. Either, parsed on a server thread,
would hold that thread or exhaust the machine; here each costs one child process
its budget and the caller gets a refusal it can show, while other parses go on.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from keystore import untrusted
from tests.gnupg import GnuPG
from tests.keystore.gpgkeys import export, make_key
from tests.keystore.hostile import compression_bomb, hostile_armor, hostile_headers

BUDGET = untrusted.Budget(max_bytes=512 * 1024, timeout=5.0, memory_mb=256)


@pytest.fixture
def carol_key(tmp_path: Path) -> Iterator[bytes]:
    home = tmp_path / "partner"
    home.mkdir(mode=0o700)
    gpg = GnuPG(home)
    yield export(gpg, make_key(gpg, "Carol <carol@partner.example>"))


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_children() -> list[int]:
    """Live children of the zygote (each is one parse in progress)."""
    zygote = untrusted.zygote_pid()
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError, ValueError):
            continue
        if zygote is not None and int(parent) == zygote and state != "Z":
            children.append(int(stat.parent.name))
    return children


def eventually(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    waited = threading.Event()
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        waited.wait(0.05)
    return condition()


def test_a_good_key_comes_back_vetted(carol_key: bytes) -> None:
    vetting = untrusted.vet_keys(carol_key, now(), BUDGET)
    assert [v.address for v in vetting.accepted] == ["carol@partner.example"]
    assert vetting.rejected == ()


@pytest.mark.parametrize("blob", [hostile_armor(), hostile_headers()], ids=["466", "headers"])
def test_hostile_armor_is_killed_at_the_deadline(blob: bytes) -> None:
    assert len(blob) < 400
    budget = untrusted.Budget(max_bytes=1024, timeout=2.0, memory_mb=256)
    with pytest.raises(untrusted.UntrustedDataError) as err:
        untrusted.vet_keys(blob, now(), budget)
    assert err.value.kind == "timeout"
    assert str(err.value) == "parsing took longer than 2 s and was stopped"
    assert eventually(lambda: parse_children() == [])  # the child was killed, not left


@pytest.mark.slow
def test_other_parses_go_on_while_a_hostile_one_runs(carol_key: bytes) -> None:
    outcome: list[BaseException] = []

    def hostile() -> None:
        try:
            untrusted.vet_keys(hostile_armor(), now(), BUDGET)
        except untrusted.UntrustedDataError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=hostile)
    worker.start()
    assert eventually(lambda: len(parse_children()) == 1), "the hostile parse never started"

    vetting = untrusted.vet_keys(carol_key, now(), BUDGET)
    assert [v.address for v in vetting.accepted] == ["carol@partner.example"]
    assert worker.is_alive()  # the hostile parse is still being given its 5 s

    worker.join(30)
    assert [getattr(e, "kind", None) for e in outcome] == ["timeout"]


def test_compression_bomb_hits_the_memory_ceiling() -> None:
    bomb = compression_bomb()
    assert len(bomb) < BUDGET.max_bytes
    with pytest.raises(untrusted.UntrustedDataError) as err:
        untrusted.vet_keys(bomb, now(), BUDGET)
    assert err.value.kind == "memory"
    assert "more than 256 MB" in str(err.value)


def test_size_is_checked_before_anything_parses() -> None:
    small = untrusted.Budget(max_bytes=100, timeout=1.0, memory_mb=64)
    with pytest.raises(untrusted.UntrustedDataError) as err:
        untrusted.vet_keys(b"x" * 101, now(), small)
    assert err.value.kind == "too-large"
    assert "too large (more than 100 bytes)" in str(err.value)


@pytest.mark.parametrize(
    "data",
    [
        b"hello, this is not a key",
        b"\x99\x00\x01",
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64 !!\n"
        b"-----END PGP PUBLIC KEY BLOCK-----\n",
        bytes(range(256)) * 4,
    ],
)
def test_garbage_is_one_clear_error(data: bytes) -> None:
    with pytest.raises(untrusted.UntrustedDataError) as err:
        untrusted.vet_keys(data, now(), BUDGET)
    assert err.value.kind == "invalid"
    assert str(err.value) == "not a valid OpenPGP key"


def test_empty_input_is_refused_without_a_child() -> None:
    with pytest.raises(untrusted.UntrustedDataError) as err:
        untrusted.vet_keys(b" \n", now(), BUDGET)
    assert err.value.kind == "empty"


def test_budget_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        untrusted.Budget(max_bytes=1, timeout=1.0, memory_mb=8)
    with pytest.raises(ValueError):
        untrusted.Budget(max_bytes=1, timeout=0, memory_mb=64)
