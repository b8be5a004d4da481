"""Evasion attacks over a sample range, in batches, with CleverHans.

Every attack works on the model's LOGITS (see models.py), is untargeted, and
is given the true labels explicitly: with y=None CleverHans would attack the
model's own predictions instead.

One function per attack (`_ATTACKS`, whose names are attack_specs.ATTACKS).
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
index, restart); a sample keeps the first restart's result the model gets
wrong, so restarts never weaken the attack.

Perturbation norms are of x_adv - x per sample, in input scale. L0 counts
elements with |x_adv - x| > 1e-6 * (clip_max - clip_min): float32 round-off
in x + eta - eta is below that, any deliberate change is far above it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from advex.attack.datasets import Dataset
from advex.attack.models import LoadedModel
from advex.core.attack_specs import ResolvedAttack
from advex.core.errors import Cancelled, InvalidArgument

L0_RELATIVE_TOLERANCE = 1e-6


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

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])


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
) -> Iterator[EvasionBatch]:
    """Attacks samples [start, stop) batch by batch.

    Raises Cancelled as soon as `should_stop()` is true (checked before each
    batch and each PGD step). `on_passes(n)` reports n forward+backward passes
    over a batch, the unit of progress.
    """
    import tensorflow as tf

    if batch_size < 1:
        raise InvalidArgument(f"batch_size must be >= 1, got {batch_size}")
    logits_fn = model.logits_fn
    for first in range(start, stop, batch_size):
        if should_stop():
            raise Cancelled(f"the attack was cancelled before sample {first}")
        x_np, y_np = dataset.batch(first, min(first + batch_size, stop))
        x = tf.constant(x_np, dtype=tf.float32)
        y = tf.constant(y_np, dtype=tf.int64)
        clean_logits = logits_fn(x)
        x_adv = _attack(logits_fn, x, y, attack, clip_min, clip_max, seed, first, should_stop, on_passes)
        adv_logits = logits_fn(x_adv)
        adv = x_adv.numpy()
        linf, l2, l0 = perturbation_norms(adv, x_np, clip_min, clip_max)
        yield EvasionBatch(
            first_sample=first,
            labels=y_np.astype(np.int64, copy=False),
            clean_probs=tf.nn.softmax(clean_logits).numpy().astype(np.float32, copy=False),
            adv_probs=tf.nn.softmax(adv_logits).numpy().astype(np.float32, copy=False),
            linf=linf,
            l2=l2,
            l0=l0,
            adversarial=adv if want_images else None,
        )


def _attack(logits_fn, x, y, attack: ResolvedAttack, clip_min, clip_max, seed, first, should_stop, on_passes):
    if attack.eps == 0:
        # No budget, no perturbation (and no gradient work).
        return x
    run = _Run(logits_fn, x, y, attack, clip_min, clip_max, seed, first, should_stop, on_passes)
    return _ATTACKS[attack.attack](run)


@dataclass(frozen=True)
class _Run:
    """One batch under one attack: what every attack function reads."""

    logits_fn: Callable
    x: object  # tf.Tensor float32 (n, ...)
    y: object  # tf.Tensor int64 (n,)
    attack: ResolvedAttack
    clip_min: float
    clip_max: float
    seed: int
    first: int  # dataset index of the batch's first sample
    should_stop: Callable[[], bool]
    on_passes: Callable[[int], None]

    @property
    def norm(self):
        return np.inf if self.attack.norm == "inf" else 2

    def step(self, index: int, restart: int = 0) -> None:
        """Raises Cancelled when asked to stop; called before every step."""
        if self.should_stop():
            where = f", restart {restart + 1} of {self.attack.restarts}" if self.attack.restarts > 1 else ""
            raise Cancelled(
                f"the attack was cancelled at sample {self.first}, step {index} of {self.attack.steps}{where}"
            )

    def project(self, x_adv):
        """Back onto the eps-ball around x, then into the data range (as
        CleverHans does: subtracting and re-adding eta can round out)."""
        import tensorflow as tf
        from cleverhans.tf2.utils import clip_eta

        return tf.clip_by_value(self.x + clip_eta(x_adv - self.x, self.norm, self.attack.eps), self.clip_min, self.clip_max)


def _fgsm(run: _Run):
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method

    x_adv = fast_gradient_method(
        run.logits_fn, run.x, run.attack.eps, run.norm, clip_min=run.clip_min, clip_max=run.clip_max, y=run.y,
        targeted=False,
    )
    run.on_passes(1)
    return x_adv


def _pgd(run: _Run):
    """PGD (and BIM, which is PGD without the random start); with restarts,
    a sample keeps the first run's result that the model gets wrong."""
    import tensorflow as tf

    best, broken = None, None
    for restart in range(run.attack.restarts):
        x_adv = _pgd_once(run, restart)
        if run.attack.restarts == 1:
            return x_adv
        wrong = tf.argmax(run.logits_fn(x_adv), axis=1) != run.y
        if best is None:
            best, broken = x_adv, wrong
            continue
        take = tf.logical_and(wrong, tf.logical_not(broken))
        best = tf.where(tf.reshape(take, (-1,) + (1,) * (len(x_adv.shape) - 1)), x_adv, best)
        broken = tf.logical_or(broken, wrong)
    return best


