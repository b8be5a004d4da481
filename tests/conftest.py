"""Fixtures shared by every test: a real S3 endpoint on loopback (moto's
server), the small digits model and dataset as files, SQL URLs."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import boto3
import botocore.config
import numpy as np
import pytest
from moto.server import ThreadedMotoServer

from advex.cli import digits
from advex.core.presigned import file_digest
from advex.internal.v1 import attack_service_pb2

from loopback_s3 import S3_CREDENTIALS


@pytest.fixture(scope="session")
def s3_endpoint():
    """http://127.0.0.1:<port> of a moto S3 server for the whole session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, request):
    """A fresh, empty bucket per test, so tests cannot see each other's objects."""
    name = "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-") + f"-{os.getpid()}"
    name = "".join(c for c in name if c.isalnum() or c == "-")[:60]
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, **S3_CREDENTIALS)
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def publish(s3_endpoint, s3_bucket):
    """publish(path, sha256=None, size=None) -> ObjectLocation with a presigned GET URL.

    sha256/size override what is declared, to test mismatches."""
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        **S3_CREDENTIALS,
        config=botocore.config.Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )

    def publish(path: Path, sha256: str | None = None, size: int | None = None) -> attack_service_pb2.ObjectLocation:
        path = Path(path)
        key = f"objects/{file_digest(path)[1]}/{path.name}"
        s3.upload_file(str(path), s3_bucket, key)
        url = s3.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": key}, ExpiresIn=600)
        return attack_service_pb2.ObjectLocation(
            url=url,
            sha256=sha256 or file_digest(path)[1],
            size_bytes=size if size is not None else path.stat().st_size,
        )

    return publish


@pytest.fixture(scope="session", autouse=True)
def reports_checked_against_the_schema():
    """Every Gateway the tests, and the CLI under test, connect validates
    each report it receives against docs/report.schema.json."""
    import grpc

    from advex.cli import client
    from advex.v1 import artifact_pb2_grpc, evaluation_pb2_grpc
    from report_schema import ReportValidator

    connect = client.Gateway.connect.__func__

    def validating_connect(cls, address=None, timeout=5.0):
        channel = grpc.intercept_channel(connect(cls, address, timeout).channel, ReportValidator())
        return cls(channel, artifact_pb2_grpc.ArtifactServiceStub(channel),
                   evaluation_pb2_grpc.EvaluationServiceStub(channel))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(client.Gateway, "connect", classmethod(validating_connect))
        yield


@pytest.fixture(scope="session")
def digits_split():
    return digits.load_digits_split()


@pytest.fixture(scope="session")
def digits_files(tmp_path_factory):
    """(model_path, dataset_path): the demo CNN (softmax output), quickly trained."""
    return digits.demo_files(tmp_path_factory.mktemp("digits"), epochs=8)


@pytest.fixture(scope="session")
def digits_logits_model_file(tmp_path_factory, digits_split):
    """The same CNN ending in logits (no softmax), as a .keras file."""
    model = digits.train_digits_cnn(digits_split, epochs=4, logits=True)
    path = tmp_path_factory.mktemp("digits_logits") / "logits.keras"
    model.save(path)
    return path


@pytest.fixture
def small_digits_dataset(tmp_path, digits_split):
    """The first 64 test digits as an npz, for fast runs."""
    return digits.save_dataset(tmp_path / "small.npz", digits_split.x_test[:64], digits_split.y_test[:64])


def postgres_url() -> str | None:
    return os.environ.get("ADVEX_TEST_POSTGRES_URL") or None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """A fresh SQL database: a SQLite file, and PostgreSQL when
    ADVEX_TEST_POSTGRES_URL is set (CI sets it; there it must connect)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    url = postgres_url()
    if url is None:
        pytest.skip("ADVEX_TEST_POSTGRES_URL is not set: the PostgreSQL variant of this test did NOT run")
    import sqlalchemy

    # A schema per test keeps runs independent on one shared database.
    schema = f"t{os.getpid()}_{abs(hash(request.node.nodeid)) % 10**8}"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    yield f"{url}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture
def rng():
    return np.random.default_rng(0)
