"""What one evaluation runs with: the mesh's stubs (Downstream), the run's
shared state (progress, stage, stop), and `Work`, the context a kind's
`execute` gets. Every downstream call made through it is tracked, so cancel
and drain interrupt whatever runs."""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc

from advex.core import compatibility
from advex.core.presigned import file_digest, put_file
from advex.core.serving import open_channel
from advex.gateway import jobs
from advex.gateway.config import GatewayConfig
from advex.gateway.pages import PageInputs
from advex.internal.v1 import attack_service_pb2, attack_service_pb2_grpc, scoring_service_pb2_grpc
from advex.v1 import artifact_pb2, artifact_pb2_grpc, report_pb2

CANCEL, LOST, DRAIN = "cancel", "lost", "drain"

# Storage answers from SQL and S3 metadata; the attack service may download
# and load a large model before it answers CheckCompatibility.
log = logging.getLogger(__name__)
T = TypeVar("T")

STORAGE_TIMEOUT_S = 30.0
COMPATIBILITY_TIMEOUT_S = 600.0


@dataclass
class Downstream:
    """Stubs for the services the gateway drives, over long-lived channels."""

    storage: artifact_pb2_grpc.ArtifactServiceStub
    attack: attack_service_pb2_grpc.AttackServiceStub
    scoring: scoring_service_pb2_grpc.ScoringServiceStub
    channels: list[grpc.Channel]

    @classmethod
    def connect(cls, config: GatewayConfig) -> "Downstream":
        storage, attack, scoring = (
            open_channel(t) for t in (config.storage_target, config.attack_target, config.scoring_target)
        )
        return cls(
            storage=artifact_pb2_grpc.ArtifactServiceStub(storage),
            attack=attack_service_pb2_grpc.AttackServiceStub(attack),
            scoring=scoring_service_pb2_grpc.ScoringServiceStub(scoring),
            channels=[storage, attack, scoring],
        )

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


@dataclass
class RunState:
    """Shared between the evaluation's thread and its keeper."""

    done: int = 0
    stage: str = "starting"
    outcome: str | None = None  # CANCEL, LOST or DRAIN once the run must stop
    finished: threading.Event = field(default_factory=threading.Event)
    _calls: list = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def track(self, call):
        """Registers an in-flight call (or future) so stop() can cancel it."""
        with self._lock:
            self._calls.append(call)
            if self.outcome:
                call.cancel()
        return call

    def stop(self, outcome: str) -> None:
        with self._lock:
            if self.outcome is None:
                self.outcome = outcome
            for call in self._calls:
                call.cancel()


class Stopped(Exception):
    pass


def locate(
    storage: artifact_pb2_grpc.ArtifactServiceStub, name: str, timeout: float = STORAGE_TIMEOUT_S
) -> attack_service_pb2.ObjectLocation:
    return object_location(storage.GetDownloadUrl(artifact_pb2.GetDownloadUrlRequest(name=name), timeout=timeout))


def object_location(download: artifact_pb2.GetDownloadUrlResponse) -> attack_service_pb2.ObjectLocation:
    """Where the attack service fetches an artifact: storage's presigned GET and what it must hash to."""
    return attack_service_pb2.ObjectLocation(url=download.url, sha256=download.sha256, size_bytes=download.size_bytes)


def describe_inputs(
    call: Callable, attack, model: attack_service_pb2.ObjectLocation, dataset: attack_service_pb2.ObjectLocation,
    summary: artifact_pb2.DatasetSummary, clip_min: float, clip_max: float,
) -> attack_service_pb2.CheckCompatibilityResponse:
    """That the dataset fits the model (INVALID_ARGUMENT with what to fix if
    not), and what both are. `call(method, request)` makes an attack RPC
    (plain, or tracked by a Work).

    From metadata when storage recorded the dataset's value range at upload:
    the attack service only describes the model (InspectModel, cached by
    digest), and the dataset is not read. Datasets uploaded before storage
    kept value ranges are checked by the attack service reading them
    (CheckCompatibility)."""
    if not (summary.HasField("min_value") and summary.HasField("max_value")):
        return call(
            attack.CheckCompatibility,
            attack_service_pb2.CheckCompatibilityRequest(
                model=model, dataset=dataset, clip_min=clip_min, clip_max=clip_max
            ),
        )
    info = call(attack.InspectModel, attack_service_pb2.InspectModelRequest(model=model)).model
    compatibility.check(
        [None if d < 0 else int(d) for d in info.input_shape], info.num_classes, summary.image_shape,
        summary.min_label, summary.max_label, summary.min_value, summary.max_value, clip_min, clip_max,
    )
    return attack_service_pb2.CheckCompatibilityResponse(
        model=info,
        dataset=attack_service_pb2.DatasetInfo(
            samples=summary.samples, image_shape=summary.image_shape, dtype=summary.dtype,
            min_value=summary.min_value, max_value=summary.max_value, min_label=summary.min_label,
            max_label=summary.max_label,
        ),
    )


def evaluation_seed(evaluation_id: str) -> int:
    """Stable per evaluation, so a resumed or repeated run draws the same
    random PGD starts."""
    return int.from_bytes(hashlib.sha256(evaluation_id.encode()).digest()[:8], "little")


