"""StorageConfig from environment variables, and the service as a process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from advex.storage.config import StorageConfig
from advex.v1 import artifact_pb2, artifact_pb2_grpc


def test_defaults():
    config = StorageConfig.from_env({})
    assert config == StorageConfig()
    assert config.address == "127.0.0.1:50052"
    assert config.s3_endpoint is None and config.s3_access_key_id is None
    assert config.bucket == "advex" and config.create_bucket is True
    assert config.max_upload_bytes == 2 * 1024**3
    assert config.max_dataset_bytes == 4 * 1024**3
    assert (config.upload_url_ttl_s, config.download_url_ttl_s) == (900, 3600)


def test_every_variable_is_read():
    config = StorageConfig.from_env(
        {
            "ADVEX_STORAGE_ADDR": "0.0.0.0:6000",
            "ADVEX_S3_ENDPOINT": "http://minio:9000",
            "ADVEX_S3_BUCKET": "models",
            "ADVEX_S3_REGION": "eu-west-1",
            "ADVEX_S3_ACCESS_KEY_ID": "id",
            "ADVEX_S3_SECRET_ACCESS_KEY": "secret",
            "ADVEX_STORAGE_DATABASE_URL": "postgresql+psycopg://db/advex",
            "ADVEX_UPLOAD_URL_TTL_S": "60",
            "ADVEX_DOWNLOAD_URL_TTL_S": "120",
            "ADVEX_MAX_UPLOAD_BYTES": "1000",
            "ADVEX_MAX_DATASET_BYTES": "5000",
            "ADVEX_S3_CREATE_BUCKET": "false",
        }
    )
    assert config == StorageConfig(
        address="0.0.0.0:6000",
        s3_endpoint="http://minio:9000",
        bucket="models",
        s3_region="eu-west-1",
        s3_access_key_id="id",
        s3_secret_access_key="secret",
        database_url="postgresql+psycopg://db/advex",
        upload_url_ttl_s=60,
        download_url_ttl_s=120,
        max_upload_bytes=1000,
        max_dataset_bytes=5000,
        create_bucket=False,
    )


@pytest.mark.parametrize(
    "environ, phrase",
    [
        ({"ADVEX_UPLOAD_URL_TTL_S": "soon"}, "ADVEX_UPLOAD_URL_TTL_S must be a whole number"),
        ({"ADVEX_DOWNLOAD_URL_TTL_S": "0"}, "must be > 0"),
        ({"ADVEX_DOWNLOAD_URL_TTL_S": str(8 * 24 * 3600)}, "7 days"),
        ({"ADVEX_MAX_UPLOAD_BYTES": str(6 * 1024**3)}, "ADVEX_MAX_UPLOAD_BYTES must be between"),
        ({"ADVEX_S3_CREATE_BUCKET": "maybe"}, "must be true or false"),
        ({"ADVEX_MAX_DATASET_BYTES": "0"}, "ADVEX_MAX_DATASET_BYTES must be > 0"),
        ({"ADVEX_MAX_DATASET_BYTES": "4GiB"}, "ADVEX_MAX_DATASET_BYTES must be a whole number"),
    ],
)
def test_bad_values_name_the_variable(environ, phrase):
    with pytest.raises(ValueError, match=re.escape(phrase)):
        StorageConfig.from_env(environ)


def test_python_m_advex_storage_serves_creates_its_bucket_and_drains_on_sigterm(s3_endpoint, tmp_path):
    bucket = f"fresh-{os.getpid()}"
    env = {
        **os.environ,
        "ADVEX_STORAGE_ADDR": "127.0.0.1:0",
        "ADVEX_STORAGE_METRICS_ADDR": "127.0.0.1:0",
        "ADVEX_S3_ENDPOINT": s3_endpoint,
        "ADVEX_S3_BUCKET": bucket,
        "ADVEX_S3_ACCESS_KEY_ID": "testing",
        "ADVEX_S3_SECRET_ACCESS_KEY": "testing",
        "ADVEX_STORAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'storage.db'}",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "advex.storage"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        port = None
        for line in process.stderr:
            match = re.search(r"on port (\d+)", line)
            if match:
                port = int(match.group(1))
                break
        assert port, "the service never logged its port"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="advex.v1.ArtifactService"), timeout=10
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            created = artifact_pb2_grpc.ArtifactServiceStub(channel).CreateUpload(
                artifact_pb2.CreateUploadRequest(
                    kind=artifact_pb2.ARTIFACT_KIND_DATASET, size_bytes=1, sha256="0" * 64
                ),
                timeout=10,
            )
            assert f"/{bucket}/uploads/" in created.upload_url
        assert (tmp_path / "var" / "storage.db").exists()
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=60)  # reads the log while waiting, so no write blocks
        assert process.returncode == 0, rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
