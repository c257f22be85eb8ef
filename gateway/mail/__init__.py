"""The message as bytes, as it enters the gateway and as it is kept.

Modules here shape a message's text so that every later reader (the pipeline's
checks, the mailbox, IMAP clients, the webmail, the relay) reads it alike.
"""
