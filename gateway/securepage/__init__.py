"""Secure pages: mail for recipients without a key, read in a browser with a password.

- `crypto`: the message under a random key, that key under Argon2id(password);
- `links`: 256-bit link tokens, of which only a SHA-256 digest is stored;
- `store`: the rows, the per-link failure counter, revoke, extend, re-seal;
- `access`: what a browser's grant is bound to, and Close, which voids earlier grants;
- `notify`: the notification and lock mails, with header values made safe;
- `content`: the decrypted message as a page shows it (HTML sanitized);
- `reply`: a recipient's answer, encrypted to the sender's key;
- `purge`: expired ciphertext deleted, old history forgotten.

The server keeps no password and no message key: without the password, the
database and the master key together open nothing here.
"""
