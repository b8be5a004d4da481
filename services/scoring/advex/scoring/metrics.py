"""Evasion metrics, accumulated batch by batch from per-sample records.

Pure numpy: no protobuf, no gRPC. `EvasionAccumulator` is fed `RecordBatch`es
of any attack in any order and `finish()` returns plain dataclasses. Nothing
holds a whole probability matrix: per attack it keeps running sums and counts,
one byte per sample (delivered? right after the attack?) for duplicate
detection and worst-case accuracy, and the perturbation norms of successful
samples only (medians need them), which go to a temporary file once they
pass SPILL_VALUES, so memory stays bounded with many attacks over a million
samples: finish() reads back one attack's norms at a time.

Definitions. One attack is one AttackSpec: one attack at one budget (norm,
eps). Over the N samples, with true label y, clean probabilities p and
adversarial probabilities q (argmax ties go to the lowest class index):

- clean_accuracy = mean[argmax p = y]. Report-level. Every attack streams its
  own clean probabilities of the same samples, so the report's clean metrics
  (clean_accuracy, mean_confidence_clean, mean_true_class_probability_clean)
  are taken from the first attack of the header; each attack's own clean
  predictions feed its attack_success_rate. Both agree unless the model is
  nondeterministic. Labels must agree across attacks (InvalidArgument if not).
- adversarial_accuracy = mean[argmax q = y].
- clean_correct_samples = #[argmax p = y].
- Untargeted: attacked_samples = clean_correct_samples; successful_samples =
  #[argmax p = y and argmax q != y]. Targeted (per-sample target t):
  attacked_samples = #[argmax p = y and y != t]; successful_samples = #[argmax
  p = y and y != t and argmax q = t].
- attack_success_rate = successful_samples / attacked_samples; 0 when no
  sample is attacked (attacked_samples = 0 tells the reader).
- mean_confidence_clean = mean max(p); mean_confidence_adversarial = mean
  max(q); mean_true_class_probability_clean = mean p[y];
  mean_true_class_probability_adversarial = mean q[y]. All over N samples.
- perturbation_{linf,l2,l0}_{mean,median}: mean and median of the norms of
  x' - x over the successful samples only; 0 when there are none
  (successful_samples = 0 tells the reader). The median of an even count is
  the mean of the two middle values.
- robustness_score (per attack) = min(1, adversarial_accuracy /
  clean_accuracy), with the report-level clean_accuracy; 0 when
  clean_accuracy = 0. Clipped because an attack can, rarely, fix samples
  the model got wrong.
- An attack without a budget (cw without eps) is in no worst_case group and
  on no curve: it has no eps to be compared at.
- worst_case, per budget = per (norm, eps) group of attacks: the fraction of
  samples that are right (argmax q = y) under EVERY attack of the group
  (AutoAttack-style). `attacks` names the group's attacks in header order,
  each name once ("apgd", or "apgd target=most_likely" for a targeted
  one). Sorted by norm ("2" before "inf"), then eps.
- report robustness_score = mean over budgets of min(1, worst_case accuracy
  / clean_accuracy); 0 when clean_accuracy = 0, and when no attack has a
  budget (worst_case is empty).
- curves: one per (attack name, norm, target mode), in header order of first
  appearance:
  points (eps, adversarial_accuracy) sorted by eps. When several attacks of
  the same name and norm share an eps (e.g. PGD with different step counts),
  the point takes the lowest adversarial accuracy: the strongest evaluated
  attack at that budget. eps_at_half_clean_accuracy = the smallest
  evaluated eps whose adversarial accuracy < clean_accuracy / 2 (strictly);
  None when no evaluated eps gets there.
- warnings: the gradient-masking checks of masking.py.

Figures (what the HTML report draws; `AttackFigures`, not in the JSON
report): per attack, histograms of the top-class probability max(p) and
max(q) in CONFIDENCE_BINS equal bins of [0, 1] (1.0 in the last); per true
class, its samples, the clean-correct and the adversarially correct ones
(per-class robust accuracy = adversarially correct / samples); and, for at
most MAX_CONFUSION_CLASSES classes, the confusion matrix of true label
against adversarial prediction. All bounded: nothing grows with samples.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from advex.core.attack_specs import ResolvedAttack
from advex.core.errors import InvalidArgument
from advex.scoring import checks, masking

log = logging.getLogger(__name__)

# Norms kept in memory per attack before they go to a temporary file
# (3 float32 a successful sample: 12 MB at this count).
SPILL_VALUES = 1_000_000
_NORM_KEYS = ("linf", "l2", "l0")


class _Norms:
    """The (linf, l2, l0) rows of an attack's successful samples: in memory
    up to SPILL_VALUES rows, then appended to an anonymous temporary file."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []
        self._held = 0
        self._file = None

    def add(self, rows: np.ndarray) -> None:
        self._parts.append(np.ascontiguousarray(rows, dtype=np.float32))
        self._held += len(rows)
        if self._held >= SPILL_VALUES:
            if self._file is None:
                self._file = tempfile.TemporaryFile(prefix="advex-scoring-norms-")
            for part in self._parts:
                self._file.write(part.tobytes())
            self._parts, self._held = [], 0

    def read(self) -> np.ndarray:
        """Every row added, (n, 3) float32."""
        parts = []
        if self._file is not None:
            self._file.seek(0)
            parts.append(np.frombuffer(self._file.read(), dtype=np.float32).reshape(-1, 3))
        parts += self._parts
        return np.concatenate(parts) if parts else np.empty((0, 3), np.float32)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# Per-sample outcome codes, one int8 per sample and attack.
