"""Step `encrypt-pgp`: one PGP/MIME copy per group of recipients who may see each other.

Recipients named in To/Cc share one ciphertext (one session key, every visible
recipient's key); each Bcc recipient gets a ciphertext of their own, naming only
their key. The sender's key is added to the visible group's ciphertext, which then
also serves as the Sent copy (one encryption instead of two); with only Bcc
recipients the Sent copy is encrypted on its own. Everything is signed with the
sender's key. Output is always SEIPD with MDC, AES-256. The signed entity carries the
message's From, To, Cc, Subject, Date and the other clear fields (RFC 9788, see
gateway.mail.header_protection), so its signature cannot be passed on under other
ones.

With two or more visible recipients, the encrypted part of their copy carries an
`Autocrypt-Gossip:` header for each of them (Autocrypt Level 1, section 2.7), so
every recipient's mail program learns the others' keys and a reply-all can be
encrypted. Bcc recipients are never gossiped, and their own copies carry none.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.autocrypt.header import gossip_headers
from gateway.pipeline import pgpmime
from gateway.pipeline.context import Copy, Handling, Submission
from gateway.pipeline.visibility import split_visible
from keystore import messages, pgp


@dataclass(frozen=True)
class RecipientKey:
    """The key a recipient's copy is encrypted to, and where it came from."""

    address: str
    key: pgp.PublicKey
    source: str  # "hosted", "import", "autocrypt" or "wkd"

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint


@dataclass(frozen=True)
class SenderKeys:
    signer: messages.SigningKey
    public: pgp.PublicKey


def encrypt_copies(
    submission: Submission,
    keys: dict[str, RecipientKey],
    sender: SenderKeys,
    *,
    sent_copy: bool = True,
    forget_plaintext: bool = False,
) -> None:
    """Fill `submission.copies` with encrypted copies for every recipient in `keys`.

    With `sent_copy` false the sender's key is left out and no Sent copy is made.
    With `forget_plaintext` (no later step needs the text) the message is cut down to
    its headers as soon as the entity to encrypt is made: a large message's text is
    then in memory once, not twice, while it is encrypted.
    """
    inner = pgpmime.inner_entity(submission.raw, protect_headers=True)
    if forget_plaintext:
        submission.forget_plaintext()
    raw = submission.raw  # the outer headers and To/Cc are read from it
    autocrypt = pgpmime.autocrypt_header(submission.sender.address, sender.public.to_bytes())
    recipients = [r for r in submission.hosted + submission.external if r in keys]
    visible, hidden = split_visible(raw, recipients)

    submission.handling.extend(
        Handling(r, "pgp", fingerprint=keys[r].fingerprint, key_source=keys[r].source)
        for r in recipients
    )
    sent: bytes | None = None
    sent_message: bytes | None = None
    # The Sent copy can share the visible recipients' ciphertext only if it holds
    # nothing more (a Bcc field for the sender is encrypted to the sender alone).
    shared_sent = not submission.sent_headers
    groups = ([visible] if visible else []) + [[r] for r in hidden]
    for number, group in enumerate(groups):
        # The sender is in From for everyone who sees To/Cc, so the visible group's
        # ciphertext may name the sender's key too and serve as the Sent copy.
        is_visible = group is visible
        group_keys = [keys[r].key for r in group]
        if (
            sent_copy
            and shared_sent
            and is_visible
            and all(k.fingerprint != sender.public.fingerprint for k in group_keys)
        ):
            group_keys.append(sender.public)
        content = inner
        if is_visible and len(group) > 1:
            gossip = [(r, keys[r].key.to_bytes()) for r in group]
            content = gossip_headers(gossip) + inner
        ciphertext = messages.encrypt(content, group_keys, sender.signer)
        del content
        if number == len(groups) - 1 and (not sent_copy or (visible and shared_sent)):
            inner = b""  # not needed any more: a large message's entity is freed early
        hosted = [r for r in group if keys[r].source == "hosted"]
        external = [r for r in group if keys[r].source != "hosted"]
        if hosted:
            mailbox_copy = pgpmime.build_encrypted(raw, ciphertext)
            if is_visible and shared_sent:
                sent_message = mailbox_copy  # the same outer message: no second copy
            submission.copies.append(Copy("mailbox", hosted, mailbox_copy, encrypted=True))
        if external:
            message = pgpmime.build_encrypted(raw, ciphertext, extra_headers=autocrypt)
            submission.copies.extend(Copy("queue", [r], message, encrypted=True) for r in external)
        if is_visible and shared_sent and sent_message is None:
            sent = ciphertext
        del ciphertext

    if not sent_copy:
        return
    if sent_message is None:
        if sent is None:
            sent = messages.encrypt(submission.for_sender(inner), [sender.public], sender.signer)
        sent_message = pgpmime.build_encrypted(raw, sent)
    submission.copies.append(Copy("sent", [submission.sender.address], sent_message, True))
