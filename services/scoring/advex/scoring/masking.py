"""Gradient masking, shown in words: checks on finished evasion metrics.

A defence that hides or breaks the model's gradients makes gradient attacks
fail without making the model robust (Athalye, Carlini and Wagner 2018,
"Obfuscated Gradients Give a False Sense of Security"; Carlini et al. 2019,
"On Evaluating Adversarial Robustness", section 5 and its checklist). Each
check below is one piece of evidence those papers name; a warning says what
was seen, with the numbers. No warning does not prove there is no masking.

"Beats" means a lower adversarial accuracy by at least MARGIN_SAMPLES samples
and MARGIN_ACCURACY, so sampling noise of a few samples is not reported.
Only untargeted attacks are compared with each other: a targeted attack
chases one class and is legitimately weaker at making the model wrong.

- gradient_free_beats_gradient: at one budget, a gradient-free attack
  (SPSA) beats every gradient attack. A gradient attack follows the true
  gradient and should do at least as well as one that estimates it.
- single_step_beats_iterative: at one budget, FGSM (one step) beats an
  iterative gradient attack (BIM, PGD, MIM, APGD), which could have taken the
  same step.
- accuracy_rises_with_eps: on one curve, a larger budget leaves a higher
  accuracy than a smaller one: the larger ball contains the smaller.
- accuracy_not_falling: at an L-inf budget of half the data range or more,
  every input can be moved to the same mid-range image, so at most the
  largest class's share of the samples can stay right; more stayed right
  under the strongest attack at that budget (its worst case).
- unbounded_attack_fails: an attack without a budget (CW) must in the end
  break every sample; it broke fewer than UNBOUNDED_MIN_SUCCESS of them.

One check is not about masking but about the request:
- budget_covers_input_range: an L-inf eps of the whole data range or more
  lets an attack turn any input into any other, so every result at that
  budget is trivial (eps=1e9 on 0..1 images, a budget in the wrong scale).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MARGIN_SAMPLES = 2
MARGIN_ACCURACY = 0.01
UNBOUNDED_MIN_SUCCESS = 0.95


@dataclass(frozen=True)
class MaskingWarning:
    check: str
    message: str


def _beats(lower: float, higher: float, samples: int) -> bool:
    gap = higher - lower
    return gap >= MARGIN_ACCURACY and gap * samples >= MARGIN_SAMPLES - 1e-9


def check(attacks: Sequence, worst_case: Sequence, curves: Sequence, samples: int,
          largest_class_share: float, clip_range: tuple[float, float] | None) -> tuple[MaskingWarning, ...]:
    """`attacks`, `worst_case`, `curves`: metrics.AttackMetrics,
    WorstCaseMetrics and CurveMetrics of one evaluation."""
    found: list[MaskingWarning] = []
    budgets: dict[tuple[str, float], list] = {}
    for a in attacks:
        if a.spec.bounded and not a.spec.targeted:
            budgets.setdefault((a.spec.norm, a.spec.eps), []).append(a)

    for (norm, eps), members in sorted(budgets.items()):
        where = f"at L{norm} eps={eps:g}"
        gradient = [a for a in members if a.spec.entry.uses_gradients]
        best_gradient = min(gradient, key=lambda a: a.adversarial_accuracy, default=None)
        for free in (a for a in members if not a.spec.entry.uses_gradients):
            if best_gradient is not None and _beats(free.adversarial_accuracy, best_gradient.adversarial_accuracy, samples):
                found.append(MaskingWarning(
                    "gradient_free_beats_gradient",
                    f"{where}, gradient-free {free.spec.attack} leaves adversarial accuracy "
                    f"{free.adversarial_accuracy:.4f}, below the best gradient attack's "
                    f"({best_gradient.spec.attack}: {best_gradient.adversarial_accuracy:.4f}): the model's "
                    f"gradients may be masked, so gradient attacks understate its weakness",
                ))
        for single in (a for a in gradient if not a.spec.entry.iterative):
            for iterative in (a for a in gradient if a.spec.entry.iterative):
                if _beats(single.adversarial_accuracy, iterative.adversarial_accuracy, samples):
                    found.append(MaskingWarning(
                        "single_step_beats_iterative",
                        f"{where}, one-step {single.spec.attack} leaves adversarial accuracy "
                        f"{single.adversarial_accuracy:.4f}, below iterative {iterative.spec.label} "
                        f"({iterative.adversarial_accuracy:.4f}): the iterative attack is stuck, a sign of "
                        f"gradient masking (or of too few steps or too small a step size)",
                    ))

    for curve in curves:
        lowest_so_far = None
        for eps, accuracy in curve.points:
            if lowest_so_far is not None and _beats(lowest_so_far[1], accuracy, samples):
                name = f"{curve.attack} L{curve.norm}" + (f" target={curve.target}" if curve.target else "")
                found.append(MaskingWarning(
                    "accuracy_rises_with_eps",
                    f"{name}: adversarial accuracy {accuracy:.4f} at eps={eps:g} is above "
                    f"{lowest_so_far[1]:.4f} at the smaller eps={lowest_so_far[0]:g}; a larger budget can "
                    f"only help the attacker, so the attack is failing to find what exists",
                ))
                break
            if lowest_so_far is None or accuracy < lowest_so_far[1]:
                lowest_so_far = (eps, accuracy)

    if clip_range is not None:
        full_range = clip_range[1] - clip_range[0]
        for eps in sorted({a.spec.eps for a in attacks if a.spec.bounded and a.spec.norm == "inf"}):
            if eps >= full_range:
                found.append(MaskingWarning(
                    "budget_covers_input_range",
                    f"L-inf eps={eps:g} is the whole data range ({clip_range[0]:g} to {clip_range[1]:g}) or more: "
                    f"an attack may replace any input by any other, so every result at this budget is trivial; "
                    f"give eps in the data's scale (e.g. 8/255 of 1 for 0..1 images)",
                ))
        half_range = full_range / 2
        for w in worst_case:
            if w.norm == "inf" and w.eps >= half_range and _beats(largest_class_share, w.accuracy, samples):
                found.append(MaskingWarning(
                    "accuracy_not_falling",
                    f"at L-inf eps={w.eps:g}, half the data range or more, accuracy is {w.accuracy:.4f} under "
                    f"the strongest attack ({', '.join(w.attacks)}), yet every input can be moved to the "
                    f"same mid-range image there, where at most the largest class's share "
                    f"({largest_class_share:.4f}) stays right: the attacks are failing",
                ))

    for a in attacks:
        if not a.spec.bounded and a.attacked_samples and a.attack_success_rate < UNBOUNDED_MIN_SUCCESS:
            found.append(MaskingWarning(
                "unbounded_attack_fails",
                f"{a.spec.label} has no budget yet broke only {a.attack_success_rate:.4f} of the attacked "
                f"samples (below {UNBOUNDED_MIN_SUCCESS:g}): give it more steps or binary search steps; if "
                f"that does not help, the model's gradients may be masked",
            ))
    return tuple(found)
