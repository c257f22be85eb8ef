"""The sealgate backend for pymap: logins, folders and messages from the database.

pymap drives the protocol and calls these classes; every database call runs in
a worker thread through `Access`, in a transaction of its own. Commands that
touch many messages (FETCH, STORE, COPY, MOVE, SEARCH, EXPUNGE) are answered
with one query per batch rather than one per message, and message bodies are
read in batches of bounded size just before pymap writes them out.

Encrypted mail goes out as it is stored (PGP/MIME); a SEARCH of the text of an
encrypted message matches its subject only, as in the webmail.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from argparse import Namespace
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import sqlalchemy.orm as so
from proxyprotocol.noop import ProxyProtocolNoop
from pymap.backend.mailbox import MailboxDataInterface, MailboxSetInterface
from pymap.backend.session import BaseSession
from pymap.bytes import Writeable, WriteStream
from pymap.concurrent import Event
from pymap.config import BackendCapability, IMAPConfig
from pymap.context import current_command, socket_info
from pymap.exceptions import (
    InvalidAuth,
    MailboxConflict,
    MailboxNotFound,
    MailboxReadOnly,
    NotAllowedError,
    ResponseError,
)
from pymap.flags import FlagOp
from pymap.health import HealthStatus
from pymap.interfaces.login import IdentityInterface, LoginInterface
from pymap.interfaces.message import CachedMessage
from pymap.interfaces.token import TokenCredentials, TokensInterface
from pymap.listtree import ListTree
from pymap.mailbox import MailboxSnapshot
from pymap.message import BaseLoadedMessage, BaseMessage
from pymap.mime import MessageContent
from pymap.parsing.message import AppendMessage
from pymap.parsing.response import ResponseCode, ResponseNo
from pymap.parsing.response.code import AppendUid, CopyUid
from pymap.parsing.response.fetch import (
    BodyStructure,
    ContentBodyStructure,
    EnvelopeStructure,
    MessageBodyStructure,
    MultipartBodyStructure,
    TextBodyStructure,
)
from pymap.parsing.specials import FetchRequirement, ObjectId, SearchKey, SequenceSet
from pymap.parsing.specials.flag import Deleted, Flag, Seen, Wildcard, get_system_flags
from pymap.search import SearchCriteriaSet, SearchParams
from pymap.selected import SelectedMailbox, SelectedSet
from pymap.user import UserMetadata
from pysasl import SASLAuth
from pysasl.creds.server import ServerCredentials
from pysasl.hashing import BuiltinHash

from gateway import db, logins, rawheaders
from gateway.addresses import owned_form
from gateway.imap import mime, store
from gateway.imap.folders import DELIMITER, INBOX, FlagsError, FolderError, FolderLimitError
from gateway.imap.notify import Notifier
from gateway.imap.patterns import FolderTree
from gateway.pipeline.errors import RejectMessage
from gateway.pipeline.structure import check_structure
from gateway.ratelimit import FailureWindow
from gateway.runtime import Runtime
from gateway.timeutil import Clock, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")
BATCH_BYTES = 8 * 1024 * 1024
# A body's line ends are counted this much at a time, not in a copy of the whole.
_COUNT_CHUNK = 1024 * 1024
# pymap's header ends with the first line that holds nothing but white space.
_PYMAP_HEADER_END = re.compile(rb"(?:\A|\n)[ \t\r\x0b\x0c]*\n")
# FETCH attributes answered from the folder listing and kept envelopes alone.
LISTING_ATTRIBUTES = frozenset({b"UID", b"FLAGS", b"INTERNALDATE", b"ENVELOPE", b"RFC822.SIZE"})
SPECIAL_USE_CAPABILITY = b"SPECIAL-USE"


class Refused(ResponseError):
    """A NO with a response code and a text the user may read (no secret, no internals)."""

    def __init__(self, text: str, code: bytes | None = None) -> None:
        super().__init__(text)
        self._text = text.encode("utf-8")
        self._code = code

    def get_response(self, tag: bytes) -> ResponseNo:
        code = ResponseCode.of(self._code) if self._code else None
        return ResponseNo(tag, self._text, code)


class Access:
    """Runs database work off the event loop, one transaction per call."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        def run() -> T:
            with db.transaction(self.runtime.sessions) as session:
                return fn(session, *args)

        return await asyncio.to_thread(run)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        def run() -> T:
            with db.read_only(self.runtime.sessions) as session:
                return fn(session, *args)

        return await asyncio.to_thread(run)


class Config(IMAPConfig):
    """pymap's settings from ours: TLS from the SMTP certificate, PLAIN and LOGIN only."""

    def __init__(self, runtime: Runtime, ssl_context: Any) -> None:
        settings = runtime.settings
        args = Namespace(passlib_cfg=None, proxy_protocol=None, debug=False)
        super().__init__(
            args,
            host=settings.smtp.listen,
            port=settings.imap.port,
            ssl_context=ssl_context,
            tls_enabled=True,
            hash_context=BuiltinHash(),
            proxy_protocol=ProxyProtocolNoop(),
            reject_dnsbl=False,
            invalid_user_sleep=0.0,
            max_append_len=settings.imap.max_append_size,
            bad_command_limit=10,
        )
        self._hostname = settings.imap.hostname or settings.smtp.hostname

    @property
    def backend_capability(self) -> BackendCapability:
        return BackendCapability(
            idle=True, object_id=False, multi_append=True, custom=[SPECIAL_USE_CAPABILITY]
        )

    @property
    def tls_auth(self) -> SASLAuth:
        return SASLAuth.named([b"PLAIN", b"LOGIN"])

    @property
    def greeting(self) -> bytes:
        return b"sealgate IMAP ready " + self._hostname.encode("ascii", "replace")


