"""`advex compare A B`: is model B more robust than model A, beyond noise?

Two evasion evaluations on the same dataset (same SHA-256, same samples)
and the same attacks (the same specs as they ran) are compared row by row:
clean accuracy, the worst case at each budget, then each attack. For each
row, over the same N samples:

- each model's accuracy with its 95% Wilson score interval
  (`wilson_interval`);
- the difference B - A;
- McNemar's test on the paired outcomes: of the samples where exactly one
  model is right, b where only A is and c where only B is. Under "equally
  robust" each is one of those b + c with probability 1/2, so
  p = min(1, 2 P[Binomial(b + c, 1/2) <= min(b, c)]), exact up to
  EXACT_MCNEMAR_LIMIT discordant samples, above it the chi-squared
  approximation with continuity correction (`mcnemar_p`);
- the verdict: "B more robust" / "A more robust" when p < ALPHA, else "no
  significant difference".

Per-sample outcomes come from each report's `outcomes` artifact (scoring's
packed bits). A worst-case sample is right only if it is right under every
bounded attack at that budget, as the report defines it.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np

from advex.cli.client import CliError
from advex.cli.render import attack_label, norm_label

ALPHA = 0.05
Z_95 = 1.959963984540054
EXACT_MCNEMAR_LIMIT = 10_000


def wilson_interval(right: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion right / n."""
    if n <= 0:
        return 0.0, 1.0
    if right >= n:  # exactly, not 1 - 1e-16
        return (n / (n + z * z), 1.0)
    p = right / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Two-sided p-value of McNemar's test from the discordant counts."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    if n <= EXACT_MCNEMAR_LIMIT:
        # sum_{i<=k} C(n, i) / 2^n, in logs so large n does not overflow.
        logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)]
        top = max(logs)
        tail = math.exp(top) * sum(math.exp(v - top) for v in logs)
        return min(1.0, 2 * tail)
    chi2 = max(0, abs(only_a - only_b) - 1) ** 2 / n
    return math.erfc(math.sqrt(chi2 / 2))


@dataclass(frozen=True)
class Row:
    what: str
    n: int
    right_a: int
    right_b: int
    only_a: int  # right under A only
    only_b: int

    @property
    def accuracy_a(self) -> float:
        return self.right_a / self.n

    @property
    def accuracy_b(self) -> float:
        return self.right_b / self.n

    @property
    def p_value(self) -> float:
        return mcnemar_p(self.only_a, self.only_b)

    @property
    def verdict(self) -> str:
        if self.p_value >= ALPHA:
            return "no significant difference"
        return "B more robust" if self.right_b > self.right_a else "A more robust"

    def to_dict(self) -> dict:
        return {
            "what": self.what, "samples": self.n,
            "a": {"accuracy": self.accuracy_a, "interval_95": wilson_interval(self.right_a, self.n)},
            "b": {"accuracy": self.accuracy_b, "interval_95": wilson_interval(self.right_b, self.n)},
            "difference": self.accuracy_b - self.accuracy_a, "only_a_right": self.only_a,
            "only_b_right": self.only_b, "mcnemar_p": self.p_value, "verdict": self.verdict,
        }