_UNSEEN, _WRONG, _RIGHT = 0, 1, 2


@dataclass(frozen=True)
class RecordBatch:
    """Per-sample results of one attack over samples [first_sample, first_sample + n)."""

    first_sample: int
    labels: np.ndarray  # integer (n,)
    clean_probabilities: np.ndarray  # float (n, classes)
    adversarial_probabilities: np.ndarray  # float (n, classes)
    perturbation_linf: np.ndarray  # (n,)
    perturbation_l2: np.ndarray  # (n,)
    perturbation_l0: np.ndarray  # (n,)
    # integer (n,): per-sample targets of a targeted attack; None otherwise.
    targets: np.ndarray | None = None


# The report's histograms of top-class probability.
CONFIDENCE_BINS = 20
# Above this many classes no confusion matrix is kept (it would not be
# readable, and its memory grows with the square).
MAX_CONFUSION_CLASSES = 64
# Example images (the attack service sends at most 8 per attack): bytes kept
# over all attacks of one evaluation; past it, the weakest attacks' go.
MAX_EXAMPLES_PER_ATTACK = 8
MAX_EXAMPLE_BYTES = 32 * 2**20
# Per-sample outcomes (`outcomes()`) are given for at most this many
# sample-attacks: 2 MiB of packed bits.
MAX_OUTCOME_BITS = 16 * 2**20


@dataclass(frozen=True)
class Examples:
    """A few samples of one attack for the page's picture grid."""

    samples: np.ndarray  # int64 (k,) dataset indices
    clean: np.ndarray  # (k, *image_shape) in input scale
    adversarial: np.ndarray
    labels: np.ndarray  # int64 (k,)
    clean_predictions: np.ndarray  # int64 (k,)
    adversarial_predictions: np.ndarray  # int64 (k,)


@dataclass(frozen=True)
class AttackFigures:
    confidence_clean: tuple[int, ...]  # CONFIDENCE_BINS counts of max(p)
    confidence_adversarial: tuple[int, ...]  # of max(q)
    class_samples: tuple[int, ...]  # per true class
    class_clean_correct: tuple[int, ...]
    class_adversarial_correct: tuple[int, ...]
    # classes x classes, true label (row) by adversarial prediction; None
    # above MAX_CONFUSION_CLASSES.
    confusion: np.ndarray | None
    examples: Examples | None = None


@dataclass(frozen=True)
class AttackMetrics:
    spec: ResolvedAttack
    samples: int
    clean_correct_samples: int
    adversarial_correct_samples: int
    attacked_samples: int
    successful_samples: int
    # This attack's own clean accuracy; the report's is the first attack's.
    clean_accuracy: float
    adversarial_accuracy: float
    attack_success_rate: float
    mean_confidence_clean: float
    mean_confidence_adversarial: float
    mean_true_class_probability_clean: float
    mean_true_class_probability_adversarial: float
    robustness_score: float
    perturbation_linf_mean: float
    perturbation_linf_median: float
    perturbation_l2_mean: float
    perturbation_l2_median: float
    perturbation_l0_mean: float
    perturbation_l0_median: float
    figures: AttackFigures | None = field(default=None, compare=False)


@dataclass(frozen=True)
class WorstCaseMetrics:
    norm: str
    eps: float
    accuracy: float
    attacks: tuple[str, ...]
    # min(1, accuracy / clean_accuracy); the report score is their mean.
    robustness_score: float


