"""Evasion evaluations at the gateway: what a valid request is, and how one
runs (attack -> scoring).

Running: re-check compatibility on the attack service, then for each attack
stream RunEvasion's per-sample records straight into one ScoreEvasion
stream. Nothing per-sample is kept here; the records pass through.
"""

from __future__ import annotations

from advex.core.attack_specs import resolve
from advex.core.errors import InvalidArgument
from advex.gateway.work import COMPATIBILITY_TIMEOUT_S, Work, artifact_ref, evaluation_seed
from advex.internal.v1 import attack_service_pb2, scoring_service_pb2
from advex.v1 import artifact_pb2, evasion_pb2, report_pb2

MAX_ATTACKS = 256


def validate(
    checks, model: str, spec: evasion_pb2.EvasionSpec, clip_min: float, clip_max: float
) -> tuple[evasion_pb2.EvasionSpec, int]:
    """Everything that can be checked before work starts (`checks`: the
    gateway's Evaluations, for artifacts and the attack service)."""
    if not spec.attacks:
        raise InvalidArgument("evasion.attacks is empty; give at least one, e.g. {attack: 'fgsm', eps: 0.1}")
    if len(spec.attacks) > MAX_ATTACKS:
        raise InvalidArgument(f"at most {MAX_ATTACKS} attacks per evaluation, got {len(spec.attacks)}")
    resolved = [resolve(a, where=f"evasion.attacks[{i}]") for i, a in enumerate(spec.attacks)]
    if spec.max_samples < 0:
        raise InvalidArgument(f"evasion.max_samples must be >= 0 (0 means all), got {spec.max_samples}")
    checks.require_artifact(model, "model", artifact_pb2.ARTIFACT_KIND_MODEL)
    checks.require_artifact(spec.dataset, "evasion.dataset", artifact_pb2.ARTIFACT_KIND_DATASET)
    info = checks.compatibility(model, spec.dataset, clip_min, clip_max)
    samples = info.dataset.samples if spec.max_samples == 0 else min(spec.max_samples, info.dataset.samples)
    stored = evasion_pb2.EvasionSpec(
        dataset=spec.dataset, attacks=[r.to_proto() for r in resolved], max_samples=spec.max_samples, samples=samples
    )
    return stored, samples * sum(r.cost for r in resolved)


def execute(work: Work, spec: evasion_pb2.EvasionSpec) -> report_pb2.Report:
    row, attack = work.row, work.downstream.attack
    work.stage("locating the model and dataset")
    model_artifact, dataset_artifact = work.artifacts(row.model, spec.dataset)
    model, dataset = work.locations(row.model, spec.dataset)
    work.stage("loading the model and dataset")
    info = work.unary(
        attack.CheckCompatibility,
        attack_service_pb2.CheckCompatibilityRequest(
            model=model, dataset=dataset, clip_min=row.clip_min, clip_max=row.clip_max
        ),
        COMPATIBILITY_TIMEOUT_S,
    )
    specs = list(spec.attacks)
    resolved = [resolve(s) for s in specs]
    header = scoring_service_pb2.ScoreEvasionRequest(
        header=scoring_service_pb2.ScoreEvasionHeader(
            attacks=specs, samples=spec.samples, num_classes=info.model.num_classes
        )
    )
    with work.request_stream(work.downstream.scoring.ScoreEvasion.future, header) as scores:
        for index, (attack_spec, attack_resolved) in enumerate(zip(specs, resolved)):
            work.stage(f"{attack_resolved.label} ({index + 1}/{len(specs)})")
            call = work.track(
                attack.RunEvasion(
                    attack_service_pb2.RunEvasionRequest(
                        model=model,
                        dataset=dataset,
                        attack=attack_spec,
                        clip_min=row.clip_min,
                        clip_max=row.clip_max,
                        start=0,
                        stop=spec.samples,
                        seed=evaluation_seed(row.id),
                    )
                )
            )
            for response in call:
                if not response.HasField("records"):
                    continue
                scores.put(
                    scoring_service_pb2.ScoreEvasionRequest(
                        records=scoring_service_pb2.ScoredRecords(attack_index=index, records=response.records)
                    )
                )
                rows = response.records.labels.shape[0] if response.records.labels.shape else 0
                work.add_progress(rows * attack_resolved.cost)
        work.stage("scoring")
        metrics = scores.result().report
    return report_pb2.Report(model=artifact_ref(model_artifact), dataset=artifact_ref(dataset_artifact), evasion=metrics)
