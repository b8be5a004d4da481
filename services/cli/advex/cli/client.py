"""Talking to the gateway: channel, uploads through presigned URLs, attack
flags, waiting on evaluations."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from advex.v1 import artifact_pb2, artifact_pb2_grpc, evasion_pb2, evaluation_pb2, evaluation_pb2_grpc

DEFAULT_GATEWAY = "127.0.0.1:50051"
TERMINAL = {
    evaluation_pb2.EVALUATION_STATE_SUCCEEDED,
    evaluation_pb2.EVALUATION_STATE_FAILED,
    evaluation_pb2.EVALUATION_STATE_CANCELLED,
}


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


@dataclass
class Gateway:
    channel: grpc.Channel
    artifacts: artifact_pb2_grpc.ArtifactServiceStub
    evaluations: evaluation_pb2_grpc.EvaluationServiceStub

    @classmethod
    def connect(cls, address: str | None = None, timeout: float = 5.0) -> "Gateway":
        address = address or os.environ.get("ADVEX_GATEWAY_ADDR", DEFAULT_GATEWAY)
        # No keepalive: a gateway behind a proxy with grpc's default ping
        # policy would end a quiet watch stream for pinging too often.
        channel = grpc.insecure_channel(address)
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            channel.close()
            raise CliError(
                f"no AdvEx gateway answers at {address} ({exc.code().name}); "
                "start the mesh with `make run` (or `advex up`), or set ADVEX_GATEWAY_ADDR / --gateway"
            ) from None
        return cls(
            channel,
            artifact_pb2_grpc.ArtifactServiceStub(channel),
            evaluation_pb2_grpc.EvaluationServiceStub(channel),
        )

    def close(self) -> None:
        self.channel.close()


class _ProgressReader:
    """A file wrapper that reports bytes read, for upload progress bars."""

    def __init__(self, path: Path, on_read: Callable[[int], None]):
        self._file = open(path, "rb")
        self._on_read = on_read

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._on_read(len(data))
        return data

    def close(self) -> None:
        self._file.close()


def file_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


KINDS = {"model": artifact_pb2.ARTIFACT_KIND_MODEL, "dataset": artifact_pb2.ARTIFACT_KIND_DATASET}


def upload(
    gateway: Gateway, kind: str, path: Path, display_name: str = "", on_progress: Callable[[int], None] = lambda n: None
) -> artifact_pb2.Artifact:
    """CreateUpload -> HTTP PUT to the presigned URL -> CompleteUpload."""
    if not path.is_file():
        raise CliError(f"{path} is not a file")
    size, sha256 = file_digest(path)
    created = gateway.artifacts.CreateUpload(
        artifact_pb2.CreateUploadRequest(
            kind=KINDS[kind], display_name=display_name or path.name, size_bytes=size, sha256=sha256
        )
    )
    body = _ProgressReader(path, on_progress)
    request = urllib.request.Request(created.upload_url, data=body, method=created.upload_method or "PUT")
    for key, value in created.upload_headers.items():
        request.add_header(key, value)
    request.add_header("Content-Length", str(size))
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise CliError(f"upload of {path} was refused by the object store: HTTP {exc.code} {exc.reason}") from None
    finally:
        body.close()
    return gateway.artifacts.CompleteUpload(artifact_pb2.CompleteUploadRequest(name=created.artifact.name)).artifact


_ATTACK_KEYS = {"eps": float, "steps": int, "step_size": float, "norm": str, "random_init": None}


def parse_attack(text: str, budgets: list[float]) -> list[evasion_pb2.AttackSpec]:
    """'pgd:eps=0.1,steps=40,norm=inf' -> AttackSpecs; without eps, one spec
    per value of --eps. The gateway checks the values themselves."""
    name, _, params = text.partition(":")
    fields: dict = {"attack": name.strip()}
    for item in filter(None, (p.strip() for p in params.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in _ATTACK_KEYS:
            raise CliError(
                f"--attack {text}: '{item}' is not key=value with key one of {', '.join(_ATTACK_KEYS)}"
            )
        if key == "random_init":
            fields[key] = value.strip().lower() in ("1", "true", "yes", "on")
            continue
        try:
            fields[key] = _ATTACK_KEYS[key](value.strip())
        except ValueError:
            raise CliError(f"--attack {text}: {key}={value} is not a valid {_ATTACK_KEYS[key].__name__}") from None
    if "eps" in fields:
        return [evasion_pb2.AttackSpec(**fields)]
    if not budgets:
        raise CliError(f"--attack {text}: give eps=... or one or more --eps values")
    return [evasion_pb2.AttackSpec(**fields, eps=eps) for eps in budgets]


def watch(gateway: Gateway, name: str) -> Iterator[evaluation_pb2.Evaluation]:
    for event in gateway.evaluations.WatchEvaluation(evaluation_pb2.WatchEvaluationRequest(name=name)):
        yield event.evaluation
