"""A storage server on loopback, backed by the moto S3 fixture and SQLite,
and a client that uploads through its presigned URLs over real HTTP."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import grpc
import pytest

from advex.storage.config import StorageConfig
from advex.storage.server import create_server
from advex.v1 import artifact_pb2, artifact_pb2_grpc

from loopback_s3 import S3_CREDENTIALS


def http_put(url: str, headers: dict[str, str], body: bytes) -> int:
    """PUTs `body`; the HTTP status, also for refusals."""
    request = urllib.request.Request(url, data=body, method="PUT", headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


@dataclass
class StorageClient:
    stub: artifact_pb2_grpc.ArtifactServiceStub
    # A plain boto3 client, to look at the bucket behind the service's back.
    s3: object
    bucket: str
    config: StorageConfig

    def create(self, kind, body: bytes, *, size: int | None = None, sha256: str | None = None, display_name="t"):
        return self.stub.CreateUpload(
            artifact_pb2.CreateUploadRequest(
                kind=kind,
                display_name=display_name,
                size_bytes=len(body) if size is None else size,
                sha256=hashlib.sha256(body).hexdigest() if sha256 is None else sha256,
            )
        )

    def put(self, created, body: bytes) -> int:
        """PUTs `body` with the headers the server asked for, except that
        Content-Length is the body's own (urllib sets it), as it is for any
        HTTP client sending a file."""
        assert created.upload_method == "PUT"
        headers = {k: v for k, v in created.upload_headers.items() if k.lower() != "content-length"}
        return http_put(created.upload_url, headers, body)

    def upload(self, kind, body: bytes, **declared) -> artifact_pb2.CreateUploadResponse:
        """CreateUpload + PUT; the caller calls CompleteUpload."""
        created = self.create(kind, body, **declared)
        assert self.put(created, body) == 200
        return created

    def fetch(self, url: str) -> bytes:
        return http_get(url)

    def complete(self, name: str) -> artifact_pb2.Artifact:
        return self.stub.CompleteUpload(artifact_pb2.CompleteUploadRequest(name=name)).artifact

    def get(self, name: str) -> artifact_pb2.Artifact:
        return self.stub.GetArtifact(artifact_pb2.GetArtifactRequest(name=name)).artifact

    def object_keys(self) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=self.bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))


def storage_config(s3_endpoint: str, bucket: str, database_url: str, **overrides) -> StorageConfig:
    return StorageConfig(
        address="127.0.0.1:0",
        s3_endpoint=s3_endpoint,
        bucket=bucket,
        s3_access_key_id=S3_CREDENTIALS["aws_access_key_id"],
        s3_secret_access_key=S3_CREDENTIALS["aws_secret_access_key"],
        database_url=database_url,
        **overrides,
    )


@pytest.fixture
def storage_with(s3_endpoint, s3_bucket, tmp_path):
    """storage_with(**config_overrides): a server with some settings changed
    (all on the same bucket and database), stopped at the end of the test."""
    stops = []

    def start(**overrides) -> StorageClient:
        config = storage_config(
            s3_endpoint, s3_bucket, f"sqlite:///{tmp_path / 'db' / 'storage.db'}", **overrides
        )
        running, port = create_server(config.address, config)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stops.append((channel, running))
        return StorageClient(
            stub=artifact_pb2_grpc.ArtifactServiceStub(channel),
            s3=boto3.client("s3", endpoint_url=s3_endpoint, **S3_CREDENTIALS),
            bucket=s3_bucket,
            config=config,
        )

    try:
        yield start
    finally:
        for channel, running in stops:
            channel.close()
            running.stop(grace=None)


@pytest.fixture
def storage(storage_with):
    return storage_with()


@pytest.fixture(scope="session")
def lambda_model_file(tmp_path_factory) -> Path:
    """A real Keras 3 .keras file whose model holds a Lambda layer."""
    import keras

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Lambda(lambda t: t * 2, name="double"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ],
        name="with_lambda",
    )
    path = tmp_path_factory.mktemp("lambda") / "lambda.keras"
    model.save(path)
    return path
