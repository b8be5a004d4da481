"""Reaching the object store at another address than presigned URLs name.

Storage signs upload and download URLs for ADVEX_S3_PUBLIC_ENDPOINT, the
address users can reach (http://localhost:9000 for compose's MinIO, an
ingress in a cluster). Inside the mesh that address may lead nowhere, so the
gateway and the attack service, given both endpoints, open their TCP
connection to ADVEX_S3_ENDPOINT instead while sending the URL's own Host
header, which the signature covers: the object store sees exactly the
request that was signed (what curl's --connect-to does).

`route` is called once by a service when it starts (from its config, never
at import); the CLI never calls it, so users' transfers go where the URL says.
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.parse
import urllib.request

_DEFAULT_PORTS = {"http": 80, "https": 443}
# (scheme, host, port) named by URLs -> (host, port) to connect to.
_routes: dict[tuple[str, str, int], tuple[str, int]] = {}
_lock = threading.Lock()


def _endpoint(url: str, variable: str) -> tuple[str, str, int]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{variable} must be an http(s) URL such as http://minio:9000, got {url!r}")
    return scheme, parts.hostname.lower(), parts.port or _DEFAULT_PORTS[scheme]


def check_endpoint(url: str | None, variable: str) -> None:
    """For a config's __post_init__: unset, or an http(s) URL with a host."""
    if url:
        _endpoint(url, variable)


def route(public_endpoint: str | None, internal_endpoint: str | None) -> bool:
    """Connects to `internal_endpoint` for URLs on `public_endpoint` from
    now on, in this process; False (nothing to do) unless both are set and
    differ."""
    if not public_endpoint or not internal_endpoint:
        return False
    public = _endpoint(public_endpoint, "ADVEX_S3_PUBLIC_ENDPOINT")
    _, host, port = _endpoint(internal_endpoint, "ADVEX_S3_ENDPOINT")
    if public[1:] == (host, port):
        return False
    with _lock:
        _routes[public] = (host, port)
    return True


def _target(scheme: str, host: str, port: int | None) -> tuple[str, int] | None:
    with _lock:
        return _routes.get((scheme, host.lower(), port or _DEFAULT_PORTS[scheme]))


def _routed(connection: http.client.HTTPConnection, scheme: str) -> http.client.HTTPConnection:
    target = _target(scheme, connection.host, connection.port)
    if target is not None:
        # The connection keeps its host for the Host header (and TLS's SNI
        # and certificate check); only where the socket goes changes.
        connection._create_connection = lambda _address, *args: socket.create_connection(target, *args)
    return connection


class _RoutedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(lambda host, **kw: _routed(http.client.HTTPConnection(host, **kw), "http"), req)


class _RoutedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(
            lambda host, **kw: _routed(http.client.HTTPSConnection(host, **kw), "https"),
            req,
            context=self._context,
        )


def opener(*handlers: urllib.request.BaseHandler) -> urllib.request.OpenerDirector:
    """urllib's default opener, routed as above, with `handlers` added."""
    return urllib.request.build_opener(_RoutedHTTPHandler(), _RoutedHTTPSHandler(), *handlers)
