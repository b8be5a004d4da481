"""Gateway configuration, read from the environment when the process starts."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from advex.core.metrics import check_address
from advex.core.object_routes import check_endpoint
from advex.core.settings import EnvReader


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


MAX_RETRY_BACKOFF_SECONDS = 300.0


@dataclass
class GatewayConfig:
    address: str = "127.0.0.1:50051"
    # Where this service connects for presigned URLs that name the public
    # endpoint (see advex.core.object_routes); both unset: where URLs say.
    s3_endpoint: str | None = None
    s3_public_endpoint: str | None = None
    # Prometheus /metrics; "" serves none.
    metrics_address: str = "127.0.0.1:9451"
    # SQLAlchemy URL; SQLite for one gateway, PostgreSQL when several share work.
    database_url: str = "sqlite:///var/gateway.db"
    storage_target: str = "127.0.0.1:50052"
    attack_target: str = "127.0.0.1:50053"
    scoring_target: str = "127.0.0.1:50054"
    # Evaluations this gateway runs at once.
    workers: int = 1
    # A claim on a RUNNING evaluation lapses this long after the last
    # heartbeat, so another gateway (or this one, restarted) takes it over.
    lease_seconds: float = 60.0
    # How often idle workers and watchers look at SQL for work done elsewhere.
    poll_seconds: float = 1.0
    instance_id: str = field(default_factory=_default_instance_id)
    # Runs of one evaluation before a transient failure (a backend service
    # unreachable or timing out) makes it FAILED.
    max_attempts: int = 3
    # Wait before the next run after a transient failure; see retry_backoff.
    retry_backoff_seconds: float = 5.0
    # Open WatchEvaluation streams; each holds a server thread, so they are
    # capped to keep threads for every other call (health checks included).
    max_watchers: int = 100
    # QUEUED evaluations (in the shared database) beyond which
    # CreateEvaluation answers RESOURCE_EXHAUSTED: a client that floods the
    # queue is told to wait instead of growing it without end.
    max_queued: int = 1000
    # Samples per shard of an evasion attack: a shard is the unit that is
    # stored as it finishes, so an interrupted evaluation resumes from the
    # shards it finished (smaller: less redone, more files).
    shard_samples: int = 4096

    def __post_init__(self) -> None:
        check_address(self.metrics_address, "ADVEX_GATEWAY_METRICS_ADDR")
        check_endpoint(self.s3_endpoint, "ADVEX_S3_ENDPOINT")
        check_endpoint(self.s3_public_endpoint, "ADVEX_S3_PUBLIC_ENDPOINT")
        if min(self.workers, self.max_attempts, self.max_watchers, self.max_queued, self.shard_samples) < 1:
            raise ValueError(
                "ADVEX_GATEWAY_WORKERS, ADVEX_MAX_ATTEMPTS, ADVEX_MAX_WATCHERS, ADVEX_MAX_QUEUED and "
                "ADVEX_SHARD_SAMPLES must be >= 1"
            )
        if not 0 < self.poll_seconds <= self.lease_seconds / 3:
            raise ValueError(
                f"ADVEX_POLL_SECONDS ({self.poll_seconds:g}) must be > 0 and at most a third of "
                f"ADVEX_LEASE_SECONDS ({self.lease_seconds:g}), so a lease is renewed before it lapses"
            )

    def retry_backoff(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th run failed transiently:
        doubling (5 s, 10 s, ...) so a restarting service gets a chance to come
        back, and never more than MAX_RETRY_BACKOFF_SECONDS however many runs
        are allowed."""
        return min(self.retry_backoff_seconds * 2 ** (attempts - 1), MAX_RETRY_BACKOFF_SECONDS)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "GatewayConfig":
        defaults = cls()
        env = EnvReader(environ)
        return cls(
            address=env.text("ADVEX_GATEWAY_ADDR", defaults.address),
            metrics_address=env.text_or_off("ADVEX_GATEWAY_METRICS_ADDR", defaults.metrics_address),
            s3_endpoint=env.text("ADVEX_S3_ENDPOINT", None),
            s3_public_endpoint=env.text("ADVEX_S3_PUBLIC_ENDPOINT", None),
            database_url=env.text("ADVEX_DATABASE_URL", defaults.database_url),
            storage_target=env.text("ADVEX_STORAGE_TARGET", defaults.storage_target),
            attack_target=env.text("ADVEX_ATTACK_TARGET", defaults.attack_target),
            scoring_target=env.text("ADVEX_SCORING_TARGET", defaults.scoring_target),
            workers=env.integer("ADVEX_GATEWAY_WORKERS", defaults.workers, minimum=1),
            lease_seconds=env.number("ADVEX_LEASE_SECONDS", defaults.lease_seconds),
            poll_seconds=env.number("ADVEX_POLL_SECONDS", defaults.poll_seconds),
            instance_id=env.text("ADVEX_INSTANCE_ID", defaults.instance_id),
            max_attempts=env.integer("ADVEX_MAX_ATTEMPTS", defaults.max_attempts, minimum=1),
            retry_backoff_seconds=env.number("ADVEX_RETRY_BACKOFF_SECONDS", defaults.retry_backoff_seconds, minimum=0),
            max_watchers=env.integer("ADVEX_MAX_WATCHERS", defaults.max_watchers, minimum=1),
            max_queued=env.integer("ADVEX_MAX_QUEUED", defaults.max_queued, minimum=1),
            shard_samples=env.integer("ADVEX_SHARD_SAMPLES", defaults.shard_samples, minimum=1),
        )
