"""Downloads through real presigned URLs from the moto S3 server (fetch.py)."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from advex.core import fetch
from advex.core.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable


def location(proto) -> fetch.Location:
    return fetch.Location(proto.url, proto.sha256, proto.size_bytes)


@pytest.fixture
def blob(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 4099)  # ~1 MiB: more than one read block
    return path


def test_download_is_verified_cached_and_reused(publish, blob, tmp_path):
    cache = tmp_path / "cache"
    loc = location(publish(blob))
    path = fetch.fetch(loc, cache, suffix=".bin", what="model", max_bytes=1 << 30)
    assert path == cache / f"{loc.sha256}.bin" and path.read_bytes() == blob.read_bytes()
    # A cached object is not downloaded again: even a dead URL now works.
    dead = fetch.Location("http://127.0.0.1:9/gone", loc.sha256, loc.size_bytes)
    assert fetch.fetch(dead, cache, suffix=".bin", what="model", max_bytes=1 << 30) == path


def test_a_file_the_user_downloads_is_as_readable_as_the_umask_says(publish, blob, tmp_path):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        path = fetch.fetch_to(location(publish(blob)), tmp_path / "page.html", what="the page", max_bytes=1 << 30)
    finally:
        os.umask(previous)
    assert path.read_bytes() == blob.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not the private temporary file's 0600


def test_digest_mismatch_names_both_digests_and_leaves_nothing(publish, blob, tmp_path):
    cache = tmp_path / "cache"
    wrong = hashlib.sha256(b"something else").hexdigest()
    loc = location(publish(blob, sha256=wrong))
    actual = hashlib.sha256(blob.read_bytes()).hexdigest()
    with pytest.raises(FailedPrecondition, match=f"SHA-256 {actual} but {wrong} was declared"):
        fetch.fetch(loc, cache, suffix=".bin", what="dataset", max_bytes=1 << 30)
    assert list(cache.iterdir()) == []


def test_size_mismatch_and_limit(publish, blob, tmp_path):
    size = blob.stat().st_size
    short = location(publish(blob, size=size - 10))
    with pytest.raises(FailedPrecondition, match=f"more than {size - 10} bytes"):
        fetch.fetch(short, tmp_path, suffix=".bin", what="model", max_bytes=1 << 30)
    with pytest.raises(ResourceExhausted, match="ADVEX_MAX_DOWNLOAD_BYTES"):
        fetch.fetch(location(publish(blob)), tmp_path, suffix=".bin", what="model", max_bytes=1000)
    assert [p for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_missing_object_and_bad_locations(publish, blob, tmp_path):
    good = location(publish(blob))
    missing = fetch.Location(good.url.replace("blob.bin", "nothing.bin"), good.sha256, good.size_bytes)
    with pytest.raises(NotFound, match="404"):
        fetch.fetch(missing, tmp_path, suffix=".bin", what="model", max_bytes=1 << 30)
    local_file = fetch.Location("file:///etc/passwd", good.sha256, 10)
    with pytest.raises(InvalidArgument, match="http"):
        fetch.fetch(local_file, tmp_path, suffix="", what="model", max_bytes=99)
    with pytest.raises(InvalidArgument, match="64 hexadecimal digits"):
        fetch.fetch(fetch.Location(good.url, "../../etc/passwd", 10), tmp_path, suffix="", what="model", max_bytes=99)


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://[::1/x", "not a valid URL"),
        ("http://h:abc/x", "not a valid URL"),
        ("http://h:99999/x", "not a valid URL"),
        ("http://h/a b", "spaces or control characters"),
        ("http://h/a\r\nX-Injected: 1", "spaces or control characters"),
        ("http:///x", "has no host"),
        ("ftp://h/x", "must be an http(s) presigned URL"),
    ],
)
def test_malformed_urls_are_invalid_arguments(tmp_path, url, message):
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        fetch.fetch(fetch.Location(url, "a" * 64, 10), tmp_path, suffix=".bin", what="model", max_bytes=99)


class _Misbehaving(http.server.BaseHTTPRequestHandler):
    """Answers /redirect with a 302 to the presigned URL, /chunked and /short
    with a body cut short, /reset by dropping the connection."""

    target = ""

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", self.target)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"400\r\n" + b"x" * 1024 + b"\r\n" + b"400\r\n" + b"x" * 10)
        elif self.path == "/short":
            self.send_response(200)
            self.send_header("Content-Length", "2048")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def misbehaving():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Misbehaving
    server.shutdown()
    server.server_close()


def test_redirects_are_refused_not_followed(misbehaving, publish, blob, tmp_path):
    base, handler = misbehaving
    good = location(publish(blob))
    handler.target = good.url  # a follower would download the right bytes
    redirected = fetch.Location(f"{base}/redirect", good.sha256, good.size_bytes)
    cache = tmp_path / "cache"
    with pytest.raises(FailedPrecondition, match="HTTP 302 .*presigned URLs must point at the object directly"):
        fetch.fetch(redirected, cache, suffix=".bin", what="model", max_bytes=1 << 30)
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("path", ["/chunked", "/short"])
def test_bodies_cut_short_are_unavailable_and_leave_nothing(misbehaving, tmp_path, path):
    base, _ = misbehaving
    loc = fetch.Location(f"{base}{path}", "a" * 64, 2048)
    with pytest.raises(Unavailable, match="IncompleteRead|closed after 1000 bytes, 1048 more were expected"):
        fetch.fetch(loc, tmp_path, suffix=".bin", what="dataset", max_bytes=1 << 30)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_and_non_http_servers_are_unavailable(misbehaving, tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with pytest.raises(Unavailable, match="model download failed"):
        fetch.fetch(fetch.Location(f"http://127.0.0.1:{closed}/x", "a" * 64, 10), tmp_path, suffix="", what="model",
                    max_bytes=99)
    # TLS to a plain HTTP server: an SSL error.
    base, _ = misbehaving
    with pytest.raises(Unavailable, match="SSL|ssl|EOF"):
        fetch.fetch(fetch.Location(base.replace("http:", "https:") + "/short", "a" * 64, 10), tmp_path, suffix="",
                    what="model", max_bytes=99)
