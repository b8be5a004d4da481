"""The S3 endpoint `advex up` embeds when no ADVEX_S3_ENDPOINT is set.

moto's S3 server on loopback does the S3 protocol (presigned URLs, ETags,
conditional reads, copies); moto keeps objects in memory only, so this
module puts a write-through mirror in front of it: every request that
changes an object is answered only once the object's bytes (or its absence)
are on disk under `root`, and `start()` loads that mirror back into moto.
Uploads, reports and kept datasets therefore survive a restart of the mesh.

The mirror holds one file per object, `root/<bucket>/<key>` with bucket and
key percent-encoded into single file names, so no key can name a path
outside `root`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import zlib
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

# A presigned URL's credential and signature (query values of the request
# line an HTTP server logs).
_PRESIGNED_SECRETS = re.compile(r"(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"]+", re.IGNORECASE)

_BLOCK = 1 << 20
# Mutating requests on one key are serialised through one of these locks
# (picked by the key's hash), so a slow mirror write cannot overtake a
# later PUT of the same key.
_LOCK_STRIPES = 64
# What may sit in an object request's query without making it a request on
# a sub-resource (?acl, ?tagging, ?uploadId, ...): presigning's parameters.
_SIGNING_PARAMETER = re.compile(r"(?i)x-amz-.*|x-id")
_PARTIAL_SUFFIX = ".partial"
_DISK_ERROR = (
    b"<Error><Code>InternalError</Code><Message>the embedded S3 endpoint could not write the object "
    b"to its disk; see the log of advex up</Message></Error>"
)


class _RedactPresigned(logging.Filter):
    """Takes the signature and credential out of a logged request line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _PRESIGNED_SECRETS.sub(r"\1<redacted>", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def quiet_s3_log() -> None:
    """The embedded S3 endpoint (werkzeug under moto) logs every request at
    INFO with its full presigned URL: warnings only, and never a signature
    or credential, even in those."""
    server_log = logging.getLogger("werkzeug")
    server_log.setLevel(logging.WARNING)
    if not any(isinstance(f, _RedactPresigned) for f in server_log.filters):
        server_log.addFilter(_RedactPresigned())


def _file_name(part: str) -> str:
    # quote() leaves "." alone, so "." and ".." get their dots encoded too.
    name = quote(part, safe="")
    return name.replace(".", "%2E") if name in (".", "..") else name


class MirrorError(Exception):
    """An object could not be written to (or removed from) the disk mirror."""


class DiskMirror:
    """The on-disk copy of the endpoint's buckets and objects."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def bucket_dir(self, bucket: str) -> Path:
        return self.root / _file_name(bucket)

    def object_path(self, bucket: str, key: str) -> Path:
        return self.bucket_dir(bucket) / _file_name(key)

    def buckets(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(unquote(p.name) for p in self.root.iterdir() if p.is_dir())

    def objects(self, bucket: str) -> list[tuple[str, Path]]:
        """(key, file) of every object of `bucket`; half-written files left by
        a crash are removed, never loaded."""
        found = []
        for path in sorted(self.bucket_dir(bucket).iterdir()):
            if path.name.endswith(_PARTIAL_SUFFIX):
                path.unlink(missing_ok=True)
            elif path.is_file():
                found.append((unquote(path.name), path))
        return found

    def add_bucket(self, bucket: str) -> None:
        self.bucket_dir(bucket).mkdir(parents=True, exist_ok=True)

    def remove_bucket(self, bucket: str) -> None:
        shutil.rmtree(self.bucket_dir(bucket), ignore_errors=True)

    def write(self, bucket: str, key: str, blocks) -> None:
        """Replaces the object's file atomically: a crash leaves the old
        version or the new one, never a mix."""
        target = self.object_path(bucket, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + _PARTIAL_SUFFIX)
        try:
            with open(partial, "wb") as out:
                for block in blocks:
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, target)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise MirrorError(f"cannot write {target}: {error}") from error

    def remove(self, bucket: str, key: str) -> None:
        try:
            self.object_path(bucket, key).unlink(missing_ok=True)
        except OSError as error:
            raise MirrorError(f"cannot remove {self.object_path(bucket, key)}: {error}") from error


def _split_path(path: str) -> tuple[str, str]:
    """(bucket, key) of a path-style request path; key is "" for the bucket.
    WSGI's PATH_INFO is percent-decoded already, its bytes held as latin-1."""
    path = path.encode("latin-1").decode("utf-8", "replace")
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket, key


class _WriteThrough:
    """WSGI middleware: passes every request to moto, and before answering a
    request that changed an object, brings the disk mirror up to date."""

    def __init__(self, app, mirror: DiskMirror) -> None:
        self.app = app
        self.mirror = mirror
        # Set once the server listens: reads objects back from it.
        self.client = None
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    def __call__(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        if method not in ("PUT", "POST", "DELETE"):
            return self.app(environ, start_response)
        bucket, key = _split_path(environ.get("PATH_INFO", ""))
        query = {name for name, _ in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)}
        lock = self._locks[zlib.crc32(f"{bucket}/{key}".encode()) % _LOCK_STRIPES]
        with lock:
            captured: list = []

            def capture(status, headers, exc_info=None):
                captured[:] = [status, headers, exc_info]
                return lambda data: body.append(data)

            body: list[bytes] = []
            result = self.app(environ, capture)
            try:
                body.extend(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
            status, headers, exc_info = captured
            if status.startswith("2"):
                try:
                    self._mirror(method, bucket, key, query)
                except (MirrorError, OSError, BotoCoreError, ClientError) as error:
                    log.error("embedded S3: %s", error)
                    # boto3 retries a 500; moto may hold the new version
                    # already, which a retried PUT simply writes again.
                    start_response(
                        "500 Internal Server Error",
                        [("Content-Type", "application/xml"), ("Content-Length", str(len(_DISK_ERROR)))],
                    )
                    return [_DISK_ERROR]
            start_response(status, headers, exc_info)
            return body

    def _mirror(self, method: str, bucket: str, key: str, query: set[str]) -> None:
        if not bucket:
            return
        if not key:
            if method == "PUT" and not query:
                self.mirror.add_bucket(bucket)
            elif method == "DELETE" and not query:
                self.mirror.remove_bucket(bucket)
            elif method == "POST" and "delete" in query:
                self._reconcile(bucket)  # DeleteObjects: which keys went is in the request body
            return
        plain = all(_SIGNING_PARAMETER.fullmatch(name) for name in query)
        if method == "PUT" and plain:  # PutObject, CopyObject
            self._copy_from_endpoint(bucket, key)
        elif method == "POST" and "uploadId" in query:  # CompleteMultipartUpload
            self._copy_from_endpoint(bucket, key)
        elif method == "DELETE" and plain:  # DeleteObject (with uploadId: an aborted upload)
            self.mirror.remove(bucket, key)

    def _copy_from_endpoint(self, bucket: str, key: str) -> None:
        # Read back through the endpoint itself: moto's public protocol, not
        # its internals, so a moto upgrade cannot break the mirror.
        try:
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                self.mirror.remove(bucket, key)
                return
            raise MirrorError(f"reading back {bucket}/{key} failed: {error}") from error
        try:
            self.mirror.write(bucket, key, body.iter_chunks(_BLOCK))
        finally:
            body.close()

    def _reconcile(self, bucket: str) -> None:
        """Removes the mirror's files of objects the endpoint no longer has."""
        kept = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            kept.update(item["Key"] for item in page.get("Contents", []))
        for key, _ in self.mirror.objects(bucket):
            if key not in kept:
                self.mirror.remove(bucket, key)


def _client(endpoint: str):
    """A boto3 client of the endpoint; moto's server checks no signature, so
    the credentials are placeholders."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="advex-embedded",
        aws_secret_access_key="advex-embedded",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


class EmbeddedS3:
    """moto's S3 on 127.0.0.1:`port` (0: any free port), its objects kept
    under `root`."""

    def __init__(self, root: Path, port: int = 0) -> None:
        self.root = root
        self.port = port
        self.mirror = DiskMirror(root)
        self._server = None
        self._thread: threading.Thread | None = None
        self._restoring = False

    def start(self) -> str:
        """Serves, loads the mirror back into the endpoint, and returns the
        endpoint's URL."""
        from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        quiet_s3_log()
        self.root.mkdir(parents=True, exist_ok=True)
        self._restoring = True
        middleware = _WriteThrough(create_backend_app("s3"), self.mirror)
        self._server = make_server(
            "127.0.0.1", self.port, self._during_restore(middleware), threaded=True, request_handler=MotoRequestHandler
        )
        host, port = self._server.server_address[:2]
        endpoint = f"http://{host}:{port}"
        middleware.client = _client(endpoint)
        self._thread = threading.Thread(target=self._server.serve_forever, name="embedded-s3", daemon=True)
        self._thread.start()
        try:
            self._restore(middleware.client)
        except BaseException:
            self.stop()
            raise
        self._restoring = False
        return endpoint

    def _during_restore(self, middleware: _WriteThrough):
        # While the mirror is loaded back, requests reach moto directly: the
        # files are already what the mirror would write.
        def app(environ, start_response):
            return (middleware.app if self._restoring else middleware)(environ, start_response)

        return app

    def _restore(self, client) -> int:
        restored = 0
        for bucket in self.mirror.buckets():
            try:
                client.create_bucket(Bucket=bucket)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise
            for key, path in self.mirror.objects(bucket):
                with open(path, "rb") as body:
                    client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/octet-stream")
                restored += 1
        if restored:
            log.info("embedded S3: %d objects loaded from %s", restored, self.root)
        return restored

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
