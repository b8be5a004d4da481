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

# Name -> one-line description, shown in error messages and `advex --help`.
ATTACKS = {
    "fgsm": "Fast Gradient (Sign) Method, one step of size eps (Goodfellow et al. 2015)",
    "pgd": "Projected Gradient Descent with random start (Madry et al. 2018)",
}
NORMS = {"inf": "inf", "linf": "inf", "l-inf": "inf", "np.inf": "inf", "2": "2", "l2": "2"}
PGD_DEFAULT_STEPS = 40
MAX_STEPS = 10_000


@dataclass(frozen=True)
class ResolvedAttack:
    """An AttackSpec with every default filled in and every value checked."""

    attack: str
    norm: str  # "inf" or "2"
    eps: float
    steps: int
    step_size: float
    random_init: bool

    @property
    def label(self) -> str:
        extra = f" steps={self.steps}" if self.attack == "pgd" else ""
        return f"{self.attack} L{self.norm} eps={self.eps:g}{extra}"

    @property
    def cost(self) -> int:
        """Forward+backward passes per sample: the unit of progress."""
        return self.steps

    def to_proto(self) -> evasion_pb2.AttackSpec:
        """The canonical spec: resolve(to_proto()) gives this value back."""
        if self.attack == "fgsm":
            return evasion_pb2.AttackSpec(attack=self.attack, norm=self.norm, eps=self.eps)
        return evasion_pb2.AttackSpec(
            attack=self.attack,
            norm=self.norm,
            eps=self.eps,
            steps=self.steps,
            step_size=self.step_size,
            random_init=self.random_init,
        )


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
    norm = NORMS.get((spec.norm or "inf").strip().lower())
    if norm is None:
        raise InvalidArgument(f"{where}: unknown norm '{spec.norm}'; use 'inf' (L-infinity) or '2' (L2)")
    if not spec.HasField("eps"):
        raise InvalidArgument(f"{where}: eps (the perturbation budget) is required")
    eps = _finite(f"{where}: eps", spec.eps)
    if eps < 0:
        raise InvalidArgument(f"{where}: eps must be >= 0, got {eps:g}")

    if name == "fgsm":
        for field in ("steps", "step_size", "random_init"):
            if spec.HasField(field):
                raise InvalidArgument(f"{where}: fgsm is a single step of size eps; '{field}' applies to pgd only")
        return ResolvedAttack(name, norm, eps, steps=1, step_size=eps, random_init=False)

    steps = spec.steps if spec.HasField("steps") else PGD_DEFAULT_STEPS
    if not 1 <= steps <= MAX_STEPS:
        raise InvalidArgument(f"{where}: steps must be between 1 and {MAX_STEPS}, got {steps}")
    if spec.HasField("step_size"):
        step_size = _finite(f"{where}: step_size", spec.step_size)
        if step_size <= 0:
            raise InvalidArgument(f"{where}: step_size must be > 0, got {step_size:g}")
    else:
        # Madry et al.: 2.5 * eps / steps lets PGD reach the ball's boundary
        # from any random start and still move along it.
        step_size = 2.5 * eps / steps
    random_init = spec.random_init if spec.HasField("random_init") else True
    return ResolvedAttack(name, norm, eps, steps, step_size, random_init)


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
