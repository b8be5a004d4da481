"""Backdoor-poisoning metrics, accumulated batch by batch from per-sample records.

Pure numpy: no protobuf, no gRPC. A poisoning evaluation trains one model per
poison count (count 0 is the clean baseline, trained with the same recipe)
and runs each on the same N test samples twice: on the clean image and on
the image with the trigger stamped. `PoisoningAccumulator` is fed
`PoisoningBatch`es of any model in any order and `finish()` returns plain
dataclasses. Nothing holds a probability matrix: per model it keeps a few
counts, one count per class, and one byte per sample (delivered?) for
duplicate and gap detection; the labels are kept once, 1-4 bytes a sample.

Definitions. Over the N test samples, with true label y, clean probabilities
p and triggered probabilities q of one model (argmax ties go to the lowest
class index), source classes S and target class t (t is never in S):

- clean_accuracy = mean over all N of [argmax p = y].
- clean_accuracy_source = the same over the samples with y in S;
  clean_accuracy_non_source = the same over the samples with y not in S.
  0 when the group has no samples.
- attacked samples A = the samples with y in S and y != t (the same as y in
  S, since t is not in S); attacked_test_samples = |A|.
- successful_samples = #[argmax q = t over A]; attack_success_rate =
  successful_samples / |A|, 0 when A is empty.
- triggered_accuracy_source = mean[argmax q = y] over the samples with y in
  S; triggered_accuracy_non_source = the same over y not in S (0 for an
  empty group); accuracy_gap = triggered_accuracy_non_source -
  triggered_accuracy_source.
- per_class_accuracy[c] = clean accuracy over the samples with y = c, 0 for
  a class without test samples; num_classes entries.
- clean_accuracy_drop = baseline clean_accuracy - this model's clean_accuracy
  (0 for the baseline itself).
- count_at_90_percent_asr = the smallest poison count (> 0) whose
  attack_success_rate >= 0.9 (compared exactly: 10 * successful_samples >=
  9 * |A|); None when no model gets there.

Labels must agree across models (InvalidArgument if not); every model must
deliver every sample exactly once before `finish`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from advex.core.errors import InvalidArgument
from advex.scoring import checks

# The attack_success_rate count_at_90_percent_asr asks for, as a fraction.
ASR_THRESHOLD = (9, 10)


@dataclass(frozen=True)
class PoisoningBatch:
    """Predictions of one model on test samples [first_sample, first_sample + n)."""

    first_sample: int
    labels: np.ndarray  # integer (n,)
    clean_probabilities: np.ndarray  # float (n, classes)
    triggered_probabilities: np.ndarray  # float (n, classes)


@dataclass(frozen=True)
class PoisonedModelMetrics:
    poison_count: int
    poison_fraction: float
    clean_accuracy: float
    clean_accuracy_source: float
    clean_accuracy_non_source: float
    clean_accuracy_drop: float
    attack_success_rate: float
    triggered_accuracy_source: float
    triggered_accuracy_non_source: float
    accuracy_gap: float
    per_class_accuracy: tuple[float, ...]  # indexed by label
    successful_samples: int
    clean_correct_samples: int


@dataclass(frozen=True)
class PoisoningMetrics:
    test_samples: int
    num_classes: int
    source_classes: tuple[int, ...]  # header order
    target_class: int
    # Test samples of the source classes, and of those the attacked ones.
    source_test_samples: int
    attacked_test_samples: int
    baseline: PoisonedModelMetrics
    poisoned: tuple[PoisonedModelMetrics, ...]  # poison_count ascending
    count_at_90_percent_asr: int | None


class _ModelState:
    """Running counts for one model."""

    def __init__(self, index: int, count: int, fraction: float, samples: int, num_classes: int) -> None:
        self.index = index
        self.count = count
        self.fraction = fraction
        self.delivered = np.zeros(samples, dtype=bool)
        self.received = 0
        # Clean-correct samples per true class; every clean figure comes from it.
        self.clean_correct_per_class = np.zeros(num_classes, dtype=np.int64)
        self.triggered_correct_source = 0
        self.triggered_correct_non_source = 0
        self.successful = 0

    @property
    def name(self) -> str:
        if self.count == 0:
            return f"model {self.index} (baseline, poison_count 0)"
        return f"model {self.index} (poison_count {self.count})"


class PoisoningAccumulator:
    """Accumulates the records of every model of one poisoning evaluation.

    `poison_counts` and `poison_fractions` give one model each, in header
    order (exactly one count is 0: the baseline); `add` takes batches in any
    order; `finish` checks every model covered every sample once.
    """

    def __init__(
        self,
        num_classes: int,
        samples: int,
        source_classes: Sequence[int],
        target_class: int,
        poison_counts: Sequence[int],
        poison_fractions: Sequence[float],
        max_samples: int | None = None,
        max_models: int | None = None,
    ) -> None:
        num_classes = checks.header_num_classes(num_classes)
        samples = checks.header_samples(samples, max_samples)
        target_class = int(target_class)
        if not 0 <= target_class < num_classes:
            raise InvalidArgument(
                f"the header's target_class {target_class} is outside 0..{num_classes - 1} "
                f"(num_classes = {num_classes})"
            )
        source = _source_classes(source_classes, target_class, num_classes)
        counts = [int(c) for c in poison_counts]
        fractions = [float(f) for f in poison_fractions]
        _check_models(counts, fractions, max_models)

        self.samples = samples
        self.num_classes = num_classes
        self.source_classes = source
        self.target_class = target_class
        self._models = [
            _ModelState(i, count, fraction, samples, num_classes)
            for i, (count, fraction) in enumerate(zip(counts, fractions, strict=True))
        ]
        self._labels = checks.label_store(samples, num_classes)
        # in_source[c]: class c is a source class; attacked[c]: and is not the target.
        self._in_source = np.zeros(num_classes, dtype=bool)
        self._in_source[list(source)] = True
        self._attacked = self._in_source.copy()
        self._attacked[target_class] = False

    def add(self, model_index: int, batch: PoisoningBatch) -> None:
        """Adds one batch; validates it completely before changing any state."""
        if not 0 <= model_index < len(self._models):
            raise InvalidArgument(
                f"model_index {model_index} is out of range: the header lists "
                f"{len(self._models)} model(s), indices 0..{len(self._models) - 1}"
            )
        state = self._models[model_index]
        where = state.name
        labels = checks.labels(where, batch.labels)
        n = labels.shape[0]
        p = checks.probabilities(where, "clean_probabilities", batch.clean_probabilities, n, self.num_classes)
        q = checks.probabilities(
            where, "triggered_probabilities", batch.triggered_probabilities, n, self.num_classes
        )
        lo = int(batch.first_sample)
        checks.sample_range(where, lo, n, self.samples)
        checks.label_range(where, labels, self.num_classes)
        if n == 0:
            return
        hi = lo + n
        labels = labels.astype(np.int64, copy=False)
        checks.not_delivered_before(where, state.delivered[lo:hi], lo, "model")
        checks.labels_agree(where, self._labels[lo:hi], labels, lo, "model")

        clean_right = p.argmax(axis=1) == labels
        triggered_pred = q.argmax(axis=1)
        triggered_right = triggered_pred == labels
        in_source = self._in_source[labels]

        self._labels[lo:hi] = labels
        state.delivered[lo:hi] = True
        state.received += n
        state.clean_correct_per_class += np.bincount(labels[clean_right], minlength=self.num_classes)
        state.triggered_correct_source += int((triggered_right & in_source).sum())
        state.triggered_correct_non_source += int((triggered_right & ~in_source).sum())
        state.successful += int(((triggered_pred == self.target_class) & self._attacked[labels]).sum())

    def finish(self) -> PoisoningMetrics:
        """The metrics; InvalidArgument if any model is missing samples."""
        for state in self._models:
            checks.all_delivered(state.name, state.received, self.samples, ~state.delivered)

        per_class = np.bincount(self._labels.astype(np.int64), minlength=self.num_classes)
        source_samples = int(per_class[self._in_source].sum())
        non_source_samples = self.samples - source_samples
        attacked_samples = int(per_class[self._attacked].sum())

        def ratio(numerator: int, denominator: int) -> float:
            return numerator / denominator if denominator else 0.0

        baseline_state = next(s for s in self._models if s.count == 0)
        baseline_accuracy = ratio(int(baseline_state.clean_correct_per_class.sum()), self.samples)

        def model_metrics(state: _ModelState) -> PoisonedModelMetrics:
            clean_correct = int(state.clean_correct_per_class.sum())
            clean_correct_source = int(state.clean_correct_per_class[self._in_source].sum())
            clean_accuracy = ratio(clean_correct, self.samples)
            triggered_source = ratio(state.triggered_correct_source, source_samples)
            triggered_non_source = ratio(state.triggered_correct_non_source, non_source_samples)
            return PoisonedModelMetrics(
                poison_count=state.count,
                poison_fraction=state.fraction,
                clean_accuracy=clean_accuracy,
                clean_accuracy_source=ratio(clean_correct_source, source_samples),
                clean_accuracy_non_source=ratio(clean_correct - clean_correct_source, non_source_samples),
                clean_accuracy_drop=0.0 if state is baseline_state else baseline_accuracy - clean_accuracy,
                attack_success_rate=ratio(state.successful, attacked_samples),
                triggered_accuracy_source=triggered_source,
                triggered_accuracy_non_source=triggered_non_source,
                accuracy_gap=triggered_non_source - triggered_source,
                per_class_accuracy=tuple(
                    ratio(int(right), int(total))
                    for right, total in zip(state.clean_correct_per_class, per_class, strict=True)
                ),
                successful_samples=state.successful,
                clean_correct_samples=clean_correct,
            )

        poisoned = tuple(
            model_metrics(s) for s in sorted(self._models, key=lambda s: s.count) if s is not baseline_state
        )
        num, den = ASR_THRESHOLD
        reaching = [
            m.poison_count
            for m in poisoned
            if attacked_samples and den * m.successful_samples >= num * attacked_samples
        ]
        return PoisoningMetrics(
            test_samples=self.samples,
            num_classes=self.num_classes,
            source_classes=self.source_classes,
            target_class=self.target_class,
            source_test_samples=source_samples,
            attacked_test_samples=attacked_samples,
            baseline=model_metrics(baseline_state),
            poisoned=poisoned,
            count_at_90_percent_asr=min(reaching) if reaching else None,
        )


def _source_classes(source_classes: Sequence[int], target_class: int, num_classes: int) -> tuple[int, ...]:
    source = tuple(int(c) for c in source_classes)
    if not source:
        raise InvalidArgument(
            "the header lists no source_classes; give the classes whose test images are attacked "
            "(every class but the target when the request named none)"
        )
    for i, c in enumerate(source):
        if not 0 <= c < num_classes:
            raise InvalidArgument(
                f"source_classes[{i}] = {c} is outside 0..{num_classes - 1} (num_classes = {num_classes})"
            )
        if c == target_class:
            raise InvalidArgument(
                f"source_classes[{i}] = {c} is the target_class; the target cannot be a source class, "
                f"remove it from source_classes"
            )
        if c in source[:i]:
            raise InvalidArgument(f"source_classes[{i}] = {c} repeats an earlier entry; list each class once")
    return source


def _check_models(counts: list[int], fractions: list[float], max_models: int | None) -> None:
    if not counts:
        raise InvalidArgument(
            "the header lists no poison_counts; give one per model, 0 for the clean baseline"
        )
    if max_models is not None and len(counts) > max_models:
        raise InvalidArgument(
            f"the header lists {len(counts)} models, at most {max_models} fit one request; "
            f"split the evaluation into several requests"
        )
    if len(fractions) != len(counts):
        raise InvalidArgument(
            f"the header lists {len(counts)} poison_counts but {len(fractions)} poison_fractions; "
            f"give one fraction per count, in the same order"
        )
    for i, count in enumerate(counts):
        if count < 0:
            raise InvalidArgument(f"poison_counts[{i}] = {count} is negative; counts must be >= 0")
        if count in counts[:i]:
            raise InvalidArgument(
                f"poison_counts[{i}] = {count} repeats poison_counts[{counts.index(count)}]; "
                f"list each count once"
            )
    for i, fraction in enumerate(fractions):
        if not (np.isfinite(fraction) and 0 <= fraction <= 1):
            raise InvalidArgument(f"poison_fractions[{i}] = {fraction} must be between 0 and 1")
    if 0 not in counts:
        raise InvalidArgument(
            "the header lists no clean baseline; exactly one of poison_counts must be 0"
        )