def _pgd_once(run: _Run, restart: int):
    import tensorflow as tf
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
    from cleverhans.tf2.utils import clip_eta

    attack = run.attack
    if attack.random_init:
        eta = tf.constant(random_start(tuple(run.x.shape), attack.norm, attack.eps, run.seed, run.first, restart))
        x_adv = tf.clip_by_value(run.x + clip_eta(eta, run.norm, attack.eps), run.clip_min, run.clip_max)
    else:
        x_adv = run.x
    for step in range(attack.steps):
        run.step(step, restart)
        x_adv = fast_gradient_method(
            run.logits_fn, x_adv, attack.step_size, run.norm, clip_min=run.clip_min, clip_max=run.clip_max, y=run.y,
            targeted=False,
        )
        x_adv = run.project(x_adv)
        run.on_passes(1)
    return x_adv


def _mim(run: _Run):
    """CleverHans' momentum_iterative_method, step by step (so it can stop
    between steps): the gradient of the cross-entropy, normalised by its mean
    absolute value, accumulated with decay, then a step of the momentum's
    sign (L-inf) or direction (L2)."""
    import tensorflow as tf
    from cleverhans.tf2.attacks.momentum_iterative_method import loss_fn
    from cleverhans.tf2.utils import compute_gradient, optimize_linear

    attack = run.attack
    momentum = tf.zeros_like(run.x)
    x_adv = run.x
    for step in range(attack.steps):
        run.step(step)
        grad = compute_gradient(run.logits_fn, loss_fn, x_adv, run.y, False)
        axes = list(range(1, len(grad.shape)))
        grad = grad / tf.math.maximum(tf.cast(1e-12, grad.dtype), tf.reduce_mean(tf.abs(grad), axes, keepdims=True))
        momentum = attack.decay * momentum + grad
        x_adv = run.project(x_adv + optimize_linear(momentum, attack.step_size, run.norm))
        run.on_passes(1)
    return x_adv


# Attack name -> its computation; one entry per attack_specs.ATTACKS.
_ATTACKS: dict[str, Callable[[_Run], object]] = {"fgsm": _fgsm, "bim": _pgd, "pgd": _pgd, "mim": _mim}


def random_start(
    shape: tuple[int, ...], norm: str, eps: float, seed: int, first_sample: int, restart: int = 0
) -> np.ndarray:
    """A uniform random point in the eps-ball per sample, seeded by (seed,
    sample index) for the first run and (seed, sample index, restart) for
    the restarts after it.

    The same distributions as CleverHans' `random_lp_vector`: uniform in the
    L-inf cube; for L2 a uniform direction scaled by eps * u^(1/d).
    """
    n, dims = shape[0], shape[1:]
    d = int(np.prod(dims))
    out = np.empty(shape, dtype=np.float32)
    for i in range(n):
        rng = np.random.default_rng([seed, first_sample + i] + ([restart] if restart else []))
        if norm == "inf":
            out[i] = rng.uniform(-eps, eps, size=dims)
        else:
            direction = rng.standard_normal(d)
            direction /= max(np.linalg.norm(direction), 1e-12)
            out[i] = (eps * rng.uniform() ** (1.0 / d) * direction).reshape(dims)
    return out


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
