"""The evaluation API's rules, apart from gRPC: what a valid request is,
and how evaluations are read, watched and cancelled."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

from advex.core import resources
from advex.core.attack_specs import check_clip_range, resolve, spec_to_dict
from advex.core.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from advex.gateway import jobs
from advex.gateway.runner import COMPATIBILITY_TIMEOUT_S, STORAGE_TIMEOUT_S, Downstream, EvaluationRunner, locate
from advex.v1 import artifact_pb2, attack_service_pb2, evasion_pb2, report_pb2

COLLECTION = "evaluations"
MAX_ATTACKS = 256
# A listed evaluation carries its attacks (about 50 bytes each on the wire);
# bounding them per page keeps a ListEvaluations answer near 1 MiB, far below
# gRPC's 4 MiB message limit, even at page_size 1000 and 256 attacks each.
MAX_LISTED_ATTACKS = 20_000


class Evaluations:
    def __init__(
        self,
        store: jobs.JobStore,
        downstream: Downstream,
        runner: EvaluationRunner,
        poll_seconds: float,
        max_watchers: int,
    ):
        self.store = store
        self.downstream = downstream
        self.runner = runner
        self.poll_seconds = poll_seconds
        self.max_watchers = max_watchers
        self._watchers = threading.BoundedSemaphore(max_watchers)

    def _artifact(self, name: str, field: str, kind: int) -> artifact_pb2.Artifact:
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

    def create(
        self,
        *,
        model: str,
        dataset: str,
        attacks: Sequence[evasion_pb2.AttackSpec],
        clip_min: float,
        clip_max: float,
        max_samples: int,
        display_name: str,
    ) -> jobs.EvaluationRow:
        """Checks everything that can be checked before work starts, so a bad
        request fails here with what to fix, and never leaves a job behind."""
        if not attacks:
            raise InvalidArgument("attacks is empty; give at least one, e.g. {attack: 'fgsm', eps: 0.1}")
        if len(attacks) > MAX_ATTACKS:
            raise InvalidArgument(f"at most {MAX_ATTACKS} attacks per evaluation, got {len(attacks)}")
        resolved = [resolve(spec, where=f"attacks[{i}]") for i, spec in enumerate(attacks)]
        check_clip_range(clip_min, clip_max)
        if max_samples < 0:
            raise InvalidArgument(f"max_samples must be >= 0 (0 means all), got {max_samples}")
        if len(display_name) > 200:
            raise InvalidArgument("display_name is longer than 200 characters")
        self._artifact(model, "model", artifact_pb2.ARTIFACT_KIND_MODEL)
        self._artifact(dataset, "dataset", artifact_pb2.ARTIFACT_KIND_DATASET)
        storage = self.downstream.storage
        info = self.downstream.attack.CheckCompatibility(
            attack_service_pb2.CheckCompatibilityRequest(
                model=locate(storage, model), dataset=locate(storage, dataset), clip_min=clip_min, clip_max=clip_max
            ),
            timeout=COMPATIBILITY_TIMEOUT_S,
        )
        samples = info.dataset.samples if max_samples == 0 else min(max_samples, info.dataset.samples)
        return self.store.create(
            display_name=display_name,
            model=model,
            dataset=dataset,
            attacks=[spec_to_dict(r.to_proto()) for r in resolved],
            clip_min=clip_min,
            clip_max=clip_max,
            max_samples=max_samples,
            samples=samples,
            progress_total=samples * sum(r.cost for r in resolved),
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
        attacks = 0
        for kept, row in enumerate(rows):
            attacks += len(row.attacks)
            if attacks > MAX_LISTED_ATTACKS and kept > 0:
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
