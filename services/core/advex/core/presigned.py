"""Uploading a file through a presigned PUT URL: what the CLI does for a
user's model or dataset, and the attack service for what it made (poisoned
datasets, trained models). Standard library only."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from advex.core import object_routes
from advex.core.errors import FailedPrecondition, Unavailable

UPLOAD_TIMEOUT_S = 300.0
# Routed to the object store's internal endpoint where a service set one.
_OPENER = object_routes.opener()


def file_digest(path: Path) -> tuple[int, str]:
    """(size in bytes, lower-case hex SHA-256): what an upload declares."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


class _ProgressReader:
    """A file wrapper that reports bytes read, for progress bars."""

    def __init__(self, path: Path, on_read: Callable[[int], None]):
        self._file = open(path, "rb")
        self._on_read = on_read

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._on_read(len(data))
        return data

    def close(self) -> None:
        self._file.close()


def put_file(
    path: Path,
    url: str,
    method: str = "PUT",
    headers: Mapping[str, str] | None = None,
    on_progress: Callable[[int], None] = lambda n: None,
    timeout: float = UPLOAD_TIMEOUT_S,
) -> None:
    """PUTs the bytes of `path` to `url` with the headers it was signed for.

    FailedPrecondition when the object store refuses (an expired or wrong
    URL: ask for a new one), Unavailable when it cannot be reached."""
    size = path.stat().st_size
    body = _ProgressReader(path, on_progress)
    request = urllib.request.Request(url, data=body, method=method or "PUT")
    # urllib would otherwise send a form's content type, which a URL signed
    # for none (or for another) does not match, and S3 servers may parse.
    request.add_header("Content-Type", "application/octet-stream")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    request.add_header("Content-Length", str(size))
    try:
        with _OPENER.open(request, timeout=timeout) as response:  # noqa: S310 - a presigned URL
            response.read()
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise Unavailable(f"the object store failed the upload of {path.name}: HTTP {exc.code} {exc.reason}") from None
        raise FailedPrecondition(
            f"the object store refused the upload of {path.name}: HTTP {exc.code} {exc.reason}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise Unavailable(f"the object store could not be reached to upload {path.name}: {reason}") from None
    finally:
        body.close()
