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
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

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

    def __init__(self, index: int, spec: ResolvedAttack, samples: int) -> None:
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
        self._attacks = [_AttackState(i, spec, self.samples) for i, spec in enumerate(specs)]
        # Labels as first delivered by any attack.
        self._labels = checks.label_store(self.samples, self.num_classes)

    def add(self, attack_index: int, batch: RecordBatch) -> None:
        """Adds one batch; validates it completely before changing any state."""
        if not 0 <= attack_index < len(self._attacks):
            raise InvalidArgument(
                f"attack_index {attack_index} is out of range: the header lists "
                f"{len(self._attacks)} attack(s), indices 0..{len(self._attacks) - 1}"
            )
        state = self._attacks[attack_index]
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
        state.outcome[lo:hi] = np.where(adv_right, _RIGHT, _WRONG)
        state.received += n
        state.clean_correct += int(clean_right.sum())
        state.adversarial_correct += int(adv_right.sum())
        state.attacked += int(attacked.sum())
        state.successful += int(success.sum())
        # float64 sums: float32 would drift over millions of samples.
        state.confidence_clean += float(p[rows, clean_pred].sum(dtype=np.float64))
        state.confidence_adversarial += float(q[rows, adv_pred].sum(dtype=np.float64))
        state.true_class_clean += float(p[rows, labels].sum(dtype=np.float64))
        state.true_class_adversarial += float(q[rows, labels].sum(dtype=np.float64))
        if success.any():
            state.norms.add(np.stack([norms[key][success] for key in _NORM_KEYS], axis=1))

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
