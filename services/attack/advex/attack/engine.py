"""Evasion attacks over a sample range, in batches, with CleverHans.

Every attack works on the model's LOGITS (see models.py), is untargeted, and
is given the true labels explicitly: with y=None CleverHans would attack the
model's own predictions instead.

FGSM is CleverHans' `fast_gradient_method`. PGD is CleverHans'
`projected_gradient_descent` loop written out here with the very same ops
(`fast_gradient_method` step, `clip_eta` projection, clip to the data range),
for two reasons:
- the random start comes from a per-sample seed (request seed, sample index)
  instead of TensorFlow's process-global RNG, so a rerun, a shard retried on
  another replica, or a different batch size reproduces it, and concurrent
  requests cannot disturb each other's random streams;
- `should_stop` is checked between steps, so a cancelled request stops within
  one step, not one batch of up to 10,000 steps.
With random_init off it equals `projected_gradient_descent` exactly
(tests/attack/test_attack_engine.py checks it).

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
    import tensorflow as tf
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
    from cleverhans.tf2.utils import clip_eta

    norm = np.inf if attack.norm == "inf" else 2
    if attack.eps == 0:
        # No budget, no perturbation (and no gradient work).
        return x
    if attack.attack == "fgsm":
        x_adv = fast_gradient_method(
            logits_fn, x, attack.eps, norm, clip_min=clip_min, clip_max=clip_max, y=y, targeted=False
        )
        on_passes(1)
        return x_adv
    if attack.attack != "pgd":
        raise InvalidArgument(f"the attack engine does not implement '{attack.attack}' yet")

    if attack.random_init:
        eta = tf.constant(random_start(tuple(x.shape), attack.norm, attack.eps, seed, first))
        x_adv = tf.clip_by_value(x + clip_eta(eta, norm, attack.eps), clip_min, clip_max)
    else:
        x_adv = x
    for step in range(attack.steps):
        if should_stop():
            raise Cancelled(f"the attack was cancelled at sample {first}, step {step} of {attack.steps}")
        x_adv = fast_gradient_method(
            logits_fn, x_adv, attack.step_size, norm, clip_min=clip_min, clip_max=clip_max, y=y, targeted=False
        )
        # Project back onto the eps-ball around x, then into the data range
        # (as CleverHans does: subtracting and re-adding eta can round out).
        x_adv = tf.clip_by_value(x + clip_eta(x_adv - x, norm, attack.eps), clip_min, clip_max)
        on_passes(1)
    return x_adv


def random_start(shape: tuple[int, ...], norm: str, eps: float, seed: int, first_sample: int) -> np.ndarray:
    """A uniform random point in the eps-ball per sample, seeded by (seed, sample index).

    The same distributions as CleverHans' `random_lp_vector`: uniform in the
    L-inf cube; for L2 a uniform direction scaled by eps * u^(1/d).
    """
    n, dims = shape[0], shape[1:]
    d = int(np.prod(dims))
    out = np.empty(shape, dtype=np.float32)
    for i in range(n):
        rng = np.random.default_rng([seed, first_sample + i])
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