class RequestStream:
    """The request side of a client-streaming (or bidi) call, fed from this
    thread while grpc reads it on its own: `put` queues an item without
    blocking forever if the call ended early (its error then surfaces from
    the call), `close` ends the stream. Use as a context manager so the
    request generator never waits on a queue nobody feeds."""

    def __init__(self, run: RunState, first=None, maxsize: int = 32):
        self._run = run
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._first = first
        self.call = None  # set by the caller once the call is started

    def __iter__(self):
        if self._first is not None:
            yield self._first
        while (item := self._queue.get()) is not None:
            yield item

    def put(self, item) -> None:
        while True:
            if self._run.outcome:
                raise Stopped(self._run.outcome)
            if self.call is not None and self.call.done():
                self.call.result()  # raises the call's error
                raise Stopped("the call ended before all requests were sent")
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        self.put(None)

    def result(self):
        """Ends the requests and waits for the (client-streaming) call's answer."""
        self.close()
        return self.call.result()

    def __enter__(self) -> "RequestStream":
        return self

    def __exit__(self, *exc_info) -> None:
        # Unblocks the request generator if grpc's thread still waits.
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass


@dataclass
class ShardLedger:
    """The evaluation's shards in SQL, written only while this worker holds
    the evaluation (jobs.JobStore's shard methods, bound to one run)."""

    store: jobs.JobStore
    evaluation_id: str
    worker: str
    # Samples per shard when a run plans them (ADVEX_SHARD_SAMPLES).
    shard_samples: int

    def plan(self, plan) -> list[jobs.ShardRow]:
        return self.store.plan_shards(self.evaluation_id, self.worker, plan)

    def shards(self) -> list[jobs.ShardRow]:
        return self.store.shards(self.evaluation_id)

    def finish(self, run: RunState, shard: jobs.ShardRow, artifact: artifact_pb2.Artifact, versions: str) -> None:
        recorded = self.store.finish_shard(
            self.evaluation_id, shard.shard_index, self.worker,
            artifact=artifact.name, sha256=artifact.sha256, size_bytes=artifact.size_bytes, versions=versions,
        )
        if not recorded:  # another gateway holds the evaluation now: stop here
            run.stop(LOST)
            raise Stopped(LOST)

    def drop(self) -> None:
        self.store.drop_shards(self.evaluation_id)


@dataclass
class Work:
    """What a kind's `execute` runs with: the claimed row, the run's shared
    state (stage, progress, stop), the mesh, and the evaluation's shards.
    Every call made through it is tracked, so cancel and drain interrupt it."""

    row: jobs.EvaluationRow
    run: RunState
    downstream: Downstream
    ledger: ShardLedger | None = None
    # What the run gathers for the report's page (pages.py).
    page: PageInputs = field(default_factory=PageInputs)

    def stage(self, text: str) -> None:
        self.run.stage = text[:200]

    def add_progress(self, units: int) -> None:
        self.run.done += units

    def track(self, call):
        return self.run.track(call)

    def check_stopped(self) -> None:
        if self.run.outcome:
            raise Stopped(self.run.outcome)

    def artifacts(self, *names: str) -> list[artifact_pb2.Artifact]:
        storage = self.downstream.storage
        futures = [
            self.track(storage.GetArtifact.future(artifact_pb2.GetArtifactRequest(name=n), timeout=STORAGE_TIMEOUT_S))
            for n in names
        ]
        return [f.result().artifact for f in futures]

    def locations(self, *names: str) -> list[attack_service_pb2.ObjectLocation]:
        storage = self.downstream.storage
        futures = [
            self.track(
                storage.GetDownloadUrl.future(artifact_pb2.GetDownloadUrlRequest(name=n), timeout=STORAGE_TIMEOUT_S)
            )
            for n in names
        ]
        return [object_location(f.result()) for f in futures]

    @contextmanager
    def request_stream(self, start, first) -> Iterator["RequestStream"]:
        """A tracked call with a request stream: `start(requests)` starts it
        (a stub's client-streaming `Method.future`, or a bidi `Method`); the
        requests are `first`, then what this thread `put`s. The call is
        cancelled if the block ends in an error."""
        with RequestStream(self.run, first=first) as requests:
            requests.call = self.track(start(iter(requests)))
            try:
                yield requests
            except BaseException:
                requests.call.cancel()
                raise

    def unary(self, method, request, timeout: float):
        """A tracked unary call to `method` (a stub's method)."""
        return self.track(method.future(request, timeout=timeout)).result()

    def optional(self, what: str, make: Callable[[], T]) -> T | None:
        """`make()`, for something the evaluation can do without (its page,
        its per-sample outcomes): a failure is logged and gives None, never
        fails the evaluation; a cancel or drain meanwhile still stops it."""
        try:
            return make()
        except Stopped:
            raise
        except Exception as error:  # noqa: BLE001 - the numbers stand without it
            self.check_stopped()
            if isinstance(error, grpc.RpcError) and callable(getattr(error, "code", None)):
                log.error("no %s for evaluations/%s: %s %s", what, self.row.id, error.code().name, error.details())
            else:
                log.exception("no %s for evaluations/%s", what, self.row.id)
            return None

    def store_file(self, path: Path, kind: int, display_name: str) -> artifact_pb2.Artifact:
        """Stores a file the gateway made as an artifact, through storage's
        ordinary upload: verified by CompleteUpload before it is READY."""
        storage = self.downstream.storage
        size, sha256 = file_digest(path)
        created = self.unary(
            storage.CreateUpload,
            artifact_pb2.CreateUploadRequest(kind=kind, display_name=display_name, size_bytes=size, sha256=sha256),
            STORAGE_TIMEOUT_S,
        )
        self.check_stopped()
        put_file(path, created.upload_url, created.upload_method, created.upload_headers)
        return self.unary(
            storage.CompleteUpload, artifact_pb2.CompleteUploadRequest(name=created.artifact.name), COMPATIBILITY_TIMEOUT_S
        ).artifact


def artifact_ref(artifact: artifact_pb2.Artifact) -> report_pb2.ArtifactRef:
    return report_pb2.ArtifactRef(name=artifact.name, sha256=artifact.sha256, display_name=artifact.display_name)