class _NoTokens(TokensInterface):
    """sealgate logs mail programs in with passwords only: no bearer tokens."""

    def get_login_token(self, *args: Any, **kwargs: Any) -> str | None:
        return None

    def get_admin_token(self, *args: Any, **kwargs: Any) -> str | None:
        return None

    def parse(self, *args: Any, **kwargs: Any) -> TokenCredentials:
        raise ValueError("tokens are not accepted")


class _PasswordCheck:
    """A pysasl identity whose secret comparison is sealgate's one mail-program login."""

    def __init__(self, authcid: str, check: Callable[[str], bool]) -> None:
        self._authcid = authcid
        self._check = check

    @property
    def authcid(self) -> str:
        return self._authcid

    def compare_authcid(self, authcid: str) -> bool:
        return authcid == self._authcid

    def compare_secret(self, secret: str) -> bool:
        return self._check(secret)

    def get_clear_secret(self) -> str | None:
        return None


@dataclass(frozen=True)
class Who:
    account_id: int
    address_id: int
    address: str
    credential: logins.Credential | None = None


class Login(LoginInterface):
    """LOGIN / AUTHENTICATE PLAIN through `gateway.logins.check` ("IMAP"), as SMTP AUTH."""

    def __init__(
        self,
        runtime: Runtime,
        config: Config,
        notifier: Notifier,
        clock: Clock,
        failures: FailureWindow,
    ) -> None:
        self.runtime = runtime
        self.config = config
        self.notifier = notifier
        self.clock = clock
        self.failures = failures
        self.access = Access(runtime)
        self._tokens = _NoTokens()

    @property
    def tokens(self) -> TokensInterface:
        return self._tokens

    async def authenticate(self, credentials: ServerCredentials) -> Identity:
        if isinstance(credentials, TokenCredentials):
            raise InvalidAuth()
        info = socket_info.get(None)
        ip = str(info.peername_ip) if info is not None and info.peername_ip else "unknown"
        if self.failures.blocked(ip):
            raise Refused("Too many failed logins from your address; try later.", b"UNAVAILABLE")
        login = credentials.authcid
        outcome: list[logins.LoginResult] = []

        def check(password: str) -> bool:
            """The one login function, in a worker thread; pysasl hands the password."""
            result = logins.check_for(
                self.runtime, logins.Attempt("IMAP", login, password, ip), now=self.clock()
            )
            outcome.append(result)
            return result.ok

        await asyncio.to_thread(credentials.verify, _PasswordCheck(login, check))
        result = outcome[0] if outcome else None
        if result is not None and result.account_id is not None and result.subject_id is not None:
            return Identity(
                self, Who(result.account_id, result.subject_id, result.login, result.credential)
            )
        self.failures.record(ip)
        log.info("IMAP login failed for %r from %s", login[:80], ip)
        refusal = result.refusal if result is not None else None
        if refusal == "locked":
            raise Refused("Too many failed logins for this account; try later.", b"UNAVAILABLE")
        if refusal == "app_password_required":
            raise Refused(
                "This account uses two-factor login: use an app password.",
                b"AUTHENTICATIONFAILED",
            )
        raise InvalidAuth()

    async def authorize(self, authenticated: IdentityInterface, authzid: str) -> Identity:
        # The login name in either IDNA form of its domain, as `logins.check` took it.
        if not isinstance(authenticated, Identity) or (
            owned_form(authzid.lower(), {authenticated.name}) is None
        ):
            raise InvalidAuth("Authorization failed.")
        return authenticated


class Identity(IdentityInterface):
    def __init__(self, login: Login, who: Who) -> None:
        self._login = login
        self.who = who

    @property
    def name(self) -> str:
        return self.who.address

    @property
    def roles(self) -> frozenset[str]:
        return frozenset()

    @asynccontextmanager
    async def new_session(self) -> AsyncIterator[Session]:
        login = self._login
        yield Session(
            self.who, MailboxSet(login.access, login.notifier, self.who, login.runtime), login
        )

    async def new_token(self, *, expiration: dt.datetime | None = None) -> str | None:
        return None

    async def get(self) -> UserMetadata:
        raise NotAllowedError("not available")

    async def set(self, metadata: UserMetadata) -> int | None:
        raise NotAllowedError("not available")

    async def delete(self) -> None:
        raise NotAllowedError("not available")


