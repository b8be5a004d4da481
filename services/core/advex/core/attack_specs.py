"""The catalogue of evasion attacks and the validation of their parameters.

TensorFlow-free on purpose: the gateway rejects a bad AttackSpec before
queueing anything, and the attack service applies the very same rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf import json_format

from advex.core.errors import InvalidArgument
from advex.v1 import evasion_pb2

NORMS = {"inf": "inf", "linf": "inf", "l-inf": "inf", "np.inf": "inf", "2": "2", "l2": "2"}
MAX_STEPS = 10_000
MAX_RESTARTS = 100
# Target modes besides a class index (see AttackSpec.target).
TARGET_MODES = ("random", "least_likely", "most_likely")


@dataclass(frozen=True)
class Param:
    """One key an attack takes besides eps, norm and target: its type, its
    default and its allowed range. `default` may be a function of the
    resolved (eps, steps), for step sizes that scale with the budget."""

    key: str
    kind: type  # int, float, bool or str
    default: object
    help: str
    low: float | None = None
    high: float | None = None
    # The range excludes `low` itself (e.g. a step size must be > 0).
    low_open: bool = False
    choices: tuple[str, ...] = ()
    # An extra rule on the value: (predicate, what it must be).
    rule: tuple[Callable[[object], bool], str] | None = None

    def allowed(self) -> str:
        """The allowed values, as the README and error messages say them."""
        if self.choices:
            return " or ".join(f"'{c}'" for c in self.choices)
        if self.kind is bool:
            return "true or false"
        if self.low is not None and self.high is not None:
            return f"{self.low:g}..{self.high:g}" + (f" ({self.rule[1]})" if self.rule else "")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return "any"

    def requirement(self) -> str:
        """The allowed values, as an error message says them."""
        if self.low is not None and self.high is not None and not self.choices:
            return f"between {self.low:g} and {self.high:g}" + (f" ({self.rule[1]})" if self.rule else "")
        return self.allowed()

    def shown_default(self) -> str:
        if callable(self.default):
            return self.default.__doc__ or "computed"
        if self.kind is bool:
            return "true" if self.default else "false"
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    def check(self, value, where: str):
        if self.kind is float:
            value = _finite(f"{where}: {self.key}", value)
        if self.choices:
            value = str(value).strip().lower()
            if value not in self.choices:
                raise InvalidArgument(f"{where}: {self.key} must be {self.requirement()}, got '{value}'")
            return value
        if self.kind is bool:
            return bool(value)
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and value > self.high
        if too_low or too_high or (self.rule and not self.rule[0](value)):
            raise InvalidArgument(f"{where}: {self.key} must be {self.requirement()}, got {value:g}")
        return value


def _steps(default: int) -> Param:
    return Param("steps", int, default, "iterations", low=1, high=MAX_STEPS)


def _step_size(factor: float) -> Param:
    def default(eps: float, steps: int) -> float:
        return factor * eps / steps

    default.__doc__ = f"{factor:g} * eps / steps" if factor != 1 else "eps / steps"
    return Param("step_size", float, default, "step length per iteration", low=0, low_open=True)


_RESTARTS = Param(
    "restarts", int, 1, "independent runs from random starts; a sample is broken if any run breaks it",
    low=1, high=MAX_RESTARTS,
)


@dataclass(frozen=True)
class AttackEntry:
    """One attack of the catalogue. Validation, the CLI's help and the
    README's table follow from these entries; the engine has one function
    per name (advex.attack.engine)."""

    name: str
    description: str
    reference: str
    params: tuple[Param, ...]
    norms: tuple[str, ...] = ("inf", "2")
    # "required", or "optional" for a minimal-perturbation attack.
    budget: str = "required"
    # For the gradient-masking checks: does it follow the model's gradients,
    # and does it take more than one step?
    uses_gradients: bool = True
    iterative: bool = True
    # Model passes per sample, from the resolved values: the unit of progress.
    cost: Callable[[dict], int] = lambda values: values.get("steps", 1) * values.get("restarts", 1)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.params)

    def param(self, key: str) -> Param:
        return next(p for p in self.params if p.key == key)


ATTACKS: dict[str, AttackEntry] = {
    entry.name: entry
    for entry in (
        AttackEntry(
            "fgsm", "Fast Gradient (Sign) Method: one step of size eps", "Goodfellow et al. 2015", params=(),
            iterative=False,
        ),
        AttackEntry(
            "bim",
            "Basic Iterative Method (iterative FGSM): PGD from x itself, no random start",
            "Kurakin et al. 2017",
            params=(_steps(10), _step_size(2.5)),
        ),
        AttackEntry(
            "pgd",
            "Projected Gradient Descent from a random start in the eps-ball, with optional restarts",
            "Madry et al. 2018",
            # 2.5 * eps / steps lets PGD reach the ball's boundary from any
            # random start and still move along it.
            params=(
                _steps(40),
                _step_size(2.5),
                Param("random_init", bool, True, "start from a uniform random point in the eps-ball"),
                _RESTARTS,
            ),
        ),
        AttackEntry(
            "mim",
            "Momentum Iterative Method: iterative FGSM on an accumulated, L1-normalised gradient",
            "Dong et al. 2018",
            params=(
                _steps(10),
                _step_size(1.0),
                Param("decay", float, 1.0, "decay factor mu of the momentum", low=0, high=10.0),
            ),
        ),
        AttackEntry(
            "cw",
            "Carlini-Wagner L2: the smallest L2 perturbation that changes the class, by Adam in tanh "
            "space with a binary search over the constant c; no budget (with eps, examples beyond it "
            "are discarded)",
            "Carlini and Wagner 2017",
            params=(
                _steps(100),
                Param("binary_search_steps", int, 5, "rounds of binary search over c", low=1, high=100),
                # 0.1, not the original's 0.01 with 10,000 steps: in 100
                # steps Adam must move saturated pixels (|w| ~ 7 in tanh
                # space) across; 0.01 left 11% of the digits unbroken.
                Param("learning_rate", float, 0.1, "Adam's learning rate", low=0, low_open=True),
                Param("initial_const", float, 0.01, "c the search starts from", low=0, low_open=True),
                Param("confidence", float, 0.0, "logit margin an example must reach", low=0),
            ),
            norms=("2",),
            budget="optional",
            cost=lambda values: values["steps"] * values["binary_search_steps"],
        ),
        AttackEntry(
            "spsa",
            "SPSA: gradient-free, estimates the gradient of the logit margin from random +/-delta "
            "probes of the outputs and steps with Adam (for models whose gradients are hidden or "
            "useless)",
            "Uesato et al. 2018",
            params=(
                _steps(100),
                Param("learning_rate", float, 0.01, "Adam's learning rate", low=0, low_open=True),
                Param("delta", float, 0.01, "size of the finite-difference probe", low=0, low_open=True),
                Param(
                    "samples", int, 128, "probes per step", low=2, high=8192,
                    rule=(lambda v: v % 2 == 0, "even"),
                ),
            ),
            norms=("inf",),
            uses_gradients=False,
            cost=lambda values: values["steps"] * values["samples"],
        ),
        AttackEntry(
            "apgd",
            "Auto-PGD: step size halved at checkpoints when progress stalls, momentum 0.75, returns "
            "the best point found; no step size to tune",
            "Croce and Hein 2020",
            params=(
                _steps(100),
                Param("loss", str, "ce", "ce (cross-entropy) or dlr (difference of logits ratio)",
                      choices=("ce", "dlr")),
                _RESTARTS,
            ),
        ),
    )
}


@dataclass(frozen=True)
class ResolvedAttack:
    """An AttackSpec with every default filled in and every value checked.

    Keys the attack does not take hold neutral values (steps 1, restarts 1,
    ...); `to_proto` writes only the attack's own keys."""

    attack: str
    norm: str  # "inf" or "2"
    eps: float | None  # None: no budget (cw without eps)
    steps: int = 1
    step_size: float = 0.0
    random_init: bool = False
    restarts: int = 1
    decay: float = 0.0
    binary_search_steps: int = 1
    learning_rate: float = 0.0
    initial_const: float = 0.0
    confidence: float = 0.0
    delta: float = 0.0
    samples: int = 0
    loss: str = ""
    # "" (untargeted), a class index as text, or one of TARGET_MODES.
    target: str = ""

    @property
    def entry(self) -> AttackEntry:
        return ATTACKS[self.attack]

    @property
    def bounded(self) -> bool:
        return self.eps is not None

    @property
    def targeted(self) -> bool:
        return bool(self.target)

    @property
    def target_class(self) -> int | None:
        """The class of target=K; None for untargeted and the per-sample modes."""
        return int(self.target) if self.target and self.target not in TARGET_MODES else None

    @property
    def label(self) -> str:
        shown = [key for key in ("steps", "decay", "loss", "binary_search_steps") if key in self.entry.keys]
        if self.restarts > 1:
            shown.append("restarts")
        extra = "".join(
            f" {key}={value:g}" if isinstance(value, float | int) else f" {key}={value}"
            for key, value in ((k, getattr(self, k)) for k in shown)
        )
        budget = f"eps={self.eps:g}" if self.bounded else "unbounded"
        target = f" target={self.target}" if self.target else ""
        return f"{self.attack} L{self.norm} {budget}{extra}{target}"

    @property
    def cost(self) -> int:
        """Model passes per sample: the unit of progress."""
        return self.entry.cost({key: getattr(self, key) for key in self.entry.keys})

    def to_proto(self) -> evasion_pb2.AttackSpec:
        """The canonical spec: resolve(to_proto()) gives this value back."""
        message = evasion_pb2.AttackSpec(attack=self.attack, norm=self.norm)
        if self.bounded:
            message.eps = self.eps
        for key in self.entry.keys:
            setattr(message, key, getattr(self, key))
        if self.target:
            message.target = self.target
        return message


