"""The report as one self-contained HTML page, for people.

`render(report, figures, class_names, versions)` returns the page's bytes:
plots drawn with matplotlib (Agg, no display) and images embedded as PNG
data: URIs, styles inline, no script and no external request, so it opens
from a file, reads on a phone (one column, tables scroll sideways) and
prints on A4 (no figure is split across pages).

The page is a list of sections (`SECTIONS`), each a function of the
`Page` that returns its HTML, or "" when the report has nothing for it: a
new section is one function appended there. Every text from the report
(names, class names, messages) is escaped.

The rating (A to F) reads the robustness score in RATING_BANDS; for a
poisoning report the score is 1 minus the backdoor's highest success rate
among small poisonings (see `poisoning_score`). The README documents both.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from advex.core import tensors
from advex.v1 import report_pb2

# (lowest score, rating, what it means), best first.
RATING_BANDS = (
    (0.8, "A", "keeps nearly all its accuracy under the attacks tested"),
    (0.6, "B", "keeps most of its accuracy under attack"),
    (0.4, "C", "loses about half its accuracy under attack"),
    (0.2, "D", "loses most of its accuracy under attack"),
    (0.0, "F", "is broken by the attacks tested"),
)
# Poisoning: the share of the training set counted as "a small poisoning".
SMALL_POISONING = 0.01
# Pixels of the longest side of an example image on the page.
EXAMPLE_PIXELS = 112
_DPI = 110


@dataclass
class Page:
    """What every section reads."""

    report: report_pb2.Report
    figures: object | None  # scoring_service_pb2.EvasionFigures
    class_names: list[str]
    versions: dict[str, str]
    # Filled by `render`: the evasion attack the page shows in detail.
    strongest: int | None = None
    # Poisoning: (poison count, EvasionExamples of triggered test images).
    poisoning_examples: tuple[int, object] | None = None

    def class_name(self, index: int) -> str:
        if 0 <= index < len(self.class_names) and self.class_names[index]:
            return f"{self.class_names[index]}"
        return str(index)

    def plot_label(self, index: int) -> str:
        """A class name for a plot: matplotlib reads $...$ as mathematics
        (and fails on bad mathematics), so dollars are escaped."""
        return self.class_name(index).replace("$", r"\$")


def render(report: report_pb2.Report, figures=None, class_names=(), versions=None, poisoning_examples=None) -> bytes:
    page = Page(report, figures, list(class_names), dict(versions or {}), poisoning_examples=poisoning_examples)
    page.strongest = strongest_attack(report)
    body = "\n".join(part for section in SECTIONS if (part := section(page)))
    title = f"AdvEx report: {report.model.display_name or report.model.name or 'model'}"
    return _DOCUMENT.format(title=_e(title), style=_STYLE, body=body).encode("utf-8")


def rating(score: float) -> tuple[str, str]:
    """(letter, meaning) of a score in 0..1."""
    for lowest, letter, meaning in RATING_BANDS:
        if score >= lowest:
            return letter, meaning
    return RATING_BANDS[-1][1], RATING_BANDS[-1][2]


def strongest_attack(report: report_pb2.Report) -> int | None:
    """Index of the evasion attack with the lowest adversarial accuracy
    (bounded ones first: an unbounded attack always wins)."""
    if report.WhichOneof("result") != "evasion" or not report.evasion.attacks:
        return None
    attacks = list(report.evasion.attacks)
    candidates = [i for i, a in enumerate(attacks) if not a.unbounded] or list(range(len(attacks)))
    return min(candidates, key=lambda i: (attacks[i].adversarial_accuracy, -attacks[i].eps, i))


def poisoning_score(poisoning) -> tuple[float, object | None]:
    """1 - the highest attack success rate among the poisonings of at most
    SMALL_POISONING of the training set (none such: the smallest count's),
    and that model's result."""
    models = sorted(poisoning.poisoned, key=lambda m: m.poison_count)
    if not models:
        return 1.0, None
    small = [m for m in models if poisoning.training_samples and m.poison_count <= SMALL_POISONING * poisoning.training_samples]
    chosen = max(small, key=lambda m: m.attack_success_rate) if small else models[0]
    return 1.0 - chosen.attack_success_rate, chosen


# ---------------------------------------------------------------- sections


def _verdict(page: Page) -> str:
    report = page.report
    kind = report.WhichOneof("result")
    if kind == "evasion":
        score = report.evasion.robustness_score
        sentences = _evasion_sentences(page)
        if not report.evasion.worst_case:
            # Only unbounded attacks: no budget, no score, no rating.
            return ('<section class="verdict" id="verdict"><div class="grade" aria-label="no rating">–</div><div>'
                    "<h2>No robustness score: every attack ran without a budget</h2>"
                    + "".join(f"<p>{s}</p>" for s in sentences) + "</div></section>")
    elif kind == "poisoning":
        score, _ = poisoning_score(report.poisoning)
        sentences = _poisoning_sentences(page)
    else:
        return ""
    letter, meaning = rating(score)
    if kind == "evasion":
        headline = f"Robustness score {score:.2f}: the model {_e(meaning)}"
    else:
        headline = (f"Poisoning resistance {score:.2f}: the trigger worked on {1 - score:.0%} of attacked images "
                    "after the smallest poisonings tested")
    return (
        f'<section class="verdict rating-{letter}" id="verdict"><div class="grade" aria-label="rating {letter}">{letter}'
        f"</div><div><h2>{headline}</h2>"
        + "".join(f"<p>{s}</p>" for s in sentences)
        + "</div></section>"
    )


def _evasion_sentences(page: Page) -> list[str]:
    evasion = page.report.evasion
    out = []
    budgets = sorted({(w.norm, w.eps) for w in evasion.worst_case})
    if budgets:
        spans = ", ".join(
            f"{_norm(n)} eps {min(e for m, e in budgets if m == n):g} to {max(e for m, e in budgets if m == n):g}"
            for n in sorted({n for n, _ in budgets})
        )
        out.append(
            f"Clean accuracy is {evasion.clean_accuracy:.1%}. Under the strongest of the attacks tested at each "
            f"budget ({spans}), the model keeps on average {evasion.robustness_score:.0%} of it."
        )
    else:
        out.append(f"Clean accuracy is {evasion.clean_accuracy:.1%}; no attack with a budget was run, so there "
                   "is no robustness score to give (0).")
    collapse = [(c.eps_at_half_clean_accuracy, c) for c in evasion.curves if c.HasField("eps_at_half_clean_accuracy")]
    if collapse:
        eps, curve = min(collapse, key=lambda item: item[0])
        names = sorted({c.attack + (f" (target {c.target})" if c.target else "") for e, c in collapse
                        if e == eps and c.norm == curve.norm})
        out.append(
            f"From {_norm(curve.norm)} eps {eps:g} on, accuracy is below half its clean value "
            f"(under {_e(' and '.join(names))}). To harden the model, try adversarial training (e.g. PGD examples "
            f"at about eps {eps:g} mixed into training), then evaluate again with the same seed and compare."
        )
    elif budgets:
        out.append("No budget tested halves the accuracy. Before trusting that, test larger budgets and more "
                   "attacks: the standard suite (APGD with two losses), unbounded Carlini-Wagner, and the "
                   "gradient-free SPSA.")
    if evasion.warnings:
        checks = ", ".join(sorted({w.check for w in evasion.warnings}))
        out.append(
            f"Doubt these numbers: the report warns of gradient masking ({_e(checks)}). A model that hides its "
            "gradients looks robust to gradient attacks without being so; see the warnings below, and trust "
            "the gradient-free SPSA and many-restart results more."
        )
    return out


def _poisoning_sentences(page: Page) -> list[str]:
    p = page.report.poisoning
    _, chosen = poisoning_score(p)
    out = []
    if chosen is not None:
        share = chosen.poison_count / p.training_samples if p.training_samples else 0.0
        out.append(
            f"With {chosen.poison_count} poisoned training images ({share:.2%} of {p.training_samples}), the trigger "
            f"sends {chosen.attack_success_rate:.0%} of the attacked test images to the target, while clean "
            f"accuracy changes by {-100 * chosen.clean_accuracy_drop:+.1f} percentage points."
        )
    if p.HasField("count_at_90_percent_asr"):
        out.append(f"{p.count_at_90_percent_asr} poisoned images were enough for a backdoor that works 90% of the "
                   "time.")
    worst = max(p.poisoned, key=lambda m: m.attack_success_rate, default=None)
    if worst is not None and worst is not chosen:
        out.append(f"The most successful poisoning tested, {worst.poison_count} images, made the trigger work on "
                   f"{worst.attack_success_rate:.0%} of them.")
    if worst is not None and worst.attack_success_rate >= 0.5 and worst.clean_accuracy_drop <= 0.01:
        out.append("Clean accuracy alone would not have warned you: check where training data comes from, "
                   "look for near-duplicate images with different labels, and test for triggers before release.")
    elif worst is not None and worst.attack_success_rate < 0.5:
        out.append("No poisoning tested planted a working backdoor with this training recipe. That is no proof "
                   "of resistance: longer training and more poisoned images often succeed; test those before "
                   "you rely on it.")
    return out


def _curve(page: Page) -> str:
    if page.report.WhichOneof("result") != "evasion":
        return ""
    evasion = page.report.evasion
    curves = [c for c in evasion.curves if c.points]
    if not curves:
        return ""
    norms = sorted({c.norm for c in curves})
    fig = _figure_of((7.2 if len(norms) == 1 else 9.6, 4.0))
    axes = fig.subplots(1, len(norms), squeeze=False)
    for ax, norm in zip(axes[0], norms, strict=True):
        for index, c in enumerate(c for c in curves if c.norm == norm):
            label = c.attack + (f" target={c.target}" if c.target else "")
            # Lines of equal attacks lie on one another: a marker and dash
            # each keeps every one visible.
            ax.plot([p.eps for p in c.points], [p.adversarial_accuracy for p in c.points], label=label,
                    marker="osD^v<>"[index % 7], linestyle=("-", "-.", ":")[index % 3], alpha=0.9)
        worst = sorted((w.eps, w.accuracy) for w in evasion.worst_case if w.norm == norm)
        if worst:
            ax.plot(*zip(*worst, strict=True), color="black", linestyle="--", linewidth=2, label="worst case")
        ax.axhline(evasion.clean_accuracy, color="grey", linestyle=":", label="clean accuracy")
        ax.set(xlabel=f"budget eps ({_norm(norm)})", ylabel="adversarial accuracy", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return _figure("curve", "Robustness curve", _png(fig),
                   "Adversarial accuracy against the budget, one line per attack; the dashed line counts a sample "
                   "only if it survives every attack at that budget.")


def _numbers(page: Page) -> str:
    if page.report.WhichOneof("result") != "evasion":
        return ""
    rows = []
    for i, a in enumerate(page.report.evasion.attacks):
        budget = "unbounded" if a.unbounded else f"{a.eps:g}"
        rows.append(
            f"<tr{' class=strongest' if i == page.strongest else ''}><td>{_e(a.attack)}"
            f"{' (' + _e(a.spec.loss) + ')' if a.spec.loss else ''}{' → ' + _e(a.target) if a.target else ''}</td><td>{_norm(a.norm)}</td><td>{budget}</td>"
            f"<td>{a.adversarial_accuracy:.3f}</td><td>{a.attack_success_rate:.3f}</td>"
            f"<td>{a.perturbation_l2_median:.3g}</td><td>{a.perturbation_linf_median:.3g}</td></tr>"
        )
    return (
        '<section id="numbers"><h2>Every attack</h2><div class="scroll"><table><thead><tr><th>attack</th>'
        "<th>norm</th><th>eps</th><th>adversarial accuracy</th><th>success rate</th><th>median L2</th>"
        "<th>median L∞</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
        "<p class=note>Medians are over the samples each attack broke. The highlighted row is the strongest "
        "attack, shown in detail below.</p></section>"
    )


def _confidence(page: Page) -> str:
    attack = _strongest_figures(page)
    if attack is None or not sum(attack.confidence_clean):
        return ""
    bins = len(attack.confidence_clean)
    edges = np.linspace(0.0, 1.0, bins + 1)
    fig = _figure_of((7.2, 3.4))
    ax = fig.subplots()
    for counts, label, color in ((attack.confidence_clean, "clean", "tab:blue"),
                                 (attack.confidence_adversarial, "adversarial", "tab:red")):
        ax.stairs(np.asarray(counts), edges, label=label, color=color, fill=True, alpha=0.45)
    ax.set(xlabel="probability of the predicted class", ylabel="samples")
    ax.legend()
    fig.tight_layout()
    return _figure("confidence", f"Confidence under {_e(_label(page, page.strongest))}", _png(fig),
                   "How sure the model is of its answer, on clean and on adversarial inputs. Adversarial "
                   "examples that are wrong yet confident are the dangerous ones.")


def _examples(page: Page) -> str:
    attack = _strongest_figures(page)
    if attack is None or not attack.HasField("examples"):
        return ""
    cards = _example_cards(page, attack.examples, "adversarial")
    return (
        f'<section id="examples"><h2>Samples under {_e(_label(page, page.strongest))}</h2><div class="examples">'
        + cards
        + "</div><p class=note>Samples the attack broke come first. The third image is the change, stretched "
        "to the full grey range so it can be seen (grey: unchanged).</p></section>"
    )


def _triggered(page: Page) -> str:
    if page.report.WhichOneof("result") != "poisoning" or page.poisoning_examples is None:
        return ""
    count, examples = page.poisoning_examples
    cards = _example_cards(page, examples, "triggered")
    return (
        f'<section id="triggered"><h2>Test images with the trigger, through the model poisoned with {count} '
        f'images</h2><div class="examples">{cards}</div><p class=note>Images the backdoor sent to the target come '
        "first. The third image is what the trigger changed.</p></section>"
    )


def _example_cards(page: Page, ex, changed: str) -> str:
    """One card per sample: the clean image, the `changed` one (attacked,
    or with the trigger), and the change stretched to be seen; with the
    true label and the model's two answers."""
    clean, other = tensors.from_proto(ex.clean).astype(np.float32), tensors.from_proto(ex.adversarial).astype(np.float32)
    low, high = page.report.clip_min, page.report.clip_max
    if not high > low:
        low, high = float(min(clean.min(), other.min())), float(max(clean.max(), other.max()))
    cards = []
    for i in range(len(ex.samples)):
        delta = other[i] - clean[i]
        scale = float(np.abs(delta).max())
        amplified = 0.5 + 0.5 * delta / scale if scale > 0 else np.full_like(delta, 0.5)
        images = "".join(
            f'<figure><img src="{_image_uri(image, lo, hi)}" alt="{alt}" width="{EXAMPLE_PIXELS}"'
            f' height="{EXAMPLE_PIXELS}"><figcaption>{caption}</figcaption></figure>'
            for image, lo, hi, alt, caption in (
                (clean[i], low, high, "clean image", "clean"),
                (other[i], low, high, f"{changed} image", changed),
                (amplified, 0.0, 1.0, "the change, amplified",
                 f"change ×{0.5 * (high - low) / scale if scale else 0:.3g}"),
            )
        )
        broke = ex.adversarial_predictions[i] != ex.labels[i] and ex.clean_predictions[i] == ex.labels[i]
        cards.append(
            f'<div class="example{" broke" if broke else ""}"><div class="trio">{images}</div><p>sample '
            f"{ex.samples[i]}: true <b>{_e(page.class_name(ex.labels[i]))}</b>, clean "
            f"<b>{_e(page.class_name(ex.clean_predictions[i]))}</b>, {changed} "
            f"<b>{_e(page.class_name(ex.adversarial_predictions[i]))}</b></p></div>"
        )
    return "".join(cards)


def _classes(page: Page) -> str:
    attack = _strongest_figures(page)
    if attack is None or not attack.class_samples:
        return ""
    samples = np.asarray(attack.class_samples, dtype=np.float64)
    present = samples > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        clean = np.asarray(attack.class_clean_correct) / samples
        robust = np.asarray(attack.class_adversarial_correct) / samples
    classes = np.flatnonzero(present)
    parts = []
    if len(classes) <= 64:
        fig = _figure_of((7.2, 3.4))
        ax = fig.subplots()
        x = np.arange(len(classes))
        ax.bar(x - 0.2, clean[classes], width=0.4, label="clean", color="tab:blue")
        ax.bar(x + 0.2, robust[classes], width=0.4, label="adversarial", color="tab:red")
        ax.set_xticks(x, [page.plot_label(int(c)) for c in classes], rotation=45 if len(classes) > 10 else 0,
                      fontsize="small")
        # Headroom above 1 so the legend never covers a bar.
        ax.set(ylabel="accuracy", ylim=(0, 1.3), yticks=np.linspace(0, 1, 6))
        ax.legend(loc="upper center", ncol=2)
        fig.tight_layout()
        parts.append(_figure("per-class", "Accuracy per class", _png(fig),
                             "The classes an attacker moves most easily are where robustness work pays first."))
    if attack.confusion and len(classes) <= 64:
        classes_all = len(attack.class_samples)
        matrix = np.asarray(attack.confusion, dtype=np.float64).reshape(classes_all, classes_all)
        rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        fig = _figure_of((5.6, 5.0))
        ax = fig.subplots()
        shown = ax.imshow(rows, cmap="Reds", vmin=0, vmax=1)
        names = [page.plot_label(c) for c in range(classes_all)]
        ax.set_xticks(range(classes_all), names, rotation=90 if classes_all > 10 else 0, fontsize="small")
        ax.set_yticks(range(classes_all), names, fontsize="small")
        ax.set(xlabel="prediction under attack", ylabel="true class")
        fig.colorbar(shown, ax=ax, fraction=0.046, label="share of the true class")
        fig.tight_layout()
        parts.append(_figure("confusion", f"Confusion under {_e(_label(page, page.strongest))}", _png(fig),
                             "Where the attack sends each class (rows sum to 1)."))
    return "\n".join(parts)


def _warnings(page: Page) -> str:
    if page.report.WhichOneof("result") != "evasion" or not page.report.evasion.warnings:
        return ""
    items = "".join(f"<li><b>{_e(w.check)}</b>: {_e(w.message)}</li>" for w in page.report.evasion.warnings)
    return f'<section id="warnings"><h2>Warnings</h2><ul>{items}</ul></section>'


def _poisoning(page: Page) -> str:
    if page.report.WhichOneof("result") != "poisoning":
        return ""
    p = page.report.poisoning
    models = sorted(p.poisoned, key=lambda m: m.poison_count)
    parts = []
    if models:
        fig = _figure_of((7.2, 3.8))
        ax = fig.subplots()
        counts = [m.poison_count for m in models]
        ax.plot(counts, [m.attack_success_rate for m in models], marker="o", color="tab:red",
                label="attack success rate")
        ax.plot(counts, [m.clean_accuracy for m in models], marker="s", color="tab:blue", label="clean accuracy")
        ax.axhline(p.baseline.clean_accuracy, color="tab:blue", linestyle=":", label="baseline clean accuracy")
        if len(counts) > 1 and min(counts) > 0 and max(counts) / min(counts) >= 10:
            ax.set_xscale("log")
        ax.set(xlabel="poisoned training images", ylabel="rate", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        parts.append(_figure("dose", "Backdoor against the number of poisoned images", _png(fig),
                             "How many poisoned images the attacker needs, and what they cost in clean accuracy."))
        worst = max(models, key=lambda m: m.attack_success_rate)
        if worst.per_class_accuracy and p.baseline.per_class_accuracy:
            fig = _figure_of((7.2, 3.4))
            ax = fig.subplots()
            x = np.arange(len(worst.per_class_accuracy))
            ax.bar(x - 0.2, list(p.baseline.per_class_accuracy), width=0.4, label="baseline", color="tab:blue")
            ax.bar(x + 0.2, list(worst.per_class_accuracy), width=0.4, label=f"poisoned ({worst.poison_count})",
                   color="tab:red")
            ax.set_xticks(x, [page.plot_label(int(c)) for c in x], fontsize="small")
            ax.set(ylabel="clean accuracy", ylim=(0, 1.3), yticks=np.linspace(0, 1, 6))
            ax.legend(loc="upper center", ncol=2)
            fig.tight_layout()
            parts.append(_figure("poisoned-classes", "Clean accuracy per class, baseline and poisoned", _png(fig),
                                 "A backdoor that costs nothing here is one that clean testing cannot find."))
    rows = "".join(
        f"<tr><td>{m.poison_count}</td><td>{m.poison_fraction:.2%}</td><td>{m.attack_success_rate:.3f}</td>"
        f"<td>{m.clean_accuracy:.3f}</td><td>{m.clean_accuracy_drop:+.3f}</td></tr>"
        for m in [p.baseline, *models]
    )
    parts.append(
        '<section id="poisoning-numbers"><h2>Every model</h2><div class="scroll"><table><thead><tr>'
        "<th>poisoned images</th><th>share of the pool</th><th>attack success rate</th><th>clean accuracy</th>"
        "<th>clean accuracy drop</th></tr></thead><tbody>" + rows + "</tbody></table></div></section>"
    )
    return "\n".join(parts)


def _footer(page: Page) -> str:
    r = page.report
    rows = [
        ("evaluation", r.name),
        ("model", f"{r.model.display_name or r.model.name} — SHA-256 {r.model.sha256}"),
        ("dataset", f"{r.dataset.display_name or r.dataset.name} — SHA-256 {r.dataset.sha256}"),
        ("value range", f"{r.clip_min:g} to {r.clip_max:g}"),
    ]
    kind = r.WhichOneof("result")
    if kind == "evasion":
        rows.append(("seed", str(r.evasion.seed)))
        rows.extend((f"attack {i + 1}", _spec_text(a.spec)) for i, a in enumerate(r.evasion.attacks))
    elif kind == "poisoning":
        from google.protobuf import json_format

        rows.append(("poisoning", json_format.MessageToJson(r.poisoning.spec, indent=None,
                                                            preserving_proto_field_name=True)))
    versions = dict(page.versions)
    versions.update(_scoring_versions())
    rows.append(("software", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<footer id="reproduce"><h2>Reproduce it</h2><div class="scroll"><table>{body}</table></div></footer>'


SECTIONS: list[Callable[[Page], str]] = [
    _verdict, _curve, _numbers, _confidence, _examples, _classes, _warnings, _poisoning, _triggered, _footer,
]


# ---------------------------------------------------------------- helpers


def _strongest_figures(page: Page):
    if page.figures is None or page.strongest is None or page.strongest >= len(page.figures.attacks):
        return None
    return page.figures.attacks[page.strongest]


def _label(page: Page, index: int | None) -> str:
    if index is None:
        return "the attacks"
    a = page.report.evasion.attacks[index]
    budget = "unbounded" if a.unbounded else f"eps {a.eps:g}"
    loss = f", loss {a.spec.loss}" if a.spec.loss else ""
    return f"{a.attack} ({_norm(a.norm)}, {budget}{loss}{', target ' + a.target if a.target else ''})"


def _spec_text(spec) -> str:
    from google.protobuf import json_format

    fields = json_format.MessageToDict(spec, preserving_proto_field_name=True)
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in fields.items())


def _scoring_versions() -> dict[str, str]:
    from importlib import metadata

    import matplotlib

    found = {"matplotlib": matplotlib.__version__}
    try:
        found["advex-scoring"] = metadata.version("advex-scoring")
    except metadata.PackageNotFoundError:
        pass
    return found


def _norm(norm: str) -> str:
    return "L∞" if norm == "inf" else _e(f"L{norm}")


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _figure_of(size: tuple[float, float]):
    """A matplotlib Figure of its own, not pyplot's: pyplot keeps a global
    registry of figures that concurrent renders (scoring serves several
    calls at once) must not share, and a Figure needs no closing."""
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(anchor: str, title: str, uri: str, caption: str) -> str:
    return (f'<section id="{anchor}"><h2>{title}</h2><figure class="plot"><img src="{uri}" alt="{title}">'
            f"<figcaption>{_e(caption)}</figcaption></figure></section>")


def _image_uri(image: np.ndarray, low: float, high: float) -> str:
    """`image` (H, W, C) scaled from [low, high] to 8 bits, upscaled by
    repeating pixels to about EXAMPLE_PIXELS, as a PNG data: URI."""
    from matplotlib.image import imsave
    scaled = np.clip((np.asarray(image, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    if scaled.ndim == 3 and scaled.shape[-1] == 1:
        scaled = scaled[..., 0]
    factor = max(1, math.ceil(EXAMPLE_PIXELS / max(scaled.shape[:2])))
    upscaled = scaled.repeat(factor, axis=0).repeat(factor, axis=1)
    buffer = io.BytesIO()
    if upscaled.ndim == 2:
        imsave(buffer, upscaled, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    else:
        imsave(buffer, upscaled[..., :3] if upscaled.shape[-1] >= 3 else upscaled[..., 0], format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_DOCUMENT = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<header><h1>{title}</h1></header>
<main>
{body}
</main>
</body>
</html>
"""

_STYLE = """
:root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330; line-height: 1.45; }
body { margin: 0 auto; padding: 1rem; max-width: 60rem; }
h1 { font-size: 1.4rem; margin: 0.2rem 0 1rem; word-break: break-word; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 0.6rem; }
.verdict { display: flex; gap: 1rem; align-items: flex-start; padding: 1rem; border-radius: 0.6rem; background: #f3f5f9; }
.verdict h2 { margin-top: 0; }
.grade { flex: 0 0 auto; width: 4.2rem; height: 4.2rem; border-radius: 0.6rem; color: #fff; font-size: 2.6rem;
  font-weight: 700; display: flex; align-items: center; justify-content: center; }
.rating-A .grade { background: #1b7f3b; } .rating-B .grade { background: #5b9a1f; } .rating-C .grade { background: #c99700; }
.rating-D .grade { background: #d8660b; } .rating-F .grade { background: #c0262d; }
figure { margin: 0; }
figure.plot img { width: 100%; height: auto; }
figcaption, .note { color: #4a5264; font-size: 0.9rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { padding: 0.3rem 0.6rem; border-bottom: 1px solid #dde1e8; text-align: left; vertical-align: top; }
td { font-variant-numeric: tabular-nums; }
tr.strongest td { background: #fff1e6; }
footer td { overflow-wrap: anywhere; }
.examples { display: grid; grid-template-columns: repeat(auto-fill, minmax(20rem, 1fr)); gap: 1rem; }
.example { border: 1px solid #dde1e8; border-radius: 0.5rem; padding: 0.5rem; }
.example.broke { border-color: #e7a3a6; }
.example p { margin: 0.3rem 0 0; font-size: 0.9rem; }
.trio { display: flex; gap: 0.4rem; }
.trio figure { text-align: center; }
.trio img { width: 6rem; height: 6rem; image-rendering: pixelated; border: 1px solid #ccc; }
@media (max-width: 40rem) { body { padding: 0.6rem; } .verdict { flex-direction: column; } }
@page { size: A4; margin: 14mm; }
@media print {
  body { max-width: none; padding: 0; }
  section, figure, .example, tr { break-inside: avoid; page-break-inside: avoid; }
  figure.plot img { max-height: 120mm; width: auto; max-width: 100%; }
}
"""
