"""Request builders the mesh tests share."""

from __future__ import annotations

from advex.v1 import evasion_pb2, evaluation_pb2


def evasion_request(model: str, dataset: str, attacks, max_samples: int = 0, **fields):
    """A CreateEvaluationRequest for an evasion evaluation."""
    return evaluation_pb2.CreateEvaluationRequest(
        model=model,
        evasion=evasion_pb2.EvasionSpec(dataset=dataset, attacks=attacks, max_samples=max_samples),
        **fields,
    )