class _Kept(Writeable):
    """An envelope as kept in the database, written out as it is."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def write(self, writer: WriteStream) -> None:
        writer.write(self._data)

    def __bytes__(self) -> bytes:
        return self._data


_ENVELOPE_FIELDS = (
    "date",
    "subject",
    "from_",
    "sender",
    "reply_to",
    "to",
    "cc",
    "bcc",
    "in_reply_to",
    "message_id",
)


def _parsed_field(parsed: Any, name: str) -> Any:
    try:
        return getattr(parsed, name)
    except Exception:  # noqa: BLE001  (a header pymap cannot read is a missing one)
        return None


def _renders(values: dict[str, Any]) -> bool:
    try:
        bytes(EnvelopeStructure(**values))
    except Exception:  # noqa: BLE001  (drawn headers: see tests/gateway/imap/test_listing.py)
        return False
    return True


def envelope_of(content: MessageContent) -> EnvelopeStructure:
    """pymap's IMAP ENVELOPE of parsed content.

    A field pymap cannot render (a group or several addresses in Sender, an
    unreadable Date) would fail the whole FETCH, every message of the folder with
    it; it is left out instead, as if missing (Sender and Reply-To then repeat
    From, RFC 3501 7.4.2).
    """
    parsed = content.header.parsed
    values = {name: _parsed_field(parsed, name) for name in _ENVELOPE_FIELDS}
    if _renders(values):
        return EnvelopeStructure(**values)
    for name in _ENVELOPE_FIELDS:
        alone = {other: values[other] if other == name else None for other in _ENVELOPE_FIELDS}
        if values[name] is not None and not _renders(alone):
            values[name] = None
    return EnvelopeStructure(**values) if _renders(values) else EnvelopeStructure.empty()


def envelope_bytes(raw: bytes) -> bytes:
    """The IMAP ENVELOPE of a message as pymap writes it, computed from its header alone."""
    return bytes(envelope_of(mime.parse(rawheaders.header_block(raw))))


def _envelopes_of(raws: dict[int, bytes]) -> dict[int, bytes]:
    return {uid: envelope_bytes(raw) for uid, raw in raws.items()}


class LoadedMessage(BaseLoadedMessage):
    """Content as stored; a text search of an encrypted message sees its subject only.

    For a listing (FLAGS, ENVELOPE, sizes) no content is loaded at all: the kept
    envelope and the stored size answer it.
    """

    def __init__(
        self,
        message: Message,
        requirement: FetchRequirement,
        content: MessageContent | None,
        encrypted: bool,
        *,
        envelope: bytes | None = None,
        size: int | None = None,
    ) -> None:
        super().__init__(message, requirement, content)
        self._encrypted = encrypted
        self._envelope = envelope
        self._size = size

    def _get_subpart(self, section: Sequence[int] | None) -> MessageContent:
        """The part a section number names, counted on inside a message/rfc822 part
        (`mime.part`); pymap's own count went one level too deep there."""
        return mime.part(self.content, section or ())

    def get_message_headers(
        self,
        section: Sequence[int] | None = None,
        subset: Collection[bytes] | None = None,
        inverse: bool = False,
    ) -> Writeable:
        if not section:
            return super().get_message_headers(section, subset, inverse)
        held = self._held_message(section)
        if held is None:
            return Writeable.empty()
        if subset is None:
            return held.header
        headers = Writeable.concat(
            Writeable.wrap(bytes(value))
            for key, value in held.header.folded
            if inverse != (key.upper() in subset)
        )
        return Writeable.concat((headers, Writeable.wrap(b"\r\n")))

    def get_message_text(self, section: Sequence[int] | None = None) -> Writeable:
        if not section:
            return super().get_message_text(section)
        held = self._held_message(section)
        return Writeable.empty() if held is None else held.body

    def _held_message(self, section: Sequence[int]) -> MessageContent | None:
        """The message N.HEADER and N.TEXT serve, if part N holds one. pymap asked the
        part's header, which says message/rfc822 past `mime.MAX_DEPTH` (where the part
        is opaque bytes) and says nothing for a digest's part without a Content-Type
        (a message all the same, RFC 2046 §5.1.5); the parsed type is the one to ask."""
        if self._content is None:
            return None
        try:
            entity = mime.part(self._content, section)
        except IndexError:
            return None
        return entity.body.nested[0] if mime.holds_message(entity) else None

    def get_envelope_structure(self) -> EnvelopeStructure:
        if self._envelope is not None:
            return cast(EnvelopeStructure, _Kept(self._envelope))
        if self._content is None:
            return super().get_envelope_structure()
        return envelope_of(self._content)

    def get_size(self, section: Sequence[int] | None = None) -> int:
        if not section and self._content is None and self._size is not None:
            return self._size
        return super().get_size(section)

    def get_body_structure(self) -> BodyStructure:
        """pymap's BODYSTRUCTURE, with the size and lines of each part's body.

        pymap counts the part's header in (a 54-byte message with a 43-byte header
        showed 54 octets and 4 lines); RFC 9051 §7.5.2 body-fld-octets and
        body-fld-lines are those of the body alone, what BODY[TEXT] and BODY[n] serve
        (11 and 1)."""
        structure = super().get_body_structure()
        if self._content is not None:
            _count_bodies(structure, self._content)
        return structure

    def contains(self, value: bytes) -> bool:
        if not self._encrypted:
            return super().contains(value)
        subjects = " ".join(self.get_header(b"subject")).encode("utf-8", "replace")
        return value.lower() in subjects.lower()


