"""The embedded S3 endpoint of `advex up`: every change to an object is on
disk before it is answered, and a new endpoint on the same folder (another
process, as after a restart) serves the same objects with the same ETags."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from advex.cli.embedded_s3 import EmbeddedS3
from loopback_s3 import S3_CREDENTIALS

# A second life of the endpoint: moto keeps its objects in the process, so
# only another process shows what comes back from disk alone.
_SECOND_LIFE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import boto3
    from botocore.config import Config
    from advex.cli.embedded_s3 import EmbeddedS3

    server = EmbeddedS3(Path(sys.argv[1]))
    endpoint = server.start()
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x",
                      aws_secret_access_key="x", config=Config(s3={"addressing_style": "path"}))
    found = {}
    for bucket in s3.list_buckets()["Buckets"]:
        for item in s3.list_objects_v2(Bucket=bucket["Name"]).get("Contents", []):
            body = s3.get_object(Bucket=bucket["Name"], Key=item["Key"])["Body"].read()
            found[bucket["Name"] + "/" + item["Key"]] = [item["ETag"], body.decode("latin-1")]
    server.stop()
    print(json.dumps(found))
    """
)


def _client(endpoint: str):
    return boto3.client(
        "s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        **S3_CREDENTIALS,
    )


def _second_life(root) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _SECOND_LIFE, str(root)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def embedded(tmp_path):
    server = EmbeddedS3(tmp_path / "s3")
    endpoint = server.start()
    yield server, _client(endpoint)
    server.stop()


def test_objects_written_by_put_copy_and_presigned_put_come_back_after_a_restart(embedded, tmp_path):
    server, s3 = embedded
    bucket = "kept"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="uploads/a", Body=b"model bytes")
    s3.copy_object(Bucket=bucket, Key="models/a", CopySource={"Bucket": bucket, "Key": "uploads/a"})
    s3.delete_object(Bucket=bucket, Key="uploads/a")
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "uploads/b"}, HttpMethod="PUT")
    big = bytes(range(256)) * 12_000  # 3 MB: several blocks of the mirror's copy
    assert requests.put(url, data=big, timeout=30).status_code == 200
    s3.put_object(Bucket=bucket, Key="uploads/b", Body=b"replaced")  # the last write wins
    # A request on a sub-resource changes no bytes and must leave them be.
    s3.put_object_tagging(Bucket=bucket, Key="models/a", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    etags = {f"{bucket}/{k}": s3.head_object(Bucket=bucket, Key=k)["ETag"] for k in ("models/a", "uploads/b")}

    # On disk before the answer: no waiting for a flush.
    files = {p.name for p in (tmp_path / "s3" / bucket).iterdir()}
    assert files == {"models%2Fa", "uploads%2Fb"}

    found = _second_life(tmp_path / "s3")
    assert {k: v[1] for k, v in found.items()} == {f"{bucket}/models/a": "model bytes", f"{bucket}/uploads/b": "replaced"}
    assert {k: v[0] for k, v in found.items()} == etags  # the ETags storage recorded stay valid


def test_keys_cannot_reach_outside_the_folder_and_deletes_are_kept(embedded, tmp_path):
    server, s3 = embedded
    s3.create_bucket(Bucket="keys")
    for key in ("../escape", "..", "a/../../b", "spaces and %2F", "ключ/é"):
        s3.put_object(Bucket="keys", Key=key, Body=key.encode())
    # One flat folder of files, each key percent-encoded into one name.
    assert sorted(p.name for p in (tmp_path / "s3" / "keys").iterdir()) == sorted(
        ["..%2Fescape", "%2E%2E", "a%2F..%2F..%2Fb", "spaces%20and%20%252F", "%D0%BA%D0%BB%D1%8E%D1%87%2F%C3%A9"]
    )
    assert [p for p in tmp_path.rglob("*") if "s3" not in p.relative_to(tmp_path).parts] == []
    s3.delete_objects(Bucket="keys", Delete={"Objects": [{"Key": ".."}, {"Key": "a/../../b"}]})
    s3.delete_object(Bucket="keys", Key="../escape")
    assert sorted(_second_life(tmp_path / "s3")) == ["keys/spaces and %2F", "keys/ключ/é"]


def test_a_half_written_file_left_by_a_crash_is_dropped_not_served(tmp_path):
    bucket_dir = tmp_path / "s3" / "crashed"
    bucket_dir.mkdir(parents=True)
    (bucket_dir / "models%2Fwhole").write_bytes(b"whole")
    (bucket_dir / "models%2Fhalf.partial").write_bytes(b"ha")
    found = _second_life(tmp_path / "s3")
    assert {k: v[1] for k, v in found.items()} == {"crashed/models/whole": "whole"}
    assert not (bucket_dir / "models%2Fhalf.partial").exists()


def test_a_write_the_disk_refuses_is_an_error_to_the_client_not_a_silent_loss(embedded, tmp_path):
    server, s3 = embedded
    s3.create_bucket(Bucket="full")
    # A directory where the object's file must go: the mirror cannot write it.
    (tmp_path / "s3" / "full" / "blocked").mkdir()
    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket="full", Key="blocked", Body=b"x")
    assert raised.value.response["Error"]["Code"] == "InternalError"
    assert "could not write the object to its disk" in raised.value.response["Error"]["Message"]
