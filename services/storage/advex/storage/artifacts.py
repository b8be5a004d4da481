"""The artifact rules: how an upload becomes a READY model, dataset or
trigger pattern.

An upload is PUT to a staging key ("uploads/{id}") through a presigned URL.
CompleteUpload reads that object back, checks size, SHA-256 and format, and
only then copies exactly the version it checked (by ETag) to the final key
("models/{id}", "datasets/{id}" or "patterns/{id}"). The presigned PUT URL
stays valid until it expires, so a later PUT can only ever overwrite the
staging key, never the verified object that evaluations read. Such a late
PUT (after the artifact became READY or REJECTED, or was deleted) leaves a
staging object nothing will read: CompleteUpload removes it when called
again, and `sweep_staging` (at start and periodically) removes the rest.
"""

from __future__ import annotations

import logging
import re
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from advex.core.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from advex.core.resources import decode_page_token, encode_page_token, new_id, page_size, parse_name, resource_name
from advex.storage import monitoring
from advex.storage.objects import ObjectChanged, ObjectStore
from advex.storage.protos import summary_wire_size
from advex.storage.registry import PENDING_UPLOAD, READY, REJECTED, ArtifactRecord, Registry
from advex.storage.verify import (
    DEFAULT_MAX_DATASET_BYTES,
    Summary,
    TooLarge,
    VerificationError,
    ZipLimits,
    verify_dataset,
    verify_model,
    verify_pattern,
    verify_outcomes,
    verify_report,
    verify_shard,
)

log = logging.getLogger(__name__)

# Also the object key prefix: "{kind}s/{id}".
MODEL = "model"
DATASET = "dataset"
PATTERN = "pattern"
REPORT = "report"
OUTCOMES = "outcomes"
SHARD = "shard"
_VERIFIERS: dict[str, Callable[[Path, ZipLimits], Summary | None]] = {
    MODEL: verify_model,
    DATASET: verify_dataset,
    PATTERN: verify_pattern,
    REPORT: verify_report,
    OUTCOMES: verify_outcomes,
    SHARD: verify_shard,
}
_HOW_TO_SAVE = {
    MODEL: "upload a Keras 3 .keras file saved with model.save('model.keras')",
    DATASET: "upload an .npz saved with numpy.savez('data.npz', x=images, y=labels)",
    PATTERN: "upload an .npz saved with numpy.savez('trigger.npz', pattern=pattern, mask=mask)",
    REPORT: "report pages are made by AdvEx for an evaluation",
    OUTCOMES: "outcomes files are made by AdvEx for an evaluation",
    SHARD: "shard files are made by AdvEx for a running evaluation",
}
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
MAX_DISPLAY_NAME = 200
# A summary travels in every Artifact message (GetArtifact, ListArtifacts).
MAX_SUMMARY_BYTES = 2 * 1024**2
# Rejection reasons are stored and sent with the artifact.
MAX_REASON_CHARS = 2000
COLLECTION = "artifacts"


def artifact_name(record: ArtifactRecord) -> str:
    return resource_name(COLLECTION, record.id)


_STAGING_PREFIX = "uploads/"


def _staging_key(artifact_id: str) -> str:
    return f"{_STAGING_PREFIX}{artifact_id}"


