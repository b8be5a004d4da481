"""The kinds of evaluation, one entry each: what its spec is, how a request
of it is validated, how it runs. Everything that differs by kind (the API's
oneof, the stored spec, the runner's plan of work) is looked up here rather
than decided by if-chains elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from advex.gateway import evasion, jobs, poisoning
from advex.v1 import evasion_pb2, poisoning_pb2


@dataclass(frozen=True)
class Kind:
    name: str
    # The spec message, and its field in the oneof `spec` of Evaluation and
    # CreateEvaluationRequest.
    spec_type: type[Message]
    field: str
    # (checks, model, spec, clip_min, clip_max) -> (resolved spec to store,
    # progress units in all); raises what to fix.
    validate: Callable
    # (work.Work, spec) -> advex.v1.Report with its kind's result.
    execute: Callable

    def read_spec(self, row: jobs.EvaluationRow) -> Message:
        return jobs.spec_from_json(row.spec, self.spec_type())


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(jobs.EVASION, evasion_pb2.EvasionSpec, "evasion", evasion.validate, evasion.execute),
        Kind(poisoning.KIND, poisoning_pb2.PoisoningSpec, "poisoning", poisoning.validate, poisoning.execute),
    )
}
BY_FIELD = {kind.field: kind for kind in KINDS.values()}
