"""Thresholds a report must meet, for CI pipelines: `advex evaluate ...
--fail-under T` (and `advex poison`) and `advex gate NAME --fail-under T`.

A threshold is METRIC[@SELECTOR] OP VALUE. OP is `=` or `>=` (the model
fails under VALUE) or `<=` (it fails above VALUE: for numbers where lower is
better, like a backdoor's attack_success_rate).

- `robustness_score=0.6`, `clean_accuracy=0.9`: the evasion report's own.
- An attack's number (`adversarial_accuracy`, `attack_success_rate`,
  `robustness_score`, `perturbation_l2_median`, any number of AttackResult)
  `@SELECTOR`, the `--attack` syntax matched against each result's spec:
  `@pgd` (every PGD result), `@pgd:eps=0.1`, `@pgd:eps=0.1,norm=inf,target=random`.
  Without a selector it holds for every attack (`robustness_score` without
  one is the report's).
- `worst_case@0.1=0.4`, `worst_case@inf:0.1=0.4`: the worst-case accuracy
  at that budget (every budget without a selector).
- Poisoning: a number of each poisoned model (`attack_success_rate<=0.2`,
  `clean_accuracy_drop<=0.01`, ...), `@count=20` for one count, `@baseline`
  for the clean baseline.

A threshold that matches nothing in the report (a typo, an attack that was
not run, an evasion metric on a poisoning report) is an error, never a
silent pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from google.protobuf.descriptor import FieldDescriptor

from advex.cli.client import CliError, attack_fields
from advex.cli.render import attack_label
from advex.v1 import report_pb2

FLAG = "--fail-under"
EXAMPLES = "e.g. robustness_score=0.6, adversarial_accuracy@pgd:eps=0.1=0.5, worst_case@0.1=0.4, " \
    "attack_success_rate<=0.2"


def _numbers(message) -> tuple[str, ...]:
    """The names of a message's single numeric fields."""
    numeric = {
        FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_INT32,
        FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT32, FieldDescriptor.CPPTYPE_UINT64,
    }
    return tuple(
        f.name for f in message.DESCRIPTOR.fields
        if f.cpp_type in numeric and not f.is_repeated
    )


EVASION_METRICS = ("robustness_score", "clean_accuracy")
# An attack's or a model's settings are not measurements to gate on.
ATTACK_METRICS = tuple(m for m in _numbers(report_pb2.AttackResult) if m not in ("eps", "steps", "step_size"))
POISONED_METRICS = tuple(m for m in _numbers(report_pb2.PoisonedModelResult) if m not in ("poison_count", "poison_fraction"))
WORST_CASE = "worst_case"


@dataclass(frozen=True)
class Threshold:
    text: str  # as given
    metric: str
    selector: str  # "" when none
    at_most: bool  # "<=": the number must not exceed value
    value: float

    def holds(self, actual: float) -> bool:
        return actual <= self.value if self.at_most else actual >= self.value


@dataclass(frozen=True)
class Outcome:
    threshold: Threshold
    subject: str  # what in the report was measured, e.g. "pgd inf eps=0.1 steps=40"
    actual: float

    @property
    def passed(self) -> bool:
        return self.threshold.holds(self.actual)

    def line(self) -> str:
        op = "<=" if self.threshold.at_most else ">="
        verdict = "ok" if self.passed else "FAILED"
        return f"{verdict}: {self.threshold.metric} of {self.subject} is {self.actual:.4g}, must be {op} " \
            f"{self.threshold.value:g} ({self.threshold.text})"


def parse_threshold(text: str) -> Threshold:
    """'adversarial_accuracy@pgd:eps=0.1=0.5' -> Threshold (the value is
    after the last '=')."""
    left, sep, value_text = text.strip().rpartition("=")
    at_most = left.endswith("<")
    if left.endswith(("<", ">")):
        left = left[:-1]
    try:
        value = float(value_text)
    except ValueError:
        value = math.nan
    if not sep or not left or math.isnan(value):
        raise CliError(f"{FLAG} {text}: write METRIC[@SELECTOR]=VALUE ({EXAMPLES})")
    metric, _, selector = left.partition("@")
    metric = metric.strip()
    known = set(EVASION_METRICS) | set(ATTACK_METRICS) | set(POISONED_METRICS) | {WORST_CASE}
    if metric not in known:
        raise CliError(
            f"{FLAG} {text}: unknown metric '{metric}'. Evasion: {', '.join(EVASION_METRICS)}, {WORST_CASE}@EPS, "
            f"or an attack's {', '.join(sorted(ATTACK_METRICS))}. Poisoning: a model's "
            f"{', '.join(sorted(POISONED_METRICS))}"
        )
    return Threshold(text=text, metric=metric, selector=selector.strip(), at_most=at_most, value=value)


