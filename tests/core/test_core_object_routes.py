"""Presigned URLs that name the public endpoint, fetched by a mesh service
through the internal one: the socket goes to the internal address, the
request (Host header included, which the signature covers) stays as signed."""

from __future__ import annotations

import http.server
import threading

import pytest

from advex.core import fetch, object_routes


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        type(self).seen.append(self.headers["Host"])
        body = b"object bytes"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def internal_endpoint(monkeypatch):
    monkeypatch.setattr(object_routes, "_routes", {})  # routes are process-wide: none leak out of the test
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_routed_url_connects_internally_and_keeps_the_signed_host(internal_endpoint, tmp_path):
    # Nothing listens at the public name here: only the route can reach it.
    public = "http://objects.public.invalid:9000"
    assert object_routes.route(public, internal_endpoint)
    import hashlib

    location = fetch.Location(
        f"{public}/bucket/models/x?X-Amz-Signature=abc", hashlib.sha256(b"object bytes").hexdigest(), 12
    )
    path = fetch.fetch_to(location, tmp_path / "x", what="model", max_bytes=100)
    assert path.read_bytes() == b"object bytes"
    assert _Recorder.seen == ["objects.public.invalid:9000"]


def test_urls_on_other_hosts_and_same_endpoints_are_left_alone(internal_endpoint):
    assert not object_routes.route(None, internal_endpoint)  # no public endpoint: nothing to route
    assert not object_routes.route(internal_endpoint, internal_endpoint.replace("127.0.0.1", "127.0.0.1"))
    assert object_routes._routes == {}
    with pytest.raises(ValueError, match="ADVEX_S3_PUBLIC_ENDPOINT must be an http"):
        object_routes.route("minio:9000", internal_endpoint)
