"""advex.scoring.metrics against hand-computed values, edge cases, and a
seeded randomized comparison with a whole-matrix reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scoring_example as ex

from advex.core import attack_specs
from advex.core.errors import InvalidArgument
from advex.scoring.metrics import EvasionAccumulator, RecordBatch
from advex.v1 import evasion_pb2


def spec(attack="fgsm", norm="inf", eps=0.1, **kw):
    return attack_specs.resolve(evasion_pb2.AttackSpec(attack=attack, norm=norm, eps=eps, **kw))


def run_example(order):
    acc = EvasionAccumulator(ex.SPECS, ex.SAMPLES, ex.CLASSES)
    for attack, lo, hi in order:
        acc.add(attack, ex.batch(attack, lo, hi))
    return acc.finish()


IN_ORDER = [(a, 0, ex.SAMPLES) for a in range(3)]


def test_hand_computed_example():
    m = run_example(IN_ORDER)
    assert m.samples == 5 and m.num_classes == 3
    assert m.clean_accuracy == pytest.approx(0.8)
    assert m.mean_confidence_clean == pytest.approx(0.64)
    assert m.mean_true_class_probability_clean == pytest.approx(0.58)

    assert [a.spec for a in m.attacks] == ex.SPECS  # header order
    for got, expected in zip(m.attacks, ex.EXPECTED_ATTACKS, strict=True):
        for name, value in expected.items():
            assert getattr(got, name) == pytest.approx(value, abs=1e-6), (got.spec.label, name)

    assert [(w.norm, w.eps, w.attacks) for w in m.worst_case] == [
        ("inf", 0.1, ("fgsm", "pgd")),
        ("inf", 0.3, ("fgsm",)),
    ]
    assert [w.accuracy for w in m.worst_case] == pytest.approx([0.2, 0.0])
    assert [w.robustness_score for w in m.worst_case] == pytest.approx([0.25, 0.0])
    assert m.robustness_score == pytest.approx(0.125)

    fgsm, pgd = m.curves
    assert (fgsm.attack, fgsm.norm) == ("fgsm", "inf")
    assert fgsm.points == ((0.1, 2 / 5), (0.3, 0.0))
    assert fgsm.eps_at_half_clean_accuracy == pytest.approx(0.3)
    assert (pgd.attack, pgd.norm) == ("pgd", "inf")
    assert pgd.points == ((0.1, 2 / 5),)
    assert pgd.eps_at_half_clean_accuracy is None  # 0.4 is not below 0.8 / 2


@pytest.mark.parametrize("seed", range(5))
def test_split_and_shuffled_batches_give_the_same_result(seed):
    rng = np.random.default_rng(seed)
    order = []
    for attack in range(3):
        cuts = sorted(rng.choice(np.arange(1, ex.SAMPLES), size=rng.integers(0, 4), replace=False))
        bounds = [0, *cuts, ex.SAMPLES]
        order += [(attack, lo, hi) for lo, hi in zip(bounds, bounds[1:])]
    rng.shuffle(order)
    shuffled, reference = run_example(order), run_example(IN_ORDER)
    assert _close(shuffled, reference)


def _close(a, b):
    # asdict nests; compare leaf by leaf so float sums in another order pass.
    def leaves(x):
        if dataclasses.is_dataclass(x):
            return [v for f in dataclasses.fields(x) for v in leaves(getattr(x, f.name))]
        if isinstance(x, (tuple, list)):
            return [v for item in x for v in leaves(item)]
        if isinstance(x, np.ndarray):  # the figures' confusion matrix
            return x.ravel().tolist()
        return [x]

    for u, v in zip(leaves(a), leaves(b), strict=True):
        if isinstance(u, float):
            assert u == pytest.approx(v, abs=1e-9)
        else:
            assert u == v
    return True


def one_attack(labels, clean_pred, adv_pred, classes=3, attack_spec=None):
    """An accumulator fed one-hot-ish probabilities for the given predictions."""
    n = len(labels)

    def probs(pred):
        p = np.full((n, classes), 0.1 / (classes - 1), dtype=np.float32)
        p[np.arange(n), pred] = 0.9
        return p

    acc = EvasionAccumulator([attack_spec or spec()], n, classes)
    acc.add(
        0,
        RecordBatch(
            0,
            np.asarray(labels, np.int64),
            probs(np.asarray(clean_pred)),
            probs(np.asarray(adv_pred)),
            np.full(n, 0.1, np.float32),
            np.full(n, 1.0, np.float32),
            np.full(n, 5.0, np.float32),
        ),
    )
    return acc.finish()


def test_clean_accuracy_zero():
    m = one_attack(labels=[0, 1, 2], clean_pred=[1, 2, 0], adv_pred=[0, 0, 0])
    a = m.attacks[0]
    assert m.clean_accuracy == 0
    assert a.clean_correct_samples == 0 and a.successful_samples == 0
    assert a.attack_success_rate == 0  # not NaN
    assert a.adversarial_accuracy == pytest.approx(1 / 3)
    assert a.robustness_score == 0 and m.robustness_score == 0
    assert a.perturbation_l2_mean == 0 and a.perturbation_l2_median == 0
    assert m.curves[0].eps_at_half_clean_accuracy is None


def test_no_successful_samples():
    m = one_attack(labels=[0, 1, 2, 0], clean_pred=[0, 1, 2, 1], adv_pred=[0, 1, 2, 1])
    a = m.attacks[0]
    assert a.clean_correct_samples == 3 and a.successful_samples == 0
    assert a.attack_success_rate == 0
    for key in ("linf", "l2", "l0"):
        assert getattr(a, f"perturbation_{key}_mean") == 0
        assert getattr(a, f"perturbation_{key}_median") == 0
    assert a.robustness_score == 1 and m.robustness_score == 1


def test_adversarial_accuracy_above_clean_is_clipped_to_one():
    # clean 1/5 right, adversarial 2/5 right: ratio 2, score clipped to 1.
    m = one_attack(labels=[0, 0, 0, 0, 0], clean_pred=[0, 1, 1, 1, 1], adv_pred=[0, 0, 1, 1, 1])
    assert m.clean_accuracy == pytest.approx(0.2)
    assert m.attacks[0].adversarial_accuracy == pytest.approx(0.4)
    assert m.attacks[0].robustness_score == 1
    assert m.worst_case[0].robustness_score == 1 and m.robustness_score == 1


def test_worst_case_sorted_by_norm_then_eps_and_curves_take_strongest_at_same_eps():
    specs = [
        spec("pgd", "inf", 0.2, steps=5),
        spec("fgsm", "2", 1.0),
        spec("pgd", "inf", 0.2, steps=50),
        spec("fgsm", "inf", 0.1),
    ]
    acc = EvasionAccumulator(specs, 2, 2)
    labels = np.array([0, 1])
    clean = np.array([[1, 0], [0, 1]], np.float32)
    # Attack 2 (pgd, 50 steps) breaks sample 0, attack 0 (5 steps) breaks nothing.
    adv = {0: clean, 1: clean, 2: np.array([[0, 1], [0, 1]], np.float32), 3: clean}
    z = np.zeros(2, np.float32)
    for i in range(4):
        acc.add(i, RecordBatch(0, labels, clean, adv[i], z, z, z))
    m = acc.finish()
    assert [(w.norm, w.eps, w.attacks) for w in m.worst_case] == [
        ("2", 1.0, ("fgsm",)),
        ("inf", 0.1, ("fgsm",)),
        ("inf", 0.2, ("pgd",)),  # each name once
    ]
    assert [w.accuracy for w in m.worst_case] == [1.0, 1.0, 0.5]
    assert m.robustness_score == pytest.approx((1 + 1 + 0.5) / 3)
    curves = {(c.attack, c.norm): c for c in m.curves}
    assert list(curves) == [("pgd", "inf"), ("fgsm", "2"), ("fgsm", "inf")]  # header order
    assert curves["pgd", "inf"].points == ((0.2, 0.5),)  # min of 1.0 and 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(specs=[]), "no attacks"),
        (dict(samples=0), "samples must be at least 1, got 0"),
        (dict(samples=0, max_samples=10), "samples must be between 1 and 10, got 0"),
        (dict(samples=11, max_samples=10), "between 1 and 10"),
        (dict(num_classes=1), "num_classes must be at least 2"),
        (dict(specs=[spec(), spec()]), "attack 1 (fgsm Linf eps=0.1) repeats attack 0"),
    ],
)
def test_bad_header(kwargs, message):
    args = dict(specs=[spec()], samples=5, num_classes=3) | kwargs
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        EvasionAccumulator(**args)


def test_failed_batch_changes_nothing():
    acc = EvasionAccumulator(ex.SPECS, ex.SAMPLES, ex.CLASSES)
    acc.add(1, ex.batch(1, 0, 2))
    bad = dataclasses.replace(ex.batch(2, 0, 2), labels=np.array([0, 2]))  # sample 1 is labelled 1
    with pytest.raises(InvalidArgument, match="sample 1 has label 2, but another attack delivered label 1"):
        acc.add(2, bad)
    # The rejected batch left no trace: the good one is still accepted.
    acc.add(2, ex.batch(2, 0, 2))


def test_logits_are_rejected_with_a_hint():
    acc = EvasionAccumulator(ex.SPECS, ex.SAMPLES, ex.CLASSES)
    bad = dataclasses.replace(ex.batch(0, 0, 2), adversarial_probabilities=np.array([[3.0, -1, 0], [0, 2, 1]], np.float32))
    with pytest.raises(InvalidArgument, match="apply softmax"):
        acc.add(0, bad)


def test_missing_samples_name_the_gap():
    acc = EvasionAccumulator(ex.SPECS, ex.SAMPLES, ex.CLASSES)
    for a in range(3):
        acc.add(a, ex.batch(a, 0, 1))
        acc.add(a, ex.batch(a, 3, 5) if a == 2 else ex.batch(a, 1, 5))
    with pytest.raises(InvalidArgument, match=r"attack 2 \(pgd Linf eps=0.1 steps=10\) has 3 of 5 samples; samples 1..2"):
        acc.finish()


def reference(specs, labels, clean, adv, norms):
    """Whole-matrix metrics, the obvious way, for comparison."""
    n = len(labels)
    clean_right = clean.argmax(1) == labels
    clean_acc = clean_right.mean()
    out = []
    for i in range(len(specs)):
        adv_right = adv[i].argmax(1) == labels
        success = clean_right & ~adv_right
        out.append(
            dict(
                adversarial_accuracy=adv_right.mean(),
                attack_success_rate=success.sum() / clean_right.sum() if clean_right.any() else 0.0,
                mean_confidence_adversarial=adv[i].max(1).astype(np.float64).mean(),
                mean_true_class_probability_adversarial=adv[i][np.arange(n), labels].astype(np.float64).mean(),
                perturbation_l2_median=float(np.median(norms[i][success])) if success.any() else 0.0,
                perturbation_l2_mean=float(norms[i][success].astype(np.float64).mean()) if success.any() else 0.0,
                right=adv_right,
            )
        )
    return clean_acc, out


@pytest.mark.parametrize("seed", range(25))
def test_randomized_against_reference_and_invariants(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 60)), int(rng.integers(2, 6))
    pool = [spec("fgsm", norm, eps) for norm in ("inf", "2") for eps in (0.1, 0.3)]
    pool += [spec("pgd", norm, eps, steps=s) for norm in ("inf", "2") for eps in (0.1, 0.3) for s in (5, 20)]
    specs = [pool[i] for i in rng.choice(len(pool), size=int(rng.integers(1, 7)), replace=False)]
    labels = rng.integers(0, k, n)

    def random_probs():
        # Peaked logits so predictions are often right, sometimes wrong.
        logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[labels] * rng.random((n, 1)) * 2
        e = np.exp(logits - logits.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).astype(np.float32)

    clean = random_probs()
    adv = [random_probs() for _ in specs]
    l2 = [rng.random(n).astype(np.float32) for _ in specs]

    acc = EvasionAccumulator(specs, n, k)
    pieces = []
    for i in range(len(specs)):
        cuts = np.sort(rng.choice(np.arange(1, n), size=min(n - 1, int(rng.integers(0, 5))), replace=False)) if n > 1 else []
        bounds = [0, *map(int, cuts), n]
        pieces += [(i, lo, hi) for lo, hi in zip(bounds, bounds[1:])]
    for j in rng.permutation(len(pieces)):
        i, lo, hi = pieces[j]
        z = np.zeros(hi - lo, np.float32)
        acc.add(i, RecordBatch(lo, labels[lo:hi], clean[lo:hi], adv[i][lo:hi], z, l2[i][lo:hi], z))
    m = acc.finish()

    clean_acc, expected = reference(specs, labels, clean, adv, l2)
    assert m.clean_accuracy == pytest.approx(clean_acc)
    for got, exp in zip(m.attacks, expected, strict=True):
        for name, value in exp.items():
            if name != "right":
                assert getattr(got, name) == pytest.approx(value, rel=1e-6, abs=1e-9), name
        assert 0 <= got.robustness_score <= 1
        assert 0 <= got.attack_success_rate <= 1
    assert 0 <= m.robustness_score <= 1
    for w in m.worst_case:
        members = [i for i, s in enumerate(specs) if (s.norm, s.eps) == (w.norm, w.eps)]
        assert members
        assert w.accuracy <= min(m.attacks[i].adversarial_accuracy for i in members) + 1e-12
        all_right = np.logical_and.reduce([expected[i]["right"] for i in members])
        assert w.accuracy == pytest.approx(all_right.mean())
        assert 0 <= w.robustness_score <= 1
    assert [(w.norm, w.eps) for w in m.worst_case] == sorted({(s.norm, s.eps) for s in specs})
    for c in m.curves:
        eps = [p[0] for p in c.points]
        assert eps == sorted(eps)
        if c.eps_at_half_clean_accuracy is not None:
            assert dict(c.points)[c.eps_at_half_clean_accuracy] < m.clean_accuracy / 2
            assert all(a >= m.clean_accuracy / 2 for e, a in c.points if e < c.eps_at_half_clean_accuracy)
