"""Autocrypt Level 1 (autocrypt.org): keys that correspondents send in their mail headers.

- `header`: parsing the `Autocrypt:` header of incoming mail, writing the
  `Autocrypt-Gossip:` headers of outgoing encrypted mail;
- `peers`: the per-address peer state and the spec's rules for changing it, and
  which peer key may be used to encrypt;
- `inbound`: what an arriving message teaches (vetted in the sandbox before any
  transaction) and its application inside the message's transaction.

docs/autocrypt.md says what a forged header can and cannot do.
"""
