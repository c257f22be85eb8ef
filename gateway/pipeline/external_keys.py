"""Step `find-external-keys`: OpenPGP keys of external recipients.

Runs before any transaction: a Web Key Directory lookup goes to the network.
For each recipient, in this order:

1. an imported key (an admin chose it: `sealgate keys import`);
2. the key the recipient's own domain serves by WKD (over HTTPS, its certificate
   checked): confirmed within `[keys] wkd_cache_ttl` from the database, otherwise
   asked now, unless a recent lookup for the address failed (remembered for
   `wkd_failure_ttl`), several recipients at once;
3. the key the recipient sent in an `Autocrypt:` header (gateway.autocrypt.peers,
   unless the peer is in the spec's "reset" state), only when the domain has not
   contradicted it: a WKD key the domain served for the address (of any age, not
   revoked, not expired) that is another key keeps the Autocrypt key out of use.

The domain's key comes before the header's because anyone can send a header: one
forged message `From:` the recipient over the MX (no SPF, DKIM or DMARC is checked
there) would otherwise decide where every hosted user's mail to the recipient is
encrypted to. A WKD key is vouched for by whoever runs the recipient's mail domain,
which delivers the recipient's mail anyway; Autocrypt Level 1 defends against
passive eavesdroppers only and leaves other key sources to the implementation. When
the directory cannot be asked now and its last answer was another key, neither key
is used: the recipient gets a secure page, never clear text (docs/autocrypt.md).

Each WKD answer is vetted in the sandboxed parser; what it yields is stored (with
the lookup failures) in one short transaction of its own, so the cache survives
whatever happens to the message. A revoked or expired key is never returned, nor a
stored one Sequoia no longer encrypts to (it would fail the message at every retry).
Recipients without a usable key are simply left out: the caller decides what they
get instead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import sqlalchemy.orm as so

from gateway import audit, db
from gateway.autocrypt import peers
from gateway.pipeline.encrypt import RecipientKey
from gateway.runtime import Runtime
from gateway.settings import KeysSettings
from gateway.wkd_client import WkdClient, WkdError, WkdNotFound
from keystore import directory, messages, pgp, untrusted
from keystore.models import SOURCE_AUTOCRYPT, SOURCE_IMPORT, SOURCE_WKD
from keystore.store import KeystoreError

log = logging.getLogger(__name__)

WKD_ACTOR = "wkd"
MAX_PARALLEL_LOOKUPS = 8


def parse_budget(keys: KeysSettings) -> untrusted.Budget:
    return untrusted.Budget(
        max_bytes=keys.max_key_bytes, timeout=keys.parse_timeout, memory_mb=keys.parse_memory_mb
    )


@dataclass(frozen=True)
class Discovery:
    """What one WKD lookup found: a usable key, or why not."""

    address: str
    vetted: pgp.VettedKey | None = None
    method: str = ""
    revoked: tuple[str, ...] = ()  # fingerprints the answer showed revoked
    failure: str = ""
    gone: bool = False  # the directory has no usable key: drop a cached one
    # What storing the key did (set on the discoveries `discover_all` returns), so a
    # refresh can say how many keys changed.
    outcome: directory.SaveOutcome | None = None


def lookup_external_keys(
    runtime: Runtime, recipients: list[str], now: dt.datetime
) -> dict[str, RecipientKey]:
    """The usable key of each recipient that has one; recipients without a key are left out."""
    if not recipients:
        return {}
    keys = runtime.settings.keys
    found: dict[str, RecipientKey] = {}
    to_fetch: list[str] = []
    with db.read_only(runtime.sessions) as session:
        for rcpt in recipients:
            try:
                stored = _stored_key(session, rcpt, now, keys)
                if (
                    stored is None
                    and keys.wkd
                    and directory.active_miss(session, rcpt, now) is None
                ):
                    to_fetch.append(rcpt)  # the domain is asked before any Autocrypt key is
                    continue
                if stored is None:
                    stored = _autocrypt_key(session, rcpt, now, keys)
            except KeystoreError:
                continue  # not an address a key can belong to
            if stored is not None:
                found[rcpt] = stored
    if to_fetch:
        for discovery in discover_all(runtime, to_fetch, now):
            if discovery.vetted is not None:
                public = directory.parsed(discovery.vetted.fingerprint, discovery.vetted.data)
                found[discovery.address] = RecipientKey(discovery.address, public, SOURCE_WKD)
        unanswered = [rcpt for rcpt in to_fetch if rcpt not in found]
        if unanswered:
            # Read after the answers were stored: a directory that said "no key" has
            # had its old key forgotten; one that could not be reached has not.
            with db.read_only(runtime.sessions) as session:
                for rcpt in unanswered:
                    peer_key = _autocrypt_key(session, rcpt, now, keys)
                    if peer_key is not None:
                        found[rcpt] = peer_key
    return found


def _encryptable(found: RecipientKey | None, rcpt: str) -> RecipientKey | None:
    """`found`, if Sequoia encrypts to it now.

    A key Sequoia refuses (vetted by older rules, or judged otherwise by Sequoia) would
    fail the whole message with a temporary error, at every retry: it is passed over,
    as if it were not there, and the recipient gets the next key or a secure page.
    """
    if found is None or messages.encrypts_to(found.key):
        return found
    log.warning(
        "the %s key %s of %s cannot be encrypted to; not used",
        found.source,
        found.fingerprint,
        rcpt,
    )
    return None


def _stored_key(
    session: so.Session, rcpt: str, now: dt.datetime, keys: KeysSettings
) -> RecipientKey | None:
    """The imported key, else the WKD key confirmed within the cache time: the first
    of them Sequoia encrypts to now."""
    row = directory.usable(session, rcpt, SOURCE_IMPORT, now)
    if row is not None:
        imported = _encryptable(RecipientKey(rcpt, directory.public_key_of(row), row.source), rcpt)
        if imported is not None:
            return imported
    if keys.wkd:
        fresh_since = now - dt.timedelta(seconds=keys.wkd_cache_ttl)
        row = directory.usable(session, rcpt, SOURCE_WKD, now, checked_since=fresh_since)
        if row is not None:
            return _encryptable(RecipientKey(rcpt, directory.public_key_of(row), row.source), rcpt)
    return None


def _autocrypt_key(
    session: so.Session, rcpt: str, now: dt.datetime, keys: KeysSettings
) -> RecipientKey | None:
    """The recipient's usable Autocrypt key, unless their domain's directory served
    another key for them (one not revoked or expired, however long ago it was
    confirmed): a header cannot outvote the domain, even while the domain is out of
    reach."""
    peer = peers.usable_key(session, rcpt, now)
    if peer is None:
        return None
    if keys.wkd:
        served = directory.usable(session, rcpt, SOURCE_WKD, now)
        if served is not None and served.fingerprint != peer.fingerprint:
            log.info(
                "the Autocrypt key %s of %s is not used: its domain served %s",
                peer.fingerprint,
                rcpt,
                served.fingerprint,
            )
            return None
    return _encryptable(RecipientKey(rcpt, peers.public_key_of(peer), SOURCE_AUTOCRYPT), rcpt)


def discover_all(runtime: Runtime, addresses: list[str], now: dt.datetime) -> list[Discovery]:
    """Ask WKD for every address (in parallel), vet the answers, store what they show."""
    keys = runtime.settings.keys
    client = WkdClient.from_settings(keys, runtime.wkd_transport)
    budget = parse_budget(keys)
    workers = min(MAX_PARALLEL_LOOKUPS, len(addresses))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wkd") as pool:
        discoveries = list(pool.map(lambda a: discover(client, a, now, budget), addresses))
    return _remember(runtime, discoveries, now)


def discover(
    client: WkdClient, address: str, now: dt.datetime, budget: untrusted.Budget
) -> Discovery:
    """One WKD lookup and the vetting of its answer; never raises for a bad answer."""
    try:
        answer = client.fetch(address)
    except WkdNotFound as exc:
        return Discovery(address, failure=str(exc), gone=True)
    except WkdError as exc:
        return Discovery(address, failure=str(exc))
    except Exception:  # a lookup must never take the message down with it
        log.exception("WKD lookup for %s failed unexpectedly", address)
        return Discovery(address, failure="the lookup failed")
    try:
        vetting = untrusted.vet_keys(answer.body, now, budget, address=address)
    except untrusted.UntrustedDataError as exc:
        return Discovery(address, method=answer.method, failure=f"answer refused: {exc}", gone=True)
    revoked = tuple(r.fingerprint for r in vetting.rejected if r.code == "revoked")
    if not vetting.accepted:
        reasons = "; ".join(f"{r.fingerprint[-16:]}: {r.reason}" for r in vetting.rejected)
        return Discovery(
            address,
            method=answer.method,
            revoked=revoked,
            failure=f"no usable key ({reasons or 'none for this address'})",
            gone=True,
        )
    newest = max(vetting.accepted, key=lambda v: v.created)
    return Discovery(address, vetted=newest, method=answer.method, revoked=revoked)


def _remember(runtime: Runtime, discoveries: list[Discovery], now: dt.datetime) -> list[Discovery]:
    """Store the keys found and the lookups that failed; returns the usable discoveries."""
    keys = runtime.settings.keys
    retry_after = now + dt.timedelta(seconds=keys.wkd_failure_ttl)
    sink = audit.key_event_sink(WKD_ACTOR)
    usable: list[Discovery] = []
    with db.transaction(runtime.sessions) as session:
        for found in discoveries:
            for fingerprint in found.revoked:
                directory.mark_revoked(
                    session, fingerprint, now, events=sink, seen_for=(found.address, SOURCE_WKD)
                )
            failure, gone = found.failure, found.gone
            if found.vetted is not None:
                outcome = directory.save(session, found.vetted, SOURCE_WKD, now, events=sink)
                if outcome != "revoked":
                    directory.clear_miss(session, found.address)
                    usable.append(dataclasses.replace(found, outcome=outcome))
                    log.info(
                        "WKD (%s): key %s for %s (%s)",
                        found.method,
                        found.vetted.fingerprint,
                        found.address,
                        outcome,
                    )
                    continue
                failure, gone = f"key {found.vetted.fingerprint} was revoked earlier", True
            if gone:
                directory.forget(session, found.address, SOURCE_WKD, events=sink)
            directory.record_miss(session, found.address, failure, now, retry_after)
            log.info("WKD: no key for %s: %s", found.address, failure)
    return usable
