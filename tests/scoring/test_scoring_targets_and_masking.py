"""Targeted success rates, attacks without a budget, and the
gradient-masking warnings (masking.py), on hand-made records."""

from __future__ import annotations

import numpy as np
import pytest

from advex.core import attack_specs
from advex.core.errors import InvalidArgument
from advex.scoring import masking
from advex.scoring.metrics import EvasionAccumulator, RecordBatch
from advex.v1 import evasion_pb2

CLASSES = 4


def spec(attack="pgd", eps=0.1, **kw):
    fields = dict(attack=attack, **kw)
    if eps is not None:
        fields["eps"] = eps
    return attack_specs.resolve(evasion_pb2.AttackSpec(**fields))


def onehot(classes, sure=0.9):
    """Probabilities with `sure` on each sample's class."""
    classes = np.asarray(classes)
    p = np.full((len(classes), CLASSES), (1 - sure) / (CLASSES - 1), dtype=np.float32)
    p[np.arange(len(classes)), classes] = sure
    return p


def batch(labels, clean, adv, l2=None, targets=None):
    n = len(labels)
    l2 = np.zeros(n, np.float32) if l2 is None else np.asarray(l2, np.float32)
    return RecordBatch(
        first_sample=0,
        labels=np.asarray(labels, np.int64),
        clean_probabilities=onehot(clean),
        adversarial_probabilities=onehot(adv),
        perturbation_linf=l2,
        perturbation_l2=l2,
        perturbation_l0=np.zeros(n, np.float32),
        targets=None if targets is None else np.asarray(targets, np.int64),
    )


LABELS = [0, 1, 2, 3, 0, 1]


def score(specs_and_adv, clip_range=(0.0, 1.0), labels=LABELS, clean=None):
    """specs_and_adv: [(spec, adversarial classes, targets or None, l2 or None)]."""
    specs = [s for s, *_ in specs_and_adv]
    acc = EvasionAccumulator(specs, len(labels), CLASSES, clip_range=clip_range)
    for index, (s, adv, targets, l2) in enumerate(specs_and_adv):
        acc.add(index, batch(labels, labels if clean is None else clean, adv, l2, targets))
    return acc.finish()


def test_targeted_success_counts_only_reaching_the_target_among_eligible_samples():
    # Sample 5 is wrong on clean input; sample 2's label is its target.
    clean = [0, 1, 2, 3, 0, 2]
    targets = [3, 3, 2, 1, 1, 3]
    adv = [3, 2, 2, 1, 0, 3]  # 0 and 3 reach the target, 1 goes wrong elsewhere, 4 resists
    m = score([(spec(target="random"), adv, targets, None)], clean=clean)
    a = m.attacks[0]
    assert a.clean_correct_samples == 5
    assert a.attacked_samples == 4  # samples 0, 1, 3, 4
    assert a.successful_samples == 2
    assert a.attack_success_rate == pytest.approx(0.5)
    assert a.adversarial_accuracy == pytest.approx(2 / 6)  # samples 2 and 4 stay right
    assert m.curves[0].target == "random"


def test_worst_case_names_a_targeted_attack_with_its_target():
    m = score([
        (spec("apgd", loss="ce"), [0, 1, 2, 3, 0, 1], None, None),
        (spec("apgd", loss="dlr", target="most_likely"), [1, 1, 2, 3, 0, 1], [1, 0, 0, 0, 1, 0], None),
    ])
    (worst,) = m.worst_case
    assert worst.attacks == ("apgd", "apgd target=most_likely")
    assert worst.accuracy == pytest.approx(5 / 6)


