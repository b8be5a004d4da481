"""What the CLI prints: JSON for scripts, tables and bars for people."""

from __future__ import annotations

import json
import sys

from google.protobuf import json_format
from tqdm import tqdm

from advex.v1 import evaluation_pb2


def to_dict(message) -> dict:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def print_json(value) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def norm_label(norm: str) -> str:
    """'inf' -> 'Linf', '2' -> 'L2'."""
    return "Linf" if norm == "inf" else f"L{norm}"


def attack_label(result) -> str:
    """An AttackResult as people read it: 'pgd Linf eps=0.1 steps=40
    target=random' (steps only for iterative attacks, apgd's loss)."""
    parts = [result.attack, norm_label(result.norm),
             "unbounded" if result.unbounded else f"eps={result.eps:g}"]
    if result.steps > 1:
        parts.append(f"steps={result.steps}")
    if result.spec.loss:  # apgd's ce or dlr
        parts.append(f"loss={result.spec.loss}")
    if result.target:
        parts.append(f"target={result.target}")
    return " ".join(parts)


def state_name(state: int) -> str:
    return evaluation_pb2.EvaluationState.Name(state).removeprefix("EVALUATION_STATE_")


def progress_bar(total: int, description: str, unit: str = "it", enabled: bool = True) -> tqdm:
    """A bar on stderr, drawn only on a terminal: in a log or a pipe, tqdm's
    carriage returns would leave every redraw behind as text."""
    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        unit_scale=unit == "B",
        file=sys.stderr,
        disable=not (enabled and sys.stderr.isatty()),
        dynamic_ncols=True,
        leave=True,
    )


def evaluation_line(evaluation: evaluation_pb2.Evaluation) -> str:
    progress = evaluation.progress
    percent = 100.0 * progress.done / progress.total if progress.total else 0.0
    kind = evaluation.WhichOneof("spec")
    if kind == "poisoning":
        spec = evaluation.poisoning
        what = f"poisoning {spec.kind}: {len(spec.counts)} count(s) + baseline, target {spec.target_class}"
    else:
        what = f"evasion: {len(evaluation.evasion.attacks)} attacks, {evaluation.evasion.samples} samples"
    line = (
        f"{evaluation.name}  {state_name(evaluation.state):<9}  {percent:5.1f}%  {what}  {evaluation.display_name}"
    )
    if evaluation.state in (evaluation_pb2.EVALUATION_STATE_QUEUED, evaluation_pb2.EVALUATION_STATE_RUNNING):
        line += f"\n    now: {progress.stage}"
    if evaluation.error:
        line += f"\n    error: {evaluation.error}"
    return line


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return [line(header), line("-" * w for w in widths), *(line(row) for row in rows)]


def _ref(ref) -> str:
    return f"{ref.display_name or ref.name}  sha256 {ref.sha256[:12]}"


def report_table(report) -> str:
    """A Report as aligned text: a header, then its kind's tables."""
    lines = [
        f"evaluation  {report.name}",
        f"model       {_ref(report.model)}",
        f"dataset     {_ref(report.dataset)}",
    ]
    if report.WhichOneof("result") == "poisoning":
        return "\n".join(lines + _poisoning_lines(report.poisoning))
    return "\n".join(lines + _evasion_lines(report.evasion, report))


