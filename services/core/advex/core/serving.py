"""Server lifecycle every service shares: health, reflection, error mapping,
graceful drain on SIGTERM.

A service's `create_server(address, config)` calls `start_server` and returns
`(server, port)`; its `main()` is `run_service`, which opens `StopSignals`
*before* it starts the server (so a SIGTERM that follows SERVING is always a
drain, never a kill) and then serves until signalled.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from advex.core.errors import ErrorInterceptor
from advex.core.metrics import MetricsInterceptor, serve_metrics

log = logging.getLogger(__name__)


# Every service and channel in the mesh uses these, so the two ends agree.
KEEPALIVE_SECONDS = 30
MAX_CONNECTION_AGE_SECONDS = 300
# The largest message any server or channel of the mesh (and the CLI) sends
# or receives: grpc's default receive limit, now also the send limit, so an
# oversized answer fails where it is made with RESOURCE_EXHAUSTED. Tensors
# travel in chunks of at most tensors.MAX_MESSAGE_BYTES (1 MiB).
GRPC_MESSAGE_LIMIT_BYTES = 4 * 1024**2
# RPCs a server accepts beyond its worker threads, waiting for one; past
# that it answers RESOURCE_EXHAUSTED at once instead of queueing without end.
QUEUED_RPCS = 64
# Calls that may safely run twice (they change nothing, or end in the same
# state), retried by the channel on UNAVAILABLE: a replica restarting or a
# connection cut. The others are retried, where at all, by the gateway's
# own policy (an evaluation run again), which knows what a repeat means.
IDEMPOTENT_METHODS = {
    "advex.v1.ArtifactService": ("GetArtifact", "ListArtifacts", "GetDownloadUrl", "CompleteUpload"),
    "advex.v1.EvaluationService": ("GetEvaluation", "ListEvaluations", "GetReport"),
    "advex.internal.v1.AttackService": ("InspectModel", "CheckCompatibility", "CheckPoisoning"),
    "grpc.health.v1.Health": ("Check",),
}
RETRY_POLICY = {
    "maxAttempts": 4,
    "initialBackoff": "0.2s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def service_config(balance: bool = True) -> str:
    """The channels' service config: retries of IDEMPOTENT_METHODS and, with
    `balance`, round robin over every address a target resolves to."""
    config = {
        "methodConfig": [{
            "name": [{"service": s, "method": m} for s, methods in IDEMPOTENT_METHODS.items() for m in methods],
            "retryPolicy": RETRY_POLICY,
        }],
    }
    if balance:
        config["loadBalancingConfig"] = [{"round_robin": {}}]
    return json.dumps(config)


MESSAGE_LIMITS = [
    ("grpc.max_receive_message_length", GRPC_MESSAGE_LIMIT_BYTES),
    ("grpc.max_send_message_length", GRPC_MESSAGE_LIMIT_BYTES),
]
# How long a drain waits for health watchers to be told NOT_SERVING before
# it stops the server anyway (RunningServer.stop).
HEALTH_NOTICE_SECONDS = 2.0
# How long past its grace a drain waits for grpc's own stop (RunningServer.stop).
STOP_SLACK_SECONDS = 5.0
SERVER_OPTIONS = [
    # grpc sets SO_REUSEPORT by default: a second server on a taken port
    # would start and silently get half the connections. Fail to bind instead.
    ("grpc.so_reuseport", 0),
    # Clients ping every KEEPALIVE_SECONDS during long quiet streams (an
    # attack computing); grpc's default policy would answer such pings with
    # GOAWAY "too_many_pings" and end the call.
    ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_SECONDS * 1000 // 2),
    # Clients resolve a DNS name again only when a connection ends: closing
    # each connection after MAX_CONNECTION_AGE_SECONDS (with GOAWAY, calls in
    # flight finish: no grace limit) makes a gateway find the attack replicas
    # an autoscaler added behind a headless Service.
    ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_SECONDS * 1000),
    *MESSAGE_LIMITS,
]
CHANNEL_OPTIONS = [
    # A peer that vanished without closing its connection (host gone, network
    # partition) fails the call within KEEPALIVE_SECONDS + 10 s instead of a
    # stream without a deadline waiting forever.
    ("grpc.keepalive_time_ms", KEEPALIVE_SECONDS * 1000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    # A target that resolves to several addresses (`dns:///attack.advex.svc:50053`
    # over a headless Service, or `ipv4:10.0.0.1:50053,10.0.0.2:50053`) gets
    # its calls spread over all of them (one address: no difference), and
    # idempotent calls are retried on UNAVAILABLE. The config is ours alone:
    # a DNS TXT record cannot replace it.
    ("grpc.service_config", service_config()),
    ("grpc.service_config_disable_resolution", 1),
    *MESSAGE_LIMITS,
]


def open_channel(target: str) -> grpc.Channel:
    """An insecure channel to another service of the mesh, with keepalive."""
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


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
    # Prometheus collectors of this server's own state, read at scrape time;
    # registered by run_service when the process serves metrics.
    metrics_collectors: list = field(default_factory=list)
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
        # Watchers hear NOT_SERVING first. grpc_health sends that notice
        # while holding its lock, and a send to a watch whose client went
        # away can wait forever: the call's cancellation, handled on grpc's
        # event thread, needs the same lock (a deadlock grpc_health has in
        # non-blocking mode). So the notice gets its own thread and a short
        # wait, and the stop below a bounded one: a drain always ends.
        notice = threading.Thread(target=self.health.enter_graceful_shutdown, daemon=True, name="health-drain")
        notice.start()
        notice.join(timeout=HEALTH_NOTICE_SECONDS)
        if not self.server.stop(grace).wait(timeout=(grace or 0.0) + STOP_SLACK_SECONDS):
            log.warning(
                "the server had not stopped %.0f s after its %.0f s grace (a health watcher whose client is gone "
                "holds grpc's event thread); going on without it", STOP_SLACK_SECONDS, grace or 0.0,
            )
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
        maximum_concurrent_rpcs=max_workers + QUEUED_RPCS,
        # Metrics outermost: it sees the status the error interceptor chose.
        interceptors=[MetricsInterceptor(), ErrorInterceptor(), *interceptors],
        options=SERVER_OPTIONS,
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
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:  # newer grpc raises where older returned 0
        port = 0
    if port == 0:
        raise OSError(f"could not bind {address}: another process may be listening there; choose another address")
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
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("StopSignals must be created on the main thread (signals are delivered there)")
        self._watched = {int(s) for s in signals}
        self._closed = False
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
        if self._closed:
            return
        self._closed = True
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


def serve_until_signalled(running: RunningServer, stop: StopSignals, name: str, grace: float = 10.0) -> None:
    """Blocks until SIGTERM or SIGINT, then drains and returns."""
    served = f"{name} ({', '.join(running.service_names)})"
    received = stop.wait()
    log.info("%s received %s: draining for up to %.0f s", served, received.name, grace)
    running.stop(grace)
    log.info("%s stopped", served)


class ServiceConfig(Protocol):
    address: str
    # HOST:PORT of the Prometheus endpoint; "" serves none.
    metrics_address: str


Config = TypeVar("Config", bound=ServiceConfig)


def run_service(
    name: str,
    config_from_env: Callable[[Mapping[str, str]], Config],
    create_server: Callable[[str, Config], tuple[RunningServer, int]],
    describe: Callable[[Config], str] = lambda config: "",
) -> None:
    """The whole of a service's `main()`: configuration from the environment,
    the server started, served until SIGTERM/SIGINT, drained.

    A configuration the service cannot start with (a bad value, an address
    it cannot bind, an in-memory database for the gateway) ends the process
    with exit code 2 and one log line saying what to change, not a traceback.
    """
    configure_logging(os.environ.get("ADVEX_LOG_LEVEL", "INFO"))
    with StopSignals() as stop:
        _stop_with_parent(os.environ.get("ADVEX_PARENT_PID"))
        running = metrics = None
        try:
            config = config_from_env(os.environ)
            running, port = create_server(config.address, config)
            if config.metrics_address:
                metrics = serve_metrics(
                    config.metrics_address, f"ADVEX_{name.upper()}_METRICS_ADDR", running.metrics_collectors
                )
        except (ValueError, OSError) as exc:
            log.debug("start-up failed", exc_info=True)  # the trace, should the message not say enough
            log.error("%s cannot start: %s", name, exc)
            if running is not None:
                running.stop(grace=None)
            raise SystemExit(2) from None
        details = describe(config)
        served_metrics = ""
        if metrics is not None:
            host = config.metrics_address.rpartition(":")[0]
            served_metrics = f"; metrics at http://{host}:{metrics.port}/metrics"
        log.info("%s serving on port %d%s%s", name, port, f" ({details})" if details else "", served_metrics)
        try:
            serve_until_signalled(running, stop, name)
        finally:
            if metrics is not None:
                metrics.stop()


def _stop_with_parent(parent_pid: str | None) -> None:
    """Set by `advex up`: on Linux the kernel then sends this process SIGTERM
    (a drain) when `up` dies, even by SIGKILL, so no service is left behind.
    Done here rather than between fork and exec, where `up`'s other threads
    make anything but the exec unsafe."""
    if not parent_pid or not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        log.warning("could not ask to be stopped with advex up (errno %d)", ctypes.get_errno())
    if str(os.getppid()) != parent_pid:  # `up` died before the request took effect
        log.error("advex up (pid %s) is gone; not starting", parent_pid)
        raise SystemExit(1)


def configure_logging(level: str = "INFO") -> None:
    """Logs go to stderr, one line each, with the service's logger name."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
