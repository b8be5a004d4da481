"""What every attack function reads: one batch under one attack.

An attack function (engine._ATTACKS) takes an `AttackRun` and returns the
adversarial batch as a tensor of the Keras backend (written in keras.ops,
so the same attack runs on TensorFlow or PyTorch: backend.py). The run carries the model's logits
function, the clean batch, the true labels and (targeted) the per-sample
targets, the resolved attack, the clip range, and the per-sample seed; and
the calls an attack makes between steps: `step` (cancellation), `on_passes`
(progress), `project` (back into the eps-ball and the data range).

Per-sample randomness comes from `sample_rng(i, stream, index)`: a numpy
Generator seeded by (evaluation seed, dataset index of the sample, index,
stream), so a sample's draws never depend on its batch, its shard or its
neighbours, and each kind of draw (restart starts, random targets, SPSA
probes) has its own stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from advex.core.attack_specs import ResolvedAttack
from advex.core.errors import Cancelled

# Streams of per-sample random draws (see sample_rng). Random starts keep
# the seed they had before streams existed: (seed, sample[, restart]).
STREAM_RANDOM_TARGET = 1
STREAM_SPSA_PROBES = 2


@dataclass(frozen=True)
class AttackRun:
    logits_fn: Callable
    x: object  # backend tensor float32 (n, ...)
    y: object  # backend tensor int64 (n,): true labels
    targets: object | None  # backend tensor int64 (n,) when targeted
    attack: ResolvedAttack
    clip_min: float
    clip_max: float
    seed: int
    first: int  # dataset index of the batch's first sample
    should_stop: Callable[[], bool]
    on_passes: Callable[[int], None]
    # The model's compiled loops (compiled.Kernels), and the rows every
    # compiled call gets (the batch padded to the request's batch size, so
    # one trace serves every batch). None / 0: made for this run alone.
    kernels: object | None = None
    rows: int = 0

    def kernel(self, kind: str, build=None):
        """The compiled function `kind` for this run's norm, goal and shape
        (`build`: the attack module's builder, see compiled.Kernels.get)."""
        from advex.attack.compiled import Kernels

        if self.kernels is None:
            object.__setattr__(self, "kernels", Kernels(self.logits_fn))
        shape = (max(self.rows, self.n), *self.x.shape[1:])
        return self.kernels.get(kind, self.attack.norm, self.targeted, tuple(int(d) for d in shape), build)

    def padded(self, tensor):
        """`tensor` padded with zero rows to the compiled shape."""
        from advex.attack.compiled import pad

        return pad(tensor, max(self.rows, self.n))

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def norm(self):
        """The norm as CleverHans takes it: np.inf or 2."""
        return np.inf if self.attack.norm == "inf" else 2

    @property
    def targeted(self) -> bool:
        return self.targets is not None

    @property
    def goal(self):
        """The labels the loss is about: the targets (targeted, to be
        reached) or the true labels (untargeted, to be left)."""
        return self.targets if self.targeted else self.y

    def succeeded(self, logits):
        """Per sample: does this output meet the attack's goal?"""
        from keras import ops

        predicted = ops.cast(ops.argmax(logits, axis=1), "int64")
        return ops.equal(predicted, self.targets) if self.targeted else ops.not_equal(predicted, self.y)

    def step(self, index: int, restart: int = 0, of: int | None = None) -> None:
        """Raises Cancelled when asked to stop; called before every step."""
        if self.should_stop():
            where = f", restart {restart + 1} of {self.attack.restarts}" if self.attack.restarts > 1 else ""
            raise Cancelled(
                f"the attack was cancelled at sample {self.first}, step {index} of "
                f"{of or self.attack.steps}{where}"
            )

    def project(self, x_adv):
        """Back onto the eps-ball around x, then into the data range (as
        CleverHans does: subtracting and re-adding eta can round out)."""
        from keras import ops

        from advex.attack.compiled import clip_eta

        return ops.clip(self.x + clip_eta(x_adv - self.x, self.norm, self.attack.eps), self.clip_min, self.clip_max)

    def sample_rng(self, i: int, stream: int, index: int = 0) -> np.random.Generator:
        """The Generator of sample `first + i` for one stream of draws."""
        return np.random.default_rng([self.seed, self.first + i, index, stream])

    def random_start(self, restart: int = 0):
        """x plus a uniform random point of the eps-ball, in the data range."""
        from keras import ops

        from advex.attack.compiled import clip_eta

        shape = tuple(int(d) for d in self.x.shape)
        eta = ops.convert_to_tensor(random_start(shape, self.attack.norm, self.attack.eps, self.seed, self.first, restart))
        return ops.clip(self.x + clip_eta(eta, self.norm, self.attack.eps), self.clip_min, self.clip_max)


def with_restarts(run: AttackRun, once: Callable[[AttackRun, int], object]):
    """`once(run, restart)` for each of the attack's restarts; a sample keeps
    the first result that meets the goal, so restarts never weaken it."""
    best, met = None, None
    for restart in range(run.attack.restarts):
        x_adv = once(run, restart)
        if run.attack.restarts == 1:
            return x_adv
        best, met = keep_first_success(run, best, met, x_adv)
    return best


def keep_first_success(run: AttackRun, best, met, x_adv):
    """Restarts: per sample, keep the first result that meets the goal, so
    a later run can never undo an earlier success. `best`/`met` are None on
    the first run. Returns the new (best, met)."""
    from keras import ops

    from advex.attack import backend

    now = run.succeeded(backend.no_gradient(run.logits_fn, x_adv))
    if best is None:
        return x_adv, now
    take = ops.logical_and(now, ops.logical_not(met))
    best = ops.where(ops.reshape(take, (-1,) + (1,) * (len(x_adv.shape) - 1)), x_adv, best)
    return best, ops.logical_or(met, now)


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


def choose_targets(
    mode: str, labels: np.ndarray, clean_logits: np.ndarray, num_classes: int, seed: int, first: int
) -> np.ndarray:
    """Per-sample target classes, int64 (n,), of a resolved target mode.

    A class index: that class for every sample (a sample of that class has
    nothing to reach and is left out of the success rate). "random": a class
    other than the true label, uniform, from the sample's own stream.
    "least_likely": the lowest clean logit. "most_likely": the highest clean
    logit other than the true label's.
    """
    n = len(labels)
    if mode == "random":
        targets = np.empty(n, dtype=np.int64)
        for i in range(n):
            draw = int(np.random.default_rng([seed, first + i, 0, STREAM_RANDOM_TARGET]).integers(num_classes - 1))
            targets[i] = draw + (draw >= labels[i])
        return targets
    if mode == "least_likely":
        return np.argmin(clean_logits, axis=1).astype(np.int64)
    if mode == "most_likely":
        masked = np.array(clean_logits, dtype=np.float64, copy=True)
        masked[np.arange(n), labels] = -np.inf
        return np.argmax(masked, axis=1).astype(np.int64)
    return np.full(n, int(mode), dtype=np.int64)
