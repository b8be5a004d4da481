"""Prometheus metrics: what every service counts, and the HTTP endpoint that
serves them (ADVEX_<SERVICE>_METRICS_ADDR).

RPC metrics use the names go-grpc-prometheus made common
(`grpc_server_handled_total`, `grpc_server_handling_seconds`, ...), so
existing dashboards and alerts work; they come from one interceptor that
every server installs (`MetricsInterceptor`, outermost, so it sees the status
the error interceptor chose). Domain metrics are `advex_*` and live beside
the code that moves them (each service's `monitoring` module); the README
lists them all.

Metrics are process-wide (prometheus_client's default registry), as a
process runs one service. Collectors that read a service's own state at
scrape time (the gateway's evaluations by state) are registered only by
`serve_metrics`, which `run_service` calls once per process.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import grpc
from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.registry import Collector

from advex.core import handlers

# Covers quick control RPCs (ms) to whole evaluation streams (minutes).
_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
_RPC_LABELS = ("grpc_service", "grpc_method", "grpc_type")

RPC_STARTED = Counter("grpc_server_started_total", "RPCs started on the server.", _RPC_LABELS)
RPC_HANDLED = Counter(
    "grpc_server_handled_total", "RPCs completed on the server, by status code.", (*_RPC_LABELS, "grpc_code")
)
RPC_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from an RPC's start to its end (a stream's whole life), by method.",
    _RPC_LABELS,
    buckets=_LATENCY_BUCKETS,
)


def _split(full_method: str) -> tuple[str, str]:
    """("advex.v1.ArtifactService", "CreateUpload") of "/advex.v1.ArtifactService/CreateUpload"."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service or "unknown", method


def _code_name(context: grpc.ServicerContext, raised: bool) -> str:
    code = context.code()
    if code is None:
        # A handler that raised without a status is UNKNOWN to the client.
        return "UNKNOWN" if raised else "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts every RPC (started, handled by code) and times it."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service, method = _split(handler_call_details.method)
        labels = (service, method, handlers.call_type(handler))

        def finish(context, started: float, raised: bool) -> None:
            RPC_HANDLED.labels(*labels, _code_name(context, raised)).inc()
            RPC_SECONDS.labels(*labels).observe(time.perf_counter() - started)

        def wrap_unary(call):
            def run(request_or_iterator, context):
                RPC_STARTED.labels(*labels).inc()
                started, raised = time.perf_counter(), True
                try:
                    response = call(request_or_iterator, context)
                    raised = False
                    return response
                finally:
                    finish(context, started, raised)

            return run

        def wrap_stream(call):
            def run(request_or_iterator, context):
                RPC_STARTED.labels(*labels).inc()
                started, raised = time.perf_counter(), True
                try:
                    yield from call(request_or_iterator, context)
                    raised = False
                except GeneratorExit:
                    # The client went away (cancel, deadline): grpc closes the stream.
                    if context.code() is None:
                        context.set_code(grpc.StatusCode.CANCELLED)
                    raise
                finally:
                    finish(context, started, raised)

            return run

        # Health.Watch (non-blocking) stays unwrapped, so it is not counted.
        return handlers.wrapped(handler, wrap_unary, wrap_stream)


def parse_address(address: str, variable: str) -> tuple[str, int]:
    """(host, port) of "HOST:PORT" ("[::1]:9451" for IPv6); ValueError naming `variable`."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(
            f"{variable} must be HOST:PORT (e.g. 127.0.0.1:9451), or off to serve no metrics; got {address!r}"
        )
    return host.strip("[]"), int(port)


def check_address(address: str, variable: str) -> None:
    """For a config's __post_init__: "" (off) or a HOST:PORT."""
    if address:
        parse_address(address, variable)


class MetricsEndpoint:
    """The running /metrics HTTP server."""

    def __init__(self, server, thread) -> None:
        self._server = server
        self._thread = thread
        self.port: int = server.server_port

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(address: str, variable: str, collectors: Iterable[Collector] = ()) -> MetricsEndpoint:
    """Serves the process's metrics at http://`address`/metrics (port 0: a
    free one), with `collectors` (state read at scrape time) registered once.
    OSError when the address cannot be bound; ValueError when malformed."""
    host, port = parse_address(address, variable)
    for collector in collectors:
        REGISTRY.register(collector)
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as error:
        raise OSError(f"could not serve metrics at {address} ({variable}): {error.strerror or error}") from error
    return MetricsEndpoint(server, thread)