def _count_bodies(structure: BodyStructure, part: MessageContent) -> None:
    """Set the size (and lines, of text and message/rfc822) of each part of `structure`,
    made by pymap from `part`, to those of its body as served; a message/rfc822 body
    is the whole message it holds."""
    if isinstance(structure, MultipartBodyStructure):
        for sub, nested in zip(structure.parts, part.body.nested, strict=True):
            _count_bodies(sub, nested)
        return
    if not isinstance(structure, ContentBodyStructure):
        return
    body = part.body._raw
    structure.size = len(body)
    if isinstance(structure, TextBodyStructure | MessageBodyStructure):
        structure.lines = sum(
            body[i : i + _COUNT_CHUNK].tobytes().count(b"\n")
            for i in range(0, len(body), _COUNT_CHUNK)
        )
    if isinstance(structure, MessageBodyStructure):
        _count_bodies(structure.body_structure, part.body.nested[0])


# sealgate has no OBJECTID (RFC 8474): one "no id" for every message, not two new objects each.
_NO_OBJECT_ID = ObjectId(None)
_FLAG_OBJECTS: dict[str, Flag] = {}
MAX_FLAG_OBJECTS = 10_000


def _flag(name: str) -> Flag:
    """pymap's Flag for a stored name, made once (a listing has a few names, many times)."""
    flag = _FLAG_OBJECTS.get(name)
    if flag is None:
        flag = Flag(name)
        if len(_FLAG_OBJECTS) < MAX_FLAG_OBJECTS:  # keywords come from clients: bounded
            _FLAG_OBJECTS[name] = flag
    return flag


_FLAG_SETS: dict[frozenset[str], frozenset[Flag]] = {}


def _flag_set(names: frozenset[str]) -> frozenset[Flag]:
    """pymap's flags for a stored set, made once per distinct set (a folder has few)."""
    flags = _FLAG_SETS.get(names)
    if flags is None:
        flags = frozenset(_flag(name) for name in names)
        if len(_FLAG_SETS) < MAX_FLAG_OBJECTS:  # keywords come from clients: bounded
            _FLAG_SETS[names] = flags
    return flags


class Message(BaseMessage):
    __slots__ = ["_encrypted", "_mailbox", "_size"]

    def __init__(
        self,
        uid: int,
        internal_date: dt.datetime,
        permanent_flags: Iterable[Flag],
        *,
        expunged: bool = False,
        mailbox: MailboxData | None = None,
        encrypted: bool = False,
        size: int = 0,
    ) -> None:
        super().__init__(
            uid,
            internal_date,
            permanent_flags,
            email_id=_NO_OBJECT_ID,
            thread_id=_NO_OBJECT_ID,
            expunged=expunged,
        )
        self._mailbox = mailbox
        self._encrypted = encrypted
        self._size = size

    @property
    def size(self) -> int:
        """The stored size (RFC822.SIZE), known without loading the message."""
        return self._size

    @property
    def kept_envelope(self) -> bytes | None:
        """The kept ENVELOPE bytes, when the FETCH at hand loaded them."""
        return self._mailbox.envelopes.get(self.uid) if self._mailbox is not None else None

    @classmethod
    def of(cls, meta: store.MessageMeta, mailbox: MailboxData) -> Message:
        return cls(
            meta.uid,
            meta.received_at,
            _flag_set(meta.flags),
            mailbox=mailbox,
            encrypted=meta.encrypted,
            size=meta.size,
        )

    @classmethod
    def copy_expunged(cls, msg: CachedMessage) -> Message:
        return cls(msg.uid, msg.internal_date, msg.permanent_flags, expunged=True)

    async def load_content(self, requirement: FetchRequirement) -> LoadedMessage:
        mailbox = self._mailbox
        if mailbox is None or self.expunged or not (requirement & FetchRequirement.CONTENT):
            return LoadedMessage(self, requirement, None, self._encrypted)
        kept = mailbox.envelopes.get(self.uid)
        if mailbox.listing_only and kept is not None:
            return LoadedMessage(
                self, requirement, None, self._encrypted, envelope=kept, size=self._size
            )
        raw = await mailbox.load_raw(self.uid)
        if raw is None:
            return LoadedMessage(self, requirement, None, self._encrypted)
        if requirement & FetchRequirement.BODY:
            content = mime.parse(raw)
        else:
            content = mime.parse(_header_part(raw))
        return LoadedMessage(self, requirement, content, self._encrypted)


def _header_part(raw: bytes) -> bytes:
    """The header of a message with its empty line, where pymap's parse of the whole
    message ends it, without the body (which may be tens of MiB)."""
    end = _PYMAP_HEADER_END.search(raw)
    return raw if end is None else raw[: end.end()]


