"""Mail address syntax: one place that normalises what users, CLIs and SMTP give us."""

from __future__ import annotations

import email.headerregistry
import re
import unicodedata
from collections.abc import Collection

from gateway.idn import InvalidDomainName, a_label, u_label

# Deliberately conservative: hosted addresses are created by admins, and the local
# part of an external address is only ever compared, never interpreted.
# Non-ASCII is allowed (RFC 6531, SMTPUTF8); control characters, spaces and quotes are not.
_U = "\u0080-\U0010ffff"
_LOCAL = rf"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~.{_U}-]{{1,64}}"
_LABEL = rf"[A-Za-z0-9{_U}](?:[A-Za-z0-9{_U}-]{{0,61}}[A-Za-z0-9{_U}])?"
_DOMAIN = rf"(?=.{{1,253}}\Z)(?:{_LABEL}\.)+(?:[A-Za-z{_U}]{{2,63}}|xn--[A-Za-z0-9-]{{1,59}})"
_ADDRESS_RE = re.compile(rf"{_LOCAL}@{_DOMAIN}")
_DOMAIN_RE = re.compile(_DOMAIN)


# The longest value an error message repeats whole (an address is at most 320 octets).
MAX_SHOWN = 320

# RFC 5321 4.1.2: a Dot-string local part (RFC 6531: non-ASCII too), and a
# Quoted-string one (printable ASCII and space; `"` and `\\` as quoted pairs).
# RFC 5321 4.5.3.1.1: at most 64 octets.
_ATEXT = rf"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~{_U}-]+"
_DOT_STRING = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_QUOTED_STRING = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
MAX_LOCAL_PART = 64


class InvalidAddress(ValueError):
    pass


def normalize_address(value: str) -> str:
    """Lower-case it (hosted addresses are case-insensitive), refuse anything that is not one."""
    value = value.strip()
    if not _ADDRESS_RE.fullmatch(value) or ".." in value:
        if len(value) > MAX_SHOWN:  # a pasted file or a runaway script: not all of it back
            raise InvalidAddress(
                f"not a valid mail address: {value[:80]!r}... ({len(value)} characters)"
            )
        raise InvalidAddress(f"not a valid mail address: {value!r}")
    return value.lower()


def quote_local_part(local: str) -> str:
    """`local` (unquoted) as RFC 5321 writes it: as it is when a Dot-string, else as a
    Quoted-string; the one spelling of it (`"alice"` is `alice`, RFC 5322 3.2.4)."""
    if _DOT_STRING.fullmatch(local):
        return local
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote_local_part(local: str) -> str:
    """A local part as the mailbox names it: a Quoted-string's content, pairs undone."""
    if _QUOTED_STRING.fullmatch(local):
        return re.sub(r"\\(.)", r"\1", local[1:-1])
    return local


def canonical_recipient(value: str) -> str:
    """A recipient address as typed, case kept, its local part spelt once (see
    `quote_local_part`): what `normalize_address` takes, and an address whose local
    part is a Quoted-string (`"john doe"@example.com`, `"a@b"@example.com`).

    A quoted local part holds printable ASCII and spaces only (RFC 5321; no control
    character, so no line break reaches a header or an SMTP command; nor does an
    unquoted one hold a character Python calls unprintable), and only one
    that Python's email package writes back the same way: it writes `"a..b"` and
    `".a"` without their quotes, which would be another, invalid, address."""
    value = value.strip()
    if not value.isprintable():  # a line or paragraph separator, NEL, a format character
        raise InvalidAddress(f"not a valid mail address: {value[:MAX_SHOWN]!r}")
    local, _at, domain = value.rpartition("@")
    if not local.startswith('"'):
        normalize_address(value)
        return value
    if not _QUOTED_STRING.fullmatch(local):
        raise InvalidAddress(f"not a valid mail address: {value[:MAX_SHOWN]!r}")
    canonical = quote_local_part(unquote_local_part(local))
    if not canonical.startswith('"'):
        return canonical_recipient(f"{canonical}@{domain}")
    normalize_address(f"x@{domain}")
    written = email.headerregistry.Address(username=unquote_local_part(canonical), domain=domain)
    if len(canonical.encode()) > MAX_LOCAL_PART or written.addr_spec != f"{canonical}@{domain}":
        raise InvalidAddress(f"not a valid mail address: {value[:MAX_SHOWN]!r}")
    return f"{canonical}@{domain}"


