"""`sealgate keys`: list, export, rotate and revoke address keys; rotate the master key;
import and list keys of external recipients."""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import click

from keystore.masterkey import (
    MASTER_KEYS_ENV,
    MASTER_KEYS_FILE,
    MasterKeyError,
    MasterKeyRing,
    load_ring,
)
from sealgate.cli.base import CLI_ACTOR, CliState, cli, pass_state

if TYPE_CHECKING:
    import sqlalchemy.orm as so

# keystore.pgp.REVOCATION_REASONS, spelled out so `--help` does not import pgpy
# (tests/sealgate/test_cli_help.py checks the two agree).
REVOCATION_CODES = ("compromised", "retired", "superseded", "unspecified")
# keystore.rotation.DEFAULT_BATCH_SIZE, for the same reason (checked by the same test).
DEFAULT_BATCH_SIZE = 100


def audit_sink(session: so.Session, action: str, target: str, detail: str) -> None:
    from gateway import audit

    audit.record(session, action, actor=CLI_ACTOR, target=target, detail=detail)


def _ring(state: CliState) -> MasterKeyRing:
    try:
        return load_ring(state.settings.data_dir)
    except MasterKeyError as exc:
        raise click.ClickException(str(exc)) from None


ACTION_IMPORT = "external-key.import"
ACTION_REFRESH = "external-key.refresh"
ACTION_DKIM_RENEW = "dkim.renew"
MAX_NAMED = 50  # dropped addresses named in a refresh's audit entry


@cli.group()
def keys() -> None:
    """OpenPGP keys of the hosted addresses, the master key that wraps them, imported
    keys of external recipients, and the domains' DKIM keys."""


@keys.command("list")
@click.argument("address", required=False)
@pass_state
def list_keys(state: CliState, address: str | None) -> None:
    """List keys (of ADDRESS, or of every address)."""
    from keystore import store

    try:
        with state.transaction() as session:
            rows = store.list_keys(session, address)
            if address and not rows:
                raise store.NoKeyError(f"{address} has no key")
            click.echo("address\tfingerprint\tcreated\tstatus\tmaster-key version")
            for row in rows:
                click.echo(
                    f"{row.address}\t{row.fingerprint}\t{row.created_at:%Y-%m-%d %H:%M:%S}Z"
                    f"\t{row.status}\t{row.master_version}"
                )
    except store.KeystoreError as exc:
        raise click.ClickException(str(exc)) from None


@keys.command("export")
@click.argument("address")
@pass_state
def export(state: CliState, address: str) -> None:
    """Print ADDRESS's armored public key, followed by its revoked keys."""
    from keystore import store

    try:
        with state.transaction() as session:
            click.echo(store.export_public(session, address), nl=False)
    except store.KeystoreError as exc:
        raise click.ClickException(str(exc)) from None


def _key_error(exc: Exception, address: str) -> click.ClickException:
    from keystore import store
    from keystore.wrap import DecryptionError

    if isinstance(exc, store.NoKeyError):
        return click.ClickException(
            f"{address} has no key (is it a hosted address? `sealgate init` makes the keys"
            " of addresses that have none)"
        )
    if isinstance(exc, DecryptionError):
        return click.ClickException(
            f"the secret key of {address} cannot be opened with the master key ring"
        )
    return click.ClickException(str(exc))


@keys.command("rotate")
@click.argument("address")
@pass_state
def rotate(state: CliState, address: str) -> None:
    """Give ADDRESS a new key; the old key stays for reading old mail."""
    from gateway.timeutil import utcnow
    from keystore import store
    from keystore.wrap import DecryptionError

    ring = _ring(state)
    try:
        with state.transaction() as session:
            old = store.current_key(session, address)
            new = store.rotate(session, ring, address, utcnow(), events=audit_sink)
            click.echo(f"{new.address}: new key {new.fingerprint}")
            if old is not None:
                click.echo(f"old key {old.fingerprint} kept for decryption only")
    except (store.KeystoreError, DecryptionError, MasterKeyError) as exc:
        raise _key_error(exc, address) from None


@keys.command("revoke")
@click.argument("address")
@click.option("--reason", required=True, help="Why (stored in the revocation signature).")
@click.option(
    "--code",
    type=click.Choice(REVOCATION_CODES),
    default="compromised",
    show_default=True,
    help="OpenPGP reason-for-revocation code.",
)
@pass_state
def revoke(state: CliState, address: str, reason: str, code: Any) -> None:
    """Revoke ADDRESS's current key and give it a new one."""
    from gateway.timeutil import utcnow
    from keystore import store
    from keystore.wrap import DecryptionError

    ring = _ring(state)
    try:
        with state.transaction() as session:
            old = store.current_key(session, address)
            new = store.revoke(
                session, ring, address, reason, utcnow(), events=audit_sink, code=code
            )
            if old is not None:
                click.echo(f"{new.address}: key {old.fingerprint} revoked ({code})")
            click.echo(f"{new.address}: new key {new.fingerprint}")
    except (store.KeystoreError, DecryptionError, MasterKeyError) as exc:
        raise _key_error(exc, address) from None