def check_comparable(a, b) -> None:
    """CliError saying what differs unless reports a and b compare."""
    for name, report in (("A", a), ("B", b)):
        if report.WhichOneof("result") != "evasion":
            raise CliError(f"{name} ({report.name}) is not an evasion evaluation; compare evasion evaluations")
    if (a.clip_min, a.clip_max) != (b.clip_min, b.clip_max):
        raise CliError(
            f"A clipped its attacks to {a.clip_min:g}..{a.clip_max:g}, B to {b.clip_min:g}..{b.clip_max:g}; "
            "compare evaluations made with the same --clip-min/--clip-max"
        )
    if a.dataset.sha256 != b.dataset.sha256 or a.evasion.samples != b.evasion.samples:
        raise CliError(
            f"A evaluated {a.evasion.samples} samples of dataset {a.dataset.sha256[:12]}, B {b.evasion.samples} of "
            f"{b.dataset.sha256[:12]}; compare two evaluations of the same samples"
        )
    specs_a = [s.spec.SerializeToString(deterministic=True) for s in a.evasion.attacks]
    specs_b = [s.spec.SerializeToString(deterministic=True) for s in b.evasion.attacks]
    if sorted(specs_a) != sorted(specs_b):
        only_a = sorted(attack_label(r) for r in a.evasion.attacks if r.spec.SerializeToString(deterministic=True) not in specs_b)
        only_b = sorted(attack_label(r) for r in b.evasion.attacks if r.spec.SerializeToString(deterministic=True) not in specs_a)
        raise CliError(
            "A and B ran different attacks (only in A: " + (", ".join(only_a) or "none") + "; only in B: "
            + (", ".join(only_b) or "none") + "); evaluate both with the same --attack/--suite and --eps"
        )


def rows(a, b, outcomes_a, outcomes_b) -> list[Row]:
    """The comparison, clean first, then worst cases by budget, then attacks
    in A's order. `outcomes_*`: (clean bools (n,), adversarial bools
    (attacks, n)) in each report's attack order."""
    n = int(a.evasion.samples)
    clean_a, adv_a = outcomes_a
    clean_b, adv_b = outcomes_b
    order_b = {r.spec.SerializeToString(deterministic=True): i for i, r in enumerate(b.evasion.attacks)}
    matched = [(i, order_b[r.spec.SerializeToString(deterministic=True)]) for i, r in enumerate(a.evasion.attacks)]
    out = [_row("clean", clean_a, clean_b)]
    for w in sorted(a.evasion.worst_case, key=lambda w: (w.norm, w.eps)):
        group = [(i, j) for i, j in matched if not a.evasion.attacks[i].unbounded
                 and a.evasion.attacks[i].norm == w.norm and math.isclose(a.evasion.attacks[i].eps, w.eps)]
        if group:
            right_a = np.logical_and.reduce([adv_a[i] for i, _ in group])
            right_b = np.logical_and.reduce([adv_b[j] for _, j in group])
            out.append(_row(f"worst case {norm_label(w.norm)} eps={w.eps:g}", right_a, right_b))
    for i, j in matched:
        out.append(_row(attack_label(a.evasion.attacks[i]), adv_a[i], adv_b[j]))
    if any(r.n != n for r in out):
        raise CliError(f"an outcomes file does not hold the report's {n} samples; it is not this evaluation's")
    return out


def unpack(npz) -> tuple[np.ndarray, np.ndarray]:
    """(clean, adversarial) bools from an outcomes npz's arrays."""
    samples = int(npz["samples"])
    clean = np.unpackbits(npz["clean_correct"])[:samples].astype(bool)
    adversarial = np.unpackbits(npz["adversarial_correct"], axis=1)[:, :samples].astype(bool)
    return clean, adversarial


def summary(found: list[Row]) -> str:
    """The answer in one line, from the worst-case rows (every attack at
    each budget), else from every attack row."""
    rows = [r for r in found if r.what.startswith("worst case")] or [r for r in found if r.what != "clean"]
    if not rows:
        return "No attack rows to compare."
    b_wins = sum(r.verdict == "B more robust" for r in rows)
    a_wins = sum(r.verdict == "A more robust" for r in rows)
    what = "budgets (worst case)" if rows[0].what.startswith("worst case") else "attacks"
    if not a_wins and not b_wins:
        return f"No significant difference at any of the {len(rows)} {what}: these samples cannot tell A and B apart."
    return (f"B is more robust at {b_wins} of {len(rows)} {what}, A at {a_wins}; "
            f"no significant difference at {len(rows) - a_wins - b_wins}.")


