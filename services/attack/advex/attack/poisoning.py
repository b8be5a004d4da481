"""Backdoor poisoning of a training set: which images, and what is done to them.

`plan` checks a resolved PoisoningSpec against the data (the pool of images
that can be poisoned, the counts it trains, the test images the attack
success rate is measured on). `poison` makes the training set of one count:

- dirty (BadNets, Gu et al. 2017): `count` source-class images get the
  trigger and the target label;
- clean (Turner et al. 2019): `count` target-class images, optionally first
  perturbed by an evasion attack against their own label (so that the model
  cannot learn them from their content and leans on the trigger), get the
  trigger and keep their label;
- flip: `count` source-class images get the target label, nothing else.

The images poisoned at a count are the first `count` of one seeded
permutation of the pool (`choose`), so the images of a smaller count are
among those of every larger one: a dose-response compares like with like.

Plain numpy (and the evasion engine for clean-label perturbations); no gRPC.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from advex.attack import datasets, engine
from advex.attack.datasets import Dataset
from advex.attack.models import LoadedModel
from advex.attack.training import probabilities
from advex.attack.triggers import Trigger
from advex.core import npz_writer, poison_specs
from advex.core.attack_specs import ResolvedAttack
from advex.core.errors import InvalidArgument
from advex.core.poison_specs import ResolvedPoisoning

# perturb(x float32 (n, H, W, C), y int64 (n,)) -> x' float32 (n, H, W, C)
Perturb = Callable[[np.ndarray, np.ndarray], np.ndarray]
PERTURBATION_BATCH_SIZE = 256


@dataclass(frozen=True, eq=False)
class PoisoningPlan:
    kind: str
    target: int
    sources: tuple[int, ...]  # ascending
    # Training indexes that may be poisoned (ascending): source-class images
    # for dirty and flip, target-class images for clean.
    pool: np.ndarray  # int64
    counts: tuple[int, ...]  # ascending, distinct, each <= len(pool)
    # Test indexes the attack success rate is measured on (ascending):
    # labels among the sources (never the target).
    attacked_test: np.ndarray  # int64
    num_classes: int


@dataclass(frozen=True, eq=False)
class PoisonedData:
    """A training set as trained, all arrays (N, ...)."""

    x: np.ndarray  # float32 (N, H, W, C)
    y: np.ndarray  # int64 (N,): the labels trained on
    original_y: np.ndarray  # int64 (N,): the labels of the clean data
    poisoned: np.ndarray  # bool (N,)

    @property
    def count(self) -> int:
        return int(self.poisoned.sum())

    @property
    def indexes(self) -> np.ndarray:
        return np.flatnonzero(self.poisoned)


def plan(resolved: ResolvedPoisoning, train: Dataset, test: Dataset, num_classes: int) -> PoisoningPlan:
    """InvalidArgument unless `resolved` can be carried out on these data
    for a model of `num_classes` classes."""
    poison_specs.check_against_model(resolved, num_classes, train.image_shape)
    for what, data in (("training", train), ("test", test)):
        if data.min_label < 0 or data.max_label >= num_classes:
            raise InvalidArgument(
                f"{what} labels {data.min_label}..{data.max_label} are outside the model's {num_classes} classes "
                f"(0..{num_classes - 1}); labels must be class indices of the model's output"
            )
    if train.image_shape != test.image_shape:
        raise InvalidArgument(
            f"training images are {_shape(train.image_shape)} but test images are {_shape(test.image_shape)}; "
            "both datasets must hold images of the model's input size"
        )
    sources = resolved.sources(num_classes)
    target = resolved.target_class
    pool_classes = (target,) if resolved.kind == poison_specs.CLEAN else sources
    pool = np.flatnonzero(np.isin(train.y, pool_classes)).astype(np.int64)
    counts = poison_specs.counts_of_pool(resolved, len(pool))
    attacked = np.flatnonzero(np.isin(test.y, sources) & (test.y != target)).astype(np.int64)
    if len(attacked) == 0:
        raise InvalidArgument(
            f"the test set holds no image of the source classes {', '.join(map(str, sources))}, so the attack "
            "success rate cannot be measured; use a test set with images of those classes"
        )
    for array in (pool, attacked):
        array.setflags(write=False)
    return PoisoningPlan(
        kind=resolved.kind,
        target=target,
        sources=sources,
        pool=pool,
        counts=counts,
        attacked_test=attacked,
        num_classes=num_classes,
    )


def choose(pool: np.ndarray, count: int, seed: int) -> np.ndarray:
    """The `count` indexes of `pool` poisoned at this count (ascending): the
    first `count` of one permutation of the pool drawn from `seed`, so the
    images of a smaller count are among those of a larger one."""
    return np.sort(_draw(pool, count, seed))


def _draw(pool: np.ndarray, count: int, seed: int) -> np.ndarray:
    """choose() in the order of the permutation: an image keeps its place
    (and so its random start in a clean-label perturbation) at every count."""
    pool = np.asarray(pool, dtype=np.int64)
    if not 0 <= count <= len(pool):
        raise InvalidArgument(f"cannot poison {count} images of a pool of {len(pool)}; use 0..{len(pool)}")
    return pool[np.random.default_rng(seed).permutation(len(pool))[:count]]


def poison(
    train: Dataset,
    plan: PoisoningPlan,
    resolved: ResolvedPoisoning,
    count: int,
    trigger: Trigger | None,
    seed: int,
    perturb: Perturb | None = None,
) -> PoisonedData:
    """The training set with `count` images poisoned as `resolved.kind` says.
    Count 0 is the clean training set (the baseline). `train` is not modified."""
    drawn = _draw(plan.pool, count, seed)
    # Training needs the whole set in memory (a fresh float32 copy).
    x = np.array(train.batch(0, train.samples)[0], dtype=np.float32, copy=True)
    y = train.y.astype(np.int64, copy=True)
    poisoned = np.zeros(len(y), dtype=bool)
    if count:
        _KINDS[resolved.kind](x, y, drawn, plan, trigger, perturb)
        poisoned[drawn] = True
    return PoisonedData(x=x, y=y, original_y=train.y.astype(np.int64, copy=True), poisoned=poisoned)


def _dirty(x, y, chosen, plan: PoisoningPlan, trigger: Trigger | None, perturb) -> None:
    x[chosen] = _need(trigger, plan).stamp(x[chosen])
    y[chosen] = plan.target


def _clean(x, y, chosen, plan: PoisoningPlan, trigger: Trigger | None, perturb) -> None:
    # `chosen` in draw order: the perturbation's per-sample random start
    # follows an image's place in it, the same at every count.
    trigger = _need(trigger, plan)
    images = x[chosen]
    if perturb is not None:
        perturbed = np.asarray(perturb(images, y[chosen]), dtype=np.float32)
        if perturbed.shape != images.shape:
            raise ValueError(f"internal: perturb returned shape {perturbed.shape} for images {images.shape}")
        images = perturbed
    x[chosen] = trigger.stamp(images)


def _flip(x, y, chosen, plan: PoisoningPlan, trigger: Trigger | None, perturb) -> None:
    y[chosen] = plan.target


# Kind -> what is done to the chosen images (in place on copies), one entry per poison_specs.KINDS.
_KINDS: dict[str, Callable[..., None]] = {
    poison_specs.DIRTY: _dirty,
    poison_specs.CLEAN: _clean,
    poison_specs.FLIP: _flip,
}


def _need(trigger: Trigger | None, plan: PoisoningPlan) -> Trigger:
    if trigger is None:
        raise ValueError(f"internal: {plan.kind}-label poisoning needs a trigger")
    return trigger


def perturbation_fn(
    model: LoadedModel,
    attack: ResolvedAttack,
    clip_min: float,
    clip_max: float,
    seed: int,
    should_stop: Callable[[], bool],
    batch_size: int = PERTURBATION_BATCH_SIZE,
    on_passes: Callable[[int], None] = lambda n: None,
) -> Perturb:
    """perturb(x, y): `attack` (untargeted, against the labels y) on `model`,
    run by the evasion engine; Cancelled when should_stop() turns true."""

    def perturb(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.asarray(x, dtype=np.float32)
        data = datasets.from_arrays(np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64))
        batches = engine.run_evasion(
            model, data, attack, clip_min, clip_max, 0, data.samples, batch_size, seed,
            want_images=True, should_stop=should_stop, on_passes=on_passes,
        )
        return np.concatenate([batch.adversarial for batch in batches])

    return perturb


def triggered(test_x: np.ndarray, trigger: Trigger | None) -> np.ndarray:
    """`test_x` with the trigger stamped (float32, a new array); the same
    images when there is no trigger (label flipping)."""
    if trigger is None:
        return np.asarray(test_x, dtype=np.float32)
    return trigger.stamp(test_x)


@dataclass(frozen=True)
class MeasuredBatch:
    """A trained model's probabilities on test samples [first_sample, first_sample + n)."""

    first_sample: int
    labels: np.ndarray  # int64 (n,)
    clean_probs: np.ndarray  # float32 (n, classes)
    triggered_probs: np.ndarray  # float32 (n, classes), on the triggered images

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])