@keys.command("rotate-master")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Keys re-wrapped per transaction.",
)
@pass_state
def rotate_master(state: CliState, batch_size: int) -> None:
    """Add a master-key version, re-wrap every secret key under it, retire the old one.

    Safe to interrupt: running it again finishes the rotation. Mail keeps flowing
    meanwhile; running gateway and portal processes pick up the new ring file.
    """
    from gateway import master_records
    from gateway.timeutil import utcnow
    from keystore import rotation

    if os.environ.get(MASTER_KEYS_ENV):
        raise click.ClickException(
            f"the master key ring comes from {MASTER_KEYS_ENV}; rotate-master rewrites the"
            f" ring file in the data dir, so unset {MASTER_KEYS_ENV} for this command"
        )
    runtime = state.require_initialised()
    _ring(state)
    with ExitStack() as stack:
        bars: list[Any] = []

        def on_start(plan: rotation.RotationPlan, total: int) -> None:
            old = ", ".join(str(v) for v in plan.old_versions)
            verb = "resuming the rotation" if plan.resumed else "rotating"
            click.echo(
                f"{verb}: master-key version {plan.ring.primary} is primary;"
                f" {total} secret keys to re-wrap from version {old}"
            )
            bars.append(
                stack.enter_context(
                    click.progressbar(length=max(total, 1), label="re-wrapping", show_pos=True)
                )
            )

        def on_batch(done: int) -> None:
            bars[0].update(done)

        try:
            result = rotation.rotate_master(
                state.settings.data_dir,
                runtime.sessions,
                utcnow(),
                events=audit_sink,
                batch_size=batch_size,
                on_start=on_start,
                on_batch=on_batch,
                other_blobs=master_records.rewrap,
            )
        except (MasterKeyError, rotation.RotationError) as exc:
            raise click.ClickException(str(exc)) from None
    retired = ", ".join(str(v) for v in result.old_versions)
    for left in result.left:
        click.echo(f"skipped: {left}", err=True)
    if result.left:
        click.echo(
            f"done: version {retired} retired; everything is wrapped under version"
            f" {result.ring.primary} except {len(result.left)} record(s) that cannot be"
            " opened (listed above, left as they are)"
        )
    else:
        click.echo(
            f"done: every secret key is wrapped under version {result.ring.primary};"
            f" version {retired} retired"
        )
    click.echo(
        f"version {retired} stays in {MASTER_KEYS_FILE}, decrypt-only, so backups made"
        " before this rotation still open; `sealgate keys destroy-master VERSION` forgets it"
    )


@keys.command("destroy-master")
@click.argument("version", type=int)
@click.option(
    "--force",
    is_flag=True,
    help="Destroy it although records in the database still use it (they are lost).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def destroy_master(state: CliState, version: int, force: bool, yes: bool) -> None:
    """Forget the retired master-key VERSION for good.

    Lists what becomes unreadable first (records still under it, and every backup
    made before it was retired) and asks for confirmation. While records in the
    database still use it, it refuses unless --force: `sealgate keys rotate-master`
    moves them first. There is no undo.
    """
    from gateway import db, master_records
    from keystore import rotation

    if os.environ.get(MASTER_KEYS_ENV):
        raise click.ClickException(
            f"the master key ring comes from {MASTER_KEYS_ENV}; remove version {version} there"
        )
    runtime = state.require_initialised()
    ring = _ring(state)
    if version not in ring.decrypt_only_versions:
        if version == ring.primary:
            why = "it is the primary version"
        elif version in ring.destroyed_versions:
            why = "it was destroyed already"
        elif version in ring.keys:
            why = "it is not retired yet (run `sealgate keys rotate-master` first)"
        else:
            why = "the ring has no such version"
        raise click.ClickException(f"cannot destroy master-key version {version}: {why}")
    with db.read_only(runtime.sessions) as session:
        owners = {"secret keys of hosted addresses": rotation.keys_under(session, version)}
        owners.update(master_records.owners_under(session, version))
        retired_at = rotation.retired_at(session, version)
    click.echo(f"Destroying master-key version {version} makes these unreadable for good:")
    for kind, names in owners.items():
        click.echo(f"  {len(names)} {kind} in the database{_named(names)}")
    since = f" before {retired_at:%Y-%m-%d %H:%M}Z" if retired_at else ""
    click.echo(
        f"  every backup made{since} (its secret keys, TOTP secrets, DKIM keys and queued"
        " notifications are wrapped under this version)"
    )
    in_use = [f"{len(names)} {kind}" for kind, names in owners.items() if names]
    if in_use and not force:
        # Sealed after the rotation by a process that had not yet read the new ring,
        # or put back from a backup: a rotation moves them, nothing is lost then.
        raise click.ClickException(
            f"master-key version {version} still wraps {', '.join(in_use)} in the database"
            " (listed above): run `sealgate keys rotate-master` to move them under the"
            " primary version first, or pass --force to destroy them with it"
        )
    if not yes:
        click.confirm(f"Destroy master-key version {version}?", abort=True)
    try:
        rotation.destroy(state.settings.data_dir, runtime.sessions, version, audit_sink)
    except MasterKeyError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"master-key version {version} destroyed")