@dataclass(frozen=True)
class CurveMetrics:
    attack: str
    norm: str
    target: str  # "" when untargeted
    points: tuple[tuple[float, float], ...]  # (eps, adversarial_accuracy), eps ascending
    eps_at_half_clean_accuracy: float | None


@dataclass(frozen=True)
class EvasionMetrics:
    samples: int
    num_classes: int
    clean_accuracy: float
    mean_confidence_clean: float
    mean_true_class_probability_clean: float
    attacks: tuple[AttackMetrics, ...]  # header order
    worst_case: tuple[WorstCaseMetrics, ...]  # by norm, then eps
    robustness_score: float
    curves: tuple[CurveMetrics, ...]
    warnings: tuple[masking.MaskingWarning, ...] = ()


class _AttackState:
    """Running sums for one attack."""

    def __init__(self, index: int, spec: ResolvedAttack, samples: int, num_classes: int) -> None:
        self.index = index
        self.spec = spec
        self.outcome = np.zeros(samples, dtype=np.int8)
        self.received = 0
        self.clean_correct = 0
        self.adversarial_correct = 0
        self.attacked = 0
        self.successful = 0
        self.confidence_clean = 0.0
        self.confidence_adversarial = 0.0
        self.true_class_clean = 0.0
        self.true_class_adversarial = 0.0
        # Norms of successful samples only, one array per batch.
        self.norms = _Norms()
        self.confidence_clean_bins = np.zeros(CONFIDENCE_BINS, dtype=np.int64)
        self.confidence_adversarial_bins = np.zeros(CONFIDENCE_BINS, dtype=np.int64)
        self.class_samples = np.zeros(num_classes, dtype=np.int64)
        self.class_clean_correct = np.zeros(num_classes, dtype=np.int64)
        self.class_adversarial_correct = np.zeros(num_classes, dtype=np.int64)
        self.confusion = (
            np.zeros((num_classes, num_classes), dtype=np.int64) if num_classes <= MAX_CONFUSION_CLASSES else None
        )
        self.examples: Examples | None = None

    def add_figures(self, labels, clean_pred, adv_pred, clean_confidence, adv_confidence) -> None:
        classes = len(self.class_samples)
        self.confidence_clean_bins += _histogram(clean_confidence)
        self.confidence_adversarial_bins += _histogram(adv_confidence)
        self.class_samples += np.bincount(labels, minlength=classes)
        self.class_clean_correct += np.bincount(labels[clean_pred == labels], minlength=classes)
        self.class_adversarial_correct += np.bincount(labels[adv_pred == labels], minlength=classes)
        if self.confusion is not None:
            self.confusion += np.bincount(labels * classes + adv_pred, minlength=classes * classes).reshape(
                classes, classes
            )

    def figures(self) -> AttackFigures:
        return AttackFigures(
            confidence_clean=tuple(int(v) for v in self.confidence_clean_bins),
            confidence_adversarial=tuple(int(v) for v in self.confidence_adversarial_bins),
            class_samples=tuple(int(v) for v in self.class_samples),
            class_clean_correct=tuple(int(v) for v in self.class_clean_correct),
            class_adversarial_correct=tuple(int(v) for v in self.class_adversarial_correct),
            confusion=None if self.confusion is None else self.confusion.copy(),
            examples=self.examples,
        )

    @property
    def name(self) -> str:
        return f"attack {self.index} ({self.spec.label})"


