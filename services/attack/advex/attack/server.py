"""gRPC adapter of the attack service: protos in, domain calls, protos out.

RunEvasion stream order, per engine batch of samples [b, b + n):
  1. `records` messages covering [b, b + n) in order, each at most
     max_message_bytes when serialized;
  2. when include_adversarial_images, the batch's images (float32,
     (n, *image_shape)) as `adversarial_images` TensorChunks with
     first_sample = b, each message at most max_message_bytes.
Batches follow each other in sample order, so a receiver always has a
batch's records before its images.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from advex.attack import backend, datasets, engine, models, monitoring, poisoning, training, triggers
from advex.attack.config import AttackConfig
from advex.core import attack_specs, fetch, object_routes, poison_specs, tensors
from advex.core.errors import FailedPrecondition, InvalidArgument
from advex.core.presigned import file_digest, put_file
from advex.core.serving import Registration, RunningServer, run_service, start_server
from advex.internal.v1 import attack_service_pb2, attack_service_pb2_grpc, records_pb2
from advex.v1 import poisoning_pb2

log = logging.getLogger(__name__)

# Image chunks leave 4 KiB of each message for framing (advex.core.tensors),
# so a smaller bound would leave no room for data.
MIN_MESSAGE_BYTES = 8192
MAX_BATCH_SIZE = 65536
# Opened datasets kept (each holds its labels and an open file).
DATASET_CACHE_SIZE = 16
# (model, dataset) pairs whose clean logits are kept for the next attack of
# an evaluation, and the most kept per pair: 64 MiB is 1.6 million samples
# of 10 classes.
CLEAN_LOGITS_PAIRS = 4
CLEAN_LOGITS_BYTES = 64 * 2**20

_LOGITS_SOURCE = {
    models.NATIVE: attack_service_pb2.LOGITS_SOURCE_NATIVE,
    models.STRIPPED_SOFTMAX: attack_service_pb2.LOGITS_SOURCE_STRIPPED_SOFTMAX,
    models.LOG_PROBABILITIES: attack_service_pb2.LOGITS_SOURCE_LOG_PROBABILITIES,
}


class Progress:
    """Thread-safe counters of work done, for logs, metrics and tests."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.passes = 0  # forward+backward passes over a batch
        self.evasions_finished = 0  # RunEvasion calls that ended, however

    def add_passes(self, n: int) -> None:
        with self._changed:
            self.passes += n
            self._changed.notify_all()

    def evasion_finished(self) -> None:
        with self._changed:
            self.evasions_finished += 1
            self._changed.notify_all()

    def wait_for(self, predicate, timeout: float) -> bool:
        """Waits until predicate(self) is true; False if `timeout` s passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)


class AttackServicer(attack_service_pb2_grpc.AttackServiceServicer):
    def __init__(self, config: AttackConfig) -> None:
        self._config = config
        self._models = models.DigestCache(config.model_cache_size)
        self._datasets = models.DigestCache(DATASET_CACHE_SIZE)
        self._clean_logits = models.DigestCache(CLEAN_LOGITS_PAIRS)
        self._limits = models.ModelLimits(
            max_input_elements=config.max_input_elements,
            max_activation_elements=config.max_activation_elements,
            max_parameters=config.max_parameters,
        )
        self.progress = Progress()

    def _fetch(self, location, what: str, suffix: str):
        plain = fetch.Location(location.url, location.sha256, location.size_bytes)
        path = fetch.fetch(
            plain, self._config.cache_dir, suffix=suffix, what=what, max_bytes=self._config.max_download_bytes
        )
        return plain.sha256.strip().lower(), path

    def _model(self, location) -> models.LoadedModel:
        if not location.url:
            raise InvalidArgument("model is required: pass its presigned GET URL, sha256 and size_bytes")
        sha, path = self._fetch(location, "model", ".keras")
        return self._models.get(sha, lambda: models.load_model(path, self._limits))

    def _batch_size(self, model: models.LoadedModel) -> int:
        """ADVEX_ATTACK_BATCH_SIZE, or one chosen for the model and memory."""
        return self._config.batch_size or engine.auto_batch_size(model.summary, self._config.attack_memory_bytes)

    def _dataset(self, location, what: str = "dataset") -> datasets.Dataset:
        if not location.url:
            raise InvalidArgument(f"{what} is required: pass its presigned GET URL, sha256 and size_bytes")
        sha, path = self._fetch(location, what, ".npz")
        # Opening is cheap (no image is kept) but checks every value once: keep
        # the opened datasets, as the models.
        return self._datasets.get(sha, lambda: datasets.load_dataset(path, self._config.max_dataset_bytes))

    def InspectModel(self, request, context):
        model = self._model(request.model)
        return attack_service_pb2.InspectModelResponse(model=_model_info(model.summary, self._batch_size(model)))

    def CheckCompatibility(self, request, context):
        attack_specs.check_clip_range(request.clip_min, request.clip_max)
        model = self._model(request.model)
        dataset = self._dataset(request.dataset)
        datasets.check_compatible(model.summary, dataset, request.clip_min, request.clip_max)
        return attack_service_pb2.CheckCompatibilityResponse(
            model=_model_info(model.summary, self._batch_size(model)), dataset=_dataset_info(dataset)
        )

    def _poisoning(self, inputs) -> "_PoisoningJob":
        """Everything a poisoning request reads, loaded and checked: what
        CheckPoisoning answers with, before any training."""
        resolved = poison_specs.resolve(inputs.spec, inputs.clip_min, inputs.clip_max)
        model = self._model(inputs.model)
        train = self._dataset(inputs.training_dataset, "training_dataset")
        test = self._dataset(inputs.test_dataset, "test_dataset")
        for dataset in (train, test):
            datasets.check_compatible(model.summary, dataset, inputs.clip_min, inputs.clip_max)
        plan = poisoning.plan(resolved, train, test, model.summary.num_classes)
        trigger = None
        if resolved.trigger is not None:
            pattern = mask = None
            if resolved.trigger.pattern:
                if not inputs.pattern.url:
                    raise InvalidArgument("pattern is required: the trigger names a pattern artifact")
                _, path = self._fetch(inputs.pattern, "pattern", ".npz")
                pattern, mask = triggers.load_pattern(path, self._config.max_dataset_bytes)
            trigger = triggers.make_trigger(
                resolved.trigger, train.image_shape, inputs.clip_min, inputs.clip_max, pattern, mask
            )
        return _PoisoningJob(resolved, model, train, test, plan, trigger, inputs.clip_min, inputs.clip_max)

    def CheckPoisoning(self, request, context):
        job = self._poisoning(request.inputs)
        return attack_service_pb2.CheckPoisoningResponse(
            model=_model_info(job.model.summary, self._batch_size(job.model)),
            training_dataset=_dataset_info(job.train),
            test_dataset=_dataset_info(job.test),
            source_classes=list(job.plan.sources),
            pool_samples=len(job.plan.pool),
            counts=list(job.plan.counts),
            steps_per_model=job.resolved.recipe.steps_per_model(job.train.samples),
            attacked_test_samples=len(job.plan.attacked_test),
        )

    def _poisoned(self, job: "_PoisoningJob", count: int, should_stop) -> poisoning.PoisonedData:
        if count != 0 and count not in job.plan.counts:
            raise InvalidArgument(
                f"poison_count {count} is not one of the counts this spec trains "
                f"({', '.join(map(str, job.plan.counts))}), nor 0 (the clean baseline)"
            )
        perturb = None
        if job.resolved.perturbation is not None:
            perturb = poisoning.perturbation_fn(
                job.model, job.resolved.perturbation, job.clip_min, job.clip_max, job.resolved.seed, should_stop
            )
        return poisoning.poison(job.train, job.plan, job.resolved, count, job.trigger, job.resolved.seed, perturb)

    def RunPoisoning(self, request_iterator, context):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("item") != "unit":
            raise InvalidArgument("the first message of RunPoisoning must be a unit (inputs, poison_count)")
        unit = first.unit
        max_bytes = _message_bound(unit.max_message_bytes)
        job = self._poisoning(unit.inputs)
        should_stop = lambda: not context.is_active()  # noqa: E731
        data = self._poisoned(job, unit.poison_count, should_stop)
        log.info("training %s with %d poisoned image(s)", job.resolved.kind, unit.poison_count)
        yield attack_service_pb2.RunPoisoningResponse(engine=attack_service_pb2.EngineInfo(versions=backend.versions()))
        Path(self._config.cache_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._config.cache_dir, prefix=".poisoning-") as scratch:
            if unit.poison_count > 0:
                path = poisoning.write_npz(Path(scratch) / "poisoned.npz", data)
                yield from _hand_over(path, attack_service_pb2.PRODUCT_KIND_POISONED_DATASET, request_iterator)
            trained = None
            last_sent = 0.0
            for event in training.iter_training(
                job.model, data.x, data.y, job.resolved.recipe, job.resolved.seed, should_stop
            ):
                if isinstance(event, training.TrainedModel):
                    trained = event
                # A message per step would swamp a large dataset's stream;
                # epoch ends always go, steps at most every quarter second.
                elif event.epoch_end or time.monotonic() - last_sent >= 0.25:
                    if event.epoch_end:
                        monitoring.TRAINING_EPOCHS.labels(job.resolved.kind).inc()
                    last_sent = time.monotonic()
                    yield attack_service_pb2.RunPoisoningResponse(progress=_progress(event))
            path = training.save_model(trained, Path(scratch))
            yield from _hand_over(path, attack_service_pb2.PRODUCT_KIND_MODEL, request_iterator)
            yield attack_service_pb2.RunPoisoningResponse(
                summary=attack_service_pb2.TrainingSummary(
                    training_seconds=trained.training_seconds,
                    final_loss=trained.final_loss,
                    final_accuracy=trained.final_accuracy,
                )
            )
            # Measured through the stored file, loaded the way every model is.
            measured = models.load_model(path, self._limits)
        row_bytes = 8 + 2 * 4 * measured.summary.num_classes
        rows = tensors.rows_per_message(row_bytes, max_bytes)
        picker = engine.ExamplePicker(job.test.image_shape)
        for batch in poisoning.measure(
            measured, job.test, job.trigger, self._batch_size(measured), should_stop,
            examples=picker, sources=job.plan.sources, target=job.plan.target,
        ):
            for lo in range(0, batch.n, rows):
                yield attack_service_pb2.RunPoisoningResponse(
                    records=records_pb2.PoisoningRecords(
                        first_sample=batch.first_sample + lo,
                        labels=tensors.to_proto(batch.labels[lo : lo + rows]),
                        clean_probabilities=tensors.to_proto(batch.clean_probs[lo : lo + rows]),
                        triggered_probabilities=tensors.to_proto(batch.triggered_probs[lo : lo + rows]),
                    )
                )
        examples = _examples_message(picker, max_bytes)
        if examples is not None:
            yield attack_service_pb2.RunPoisoningResponse(examples=examples)

    def StreamPoisonedData(self, request, context):
        max_bytes = _message_bound(request.max_message_bytes)
        job = self._poisoning(request.inputs)
        data = self._poisoned(job, request.poison_count, lambda: not context.is_active())
        image_bytes = 4 * int(np.prod(job.train.image_shape))
        # Each batch's samples message and image chunks stay under max_bytes.
        rows = tensors.rows_per_message(max(3 * 8 + 1, image_bytes), max_bytes)
        for first in range(0, len(data.y), rows):
            last = first + rows
            yield attack_service_pb2.StreamPoisonedDataResponse(
                piece=poisoning_pb2.PoisonedDataPiece(
                    samples=poisoning_pb2.PoisonedSamples(
                        first_sample=first,
                        labels=tensors.to_proto(data.y[first:last]),
                        original_labels=tensors.to_proto(data.original_y[first:last]),
                        poisoned=tensors.to_proto(data.poisoned[first:last]),
                    )
                )
            )
            for chunk in tensors.to_chunks(data.x[first:last], first, max_bytes):
                yield attack_service_pb2.StreamPoisonedDataResponse(piece=poisoning_pb2.PoisonedDataPiece(images=chunk))

    def RunEvasion(self, request, context):
        try:
            yield from self._run_evasion(request, context)
        finally:
            self.progress.evasion_finished()

    def _run_evasion(self, request, context):
        # Everything that needs no download is checked first.
        attack = attack_specs.resolve(request.attack)
        attack_specs.check_clip_range(request.clip_min, request.clip_max)
        if not 0 <= request.batch_size <= MAX_BATCH_SIZE:
            raise InvalidArgument(
                f"batch_size must be between 1 and {MAX_BATCH_SIZE} (0: the server's default), got {request.batch_size}"
            )
        max_bytes = _message_bound(request.max_message_bytes)
        if request.start < 0 or request.stop < 0:
            raise InvalidArgument(f"start and stop must be >= 0, got start={request.start} stop={request.stop}")

        model = self._model(request.model)
        dataset = self._dataset(request.dataset)
        datasets.check_compatible(model.summary, dataset, request.clip_min, request.clip_max)
        attack_specs.check_for_model(attack, model.summary.num_classes)
        start, stop = datasets.resolve_range(dataset, request.start, request.stop)
        batch_size = request.batch_size or self._batch_size(model)
        log.info("evasion %s on samples [%d, %d), batch %d", attack.label, start, stop, batch_size)

        # labels and targets int64 + two probability rows + three float32 norms.
        row_bytes = 2 * 8 + 2 * 4 * model.summary.num_classes + 3 * 4
        rows = tensors.rows_per_message(row_bytes, max_bytes)
        picker = engine.ExamplePicker(dataset.image_shape)
        batches = engine.run_evasion(
            model,
            dataset,
            attack,
            request.clip_min,
            request.clip_max,
            start,
            stop,
            batch_size,
            request.seed,
            request.include_adversarial_images,
            should_stop=lambda: not context.is_active(),
            on_passes=self.progress.add_passes,
            clean=self._clean_logits.get(
                f"{request.model.sha256}/{request.dataset.sha256}", lambda: engine.CleanLogits(CLEAN_LOGITS_BYTES)
            ),
            examples=picker,
        )
        yield attack_service_pb2.RunEvasionResponse(engine=attack_service_pb2.EngineInfo(versions=backend.versions()))
        attacked = monitoring.SAMPLES_ATTACKED.labels(attack.attack, attack.norm)
        for batch in _memory_guarded(batches, batch_size):
            for offset in range(0, batch.n, rows):
                yield attack_service_pb2.RunEvasionResponse(records=_records(batch, offset, offset + rows))
            if batch.adversarial is not None:
                for chunk in tensors.to_chunks(batch.adversarial, batch.first_sample, max_bytes):
                    yield attack_service_pb2.RunEvasionResponse(adversarial_images=chunk)
            attacked.inc(batch.n)
        examples = _examples_message(picker, max_bytes)
        if examples is not None:
            yield attack_service_pb2.RunEvasionResponse(examples=examples)


@dataclass(frozen=True)
class _PoisoningJob:
    resolved: poison_specs.ResolvedPoisoning
    model: models.LoadedModel
    train: datasets.Dataset
    test: datasets.Dataset
    plan: poisoning.PoisoningPlan
    trigger: triggers.Trigger | None
    clip_min: float
    clip_max: float


def _message_bound(requested: int) -> int:
    max_bytes = requested or tensors.MAX_MESSAGE_BYTES
    if not MIN_MESSAGE_BYTES <= max_bytes <= tensors.MAX_MESSAGE_BYTES:
        raise InvalidArgument(
            f"max_message_bytes must be between {MIN_MESSAGE_BYTES} and {tensors.MAX_MESSAGE_BYTES} "
            f"(0: {tensors.MAX_MESSAGE_BYTES}), got {max_bytes}"
        )
    return max_bytes


def _hand_over(path: Path, kind: int, request_iterator):
    """Announces a made file, PUTs it to the upload ticket the caller sends
    back, and says so: the caller then has storage verify it."""
    size, sha256 = file_digest(path)
    yield attack_service_pb2.RunPoisoningResponse(
        product=attack_service_pb2.Product(kind=kind, size_bytes=size, sha256=sha256)
    )
    answer = next(request_iterator, None)
    if answer is None or answer.WhichOneof("item") != "upload":
        raise FailedPrecondition("send an upload ticket (a presigned PUT URL) for each product announced")
    put_file(path, answer.upload.url, answer.upload.method, answer.upload.headers)
    yield attack_service_pb2.RunPoisoningResponse(stored=attack_service_pb2.ProductStored(kind=kind))


def _progress(event: "training.TrainingProgress") -> attack_service_pb2.TrainingProgress:
    return attack_service_pb2.TrainingProgress(
        steps_done=event.steps_done,
        steps_total=event.steps_total,
        epoch=event.epoch,
        epochs=event.epochs,
        loss=event.loss,
        accuracy=event.accuracy,
        epoch_end=event.epoch_end,
    )


def _examples_message(picker: engine.ExamplePicker, max_bytes: int) -> records_pb2.EvasionExamples | None:
    """What the picker kept, as many as fit one message of max_bytes (a
    small bound may leave none)."""
    picked = picker.examples()
    if picked is None:
        return None
    picked_rows, clean, adversarial = picked
    fit = (max_bytes - 4096) // max(1, clean[0].nbytes + adversarial[0].nbytes)
    if fit <= 0:
        return None
    samples, labels, clean_pred, adv_pred = zip(*picked_rows[:fit], strict=True)
    return records_pb2.EvasionExamples(
        samples=samples, clean=tensors.to_proto(clean[:fit]), adversarial=tensors.to_proto(adversarial[:fit]),
        labels=labels, clean_predictions=clean_pred, adversarial_predictions=adv_pred,
    )


def _memory_guarded(batches, batch_size: int):
    """`batches`, with running out of memory a ResourceExhausted that says what to lower."""
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            if not backend.is_out_of_memory(exc):
                raise
            raise models.out_of_memory(
                f"a batch of {batch_size} samples on this model",
                "pass a smaller batch_size, or use smaller images or a smaller model",
            ) from None
        yield batch


def _records(batch: engine.EvasionBatch, lo: int, hi: int) -> records_pb2.EvasionRecords:
    return records_pb2.EvasionRecords(
        first_sample=batch.first_sample + lo,
        labels=tensors.to_proto(batch.labels[lo:hi].astype(np.int64)),
        clean_probabilities=tensors.to_proto(batch.clean_probs[lo:hi]),
        adversarial_probabilities=tensors.to_proto(batch.adv_probs[lo:hi]),
        perturbation_linf=tensors.to_proto(batch.linf[lo:hi]),
        perturbation_l2=tensors.to_proto(batch.l2[lo:hi]),
        perturbation_l0=tensors.to_proto(batch.l0[lo:hi]),
        targets=None if batch.targets is None else tensors.to_proto(batch.targets[lo:hi]),
    )


def _model_info(summary: models.ModelSummary, batch_size: int) -> attack_service_pb2.ModelInfo:
    return attack_service_pb2.ModelInfo(
        # A free (None) dimension travels as -1.
        input_shape=[-1 if d is None else d for d in summary.input_shape],
        num_classes=summary.num_classes,
        outputs_probabilities=summary.outputs_probabilities,
        logits_source=_LOGITS_SOURCE[summary.logits_source],
        parameter_count=summary.parameter_count,
        batch_size=batch_size,
    )


def _dataset_info(dataset: datasets.Dataset) -> attack_service_pb2.DatasetInfo:
    return attack_service_pb2.DatasetInfo(
        samples=dataset.samples,
        image_shape=list(dataset.image_shape),
        dtype=dataset.source_dtype,
        min_value=dataset.min_value,
        max_value=dataset.max_value,
        min_label=dataset.min_label,
        max_label=dataset.max_label,
    )


def create_server(
    address: str, config: AttackConfig, servicer: AttackServicer | None = None
) -> tuple[RunningServer, int]:
    """Starts the attack service on `address` (port 0: a free one).

    Pass `servicer` to keep a handle on it (tests watch its `progress`).
    Refuses to start on a Keras backend the engine does not run on
    (ValueError) or a Keras whose safe_mode can be bypassed (RuntimeError).
    """
    backend.check_backend()
    models.require_safe_keras()
    object_routes.route(config.s3_public_endpoint, config.s3_endpoint)
    servicer = servicer or AttackServicer(config)
    running = start_server(
        address,
        [
            Registration(
                "advex.internal.v1.AttackService",
                lambda server: attack_service_pb2_grpc.add_AttackServiceServicer_to_server(servicer, server),
            )
        ],
    )
    return running, running.port


def main() -> None:
    # TensorFlow's C++ start-up chatter drowns the service's own log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    run_service(
        "attack", AttackConfig.from_env, create_server,
        lambda config: f"Keras backend {backend.name()}, cache {config.cache_dir}",
    )