def _named(names: list[str], shown: int = 5) -> str:
    """(the first few owners, and how many more)"; "" for none."""
    if not names:
        return ""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f" ({', '.join(names[:shown])}{more})"


@keys.command("renew-dkim")
@click.argument("domain")
@pass_state
def renew_dkim(state: CliState, domain: str) -> None:
    """Replace DOMAIN's DKIM keys that can no longer be opened with new ones.

    A key whose master-key version was destroyed signs nothing (the relay logs it,
    and `sealgate domain show` and the console name it). The new keys sign from now
    on under new selectors: publish the records this prints (`sealgate dns DOMAIN`
    prints them too). Keys that open are left alone.
    """
    from gateway import accounts, audit
    from gateway.dkim import keys as dkim_keys
    from gateway.dnsrecords import records
    from gateway.timeutil import utcnow

    state.require_initialised()
    ring = _ring(state)
    with state.transaction() as session:
        row = accounts.find_domain(session, domain.strip().rstrip("."))
        if row is None:
            raise click.ClickException(
                f"{domain.strip()[:253] or repr(domain)} is not a hosted domain"
                " (see `sealgate domain list`)"
            )
        try:
            renewed = dkim_keys.renew(session, ring, row, utcnow())
        except MasterKeyError as exc:
            raise click.ClickException(f"cannot make DKIM keys for {row.name}: {exc}") from None
        if not renewed:
            click.echo(f"every DKIM key of {row.name} opens: nothing to renew")
            return
        changes = [f"{r.old_selector} -> {r.key.selector} ({r.key.algorithm})" for r in renewed]
        audit.record(
            session, ACTION_DKIM_RENEW, actor=CLI_ACTOR, target=row.name, detail="; ".join(changes)
        )
        for change in changes:
            click.echo(f"{row.name}: DKIM key {change}")
        published = [
            record
            for record in records.domain_records(state.settings, row.name, [r.key for r in renewed])
            if "._domainkey." in record.name
        ]
    click.echo(
        f"; publish these in the zone of {row.name} (the new keys sign from now on; the old"
        " records can go)"
    )
    click.echo(records.zone_text(published, state.settings.dns.ttl), nl=False)


@keys.command("import")
@click.argument("file", type=click.File("rb"))
@pass_state
def import_keys(state: CliState, file: Any) -> None:
    """Import public keys of external recipients from FILE ("-" for standard input).

    FILE may be armored or binary and hold one or more keys. Each key is checked
    (self-signatures, subkey binding, expiry, revocation, an encryption subkey) and
    used from then on for every address in its valid user ids, ahead of any Web Key
    Directory answer. Importing a key's revocation stops its use.
    """
    from gateway import audit
    from gateway.pipeline.external_keys import parse_budget
    from gateway.timeutil import utcnow
    from keystore import directory, untrusted

    state.require_initialised()
    limits = state.settings.keys
    data = file.read(limits.max_key_bytes + 1)
    name = getattr(file, "name", "-")
    now = utcnow()
    try:
        vetting = untrusted.vet_keys(data, now, parse_budget(limits))
    except untrusted.UntrustedDataError as exc:
        hint = ""
        if exc.kind in ("too-large", "timeout", "memory"):
            hint = " (split the file, or raise the limits in [keys])"
        raise click.ClickException(f"{name}: {exc}{hint}") from None
    imported = revoked = 0
    with state.transaction() as session:
        for rejected in vetting.rejected:
            label = _key_label(rejected.fingerprint, rejected.addresses)
            if rejected.code == "revoked":
                revoked += 1
                # A key no row holds yet gets a revoked row for its (first) address, so
                # that an older copy (imported, from WKD or Autocrypt) is refused later.
                seen_for: tuple[str, directory.SeenSource] | None = (
                    (rejected.addresses[0], directory.SOURCE_IMPORT) if rejected.addresses else None
                )
                stopped = directory.mark_revoked(
                    session, rejected.fingerprint, now, events=audit_sink, seen_for=seen_for
                )
                used = (
                    f"no longer used for {', '.join(stopped)}" if stopped else "it was not in use"
                )
                click.echo(f"key {label} is revoked: {used}")
                continue
            click.echo(f"rejected key {label}: {rejected.reason}", err=True)
        for vetted in vetting.accepted:
            outcome = directory.save(
                session, vetted, directory.SOURCE_IMPORT, now, events=audit_sink
            )
            if outcome == "revoked":
                click.echo(
                    f"rejected key {vetted.fingerprint} for {vetted.address}:"
                    " it was revoked earlier",
                    err=True,
                )
                continue
            imported += 1
            expires = f", expires {vetted.expires_at:%Y-%m-%d}" if vetted.expires_at else ""
            click.echo(f"{vetted.address}: key {vetted.fingerprint} {outcome}{expires}")
        audit.record(
            session,
            ACTION_IMPORT,
            actor=CLI_ACTOR,
            target=name[:200],
            detail=(
                f"{imported} imported, {revoked} revoked,"
                f" {len(vetting.rejected) - revoked} rejected"
            ),
        )
    if not imported and not revoked:
        raise click.ClickException(f"{name}: no key imported")


