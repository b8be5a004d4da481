"""Server lifecycle every service shares: health, reflection, error mapping,
graceful drain on SIGTERM.

A service's `create_server(address, config)` calls `start_server` and returns
`(server, port)`; its `main()` calls `serve_until_signalled`.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from advex.core.errors import ErrorInterceptor

log = logging.getLogger(__name__)


@dataclass
class Registration:
    """One gRPC service a process serves: its full name and how to add it."""

    service_name: str
    add_to_server: Callable[[grpc.Server], None]


@dataclass
class RunningServer:
    """A started gRPC server with its health service and resources to close."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    service_names: Sequence[str]
    # Called after the server stopped (worker threads, DB engines, ...).
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.service_names):
            self.health.set(name, status)

    def stop(self, grace: float | None = 5.0) -> None:
        """Drain: report NOT_SERVING, finish in-flight calls for `grace` s, close."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        for close in reversed(self.on_stop):
            try:
                close()
            except Exception:  # noqa: BLE001 - closing must go on
                log.exception("error while closing")

    def wait(self) -> None:
        self.server.wait_for_termination()


def start_server(
    address: str,
    registrations: Sequence[Registration],
    *,
    max_workers: int = 16,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> RunningServer:
    """Binds `address` (port 0 picks a free one), starts, reports SERVING."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        interceptors=[ErrorInterceptor(), *interceptors],
    )
    for registration in registrations:
        registration.add_to_server(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [r.service_name for r in registrations]
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    server.start()
    running = RunningServer(server=server, port=port, health=health_servicer, service_names=names)
    running.set_serving(True)
    return running


def serve_until_signalled(running: RunningServer, grace: float = 10.0) -> None:
    """Blocks until SIGTERM or SIGINT, then drains and returns."""
    done = threading.Event()

    served = ", ".join(running.service_names)

    def on_signal(signum, _frame):
        log.info("%s received %s: draining for up to %.0f s", served, signal.Signals(signum).name, grace)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    done.wait()
    running.stop(grace)
    log.info("%s stopped", served)


def configure_logging(level: str = "INFO") -> None:
    """Logs go to stderr, one line each, with the service's logger name."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
