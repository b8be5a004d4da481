"""The evaluation API's rules, apart from gRPC: what a valid request is,
and how evaluations are read, watched and cancelled."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from google.protobuf.message import Message

from advex.core import resources
from advex.core.attack_specs import check_clip_range
from advex.core.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from advex.gateway import jobs, poisoning
from advex.gateway.kinds import BY_FIELD, KINDS
from advex.gateway.runner import EvaluationRunner
from advex.gateway.work import COMPATIBILITY_TIMEOUT_S, STORAGE_TIMEOUT_S, Downstream, describe_inputs, locate
from advex.internal.v1 import attack_service_pb2
from advex.v1 import artifact_pb2, report_pb2

COLLECTION = "evaluations"
# A listed evaluation carries its spec (stored as JSON; on the wire about as
# large or smaller); bounding the specs per page keeps a ListEvaluations
# answer near 1 MiB, far below gRPC's 4 MiB message limit, however large
# the specs and the page_size.
MAX_LISTED_SPEC_BYTES = 1_000_000


class Evaluations:
    def __init__(
        self,
        store: jobs.JobStore,
        downstream: Downstream,
        runner: EvaluationRunner,
        poll_seconds: float,
        max_watchers: int,
        max_queued: int = 1000,
    ):
        self.store = store
        self.downstream = downstream
        self.runner = runner
        self.poll_seconds = poll_seconds
        self.max_watchers = max_watchers
        self.max_queued = max_queued
        self._watchers = threading.BoundedSemaphore(max_watchers)

    def require_artifact(self, name: str, field: str, kind: int) -> artifact_pb2.Artifact:
        """The READY artifact `name` of `kind`; what to fix otherwise."""
        if not name:
            raise InvalidArgument(f"{field} is required: the name of an uploaded artifact ('artifacts/<id>')")
        artifact = self.downstream.storage.GetArtifact(
            artifact_pb2.GetArtifactRequest(name=name), timeout=STORAGE_TIMEOUT_S
        ).artifact
        if artifact.kind != kind:
            wanted = artifact_pb2.ArtifactKind.Name(kind).removeprefix("ARTIFACT_KIND_").lower()
            raise InvalidArgument(f"{field}: '{name}' is not a {wanted}; pass a {wanted} artifact")
        if artifact.state != artifact_pb2.ARTIFACT_STATE_READY:
            state = artifact_pb2.ArtifactState.Name(artifact.state).removeprefix("ARTIFACT_STATE_")
            reason = f" ({artifact.rejection_reason})" if artifact.rejection_reason else ""
            raise FailedPrecondition(
                f"{field}: '{name}' is {state}{reason}; only READY artifacts (uploaded and completed) can be evaluated"
            )
        return artifact

    def compatibility(
        self, model: str, dataset: artifact_pb2.Artifact, clip_min: float, clip_max: float
    ) -> attack_service_pb2.CheckCompatibilityResponse:
        """That `dataset` fits `model` (INVALID_ARGUMENT with what to fix if
        not), and what both are (work.describe_inputs)."""
        storage = self.downstream.storage
        return describe_inputs(
            lambda method, request: method(request, timeout=COMPATIBILITY_TIMEOUT_S),
            self.downstream.attack,
            locate(storage, model),
            locate(storage, dataset.name),
            dataset.dataset,
            clip_min,
            clip_max,
        )

    def locate(self, name: str) -> attack_service_pb2.ObjectLocation:
        return locate(self.downstream.storage, name)

    def create(
        self,
        *,
        model: str,
        spec: Message | None,
        clip_min: float,
        clip_max: float,
        display_name: str,
    ) -> jobs.EvaluationRow:
        """Checks everything that can be checked before work starts, so a bad
        request fails here with what to fix, and never leaves a job behind.
        `spec` is the request's EvasionSpec or PoisoningSpec."""
        if spec is None:
            raise InvalidArgument(
                f"say what to evaluate: set one of {', '.join(BY_FIELD)} (e.g. evasion: {{dataset, attacks}})"
            )
        kind = next(k for k in KINDS.values() if isinstance(spec, k.spec_type))
        check_clip_range(clip_min, clip_max)
        if len(display_name) > 200:
            raise InvalidArgument("display_name is longer than 200 characters")
        if not model:
            raise InvalidArgument("model is required: the name of an uploaded model ('artifacts/<id>')")
        queued = self.store.count_by_state().get(jobs.QUEUED, 0)
        if queued >= self.max_queued:
            raise ResourceExhausted(
                f"{queued} evaluations are already queued, as many as this gateway takes (ADVEX_MAX_QUEUED); "
                "retry once some have started (`advex list` shows them), e.g. in a minute"
            )
        stored, progress_total = kind.validate(self, model, spec, clip_min, clip_max)
        return self.store.create(
            display_name=display_name,
            kind=kind.name,
            model=model,
            spec=stored,
            clip_min=clip_min,
            clip_max=clip_max,
            progress_total=progress_total,
        )

    def get(self, name: str) -> jobs.EvaluationRow:
        row = self.store.get(resources.parse_name(COLLECTION, name))
        if row is None:
            raise NotFound(f"there is no evaluation named '{name}'")
        return row

    def list(self, page_size: int, page_token: str) -> tuple[list[jobs.EvaluationRow], str]:
        size = resources.page_size(page_size)
        rows = self.store.list(size + 1, resources.decode_page_token(page_token))
        more = len(rows) > size
        rows = rows[:size]
        spec_bytes = 0
        for kept, row in enumerate(rows):
            spec_bytes += len(row.spec)
            if spec_bytes > MAX_LISTED_SPEC_BYTES and kept > 0:
                rows, more = rows[:kept], True
                break
        return rows, resources.encode_page_token(rows[-1].id) if more else ""

    def cancel(self, name: str) -> jobs.EvaluationRow:
        row = self.get(name)
        if row.terminal:
            raise FailedPrecondition(f"'{name}' already ended {row.state}; there is nothing to cancel")
        self.store.request_cancel(row.id)
        self.runner.cancel_local(row.id)
        return self.get(name)

    def watch(self, name: str, is_active: Callable[[], bool]) -> Iterator[jobs.EvaluationRow]:
        """A snapshot now and after every change, until a terminal state."""
        row = self.get(name)
        if not self._watchers.acquire(blocking=False):
            raise ResourceExhausted(
                f"this gateway already serves {self.max_watchers} watch streams; "
                "poll GetEvaluation instead, or retry in a while"
            )
        try:
            last = None
            while is_active():
                key = (row.state, row.progress_done, row.stage, row.update_time)
                if key != last:
                    last = key
                    yield row
                if row.terminal:
                    return
                self.store.wait_for_change(self.poll_seconds)
                row = self.get(name)
        finally:
            self._watchers.release()

    def report(self, name: str) -> report_pb2.Report:
        row = self.get(name)
        if row.state != jobs.SUCCEEDED or row.report is None:
            detail = f": {row.error}" if row.error else ""
            raise FailedPrecondition(f"'{name}' is {row.state}{detail}; a report exists once it SUCCEEDED")
        return report_pb2.Report.FromString(row.report)

    def poisoned_data(self, name: str, poison_count: int) -> Iterator:
        """The poisoned training set of one count of a poisoning evaluation,
        as PoisonedDataPiece messages."""
        row = self.get(name)
        if row.kind != poisoning.KIND:
            raise FailedPrecondition(f"'{name}' is an {row.kind} evaluation; only poisoning evaluations have poisoned data")
        return poisoning.poisoned_data(self, row, KINDS[row.kind].read_spec(row), poison_count)