def test_targets_must_come_with_a_targeted_attack_and_only_then():
    acc = EvasionAccumulator([spec(target="1")], 6, CLASSES)
    with pytest.raises(InvalidArgument, match="a targeted attack's records must carry targets"):
        acc.add(0, batch(LABELS, LABELS, LABELS))
    with pytest.raises(InvalidArgument, match="target 4 is outside 0..3"):
        acc.add(0, batch(LABELS, LABELS, LABELS, targets=[4, 1, 1, 1, 1, 1]))
    acc = EvasionAccumulator([spec()], 6, CLASSES)
    with pytest.raises(InvalidArgument, match="an untargeted attack's records must not carry targets"):
        acc.add(0, batch(LABELS, LABELS, LABELS, targets=[1] * 6))


def test_an_unbounded_attack_is_in_no_worst_case_and_on_no_curve():
    m = score([
        (spec("cw", eps=None), [1, 0, 3, 2, 1, 0], None, [0.5, 0.7, 0.2, 0.9, 1.1, 0.3]),
        (spec("pgd", eps=0.1, norm="2"), [0, 0, 2, 3, 0, 1], None, None),
    ])
    cw, pgd = m.attacks
    assert cw.attack_success_rate == 1.0 and cw.perturbation_l2_median == pytest.approx(0.6)
    assert [(w.norm, w.eps, w.attacks) for w in m.worst_case] == [("2", 0.1, ("pgd",))]
    assert [c.attack for c in m.curves] == ["pgd"]
    assert not [w for w in m.warnings if w.check == "unbounded_attack_fails"]


def test_only_unbounded_attacks_score_zero_robustness():
    m = score([(spec("cw", eps=None), [1, 0, 3, 2, 1, 0], None, None)])
    assert m.worst_case == () and m.robustness_score == 0.0


def checks(m):
    return [w.check for w in m.warnings]


def test_a_sound_evaluation_raises_no_warning():
    m = score([
        (spec("fgsm", eps=0.1), [0, 1, 2, 0, 0, 1], None, None),  # 5/6 right
        (spec("pgd", eps=0.1), [0, 1, 0, 0, 0, 1], None, None),  # 4/6
        (spec("spsa", eps=0.1), [0, 1, 2, 0, 0, 1], None, None),  # 5/6
        (spec("pgd", eps=0.2), [1, 1, 0, 0, 0, 1], None, None),  # 3/6
        (spec("pgd", eps=0.5), [1, 0, 0, 0, 1, 0], None, None),  # 0/6
    ])
    assert m.warnings == ()


def test_gradient_free_beating_every_gradient_attack_is_reported():
    m = score([
        (spec("pgd", eps=0.1), [0, 1, 2, 0, 0, 1], None, None),  # 5/6 right
        (spec("apgd", eps=0.1), [0, 1, 2, 3, 0, 0], None, None),  # 5/6
        (spec("spsa", eps=0.1), [1, 0, 2, 0, 0, 1], None, None),  # 3/6
    ])
    (warning,) = m.warnings
    assert warning.check == "gradient_free_beats_gradient"
    assert "spsa" in warning.message and "0.5000" in warning.message and "0.8333" in warning.message


def test_one_step_beating_iterative_is_reported_but_noise_is_not():
    m = score([
        (spec("fgsm", eps=0.1), [1, 0, 0, 0, 0, 1], None, None),  # 2/6 right
        (spec("bim", eps=0.1), [0, 1, 2, 3, 0, 0], None, None),  # 5/6
    ])
    assert checks(m) == ["single_step_beats_iterative"]
    assert "bim Linf eps=0.1" in m.warnings[0].message
    within_noise = score([
        (spec("fgsm", eps=0.1), [0, 1, 2, 3, 0, 0], None, None),  # 5/6
        (spec("bim", eps=0.1), [0, 1, 2, 3, 0, 1], None, None),  # 6/6: one sample apart
    ])
    assert within_noise.warnings == ()


def test_targeted_attacks_are_not_compared_for_masking():
    m = score([
        (spec("fgsm", eps=0.1), [1, 0, 0, 0, 0, 1], None, None),
        (spec("pgd", eps=0.1, target="3"), [3, 1, 2, 3, 0, 1], [3] * 6, None),
    ])
    assert m.warnings == ()


