"""OpenPGP keys for the hosted addresses, wrapped at rest under a rotatable master key.

`store` is the API the gateway calls (first-use keys, unlock by key id, rotation,
revocation, cached public keys); `pgp` holds every use of pgpy; `wrap` is the
AES-256-GCM blob format; `masterkey` the ring; `rotation` the online master-key
rotation; `wkd` the Web Key Directory names. Nothing here imports gateway/ or
webportal/: callers pass a database session, the ring, and an audit callback.
"""
