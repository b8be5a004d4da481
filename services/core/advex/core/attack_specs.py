"""The catalogue of evasion attacks and the validation of their parameters.

TensorFlow-free on purpose: the gateway rejects a bad AttackSpec before
queueing anything, and the attack service applies the very same rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from google.protobuf import json_format

from advex.core.errors import InvalidArgument
from advex.v1 import evasion_pb2

NORMS = {"inf": "inf", "linf": "inf", "l-inf": "inf", "np.inf": "inf", "2": "2", "l2": "2"}
MAX_STEPS = 10_000
MAX_RESTARTS = 100
MAX_DECAY = 10.0
# Parameters besides eps and norm, as AttackSpec names them.
KEYS = ("steps", "step_size", "random_init", "restarts", "decay")


@dataclass(frozen=True)
class AttackEntry:
    """One attack of the catalogue: what it is, which keys it takes, and
    their defaults. Validation, the CLI's help and the README table follow
    from these entries."""

    name: str
    description: str
    reference: str
    keys: tuple[str, ...]
    default_steps: int = 1
    # Default step size = step_size_factor * eps / steps.
    step_size_factor: float = 1.0
    default_random_init: bool = False
    default_decay: float = 0.0


ATTACKS: dict[str, AttackEntry] = {
    entry.name: entry
    for entry in (
        AttackEntry(
            "fgsm", "Fast Gradient (Sign) Method: one step of size eps", "Goodfellow et al. 2015", keys=()
        ),
        AttackEntry(
            "bim",
            "Basic Iterative Method (iterative FGSM): PGD from x itself, no random start",
            "Kurakin et al. 2017",
            keys=("steps", "step_size"),
            default_steps=10,
            step_size_factor=2.5,
        ),
        AttackEntry(
            "pgd",
            "Projected Gradient Descent from a random start in the eps-ball, with optional restarts",
            "Madry et al. 2018",
            keys=("steps", "step_size", "random_init", "restarts"),
            default_steps=40,
            # 2.5 * eps / steps lets PGD reach the ball's boundary from any
            # random start and still move along it.
            step_size_factor=2.5,
            default_random_init=True,
        ),
        AttackEntry(
            "mim",
            "Momentum Iterative Method: iterative FGSM on an accumulated, L1-normalised gradient",
            "Dong et al. 2018",
            keys=("steps", "step_size", "decay"),
            default_steps=10,
            default_decay=1.0,
        ),
    )
}


@dataclass(frozen=True)
class ResolvedAttack:
    """An AttackSpec with every default filled in and every value checked."""

    attack: str
    norm: str  # "inf" or "2"
    eps: float
    steps: int
    step_size: float
    random_init: bool
    restarts: int = 1
    decay: float = 0.0

    @property
    def entry(self) -> AttackEntry:
        return ATTACKS[self.attack]

    @property
    def label(self) -> str:
        shown = [key for key in ("steps", "decay") if key in self.entry.keys]
        if self.restarts > 1:
            shown.append("restarts")
        extra = "".join(f" {key}={getattr(self, key):g}" for key in shown)
        return f"{self.attack} L{self.norm} eps={self.eps:g}{extra}"

    @property
    def cost(self) -> int:
        """Forward+backward passes per sample: the unit of progress."""
        return self.steps * self.restarts

    def to_proto(self) -> evasion_pb2.AttackSpec:
        """The canonical spec: resolve(to_proto()) gives this value back."""
        message = evasion_pb2.AttackSpec(attack=self.attack, norm=self.norm, eps=self.eps)
        for key in self.entry.keys:
            setattr(message, key, getattr(self, key))
        return message


def _finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise InvalidArgument(f"{name} must be a finite number, got {value}")
    return float(value)


def resolve(spec: evasion_pb2.AttackSpec, where: str = "attack") -> ResolvedAttack:
    """Checks `spec` and fills defaults; InvalidArgument says what to fix."""
    name = spec.attack.strip().lower()
    if name not in ATTACKS:
        known = ", ".join(sorted(ATTACKS))
        raise InvalidArgument(f"{where}: unknown attack '{spec.attack}'; known attacks: {known}")
    entry = ATTACKS[name]
    norm = NORMS.get((spec.norm or "inf").strip().lower())
    if norm is None:
        raise InvalidArgument(f"{where}: unknown norm '{spec.norm}'; use 'inf' (L-infinity) or '2' (L2)")
    if not spec.HasField("eps"):
        raise InvalidArgument(f"{where}: eps (the perturbation budget) is required")
    eps = _finite(f"{where}: eps", spec.eps)
    if eps < 0:
        raise InvalidArgument(f"{where}: eps must be >= 0, got {eps:g}")
    for key in KEYS:
        if key not in entry.keys and spec.HasField(key):
            takes = f"takes {', '.join(entry.keys)}" if entry.keys else "takes only eps and norm"
            raise InvalidArgument(f"{where}: '{key}' does not apply to {name}, which {takes}")

    steps = spec.steps if spec.HasField("steps") else entry.default_steps
    if not 1 <= steps <= MAX_STEPS:
        raise InvalidArgument(f"{where}: steps must be between 1 and {MAX_STEPS}, got {steps}")
    if spec.HasField("step_size"):
        step_size = _finite(f"{where}: step_size", spec.step_size)
        if step_size <= 0:
            raise InvalidArgument(f"{where}: step_size must be > 0, got {step_size:g}")
    else:
        step_size = entry.step_size_factor * eps / steps
    random_init = spec.random_init if spec.HasField("random_init") else entry.default_random_init
    restarts = spec.restarts if spec.HasField("restarts") else 1
    if not 1 <= restarts <= MAX_RESTARTS:
        raise InvalidArgument(f"{where}: restarts must be between 1 and {MAX_RESTARTS}, got {restarts}")
    decay = _finite(f"{where}: decay", spec.decay) if spec.HasField("decay") else entry.default_decay
    if not 0 <= decay <= MAX_DECAY:
        raise InvalidArgument(f"{where}: decay must be between 0 and {MAX_DECAY:g}, got {decay:g}")
    return ResolvedAttack(name, norm, eps, steps, step_size, random_init, restarts, decay)


def spec_to_dict(spec: evasion_pb2.AttackSpec) -> dict:
    """The JSON-able form in which the gateway stores a spec."""
    return json_format.MessageToDict(spec, preserving_proto_field_name=True)


def spec_from_dict(values: dict) -> evasion_pb2.AttackSpec:
    return json_format.ParseDict(values, evasion_pb2.AttackSpec())


def check_clip_range(clip_min: float, clip_max: float) -> None:
    _finite("clip_min", clip_min)
    _finite("clip_max", clip_max)
    if not clip_min < clip_max:
        raise InvalidArgument(f"clip_min ({clip_min:g}) must be below clip_max ({clip_max:g})")