class EvasionAccumulator:
    """Accumulates the records of every attack of one evaluation.

    `specs` are the header's attacks, already resolved; `add` takes batches
    in any order; `finish` checks every attack covered every sample once.
    """

    def __init__(
        self,
        specs: Sequence[ResolvedAttack],
        samples: int,
        num_classes: int,
        max_samples: int | None = None,
        max_attacks: int | None = None,
        clip_range: tuple[float, float] | None = None,
    ) -> None:
        if not specs:
            raise InvalidArgument("the header lists no attacks; give at least one AttackSpec")
        if max_attacks is not None and len(specs) > max_attacks:
            raise InvalidArgument(
                f"the header lists {len(specs)} attacks, at most {max_attacks} fit one request; "
                f"split the evaluation into several requests"
            )
        samples = checks.header_samples(samples, max_samples)
        num_classes = checks.header_num_classes(num_classes)
        for j, spec in enumerate(specs):
            for i in range(j):
                if specs[i] == spec:
                    raise InvalidArgument(
                        f"attack {j} ({spec.label}) repeats attack {i}; list each attack once"
                    )
        self.samples = samples
        self.num_classes = num_classes
        self.clip_range = clip_range
        self._attacks = [_AttackState(i, spec, self.samples, self.num_classes) for i, spec in enumerate(specs)]
        # Labels as first delivered by any attack.
        self._labels = checks.label_store(self.samples, self.num_classes)
        self._example_bytes = 0
        # Per sample: was the clean prediction right (as the last attack to
        # deliver it saw; all agree unless the model is nondeterministic).
        self._clean_right = np.zeros(self.samples, dtype=bool)

    def add(self, attack_index: int, batch: RecordBatch) -> None:
        """Adds one batch; validates it completely before changing any state."""
        state = self._state(attack_index)
        labels, p, q, norms, targets = self._checked(state, batch)
        n = len(labels)
        if n == 0:
            return
        lo, hi = batch.first_sample, batch.first_sample + n

        checks.not_delivered_before(state.name, state.outcome[lo:hi] != _UNSEEN, lo, "attack")
        checks.labels_agree(state.name, self._labels[lo:hi], labels, lo, "attack")

        rows = np.arange(n)
        clean_pred = p.argmax(axis=1)
        adv_pred = q.argmax(axis=1)
        clean_right = clean_pred == labels
        adv_right = adv_pred == labels
        if targets is None:
            attacked = clean_right
            success = attacked & ~adv_right
        else:
            attacked = clean_right & (labels != targets)
            success = attacked & (adv_pred == targets)

        self._labels[lo:hi] = labels
        self._clean_right[lo:hi] = clean_right
        state.outcome[lo:hi] = np.where(adv_right, _RIGHT, _WRONG)
        state.received += n
        state.clean_correct += int(clean_right.sum())
        state.adversarial_correct += int(adv_right.sum())
        state.attacked += int(attacked.sum())
        state.successful += int(success.sum())
        # float64 sums: float32 would drift over millions of samples.
        clean_confidence, adv_confidence = p[rows, clean_pred], q[rows, adv_pred]
        state.confidence_clean += float(clean_confidence.sum(dtype=np.float64))
        state.confidence_adversarial += float(adv_confidence.sum(dtype=np.float64))
        state.add_figures(labels, clean_pred, adv_pred, clean_confidence, adv_confidence)
        state.true_class_clean += float(p[rows, labels].sum(dtype=np.float64))
        state.true_class_adversarial += float(q[rows, labels].sum(dtype=np.float64))
        if success.any():
            state.norms.add(np.stack([norms[key][success] for key in _NORM_KEYS], axis=1))

    def add_examples(self, attack_index: int, examples: Examples) -> None:
        """Keeps one attack's example images (once per attack), within
        MAX_EXAMPLE_BYTES over all attacks."""
        state = self._state(attack_index)
        samples = np.asarray(examples.samples)
        clean, adversarial = np.asarray(examples.clean), np.asarray(examples.adversarial)
        k = len(samples)
        if state.examples is not None:
            raise InvalidArgument(f"{state.name}: examples arrived twice; send them once per attack")
        if not 0 < k <= MAX_EXAMPLES_PER_ATTACK or samples.dtype.kind not in "iu":
            raise InvalidArgument(f"{state.name}: examples must name 1 to {MAX_EXAMPLES_PER_ATTACK} samples, got {k}")
        if clean.shape != adversarial.shape or clean.shape[:1] != (k,) or clean.ndim < 2:
            raise InvalidArgument(
                f"{state.name}: example images must be ({k}, ...) twice, got {clean.shape} and {adversarial.shape}"
            )
        if clean.dtype.kind != "f" or adversarial.dtype.kind != "f":
            raise InvalidArgument(f"{state.name}: example images must be floats, got {clean.dtype}")
        if samples.min() < 0 or samples.max() >= self.samples:
            raise InvalidArgument(f"{state.name}: example samples must be in 0..{self.samples - 1}")
        for field_name in ("labels", "clean_predictions", "adversarial_predictions"):
            values = np.asarray(getattr(examples, field_name))
            if values.shape != (k,) or (k and (values.min() < 0 or values.max() >= self.num_classes)):
                raise InvalidArgument(
                    f"{state.name}: example {field_name} must be {k} classes in 0..{self.num_classes - 1}"
                )
        size = clean.nbytes + adversarial.nbytes
        # Over the budget, the weakest attack's examples make room (the page
        # shows the strongest's): examples come after an attack's records,
        # so its adversarially-correct count is final.
        while self._example_bytes + size > MAX_EXAMPLE_BYTES:
            kept = [s for s in self._attacks if s.examples is not None]
            weakest = max(kept, key=lambda s: s.adversarial_correct, default=None)
            if weakest is None or weakest.adversarial_correct <= state.adversarial_correct:
                log.info("%s: its example images are left out (the page keeps %d bytes of them, for stronger "
                         "attacks)", state.name, MAX_EXAMPLE_BYTES)
                return
            self._example_bytes -= weakest.examples.clean.nbytes + weakest.examples.adversarial.nbytes
            weakest.examples = None
        self._example_bytes += size
        state.examples = Examples(
            samples.astype(np.int64), clean, adversarial, *(
                np.asarray(getattr(examples, f), dtype=np.int64)
                for f in ("labels", "clean_predictions", "adversarial_predictions")
            )
        )

    def outcomes(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(clean right (samples,), adversarially right (attacks, samples)),
        bools, after finish(); None above MAX_OUTCOME_BITS."""
        if self.samples * (len(self._attacks) + 1) > MAX_OUTCOME_BITS:
            return None
        return self._clean_right.copy(), np.stack([s.outcome == _RIGHT for s in self._attacks])

    def _state(self, attack_index: int) -> _AttackState:
        if not 0 <= attack_index < len(self._attacks):
            raise InvalidArgument(
                f"attack_index {attack_index} is out of range: the header lists "
                f"{len(self._attacks)} attack(s), indices 0..{len(self._attacks) - 1}"
            )
        return self._attacks[attack_index]

    def _checked(self, state: _AttackState, batch: RecordBatch):
        """The batch's arrays, checked for shape, type and range."""
        where = state.name
        labels = checks.labels(where, batch.labels)
        n = labels.shape[0]
        p = checks.probabilities(where, "clean_probabilities", batch.clean_probabilities, n, self.num_classes)
        q = checks.probabilities(
            where, "adversarial_probabilities", batch.adversarial_probabilities, n, self.num_classes
        )

        norms = {}
        for key in ("linf", "l2", "l0"):
            field = f"perturbation_{key}"
            values = np.asarray(getattr(batch, field))
            if values.shape != (n,):
                raise InvalidArgument(
                    f"{where}: {field} must have shape ({n},) to match {n} labels, got {values.shape}"
                )
            if values.dtype.kind not in "fiu":
                raise InvalidArgument(f"{where}: {field} must be numbers (float32), got {values.dtype}")
            if n and not (np.isfinite(values).all() and values.min() >= 0):
                raise InvalidArgument(f"{where}: {field} must be finite and >= 0")
            norms[key] = values.astype(np.float32, copy=False)

        checks.sample_range(where, int(batch.first_sample), n, self.samples)
        checks.label_range(where, labels, self.num_classes)
        targets = None
        if state.spec.targeted:
            if batch.targets is None:
                raise InvalidArgument(f"{where}: a targeted attack's records must carry targets")
            targets = checks.labels(where, batch.targets, field="targets")
            if targets.shape != (n,):
                raise InvalidArgument(f"{where}: targets must have shape ({n},) to match {n} labels, got {targets.shape}")
            checks.label_range(where, targets, self.num_classes, field="targets")
            targets = targets.astype(np.int64, copy=False)
        elif batch.targets is not None:
            raise InvalidArgument(f"{where}: an untargeted attack's records must not carry targets")
        return labels.astype(np.int64, copy=False), p, q, norms, targets

    def finish(self) -> EvasionMetrics:
        """The metrics; InvalidArgument if any attack is missing samples."""
        for state in self._attacks:
            checks.all_delivered(state.name, state.received, self.samples, state.outcome == _UNSEEN)

        first = self._attacks[0]
        n = self.samples
        clean_accuracy = first.clean_correct / n
        if any(s.clean_correct != first.clean_correct for s in self._attacks):
            log.warning(
                "attacks disagree on clean accuracy (%s): is the model nondeterministic?",
                ", ".join(str(s.clean_correct) for s in self._attacks),
            )

        attacks = tuple(self._attack_metrics(s, clean_accuracy) for s in self._attacks)
        worst_case = self._worst_case(clean_accuracy)
        # With only unbounded attacks there is no budget to score.
        robustness = float(np.mean([w.robustness_score for w in worst_case])) if worst_case else 0.0
        curves = _curves(attacks, clean_accuracy)
        largest_class_share = float(np.bincount(self._labels, minlength=self.num_classes).max()) / n
        return EvasionMetrics(
            samples=n,
            num_classes=self.num_classes,
            clean_accuracy=clean_accuracy,
            mean_confidence_clean=first.confidence_clean / n,
            mean_true_class_probability_clean=first.true_class_clean / n,
            attacks=attacks,
            worst_case=worst_case,
            robustness_score=robustness,
            curves=curves,
            warnings=masking.check(attacks, worst_case, curves, n, largest_class_share, self.clip_range),
        )

    def _attack_metrics(self, state: _AttackState, clean_accuracy: float) -> AttackMetrics:
        n = self.samples
        adversarial_accuracy = state.adversarial_correct / n
        norm_stats = {}
        values = state.norms.read()
        for column, key in enumerate(_NORM_KEYS):
            found = values[:, column].astype(np.float64) if len(values) else None
            norm_stats[f"perturbation_{key}_mean"] = float(found.mean()) if found is not None else 0.0
            norm_stats[f"perturbation_{key}_median"] = float(np.median(found)) if found is not None else 0.0
        state.norms.close()
        return AttackMetrics(
            spec=state.spec,
            samples=n,
            clean_correct_samples=state.clean_correct,
            adversarial_correct_samples=state.adversarial_correct,
            attacked_samples=state.attacked,
            successful_samples=state.successful,
            clean_accuracy=state.clean_correct / n,
            adversarial_accuracy=adversarial_accuracy,
            attack_success_rate=state.successful / state.attacked if state.attacked else 0.0,
            mean_confidence_clean=state.confidence_clean / n,
            mean_confidence_adversarial=state.confidence_adversarial / n,
            mean_true_class_probability_clean=state.true_class_clean / n,
            mean_true_class_probability_adversarial=state.true_class_adversarial / n,
            robustness_score=_score(adversarial_accuracy, clean_accuracy),
            **norm_stats,
            figures=state.figures(),
        )

    def _worst_case(self, clean_accuracy: float) -> tuple[WorstCaseMetrics, ...]:
        groups: dict[tuple[str, float], list[_AttackState]] = {}
        for state in self._attacks:
            if state.spec.bounded:
                groups.setdefault((state.spec.norm, state.spec.eps), []).append(state)
        result = []
        for (norm, eps), members in sorted(groups.items()):
            right = np.ones(self.samples, dtype=bool)
            for state in members:
                right &= state.outcome == _RIGHT
            accuracy = int(right.sum()) / self.samples
            names = tuple(dict.fromkeys(_worst_case_name(s.spec) for s in members))
            result.append(WorstCaseMetrics(norm, eps, accuracy, names, _score(accuracy, clean_accuracy)))
        return tuple(result)


def _histogram(confidence: np.ndarray) -> np.ndarray:
    """Counts of `confidence` in CONFIDENCE_BINS equal bins of [0, 1],
    computed in the records' own precision (float32 0.7 lands in [0.7,
    0.75), as numpy.histogram puts it)."""
    bins = np.clip((np.asarray(confidence) * CONFIDENCE_BINS).astype(np.int64), 0, CONFIDENCE_BINS - 1)
    return np.bincount(bins, minlength=CONFIDENCE_BINS)


def _worst_case_name(spec: ResolvedAttack) -> str:
    """An attack's name in worst_case: a targeted one says its target mode,
    so APGD-CE and targeted APGD-DLR both show."""
    return f"{spec.attack} target={spec.target}" if spec.targeted else spec.attack


def _score(accuracy: float, clean_accuracy: float) -> float:
    return min(1.0, accuracy / clean_accuracy) if clean_accuracy > 0 else 0.0


def _curves(attacks: Sequence[AttackMetrics], clean_accuracy: float) -> tuple[CurveMetrics, ...]:
    by_curve: dict[tuple[str, str, str], dict[float, float]] = {}
    for a in attacks:
        if not a.spec.bounded:
            continue
        points = by_curve.setdefault((a.spec.attack, a.spec.norm, a.spec.target), {})
        eps = a.spec.eps
        points[eps] = min(points.get(eps, 1.0), a.adversarial_accuracy)
    curves = []
    for (attack, norm, target), points in by_curve.items():
        ordered = tuple(sorted(points.items()))
        half = next((eps for eps, acc in ordered if acc < clean_accuracy / 2), None)
        curves.append(CurveMetrics(attack, norm, target, ordered, half))
    return tuple(curves)