def _sendable(text: str) -> str:
    """`text` as valid UTF-8 of bounded length, so the record can always be sent."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


@dataclass(frozen=True)
class UploadTicket:
    artifact: ArtifactRecord
    url: str
    method: str
    headers: dict[str, str]
    expire_time: datetime


@dataclass(frozen=True)
class DownloadTicket:
    url: str
    expire_time: datetime
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class Page:
    artifacts: list[ArtifactRecord]
    # Empty on the last page.
    next_page_token: str


class ArtifactStore:
    def __init__(
        self,
        registry: Registry,
        objects: ObjectStore,
        *,
        max_upload_bytes: int,
        upload_url_ttl_s: int,
        download_url_ttl_s: int,
        max_dataset_bytes: int = DEFAULT_MAX_DATASET_BYTES,
        scratch_dir: Path | None = None,
    ) -> None:
        self.registry = registry
        self.objects = objects
        self.max_upload_bytes = max_upload_bytes
        self.limits = {
            MODEL: ZipLimits.for_models(max_upload_bytes),
            DATASET: ZipLimits.for_datasets(max_dataset_bytes),
            PATTERN: ZipLimits.for_patterns(),
            REPORT: None,
            OUTCOMES: None,
            # Records and, when kept, adversarial images: a dataset's bounds.
            SHARD: ZipLimits.for_datasets(max_dataset_bytes),
        }
        self.upload_url_ttl_s = upload_url_ttl_s
        self.download_url_ttl_s = download_url_ttl_s
        self.scratch_dir = scratch_dir

    def create_upload(self, kind: str | None, display_name: str, size_bytes: int, sha256: str) -> UploadTicket:
        if kind not in _VERIFIERS:
            raise InvalidArgument(
                "kind is required: MODEL for a Keras 3 .keras file, DATASET for an .npz of images and labels, "
                "or PATTERN for an .npz backdoor trigger (pattern and mask) (REPORT, OUTCOMES and SHARD: what AdvEx makes)"
            )
        if len(display_name) > MAX_DISPLAY_NAME:
            raise InvalidArgument(
                f"display_name is {len(display_name)} characters; at most {MAX_DISPLAY_NAME} are allowed"
            )
        if any(unicodedata.category(c) == "Cc" for c in display_name):
            raise InvalidArgument("display_name contains control characters; use printable text")
        if size_bytes <= 0:
            raise InvalidArgument(f"size_bytes must be the exact size of the file in bytes (> 0), got {size_bytes}")
        if size_bytes > self.max_upload_bytes:
            raise ResourceExhausted(
                f"the file is {size_bytes} bytes; this server accepts uploads of at most {self.max_upload_bytes} bytes"
            )
        if not _SHA256.fullmatch(sha256):
            shown = sha256 if len(sha256) <= 80 else sha256[:77] + "..."
            raise InvalidArgument(
                f"sha256 must be the 64 hex digits of the file's SHA-256 (as printed by `sha256sum FILE`), "
                f"got {shown!r}"
            )
        now = datetime.now(UTC)
        artifact_id = new_id()
        record = ArtifactRecord(
            id=artifact_id,
            kind=kind,
            display_name=display_name,
            state=PENDING_UPLOAD,
            object_key=f"{kind}s/{artifact_id}",
            size_bytes=size_bytes,
            sha256=sha256.lower(),
            rejection_reason="",
            summary=None,
            create_time=now,
            update_time=now,
        )
        self.registry.insert(record)
        url, headers = self.objects.presigned_put(_staging_key(artifact_id), size_bytes, self.upload_url_ttl_s)
        return UploadTicket(
            artifact=record,
            url=url,
            method="PUT",
            headers=headers,
            expire_time=now + timedelta(seconds=self.upload_url_ttl_s),
        )

    def complete_upload(self, name: str) -> ArtifactRecord:
        """Verifies the uploaded bytes; READY on success, REJECTED (and
        InvalidArgument with the reason) on any mismatch."""
        record = self.get(name)
        if record.state in (READY, REJECTED):
            # Anything there now was PUT after verification ended.
            self.objects.delete(_staging_key(record.id))
        if record.state == READY:
            return record
        if record.state == REJECTED:
            raise FailedPrecondition(
                f"artifact '{name}' was rejected: {record.rejection_reason}; upload again with CreateUpload"
            )
        staging = _staging_key(record.id)
        info = self.objects.head(staging)
        if info is None:
            return self._settled_elsewhere(
                record,
                f"no bytes were uploaded to the upload URL of '{name}' yet; PUT the file first, "
                "then call CompleteUpload",
            )
        if info.size != record.size_bytes:
            return self._reject(record, self._size_mismatch(info.size, record.size_bytes), monitoring.SIZE_MISMATCH)

        with tempfile.NamedTemporaryFile(dir=self.scratch_dir, prefix="advex-verify-") as scratch:
            try:
                download = self.objects.download(staging, scratch, info.etag, record.size_bytes)
            except ObjectChanged:
                return self._settled_elsewhere(record, self._replaced(name))
            if download.size != record.size_bytes:
                return self._reject(
                    record, self._size_mismatch(download.size, record.size_bytes), monitoring.SIZE_MISMATCH
                )
            if download.sha256 != record.sha256:
                return self._reject(
                    record,
                    f"SHA-256 of the uploaded bytes is {download.sha256} but {record.sha256} was declared; "
                    "the file changed or was corrupted in transit; upload again with CreateUpload",
                    monitoring.SHA256_MISMATCH,
                )
            try:
                summary = self._verify(record, Path(scratch.name))
            except VerificationError as error:
                # TooLarge keeps its RESOURCE_EXHAUSTED code.
                why = monitoring.TOO_LARGE if isinstance(error, TooLarge) else monitoring.BAD_FORMAT
                return self._reject(record, str(error), why, type(error))
            except Exception as error:
                # A bug or a file crafted past the checks: the upload must
                # still end REJECTED, never stuck PENDING with its object.
                log.exception("verifying artifact %s failed unexpectedly", name)
                return self._reject(
                    record,
                    f"could not verify the upload: {type(error).__name__}; {_HOW_TO_SAVE[record.kind]}",
                    monitoring.UNEXPECTED,
                )

        try:
            self.objects.copy(staging, record.object_key, info.etag)
        except ObjectChanged:
            return self._settled_elsewhere(record, self._replaced(name))
        if not self.registry.mark_ready(record.id, summary):
            return self._settled_elsewhere(
                record, f"artifact '{name}' changed state while it was being verified", copied=True
            )
        self.objects.delete(staging)
        monitoring.UPLOADS_VERIFIED.labels(record.kind).inc()
        log.info("artifact %s (%s, %d bytes) is READY", name, record.kind, record.size_bytes)
        return self._require(record.id, name)

    def _verify(self, record: ArtifactRecord, path: Path) -> Summary | None:
        """The file's summary, checked to be sendable as it will be sent."""
        summary = _VERIFIERS[record.kind](path, self.limits[record.kind])
        if summary is None:
            return None
        try:
            size = summary_wire_size(summary)
        except Exception as error:
            raise VerificationError(
                f"the {record.kind} passed its format checks but what it reports cannot be sent to clients "
                f"({type(error).__name__}); {_HOW_TO_SAVE[record.kind]}"
            ) from error
        if size > MAX_SUMMARY_BYTES:
            raise TooLarge(
                f"the {record.kind}'s summary (Keras version, class names, ...) is {size} bytes; at most "
                f"{MAX_SUMMARY_BYTES} are accepted; use shorter or fewer class names"
            )
        return summary

    def get(self, name: str) -> ArtifactRecord:
        return self._require(parse_name(COLLECTION, name), name)

    def list(self, requested_page_size: int, page_token: str, kind: str | None) -> Page:
        size = page_size(requested_page_size)
        after = decode_page_token(page_token)
        records = self.registry.list(size + 1, after, kind)
        if len(records) > size:
            return Page(records[:size], encode_page_token(records[size - 1].id))
        return Page(records, "")

    def download_url(self, name: str) -> DownloadTicket:
        record = self.get(name)
        if record.state == PENDING_UPLOAD:
            raise FailedPrecondition(
                f"artifact '{name}' is PENDING_UPLOAD, not READY; PUT the file and call CompleteUpload first"
            )
        if record.state == REJECTED:
            raise FailedPrecondition(
                f"artifact '{name}' is REJECTED, not READY ({record.rejection_reason}); it has no content to download"
            )
        url = self.objects.presigned_get(record.object_key, self.download_url_ttl_s)
        return DownloadTicket(
            url=url,
            expire_time=datetime.now(UTC) + timedelta(seconds=self.download_url_ttl_s),
            sha256=record.sha256,
            size_bytes=record.size_bytes,
        )

    def delete(self, name: str) -> None:
        record = self.get(name)
        # Objects first: if S3 fails, the record is still there to retry with.
        self.objects.delete(_staging_key(record.id))
        self.objects.delete(record.object_key)
        self.registry.delete(record.id)
        log.info("artifact %s deleted", name)

    def sweep_staging(self) -> int:
        """Deletes the staging objects of artifacts that are READY, REJECTED
        or gone (a PUT to a still-valid upload URL after verification ended);
        returns how many. A PENDING_UPLOAD artifact keeps its object until
        CompleteUpload or DeleteArtifact."""
        removed = 0
        for key in self.objects.keys(_STAGING_PREFIX):
            record = self.registry.get(key[len(_STAGING_PREFIX):])
            if record is not None and record.state == PENDING_UPLOAD:
                continue
            self.objects.delete(key)
            removed += 1
        if removed:
            log.info("removed %d staging objects PUT after their upload was settled", removed)
        return removed

    def _require(self, artifact_id: str, name: str) -> ArtifactRecord:
        record = self.registry.get(artifact_id)
        if record is None:
            raise NotFound(f"there is no artifact named '{name}'; ListArtifacts shows the ones that exist")
        return record

    @staticmethod
    def _size_mismatch(actual: int, declared: int) -> str:
        return (
            f"upload is {actual} bytes but {declared} were declared; "
            "PUT exactly the file whose size and SHA-256 you declared, or start again with CreateUpload"
        )

    @staticmethod
    def _replaced(name: str) -> str:
        return f"the upload of '{name}' was replaced while it was being verified; call CompleteUpload again"

    def _reject(self, record: ArtifactRecord, reason: str, why: str, error=InvalidArgument) -> ArtifactRecord:
        """REJECTED with `reason` (for the user) and `why` (one of
        monitoring's reasons, for the rejection counter)."""
        reason = _sendable(reason)
        # The object goes before the state changes, so a failure in between
        # leaves a PENDING artifact that CompleteUpload can reject again.
        self.objects.delete(_staging_key(record.id))
        if self.registry.mark_rejected(record.id, reason):
            monitoring.UPLOADS_REJECTED.labels(record.kind, why).inc()
            log.info("artifact %s REJECTED: %s", artifact_name(record), reason)
            raise error(reason)
        return self._settled_elsewhere(record, reason, error=error)

    def _settled_elsewhere(
        self, record: ArtifactRecord, message: str, error=FailedPrecondition, copied: bool = False
    ) -> ArtifactRecord:
        """After losing a race with a concurrent CompleteUpload: its READY
        result stands; anything else is reported as `error`. `copied`: this
        call already put the object at its final key, which must not outlive
        an artifact that is not READY."""
        current = self.registry.get(record.id)
        if current is not None and current.state == READY:
            return current
        if copied:
            self.objects.delete(record.object_key)
            if current is None or current.state == REJECTED:
                # Settled for good: nothing of this upload may stay behind.
                self.objects.delete(_staging_key(record.id))
        raise error(message)
