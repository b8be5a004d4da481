"""Downloads objects through presigned GET URLs, verified.

The attack service holds no S3 credentials: storage hands out presigned URLs,
and every byte is checked against the size and SHA-256 the caller declared
before anything parses it. `fetch` keeps a content-addressed cache (the
attack service); `fetch_to` writes one named file (the CLI's `download`).
Either file only ever appears complete (written to a temporary file,
verified, then renamed).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from advex.core import object_routes
from advex.core.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_BLOCK = 1 << 20
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Location:
    """Where to fetch an object and what it must hash to."""

    url: str
    sha256: str
    size_bytes: int


def _check(location: Location, what: str, max_bytes: int) -> str:
    sha = location.sha256.strip().lower()
    # The digest becomes a file name: only 64 hex digits, never a path.
    if not _SHA256.fullmatch(sha):
        raise InvalidArgument(f"{what}.sha256 must be 64 hexadecimal digits, got {location.sha256!r}")
    if location.size_bytes <= 0:
        raise InvalidArgument(f"{what}.size_bytes must be the object's size in bytes (> 0), got {location.size_bytes}")
    if location.size_bytes > max_bytes:
        raise ResourceExhausted(
            f"{what} is {location.size_bytes} bytes, more than this service downloads "
            f"({max_bytes} bytes, ADVEX_MAX_DOWNLOAD_BYTES)"
        )
    _check_url(location.url, what)
    return sha


def _check_url(url: str, what: str) -> None:
    """InvalidArgument unless `url` is a well-formed http(s) URL with a host."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise InvalidArgument(_bad_url(what, "is not a valid URL", exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidArgument(f"{what}.url must be an http(s) presigned URL, got scheme {scheme or 'none'!r}")
    if not parts.hostname:
        raise InvalidArgument(f"{what}.url has no host; pass the presigned URL storage returned")
    # http.client refuses these itself, but only once connected.
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise InvalidArgument(
            f"{what}.url contains spaces or control characters; percent-encode them or pass the presigned URL "
            "storage returned"
        )


def _bad_url(what: str, problem: str, exc: Exception) -> str:
    return f"{what}.url {problem} ({exc}); pass the presigned URL storage returned"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A presigned URL names the object itself: a redirect is refused, not followed."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises the 3xx as an HTTPError


# build_opener keeps its other default handlers (proxies from the environment
# included) but uses this redirect handler instead of the following one; the
# routed ones reach the object store's internal endpoint where one is set.
_OPENER = object_routes.opener(_NoRedirects)


def fetch(location: Location, cache_dir: str | os.PathLike, *, suffix: str, what: str, max_bytes: int) -> Path:
    """The local path of the verified object, downloading it unless cached.

    `suffix` (".keras", ".npz") is part of the cache name because Keras picks
    its loader from the file name. `what` ("model", "dataset") names the
    object in error messages.
    """
    sha = _check(location, what, max_bytes)
    cache = Path(cache_dir)
    target = cache / f"{sha}{suffix}"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    _fetch_verified(location, sha, target, what)
    log.info("fetched %s %s (%d bytes)", what, sha[:12], location.size_bytes)
    return target


def fetch_to(location: Location, path: str | os.PathLike, *, what: str, max_bytes: int) -> Path:
    """Downloads the object to `path` (replacing what is there), verified,
    readable as the user's umask says (like any file they write; the
    download itself goes through a private temporary file)."""
    sha = _check(location, what, max_bytes)
    target = Path(path)
    _fetch_verified(location, sha, target, what)
    os.chmod(target, 0o666 & ~_umask())
    return target


def _umask() -> int:
    """The process's umask, read without setting it (os.umask can only
    read by writing, which races with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _fetch_verified(location: Location, sha: str, target: Path, what: str) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{sha[:16]}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest, size = _download(location, out, what)
        if size != location.size_bytes:
            got = f"more than {location.size_bytes}" if size > location.size_bytes else str(size)
            raise FailedPrecondition(
                f"{what} download has {got} bytes but {location.size_bytes} were declared; "
                "the object changed or the declared size is wrong"
            )
        if digest != sha:
            raise FailedPrecondition(
                f"{what} download has SHA-256 {digest} but {sha} was declared; "
                "the object changed or the declared digest is wrong"
            )
        # Atomic: concurrent downloads of the same object both end in one
        # complete file, and no reader ever sees a partial one.
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _download(location: Location, out, what: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    # Reading one byte past the declared size is enough to know it is too big.
    limit = location.size_bytes + 1
    try:
        with _OPENER.open(location.url, timeout=_TIMEOUT_S) as response:  # noqa: S310 - scheme checked
            while size < limit:
                block = response.read(min(_BLOCK, limit - size))
                if not block:
                    break
                digest.update(block)
                out.write(block)
                size += len(block)
            # http.client ends a body cut short by the network like a complete
            # one; only the bytes still owed by Content-Length tell them apart.
            owed = getattr(response, "length", None)
            if size < limit and owed:
                raise Unavailable(
                    f"{what} download failed: the connection closed after {size} bytes, {owed} more were expected"
                )
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise NotFound(f"{what} URL answered HTTP 404: the object does not exist") from None
        if exc.code == 403:
            raise FailedPrecondition(
                f"{what} URL answered HTTP 403: the presigned URL has expired or is not valid; "
                "ask storage for a new one"
            ) from None
        if 300 <= exc.code < 400:
            raise FailedPrecondition(
                f"{what} URL answered HTTP {exc.code} (a redirect); presigned URLs must point at the object "
                "directly: pass the URL storage returned"
            ) from None
        raise Unavailable(f"{what} download failed with HTTP {exc.code} {exc.reason}") from None
    except http.client.InvalidURL as exc:
        raise InvalidArgument(_bad_url(what, "is not a valid URL", exc)) from None
    except ValueError as exc:
        # urllib's own refusals of a URL it cannot request.
        raise InvalidArgument(_bad_url(what, "cannot be requested", exc)) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        # Network trouble, whenever it strikes: refused or reset connections,
        # timeouts, TLS errors, a body cut short (IncompleteRead). Transient:
        # the caller retries, and fetch() removes the partial file.
        reason = getattr(exc, "reason", None) or exc
        raise Unavailable(f"{what} download failed: {type(exc).__name__}: {reason}") from None
    return digest.hexdigest(), size
