"""Outbound SMTP on the wire: what the relay needs beyond aiosmtplib.

RFC 5321's per-stage timeouts for DATA and the 7-bit form of a message for a
peer without 8BITMIME. The relay (gateway.relay) decides what to send and what
an outcome means; these modules only say how the bytes travel.
"""