def _finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise InvalidArgument(f"{name} must be a finite number, got {value}")
    return float(value)


def _target(text: str, where: str) -> str:
    value = text.strip().lower()
    if value.replace("-", "_") in TARGET_MODES:
        return value.replace("-", "_")
    try:
        target = int(value)
    except ValueError:
        raise InvalidArgument(
            f"{where}: target must be a class index or one of {', '.join(TARGET_MODES)}, got '{text}'"
        ) from None
    if target < 0:
        raise InvalidArgument(f"{where}: target must be a class index >= 0, got {target}")
    return str(target)


def resolve(spec: evasion_pb2.AttackSpec, where: str = "attack") -> ResolvedAttack:
    """Checks `spec` and fills defaults; InvalidArgument says what to fix."""
    name = spec.attack.strip().lower()
    if name not in ATTACKS:
        known = ", ".join(sorted(ATTACKS))
        raise InvalidArgument(f"{where}: unknown attack '{spec.attack}'; known attacks: {known}")
    entry = ATTACKS[name]
    norm = NORMS.get((spec.norm or entry.norms[0]).strip().lower())
    if norm is None:
        raise InvalidArgument(f"{where}: unknown norm '{spec.norm}'; use 'inf' (L-infinity) or '2' (L2)")
    if norm not in entry.norms:
        supported = " and ".join(f"L{n}" for n in entry.norms)
        raise InvalidArgument(f"{where}: {name} supports only {supported}, got norm '{spec.norm}'")
    eps = None
    if spec.HasField("eps"):
        eps = _finite(f"{where}: eps", spec.eps)
        if eps < 0:
            raise InvalidArgument(f"{where}: eps must be >= 0, got {eps:g}")
    elif entry.budget == "required":
        raise InvalidArgument(f"{where}: eps (the perturbation budget) is required for {name}")
    for key in KEYS:
        if key not in entry.keys and spec.HasField(key):
            takes = f"takes {', '.join(entry.keys)}" if entry.keys else "takes only eps and norm"
            raise InvalidArgument(f"{where}: '{key}' does not apply to {name}, which {takes} (and target)")
    values: dict = {}
    for param in entry.params:
        if param.key == "step_size":
            continue  # its default depends on eps and steps, resolved below
        given = spec.HasField(param.key)
        value = getattr(spec, param.key) if given else param.default
        values[param.key] = param.check(value, where) if given else value
    if "step_size" in entry.keys:
        param = entry.param("step_size")
        if spec.HasField("step_size") and not (eps == 0 and spec.step_size == 0):
            values["step_size"] = param.check(spec.step_size, where)
        else:
            # With eps 0 there is nothing to step: the default is 0, and the
            # canonical spec (step_size 0) resolves again.
            values["step_size"] = param.default(eps, values["steps"])
    elif name == "fgsm":
        values["step_size"] = eps  # its one step is the whole budget
    target = _target(spec.target, where) if spec.HasField("target") and spec.target.strip() else ""
    return ResolvedAttack(name, norm, eps, target=target, **values)


