"""The object store: presigned URLs and the few S3 calls storage makes.

Path-style addressing and SigV4 keep presigned URLs valid against MinIO and
moto on loopback as well as AWS.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from advex.core.errors import Unavailable

_BLOCK = 1 << 20
CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str


@dataclass(frozen=True)
class Download:
    size: int
    sha256: str
    etag: str


class ObjectChanged(Exception):
    """The object is gone or differs from the version that was read."""


def _missing(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    return code in ("404", "NoSuchKey", "NotFound")


def _precondition_failed(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    return code in ("412", "PreconditionFailed")


class ObjectStore:
    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.region = region
        def client(endpoint: str | None):
            return boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name=region,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=Config(
                    signature_version="s3v4",
                    s3={"addressing_style": "path"},
                    retries={"max_attempts": 3, "mode": "standard"},
                ),
            )

        self._s3 = client(endpoint_url)
        # Presigning is local arithmetic: this client never connects. Its
        # endpoint is what the URLs name, the address users reach.
        self._signer = client(public_endpoint_url) if public_endpoint_url else self._s3

    def ensure_bucket(self) -> None:
        try:
            self._s3.head_bucket(Bucket=self.bucket)
            return
        except ClientError as error:
            if not _missing(error):
                raise Unavailable(f"cannot reach S3 bucket '{self.bucket}': {error}") from error
        # us-east-1 is the one region S3 refuses an explicit LocationConstraint for.
        location = {} if self.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        self._s3.create_bucket(Bucket=self.bucket, **location)

    def presigned_put(self, key: str, size: int, ttl_s: int) -> tuple[str, dict[str, str]]:
        """A PUT URL for `key` and the headers the upload must carry.

        Content-Length and Content-Type are signed, so S3 refuses a body of any
        other size before storing it (moto does not enforce this; verification
        at CompleteUpload catches it either way).
        """
        url = self._signer.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": key, "ContentLength": size, "ContentType": CONTENT_TYPE},
            ExpiresIn=ttl_s,
            HttpMethod="PUT",
        )
        return url, {"Content-Type": CONTENT_TYPE, "Content-Length": str(size)}

    def presigned_get(self, key: str, ttl_s: int) -> str:
        return self._signer.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_s, HttpMethod="GET"
        )

    def head(self, key: str) -> ObjectInfo | None:
        """Size and ETag of `key`, or None when nothing is stored there."""
        try:
            response = self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _missing(error):
                return None
            raise
        return ObjectInfo(size=response["ContentLength"], etag=response["ETag"])

    def read_blocks(self, key: str, etag: str | None = None) -> Iterator[bytes]:
        """The object's bytes in blocks; with `etag`, only that exact version."""
        params = {"Bucket": self.bucket, "Key": key}
        if etag:
            params["IfMatch"] = etag
        try:
            body = self._s3.get_object(**params)["Body"]
        except ClientError as error:
            if _missing(error) or _precondition_failed(error):
                raise ObjectChanged(key) from error
            raise
        try:
            yield from body.iter_chunks(_BLOCK)
        finally:
            body.close()

    def download(self, key: str, out: BinaryIO, etag: str, limit: int) -> Download:
        """Streams version `etag` of `key` into `out` while hashing it.

        Stops after `limit` + 1 bytes, so a swapped-in bigger object cannot
        fill the disk; the caller sees size > limit and rejects.
        """
        digest = hashlib.sha256()
        size = 0
        for block in self.read_blocks(key, etag):
            block = block[: limit + 1 - size]
            digest.update(block)
            out.write(block)
            size += len(block)
            if size > limit:
                break
        out.flush()
        return Download(size=size, sha256=digest.hexdigest(), etag=etag)

    def copy(self, source: str, target: str, etag: str) -> None:
        """Server-side copy of exactly version `etag` of `source`."""
        try:
            self._s3.copy_object(
                Bucket=self.bucket,
                Key=target,
                CopySource={"Bucket": self.bucket, "Key": source},
                CopySourceIfMatch=etag,
                ContentType=CONTENT_TYPE,
                MetadataDirective="REPLACE",
            )
        except ClientError as error:
            if _missing(error) or _precondition_failed(error):
                raise ObjectChanged(source) from error
            raise

    def keys(self, prefix: str) -> Iterator[str]:
        """Every key that starts with `prefix`, a page of the listing at a time."""
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def delete(self, key: str) -> None:
        # Deleting a key that does not exist succeeds on S3, which keeps
        # cleanup idempotent.
        self._s3.delete_object(Bucket=self.bucket, Key=key)
