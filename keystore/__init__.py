"""OpenPGP keys for the hosted addresses, wrapped at rest under a rotatable master key.

`store` is the API the gateway calls (first-use keys, unlock by key id, rotation,
revocation, cached public keys); `pgp` holds every use of pgpy; `wrap` is the
AES-256-GCM blob format; `masterkey` the ring; `rotation` the online master-key
rotation; `wkd` the Web Key Directory names; `directory` the vetted public keys of
external recipients (imports, WKD answers); `untrusted` the sandboxed child process
that parses every OpenPGP key from outside. Nothing here imports gateway/ or
webportal/: callers pass a database session, the ring, and an audit callback.
"""
