"""Evasion attacks over a sample range, in batches, as CleverHans does them.

Every attack works on the model's LOGITS (see models.py) and is given its
labels explicitly: the true labels (untargeted), or the per-sample targets
(targeted, chosen here from the clean logits: attack_run.choose_targets).
With y=None CleverHans would attack the model's own predictions instead.

One function per attack (`_ATTACKS`, whose names are attack_specs.ATTACKS),
each taking an `attack_run.AttackRun`: FGSM, BIM, PGD and MIM here; the
Carlini-Wagner L2, SPSA and Auto-PGD attacks in their own modules. All of
them are written in keras.ops on the Keras backend's tensors, so the same
code runs on TensorFlow (the default) and on PyTorch (`KERAS_BACKEND=torch`);
backend.py holds the little that differs (gradients, compilation).
FGSM is CleverHans' `fast_gradient_method`. PGD is CleverHans'
`projected_gradient_descent` loop written out here with the very same ops
(`fast_gradient_method` step, `clip_eta` projection, clip to the data range);
BIM is that loop without the random start, and MIM is CleverHans'
`momentum_iterative_method` loop, likewise written out. Written out for two
reasons:
- the random start comes from a per-sample seed (request seed, sample index)
  instead of TensorFlow's process-global RNG, so a rerun, a shard retried on
  another replica, or a different batch size reproduces it, and concurrent
  requests cannot disturb each other's random streams;
- `should_stop` is checked between steps, so a cancelled request stops within
  one step, not one batch of up to 10,000 steps.
With random_init off PGD equals `projected_gradient_descent` exactly, and
MIM equals `momentum_iterative_method` (tests/attack/test_attack_engine.py
checks both). PGD's restarts draw their random starts from (seed, sample
index, restart); a sample keeps the first restart's result that meets the
goal, so restarts never weaken the attack.

Perturbation norms are of x_adv - x per sample, in input scale. L0 counts
elements with |x_adv - x| > 1e-6 * (clip_max - clip_min): float32 round-off
in x + eta - eta is below that, any deliberate change is far above it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from advex.attack import apgd, carlini_wagner, spsa
from advex.attack.compiled import repeat, run_chunks
from advex.attack.attack_run import AttackRun, choose_targets, random_start, with_restarts
from advex.attack.datasets import Dataset
from advex.attack.models import LoadedModel
from advex.core.attack_specs import ResolvedAttack
from advex.core.errors import Cancelled, InvalidArgument
from advex.core.examples import example_limit

__all__ = ["CleanLogits", "EvasionBatch", "ExamplePicker", "auto_batch_size", "perturbation_norms", "random_start", "run_evasion"]

L0_RELATIVE_TOLERANCE = 1e-6
# Bounds of an automatically chosen batch: past 512 a CPU gains nothing
# (PGD-40 on 3,000 digits: 1.13 s at 128 rows, 0.73 s at 256, 0.61 s at
# 512, 0.77 s at 1024), and cancel and progress get coarse.
MAX_AUTO_BATCH = 512
# Bytes a forward+backward pass holds per activation value: the float32
# output, its gradient, and a working copy.
BYTES_PER_ACTIVATION = 12


@dataclass(frozen=True)
class EvasionBatch:
    """Per-sample results for samples [first_sample, first_sample + n)."""

    first_sample: int
    labels: np.ndarray  # int64 (n,)
    clean_probs: np.ndarray  # float32 (n, classes)
    adv_probs: np.ndarray  # float32 (n, classes)
    linf: np.ndarray  # float32 (n,)
    l2: np.ndarray  # float32 (n,)
    l0: np.ndarray  # float32 (n,)
    adversarial: np.ndarray | None  # float32 (n, *image_shape), when asked for
    targets: np.ndarray | None = None  # int64 (n,), when targeted

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])


class CleanLogits:
    """The clean logits of one (model, dataset) pair, batch by batch, so that
    the next attack of an evaluation on the same samples skips the clean
    forward pass: the gateway runs an evaluation's attacks one RunEvasion
    after another over the same range and batch size. Keyed by the batch's
    (first sample, size); at most `max_bytes` of logits are kept (past that
    batches are computed and not stored). Safe to share between threads.

    Sharing also makes every attack of an evaluation see the very same
    clean probabilities (recomputed, a batch of another composition can
    round differently in the last bit)."""

    def __init__(self, max_bytes: int) -> None:
        import threading

        self._max_bytes = max_bytes
        self._bytes = 0
        self._batches: dict[tuple[int, int], np.ndarray] = {}
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, first: int, n: int) -> np.ndarray | None:
        with self._lock:
            logits = self._batches.get((first, n))
            if logits is not None:
                self.hits += 1
            return logits

    def put(self, first: int, logits: np.ndarray) -> None:
        with self._lock:
            key = (first, int(logits.shape[0]))
            if key in self._batches or self._bytes + logits.nbytes > self._max_bytes:
                return
            self._batches[key] = logits
            self._bytes += logits.nbytes


class ExamplePicker:
    """A few samples of one run for the HTML report's picture grid: the first
    ones the attack succeeded on (in sample order), topped up with the first
    others; at most advex.core.examples.example_limit of them, so none for
    images too big to show (the rule the gateway's merge of shards relies on)."""

    def __init__(self, image_shape: tuple[int, ...]) -> None:
        self.limit = example_limit(image_shape)
        # (dataset index, label, clean prediction, adversarial prediction,
        # clean image, adversarial image)
        self._succeeded: list[tuple] = []
        self._others: list[tuple] = []

    def offer(self, first: int, x: np.ndarray, adversarial: np.ndarray, labels: np.ndarray,
              clean_pred: np.ndarray, adv_pred: np.ndarray, succeeded: np.ndarray) -> None:
        for kept, mask in ((self._succeeded, succeeded), (self._others, ~succeeded)):
            for i in np.flatnonzero(mask)[: self.limit - len(kept)]:
                kept.append((
                    first + int(i), int(labels[i]), int(clean_pred[i]), int(adv_pred[i]),
                    x[i].astype(np.float16), adversarial[i].astype(np.float16),
                ))

    def examples(self) -> tuple[list[tuple[int, int, int, int]], np.ndarray, np.ndarray] | None:
        """([(dataset index, label, clean prediction, adversarial
        prediction)], clean images, adversarial images), or None when
        nothing fits."""
        chosen = (self._succeeded + self._others)[: self.limit]
        if not chosen:
            return None
        return [c[:4] for c in chosen], np.stack([c[4] for c in chosen]), np.stack([c[5] for c in chosen])


def auto_batch_size(summary, memory_bytes: int) -> int:
    """Rows per batch for `summary`'s model within `memory_bytes`: a power of
    two, 1..MAX_AUTO_BATCH. Per sample a pass holds every layer's output and
    its gradient, and the attack a few copies of the input (x, x_adv, the
    gradient, momentum or the best point so far)."""
    inputs = math.prod(16 if d is None else int(d) for d in summary.input_shape)
    per_sample = BYTES_PER_ACTIVATION * (summary.activation_elements + 4 * inputs)
    rows = max(1, min(MAX_AUTO_BATCH, memory_bytes // max(1, per_sample)))
    return 1 << (rows.bit_length() - 1)


def run_evasion(
    model: LoadedModel,
    dataset: Dataset,
    attack: ResolvedAttack,
    clip_min: float,
    clip_max: float,
    start: int,
    stop: int,
    batch_size: int,
    seed: int,
    want_images: bool,
    should_stop: Callable[[], bool],
    on_passes: Callable[[int], None] = lambda n: None,
    clean: CleanLogits | None = None,
    examples: ExamplePicker | None = None,
) -> Iterator[EvasionBatch]:
    """Attacks samples [start, stop) batch by batch.

    Raises Cancelled as soon as `should_stop()` is true (checked before each
    batch and each step of every attack). `on_passes(n)` reports n forward+backward passes
    over a batch, the unit of progress. `clean`: where earlier attacks on
    this model and dataset left their clean logits (and this one leaves its).
    `examples` is offered every batch's images and whether the attack met
    its goal on each sample.
    """
    from keras import ops

    if batch_size < 1:
        raise InvalidArgument(f"batch_size must be >= 1, got {batch_size}")
    logits_fn = model.logits_fn
    for first in range(start, stop, batch_size):
        if should_stop():
            raise Cancelled(f"the attack was cancelled before sample {first}")
        x_np, y_np = dataset.batch(first, min(first + batch_size, stop))
        x = ops.convert_to_tensor(x_np, dtype="float32")
        y = ops.convert_to_tensor(y_np, dtype="int64")
        rows = min(batch_size, stop - start)
        known = None if clean is None else clean.get(first, len(y_np))
        if known is None:
            clean_logits = model.kernels.logits(x, rows)
            if clean is not None:
                clean.put(first, ops.convert_to_numpy(clean_logits))
        else:
            clean_logits = ops.convert_to_tensor(known)
        targets = None
        if attack.targeted:
            targets = choose_targets(
                attack.target, y_np, ops.convert_to_numpy(clean_logits), int(clean_logits.shape[1]), seed, first
            )
        run = AttackRun(
            logits_fn, x, y, None if targets is None else ops.convert_to_tensor(targets), attack, clip_min, clip_max, seed,
            first, should_stop, on_passes, kernels=model.kernels, rows=rows,
        )
        x_adv = _attack(run)
        adv = ops.convert_to_numpy(x_adv)
        linf, l2, l0 = perturbation_norms(adv, x_np, clip_min, clip_max)
        if not attack.entry.budget == "required" and attack.bounded:
            # A minimal-perturbation attack given eps: an example beyond the
            # ball is discarded and the clean input stands in for it.
            beyond = l2 > attack.eps * (1 + 1e-6)
            if beyond.any():
                adv[beyond] = x_np[beyond]
                linf, l2, l0 = perturbation_norms(adv, x_np, clip_min, clip_max)
                x_adv = ops.convert_to_tensor(adv)
        adv_logits = model.kernels.logits(x_adv, rows)
        if examples is not None:
            clean_pred = ops.convert_to_numpy(ops.argmax(clean_logits, axis=1))
            adv_pred = ops.convert_to_numpy(ops.argmax(adv_logits, axis=1))
            examples.offer(first, x_np, adv, y_np, clean_pred, adv_pred, _met_goal(y_np, clean_pred, adv_pred, targets))
        yield EvasionBatch(
            first_sample=first,
            labels=y_np.astype(np.int64, copy=False),
            clean_probs=ops.convert_to_numpy(ops.softmax(clean_logits)).astype(np.float32, copy=False),
            adv_probs=ops.convert_to_numpy(ops.softmax(adv_logits)).astype(np.float32, copy=False),
            linf=linf,
            l2=l2,
            l0=l0,
            adversarial=adv if want_images else None,
            targets=targets,
        )


def _met_goal(labels: np.ndarray, clean_pred: np.ndarray, adv_pred: np.ndarray, targets: np.ndarray | None) -> np.ndarray:
    """Per sample: clean-correct, and then misclassified (untargeted) or
    classified as its target (targeted): the attack succeeded."""
    if targets is None:
        return (clean_pred == labels) & (adv_pred != labels)
    return (clean_pred == labels) & (labels != targets) & (adv_pred == targets)


def _attack(run: AttackRun):
    if run.attack.eps == 0:
        # No budget, no perturbation (and no gradient work).
        return run.x
    return _ATTACKS[run.attack.attack](run)


def _fgsm(run: AttackRun):
    """CleverHans' fast_gradient_method, compiled (compiled.py)."""
    fgsm = run.kernel("fgsm")
    x_adv = fgsm(run.padded(run.x), run.padded(run.goal), run.attack.eps, run.clip_min, run.clip_max)
    run.on_passes(1)
    return x_adv[: run.n]


def _pgd(run: AttackRun):
    """PGD (and BIM, which is PGD without the random start); with restarts,
    a sample keeps the first run's result that meets the goal."""
    return with_restarts(run, _pgd_once)


def _pgd_once(run: AttackRun, restart: int):
    """CleverHans' projected_gradient_descent loop (a fast_gradient_method
    step, clip_eta, the clip range), a compiled call a step."""
    from keras import ops

    attack = run.attack
    pgd = run.kernel("pgd")
    x, goal = run.padded(run.x), run.padded(run.goal)
    scalars = [ops.convert_to_tensor(v, "float32") for v in (attack.step_size, attack.eps, run.clip_min, run.clip_max)]
    state = [run.padded(run.random_start(restart) if attack.random_init else run.x)]

    def steps(k: int) -> None:
        state[0] = repeat(lambda x_adv: pgd(x, x_adv, goal, *scalars), state[0], k)

    run_chunks(attack.steps, lambda done: run.step(done, restart), steps, run.on_passes)
    return state[0][: run.n]


def _mim(run: AttackRun):
    """CleverHans' momentum_iterative_method loop, a compiled call a step:
    the gradient of the cross-entropy, normalised by its mean absolute
    value, accumulated with decay, then a step of the momentum's sign
    (L-inf) or direction (L2)."""
    from keras import ops

    attack = run.attack
    mim = run.kernel("mim")
    x, goal = run.padded(run.x), run.padded(run.goal)
    scalars = [
        ops.convert_to_tensor(v, "float32") for v in (attack.step_size, attack.eps, attack.decay, run.clip_min, run.clip_max)
    ]
    state = [(x, ops.zeros_like(x))]

    def steps(k: int) -> None:
        state[0] = repeat(lambda s: mim(x, s[0], s[1], goal, *scalars), state[0], k)

    run_chunks(attack.steps, run.step, steps, run.on_passes)
    return state[0][0][: run.n]


# Attack name -> its computation; one entry per attack_specs.ATTACKS.
_ATTACKS: dict[str, Callable[[AttackRun], object]] = {
    "fgsm": _fgsm,
    "bim": _pgd,
    "pgd": _pgd,
    "mim": _mim,
    "cw": carlini_wagner.carlini_wagner_l2,
    "spsa": spsa.spsa,
    "apgd": apgd.apgd,
}


def perturbation_norms(
    adv: np.ndarray, x: np.ndarray, clip_min: float, clip_max: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(L-inf, L2, L0) of adv - x per sample, float32 (n,) each."""
    diff = (adv.astype(np.float64) - x.astype(np.float64)).reshape(len(x), -1)
    absolute = np.abs(diff)
    tolerance = L0_RELATIVE_TOLERANCE * (clip_max - clip_min)
    linf = absolute.max(axis=1) if diff.shape[1] else np.zeros(len(x))
    l2 = np.sqrt(np.square(diff).sum(axis=1))
    l0 = (absolute > tolerance).sum(axis=1)
    return linf.astype(np.float32), l2.astype(np.float32), l0.astype(np.float32)
