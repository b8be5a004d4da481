"""The public endpoint: ArtifactService (forwarded to storage) and
EvaluationService (jobs in SQL, run by this gateway's workers)."""

from __future__ import annotations

import logging

from google.protobuf import timestamp_pb2

from advex.core.errors import InvalidArgument
from advex.core.serving import Registration, RunningServer, run_service, start_server
from advex.core import object_routes
from advex.gateway import jobs, monitoring
from advex.gateway.config import GatewayConfig
from advex.gateway.evaluations import COLLECTION, Evaluations
from advex.gateway.kinds import KINDS
from advex.gateway.runner import EvaluationRunner, WorkerPool
from advex.gateway.work import Downstream
from advex.v1 import artifact_pb2, artifact_pb2_grpc, evaluation_pb2, evaluation_pb2_grpc

log = logging.getLogger(__name__)


def _timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def evaluation_proto(row: jobs.EvaluationRow) -> evaluation_pb2.Evaluation:
    kind = KINDS[row.kind]
    return evaluation_pb2.Evaluation(
        name=f"{COLLECTION}/{row.id}",
        display_name=row.display_name,
        state=evaluation_pb2.EvaluationState.Value(f"EVALUATION_STATE_{row.state}"),
        model=row.model,
        clip_min=row.clip_min,
        clip_max=row.clip_max,
        **{kind.field: kind.read_spec(row)},
        progress=evaluation_pb2.Progress(done=row.progress_done, total=row.progress_total, stage=row.stage),
        error=row.error,
        create_time=_timestamp(row.create_time),
        start_time=_timestamp(row.start_time),
        end_time=_timestamp(row.end_time),
        update_time=_timestamp(row.update_time),
    )


def _caller_timeout(context) -> float | None:
    """The caller's remaining deadline, for the forwarded call. Without one,
    grpc reports about 9e18 s, which overflows into an expired deadline."""
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 1e9 else None


# Artifact kinds the gateway makes itself (through storage directly), never
# taken from callers.
MADE_BY_ADVEX = (
    artifact_pb2.ARTIFACT_KIND_REPORT, artifact_pb2.ARTIFACT_KIND_OUTCOMES, artifact_pb2.ARTIFACT_KIND_SHARD
)


class ArtifactForwarder(artifact_pb2_grpc.ArtifactServiceServicer):
    """Artifacts belong to storage; the gateway is where callers reach them
    (and, later, where tenants are checked)."""

    def __init__(self, storage: artifact_pb2_grpc.ArtifactServiceStub):
        self.storage = storage

    def CreateUpload(self, request, context):
        if request.kind in MADE_BY_ADVEX:
            # Pages, outcomes and shards are what evaluations make; one
            # uploaded by a caller would pass for AdvEx's own (a page could
            # carry script, a shard could stand in for an attack's results).
            raise InvalidArgument(
                f"{artifact_pb2.ArtifactKind.Name(request.kind)} artifacts are made by AdvEx for an evaluation, "
                "not uploaded; upload a MODEL, DATASET or PATTERN"
            )
        return self.storage.CreateUpload(request, timeout=_caller_timeout(context))

    def CompleteUpload(self, request, context):
        return self.storage.CompleteUpload(request, timeout=_caller_timeout(context))

    def GetArtifact(self, request, context):
        return self.storage.GetArtifact(request, timeout=_caller_timeout(context))

    def ListArtifacts(self, request, context):
        return self.storage.ListArtifacts(request, timeout=_caller_timeout(context))

    def GetDownloadUrl(self, request, context):
        return self.storage.GetDownloadUrl(request, timeout=_caller_timeout(context))

    def DeleteArtifact(self, request, context):
        return self.storage.DeleteArtifact(request, timeout=_caller_timeout(context))


class EvaluationServicer(evaluation_pb2_grpc.EvaluationServiceServicer):
    def __init__(self, evaluations: Evaluations):
        self.evaluations = evaluations

    def CreateEvaluation(self, request, context):
        field = request.WhichOneof("spec")
        row = self.evaluations.create(
            model=request.model,
            spec=getattr(request, field) if field else None,
            clip_min=request.clip_min if request.HasField("clip_min") else 0.0,
            clip_max=request.clip_max if request.HasField("clip_max") else 1.0,
            display_name=request.display_name,
        )
        return evaluation_pb2.CreateEvaluationResponse(evaluation=evaluation_proto(row))

    def GetEvaluation(self, request, context):
        return evaluation_pb2.GetEvaluationResponse(evaluation=evaluation_proto(self.evaluations.get(request.name)))

    def ListEvaluations(self, request, context):
        rows, token = self.evaluations.list(request.page_size, request.page_token)
        return evaluation_pb2.ListEvaluationsResponse(
            evaluations=[evaluation_proto(r) for r in rows], next_page_token=token
        )

    def WatchEvaluation(self, request, context):
        for row in self.evaluations.watch(request.name, context.is_active):
            yield evaluation_pb2.WatchEvaluationResponse(evaluation=evaluation_proto(row))

    def CancelEvaluation(self, request, context):
        return evaluation_pb2.CancelEvaluationResponse(evaluation=evaluation_proto(self.evaluations.cancel(request.name)))

    def GetReport(self, request, context):
        return evaluation_pb2.GetReportResponse(report=self.evaluations.report(request.name))

    def StreamPoisonedData(self, request, context):
        for piece in self.evaluations.poisoned_data(request.name, request.poison_count):
            yield evaluation_pb2.StreamPoisonedDataResponse(piece=piece)


def create_server(address: str, config: GatewayConfig) -> tuple[RunningServer, int]:
    object_routes.route(config.s3_public_endpoint, config.s3_endpoint)
    store = jobs.JobStore(config.database_url)
    downstream = Downstream.connect(config)
    runner = EvaluationRunner(store, downstream, config)
    evaluations = Evaluations(
        store, downstream, runner, config.poll_seconds, config.max_watchers, max_queued=config.max_queued
    )
    workers = WorkerPool(store, runner, config)
    running = start_server(
        address,
        [
            Registration(
                "advex.v1.ArtifactService",
                lambda s: artifact_pb2_grpc.add_ArtifactServiceServicer_to_server(ArtifactForwarder(downstream.storage), s),
            ),
            Registration(
                "advex.v1.EvaluationService",
                lambda s: evaluation_pb2_grpc.add_EvaluationServiceServicer_to_server(EvaluationServicer(evaluations), s),
            ),
        ],
        # Watch streams hold a thread each; the rest serve everything else.
        max_workers=config.max_watchers + 16,
    )
    # Stop order on drain: RPCs first (server.stop), then workers hand their
    # evaluations back, then connections close.
    running.on_stop.extend([store.close, downstream.close, workers.stop])
    running.metrics_collectors.append(monitoring.EvaluationStates(store))
    workers.start()
    return running, running.port


def main() -> None:
    run_service("gateway", GatewayConfig.from_env, create_server, lambda config: f"database {config.database_url.split('@')[-1]}")
