"""Evasion evaluations at the gateway: what a valid request is, and how one
runs (attack -> shards -> scoring).

Running: re-check compatibility on the attack service, plan the shards (an
attack on a range of samples, shards.py) or find an earlier run's plan,
run each shard not yet DONE as one RunEvasion call and store what it
streamed as a SHARD artifact, then replay every shard in order into one
ScoreEvasion stream. With keep_adversarial, the shards carry the
adversarial images too, and the replay writes one dataset artifact per
attack (adversarial_sets.py). The shard files are removed once the report
is made.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from advex.core import fetch, tensors
from advex.core.attack_specs import check_for_model, resolve
from advex.core.errors import InvalidArgument
from advex.core.npz_writer import NpzWriter
from advex.gateway import jobs, shards
from advex.gateway.adversarial_sets import AdversarialSet
from advex.gateway.work import (
    COMPATIBILITY_TIMEOUT_S,
    STORAGE_TIMEOUT_S,
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
    image_shape = tuple(info.dataset.image_shape)
    shard_samples = shards.aligned(work.ledger.shard_samples, info.model.batch_size)
    planned = work.ledger.plan(shards.plan(len(specs), spec.samples, shard_samples))
    with tempfile.TemporaryDirectory(prefix="advex-evasion-") as scratch:
        _run_shards(work, spec, planned, specs, resolved, seed, model, dataset, image_shape, Path(scratch))
        finished = work.ledger.shards()
        header = scoring_service_pb2.ScoreEvasionRequest(
            header=scoring_service_pb2.ScoreEvasionHeader(
                attacks=specs,
                samples=spec.samples,
                num_classes=info.model.num_classes,
                clip_min=row.clip_min,
                clip_max=row.clip_max,
            )
        )
        # A fixed number of rows per records message, whatever the shards.
        rows = tensors.rows_per_message(_RECORD_ROW_BYTES_FIXED + _RECORD_ROW_BYTES_PER_CLASS * info.model.num_classes)
        kept: list[report_pb2.ArtifactRef] = []
        work.stage("scoring")
        with work.request_stream(work.downstream.scoring.ScoreEvasion.future, header) as scores:
            for index, attack_resolved in enumerate(resolved):
                kept_set = None
                if spec.keep_adversarial:
                    kept_set = AdversarialSet(
                        Path(scratch) / f"adversarial-{index}.npz", spec.samples, image_shape, attack_resolved.targeted
                    )
                try:
                    _replay_attack(
                        work, index, [s for s in finished if s.attack_index == index], rows, image_shape,
                        attack_resolved.targeted, scores, kept_set, Path(scratch),
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
                        work.stage("scoring")
                except BaseException:
                    if kept_set is not None:
                        kept_set.abandon()
                    raise
            scored = scores.result()
            metrics = scored.report
            if scored.HasField("outcomes"):
                work.stage("storing the per-sample outcomes")
                stored = _store_outcomes(work, scored.outcomes, Path(scratch) / "outcomes.npz")
                if stored is not None:
                    metrics.outcomes.CopyFrom(stored)
    work.stage("removing the finished shards")
    work.optional("removal of the shard files", lambda: _remove_shards(work, finished))
    work.page.evasion_figures = scored.figures
    work.page.class_names = list(dataset_artifact.dataset.class_names)
    for result, ref in zip(metrics.attacks, kept):
        result.adversarial_dataset.CopyFrom(ref)
    metrics.seed = seed
    return report_pb2.Report(model=artifact_ref(model_artifact), dataset=artifact_ref(dataset_artifact), evasion=metrics)


# An EvasionRecords row: int64 label and target, three float32 norms, and
# two float32 probabilities per class.
_RECORD_ROW_BYTES_FIXED = 2 * 8 + 3 * 4
_RECORD_ROW_BYTES_PER_CLASS = 2 * 4


def _run_shards(work, spec, planned, specs, resolved, seed, model, dataset, image_shape, scratch: Path) -> None:
    """Runs every shard not DONE yet, storing each as it finishes."""
    done = [s for s in planned if s.state == jobs.DONE]
    for shard in done:
        work.add_progress((shard.stop_sample - shard.first_sample) * resolved[shard.attack_index].cost)
    for shard in planned:
        if shard.state == jobs.DONE:
            continue
        index, attack_resolved = shard.attack_index, resolved[shard.attack_index]
        work.stage(
            f"{attack_resolved.label} ({index + 1}/{len(specs)}), samples {shard.first_sample}-{shard.stop_sample - 1}"
            + (f" (resumed: {len(done)} of {len(planned)} shards were done)" if done else "")
        )
        writer = shards.ShardWriter(
            scratch / f"shard-{shard.shard_index}.npz", shard.first_sample, shard.stop_sample,
            image_shape if spec.keep_adversarial else None,
        )
        try:
            versions = _run_shard(work, seed, specs[index], attack_resolved, model, dataset, shard, writer)
            path = writer.finish()
        except BaseException:
            writer.abandon()
            raise
        artifact = work.store_file(
            path, artifact_pb2.ARTIFACT_KIND_SHARD, f"shard {shard.shard_index} of evaluations/{work.row.id}"
        )
        path.unlink()
        work.ledger.finish(work.run, shard, artifact, versions)


def _replay_attack(work, index, attack_shards, rows, image_shape, targeted, scores, kept_set, scratch: Path) -> None:
    """One attack's shards, in order, into the scoring stream (and the kept
    adversarial set)."""
    replay = shards.Replay(index, rows, image_shape, targeted)

    def send(messages) -> None:
        for message in messages:
            scores.put(message)
            if kept_set is not None and message.HasField("records"):
                kept_set.add_records(message.records.records)

    for shard in attack_shards:
        arrays = _load_shard(work, shard, scratch)
        work.page.add_versions(json.loads(shard.versions or "{}"))
        send(replay.add(arrays))
        if kept_set is not None:
            for chunk in tensors.to_chunks(arrays["adversarial_images"], shard.first_sample):
                kept_set.add_images(chunk)
    send(replay.finish())


def _load_shard(work: Work, shard: jobs.ShardRow, scratch: Path) -> dict[str, np.ndarray]:
    location = work.locations(shard.artifact)[0]
    path = fetch.fetch_to(
        fetch.Location(location.url, location.sha256, location.size_bytes), scratch / f"replay-{shard.shard_index}.npz",
        what=f"shard {shard.shard_index}", max_bytes=max(1, shard.size_bytes or location.size_bytes),
    )
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    finally:
        path.unlink(missing_ok=True)


def _remove_shards(work: Work, finished: list[jobs.ShardRow]) -> None:
    """The shard files are scaffolding: gone once the report is made."""
    for shard in finished:
        if shard.artifact:
            work.unary(
                work.downstream.storage.DeleteArtifact,
                artifact_pb2.DeleteArtifactRequest(name=shard.artifact),
                STORAGE_TIMEOUT_S,
            )
    work.ledger.drop()


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


def _run_shard(work: Work, seed, attack_spec, attack_resolved, model, dataset, shard, writer) -> str:
    """One RunEvasion call on the shard's range, its stream into `writer`;
    the attack engine's versions (as JSON)."""
    call = work.track(
        work.downstream.attack.RunEvasion(
            attack_service_pb2.RunEvasionRequest(
                model=model,
                dataset=dataset,
                attack=attack_spec,
                clip_min=work.row.clip_min,
                clip_max=work.row.clip_max,
                start=shard.first_sample,
                stop=shard.stop_sample,
                seed=seed,
                include_adversarial_images=writer.keeps_images,
            )
        )
    )
    versions = "{}"
    for response in call:
        if response.HasField("adversarial_images"):
            writer.add_images(response.adversarial_images)
        elif response.HasField("engine"):
            versions = shards.versions_json(response.engine.versions)
        elif response.HasField("examples"):
            writer.add_examples(response.examples)
        elif response.HasField("records"):
            writer.add_records(response.records)
            rows = response.records.labels.shape[0] if response.records.labels.shape else 0
            work.add_progress(rows * attack_resolved.cost)
    return versions
