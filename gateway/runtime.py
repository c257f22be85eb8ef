"""What every entry point (CLI, SMTP server, relay, portal) builds once from the settings."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import db, lookups, outages
from gateway.credential_cache import CredentialCache
from gateway.inflight import InFlightBudget
from gateway.passwords import PasswordHasher
from gateway.settings import DEFAULT_IN_FLIGHT_BYTES, Settings
from gateway.wkd_client import Transport
from keystore.masterkey import RingFile


@dataclass
class Runtime:
    settings: Settings
    engine: sa.Engine
    sessions: so.sessionmaker[so.Session]
    hasher: PasswordHasher
    ring: RingFile
    # How Web Key Directory lookups reach the network (tests point it at a local server).
    wkd_transport: Transport = field(default_factory=Transport)
    # Bytes of messages in flight, shared by SMTP, the pipeline, uploads and the relay.
    inflight: InFlightBudget = field(
        default_factory=lambda: InFlightBudget(DEFAULT_IN_FLIGHT_BYTES)
    )
    # Logins verified lately (gateway.logins); off unless built from the settings.
    credentials: CredentialCache = field(
        default_factory=lambda: CredentialCache(dt.timedelta(0), 0)
    )

    @classmethod
    def open(
        cls, settings: Settings, *, pre_ping: bool = True, application_name: str | None = None
    ) -> Runtime:
        engine = db.create_engine(
            settings.database_url,
            echo=settings.database.echo,
            pre_ping=pre_ping,
            application_name=application_name,
            dead_server_seconds=settings.database.dead_server_seconds,
        )
        ring = outages.WatchedRingFile(settings.data_dir)
        sessions = db.session_factory(engine, ring=ring)
        lookups.install(sessions, settings.database.lookup_cache_seconds)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            hasher=PasswordHasher(settings.passwords),
            ring=ring,
            inflight=InFlightBudget(settings.limits.in_flight_bytes),
            credentials=CredentialCache(
                dt.timedelta(seconds=settings.passwords.login_cache_seconds),
                settings.passwords.login_cache_entries,
            ),
        )

    def close(self) -> None:
        self.engine.dispose()