def test_accuracy_rising_with_eps_is_reported():
    m = score([
        (spec("pgd", eps=0.1), [1, 0, 0, 0, 0, 1], None, None),  # 2/6
        (spec("pgd", eps=0.2), [0, 1, 2, 3, 0, 0], None, None),  # 5/6
    ])
    assert checks(m) == ["accuracy_rises_with_eps"]
    assert "eps=0.2" in m.warnings[0].message and "eps=0.1" in m.warnings[0].message


def test_accuracy_not_falling_at_half_the_range_is_reported():
    stuck = [0, 1, 2, 3, 1, 0]  # 4/6 right; the largest class holds 2/6
    m = score([(spec("pgd", eps=0.5), stuck, None, None)])
    assert "accuracy_not_falling" in checks(m)
    assert "0.3333" in next(w.message for w in m.warnings if w.check == "accuracy_not_falling")
    # In a 0..255 range, 0.5 is a tiny budget: nothing to say.
    assert score([(spec("pgd", eps=0.5), stuck, None, None)], clip_range=(0.0, 255.0)).warnings == ()
    # Without a clip range the check is skipped.
    assert score([(spec("pgd", eps=0.5), stuck, None, None)], clip_range=None).warnings == ()


def test_a_budget_covering_the_whole_range_is_reported_once_per_eps():
    broken = [1, 2, 3, 0, 1, 2]  # every sample wrong: no masking to see
    m = score([(spec("fgsm", eps=1e9), broken, None, None), (spec("pgd", eps=1e9), broken, None, None),
               (spec("pgd", eps=0.1), broken, None, None)])
    assert checks(m) == ["budget_covers_input_range"]
    assert "eps=1e+09 is the whole data range (0 to 1) or more" in m.warnings[0].message
    # In a 0..255 range the same 1.0 is a small budget.
    assert score([(spec("pgd", eps=1.0), broken, None, None)], clip_range=(0.0, 255.0)).warnings == ()


def test_an_unbounded_attack_that_fails_is_reported():
    m = score([(spec("cw", eps=None), [0, 0, 3, 2, 1, 0], None, None)])  # sample 0 resists
    assert checks(m) == ["unbounded_attack_fails"]
    assert "0.8333" in m.warnings[0].message


def test_margin_needs_both_samples_and_accuracy():
    assert masking._beats(0.5, 0.52, 1000)  # 20 samples, 2 points
    assert not masking._beats(0.5, 0.505, 1000)  # 5 samples but half a point
    assert not masking._beats(0.5, 0.6, 10)  # 10 points but one sample


def test_norms_spill_to_disk_and_give_the_same_means_and_medians(monkeypatch):
    """With many successful samples the norms go to a temporary file; the
    figures are those of keeping them all in memory."""
    from advex.scoring import metrics

    rng = np.random.default_rng(0)
    n = 3000
    labels = rng.integers(0, CLASSES, n)
    adv = (labels + 1) % CLASSES  # every sample broken
    norms = rng.random(n).astype(np.float32)

    def figures(spill_values):
        monkeypatch.setattr(metrics, "SPILL_VALUES", spill_values)
        acc = EvasionAccumulator([spec()], n, CLASSES)
        for lo in range(0, n, 256):
            hi = min(n, lo + 256)
            b = batch(labels[lo:hi], labels[lo:hi], adv[lo:hi], l2=norms[lo:hi])
            acc.add(0, RecordBatch(**{**b.__dict__, "first_sample": lo}))
        return acc.finish().attacks[0]

    kept, spilled = figures(10**9), figures(500)
    assert kept.perturbation_l2_median == spilled.perturbation_l2_median == pytest.approx(float(np.median(norms)))
    assert kept.perturbation_l2_mean == pytest.approx(spilled.perturbation_l2_mean)
