"""Server lifecycle every service shares: health, reflection, error mapping,
graceful drain on SIGTERM.

A service's `create_server(address, config)` calls `start_server` and returns
`(server, port)`; its `main()` opens `StopSignals` *before* it starts the
server (so a SIGTERM that follows SERVING is always a drain, never a kill) and
then calls `serve_until_signalled`.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time
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


class StopSignals:
    """SIGTERM and SIGINT as something the main thread can wait for.

    A Python-level signal handler runs on the main thread between any two
    bytecodes. One that calls `threading.Event.set()` deadlocks when the signal
    lands while that same thread holds the Event's internal (non-reentrant)
    lock, which `Event.wait` does briefly on every call. So the handler here
    does nothing at all: the interpreter's C-level handler writes the signal
    number into a pipe (`signal.set_wakeup_fd`) and `wait` reads it from there.

    Must be created on the main thread; `close` restores what was there before.
    """

    def __init__(self, signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self._watched = {int(s) for s in signals}
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._previous_handlers = {s: signal.signal(s, _ignore_signal) for s in signals}
        self.received: signal.Signals | None = None

    def wait(self, timeout: float | None = None) -> signal.Signals | None:
        """The first watched signal received, or None if `timeout` s pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.received is None:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._read_fd], [], [], remaining)
            if ready:
                # Other signals with Python handlers write their numbers too.
                for number in os.read(self._read_fd, 64):
                    if number in self._watched and self.received is None:
                        self.received = signal.Signals(number)
            elif remaining is not None and remaining <= 0:
                break
        return self.received

    def close(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._read_fd)
        os.close(self._write_fd)

    def __enter__(self) -> StopSignals:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def _ignore_signal(_signum, _frame) -> None:
    """Installed so that the C-level handler records the signal (see StopSignals)."""


def serve_until_signalled(running: RunningServer, stop: StopSignals, grace: float = 10.0) -> None:
    """Blocks until SIGTERM or SIGINT, then drains and returns."""
    served = ", ".join(running.service_names)
    received = stop.wait()
    log.info("%s received %s: draining for up to %.0f s", served, received.name, grace)
    running.stop(grace)
    log.info("%s stopped", served)


def configure_logging(level: str = "INFO") -> None:
    """Logs go to stderr, one line each, with the service's logger name."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