def _poisoning_lines(p) -> list[str]:
    spec = p.spec
    trigger = spec.trigger
    if spec.kind == "flip":
        how = "label flipping (no trigger)"
    else:
        place = f" at {trigger.position}" if trigger.position else ""
        size = f" size {trigger.size}" if trigger.HasField("size") and trigger.trigger in ("square", "checker") else ""
        how = f"{spec.kind}-label, trigger {trigger.trigger}{size}{place}"
    training = spec.training
    lines = [
        f"training    {_ref(p.training_dataset)}  ({p.training_samples} images)",
        f"poisoning   {how}; sources {', '.join(map(str, p.source_classes))} -> target {spec.target_class}; "
        f"pool {p.pool_samples} images",
        f"recipe      {training.epochs} epochs, batch {training.batch_size}, {training.optimizer} "
        f"lr {training.learning_rate:g}{', fine-tuned from the uploaded weights' if training.fine_tune else ''}; "
        f"seed {spec.seed}",
        f"test        {p.test_samples} images, {p.attacked_test_samples} attacked (source classes, not the target)",
        "",
    ]
    header = ("poisoned", "share", "ASR", "clean_acc", "drop", "acc_source", "trig_acc_src", "trig_acc_other", "gap", "train_s")
    rows = [
        (
            "baseline" if r.poison_count == 0 else str(r.poison_count),
            f"{r.poison_fraction:.4f}",
            f"{r.attack_success_rate:.4f}",
            f"{r.clean_accuracy:.4f}",
            f"{r.clean_accuracy_drop:+.4f}",
            f"{r.clean_accuracy_source:.4f}",
            f"{r.triggered_accuracy_source:.4f}",
            f"{r.triggered_accuracy_non_source:.4f}",
            f"{r.accuracy_gap:+.4f}",
            f"{r.training_seconds:.1f}",
        )
        for r in [p.baseline, *p.poisoned]
    ]
    lines += _table(header, rows)
    lines.append("")
    if p.HasField("count_at_90_percent_asr"):
        lines.append(f"the backdoor works (ASR >= 0.9) from {p.count_at_90_percent_asr} poisoned images on")
    else:
        lines.append("no evaluated count reaches an attack success rate of 0.9")
    lines.append("models: " + ", ".join(
        f"{'baseline' if r.poison_count == 0 else r.poison_count}={r.model.name}" for r in [p.baseline, *p.poisoned]
    ))
    return lines


def _evasion_lines(e, report) -> list[str]:
    lines = [
        f"samples     {e.samples}    clip range {report.clip_min:g}..{report.clip_max:g}",
        f"clean accuracy {e.clean_accuracy:.4f}    mean confidence {e.mean_confidence_clean:.4f}",
        "",
    ]
    header = (
        "attack", "norm", "eps", "target", "adv_acc", "ASR", "conf_clean", "conf_adv", "robust", "Linf_mean",
        "L2_median",
    )
    rows = [
        (
            a.attack,
            a.norm,
            "none" if a.unbounded else f"{a.eps:g}",
            a.target or "-",
            f"{a.adversarial_accuracy:.4f}",
            f"{a.attack_success_rate:.4f}",
            f"{a.mean_confidence_clean:.4f}",
            f"{a.mean_confidence_adversarial:.4f}",
            f"{a.robustness_score:.4f}",
            f"{a.perturbation_linf_mean:.4f}",
            f"{a.perturbation_l2_median:.4f}",
        )
        for a in e.attacks
    ]
    lines += _table(header, rows)
    lines.append("")
    lines.append("worst case over all attacks at each budget:")
    for w in e.worst_case:
        lines.append(f"  L{w.norm} eps={w.eps:g}: accuracy {w.accuracy:.4f}  ({', '.join(w.attacks)})")
    for curve in e.curves:
        name = f"{curve.attack} L{curve.norm}" + (f" target={curve.target}" if curve.target else "")
        if curve.HasField("eps_at_half_clean_accuracy"):
            lines.append(f"{name}: accuracy falls below half of clean at eps={curve.eps_at_half_clean_accuracy:g}")
        else:
            lines.append(f"{name}: accuracy stays above half of clean at every evaluated eps")
    if e.worst_case:
        lines.append(f"robustness score {e.robustness_score:.4f}  (mean worst-case accuracy / clean accuracy)")
    else:
        lines.append("  none: no attack had a budget; the robustness score (0) does not apply")
    kept = [a for a in e.attacks if a.adversarial_dataset.name]
    if kept:
        lines.append("")
        lines.append("adversarial examples kept (download with: advex download NAME -o FILE):")
        lines += [f"  {a.spec.attack} L{a.norm} {'unbounded' if a.unbounded else f'eps={a.eps:g}'}"
                  f"{f' target={a.target}' if a.target else ''}: {a.adversarial_dataset.name}" for a in kept]
    if e.warnings:
        lines.append("")
        lines.append("WARNINGS: evidence of gradient masking (the robustness above may be overstated):")
        lines += [f"  [{w.check}] {w.message}" for w in e.warnings]
    return lines
