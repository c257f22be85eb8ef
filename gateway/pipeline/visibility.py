"""Who can see whom: recipients named in To/Cc are visible, every other one is Bcc.

A Bcc recipient's copy is encrypted on its own, and no copy names the key of a
recipient its reader cannot see, so key ids never reveal a Bcc.
"""

from __future__ import annotations

from email.utils import getaddresses

from gateway import rawheaders


def visible_addresses(raw: bytes) -> set[str]:
    values = [f.value for f in rawheaders.headers(raw) if f.name.lower() in ("to", "cc")]
    return {addr.lower() for _name, addr in getaddresses(values) if addr}


def split_visible(raw: bytes, recipients: list[str]) -> tuple[list[str], list[str]]:
    """(visible, hidden) in envelope order."""
    visible = visible_addresses(raw)
    shown = [r for r in recipients if r.lower() in visible]
    hidden = [r for r in recipients if r.lower() not in visible]
    return shown, hidden