def table(a, b, found: list[Row]) -> str:
    lines = [f"A  {a.name}  model {a.model.display_name or a.model.name} ({a.model.sha256[:12]})",
             f"B  {b.name}  model {b.model.display_name or b.model.name} ({b.model.sha256[:12]})",
             f"on {a.evasion.samples} samples of {a.dataset.display_name or a.dataset.name}; intervals are 95% "
             "(Wilson); p is McNemar's paired test, each row on its own at 0.05 (with many rows a few calls can be "
             "chance: the worst-case rows are the ones to read)", ""]
    header = ("", "A accuracy [95%]", "B accuracy [95%]", "B - A", "p", "verdict")
    cells = [header] + [
        (r.what, _with_interval(r.right_a, r.n), _with_interval(r.right_b, r.n),
         f"{r.accuracy_b - r.accuracy_a:+.4f}", _p(r.p_value), r.verdict)
        for r in found
    ]
    widths = [max(len(c[k]) for c in cells) for k in range(len(header))]
    for index, c in enumerate(cells):
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += ["", summary(found)]
    return "\n".join(lines)


def page(a, b, found: list[Row]) -> str:
    """A self-contained HTML page of the comparison (no script, nothing fetched)."""
    e = html.escape
    body = "".join(
        f"<tr class='{ 'b' if r.verdict.startswith('B') else 'a' if r.verdict.startswith('A') else ''}'>"
        f"<td>{e(r.what)}</td><td>{e(_with_interval(r.right_a, r.n))}</td><td>{e(_with_interval(r.right_b, r.n))}</td>"
        f"<td>{r.accuracy_b - r.accuracy_a:+.4f}</td><td>{e(_p(r.p_value))}</td><td>{e(r.verdict)}</td></tr>"
        for r in found
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>AdvEx comparison</title><style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 0 auto; padding: 1rem; color: #1d2330; }}
.scroll {{ overflow-x: auto; }} table {{ border-collapse: collapse; font-size: 0.9rem; }}
th, td {{ padding: 0.3rem 0.6rem; border-bottom: 1px solid #dde1e8; text-align: left; }}
tr.b td:last-child {{ color: #1b7f3b; font-weight: 600; }} tr.a td:last-child {{ color: #c0262d; font-weight: 600; }}
p {{ color: #4a5264; }} p.answer {{ color: #1d2330; font-size: 1.15rem; font-weight: 600; }}
</style></head><body>
<h1>Which model is more robust?</h1>
<p class="answer">{e(summary(found))}</p>
<p><b>A</b> {e(a.name)}: {e(a.model.display_name or a.model.name)} (SHA-256 {e(a.model.sha256)})<br>
<b>B</b> {e(b.name)}: {e(b.model.display_name or b.model.name)} (SHA-256 {e(b.model.sha256)})<br>
on the same {a.evasion.samples} samples of {e(a.dataset.display_name or a.dataset.name)} (SHA-256 {e(a.dataset.sha256)}).</p>
<div class="scroll"><table><thead><tr><th></th><th>A accuracy [95%]</th><th>B accuracy [95%]</th><th>B - A</th>
<th>p</th><th>verdict</th></tr></thead><tbody>{body}</tbody></table></div>
<p>Intervals are 95% Wilson score intervals. p is McNemar's test on the samples where exactly one model is right;
a difference is called when p &lt; {ALPHA}, each row on its own (with many rows a few calls can be chance: the
worst-case rows are the ones to read). A worst-case sample counts as right only when it survives every attack at
that budget.</p>
</body></html>
"""


def _row(what: str, right_a: np.ndarray, right_b: np.ndarray) -> Row:
    return Row(what, len(right_a), int(right_a.sum()), int(right_b.sum()), int((right_a & ~right_b).sum()),
               int((right_b & ~right_a).sum()))


def _with_interval(right: int, n: int) -> str:
    low, high = wilson_interval(right, n)
    return f"{right / n:.4f} [{low:.3f}, {high:.3f}]"


def _p(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"
