"""Poisoning evaluations at the gateway: what a valid request is, and how one
runs.

The plan of work is one unit per model: the clean baseline (count 0) first,
then one per poison count, ascending. Each unit is one RunPoisoning call to
the attack service, a conversation: the service trains (streaming progress,
which becomes the evaluation's), announces each thing it made (the poisoned
training set, the trained model), gets a presigned PUT for it from here (a
storage upload like any user's, verified by CompleteUpload before it is
READY), and finally streams its predictions on the test set, which pass
straight into one ScorePoisoning stream shared by all units.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from advex.core import poison_specs
from advex.core.errors import FailedPrecondition, InvalidArgument
from advex.gateway.work import (
    COMPATIBILITY_TIMEOUT_S,
    STORAGE_TIMEOUT_S,
    RequestStream,
    Work,
    artifact_ref,
)
from advex.internal.v1 import attack_service_pb2, records_pb2, scoring_service_pb2
from advex.v1 import artifact_pb2, poisoning_pb2, report_pb2

log = logging.getLogger(__name__)

KIND = "poisoning"

_PRODUCT_KINDS = {
    attack_service_pb2.PRODUCT_KIND_POISONED_DATASET: (artifact_pb2.ARTIFACT_KIND_DATASET, "poisoned training set"),
    attack_service_pb2.PRODUCT_KIND_MODEL: (artifact_pb2.ARTIFACT_KIND_MODEL, "model"),
}


def _artifact_names(spec: poisoning_pb2.PoisoningSpec) -> list[tuple[str, str, int]]:
    """(name, field, kind) of every artifact the spec reads, model excluded."""
    names = [
        (spec.training_dataset, "poisoning.training_dataset", artifact_pb2.ARTIFACT_KIND_DATASET),
        (spec.test_dataset, "poisoning.test_dataset", artifact_pb2.ARTIFACT_KIND_DATASET),
    ]
    if spec.trigger.pattern:
        names.append((spec.trigger.pattern, "poisoning.trigger.pattern", artifact_pb2.ARTIFACT_KIND_PATTERN))
    return names


def _inputs(locate, model: str, spec: poisoning_pb2.PoisoningSpec, clip_min: float, clip_max: float):
    """The attack service's PoisoningInputs; `locate(name)` gives an ObjectLocation."""
    inputs = attack_service_pb2.PoisoningInputs(
        model=locate(model),
        training_dataset=locate(spec.training_dataset),
        test_dataset=locate(spec.test_dataset),
        spec=spec,
        clip_min=clip_min,
        clip_max=clip_max,
    )
    if spec.trigger.pattern:
        inputs.pattern.CopyFrom(locate(spec.trigger.pattern))
    return inputs


def validate(
    checks, model: str, spec: poisoning_pb2.PoisoningSpec, clip_min: float, clip_max: float
) -> tuple[poisoning_pb2.PoisoningSpec, int]:
    """Everything that can be checked before training starts. The spec
    stored is resolved: defaults filled in, the source classes in effect, and
    the counts to train (fractions turned into counts of the pool)."""
    resolved = poison_specs.resolve(spec, clip_min, clip_max)
    checks.require_artifact(model, "model", artifact_pb2.ARTIFACT_KIND_MODEL)
    canonical = resolved.to_proto()
    for name, field, kind in _artifact_names(canonical):
        checks.require_artifact(name, field, kind)
    check = checks.downstream.attack.CheckPoisoning(
        attack_service_pb2.CheckPoisoningRequest(inputs=_inputs(checks.locate, model, canonical, clip_min, clip_max)),
        timeout=COMPATIBILITY_TIMEOUT_S,
    )
    canonical.source_classes[:] = check.source_classes
    canonical.counts[:] = check.counts
    del canonical.fractions[:]
    return canonical, (1 + len(check.counts)) * check.steps_per_model


@dataclass
class _Unit:
    """What one trained model left behind, besides its test predictions."""

    poison_count: int
    model: artifact_pb2.Artifact | None = None
    poisoned_dataset: artifact_pb2.Artifact | None = None
    summary: attack_service_pb2.TrainingSummary | None = None
    # A few triggered test images through this model, for the page.
    examples: records_pb2.EvasionExamples | None = None


