"""The whole mesh in-process: storage, attack, scoring and gateway servers on
127.0.0.1 port 0, a moto S3 server on loopback, SQLite for the registries."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from advex.attack.config import AttackConfig
from advex.attack.server import create_server as create_attack
from advex.cli.client import Gateway
from advex.gateway.config import GatewayConfig
from advex.gateway.server import create_server as create_gateway
from advex.scoring.config import ScoringConfig
from advex.scoring.server import create_server as create_scoring
from advex.storage.config import StorageConfig
from advex.storage.server import create_server as create_storage
from loopback_s3 import S3_CREDENTIALS


@dataclass
class Mesh:
    gateway_config: GatewayConfig
    servers: dict = field(default_factory=dict)
    # Where the attack service keeps what it downloaded, named by SHA-256.
    attack_cache: Path | None = None

    @property
    def gateway_address(self) -> str:
        return f"127.0.0.1:{self.servers['gateway'].port}"

    def start_gateway(self, **overrides) -> Gateway:
        config = GatewayConfig(**{**self.gateway_config.__dict__, **overrides})
        self.servers["gateway"], _ = create_gateway("127.0.0.1:0", config)
        return Gateway.connect(self.gateway_address)

    def stop_gateway(self, grace: float = 5.0) -> None:
        self.servers.pop("gateway").stop(grace)


def start_mesh(s3_endpoint: str, work: Path, storage: dict | None = None, attack: dict | None = None,
               gateway: dict | None = None) -> Mesh:
    """The four servers in-process on 127.0.0.1 port 0, SQLite under `work`,
    objects in a bucket of their own; the dicts override config fields."""
    import boto3

    bucket = f"mesh-{work.name.lower().replace('_', '-')}"[:60]
    boto3.client("s3", endpoint_url=s3_endpoint, **S3_CREDENTIALS).create_bucket(Bucket=bucket)
    servers = {}
    servers["storage"], storage_port = create_storage(
        "127.0.0.1:0",
        StorageConfig(
            s3_endpoint=s3_endpoint,
            bucket=bucket,
            s3_region=S3_CREDENTIALS["region_name"],
            s3_access_key_id=S3_CREDENTIALS["aws_access_key_id"],
            s3_secret_access_key=S3_CREDENTIALS["aws_secret_access_key"],
            database_url=f"sqlite:///{work / 'storage.db'}",
            **(storage or {}),
        ),
    )
    servers["attack"], attack_port = create_attack(
        "127.0.0.1:0", AttackConfig(cache_dir=str(work / "attack-cache"), **(attack or {}))
    )
    servers["scoring"], scoring_port = create_scoring("127.0.0.1:0", ScoringConfig())
    mesh = Mesh(
        GatewayConfig(
            database_url=f"sqlite:///{work / 'gateway.db'}",
            storage_target=f"127.0.0.1:{storage_port}",
            attack_target=f"127.0.0.1:{attack_port}",
            scoring_target=f"127.0.0.1:{scoring_port}",
            poll_seconds=0.2,
            instance_id="test-gateway",
            **(gateway or {}),
        ),
        servers,
        attack_cache=work / "attack-cache",
    )
    mesh.start_gateway().close()
    return mesh


def stop_mesh(mesh: Mesh) -> None:
    for name in ("gateway", "attack", "scoring", "storage"):
        if name in mesh.servers:
            mesh.servers[name].stop(1)


@pytest.fixture(scope="module")
def mesh(s3_endpoint, tmp_path_factory):
    mesh = start_mesh(s3_endpoint, tmp_path_factory.mktemp("mesh"))
    yield mesh
    stop_mesh(mesh)


@pytest.fixture(scope="module")
def mesh_with(s3_endpoint, tmp_path_factory):
    """mesh_with(storage={...}, attack={...}, gateway={...}): a mesh of this
    module's own with some config fields changed, stopped after the module."""
    started = []

    def start(**overrides) -> Mesh:
        started.append(start_mesh(s3_endpoint, tmp_path_factory.mktemp("mesh"), **overrides))
        return started[-1]

    yield start
    for mesh in started:
        stop_mesh(mesh)


@pytest.fixture
def gateway(mesh):
    client = Gateway.connect(mesh.gateway_address)
    yield client
    client.close()


@pytest.fixture
def uploaded_digits(gateway, digits_files):
    from advex.cli.client import upload

    model_path, data_path = digits_files
    return upload(gateway, "model", Path(model_path)), upload(gateway, "dataset", Path(data_path))


@pytest.fixture(scope="module")
def digits_sets(mesh, digits_split, digits_files, tmp_path_factory):
    """(model, training set, test set) artifacts: the demo CNN (its
    architecture is what poisoning trains) and the digits split."""
    from advex.cli import digits
    from advex.cli.client import upload

    folder = tmp_path_factory.mktemp("poisoning")
    gateway = Gateway.connect(mesh.gateway_address)
    try:
        model = upload(gateway, "model", Path(digits_files[0]))
        train = upload(
            gateway, "dataset",
            digits.save_dataset(folder / "train.npz", digits_split.x_train, digits_split.y_train),
        )
        test = upload(
            gateway, "dataset", digits.save_dataset(folder / "test.npz", digits_split.x_test, digits_split.y_test)
        )
    finally:
        gateway.close()
    return model, train, test
