"""Sign an outgoing message with the DKIM keys of the hosted domain its From names.

The signing domain is the From address's domain, or the nearest hosted parent
of it (mail from `noreply@mail.example.org` is signed as `example.org`): either
way the signature aligns with From under DMARC's relaxed rule, which is what
receivers check. Mail whose From is not under a hosted domain is sent as it is;
the gateway has no business signing for domains it does not host.

An internationalized domain is hosted under whichever form an admin typed (U-label
`bücher.example` or A-label `xn--bcher-kva.example`) and a From may name either:
both forms find it, and `d=` is always the A-label (RFC 6376 §3.5, RFC 8616 §4),
the name its key is published under in DNS.

Importing this module puts in `openssl_rsa`'s hook: dkimpy signs, OpenSSL does the
RSA arithmetic under it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import logging
import threading

import dkim
import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import idn, rawheaders
from gateway.dkim import keys, openssl_rsa
from gateway.models import Domain
from keystore import leftbehind, seal
from keystore.masterkey import MasterKeyRing

log = logging.getLogger(__name__)
openssl_rsa.install()

# RFC 1035: 253 characters of domain; more is not a domain worth looking up.
MAX_DOMAIN_CHARS = 253
# How often a DKIM key that cannot be opened is said again in the log (per domain).
ERROR_EVERY = dt.timedelta(hours=1)


def from_domain(raw: bytes) -> str | None:
    """The domain of the single From address, lower-cased; None if there is not exactly one."""
    value = rawheaders.get(raw, "From")
    if not value:
        return None
    found = [addr for _name, addr in email.utils.getaddresses([value]) if "@" in addr]
    if len(found) != 1:
        return None
    domain = found[0].rpartition("@")[2].strip().rstrip(".").lower()
    if not domain or len(domain) > MAX_DOMAIN_CHARS:
        return None
    return domain


def _forms(name: str) -> set[str]:
    """`name` and its A-label and U-label (those it has)."""
    forms = {name}
    for convert in (idn.a_label, idn.u_label):
        with contextlib.suppress(idn.InvalidDomainName):
            forms.add(convert(name))
    return forms


def signing_domain(session: so.Session, domain: str) -> Domain | None:
    """`domain` or its nearest parent that is hosted here, under either form of its name."""
    labels = domain.split(".")
    candidates = [".".join(labels[i:]) for i in range(len(labels) - 1)]
    if not candidates:
        return None
    forms = {name: _forms(name) for name in candidates}
    wanted = set().union(*forms.values())
    rows = {
        row.name.lower(): row
        for row in session.scalars(sa.select(Domain).where(Domain.name.in_(wanted)))
    }
    for name in candidates:
        for form in sorted(forms[name]):
            if form in rows:
                return rows[form]
    return None


class ErrorThrottle:
    """One error line per subject per `every`, in this process.

    A DKIM key that cannot be opened fails for every message from its domain: one
    line an hour tells the admin as much as one per message, and does not bury the
    rest of the log.
    """

    def __init__(self, every: dt.timedelta = ERROR_EVERY) -> None:
        self.every = every
        self._last: dict[str, dt.datetime] = {}
        self._lock = threading.Lock()

    def due(self, subject: str, now: dt.datetime) -> bool:
        """True (and noted) if nothing was said about `subject` within `every` of `now`."""
        with self._lock:
            last = self._last.get(subject)
            if last is not None and now - last < self.every:
                return False
            self._last[subject] = now
            return True


def signing_keys(
    session: so.Session,
    ring: MasterKeyRing,
    raw: bytes,
    *,
    now: dt.datetime,
    errors: ErrorThrottle,
) -> list[keys.SigningKey]:
    """The opened keys that should sign `raw` (none if its From is not ours).

    A key that does not open is left out (the message goes out with the others, or
    unsigned: only a new key and its DNS record mend that, so holding the mail back
    would only delay it) and said at error level, once per domain per `errors.every`.
    """
    domain = from_domain(raw)
    hosted = signing_domain(session, domain) if domain else None
    if hosted is None:
        return []
    opened = []
    failed = []
    for row in keys.current_keys(session, hosted.id):
        try:
            opened.append(keys.open_key(ring, row, hosted.name))
        except seal.SealedRecordError:
            failed.append(row)
    if failed and errors.due(hosted.name, now):
        named = ", ".join(
            f"{row.algorithm} key {row.selector}"
            f" ({leftbehind.why_unopenable(ring, row.master_version)})"
            for row in failed
        )
        signed = (
            f"signed by {', '.join(k.selector for k in opened)} only"
            if opened
            else "sent without a DKIM signature"
        )
        log.error(
            "dkim: the %s of %s cannot be opened: mail from %s is %s; %s; said again in %s"
            " if still so",
            named,
            hosted.name,
            hosted.name,
            signed,
            keys.RENEW_HINT.format(domain=hosted.name),
            _every_text(errors.every),
        )
    return opened


def _every_text(every: dt.timedelta) -> str:
    minutes = round(every.total_seconds() / 60)
    return "an hour" if minutes == 60 else f"{minutes} minutes"


def sign(raw: bytes, signing: list[keys.SigningKey]) -> bytes:
    """`raw` with one DKIM-Signature per key prepended; unchanged if dkimpy refuses it.

    Every signature covers the message as it is without the others, so their
    order does not matter to a verifier.
    """
    fields = []
    for key in signing:
        try:
            domain = idn.a_label(key.domain)
        except idn.InvalidDomainName:
            log.warning("dkim: not signed as %s (no IDNA 2008 form)", key.domain)
            return raw
        try:
            fields.append(
                dkim.sign(
                    raw,
                    key.selector.encode("ascii"),
                    domain.encode("ascii"),
                    key.private,
                    signature_algorithm=key.signature_algorithm,
                    canonicalize=(b"relaxed", b"relaxed"),
                )
            )
        except (dkim.DKIMException, UnicodeError) as exc:
            # A message dkimpy cannot parse still goes out; receivers judge it unsigned.
            log.warning("dkim: not signed as %s (%s)", key.domain, type(exc).__name__)
            return raw
    return b"".join(fields) + raw
