"""gRPC adapter for ArtifactService: protos in, plain values to
`ArtifactStore`, protos out. Errors propagate to the core interceptor."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from advex.core.resources import encode_page_token
from advex.core.serving import Registration, RunningServer, run_service, start_server
from advex.storage.artifacts import DATASET, MODEL, OUTCOMES, PATTERN, REPORT, SHARD, ArtifactStore, artifact_name
from advex.storage.config import StorageConfig
from advex.storage.objects import ObjectStore
from advex.storage.protos import set_summary
from advex.core.sql import create_engine
from advex.storage.registry import PENDING_UPLOAD, READY, REJECTED, ArtifactRecord, Registry
from advex.v1 import artifact_pb2, artifact_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = "advex.v1.ArtifactService"

_KIND_TO_PROTO = {
    MODEL: artifact_pb2.ARTIFACT_KIND_MODEL,
    DATASET: artifact_pb2.ARTIFACT_KIND_DATASET,
    PATTERN: artifact_pb2.ARTIFACT_KIND_PATTERN,
    REPORT: artifact_pb2.ARTIFACT_KIND_REPORT,
    OUTCOMES: artifact_pb2.ARTIFACT_KIND_OUTCOMES,
    SHARD: artifact_pb2.ARTIFACT_KIND_SHARD,
}
_KIND_FROM_PROTO = {v: k for k, v in _KIND_TO_PROTO.items()}
# A ListArtifacts page stops growing at about this many bytes (clients
# receive at most 4 MiB by default); the next page carries on from there.
LIST_PAGE_BUDGET_BYTES = 3 * 1024**2
_STATE_TO_PROTO = {
    PENDING_UPLOAD: artifact_pb2.ARTIFACT_STATE_PENDING_UPLOAD,
    READY: artifact_pb2.ARTIFACT_STATE_READY,
    REJECTED: artifact_pb2.ARTIFACT_STATE_REJECTED,
}


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def artifact_to_proto(record: ArtifactRecord) -> artifact_pb2.Artifact:
    message = artifact_pb2.Artifact(
        name=artifact_name(record),
        kind=_KIND_TO_PROTO[record.kind],
        display_name=record.display_name,
        state=_STATE_TO_PROTO[record.state],
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        rejection_reason=record.rejection_reason,
        create_time=_timestamp(record.create_time),
        update_time=_timestamp(record.update_time),
    )
    try:
        if record.state == READY and record.summary is not None:
            set_summary(message, record.summary)
    except (ValueError, TypeError) as error:
        # Only a record made before CompleteUpload checked summaries can get
        # here; it is sent without its summary rather than failing every
        # listing. Delete and upload it again to get one.
        log.warning("artifact %s has a summary that cannot be sent (%s)", message.name, type(error).__name__)
    return message


class ArtifactServicer(artifact_pb2_grpc.ArtifactServiceServicer):
    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    def CreateUpload(self, request, context):
        ticket = self.store.create_upload(
            kind=_KIND_FROM_PROTO.get(request.kind),
            display_name=request.display_name,
            size_bytes=request.size_bytes,
            sha256=request.sha256,
        )
        return artifact_pb2.CreateUploadResponse(
            artifact=artifact_to_proto(ticket.artifact),
            upload_url=ticket.url,
            upload_method=ticket.method,
            upload_headers=ticket.headers,
            expire_time=_timestamp(ticket.expire_time),
        )

    def CompleteUpload(self, request, context):
        return artifact_pb2.CompleteUploadResponse(artifact=artifact_to_proto(self.store.complete_upload(request.name)))

    def GetArtifact(self, request, context):
        return artifact_pb2.GetArtifactResponse(artifact=artifact_to_proto(self.store.get(request.name)))

    def ListArtifacts(self, request, context):
        page = self.store.list(request.page_size, request.page_token, _KIND_FROM_PROTO.get(request.kind))
        messages, used = [], 0
        for record in page.artifacts:
            message = artifact_to_proto(record)
            used += message.ByteSize()
            if messages and used > LIST_PAGE_BUDGET_BYTES:
                # A shorter page rather than one no client can receive.
                return artifact_pb2.ListArtifactsResponse(
                    artifacts=messages, next_page_token=encode_page_token(page.artifacts[len(messages) - 1].id)
                )
            messages.append(message)
        return artifact_pb2.ListArtifactsResponse(artifacts=messages, next_page_token=page.next_page_token)

    def GetDownloadUrl(self, request, context):
        ticket = self.store.download_url(request.name)
        return artifact_pb2.GetDownloadUrlResponse(
            url=ticket.url,
            expire_time=_timestamp(ticket.expire_time),
            sha256=ticket.sha256,
            size_bytes=ticket.size_bytes,
        )

    def DeleteArtifact(self, request, context):
        self.store.delete(request.name)
        return artifact_pb2.DeleteArtifactResponse()


def _sweep(store: ArtifactStore) -> None:
    try:
        store.sweep_staging()
    except Exception:  # noqa: BLE001 - housekeeping; the next sweep tries again
        log.exception("sweeping staging objects failed")


def _start_sweeper(store: ArtifactStore, interval_s: int) -> threading.Event:
    """Sweeps now, then every `interval_s` on a thread until the event is set."""
    stopped = threading.Event()
    _sweep(store)
    if interval_s > 0:

        def loop() -> None:
            while not stopped.wait(interval_s):
                _sweep(store)

        threading.Thread(target=loop, name="staging-sweeper", daemon=True).start()
    return stopped


def create_server(address: str, config: StorageConfig) -> tuple[RunningServer, int]:
    """Connects to SQL and S3, then serves ArtifactService on `address`."""
    engine = create_engine(config.database_url, "ADVEX_STORAGE_DATABASE_URL")
    try:
        objects = ObjectStore(
            config.bucket,
            endpoint_url=config.s3_endpoint,
            public_endpoint_url=config.s3_public_endpoint,
            region=config.s3_region,
            access_key_id=config.s3_access_key_id,
            secret_access_key=config.s3_secret_access_key,
        )
        if config.create_bucket:
            objects.ensure_bucket()
        store = ArtifactStore(
            Registry(engine),
            objects,
            max_upload_bytes=config.max_upload_bytes,
            max_dataset_bytes=config.max_dataset_bytes,
            upload_url_ttl_s=config.upload_url_ttl_s,
            download_url_ttl_s=config.download_url_ttl_s,
        )
        servicer = ArtifactServicer(store)

        def add(server) -> None:
            artifact_pb2_grpc.add_ArtifactServiceServicer_to_server(servicer, server)

        running = start_server(address, [Registration(SERVICE_NAME, add)])
    except BaseException:
        engine.dispose()
        raise
    running.on_stop.append(engine.dispose)
    # Closed first (on_stop runs last to first).
    running.on_stop.append(_start_sweeper(store, config.staging_sweep_s).set)
    return running, running.port


def main() -> None:
    run_service("storage", StorageConfig.from_env, create_server, lambda config: f"bucket {config.bucket}")
