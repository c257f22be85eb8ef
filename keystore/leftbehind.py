"""What a master-key re-wrap could not move: records that no longer open with the ring.

A record sealed under a version that was destroyed (`sealgate keys destroy-master`
while something still used it) can never be opened again. A rotation leaves it as
it is and names it (`LeftBehind`), so the admin learns what is lost and what to do,
and the rotation of everything else finishes. A module of its own, light to import:
the gateway's sealed records (TOTP secrets, DKIM keys, queued notifications) report
in the same terms as the address keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from keystore.masterkey import MasterKeyRing


@dataclass(frozen=True)
class LeftBehind:
    """A record a rotation could not re-wrap: it does not open with the ring.

    `what` names it by its owner (an address, an account, a domain, a queue id),
    never by anything secret; `why` says why it does not open (`why_unopenable`);
    `fix` what the admin can do about it ("" when nothing needs doing), in commands;
    `console` the same for an admin without a shell (the console), where it differs.
    """

    what: str
    why: str
    fix: str = ""
    console: str = ""

    def __str__(self) -> str:
        text = f"{self.what}: not re-wrapped, {self.why}"
        return f"{text}; {self.fix}" if self.fix else text

    def for_console(self) -> str:
        """As `str()`, with the console's fix."""
        fix = self.console or self.fix
        text = f"{self.what}: not re-wrapped, {self.why}"
        return f"{text}; {fix}" if fix else text


@dataclass(frozen=True)
class Rewrapped:
    """What one kind of record's re-wrap did: how many moved, and which could not."""

    moved: int = 0
    left: tuple[LeftBehind, ...] = ()

    def __add__(self, other: Rewrapped) -> Rewrapped:
        return Rewrapped(self.moved + other.moved, self.left + other.left)


def why_unopenable(ring: MasterKeyRing, version: int | None) -> str:
    """Why a blob under `version` (None: its header is unreadable) does not open with `ring`."""
    if version is None:
        return "its sealed record is damaged"
    if version in ring.destroyed_versions:
        return f"master-key version {version} was destroyed"
    if version not in ring.keys:
        return f"the key ring does not hold master-key version {version}"
    return f"it does not open under master-key version {version} (damaged, or not its row's)"