class MailboxData(MailboxDataInterface[Message]):
    """One folder for the duration of one command (its state lives in the database)."""

    def __init__(self, set_: MailboxSet, info: store.FolderInfo) -> None:
        self._set = set_
        self.info = info
        self._selected_set = SelectedSet()
        self._metas: list[store.MessageMeta] | None = None
        self._metas_modseq = info.modseq
        self._pending: list[int] = []
        self._sizes: dict[int, int] = {}
        self._cache: dict[int, bytes] = {}
        # For the FETCH at hand: kept envelopes, and whether it asks for nothing else.
        self.envelopes: dict[int, bytes] = {}
        self.listing_only = False

    @property
    def mailbox_id(self) -> ObjectId:
        return ObjectId(str(self.info.id).encode())

    @property
    def readonly(self) -> bool:
        return False

    @property
    def uid_validity(self) -> int:
        return self.info.uid_validity

    @property
    def permanent_flags(self) -> frozenset[Flag]:
        return (get_system_flags() | {Wildcard}) - {Flag(b"\\Recent")}

    @property
    def selected_set(self) -> SelectedSet:
        return self._selected_set

    async def _state(self) -> tuple[int | None, list[store.MessageMeta]]:
        folder_id = self.info.id

        known = self._set.listings.get(folder_id)

        def load(session: so.Session) -> tuple[int | None, list[store.MessageMeta]]:
            current = store.modseq(session, folder_id)
            if current is None:
                return None, []
            if known is not None and known[0] == current:
                return current, known[1]  # every change raises modseq: this is still true
            return current, store.metas(session, folder_id)

        current, metas = await self._set.access.read(load)
        if current is not None:
            self._set.listings[folder_id] = (current, metas)
        self._metas, self._metas_modseq = metas, current or 0
        return current, metas

    async def update_selected(
        self, selected: SelectedMailbox, *, wait_on: Event | None = None
    ) -> SelectedMailbox:
        folder_id = self.info.id
        if wait_on is not None:
            await self._set.notifier.wait(
                folder_id, wait_on.wait(), self._set.runtime.settings.imap.idle_poll_interval
            )
            self._metas = None
        if self._metas is not None and selected.mod_sequence == self._metas_modseq:
            return selected
        current = await self._set.access.read(store.modseq, folder_id)
        if current is None:
            selected.set_deleted()
            return selected
        if selected.mod_sequence == current:
            return selected
        if self._metas is None or self._metas_modseq != current:
            current, metas = await self._state()
        else:
            metas = self._metas
        selected.mod_sequence = current
        selected.set_messages([Message.of(m, self) for m in metas])
        return selected

    async def snapshot(self) -> MailboxSnapshot:
        _current, metas = await self._state()
        unseen = [i for i, m in enumerate(metas, 1) if "\\Seen" not in m.flags]
        next_uid = max(self.info.uid_next, (metas[-1].uid + 1) if metas else 1)
        return MailboxSnapshot(
            self.mailbox_id,
            self.readonly,
            self.uid_validity,
            self.permanent_flags,
            self.session_flags,
            len(metas),
            0,
            len(unseen),
            unseen[0] if unseen else None,
            next_uid,
        )

    # -- bodies, read in bounded batches in the order pymap writes them ------------

    def expect(self, uids: Sequence[int], sizes: dict[int, int]) -> None:
        self._pending = list(uids)
        self._sizes = sizes
        self._cache.clear()

    async def load_raw(self, uid: int) -> bytes | None:
        if uid in self._cache:
            return self._cache.pop(uid)
        batch: list[int] = [uid]
        if uid in self._pending:
            start = self._pending.index(uid)
            total = self._sizes.get(uid, 0)
            for following in self._pending[start + 1 :]:
                total += self._sizes.get(following, 0)
                if total > BATCH_BYTES:
                    break
                batch.append(following)
            del self._pending[start : start + len(batch)]
        raws = await self._set.access.read(store.raw_messages, self.info.id, batch)
        self._cache.update(raws)
        return self._cache.pop(uid, None)

    # -- single-message operations pymap may still call ---------------------------

    async def append(self, append_msg: AppendMessage, *, recent: bool = False) -> Message:
        _validity, [uid] = await self._set.append_all(self.info.name, [append_msg])
        return Message(uid, append_msg.when or utcnow(), append_msg.flag_set, mailbox=self)

    async def copy(self, uid: int, destination: MailboxData, *, recent: bool = False) -> int | None:
        pairs = await self._set.access.write(
            store.copy, self._set.who.account_id, self.info.id, [uid], destination.info.name
        )
        return pairs[0][1] if pairs else None

    async def move(self, uid: int, destination: MailboxData, *, recent: bool = False) -> int | None:
        pairs = await self._set.access.write(
            store.move, self._set.who.account_id, self.info.id, [uid], destination.info.name
        )
        return pairs[0][1] if pairs else None

    async def get(self, uid: int, cached_msg: CachedMessage) -> Message:
        metas = self._metas if self._metas is not None else (await self._state())[1]
        for meta in metas:
            if meta.uid == uid:
                return Message.of(meta, self)
        return Message.copy_expunged(cached_msg)

    async def update(
        self, uid: int, cached_msg: CachedMessage, flag_set: frozenset[Flag], mode: FlagOp
    ) -> Message:
        result = await self.set_flags([uid], flag_set, mode)
        if uid not in result:
            return Message.copy_expunged(cached_msg)
        return Message(uid, cached_msg.internal_date, result[uid], mailbox=self)

    async def set_flags(
        self, uids: Sequence[int], flag_set: Iterable[Flag], mode: FlagOp
    ) -> dict[int, frozenset[Flag]]:
        names = [f.value.decode("ascii", "replace") for f in flag_set]
        try:
            result = await self._set.access.write(
                store.set_flags, self.info.id, list(uids), names, mode.name
            )
        except FlagsError as exc:
            raise Refused(str(exc), b"LIMIT") from None
        self._set.notifier.wake([self.info.id])
        self._metas = None
        return {uid: frozenset(Flag(f) for f in flags) for uid, flags in result.items()}

    async def delete(self, uids: Iterable[int]) -> None:
        wanted = list(uids)
        if wanted:
            await self._set.access.write(store.expunge, self.info.id, wanted)
            self._set.notifier.wake([self.info.id])
            self._metas = None

    async def claim_recent(self, selected: SelectedMailbox) -> None:
        return None

    async def cleanup(self) -> None:
        return None


