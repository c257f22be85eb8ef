"""Backups of one installation: the database, the master key ring and the settings.

A backup is a directory: the database (an SQLite copy made with SQLite's online
backup API, or a `pg_dump` archive for PostgreSQL), `master.keys`, `sealgate.toml`
if there is one, and `manifest.json` with a SHA-256 per file, the master-key
versions the data is wrapped under and a few counts. A restore checks the
checksums, that the ring in effect afterwards holds every version the data
needs, and that it opens a few of the backup's keys per version, before it changes
anything.
"""
