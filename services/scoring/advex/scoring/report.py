"""Renders `metrics.EvasionMetrics` as the `advex.v1.Report` proto.

Only the metric fields are filled: name, state, model, dataset and the clip
range belong to the evaluation, which the gateway owns and fills in.
"""

from __future__ import annotations

from advex.scoring.metrics import AttackMetrics, CurveMetrics, EvasionMetrics, WorstCaseMetrics
from advex.v1 import report_pb2

# AttackResult fields copied one to one from AttackMetrics.
_ATTACK_FIELDS = (
    "adversarial_accuracy",
    "attack_success_rate",
    "mean_confidence_clean",
    "mean_confidence_adversarial",
    "mean_true_class_probability_clean",
    "mean_true_class_probability_adversarial",
    "robustness_score",
    "perturbation_linf_mean",
    "perturbation_linf_median",
    "perturbation_l2_mean",
    "perturbation_l2_median",
    "perturbation_l0_mean",
    "perturbation_l0_median",
    "clean_correct_samples",
    "successful_samples",
)


def to_report(metrics: EvasionMetrics) -> report_pb2.Report:
    return report_pb2.Report(
        samples=metrics.samples,
        clean_accuracy=metrics.clean_accuracy,
        mean_confidence_clean=metrics.mean_confidence_clean,
        mean_true_class_probability_clean=metrics.mean_true_class_probability_clean,
        attacks=[attack_result(a) for a in metrics.attacks],
        worst_case=[worst_case(w) for w in metrics.worst_case],
        robustness_score=metrics.robustness_score,
        curves=[curve(c) for c in metrics.curves],
    )


def attack_result(a: AttackMetrics) -> report_pb2.AttackResult:
    return report_pb2.AttackResult(
        attack=a.spec.attack,
        norm=a.spec.norm,
        eps=a.spec.eps,
        steps=a.spec.steps,
        step_size=a.spec.step_size,
        **{name: getattr(a, name) for name in _ATTACK_FIELDS},
    )


def worst_case(w: WorstCaseMetrics) -> report_pb2.WorstCase:
    return report_pb2.WorstCase(norm=w.norm, eps=w.eps, accuracy=w.accuracy, attacks=list(w.attacks))


def curve(c: CurveMetrics) -> report_pb2.RobustnessCurve:
    message = report_pb2.RobustnessCurve(
        attack=c.attack,
        norm=c.norm,
        points=[report_pb2.CurvePoint(eps=eps, adversarial_accuracy=acc) for eps, acc in c.points],
    )
    if c.eps_at_half_clean_accuracy is not None:
        message.eps_at_half_clean_accuracy = c.eps_at_half_clean_accuracy
    return message