def _key_label(fingerprint: str, addresses: tuple[str, ...]) -> str:
    if not fingerprint:
        return "data"
    return f"{fingerprint} ({', '.join(addresses)})" if addresses else fingerprint


@keys.command("list-external")
@click.argument("address", required=False)
@pass_state
def list_external(state: CliState, address: str | None) -> None:
    """List stored keys of external recipients (of ADDRESS, or all): imported, from
    WKD, and from Autocrypt headers (there "stored" is the date of the newest header,
    "last checked" that of the newest mail)."""
    from gateway.autocrypt import peers
    from keystore import directory, store

    try:
        with state.transaction() as session:
            rows = directory.list_keys(session, address)
            click.echo("address\tfingerprint\tsource\tstored\tlast checked\texpires\tstatus")
            for row in rows:
                expires = f"{row.expires_at:%Y-%m-%d}" if row.expires_at else "never"
                status = "revoked" if row.revoked_at else "in use"
                click.echo(
                    f"{row.address}\t{row.fingerprint}\t{row.source}"
                    f"\t{row.fetched_at:%Y-%m-%d %H:%M:%S}Z\t{row.last_checked:%Y-%m-%d %H:%M:%S}Z"
                    f"\t{expires}\t{status}"
                )
            for peer in peers.list_peers(session, address):
                expires = f"{peer.expires_at:%Y-%m-%d}" if peer.expires_at else "never"
                status = (
                    "revoked" if peer.revoked_at else "reset" if peers.is_reset(peer) else "in use"
                )
                stored = (
                    f"{peer.autocrypt_timestamp:%Y-%m-%d %H:%M:%S}Z"
                    if peer.autocrypt_timestamp
                    else "-"
                )
                click.echo(
                    f"{peer.address}\t{peer.fingerprint}\tautocrypt\t{stored}"
                    f"\t{peer.last_seen:%Y-%m-%d %H:%M:%S}Z\t{expires}\t{status}"
                )
    except store.KeystoreError as exc:
        raise click.ClickException(str(exc)) from None


@keys.command("refresh")
@pass_state
def refresh(state: CliState) -> None:
    """Ask Web Key Directories again for every WKD key older than [keys] wkd_cache_ttl;
    revoked keys and keys the directory no longer serves stop being used."""
    from gateway import audit, wkd_refresh
    from gateway.timeutil import utcnow

    runtime = state.require_initialised()
    if not runtime.settings.keys.wkd:
        # serve skips its hourly refresh then; asking the directories by hand would
        # contact the very servers the admin turned off.
        raise click.ClickException("WKD lookups are off ([keys] wkd = false): nothing refreshed")
    result = wkd_refresh.refresh(runtime, utcnow())
    # New keys and revocations the answers bring are audited as the directory's doing
    # (actor "wkd"), as in serve's hourly run. This entry says who asked for the run and
    # what it did; it names the dropped addresses, since a key the directory stopped
    # serving is dropped without an event of its own. No key material, no fingerprint.
    dropped = ", ".join(result.dropped[:MAX_NAMED])
    if len(result.dropped) > MAX_NAMED:
        dropped += f" and {len(result.dropped) - MAX_NAMED} more"
    with state.transaction() as session:
        audit.record(
            session,
            ACTION_REFRESH,
            actor=CLI_ACTOR,
            detail=result.summary() + (f" ({dropped})" if dropped else ""),
        )
    for address in result.dropped:
        click.echo(f"{address}: WKD key no longer used")
    click.echo(
        f"{result.checked} WKD key(s) checked, {result.confirmed} confirmed"
        f" ({result.changed} changed), {len(result.dropped)} dropped"
    )