def normalize_recipient(value: str) -> str:
    """`canonical_recipient`, lower-cased for comparing (as `normalize_address`)."""
    return canonical_recipient(value).lower()


# Unicode categories a name an admin creates may not hold: controls (C0 and C1), format
# characters (bidi overrides, zero-width joiners and spaces, the soft hyphen), separators
# (no-break space, line separator), and unassigned, private-use or surrogate code points.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp", "Zs"})


def normalize_new_address(value: str) -> str:
    """`normalize_address`, for a login, address or alias about to be created: also no
    character a reader cannot see or that reorders the text, and in Unicode NFC.

    Outside addresses are only compared, so `normalize_address` takes what SMTP may
    bring; a hosted name is shown, typed and trusted, and "\u202eadmin" or two
    spellings of "éve" in two rows would be spoofs."""
    address = normalize_address(value)
    hidden = next((c for c in address if unicodedata.category(c) in _HIDDEN_CATEGORIES), None)
    if hidden is not None:
        raise InvalidAddress(
            f"not a valid mail address: {address[:320]!r} (U+{ord(hidden):04X} is an invisible"
            " or control character)"
        )
    if unicodedata.normalize("NFC", address) != address:
        raise InvalidAddress(
            f"not a valid mail address: {address[:320]!r} (not in Unicode NFC; type it as"
            f" {unicodedata.normalize('NFC', address)[:320]})"
        )
    return address


def normalize_domain(value: str) -> str:
    value = value.strip().lower().rstrip(".")
    if len(value) > 253:
        raise InvalidAddress(f"not a valid domain name: {value[:80]!r}... (over 253 characters)")
    if not _DOMAIN_RE.fullmatch(value):
        raise InvalidAddress(f"not a valid domain name: {value!r}")
    return value


def normalize_hosted_domain(value: str) -> str:
    """`normalize_domain`, for a domain to host: also valid IDNA 2008, under its limits
    once converted (63 octets a label, 253 a name), and in one of its two forms exactly.

    Anything else (an emoji, a joiner out of place, a label IDNA 2008 refuses, full-width
    letters it would fold) could not be published, signed or reached under the name
    given, and two rows could hold one domain."""
    name = normalize_domain(value)
    try:
        forms = (a_label(name), u_label(name))
    except InvalidDomainName as exc:
        raise InvalidAddress(str(exc)) from None
    if name not in forms:
        raise InvalidAddress(
            f"not a valid domain name: {name!r} (IDNA 2008 makes it {forms[1]}: give that name)"
        )
    return name


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def other_domain(domain: str) -> str | None:
    """`domain` in its other IDNA form (A-label <-> U-label), lower-cased; None when it has
    only one (plain ASCII), is not a valid name, or the conversion does not lead back to
    it exactly: the UTS #46 mapping drops a soft hyphen and folds full-width letters, and
    those are other domains to a reader, not other forms of this one."""
    domain = domain.lower()
    try:
        if domain.isascii():
            other = u_label(domain)
            back = a_label(other)
        else:
            other = a_label(domain)
            back = u_label(other)
    except InvalidDomainName:
        return None
    return other if back == domain and other != domain else None


def other_form(address: str) -> str | None:
    """`address` with its domain in the other IDNA form (see `other_domain`), or None."""
    local, _, domain = address.rpartition("@")
    other = other_domain(domain) if local and domain else None
    return f"{local}@{other}" if other is not None else None


def in_domain_form(address: str, domain: str) -> str:
    """`address` with its domain written as `domain` (the same domain in either IDNA
    form, as a hosted domain row holds it): one address is stored in one form only."""
    local, _, _ = address.rpartition("@")
    return f"{local}@{domain}"


def owned_form(address: str, owned: Collection[str]) -> str | None:
    """`address` as `owned` holds it: itself, or itself with its domain in the other IDNA
    form (a hosted IDN address is one address under both); None when it is neither."""
    if address in owned:
        return address
    other = other_form(address)
    return other if other is not None and other in owned else None


def one_form(address: str) -> str:
    """`address` with its domain as its A-label when that is its other form (see
    `other_form`), else `address` itself: one name for both forms of one address, where
    something is counted or keyed by name (a lockout count must not double when the
    forms alternate)."""
    address = address.lower()
    other = other_form(address)
    return other if other is not None and other.rpartition("@")[2].isascii() else address
