"""Evasion evaluations at the gateway: what a valid request is, and how one
runs (attack -> scoring).

Running: re-check compatibility on the attack service, then for each attack
stream RunEvasion's per-sample records straight into one ScoreEvasion
stream. Nothing per-sample is kept here; the records pass through. With
keep_adversarial, the adversarial images stream by too and are written to
one dataset artifact per attack (adversarial_sets.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from advex.core.attack_specs import check_for_model, resolve
from advex.core.errors import InvalidArgument
from advex.core.npz_writer import NpzWriter
from advex.gateway.adversarial_sets import AdversarialSet
from advex.gateway.work import (
    COMPATIBILITY_TIMEOUT_S,
    Work,
    artifact_ref,
    describe_inputs,
    evaluation_seed,
)
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
    dataset = checks.require_artifact(spec.dataset, "evasion.dataset", artifact_pb2.ARTIFACT_KIND_DATASET)
    info = checks.compatibility(model, dataset, clip_min, clip_max)
    for i, r in enumerate(resolved):
        check_for_model(r, info.model.num_classes, where=f"evasion.attacks[{i}]")
    samples = info.dataset.samples if spec.max_samples == 0 else min(spec.max_samples, info.dataset.samples)
    stored = evasion_pb2.EvasionSpec(
        dataset=spec.dataset,
        attacks=[r.to_proto() for r in resolved],
        max_samples=spec.max_samples,
        samples=samples,
        keep_adversarial=spec.keep_adversarial,
        seed=spec.seed if spec.HasField("seed") else None,
    )
    return stored, samples * sum(r.cost for r in resolved)


def execute(work: Work, spec: evasion_pb2.EvasionSpec) -> report_pb2.Report:
    row, attack = work.row, work.downstream.attack
    work.stage("locating the model and dataset")
    model_artifact, dataset_artifact = work.artifacts(row.model, spec.dataset)
    model, dataset = work.locations(row.model, spec.dataset)
    work.stage("loading the model and dataset")
    info = describe_inputs(
        lambda method, request: work.unary(method, request, COMPATIBILITY_TIMEOUT_S),
        attack, model, dataset, dataset_artifact.dataset, row.clip_min, row.clip_max,
    )
    specs = list(spec.attacks)
    resolved = [resolve(s) for s in specs]
    seed = spec.seed if spec.HasField("seed") else evaluation_seed(row.id)
    header = scoring_service_pb2.ScoreEvasionRequest(
        header=scoring_service_pb2.ScoreEvasionHeader(
            attacks=specs,
            samples=spec.samples,
            num_classes=info.model.num_classes,
            clip_min=row.clip_min,
            clip_max=row.clip_max,
        )
    )
    kept: list[report_pb2.ArtifactRef] = []
    with tempfile.TemporaryDirectory(prefix="advex-adversarial-") as scratch:
        with work.request_stream(work.downstream.scoring.ScoreEvasion.future, header) as scores:
            for index, (attack_spec, attack_resolved) in enumerate(zip(specs, resolved)):
                work.stage(f"{attack_resolved.label} ({index + 1}/{len(specs)})")
                kept_set = None
                if spec.keep_adversarial:
                    kept_set = AdversarialSet(
                        Path(scratch) / f"adversarial-{index}.npz",
                        spec.samples,
                        tuple(info.dataset.image_shape),
                        attack_resolved.targeted,
                    )
                try:
                    _run_attack(
                        work, spec, seed, index, attack_spec, attack_resolved, model, dataset, scores, kept_set
                    )
                    if kept_set is not None:
                        work.stage(f"storing the adversarial examples of {attack_resolved.label}")
                        path = kept_set.finish()
                        artifact = work.store_file(
                            path,
                            artifact_pb2.ARTIFACT_KIND_DATASET,
                            f"adversarial examples, {attack_resolved.label}, evaluations/{row.id}",
                        )
                        path.unlink()
                        kept.append(artifact_ref(artifact))
                except BaseException:
                    if kept_set is not None:
                        kept_set.abandon()
                    raise
            work.stage("scoring")
            scored = scores.result()
            metrics = scored.report
            if scored.HasField("outcomes"):
                work.stage("storing the per-sample outcomes")
                stored = _store_outcomes(work, scored.outcomes, Path(scratch) / "outcomes.npz")
                if stored is not None:
                    metrics.outcomes.CopyFrom(stored)
    work.page.evasion_figures = scored.figures
    work.page.class_names = list(dataset_artifact.dataset.class_names)
    for result, ref in zip(metrics.attacks, kept):
        result.adversarial_dataset.CopyFrom(ref)
    metrics.seed = seed
    return report_pb2.Report(model=artifact_ref(model_artifact), dataset=artifact_ref(dataset_artifact), evasion=metrics)


def _store_outcomes(work: Work, outcomes, path: Path) -> report_pb2.ArtifactRef | None:
    """Scoring's per-sample outcomes as an OUTCOMES artifact (an npz of
    packed bits, which `advex compare` reads for its paired test); None,
    logged, when that fails: the evaluation's numbers stand without them."""
    width = (outcomes.samples + 7) // 8

    def make() -> report_pb2.ArtifactRef:
        with NpzWriter(path) as npz:
            npz.add("samples", np.array(outcomes.samples, dtype=np.int64))
            npz.add("clean_correct", np.frombuffer(outcomes.clean_correct, dtype=np.uint8))
            npz.add("adversarial_correct", np.frombuffer(b"".join(outcomes.adversarial_correct), dtype=np.uint8)
                    .reshape(len(outcomes.adversarial_correct), width))
        return artifact_ref(work.store_file(
            path, artifact_pb2.ARTIFACT_KIND_OUTCOMES, f"per-sample outcomes, evaluations/{work.row.id}"
        ))

    try:
        return work.optional("per-sample outcomes", make)
    finally:
        path.unlink(missing_ok=True)


def _run_attack(work: Work, spec, seed, index, attack_spec, attack_resolved, model, dataset, scores, kept_set) -> None:
    """One RunEvasion call: its records into the scoring stream, its images
    (when kept) into the attack's adversarial set."""
    call = work.track(
        work.downstream.attack.RunEvasion(
            attack_service_pb2.RunEvasionRequest(
                model=model,
                dataset=dataset,
                attack=attack_spec,
                clip_min=work.row.clip_min,
                clip_max=work.row.clip_max,
                start=0,
                stop=spec.samples,
                seed=seed,
                include_adversarial_images=kept_set is not None,
            )
        )
    )
    for response in call:
        if response.HasField("adversarial_images"):
            if kept_set is not None:
                kept_set.add_images(response.adversarial_images)
            continue
        if response.HasField("engine"):
            work.page.add_versions(response.engine.versions)
            continue
        if response.HasField("examples"):
            scores.put(
                scoring_service_pb2.ScoreEvasionRequest(
                    examples=scoring_service_pb2.ScoredExamples(attack_index=index, examples=response.examples)
                )
            )
            continue
        if not response.HasField("records"):
            continue
        scores.put(
            scoring_service_pb2.ScoreEvasionRequest(
                records=scoring_service_pb2.ScoredRecords(attack_index=index, records=response.records)
            )
        )
        if kept_set is not None:
            kept_set.add_records(response.records)
        rows = response.records.labels.shape[0] if response.records.labels.shape else 0
        work.add_progress(rows * attack_resolved.cost)
