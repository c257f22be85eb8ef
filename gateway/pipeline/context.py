"""The typed context that flows through the submission pipeline."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from gateway import rawheaders

if TYPE_CHECKING:
    import sqlalchemy.orm as so


def new_queue_id() -> str:
    return secrets.token_hex(8).upper()


@dataclass(frozen=True)
class Sender:
    """The authenticated submitter: the account and the address it sends from."""

    account_id: int
    address: str


@dataclass(frozen=True)
class ClientInfo:
    """Where the message came from, for the Received header and the audit log."""

    helo: str
    ip: str
    protocol: str  # "ESMTPSA", "UTF8SMTPSA", or "HTTPS" for webmail


@dataclass
class Copy:
    """One stored or queued copy: to a mailbox, to the relay, or to the sender's Sent folder."""

    destination: Literal["mailbox", "queue", "sent"]
    recipients: list[str]
    raw: bytes = field(repr=False)
    encrypted: bool = False
    sealed: bool = False  # a queue copy sealed at rest under the master key (gateway.queue)
    # The mailbox row's columns read from `raw` (subject, addresses, search text), filled
    # by `describe_copies` before the write transaction so no parsing happens inside it.
    columns: dict[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Handling:
    """How one recipient's copy was handled: what the delivery report tells the sender."""

    recipient: str
    method: Literal["pgp", "secure-page", "plain", "passthrough"]
    fingerprint: str = ""
    key_source: str = ""  # "hosted", "import" or "wkd" for method "pgp"


@dataclass
class Submission:
    """One submitted message on its way through the pipeline.

    `raw` is the message as it will be stored or relayed; steps replace it rather
    than edit it in place. `hosted` and `external` are filled by classification.
    """

    sender: Sender
    envelope_from: str
    recipients: list[str]
    raw: bytes
    client: ClientInfo
    received_at: dt.datetime
    queue_id: str = field(default_factory=new_queue_id)
    hosted: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    encrypt: bool = False
    encrypt_reasons: tuple[str, ...] = ()
    password: str | None = field(default=None, repr=False)
    copies: list[Copy] = field(default_factory=list)
    handling: list[Handling] = field(default_factory=list)
    # Rows a step prepared for the final transaction (the secure page's, the
    # delivery report): `store-and-queue` calls each inside it, after the copies.
    finalizers: list[Callable[[so.Session], None]] = field(default_factory=list, repr=False)
    # Header fields that only the sender's own Sent copy carries (the webmail's Bcc, kept
    # there as mail programs keep it): complete folded lines, each ending in CRLF.
    sent_headers: bytes = field(default=b"", repr=False)
    _forgotten_size: int | None = field(default=None, repr=False)

    def for_sender(self, entity: bytes) -> bytes:
        """`entity` (the message, or the inner entity to encrypt) as the Sent copy holds
        it: with `sent_headers` on top of its header."""
        return self.sent_headers + entity

    @property
    def size(self) -> int:
        """The size of the message as submitted (plus Received), also once forgotten."""
        return self._forgotten_size if self._forgotten_size is not None else len(self.raw)

    def forget_plaintext(self) -> None:
        """Keep only the header block of `raw` once every copy is encrypted: nothing after
        encryption reads the text (the mail log takes the Message-ID), so the plaintext
        does not outlive its use, and a large message's bytes are freed before the
        write transaction."""
        if self._forgotten_size is None:
            self._forgotten_size = len(self.raw)
            self.raw = rawheaders.header_block(self.raw)
