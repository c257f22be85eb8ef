"""Prometheus metrics and a health check, on their own listener (`[metrics]`, off by default).

What an operator watches: the outbound queue's depth (read from the database at
each scrape, so it is right whichever process queued the mail), messages by how
they were handled, how long a submission takes when it encrypts, secure-page
unlocks, and lockouts. Counters are per process, as Prometheus expects.

The listener is separate from the portal (its own address and port, plain HTTP)
so it can stay on a private interface: `GET /metrics` and `GET /healthz` (200
while the database answers, else 503), nothing else. No metric carries an address,
a subject or any other content: labels are from fixed, small sets.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from gateway.models import QueueItem

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from gateway.pipeline.context import Submission
    from gateway.runtime import Runtime

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

MESSAGES = Counter(
    "sealgate_messages",
    "Recipients of submitted messages, by how each copy was handled",
    ["handling"],
    registry=REGISTRY,
)
ENCRYPT_SECONDS = Histogram(
    "sealgate_encrypt_seconds",
    "Time to process a submission that was encrypted (PGP or secure page), to its commit",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
PORTAL_UNLOCKS = Counter(
    "sealgate_portal_unlocks",
    "Password tries on secure pages, by result",
    ["result"],
    registry=REGISTRY,
)
LOCKOUTS = Counter(
    "sealgate_lockouts",
    "Locks started after too many failures, by what was locked",
    ["kind"],
    registry=REGISTRY,
)
HANDLINGS = ("pgp", "secure-page", "plain", "passthrough")
ENCRYPTING = ("pgp", "secure-page")  # the handlings in which the gateway encrypts
for _handling in HANDLINGS:
    MESSAGES.labels(_handling)
for _result in ("opened", "wrong", "locked"):
    PORTAL_UNLOCKS.labels(_result)
for _kind in ("login", "secure-link"):
    LOCKOUTS.labels(_kind)


def encrypted_here(submission: Submission) -> bool:
    """Whether the gateway encrypted anything of the submission (PGP or a secure page).

    Not whether a copy is stored encrypted: PGP/MIME that the sender's own mail program
    made passes through, stored encrypted, and its time is no encryption time."""
    return any(handling.method in ENCRYPTING for handling in submission.handling)


def record_submission(submission: Submission, seconds: float) -> None:
    """Count each recipient's handling; time the submission when it encrypted anything."""
    record_handling(
        [handling.method for handling in submission.handling],
        recipients=len(submission.recipients),
        encrypted=encrypted_here(submission),
        seconds=seconds,
    )


def record_handling(
    methods: Iterable[str], *, recipients: int, encrypted: bool, seconds: float | None
) -> None:
    """`record_submission` from what a worker process reports (gateway.workers): the
    counters live in the serve process that answers /metrics. `seconds` is None for a
    message whose worker died after storing it: it is counted, but was not timed."""
    methods = list(methods)
    for method in methods:
        MESSAGES.labels(method if method in HANDLINGS else "plain").inc()
    if not methods:
        MESSAGES.labels("plain").inc(recipients)
    if seconds is not None and (encrypted or any(m in ENCRYPTING for m in methods)):
        ENCRYPT_SECONDS.observe(seconds)


def lockout_key_kind(key: str) -> str:
    """Every protocol's logins count towards one lock per account (gateway.lockout)."""
    return "secure-link" if key.startswith("link:") else "login"


class QueueDepth(Collector):
    """`sealgate_queue_depth{state}`: rows in the outbound queue, counted at scrape time."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "sealgate_queue_depth", "Messages waiting in the outbound queue", labels=["state"]
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """Registration asks for this: the name, without a database query."""
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        counts = {"queued": 0, "sending": 0}
        with self.runtime.engine.connect() as conn:
            rows = conn.execute(
                sa.select(QueueItem.status, sa.func.count()).group_by(QueueItem.status)
            )
            for status, count in rows:
                counts[str(status)] = int(count)
        for state, count in sorted(counts.items()):
            family.add_metric([state], count)
        yield family


def healthy(runtime: Runtime) -> bool:
    try:
        with runtime.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError:
        return False
    return True


def make_app(runtime: Runtime) -> Any:
    """The WSGI app of the metrics listener: /metrics and /healthz, GET only."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Forward(REGISTRY))
    registry.register(QueueDepth(runtime))

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        if path == "/healthz":
            ok = healthy(runtime)
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")],
            )
            return [b"ok\n" if ok else b"database unavailable\n"]
        if path == "/metrics":
            try:
                body = generate_latest(registry)
            except sa.exc.SQLAlchemyError:
                log.warning("metrics: the database did not answer")
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [b"database unavailable\n"]
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


class _Forward(Collector):
    """The process-wide metrics, collected into a registry of the listener's own."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Any]:
        return self.source.collect()


class MetricsServer:
    """The `[metrics]` listener: plain HTTP on its own address, in a thread (cheroot)."""

    def __init__(self, runtime: Runtime) -> None:
        from cheroot import wsgi

        settings = runtime.settings.metrics
        self._server: Any = wsgi.Server(
            (settings.host, settings.port), make_app(runtime), numthreads=2
        )
        self._server.version = "sealgate"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.bind_addr[0], self._server.bind_addr[1]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._server.prepare()
        self._thread = threading.Thread(
            target=self._server.serve, name="sealgate-metrics", daemon=True
        )
        self._thread.start()
        log.info("metrics listening on %s", self.url)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._server.stop()
        self._thread.join(10)
        self._thread = None
