"""SMTP replies as named constants, so each one is written (and reviewed) in one place."""

from __future__ import annotations

OK_AUTH = "235 2.7.0 Authentication successful"
AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"
AUTHZID_REFUSED = "535 5.7.8 Logging in as another identity (authorization id) is not offered"
AUTH_TOO_MANY_FAILURES = "454 4.7.0 Too many failed logins from your address; try again later"
AUTH_TOO_LONG = "500 5.5.6 Authentication exchange line is too long"
IDLE_TIMEOUT = "421 4.4.2 Idle for too long; closing the connection"
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections from your address; try again later"
TOO_MANY_REFUSALS = "421 4.7.0 Too many refused commands without a message; closing the connection"
# A client past `[smtp] inbound_refusal_limit` (gateway.inbound.ProbeGuard): refused at
# connect as Postfix's anvil refuses a client over a connection rate, and per RCPT as
# over a recipient rate (smtpd_client_recipient_rate_limit).
PROBING_AT_CONNECT = "421 4.7.0 Too many refused commands from your network; try again later"
PROBING_AT_RCPT = "450 4.7.1 Too many refused commands from your network; try again later"
TOO_MANY_IDLE_COMMANDS = "421 4.7.0 Too many commands without a message; closing the connection"
SENDER_NOT_OWNED = "553 5.7.1 Sender address <{sender}> is not one of your addresses"
HEADER_FROM_NOT_OWNED = (
    "553 5.7.1 The From header names {address}, which is not one of your addresses;"
    " nothing was sent"
)
HEADER_SENDER_NOT_OWNED = (
    "553 5.7.1 The Sender header names {address}, which is not one of your addresses;"
    " nothing was sent"
)
HEADER_FROM_UNREADABLE = (
    "553 5.7.1 The {field} header holds no address that can be read; write it as"
    " Name <address> with one of your addresses"
)
HEADER_FIELD_REPEATED = (
    "553 5.7.1 The message has {count} {field} header fields; RFC 5322 allows only one"
)
HEADER_FROM_NEEDS_SENDER = (
    "553 5.7.1 A From header with several addresses needs a Sender header naming one of"
    " your addresses (RFC 5322 section 3.6.2)"
)
HEADER_SENDER_NOT_ONE = "553 5.7.1 The Sender header must name exactly one address"
SENDER_EMPTY = "553 5.1.7 A null sender is not allowed for submission"
SMTPUTF8_REQUIRED = (
    "553 5.6.7 The address is not ASCII: MAIL FROM needs the SMTPUTF8 parameter (RFC 6531)"
)
BAD_RECIPIENT_SYNTAX = "553 5.1.3 Recipient address <{rcpt}> is not valid"
RELAY_DENIED = "550 5.7.1 Relaying denied: this server takes mail for its own domains only"
DOMAIN_DISABLED = "550 5.7.1 <{rcpt}>: the domain {domain} is disabled and accepts no new mail"
ACCOUNT_DISABLED = "535 5.7.8 This account is disabled; ask your administrator"
# RFC 4954 §6: the session's login stopped holding (disabled, password changed, app
# password revoked, address gone); the client must authenticate again.
LOGIN_NO_LONGER_VALID = "530 5.7.0 The login of this session is no longer valid; authenticate again"
# gateway.postmaster: RFC 5321 §4.5.1 says postmaster must be taken, and there is no mailbox.
POSTMASTER_UNSET = (
    "451 4.3.0 <{rcpt}>: no mailbox takes the postmaster's mail here yet; please try again later"
)
UNKNOWN_LOCAL_RECIPIENT = "550 5.1.1 <{rcpt}>: no such mailbox here"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients (at most {limit} per message)"
MESSAGE_TOO_BIG = "552 5.3.4 Message size exceeds the limit of {limit} bytes"
FIELD_PAST_HEADER_END = (
    "554 5.6.0 Line {line} ({field}) comes after a line that is not a header field (name:"
    " value), so mail programs disagree on whether it is a header; correct the header and"
    " send the message again"
)
SUBJECT_REPEATED = (
    "554 5.6.0 The message has {count} Subject header fields; RFC 5322 allows only one"
)
PASSWORDS_DIFFER = (
    "554 5.6.0 The message names {count} different secure-page passwords"
    " (X-Sealgate-Password); give one"
)
MIME_TOO_COMPLEX = "554 5.6.0 Message structure too complex: {reason}"
TEMPORARY_FAILURE = "451 4.3.0 Temporary failure; the message was not accepted, please retry"
WEAK_SECURE_PAGE_KEY = (
    "550 5.7.1 The secure-page password (X-Sealgate-Password) must have at least {length}"
    " characters; nothing was sent"
)
OVERLONG_SECURE_PAGE_KEY = (
    "550 5.7.1 The secure-page password (X-Sealgate-Password) is longer than {limit} bytes;"
    " nothing was sent"
)
QUEUED = "250 2.0.0 Ok: queued as {queue_id}"
SERVER_BUSY = "451 4.3.1 Too many messages in progress on this server; please try again shortly"
# gateway.outages: the database or the master key ring cannot be reached just now (RFC
# 3463 4.3.0, "other or undefined mail system status"), or the disk is full (4.3.1,
# "mail system full"). Answered at the command that met it; nothing of it was kept.
SERVICE_UNAVAILABLE = (
    "451 4.3.0 The mail system is temporarily unavailable (a local problem); please try again later"
)
STORAGE_FULL = "452 4.3.1 The mail system's storage is full just now; please try again later"
