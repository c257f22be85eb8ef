"""The DNS records a hosted domain needs, and a check of them against what DNS answers.

`records` derives the list from the settings and the domain's DKIM keys (MX, SPF,
DKIM, DMARC, the `openpgpkey` host for Web Key Directory, RFC 6186 SRV records,
autoconfig) and prints it as zone-file lines; `check` asks a resolver for each one.
"""
