"""The catalogue of backdoor poisoning: kinds, triggers, training recipes,
and the validation of a PoisoningSpec.

TensorFlow-free on purpose, like attack_specs: the gateway rejects a bad
spec before anything is queued, and the attack service applies the very same
rules before it trains. Three stages, each needing more than the last:

- `resolve(spec, clip_min, clip_max)`: the spec alone (and the value range);
- `check_against_model(resolved, num_classes, image_shape)`: the model's
  classes and input size;
- the data (pool sizes, pattern shapes) is checked by the attack service
  (advex.attack.poisoning), which holds it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from advex.core import attack_specs
from advex.core.errors import InvalidArgument
from advex.v1 import poisoning_pb2

DIRTY, CLEAN, FLIP = "dirty", "clean", "flip"
# Name -> one-line description, shown in error messages and `advex --help`.
KINDS = {
    DIRTY: "dirty-label (BadNets): stamp the trigger on source-class images and relabel them to the target",
    CLEAN: "clean-label (Turner et al. 2019): stamp target-class images and keep their labels",
    FLIP: "label flipping: no trigger, source-class labels changed to the target",
}
# Kinds whose poisoned images carry the trigger (and whose test images get it).
TRIGGERED_KINDS = frozenset({DIRTY, CLEAN})

SQUARE, CHECKER, PATTERN, BLEND = "square", "checker", "pattern", "blend"
TRIGGERS = {
    SQUARE: "a solid square patch (size, position, value)",
    CHECKER: "a checkerboard patch (size, position, value of the light squares)",
    PATTERN: "a user pattern and mask from a PATTERN artifact (pattern, position)",
    BLEND: "a full-image pattern mixed in with opacity alpha (noise from seed, or a PATTERN artifact)",
}
PATCH_TRIGGERS = frozenset({SQUARE, CHECKER, PATTERN})
POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "center")
DEFAULT_POSITION = "bottom-right"
DEFAULT_SIZE = 3
DEFAULT_ALPHA = 0.1

OPTIMIZERS = {
    "adam": "Adam (Kingma and Ba 2015)",
    "sgd": "SGD with momentum 0.9",
    "rmsprop": "RMSprop",
}
DEFAULT_EPOCHS = 30
MAX_EPOCHS = 1000
DEFAULT_BATCH_SIZE = 64
MAX_BATCH_SIZE = 4096
DEFAULT_LEARNING_RATE = 1e-3
MAX_LEARNING_RATE = 10.0
# One model per count plus the baseline: bounded, each is a whole training.
MAX_COUNTS = 32
# A count is images of one training set; int64 on the wire, sane here.
MAX_COUNT = 2**40

_XY = re.compile(r"\s*(\d+)\s*,\s*(\d+)\s*")


@dataclass(frozen=True)
class ResolvedTrigger:
    trigger: str
    size: int  # patch side for square and checker; 0 otherwise
    position: str  # a name of POSITIONS, or "x,y"
    value: float  # square: the patch value; checker: the light squares
    pattern: str  # artifact name, or ""
    alpha: float  # blend opacity; 0 otherwise
    seed: int

    def to_proto(self) -> poisoning_pb2.TriggerSpec:
        message = poisoning_pb2.TriggerSpec(trigger=self.trigger, pattern=self.pattern)
        if self.trigger in (SQUARE, CHECKER):
            message.size, message.value = self.size, self.value
        if self.trigger in PATCH_TRIGGERS:
            message.position = self.position
        if self.trigger == BLEND:
            message.alpha = self.alpha
            if not self.pattern:  # the seed makes the noise a pattern replaces
                message.seed = self.seed
        return message

    @property
    def label(self) -> str:
        if self.trigger == BLEND:
            source = f"pattern {self.pattern}" if self.pattern else f"noise seed {self.seed}"
            return f"blend alpha={self.alpha:g} ({source})"
        size = f" size={self.size}" if self.size else ""
        return f"{self.trigger}{size} at {self.position}"


@dataclass(frozen=True)
class ResolvedRecipe:
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str
    fine_tune: bool

    def to_proto(self) -> poisoning_pb2.TrainingRecipe:
        return poisoning_pb2.TrainingRecipe(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            optimizer=self.optimizer,
            fine_tune=self.fine_tune,
        )

    def steps_per_model(self, training_samples: int) -> int:
        return self.epochs * math.ceil(training_samples / self.batch_size)


@dataclass(frozen=True)
class ResolvedPoisoning:
    """A PoisoningSpec with every default filled in and every value checked
    that can be checked without the model or the data."""

    training_dataset: str
    test_dataset: str
    kind: str
    trigger: ResolvedTrigger | None  # None for flip
    # As requested; empty means every class but the target (see sources()).
    source_classes: tuple[int, ...]
    target_class: int
    counts: tuple[int, ...]
    fractions: tuple[float, ...]
    recipe: ResolvedRecipe
    seed: int
    perturbation: attack_specs.ResolvedAttack | None  # clean only

    def sources(self, num_classes: int) -> tuple[int, ...]:
        """The source classes in effect, ascending."""
        if self.source_classes:
            return tuple(sorted(self.source_classes))
        return tuple(c for c in range(num_classes) if c != self.target_class)

    def to_proto(self) -> poisoning_pb2.PoisoningSpec:
        """The canonical spec: resolve(to_proto()) gives this value back."""
        message = poisoning_pb2.PoisoningSpec(
            training_dataset=self.training_dataset,
            test_dataset=self.test_dataset,
            kind=self.kind,
            source_classes=list(self.source_classes),
            target_class=self.target_class,
            counts=list(self.counts),
            fractions=list(self.fractions),
            training=self.recipe.to_proto(),
            seed=self.seed,
        )
        if self.trigger is not None:
            message.trigger.CopyFrom(self.trigger.to_proto())
        if self.perturbation is not None:
            message.perturbation.CopyFrom(self.perturbation.to_proto())
        return message

    @property
    def patterns(self) -> tuple[str, ...]:
        """Artifact names of the trigger pattern, if one is used."""
        return (self.trigger.pattern,) if self.trigger is not None and self.trigger.pattern else ()


def _finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise InvalidArgument(f"{name} must be a finite number, got {value}")
    return float(value)


def _known(where: str, what: str, value: str, catalogue: dict[str, str]) -> str:
    name = value.strip().lower()
    if name not in catalogue:
        known = "; ".join(f"{k}: {v}" for k, v in catalogue.items())
        raise InvalidArgument(f"{where}: unknown {what} '{value}'; known: {known}")
    return name


def resolve_position(text: str, where: str = "trigger.position") -> str:
    """A position name of POSITIONS, or "x,y" in canonical form."""
    name = (text or DEFAULT_POSITION).strip().lower()
    if name in POSITIONS:
        return name
    match = _XY.fullmatch(name)
    if match is None:
        raise InvalidArgument(
            f"{where}: '{text}' is not a position; use one of {', '.join(POSITIONS)} or 'x,y' "
            "(column and row of the patch's top-left pixel, from 0)"
        )
    return f"{int(match[1])},{int(match[2])}"


def patch_origin(position: str, patch: tuple[int, int], image: tuple[int, int]) -> tuple[int, int]:
    """(row, column) of the patch's top-left pixel. InvalidArgument when the
    patch does not lie wholly inside the image."""
    (ph, pw), (h, w) = patch, image
    if ph > h or pw > w:
        raise InvalidArgument(
            f"the trigger is {ph}x{pw} pixels but the images are {h}x{w}; use a smaller trigger"
        )
    named = {
        "top-left": (0, 0),
        "top-right": (0, w - pw),
        "bottom-left": (h - ph, 0),
        "bottom-right": (h - ph, w - pw),
        "center": ((h - ph) // 2, (w - pw) // 2),
    }
    if position in named:
        return named[position]
    x, y = (int(v) for v in position.split(","))
    if x + pw > w or y + ph > h:
        raise InvalidArgument(
            f"a {ph}x{pw} trigger at x={x}, y={y} reaches outside the {h}x{w} images; "
            f"x must be at most {w - pw} and y at most {h - ph}"
        )
    return y, x


def resolve_trigger(
    spec: poisoning_pb2.TriggerSpec, clip_min: float, clip_max: float, where: str = "trigger"
) -> ResolvedTrigger:
    name = _known(where, "trigger", spec.trigger or "", TRIGGERS) if spec.trigger else None
    if name is None:
        raise InvalidArgument(f"{where}.trigger is required: one of {', '.join(TRIGGERS)}")

    def forbid(*fields: str) -> None:
        for field in fields:
            if spec.HasField(field) if field in ("size", "value", "alpha", "seed") else getattr(spec, field):
                raise InvalidArgument(f"{where}: '{field}' does not apply to a {name} trigger")

    size, value, alpha, seed, position, pattern = 0, clip_max, 0.0, 0, "", spec.pattern.strip()
    if name in (SQUARE, CHECKER):
        forbid("pattern", "alpha", "seed")
        size = spec.size if spec.HasField("size") else DEFAULT_SIZE
        if not 1 <= size <= 4096:
            raise InvalidArgument(f"{where}.size must be between 1 and 4096 pixels, got {size}")
        if spec.HasField("value"):
            value = _finite(f"{where}.value", spec.value)
            if not clip_min <= value <= clip_max:
                raise InvalidArgument(
                    f"{where}.value {value:g} is outside the data's range {clip_min:g}..{clip_max:g}; "
                    "a trigger must be a valid image value"
                )
        if name == CHECKER and value == clip_min:
            raise InvalidArgument(
                f"{where}.value equals clip_min, so the checkerboard would be one flat colour; use a larger value"
            )
    if name in PATCH_TRIGGERS:
        position = resolve_position(spec.position, f"{where}.position")
    if name == PATTERN:
        forbid("size", "value", "alpha", "seed")
        if not pattern:
            raise InvalidArgument(
                f"{where}.pattern is required for a pattern trigger: the name of a PATTERN artifact "
                "(an npz with pattern (H, W, C) and mask (H, W))"
            )
    if name == BLEND:
        forbid("size", "value", "position")
        alpha = _finite(f"{where}.alpha", spec.alpha) if spec.HasField("alpha") else DEFAULT_ALPHA
        if not 0 < alpha <= 1:
            raise InvalidArgument(f"{where}.alpha must be in (0, 1] (the pattern's opacity), got {alpha:g}")
        seed = spec.seed if spec.HasField("seed") else 0
        if pattern and spec.HasField("seed"):
            raise InvalidArgument(f"{where}: 'seed' makes a noise pattern; it does not apply with a pattern artifact")
    return ResolvedTrigger(name, size, position, float(value), pattern, float(alpha), int(seed))


def resolve_recipe(spec: poisoning_pb2.TrainingRecipe, where: str = "training") -> ResolvedRecipe:
    epochs = spec.epochs if spec.HasField("epochs") else DEFAULT_EPOCHS
    if not 1 <= epochs <= MAX_EPOCHS:
        raise InvalidArgument(f"{where}.epochs must be between 1 and {MAX_EPOCHS}, got {epochs}")
    batch_size = spec.batch_size if spec.HasField("batch_size") else DEFAULT_BATCH_SIZE
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InvalidArgument(f"{where}.batch_size must be between 1 and {MAX_BATCH_SIZE}, got {batch_size}")
    rate = _finite(f"{where}.learning_rate", spec.learning_rate) if spec.HasField("learning_rate") else (
        DEFAULT_LEARNING_RATE
    )
    if not 0 < rate <= MAX_LEARNING_RATE:
        raise InvalidArgument(f"{where}.learning_rate must be in (0, {MAX_LEARNING_RATE:g}], got {rate:g}")
    optimizer = _known(where, "optimizer", spec.optimizer, OPTIMIZERS) if spec.optimizer else "adam"
    return ResolvedRecipe(epochs, batch_size, rate, optimizer, spec.fine_tune)


def resolve(
    spec: poisoning_pb2.PoisoningSpec, clip_min: float, clip_max: float, where: str = "poisoning"
) -> ResolvedPoisoning:
    """Checks `spec` and fills defaults; InvalidArgument says what to fix."""
    attack_specs.check_clip_range(clip_min, clip_max)
    for field in ("training_dataset", "test_dataset"):
        if not getattr(spec, field).strip():
            raise InvalidArgument(f"{where}.{field} is required: the name of an uploaded dataset ('artifacts/<id>')")
    kind = _known(where, "kind", spec.kind, KINDS) if spec.kind else DIRTY
    has_trigger = spec.HasField("trigger")
    if kind in TRIGGERED_KINDS and not has_trigger:
        raise InvalidArgument(
            f"{where}.trigger is required for {kind}-label poisoning, e.g. {{trigger: 'square', size: 2}}"
        )
    if kind == FLIP and has_trigger:
        raise InvalidArgument(f"{where}.trigger does not apply to label flipping (kind 'flip' uses no trigger)")
    trigger = resolve_trigger(spec.trigger, clip_min, clip_max, f"{where}.trigger") if has_trigger else None

    target = spec.target_class
    if target < 0:
        raise InvalidArgument(f"{where}.target_class must be a class index (>= 0), got {target}")
    sources = tuple(spec.source_classes)
    if any(c < 0 for c in sources):
        raise InvalidArgument(f"{where}.source_classes must be class indices (>= 0), got {list(sources)}")
    if len(set(sources)) != len(sources):
        raise InvalidArgument(f"{where}.source_classes lists a class twice: {list(sources)}")
    if target in sources:
        raise InvalidArgument(
            f"{where}.source_classes contains the target class {target}; a source must differ from the target"
        )

    counts = tuple(spec.counts)
    fractions = tuple(_finite(f"{where}.fractions", f) for f in spec.fractions)
    if not counts and not fractions:
        raise InvalidArgument(f"{where}: give counts (images to poison, e.g. [5, 10, 20]) or fractions of the pool")
    if len(counts) + len(fractions) > MAX_COUNTS:
        raise InvalidArgument(
            f"{where}: at most {MAX_COUNTS} counts and fractions in all (one model is trained per count), "
            f"got {len(counts) + len(fractions)}"
        )
    for count in counts:
        if not 1 <= count <= MAX_COUNT:
            raise InvalidArgument(f"{where}.counts must each be at least 1 (images to poison), got {count}")
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise InvalidArgument(f"{where}.fractions must each be in (0, 1] (a share of the pool), got {fraction:g}")

    perturbation = None
    if spec.HasField("perturbation"):
        if kind != CLEAN:
            raise InvalidArgument(f"{where}.perturbation applies to clean-label poisoning only (kind 'clean')")
        perturbation = attack_specs.resolve(spec.perturbation, where=f"{where}.perturbation")
    return ResolvedPoisoning(
        training_dataset=spec.training_dataset.strip(),
        test_dataset=spec.test_dataset.strip(),
        kind=kind,
        trigger=trigger,
        source_classes=sources,
        target_class=target,
        counts=counts,
        fractions=fractions,
        recipe=resolve_recipe(spec.training, f"{where}.training"),
        seed=spec.seed,
        perturbation=perturbation,
    )


def check_against_model(resolved: ResolvedPoisoning, num_classes: int, image_shape: tuple[int, ...]) -> None:
    """InvalidArgument unless the classes and the patch trigger fit the model."""
    if resolved.target_class >= num_classes:
        raise InvalidArgument(
            f"target_class {resolved.target_class} is not one of the model's {num_classes} classes "
            f"(0..{num_classes - 1})"
        )
    outside = [c for c in resolved.source_classes if c >= num_classes]
    if outside:
        raise InvalidArgument(
            f"source_classes {outside} are not among the model's {num_classes} classes (0..{num_classes - 1})"
        )
    trigger = resolved.trigger
    if trigger is not None and trigger.size:
        if len(image_shape) != 3:
            raise InvalidArgument(f"images of shape {image_shape} are not (H, W, C); a patch trigger needs (H, W, C)")
        patch_origin(trigger.position, (trigger.size, trigger.size), image_shape[:2])


def counts_of_pool(resolved: ResolvedPoisoning, pool: int) -> tuple[int, ...]:
    """The counts to train, ascending and distinct: the requested counts and
    the fractions of `pool` (rounded, at least 1). InvalidArgument when a
    count exceeds what the pool holds."""
    if pool < 1:
        raise InvalidArgument(
            "the training set holds no image to poison: "
            + (
                f"no image of the target class {resolved.target_class}"
                if resolved.kind == CLEAN
                else "no image of the source classes"
            )
        )
    too_many = [c for c in resolved.counts if c > pool]
    if too_many:
        what = "target-class" if resolved.kind == CLEAN else "source-class"
        raise InvalidArgument(
            f"counts {too_many} exceed the {pool} {what} images the training set holds; "
            f"use counts of at most {pool}, or fractions of the pool"
        )
    from_fractions = (max(1, round(f * pool)) for f in resolved.fractions)
    return tuple(sorted(set(resolved.counts) | set(from_fractions)))

