"""Renders `metrics.EvasionMetrics` as `advex.v1.EvasionReport` and
`poisoning.PoisoningMetrics` as `advex.v1.PoisoningReport`.

`evasion_figures` gives what the HTML page draws beyond the numbers
(histograms, per-class counts, confusion, example images) for RenderReport.

Only the metric fields are filled. What belongs to the evaluation (the
Report around them: name, state, model, dataset, clip range; and in a
PoisoningReport the spec, datasets, pattern, training and pool sizes, each
model's artifacts and training figures) the gateway owns and fills in.
"""

from __future__ import annotations

from advex.core import tensors
from advex.internal.v1 import records_pb2, scoring_service_pb2
from advex.scoring.metrics import AttackMetrics, CurveMetrics, EvasionMetrics, WorstCaseMetrics
from advex.scoring.poisoning import PoisonedModelMetrics, PoisoningMetrics
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
    "attacked_samples",
    "successful_samples",
)


# PoisonedModelResult fields copied one to one from PoisonedModelMetrics.
_MODEL_FIELDS = (
    "poison_count",
    "poison_fraction",
    "clean_accuracy",
    "clean_accuracy_source",
    "clean_accuracy_non_source",
    "clean_accuracy_drop",
    "attack_success_rate",
    "triggered_accuracy_source",
    "triggered_accuracy_non_source",
    "accuracy_gap",
    "per_class_accuracy",
    "successful_samples",
)


def evasion_report(metrics: EvasionMetrics) -> report_pb2.EvasionReport:
    return report_pb2.EvasionReport(
        samples=metrics.samples,
        clean_accuracy=metrics.clean_accuracy,
        mean_confidence_clean=metrics.mean_confidence_clean,
        mean_true_class_probability_clean=metrics.mean_true_class_probability_clean,
        attacks=[attack_result(a) for a in metrics.attacks],
        worst_case=[worst_case(w) for w in metrics.worst_case],
        robustness_score=metrics.robustness_score,
        curves=[curve(c) for c in metrics.curves],
        warnings=[report_pb2.EvaluationWarning(check=w.check, message=w.message) for w in metrics.warnings],
    )


def attack_result(a: AttackMetrics) -> report_pb2.AttackResult:
    return report_pb2.AttackResult(
        attack=a.spec.attack,
        norm=a.spec.norm,
        eps=a.spec.eps or 0.0,
        unbounded=not a.spec.bounded,
        target=a.spec.target,
        steps=a.spec.steps,
        step_size=a.spec.step_size,
        spec=a.spec.to_proto(),
        **{name: getattr(a, name) for name in _ATTACK_FIELDS},
    )


def worst_case(w: WorstCaseMetrics) -> report_pb2.WorstCase:
    return report_pb2.WorstCase(norm=w.norm, eps=w.eps, accuracy=w.accuracy, attacks=list(w.attacks))


def curve(c: CurveMetrics) -> report_pb2.RobustnessCurve:
    message = report_pb2.RobustnessCurve(
        attack=c.attack,
        norm=c.norm,
        target=c.target,
        points=[report_pb2.CurvePoint(eps=eps, adversarial_accuracy=acc) for eps, acc in c.points],
    )
    if c.eps_at_half_clean_accuracy is not None:
        message.eps_at_half_clean_accuracy = c.eps_at_half_clean_accuracy
    return message


def poisoning_report(metrics: PoisoningMetrics) -> report_pb2.PoisoningReport:
    message = report_pb2.PoisoningReport(
        test_samples=metrics.test_samples,
        source_classes=list(metrics.source_classes),
        attacked_test_samples=metrics.attacked_test_samples,
        baseline=model_result(metrics.baseline),
        poisoned=[model_result(m) for m in metrics.poisoned],
    )
    if metrics.count_at_90_percent_asr is not None:
        message.count_at_90_percent_asr = metrics.count_at_90_percent_asr
    return message


def model_result(m: PoisonedModelMetrics) -> report_pb2.PoisonedModelResult:
    return report_pb2.PoisonedModelResult(**{name: getattr(m, name) for name in _MODEL_FIELDS})


def evasion_figures(metrics: EvasionMetrics, report: report_pb2.EvasionReport) -> scoring_service_pb2.EvasionFigures:
    """Every attack's confidence histograms, in header order; the per-class
    counts, confusion and examples of the strongest attack only (the one
    the page shows in detail, html_report.strongest_attack), so the message
    stays small however many attacks and classes there are."""
    from advex.scoring.html_report import strongest_attack

    detailed = strongest_attack(report_pb2.Report(evasion=report))
    out = scoring_service_pb2.EvasionFigures()
    for index, attack in enumerate(metrics.attacks):
        f = attack.figures
        item = out.attacks.add(confidence_clean=f.confidence_clean, confidence_adversarial=f.confidence_adversarial)
        if index != detailed:
            continue
        item.class_samples.extend(f.class_samples)
        item.class_clean_correct.extend(f.class_clean_correct)
        item.class_adversarial_correct.extend(f.class_adversarial_correct)
        item.confusion.extend([] if f.confusion is None else f.confusion.ravel().tolist())
        if f.examples is not None:
            item.examples.CopyFrom(records_pb2.EvasionExamples(
                samples=f.examples.samples.tolist(),
                clean=tensors.to_proto(f.examples.clean),
                adversarial=tensors.to_proto(f.examples.adversarial),
                labels=f.examples.labels.tolist(),
                clean_predictions=f.examples.clean_predictions.tolist(),
                adversarial_predictions=f.examples.adversarial_predictions.tolist(),
            ))
    return out
