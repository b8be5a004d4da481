"""Talking to the gateway: channel, uploads through presigned URLs, attack
flags, waiting on evaluations."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from advex.core.errors import AdvexError
from advex.core.presigned import file_digest, put_file
from advex.core.serving import MESSAGE_LIMITS, service_config
from advex.v1 import (
    artifact_pb2,
    artifact_pb2_grpc,
    evasion_pb2,
    evaluation_pb2,
    evaluation_pb2_grpc,
    poisoning_pb2,
)

DEFAULT_GATEWAY = "127.0.0.1:50051"
TERMINAL = {
    evaluation_pb2.EVALUATION_STATE_SUCCEEDED,
    evaluation_pb2.EVALUATION_STATE_FAILED,
    evaluation_pb2.EVALUATION_STATE_CANCELLED,
}


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


class GatewayUnreachable(CliError):
    """No gateway answered at the address (exit code 1, as a gRPC error)."""


@dataclass
class Gateway:
    channel: grpc.Channel
    artifacts: artifact_pb2_grpc.ArtifactServiceStub
    evaluations: evaluation_pb2_grpc.EvaluationServiceStub

    @classmethod
    def connect(cls, address: str | None = None, timeout: float = 5.0) -> "Gateway":
        address = address or os.environ.get("ADVEX_GATEWAY_ADDR", DEFAULT_GATEWAY)
        # No keepalive: a gateway behind a proxy with grpc's default ping
        # policy would end a quiet watch stream for pinging too often. The
        # mesh's message limits and retries of idempotent calls, though.
        channel = grpc.insecure_channel(
            address, options=[*MESSAGE_LIMITS, ("grpc.service_config", service_config(balance=False))]
        )
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            channel.close()
            raise GatewayUnreachable(
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


KINDS = {
    "model": artifact_pb2.ARTIFACT_KIND_MODEL,
    "dataset": artifact_pb2.ARTIFACT_KIND_DATASET,
    "pattern": artifact_pb2.ARTIFACT_KIND_PATTERN,
}


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
    try:
        put_file(path, created.upload_url, created.upload_method, created.upload_headers, on_progress)
    except AdvexError as exc:
        raise CliError(str(exc)) from None
    return gateway.artifacts.CompleteUpload(artifact_pb2.CompleteUploadRequest(name=created.artifact.name)).artifact


_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _attack_key_types() -> dict[str, type]:
    """Every --attack key and its type, from the catalogue."""
    from advex.core.attack_specs import ATTACKS

    types: dict[str, type] = {"eps": float, "norm": str, "target": str}
    for entry in ATTACKS.values():
        types.update((p.key, p.kind) for p in entry.params)
    return types


def parse_budgets(text: str) -> list[float]:
    """'0.1' -> [0.1]; '0.01:0.3:10' -> 10 evenly spaced budgets from 0.01 to
    0.3, both included (rounded to 10 significant digits, so they print
    as written)."""
    import argparse

    parts = text.split(":")
    try:
        if len(parts) == 1:
            return [float(text)]
        if len(parts) == 3:
            start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
            if count >= 2 and start < stop:
                step = (stop - start) / (count - 1)
                return [float(f"{start + i * step:.10g}") for i in range(count)]
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"'{text}' is neither a budget (0.1) nor a range START:STOP:COUNT with START < STOP and COUNT >= 2 "
        "(0.01:0.3:10)"
    )


def parse_attack(text: str, budgets: list[float]) -> list[evasion_pb2.AttackSpec]:
    """'pgd:eps=0.1,steps=40,norm=inf' -> AttackSpecs; without eps, one spec
    per value of --eps (an attack without a budget, cw, runs once,
    unbounded). The gateway checks the values themselves."""
    from advex.core.attack_specs import ATTACKS

    fields = attack_fields(text)
    entry = ATTACKS.get(fields["attack"].strip().lower())
    if "eps" in fields or (entry is not None and entry.budget == "optional"):
        return [evasion_pb2.AttackSpec(**fields)]
    if not budgets:
        raise CliError(f"--attack {text}: give eps=... or one or more --eps values")
    return [evasion_pb2.AttackSpec(**fields, eps=eps) for eps in budgets]


def attack_fields(text: str, flag: str = "--attack") -> dict:
    """'pgd:eps=0.1,steps=40' -> {"attack": "pgd", "eps": 0.1, "steps": 40}:
    the AttackSpec fields given, each of its type."""
    name, values = _key_values(text, flag)
    fields: dict = {"attack": name}
    types = _attack_key_types()
    for key, value in values.items():
        if key not in types:
            raise CliError(f"{flag} {text}: '{key}={value}' is not key=value with key one of {', '.join(types)}")
        if "," in value:
            # Only a trigger position holds a comma; here it is a key without "=".
            raise CliError(f"{flag} {text}: '{value.split(',', 1)[1]}' is not key=value")
        if types[key] is bool:
            if value.lower() not in _BOOLEANS:
                raise CliError(f"{flag} {text}: {key}={value} must be true or false")
            fields[key] = _BOOLEANS[value.lower()]
            continue
        try:
            fields[key] = types[key](value)
        except ValueError:
            raise CliError(f"{flag} {text}: {key}={value} is not a valid {types[key].__name__}") from None
    return fields


def parse_suite(name: str, budgets: list[float], norm: str) -> list[evasion_pb2.AttackSpec]:
    """--suite NAME: its attacks at every --eps budget."""
    from advex.core.attack_specs import SUITES

    if name not in SUITES:
        raise CliError(f"--suite {name}: unknown suite; suites: {', '.join(SUITES)}")
    if not budgets:
        raise CliError(f"--suite {name}: give the budgets with --eps (e.g. --eps 0.05 --eps 0.1, or 0.01:0.3:10)")
    return SUITES[name].expand(budgets, norm)


def _key_values(text: str, flag: str) -> tuple[str, dict[str, str]]:
    """'name:k=v,k2=v2' -> (name, {k: v}); a bare item after a key continues
    its value, so 'pos=3,4' keeps its comma."""
    name, _, params = text.partition(":")
    values: dict[str, str] = {}
    key = None
    for item in (p.strip() for p in params.split(",")):
        if not item:
            continue
        k, sep, v = item.partition("=")
        if sep:
            key = k.strip().replace("-", "_")
            values[key] = v.strip()
        elif key is not None:
            values[key] += "," + item
        else:
            raise CliError(f"{flag} {text}: '{item}' is not key=value")
    return name.strip(), values


_TRIGGER_KEYS = {"size": int, "pos": str, "position": str, "value": float, "pattern": str, "alpha": float, "seed": int}


def parse_trigger(text: str) -> poisoning_pb2.TriggerSpec:
    """'square:size=2,pos=bottom-right' -> TriggerSpec. The gateway checks the values."""
    name, values = _key_values(text, "--trigger")
    trigger = poisoning_pb2.TriggerSpec(trigger=name)
    for key, value in values.items():
        if key not in _TRIGGER_KEYS:
            raise CliError(f"--trigger {text}: unknown key '{key}'; keys: {', '.join(_TRIGGER_KEYS)}")
        try:
            setattr(trigger, "position" if key == "pos" else key, _TRIGGER_KEYS[key](value))
        except ValueError:
            raise CliError(f"--trigger {text}: {key}={value} is not a valid {_TRIGGER_KEYS[key].__name__}") from None
    return trigger


def parse_classes(text: str) -> list[int]:
    """'1,2' -> [1, 2]; 'all' -> [] (every class but the target)."""
    if text.strip().lower() == "all":
        return []
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise CliError(f"--source {text}: give class indices like 1 or 1,2,3, or all") from None


def parse_counts(text: str) -> tuple[list[int], list[float]]:
    """'5,10,0.1' -> counts [5, 10] and fractions [0.1] (values below 1)."""
    counts, fractions = [], []
    for item in filter(None, (c.strip() for c in text.split(","))):
        try:
            value = float(item)
        except ValueError:
            raise CliError(f"--count {text}: '{item}' is not a number") from None
        if value >= 1 and value == int(value):
            counts.append(int(value))
        elif 0 < value < 1:
            fractions.append(value)
        else:
            raise CliError(f"--count {text}: '{item}' must be a whole count >= 1 or a share between 0 and 1")
    return counts, fractions


def save_poisoned_data(pieces, path: Path) -> tuple[int, int]:
    """Writes a poisoned-data stream as an npz (x, y, original_y, poisoned);
    (samples, poisoned samples). Holds the set in memory while it writes."""
    import numpy as np

    from advex.core import tensors

    labels, originals, flags, images = [], [], [], []
    assembler = tensors.ChunkAssembler()
    for piece in pieces:
        if piece.HasField("samples"):
            labels.append(tensors.from_proto(piece.samples.labels))
            originals.append(tensors.from_proto(piece.samples.original_labels))
            flags.append(tensors.from_proto(piece.samples.poisoned))
        elif (done := assembler.add(piece.images)) is not None:
            images.append(done[1])
    if not labels:
        raise CliError("the gateway sent no data")
    y, poisoned = np.concatenate(labels), np.concatenate(flags)
    np.savez(path, x=np.concatenate(images), y=y, original_y=np.concatenate(originals), poisoned=poisoned)
    return int(len(y)), int(poisoned.sum())


def watch(gateway: Gateway, name: str) -> Iterator[evaluation_pb2.Evaluation]:
    for event in gateway.evaluations.WatchEvaluation(evaluation_pb2.WatchEvaluationRequest(name=name)):
        yield event.evaluation