def execute(work: Work, spec: poisoning_pb2.PoisoningSpec) -> report_pb2.Report:
    row, attack = work.row, work.downstream.attack
    work.stage("locating the model and datasets")
    names = [row.model, *(name for name, _, _ in _artifact_names(spec))]
    artifacts = dict(zip(names, work.artifacts(*names)))
    locations = dict(zip(names, work.locations(*names)))
    work.page.class_names = list(artifacts[spec.test_dataset].dataset.class_names)
    inputs = _inputs(locations.__getitem__, row.model, spec, row.clip_min, row.clip_max)
    work.stage("checking the model and datasets")
    check = work.unary(
        attack.CheckPoisoning, attack_service_pb2.CheckPoisoningRequest(inputs=inputs), COMPATIBILITY_TIMEOUT_S
    )
    if list(check.counts) != list(spec.counts):
        # The stored spec's counts were resolved against the same artifacts
        # at CreateEvaluation, and artifacts never change: only a different
        # attack service version could see them differently.
        raise FailedPrecondition(
            f"the attack service now resolves the counts {list(spec.counts)} as {list(check.counts)}; "
            "create the evaluation again"
        )
    counts = [0, *spec.counts]
    header = scoring_service_pb2.ScorePoisoningRequest(
        header=scoring_service_pb2.ScorePoisoningHeader(
            num_classes=check.model.num_classes,
            samples=check.test_dataset.samples,
            source_classes=check.source_classes,
            target_class=spec.target_class,
            poison_counts=counts,
            poison_fractions=[count / check.pool_samples for count in counts],
        )
    )
    units: list[_Unit] = []
    with work.request_stream(work.downstream.scoring.ScorePoisoning.future, header) as scores:
        for index, count in enumerate(counts):
            label = "the clean baseline" if count == 0 else f"{count} poisoned image{'s' if count > 1 else ''}"
            work.stage(f"training with {label} ({index + 1}/{len(counts)})")
            units.append(_train(work, inputs, index, count, f"{label} ({index + 1}/{len(counts)})", scores))
            work.check_stopped()
        work.stage("scoring")
        metrics = scores.result().report

    metrics.spec.CopyFrom(spec)
    metrics.training_dataset.CopyFrom(artifact_ref(artifacts[spec.training_dataset]))
    if spec.trigger.pattern:
        metrics.pattern.CopyFrom(artifact_ref(artifacts[spec.trigger.pattern]))
    metrics.training_samples = check.training_dataset.samples
    metrics.pool_samples = check.pool_samples
    for result, unit in zip([metrics.baseline, *metrics.poisoned], units):
        if result.poison_count != unit.poison_count:
            raise RuntimeError(f"scoring returned count {result.poison_count} where {unit.poison_count} was trained")
        result.model.CopyFrom(artifact_ref(unit.model))
        if unit.poisoned_dataset is not None:
            result.poisoned_dataset.CopyFrom(artifact_ref(unit.poisoned_dataset))
        result.training_seconds = unit.summary.training_seconds
        result.final_training_loss = unit.summary.final_loss
        result.final_training_accuracy = unit.summary.final_accuracy
    # The page shows triggered images through the most successful model.
    shown = max(zip(metrics.poisoned, units[1:]), key=lambda pair: pair[0].attack_success_rate, default=None)
    if shown is not None and shown[1].examples is not None:
        work.page.poisoning_examples = (shown[0].poison_count, shown[1].examples)
    return report_pb2.Report(
        model=artifact_ref(artifacts[row.model]),
        dataset=artifact_ref(artifacts[spec.test_dataset]),
        poisoning=metrics,
    )


def _train(
    work: Work,
    inputs: attack_service_pb2.PoisoningInputs,
    index: int,
    count: int,
    label: str,
    scores: RequestStream,
) -> _Unit:
    """One unit: a RunPoisoning conversation with the attack service."""
    storage = work.downstream.storage
    unit = _Unit(poison_count=count)
    progress_before = work.run.done
    pending: dict[int, artifact_pb2.Artifact] = {}
    first = attack_service_pb2.RunPoisoningRequest(
        unit=attack_service_pb2.RunPoisoningUnit(inputs=inputs, poison_count=count)
    )
    with work.request_stream(work.downstream.attack.RunPoisoning, first) as requests:
        for response in requests.call:
            payload = response.WhichOneof("payload")
            if payload == "engine":
                work.page.add_versions(response.engine.versions)
            elif payload == "progress":
                progress = response.progress
                work.run.done = progress_before + progress.steps_done
                work.stage(f"training with {label}: epoch {progress.epoch}/{progress.epochs}")
            elif payload == "product":
                product = response.product
                kind, what = _PRODUCT_KINDS[product.kind]
                created = work.unary(
                    storage.CreateUpload,
                    artifact_pb2.CreateUploadRequest(
                        kind=kind,
                        display_name=f"{what}, {label.split(' (')[0]}, evaluations/{work.row.id}",
                        size_bytes=product.size_bytes,
                        sha256=product.sha256,
                    ),
                    STORAGE_TIMEOUT_S,
                )
                pending[product.kind] = created.artifact
                requests.put(
                    attack_service_pb2.RunPoisoningRequest(
                        upload=attack_service_pb2.UploadTicket(
                            url=created.upload_url, method=created.upload_method, headers=created.upload_headers
                        )
                    )
                )
            elif payload == "stored":
                work.stage(f"verifying what training with {label} made")
                artifact = work.unary(
                    storage.CompleteUpload,
                    artifact_pb2.CompleteUploadRequest(name=pending.pop(response.stored.kind).name),
                    COMPATIBILITY_TIMEOUT_S,
                ).artifact
                if response.stored.kind == attack_service_pb2.PRODUCT_KIND_MODEL:
                    unit.model = artifact
                else:
                    unit.poisoned_dataset = artifact
            elif payload == "summary":
                unit.summary = response.summary
                work.stage(f"testing the model trained with {label}")
            elif payload == "examples":
                unit.examples = response.examples
            elif payload == "records":
                scores.put(
                    scoring_service_pb2.ScorePoisoningRequest(
                        records=scoring_service_pb2.ScoredPoisoningRecords(model_index=index, records=response.records)
                    )
                )
    if unit.model is None or unit.summary is None:
        raise RuntimeError(f"the attack service ended training with {label} without storing a model")
    return unit


def poisoned_data(checks, row, spec: poisoning_pb2.PoisoningSpec, poison_count: int) -> Iterator:
    """PoisonedDataPiece messages of one count's poisoned training set, made
    afresh by the attack service from the stored spec."""
    if poison_count not in spec.counts:
        raise InvalidArgument(
            f"poison_count {poison_count} is not one of this evaluation's counts ({', '.join(map(str, spec.counts))})"
        )
    request = attack_service_pb2.StreamPoisonedDataRequest(
        inputs=_inputs(checks.locate, row.model, spec, row.clip_min, row.clip_max), poison_count=poison_count
    )
    call = checks.downstream.attack.StreamPoisonedData(request)
    try:
        for response in call:
            yield response.piece
    finally:
        # The caller went away (or the stream ended): nothing more to make.
        call.cancel()
