"""What encrypted mail to each recipient will turn into, told before the message is sent.

The webmail's compose page shows it on the recipient chips when the lock is
closed: a hosted address gets PGP/MIME transparently, an external address with
a usable key (imported, or found by Web Key Directory) gets PGP/MIME to that
key, and any other external address needs a password for a secure page. The
answer comes from the same lookups the submission pipeline makes when it sends,
so the chips and the delivery agree (a WKD answer found now is cached for the
send). A lookup that takes longer than the caller's budget is reported as
needing a password: the safe guess, since Send then insists on one.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from gateway import accounts, db
from gateway.addresses import InvalidAddress, canonical_recipient, normalize_recipient
from gateway.pipeline.external_keys import lookup_external_keys
from gateway.pipeline.report import format_fingerprint
from gateway.runtime import Runtime

log = logging.getLogger(__name__)

Kind = Literal["hosted", "key", "password", "unknown-mailbox", "invalid"]


@dataclass(frozen=True)
class RecipientClass:
    address: str
    kind: Kind
    fingerprint: str = ""  # grouped in fours, for "key"
    pending: bool = False  # the key lookup ran out of time; "password" is a guess


def classify(
    runtime: Runtime, addresses: Iterable[str], now: dt.datetime, *, timeout: float
) -> list[RecipientClass]:
    """One class per address, in order (duplicates kept, so callers can zip)."""
    wanted = list(addresses)
    known: dict[str, RecipientClass] = {}
    external: dict[str, str] = {}  # as written -> as the send spells it
    with db.read_only(runtime.sessions) as session:
        for raw in wanted:
            if raw in known or raw in external:
                continue
            try:
                address = normalize_recipient(raw)
            except InvalidAddress:
                known[raw] = RecipientClass(raw, "invalid")
                continue
            if accounts.is_hosted(session, address):
                found = accounts.find_address(session, address) is not None
                known[raw] = RecipientClass(raw, "hosted" if found else "unknown-mailbox")
            else:
                # Looked up as the send spells it (`"john"@x` is john@x): one address, one
                # key and one WKD name, whichever way it was typed.
                external[raw] = canonical_recipient(raw)
    if external:
        known.update(_external(runtime, external, now, timeout))
    return [known[raw] for raw in wanted]


def _external(
    runtime: Runtime, spelt: dict[str, str], now: dt.datetime, timeout: float
) -> dict[str, RecipientClass]:
    """The class of each address written (a key of `spelt`), looked up as spelt."""
    addresses = list(spelt)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rcpt-keys")
    future = pool.submit(lookup_external_keys, runtime, list(dict.fromkeys(spelt.values())), now)
    # The lookup may outlive the answer; it finishes on its own (within the WKD
    # timeout) and caches what it found for the send.
    pool.shutdown(wait=False)
    try:
        keys = future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        log.info(
            "key lookup for %d recipient(s) still running; answered 'password'", len(addresses)
        )
        return {a: RecipientClass(a, "password", pending=True) for a in addresses}
    result: dict[str, RecipientClass] = {}
    for address in addresses:
        key = keys.get(spelt[address])
        if key is None:
            result[address] = RecipientClass(address, "password")
        else:
            result[address] = RecipientClass(address, "key", format_fingerprint(key.fingerprint))
    return result
