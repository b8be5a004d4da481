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


def state_name(state: int) -> str:
    return evaluation_pb2.EvaluationState.Name(state).removeprefix("EVALUATION_STATE_")


def progress_bar(total: int, description: str, unit: str = "it", enabled: bool = True) -> tqdm:
    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        unit_scale=unit == "B",
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
        leave=True,
    )


def evaluation_line(evaluation: evaluation_pb2.Evaluation) -> str:
    progress = evaluation.progress
    percent = 100.0 * progress.done / progress.total if progress.total else 0.0
    line = (
        f"{evaluation.name}  {state_name(evaluation.state):<9}  {percent:5.1f}%  "
        f"{len(evaluation.attacks)} attacks  {evaluation.samples} samples  {evaluation.display_name}"
    )
    if evaluation.error:
        line += f"\n    error: {evaluation.error}"
    return line


def report_table(report) -> str:
    """The metrics of a Report as an aligned text table."""
    lines = [
        f"evaluation  {report.name}",
        f"model       {report.model.display_name or report.model.name}  sha256 {report.model.sha256[:12]}",
        f"dataset     {report.dataset.display_name or report.dataset.name}  sha256 {report.dataset.sha256[:12]}",
        f"samples     {report.samples}    clip range {report.clip_min:g}..{report.clip_max:g}",
        f"clean accuracy {report.clean_accuracy:.4f}    mean confidence {report.mean_confidence_clean:.4f}",
        "",
    ]
    header = ("attack", "norm", "eps", "adv_acc", "ASR", "conf_clean", "conf_adv", "robust", "Linf_mean", "L2_mean")
    rows = [
        (
            a.attack,
            a.norm,
            f"{a.eps:g}",
            f"{a.adversarial_accuracy:.4f}",
            f"{a.attack_success_rate:.4f}",
            f"{a.mean_confidence_clean:.4f}",
            f"{a.mean_confidence_adversarial:.4f}",
            f"{a.robustness_score:.4f}",
            f"{a.perturbation_linf_mean:.4f}",
            f"{a.perturbation_l2_mean:.4f}",
        )
        for a in report.attacks
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    lines.append(line(header))
    lines.append(line("-" * w for w in widths))
    lines.extend(line(row) for row in rows)
    lines.append("")
    lines.append("worst case over all attacks at each budget:")
    for w in report.worst_case:
        lines.append(f"  L{w.norm} eps={w.eps:g}: accuracy {w.accuracy:.4f}  ({', '.join(w.attacks)})")
    for curve in report.curves:
        if curve.HasField("eps_at_half_clean_accuracy"):
            lines.append(
                f"{curve.attack} L{curve.norm}: accuracy falls below half of clean at eps={curve.eps_at_half_clean_accuracy:g}"
            )
        else:
            lines.append(f"{curve.attack} L{curve.norm}: accuracy stays above half of clean at every evaluated eps")
    lines.append(f"robustness score {report.robustness_score:.4f}  (mean worst-case accuracy / clean accuracy)")
    return "\n".join(lines)