def check(report: report_pb2.Report, thresholds: list[Threshold]) -> list[Outcome]:
    """Every threshold measured on every part of the report it selects."""
    outcomes: list[Outcome] = []
    for threshold in thresholds:
        found = _measure(report, threshold)
        if not found:
            raise CliError(
                f"{FLAG} {threshold.text}: nothing in this {report.WhichOneof('result')} report matches it; "
                f"it has {_contents(report)}"
            )
        outcomes.extend(found)
    return outcomes


def _measure(report, t: Threshold) -> list[Outcome]:
    kind = report.WhichOneof("result")
    if kind == "evasion":
        evasion = report.evasion
        if t.metric in EVASION_METRICS and not t.selector:
            return [Outcome(t, "the report", getattr(evasion, t.metric))]
        if t.metric == WORST_CASE:
            return [Outcome(t, f"{w.norm} eps={w.eps:g}", w.accuracy) for w in _worst_cases(evasion, t)]
        if t.metric in ATTACK_METRICS:
            return [Outcome(t, attack_label(r), getattr(r, t.metric)) for r in _attacks(evasion, t)]
    if kind == "poisoning" and t.metric in POISONED_METRICS:
        return [Outcome(t, subject, getattr(model, t.metric)) for subject, model in _poisoned(report.poisoning, t)]
    return []


def _contents(report) -> str:
    """What a threshold could select in `report`, briefly."""
    if report.WhichOneof("result") == "poisoning":
        counts = ", ".join(str(m.poison_count) for m in report.poisoning.poisoned)
        return f"the baseline and models poisoned with {counts or 'no'} images (@count=N, @baseline)"
    attacks = sorted({attack_label(r) for r in report.evasion.attacks})
    budgets = sorted({f"{w.norm}:{w.eps:g}" for w in report.evasion.worst_case})
    shown = "; ".join(attacks[:12]) + ("; ..." if len(attacks) > 12 else "")
    return f"attacks {shown or 'none'}, and worst-case budgets {', '.join(budgets) or 'none'}"


def _attacks(evasion, t: Threshold):
    if not t.selector:
        return list(evasion.attacks)
    from advex.core.attack_specs import NORMS

    wanted = attack_fields(t.selector, FLAG)
    name = wanted.pop("attack").strip().lower()

    def matches(result) -> bool:
        for key, value in wanted.items():
            if key == "norm":
                if NORMS.get(str(value).strip().lower(), value) != result.norm:
                    return False
            elif isinstance(value, float):
                if not math.isclose(getattr(result.spec, key), value, rel_tol=1e-9, abs_tol=1e-12):
                    return False
            elif getattr(result.spec, key) != value:
                return False
        return True

    return [r for r in evasion.attacks if r.attack == name and matches(r)]


def _worst_cases(evasion, t: Threshold):
    if not t.selector:
        return list(evasion.worst_case)
    from advex.core.attack_specs import NORMS

    norm_text, _, eps_text = t.selector.rpartition(":")
    try:
        eps = float(eps_text)
        if not math.isfinite(eps):
            raise ValueError(eps_text)
    except ValueError:
        raise CliError(f"{FLAG} {t.text}: the worst_case selector is EPS or NORM:EPS, e.g. worst_case@0.1 or "
                       "worst_case@inf:0.1") from None
    norm = NORMS.get(norm_text.strip().lower()) if norm_text else None
    if norm_text and norm is None:
        raise CliError(f"{FLAG} {t.text}: unknown norm '{norm_text}'; the worst_case selector's norm is inf or 2")
    return [w for w in evasion.worst_case
            if math.isclose(w.eps, eps, rel_tol=1e-9, abs_tol=1e-12) and (norm is None or w.norm == norm)]


def _poisoned(poisoning, t: Threshold):
    models = [(f"the model poisoned with {m.poison_count} images", m) for m in poisoning.poisoned]
    if not t.selector:
        return models
    if t.selector == "baseline":
        return [("the clean baseline", poisoning.baseline)] if poisoning.HasField("baseline") else []
    key, _, count = t.selector.partition("=")
    if key.strip() != "count" or not count.strip().isdigit():
        raise CliError(f"{FLAG} {t.text}: a poisoning selector is count=N or baseline")
    return [(s, m) for s, m in models if m.poison_count == int(count)]
