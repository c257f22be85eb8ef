"""Working behind Postfix: the after-queue content-filter listener (with XFORWARD).

Postfix can take submission itself (SASL, its own policy) and hand each
authenticated message to sealgate as an after-queue content filter; sealgate
then runs the same submission pipeline as for its own listeners. The other
Postfix setup (Postfix as MX, sealgate's inbound listener behind
`transport_maps`, sealgate relaying out through Postfix) needs no code here.
See docs/postfix.md.
"""