def measure(
    model: LoadedModel, test: Dataset, trigger: Trigger | None, batch_size: int, should_stop: Callable[[], bool],
    examples=None, sources: Sequence[int] = (), target: int = -1,
) -> Iterator[MeasuredBatch]:
    """`model` on the clean and the triggered test set, batch by batch
    (nothing holds the whole set's probabilities); ends early once
    should_stop() is true. `examples` (an engine.ExamplePicker) is offered
    each batch's clean and triggered images; it prefers test images of a
    source class, right when clean, that the trigger sent to `target`."""
    for first in range(0, test.samples, batch_size):
        if should_stop():
            return
        x, y = test.batch(first, first + batch_size)
        stamped = triggered(x, trigger)
        batch = MeasuredBatch(
            first_sample=first,
            labels=y.astype(np.int64, copy=False),
            clean_probs=probabilities(model, x, batch_size),
            triggered_probs=probabilities(model, stamped, batch_size),
        )
        if examples is not None:
            clean_pred, triggered_pred = batch.clean_probs.argmax(1), batch.triggered_probs.argmax(1)
            attacked = np.isin(batch.labels, np.asarray(sources, dtype=np.int64)) & (batch.labels != target)
            hit = attacked & (clean_pred == batch.labels) & (triggered_pred == target)
            examples.offer(first, x, stamped, batch.labels, clean_pred, triggered_pred, hit)
        yield batch


# A fixed timestamp makes the archive the same bytes for the same data
# (numpy.savez stamps each member with the current time).


def write_npz(path: str | Path, data: PoisonedData, class_names=None) -> Path:
    """Writes the documented dataset format (x, y, optionally class_names)
    plus original_y and poisoned, byte-for-byte the same for the same data."""
    arrays = {
        "x": np.asarray(data.x, dtype=np.float32),
        "y": np.asarray(data.y, dtype=np.int64),
        "original_y": np.asarray(data.original_y, dtype=np.int64),
        "poisoned": np.asarray(data.poisoned, dtype=bool),
    }
    if class_names is not None:
        arrays["class_names"] = np.array(list(class_names), dtype=np.str_)
    return npz_writer.write_npz(path, arrays)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))