class MailboxSet(MailboxSetInterface[MailboxData]):
    """The folders of the logged-in address's account."""

    def __init__(self, access: Access, notifier: Notifier, who: Who, runtime: Runtime) -> None:
        self.access = access
        self.notifier = notifier
        self.who = who
        self.runtime = runtime
        # This connection's last listing of each folder, valid while its modseq is.
        self.listings: dict[int, tuple[int, list[store.MessageMeta]]] = {}

    @property
    def delimiter(self) -> str:
        return DELIMITER

    async def folders(self) -> list[store.FolderInfo]:
        return await self.access.write(store.list_folders, self.who.account_id)

    async def set_subscribed(self, name: str, subscribed: bool) -> None:
        await self.access.write(store.set_subscribed, self.who.account_id, name, subscribed)

    async def list_subscribed(self) -> ListTree:
        names = [f.name for f in await self.folders() if f.subscribed]
        return FolderTree(self.delimiter).update(INBOX, *names)

    async def list_mailboxes(self) -> ListTree:
        names = [f.name for f in await self.folders()]
        return FolderTree(self.delimiter).update(INBOX, *names)

    async def get_mailbox(self, name: str) -> MailboxData:
        info = await self.access.write(store.get_folder, self.who.account_id, _inbox(name))
        if info is None:
            raise KeyError(name)
        return MailboxData(self, info)

    async def add_mailbox(self, name: str) -> ObjectId:
        try:
            info = await self.access.write(store.create_folder, self.who.account_id, name)
        except FolderLimitError as exc:
            raise Refused(str(exc), b"LIMIT") from None
        except FolderError as exc:
            if "exists" in str(exc):
                raise ValueError(name) from None
            raise Refused(str(exc), b"CANNOT") from None
        return ObjectId(str(info.id).encode())

    async def delete_mailbox(self, name: str) -> None:
        try:
            await self.access.write(store.delete_folder, self.who.account_id, name)
        except FolderError as exc:
            raise Refused(str(exc), b"CANNOT") from None

    async def rename_mailbox(self, before: str, after: str) -> None:
        try:
            await self.access.write(store.rename_folder, self.who.account_id, before, after)
        except FolderLimitError as exc:
            raise Refused(str(exc), b"LIMIT") from None
        except FolderError as exc:
            if "exists" in str(exc):
                raise ValueError(after) from None
            raise Refused(str(exc), b"CANNOT") from None

    async def append_all(
        self, name: str, messages: Sequence[AppendMessage]
    ) -> tuple[int, list[int]]:
        """Store the messages of one APPEND in one transaction: all of them, or (NO) none.
        (UIDVALIDITY, their UIDs).

        A message nested deeper, or of more parts, than SMTP takes (`[smtp]
        max_mime_depth`, `max_mime_parts`) is refused as SMTP refuses it: no parse of
        it, by a mail program or by FETCH, is to recurse thousands of levels deep."""
        smtp = self.access.runtime.settings.smtp
        for message in messages:
            try:
                await asyncio.to_thread(
                    check_structure,
                    bytes(message.literal),
                    max_depth=smtp.max_mime_depth,
                    max_parts=smtp.max_mime_parts,
                )
            except RejectMessage as exc:
                reason = exc.status.split(" ", 2)[-1]
                raise Refused(f"APPEND: {reason}.", b"LIMIT") from None
        wanted = [
            (
                bytes(message.literal),
                [f.value.decode("ascii", "replace") for f in message.flag_set],
                message.when or utcnow(),
            )
            for message in messages
        ]
        try:
            return await self.access.write(
                store.append_all, self.who.account_id, self.who.address_id, _inbox(name), wanted
            )
        except FlagsError as exc:
            raise Refused(str(exc), b"LIMIT") from None


def _inbox(name: str) -> str:
    return INBOX if name.upper() == INBOX else name


