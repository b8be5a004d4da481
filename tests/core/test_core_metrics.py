"""The RPC metrics every server counts, and the /metrics endpoint, over real
sockets: codes as the client sees them, streams timed to their end."""

from __future__ import annotations

import urllib.request

import grpc
import pytest
from prometheus_client import REGISTRY

from advex.core.errors import NotFound
from advex.core.metrics import parse_address, serve_metrics
from advex.core.serving import Registration, start_server

SERVICE = "test.Metrics"


def _registration() -> Registration:
    def unary(request, context):
        if request == b"missing":
            raise NotFound("there is no such thing")
        return request

    def stream(request, context):
        for _ in range(3):
            yield request

    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
    })
    return Registration(SERVICE, lambda server: server.add_generic_rpc_handlers((handler,)))


def _handled(method: str, kind: str, code: str) -> float:
    labels = dict(grpc_service=SERVICE, grpc_method=method, grpc_type=kind, grpc_code=code)
    return REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0.0


def test_rpcs_are_counted_by_method_and_the_code_the_client_got():
    running = start_server("127.0.0.1:0", [_registration()])
    before = {code: _handled("Unary", "unary", code) for code in ("OK", "NOT_FOUND")}
    streams_before = _handled("Stream", "server_stream", "OK")
    timed_before = REGISTRY.get_sample_value(
        "grpc_server_handling_seconds_count", dict(grpc_service=SERVICE, grpc_method="Stream", grpc_type="server_stream")
    ) or 0.0
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            unary = channel.unary_unary(f"/{SERVICE}/Unary")
            assert unary(b"x", timeout=10) == b"x"
            assert unary(b"y", timeout=10) == b"y"
            with pytest.raises(grpc.RpcError) as missing:
                unary(b"missing", timeout=10)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            assert list(channel.unary_stream(f"/{SERVICE}/Stream")(b"s", timeout=10)) == [b"s"] * 3
    finally:
        running.stop(grace=None)
    assert _handled("Unary", "unary", "OK") - before["OK"] == 2
    assert _handled("Unary", "unary", "NOT_FOUND") - before["NOT_FOUND"] == 1  # the error interceptor's status
    assert _handled("Stream", "server_stream", "OK") - streams_before == 1
    timed = REGISTRY.get_sample_value(
        "grpc_server_handling_seconds_count", dict(grpc_service=SERVICE, grpc_method="Stream", grpc_type="server_stream")
    )
    assert timed - timed_before == 1


def test_the_endpoint_serves_the_registry_over_http():
    endpoint = serve_metrics("127.0.0.1:0", "ADVEX_TEST_METRICS_ADDR")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        endpoint.stop()
    assert "# TYPE grpc_server_handled_total counter" in text


@pytest.mark.parametrize("address", ["9451", ":9451", "host:port", "127.0.0.1:70000"])
def test_a_malformed_address_names_the_variable(address):
    with pytest.raises(ValueError, match="ADVEX_X_METRICS_ADDR must be HOST:PORT"):
        parse_address(address, "ADVEX_X_METRICS_ADDR")
