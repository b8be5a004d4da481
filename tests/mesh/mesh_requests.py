"""Request builders and small client steps the mesh tests share."""

from __future__ import annotations

import io
import urllib.request
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from advex.cli.client import watch
from advex.v1 import artifact_pb2, evasion_pb2, evaluation_pb2, poisoning_pb2

# Enough for the poisoning reference (issue 7) with margin, small enough for
# CI on 2 cores.
REFERENCE_RECIPE = dict(epochs=10, batch_size=64, learning_rate=5e-3)
SQUARE = poisoning_pb2.TriggerSpec(trigger="square", size=2, position="bottom-right")


def evasion_request(model: str, dataset: str, attacks, max_samples: int = 0, **fields):
    """A CreateEvaluationRequest for an evasion evaluation."""
    return evaluation_pb2.CreateEvaluationRequest(
        model=model,
        evasion=evasion_pb2.EvasionSpec(dataset=dataset, attacks=attacks, max_samples=max_samples),
        **fields,
    )


def poisoning_request(sets, counts=(20,), recipe=None, trigger=SQUARE, **spec) -> evaluation_pb2.CreateEvaluationRequest:
    """A poisoning evaluation of `sets` (model, training set, test set
    artifacts): 1 -> 7 with `trigger`, REFERENCE_RECIPE unless `recipe`."""
    model, train, test = sets
    fields = dict(
        training_dataset=train.name, test_dataset=test.name, source_classes=[1], target_class=7, counts=list(counts),
        training=poisoning_pb2.TrainingRecipe(**(recipe or REFERENCE_RECIPE)),
    )
    fields.update(spec)
    if trigger is not None:
        fields["trigger"] = trigger
    return evaluation_pb2.CreateEvaluationRequest(
        model=model.name, poisoning=poisoning_pb2.PoisoningSpec(**fields), clip_min=0.0, clip_max=1.0
    )


def run_to_end(gateway, request) -> evaluation_pb2.Evaluation:
    """Creates the evaluation and watches it to its final state."""
    created = gateway.evaluations.CreateEvaluation(request).evaluation
    return list(watch(gateway, created.name))[-1]


def download(gateway, name: str, path: Path) -> Path:
    """The artifact `name`, fetched through its presigned URL to `path`."""
    url = gateway.artifacts.GetDownloadUrl(artifact_pb2.GetDownloadUrlRequest(name=name)).url
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback S3
        path.write_bytes(response.read())
    return path


def run_cli(*argv: str) -> tuple[int, str, str]:
    """`advex ARGV` in-process: (exit code, stdout, stderr)."""
    from advex.cli.main import main as advex_main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = advex_main(list(argv))
    return code, out.getvalue(), err.getvalue()