class Session(BaseSession[Message]):
    """One logged-in IMAP connection; the batch forms of pymap's per-message loops."""

    resource = __name__

    def __init__(self, who: Who, mailbox_set: MailboxSet, login: Login) -> None:
        super().__init__(who.address)
        self.who = who
        self._mailbox_set = mailbox_set
        self._config = login.config
        self._runtime = login.runtime
        self._checked_at = time.monotonic()  # the login was just verified

    async def login_holds(self) -> bool:
        """Whether the login of this connection still holds (`gateway.logins.still_valid`:
        account and domain enabled, address still the account's, credential unchanged),
        asked again once `[security] session_recheck_seconds` have passed."""
        credential = self.who.credential
        if credential is None:
            return True
        now = time.monotonic()
        if now - self._checked_at < self._runtime.settings.security.session_recheck_seconds:
            return True
        found = await asyncio.to_thread(logins.still_valid, self._runtime.sessions, credential)
        if found is None:
            return False
        self._checked_at = now
        return True

    @property
    def config(self) -> IMAPConfig:
        return self._config

    @property
    def mailbox_set(self) -> MailboxSet:
        return self._mailbox_set

    async def _selected_box(self, selected: SelectedMailbox) -> MailboxData:
        try:
            return await self._mailbox_set.get_mailbox(selected.lookup)
        except KeyError:
            raise MailboxNotFound(selected.lookup) from None

    async def list_mailboxes(
        self,
        ref_name: str,
        filter_: str,
        subscribed: bool = False,
        selected: SelectedMailbox | None = None,
    ) -> tuple[Iterable[tuple[str, str | None, Sequence[bytes]]], SelectedMailbox | None]:
        """pymap's LIST, with the RFC 6154 attributes of Sent, Drafts and Trash, from one
        query of the folders (pymap's asked for the names, this for the special uses)."""
        if not filter_:  # RFC 3501 §6.3.8: the delimiter and the root
            return [("", DELIMITER, [b"Noselect"])], await self._load_updates(selected, None)
        infos = await self._mailbox_set.folders()
        names = [f.name for f in infos if f.subscribed or not subscribed]
        tree = FolderTree(DELIMITER).update(INBOX, *names)
        special = {f.name: f.special_use.encode() for f in infos if f.special_use}
        out: list[tuple[str, str | None, Sequence[bytes]]] = []
        for entry in tree.list_matching(ref_name, filter_):
            attributes = entry.attributes
            use = special.get(entry.name)
            out.append((entry.name, DELIMITER, [*attributes, use] if use else attributes))
        return out, await self._load_updates(selected, None)

    async def append_messages(
        self,
        name: str,
        messages: Sequence[AppendMessage],
        selected: SelectedMailbox | None = None,
    ) -> tuple[AppendUid, SelectedMailbox | None]:
        try:
            mbx = await self._mailbox_set.get_mailbox(name)
        except KeyError:
            raise MailboxNotFound(name, try_create=True) from None
        # RFC 3502: a MULTIAPPEND stores every message or, when one is refused, none.
        validity, uids = await self._mailbox_set.append_all(name, messages)
        self._mailbox_set.notifier.wake([mbx.info.id])
        return AppendUid(validity, uids), await self._load_updates(selected, None)

    async def fetch_messages(
        self, selected: SelectedMailbox, sequence_set: SequenceSet, set_seen: bool
    ) -> tuple[Iterable[tuple[int, Message]], SelectedMailbox]:
        mbx = await self._selected_box(selected)
        wanted = list(selected.messages.get_all(sequence_set))
        uids = [cached.uid for _seq, cached in wanted]
        if set_seen and uids:
            await mbx.set_flags(uids, [Seen], FlagOp.ADD)
        _current, metas = await mbx._state()
        by_uid = {m.uid: m for m in metas}
        present = [u for u in uids if u in by_uid]
        command = current_command.get(None)
        names = {a.value for a in getattr(command, "attributes", ())}
        if b"ENVELOPE" in names and present:
            mbx.envelopes = await self._envelopes(mbx, present, by_uid)
            mbx.listing_only = names <= LISTING_ATTRIBUTES
        mbx.expect(present, {m.uid: m.size for m in metas})
        out: list[tuple[int, Message]] = []
        for seq, cached in wanted:
            meta = by_uid.get(cached.uid)
            out.append((seq, Message.of(meta, mbx) if meta else Message.copy_expunged(cached)))
        return out, await mbx.update_selected(selected)

    async def _envelopes(
        self, mbx: MailboxData, uids: list[int], by_uid: dict[int, store.MessageMeta]
    ) -> dict[int, bytes]:
        """The envelopes of `uids`: kept ones read, missing ones computed (in batches of
        bounded size, off the event loop) and kept for the next listing."""
        access = self._mailbox_set.access
        kept = await access.read(store.envelopes, mbx.info.id, uids)
        missing = [u for u in uids if u not in kept]
        start = 0
        while start < len(missing):
            batch: list[int] = []
            total = 0
            while start < len(missing) and (not batch or total < BATCH_BYTES):
                batch.append(missing[start])
                total += by_uid[missing[start]].size
                start += 1
            raws = await access.read(store.raw_messages, mbx.info.id, batch)
            computed = await asyncio.to_thread(_envelopes_of, raws)
            await access.write(store.keep_envelopes, mbx.info.id, computed)
            kept.update(computed)
        return kept

    async def search_mailbox(
        self, selected: SelectedMailbox, keys: frozenset[SearchKey]
    ) -> tuple[Iterable[tuple[int, Message]], SelectedMailbox]:
        mbx = await self._selected_box(selected)
        requirement = FetchRequirement.reduce(key.requirement for key in keys)
        params = SearchParams(selected, disabled=self.config.disable_search_keys)
        search = SearchCriteriaSet(keys, params)
        _current, metas = await mbx._state()
        by_uid = {m.uid: m for m in metas}
        wanted = [
            (seq, by_uid[cached.uid])
            for seq, cached in selected.messages.get_all(search.sequence_set)
            if cached.uid in by_uid
        ]
        mbx.expect([m.uid for _seq, m in wanted], {m.uid: m.size for m in metas})
        out: list[tuple[int, Message]] = []
        for seq, meta in wanted:
            message = Message.of(meta, mbx)
            loaded = await message.load_content(requirement)
            if search.matches(seq, message, loaded):
                out.append((seq, message))
        return out, await mbx.update_selected(selected)

    async def update_flags(
        self,
        selected: SelectedMailbox,
        sequence_set: SequenceSet,
        flag_set: frozenset[Flag],
        mode: FlagOp = FlagOp.REPLACE,
    ) -> tuple[Iterable[tuple[int, Message]], SelectedMailbox]:
        if selected.readonly:
            raise MailboxReadOnly()
        mbx = await self._selected_box(selected)
        permanent = selected.permanent_flags & flag_set
        wanted = list(selected.messages.get_all(sequence_set))
        result = await mbx.set_flags([c.uid for _s, c in wanted], permanent, mode)
        out: list[tuple[int, Message]] = []
        for seq, cached in wanted:
            if cached.uid in result:
                selected.session_flags.update(cached.uid, flag_set, mode)
                out.append(
                    (
                        seq,
                        Message(cached.uid, cached.internal_date, result[cached.uid], mailbox=mbx),
                    )
                )
            else:
                out.append((seq, Message.copy_expunged(cached)))
        return out, await mbx.update_selected(selected)

    async def _transfer(
        self, selected: SelectedMailbox, sequence_set: SequenceSet, mailbox: str, how: Any
    ) -> tuple[CopyUid | None, SelectedMailbox]:
        mbx = await self._selected_box(selected)
        try:
            dest = await self._mailbox_set.get_mailbox(mailbox)
        except KeyError:
            raise MailboxNotFound(mailbox, try_create=True) from None
        uids = [uid for _seq, uid in selected.messages.get_uids(sequence_set)]
        pairs = await self._mailbox_set.access.write(
            how, self._mailbox_set.who.account_id, mbx.info.id, uids, dest.info.name
        )
        self._mailbox_set.notifier.wake([mbx.info.id, dest.info.id])
        copy_uid = CopyUid(dest.uid_validity, pairs) if pairs else None
        mbx._metas = None
        return copy_uid, await mbx.update_selected(selected)

    async def copy_messages(
        self, selected: SelectedMailbox, sequence_set: SequenceSet, mailbox: str
    ) -> tuple[CopyUid | None, SelectedMailbox]:
        return await self._transfer(selected, sequence_set, mailbox, store.copy)

    async def move_messages(
        self, selected: SelectedMailbox, sequence_set: SequenceSet, mailbox: str
    ) -> tuple[CopyUid | None, SelectedMailbox]:
        return await self._transfer(selected, sequence_set, mailbox, store.move)

    async def expunge_mailbox(
        self, selected: SelectedMailbox, uid_set: SequenceSet | None = None
    ) -> SelectedMailbox:
        if selected.readonly:
            raise MailboxReadOnly()
        mbx = await self._selected_box(selected)
        if uid_set is None:
            uid_set = SequenceSet.all(uid=True)
        _current, metas = await mbx._state()
        deleted_flag = Deleted.value.decode()
        in_set = {uid for _seq, uid in selected.messages.get_uids(uid_set)}
        doomed = [m.uid for m in metas if deleted_flag in m.flags and m.uid in in_set]
        await mbx.delete(doomed)
        return await mbx.update_selected(selected)

    async def create_mailbox(
        self, name: str, selected: SelectedMailbox | None = None
    ) -> tuple[ObjectId, SelectedMailbox | None]:
        try:
            return await super().create_mailbox(name, selected)
        except ValueError:
            raise MailboxConflict(name) from None


class SealgateBackend:
    """What `gateway.imap.server` needs: the config and the login of one `serve` process."""

    def __init__(
        self,
        runtime: Runtime,
        notifier: Notifier,
        ssl_context: Any,
        *,
        clock: Clock = utcnow,
    ) -> None:
        imap = runtime.settings.imap
        smtp = runtime.settings.smtp
        self.config = Config(runtime, ssl_context)
        self.login = Login(
            runtime,
            self.config,
            notifier,
            clock,
            FailureWindow(smtp.max_auth_failures_per_client, smtp.auth_failure_window),
        )
        self.status = HealthStatus(name="sealgate")
        self.max_connections = imap.max_connections_per_client
