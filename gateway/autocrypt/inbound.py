"""What an arriving message teaches about its sender's key, and recording it.

`observe` runs before the message's transaction: it reads the headers and vets
the header's key in the sandboxed parser (a child process with a time and
memory budget, as for an imported key), so no transaction waits on pgpy.
`record` runs inside the transaction that stores the message, so the peer state
changes exactly when the message is accepted. Neither ever refuses a message:
a bad header is logged and ignored, as the spec asks.

Anyone on the Internet can send a header, and a hostile key costs the whole parse
budget (`[keys] parse_timeout`), so at most one header per process is vetted at a
time, and a message that arrives meanwhile with another header not yet vetted is
stored without reading it. Otherwise a few such messages a second held every
sandbox slot (`keystore.untrusted.MAX_PARALLEL`), which the webmail's decryption and
WKD lookups wait for, and every thread of the event loop's pool, which the MX,
submission and IMAP servers wait for. A header skipped so teaches nothing, not even
"no header": the peer state stays as it was, and the peer's next message counts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import sqlalchemy.orm as so

from gateway import accounts, audit, db
from gateway.autocrypt import header, peers
from gateway.autocrypt.header import PreferEncrypt
from gateway.pipeline.external_keys import parse_budget
from gateway.runtime import Runtime
from keystore import directory, pgp, untrusted
from keystore.models import SOURCE_AUTOCRYPT
from keystore.store import KeystoreError, normalize_address

log = logging.getLogger(__name__)

AUTOCRYPT_ACTOR = "autocrypt"
VETTING_CACHE_SIZE = 1024
VETTING_CACHE_SECONDS = 3600.0


class _VettingCache:
    """Vetting results by (address, digest of the keydata), for an hour.

    Autocrypt mail programs send the same header with every message; one sandboxed
    parse per key and hour is enough. Expiry is checked again at each use, and a
    revocation changes the keydata (so the digest), so a cached answer never
    outlives what it vouches for.
    """

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[str, bytes], tuple[float, pgp.KeyVetting]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, address: str, keydata: bytes) -> pgp.KeyVetting | None:
        key = (address, hashlib.sha256(keydata).digest())
        with self._lock:
            found = self._items.get(key)
            if found is None or time.monotonic() - found[0] > VETTING_CACHE_SECONDS:
                self._items.pop(key, None)
                return None
            self._items.move_to_end(key)
            return found[1]

    def put(self, address: str, keydata: bytes, vetting: pgp.KeyVetting) -> None:
        key = (address, hashlib.sha256(keydata).digest())
        with self._lock:
            self._items[key] = (time.monotonic(), vetting)
            while len(self._items) > VETTING_CACHE_SIZE:
                self._items.popitem(last=False)


vetting_cache = _VettingCache()
_vetting_slot = threading.BoundedSemaphore(1)


@dataclass(frozen=True)
class Observation:
    sender: str
    effective: dt.datetime
    vetted: pgp.VettedKey | None = field(default=None, repr=False)
    prefer_encrypt: PreferEncrypt = "nopreference"
    revoked: tuple[str, ...] = ()
    note: str = ""


def observe(runtime: Runtime, raw: bytes, now: dt.datetime) -> Observation | None:
    """The evidence in `raw` about an external sender; None when there is none to keep."""
    try:
        return _observe(runtime, raw, now)
    except Exception:  # the message must be stored whatever its Autocrypt header holds
        log.exception("Autocrypt: reading a header failed unexpectedly")
        return None


def _observe(runtime: Runtime, raw: bytes, now: dt.datetime) -> Observation | None:
    keys = runtime.settings.keys
    facts = header.read_message(raw, max_key_bytes=keys.max_key_bytes)
    if facts.sender is None:
        return None
    with db.read_only(runtime.sessions) as session:
        if accounts.is_hosted(session, facts.sender):
            return None  # a hosted address's key is the keystore's, never a header's
    effective = header.effective_date(facts.date, now)
    found = facts.header
    if found is None:
        return Observation(facts.sender, effective, note=facts.problem)
    vetting = vetting_cache.get(found.addr, found.keydata)
    if vetting is None:
        if not _vetting_slot.acquire(blocking=False):
            log.info("Autocrypt: the header from %s was not read (another is vetted)", facts.sender)
            return None
        try:
            vetting = untrusted.vet_keys(found.keydata, now, parse_budget(keys), address=found.addr)
        except untrusted.UntrustedDataError as exc:
            return Observation(facts.sender, effective, note=f"keydata refused: {exc}")
        finally:
            _vetting_slot.release()
        vetting_cache.put(found.addr, found.keydata, vetting)
    revoked = tuple(r.fingerprint for r in vetting.rejected if r.code == "revoked")
    mine = [
        v
        for v in vetting.accepted
        if v.address == found.addr and (v.expires_at is None or v.expires_at > now)
    ]
    if not mine:
        reasons = "; ".join(r.reason for r in vetting.rejected) or "no key for the address"
        return Observation(
            facts.sender, effective, revoked=revoked, note=f"no usable key: {reasons}"
        )
    return Observation(
        facts.sender,
        effective,
        vetted=max(mine, key=lambda v: v.created),
        prefer_encrypt=found.prefer_encrypt,
        revoked=revoked,
    )


def record(session: so.Session, observation: Observation, now: dt.datetime) -> peers.Outcome:
    """Apply the observation to the sender's peer state, in the caller's transaction."""
    sink = audit.key_event_sink(AUTOCRYPT_ACTOR)
    # A key first seen revoked here gets a revoked row, so that a later header with an
    # older copy of it (no revocation yet) is refused. The header's addr passed a looser
    # check than the keystore's ("a@" is one): such an address gets no row, and the
    # message is stored all the same.
    try:
        seen_for: tuple[str, directory.SeenSource] | None = (
            normalize_address(observation.sender),
            SOURCE_AUTOCRYPT,
        )
    except KeystoreError:
        seen_for = None
    for fingerprint in observation.revoked:
        directory.mark_revoked(session, fingerprint, now, events=sink, seen_for=seen_for)
    outcome = peers.update(
        session,
        observation.sender,
        observation.effective,
        observation.vetted,
        observation.prefer_encrypt,
        now,
        events=sink,
    )
    if observation.note or outcome not in ("no-peer", "seen", "unchanged"):
        log.info(
            "Autocrypt from %s: %s%s",
            observation.sender,
            outcome,
            f" ({observation.note})" if observation.note else "",
        )
    return outcome
