"""IMAP access to the hosted mailboxes: pymap's protocol engine over the mailbox tables.

pymap (asyncio, pluggable backends) parses and answers IMAP; this package is
the backend it calls: folders and UIDs kept in the database so several `serve`
processes agree (`folders`), the login through the one function SMTP uses
(`login`), the mailbox operations (`store`, `backend`), change notices for
IDLE (`notify`) and the listeners `sealgate serve` starts (`server`).
"""
