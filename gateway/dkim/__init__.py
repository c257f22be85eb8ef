"""DKIM for everything the gateway sends out: per-domain keys and signing at the relay.

Each hosted domain gets two keys when it is added (`gateway.accounts.add_domain`):
an Ed25519 key (ed25519-sha256, RFC 8463) and an RSA key (rsa-sha256), since
many receivers still verify only RSA. Private keys are sealed under the master
key like every other secret. The relay signs each message just before it hands
it to the smarthost, so the signature covers the bytes that leave (after
encryption), whoever wrote them: relayed mail, notifications, alerts, replies.
"""