@dataclass(frozen=True)
class Suite:
    """A preset list of attacks, run at each budget given."""

    name: str
    description: str
    # (attack, keys) pairs; eps and norm come from the budgets.
    members: tuple[tuple[str, dict], ...]

    def expand(self, budgets: list[float], norm: str = "inf") -> list[evasion_pb2.AttackSpec]:
        return [
            evasion_pb2.AttackSpec(attack=attack, norm=norm, eps=eps, **keys)
            for eps in budgets
            for attack, keys in self.members
        ]


SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        Suite(
            "standard",
            "what a careful evaluator runs (after AutoAttack, Croce and Hein 2020): APGD with the "
            "cross-entropy loss, APGD with the targeted DLR loss towards the most likely wrong class, and "
            "FGSM for reference, at each budget; the report's worst case per budget is over all three",
            members=(("apgd", {"loss": "ce"}), ("apgd", {"loss": "dlr", "target": "most_likely"}), ("fgsm", {})),
        ),
    )
}


# Every key an AttackSpec may carry besides attack, norm, eps and target.
KEYS: tuple[str, ...] = tuple(dict.fromkeys(p.key for entry in ATTACKS.values() for p in entry.params))


def markdown_table() -> str:
    """The README's attack table, made from the catalogue (a test keeps the
    README equal to it: paste this function's output there after a change)."""
    lines = [
        "| attack | what | norms | budget | keys (default; allowed) | reference |",
        "|---|---|---|---|---|---|",
    ]
    for entry in ATTACKS.values():
        keys = "<br>".join(f"`{p.key}` ({p.shown_default()}; {p.allowed()})" for p in entry.params) or "none"
        norms = ", ".join("L∞" if n == "inf" else "L2" for n in entry.norms)
        budget = "eps required" if entry.budget == "required" else "none (eps optional)"
        lines.append(f"| `{entry.name}` | {entry.description} | {norms} | {budget} | {keys} | {entry.reference} |")
    return "\n".join(lines) + "\n"


def check_for_model(attack: ResolvedAttack, num_classes: int, where: str = "attack") -> None:
    """What can be checked only against the model: the target class exists,
    and there are classes enough for the attack's goal and loss."""
    if attack.target_class is not None and attack.target_class >= num_classes:
        raise InvalidArgument(
            f"{where}: target {attack.target_class} is not a class of this model, which has classes 0..{num_classes - 1}"
        )
    if attack.targeted and num_classes < 2:
        raise InvalidArgument(f"{where}: a targeted attack needs a model with at least 2 classes")
    if attack.loss == "dlr":
        # DLR divides by the gap between the top logit and the third (the
        # mean of the third and fourth when targeted).
        needed = 4 if attack.targeted else 3
        if num_classes < needed:
            raise InvalidArgument(
                f"{where}: loss=dlr needs at least {needed} classes, this model has {num_classes}; use loss=ce"
            )


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
