"""advex.scoring.poisoning against hand-computed values, edge cases, and a
seeded randomized comparison with a whole-matrix reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import poisoning_example as ex
import pytest

from advex.core.errors import InvalidArgument
from advex.scoring.poisoning import PoisoningAccumulator, PoisoningBatch


def run_example(order, **header):
    acc = PoisoningAccumulator(**ex.header(**header))
    for model, lo, hi in order:
        acc.add(model, ex.batch(model, lo, hi))
    return acc.finish()


IN_ORDER = [(m, 0, ex.SAMPLES) for m in range(3)]


def assert_model(got, expected):
    for name, value in expected.items():
        assert getattr(got, name) == pytest.approx(value, abs=1e-12), (got.poison_count, name)


def test_hand_computed_example():
    m = run_example(IN_ORDER)
    assert (m.test_samples, m.num_classes, m.source_classes, m.target_class) == (6, 3, (0,), 2)
    assert m.source_test_samples == 3 and m.attacked_test_samples == ex.ATTACKED
    assert_model(m.baseline, ex.EXPECTED[0])
    assert [p.poison_count for p in m.poisoned] == [5, 10]  # ascending, baseline apart
    assert_model(m.poisoned[0], ex.EXPECTED[5])
    assert_model(m.poisoned[1], ex.EXPECTED[10])
    assert m.count_at_90_percent_asr == ex.COUNT_AT_90
    assert [x.clean_correct_samples for x in (m.baseline, *m.poisoned)] == [5, 3, 5]


@pytest.mark.parametrize("seed", range(5))
def test_split_and_shuffled_batches_give_the_same_result(seed):
    rng = np.random.default_rng(seed)
    order = []
    for model in range(3):
        cuts = sorted(rng.choice(np.arange(1, ex.SAMPLES), size=rng.integers(0, 5), replace=False))
        bounds = [0, *map(int, cuts), ex.SAMPLES]
        order += [(model, lo, hi) for lo, hi in zip(bounds, bounds[1:])]
    rng.shuffle(order)
    assert run_example(order) == run_example(IN_ORDER)  # counts only: exact


def test_argmax_ties_go_to_the_lowest_index():
    # Sample 2 of model 2 is triggered to [.45, .1, .45]: true class 0 and
    # the target 2 tie. Lowest index wins: right, and not a success.
    assert run_example(IN_ORDER).poisoned[0].successful_samples == 2
    # Break the tie towards the target: now it is a success, and count 5 reaches 0.9.
    acc = PoisoningAccumulator(**ex.header())
    for model in range(3):
        b = ex.batch(model, 0, ex.SAMPLES)
        if model == 2:
            q = b.triggered_probabilities.copy()
            q[2] = [0.44, 0.1, 0.46]
            b = dataclasses.replace(b, triggered_probabilities=q)
        acc.add(model, b)
    m = acc.finish()
    assert m.poisoned[0].successful_samples == 3 and m.poisoned[0].attack_success_rate == 1.0
    assert m.poisoned[0].triggered_accuracy_source == 0.0
    assert m.count_at_90_percent_asr == 5


def accumulator_from_predictions(labels, models, classes=3, source=(0,), target=2):
    """`models` maps poison_count -> (clean predictions, triggered predictions)."""
    labels = np.asarray(labels, np.int64)
    n = len(labels)

    def probs(pred):
        p = np.full((n, classes), 0.1 / (classes - 1), np.float32)
        p[np.arange(n), pred] = 0.9
        return p

    counts = list(models)
    acc = PoisoningAccumulator(
        num_classes=classes, samples=n, source_classes=list(source), target_class=target,
        poison_counts=counts, poison_fractions=[c / 100 for c in counts],
    )
    for i, (clean, triggered) in enumerate(models.values()):
        acc.add(i, PoisoningBatch(0, labels, probs(clean), probs(triggered)))
    return acc.finish()


def test_empty_source_group():
    # No test sample is of source class 0: nothing is attacked.
    labels = [1, 1, 2]
    m = accumulator_from_predictions(labels, {0: ([1, 0, 2], [1, 0, 2]), 4: ([1, 1, 2], [2, 1, 2])})
    assert m.source_test_samples == 0 and m.attacked_test_samples == 0
    for r in (m.baseline, *m.poisoned):
        assert r.clean_accuracy_source == 0 and r.triggered_accuracy_source == 0
        assert r.attack_success_rate == 0 and r.successful_samples == 0
    p = m.poisoned[0]
    assert p.clean_accuracy == 1.0 and p.clean_accuracy_non_source == 1.0
    assert p.triggered_accuracy_non_source == pytest.approx(2 / 3)
    assert p.accuracy_gap == pytest.approx(2 / 3)
    assert p.per_class_accuracy == (0.0, 1.0, 1.0)  # class 0 has no samples
    assert m.baseline.clean_accuracy == pytest.approx(2 / 3)
    assert p.clean_accuracy_drop == pytest.approx(2 / 3 - 1)  # poisoning helped here: negative drop
    assert m.count_at_90_percent_asr is None


def test_empty_non_source_group():
    # Every sample is of a source class (0 or 1; the target 2 has none).
    m = accumulator_from_predictions([0, 1, 1, 0], {0: ([0, 1, 1, 1], [2, 2, 1, 0])}, source=(0, 1))
    b = m.baseline
    assert m.source_test_samples == 4 and m.attacked_test_samples == 4
    assert b.clean_accuracy_non_source == 0 and b.triggered_accuracy_non_source == 0
    assert b.clean_accuracy == b.clean_accuracy_source == 0.75
    assert b.attack_success_rate == 0.5 and b.successful_samples == 2
    assert b.triggered_accuracy_source == 0.5 and b.accuracy_gap == -0.5
    assert m.poisoned == () and m.count_at_90_percent_asr is None


def test_no_count_reaches_90_percent():
    labels = [0] * 10 + [1]
    m = accumulator_from_predictions(
        labels,
        {0: ([0] * 10 + [1], [0] * 10 + [1]),
         8: ([0] * 10 + [1], [2] * 8 + [0] * 2 + [1]),
         3: ([0] * 10 + [1], [2] * 3 + [0] * 7 + [1])},
    )
    assert [p.attack_success_rate for p in m.poisoned] == pytest.approx([0.3, 0.8])
    assert m.count_at_90_percent_asr is None


def test_count_at_90_percent_is_inclusive_exact_and_the_smallest_count():
    # 9 of 10 attacked is exactly 0.9 and counts (0.9 * 10 in floats is 9.000000000000002).
    labels = [0] * 10 + [1]
    m = accumulator_from_predictions(
        labels,
        {30: ([0] * 11, [2] * 10 + [1]),
         7: ([0] * 11, [2] * 9 + [0] + [1]),
         0: ([0] * 11, [0] * 10 + [1]),
         2: ([0] * 11, [2] * 8 + [0] * 2 + [1])},
    )
    assert [(p.poison_count, p.successful_samples) for p in m.poisoned] == [(2, 8), (7, 9), (30, 10)]
    assert m.poisoned[1].attack_success_rate == pytest.approx(0.9)
    assert m.count_at_90_percent_asr == 7
    # The fractions stay with their counts through the sort.
    assert [p.poison_fraction for p in m.poisoned] == [0.02, 0.07, 0.30]
    assert m.baseline.poison_fraction == 0.0


def test_baseline_that_already_reaches_90_percent_is_not_a_count():
    # A baseline that predicts the target for source images has ASR 1, but
    # count_at_90_percent_asr only ever names a poisoned count.
    m = accumulator_from_predictions([0, 0], {0: ([2, 2], [2, 2]), 5: ([0, 0], [0, 0])})
    assert m.baseline.attack_success_rate == 1.0
    assert m.count_at_90_percent_asr is None


def test_clean_accuracy_drop_against_the_baseline():
    m = accumulator_from_predictions(
        [0, 1, 2, 1], {3: ([0, 0, 0, 1], [0, 0, 0, 1]), 0: ([0, 1, 2, 0], [0, 1, 2, 0])}
    )
    assert m.baseline.clean_accuracy == 0.75 and m.baseline.clean_accuracy_drop == 0
    assert m.poisoned[0].clean_accuracy == 0.5
    assert m.poisoned[0].clean_accuracy_drop == pytest.approx(0.25)


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(num_classes=1), "num_classes must be at least 2, got 1"),
        (dict(samples=0), "samples must be at least 1, got 0"),
        (dict(samples=11, max_samples=10), "samples must be between 1 and 10, got 11"),
        (dict(target_class=3), "target_class 3 is outside 0..2"),
        (dict(target_class=-1), "target_class -1 is outside 0..2"),
        (dict(source_classes=[]), "no source_classes"),
        (dict(source_classes=[0, 3]), "source_classes[1] = 3 is outside 0..2"),
        (dict(source_classes=[-1]), "source_classes[0] = -1 is outside 0..2"),
        (dict(source_classes=[0, 1, 0]), "source_classes[2] = 0 repeats an earlier entry"),
        (dict(source_classes=[0, 2]), "source_classes[1] = 2 is the target_class"),
        (dict(poison_counts=[], poison_fractions=[]), "no poison_counts"),
        (dict(poison_counts=[5, 10, 20], poison_fractions=[.1, .2, .3]), "no clean baseline; exactly one of poison_counts must be 0"),
        (dict(poison_counts=[0, 5, 0]), "poison_counts[2] = 0 repeats poison_counts[0]"),
        (dict(poison_counts=[0, 5, 5]), "poison_counts[2] = 5 repeats poison_counts[1]"),
        (dict(poison_counts=[0, -5, 10]), "poison_counts[1] = -5 is negative"),
        (dict(poison_fractions=[0.2, 0.0]), "3 poison_counts but 2 poison_fractions"),
        (dict(poison_fractions=[0.2, 0.0, 1.5]), "poison_fractions[2] = 1.5 must be between 0 and 1"),
        (dict(poison_fractions=[float("nan"), 0.0, 0.1]), "poison_fractions[0] = nan must be between 0 and 1"),
        (dict(max_models=2), "lists 3 models, at most 2 fit one request"),
    ],
)
def test_bad_header(override, message):
    with pytest.raises(InvalidArgument) as info:
        PoisoningAccumulator(**ex.header(**override))
    assert message in str(info.value)


def bad(model, lo, hi, **replace):
    return model, dataclasses.replace(ex.batch(model, lo, hi), **replace)


@pytest.mark.parametrize(
    "case, message",
    [
        ((5, ex.batch(0, 0, 1)), "model_index 5 is out of range: the header lists 3 model(s), indices 0..2"),
        ((-1, ex.batch(0, 0, 1)), "model_index -1 is out of range"),
        (bad(0, 0, 2, labels=np.array([[0], [0]])), "model 0 (poison_count 10): labels must have shape (n,)"),
        (bad(0, 0, 2, labels=np.array([0.0, 0.0])), "labels must be integers"),
        (bad(1, 0, 2, clean_probabilities=np.full((2, 4), 0.25, np.float32)),
         "model 1 (baseline, poison_count 0): clean_probabilities has 4 columns but the header says num_classes = 3"),
        (bad(2, 0, 2, triggered_probabilities=ex.TRIGGERED[2][:3]),
         "model 2 (poison_count 5): triggered_probabilities must have shape (2, 3) to match 2 labels"),
        (bad(0, 0, 2, triggered_probabilities=np.array([[3.0, -1, 0], [0, 2, 1]], np.float32)), "apply softmax"),
        (bad(0, 0, 2, clean_probabilities=np.array([[np.nan, 0, 1], [0, 1, 0]], np.float32)), "apply softmax"),
        (bad(0, 0, 2, clean_probabilities=np.array([[1, 0, 0], [0, 1, 0]], np.int64)), "must be floats"),
        (bad(0, 0, 2, labels=np.array([0, 3])), "label 3 is outside 0..2"),
        (bad(0, 4, 6, first_sample=5),
         "records for samples 5..6 fall outside the header's 6 samples (0..5)"),
        (bad(0, 0, 2, first_sample=-1), "samples -1..0 fall outside"),
    ],
)
def test_bad_batch(case, message):
    acc = PoisoningAccumulator(**ex.header())
    with pytest.raises(InvalidArgument) as info:
        acc.add(*case)
    assert message in str(info.value)


def test_probability_slack_forgives_rounding():
    acc = PoisoningAccumulator(**ex.header())
    p = np.array([[1.0005, 0, -0.0005]] * 6, np.float32)
    acc.add(0, dataclasses.replace(ex.batch(0, 0, 6), clean_probabilities=p))
    with pytest.raises(InvalidArgument, match="apply softmax"):
        acc.add(1, dataclasses.replace(ex.batch(1, 0, 6), clean_probabilities=p + 0.01))


def test_sample_delivered_twice():
    acc = PoisoningAccumulator(**ex.header())
    acc.add(2, ex.batch(2, 0, 3))
    acc.add(0, ex.batch(0, 2, 3))  # the same sample for another model is fine
    with pytest.raises(InvalidArgument, match=r"model 2 \(poison_count 5\): sample 2 was delivered twice; send each sample once per model"):
        acc.add(2, ex.batch(2, 2, 4))


def test_labels_disagree_across_models_and_the_failed_batch_changes_nothing():
    acc = PoisoningAccumulator(**ex.header())
    acc.add(0, ex.batch(0, 0, 6))
    wrong = dataclasses.replace(ex.batch(1, 2, 5), labels=np.array([0, 1, 2]))  # sample 4 is labelled 1
    with pytest.raises(InvalidArgument) as info:
        acc.add(1, wrong)
    assert (
        "model 1 (baseline, poison_count 0): sample 4 has label 2, but another model delivered label 1 for it; "
        "every model must score the same samples with the same labels"
    ) in str(info.value)
    # The rejected batch left no trace: the right one is still accepted and the result is the example's.
    acc.add(1, ex.batch(1, 2, 5))
    acc.add(1, ex.batch(1, 0, 2))
    acc.add(1, ex.batch(1, 5, 6))
    acc.add(2, ex.batch(2, 0, 6))
    assert acc.finish() == run_example(IN_ORDER)


def test_missing_samples_name_the_gap():
    acc = PoisoningAccumulator(**ex.header())
    for model in range(3):
        acc.add(model, ex.batch(model, 0, 1))
        acc.add(model, ex.batch(model, 4, 6) if model == 2 else ex.batch(model, 1, 6))
    with pytest.raises(InvalidArgument, match=r"model 2 \(poison_count 5\) has 3 of 6 samples; samples 1..3 \(and maybe more\) never arrived"):
        acc.finish()


def test_model_never_sent():
    acc = PoisoningAccumulator(**ex.header())
    acc.add(0, ex.batch(0, 0, 6))
    acc.add(2, ex.batch(2, 0, 6))
    with pytest.raises(InvalidArgument, match=r"model 1 \(baseline, poison_count 0\) has 0 of 6 samples; samples 0..5"):
        acc.finish()


def test_empty_batch_is_accepted_and_counts_nothing():
    acc = PoisoningAccumulator(**ex.header())
    acc.add(0, ex.batch(0, 3, 3))
    with pytest.raises(InvalidArgument, match="has 0 of 6 samples"):
        acc.finish()


def reference(labels, clean, triggered, counts, source, target, k):
    """Whole-matrix metrics, the obvious way, for comparison."""
    in_source = np.isin(labels, source)
    attacked = in_source & (labels != target)
    out = {}
    for count, p, q in zip(counts, clean, triggered, strict=True):
        clean_right = p.argmax(1) == labels
        trig_pred = q.argmax(1)

        def mean(mask, values):
            return float(values[mask].mean()) if mask.any() else 0.0

        ts, tn = mean(in_source, trig_pred == labels), mean(~in_source, trig_pred == labels)
        out[count] = dict(
            clean_accuracy=clean_right.mean(),
            clean_accuracy_source=mean(in_source, clean_right),
            clean_accuracy_non_source=mean(~in_source, clean_right),
            attack_success_rate=mean(attacked, trig_pred == target),
            successful_samples=int((attacked & (trig_pred == target)).sum()),
            triggered_accuracy_source=ts,
            triggered_accuracy_non_source=tn,
            accuracy_gap=tn - ts,
            per_class_accuracy=tuple(mean(labels == c, clean_right) for c in range(k)),
        )
    for count in counts:
        out[count]["clean_accuracy_drop"] = out[0]["clean_accuracy"] - out[count]["clean_accuracy"]
    reaching = [c for c in counts if c > 0 and out[c]["attack_success_rate"] >= 0.9 - 1e-12]
    return int(attacked.sum()), out, (min(reaching) if reaching else None)


@pytest.mark.parametrize("seed", range(20))
def test_randomized_against_reference(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 80)), int(rng.integers(2, 7))
    target = int(rng.integers(0, k))
    others = [c for c in range(k) if c != target]
    source = [int(c) for c in rng.choice(others, size=int(rng.integers(1, len(others) + 1)), replace=False)]
    counts = [0, *map(int, rng.choice(np.arange(1, 500), size=int(rng.integers(0, 5)), replace=False))]
    rng.shuffle(counts)
    labels = rng.integers(0, k, n)

    def random_probs(bias_to_target):
        logits = rng.normal(size=(n, k)) + 3.0 * np.eye(k)[labels] * rng.random((n, 1))
        logits[:, target] += bias_to_target
        e = np.exp(logits - logits.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).astype(np.float32)

    clean = [random_probs(0.0) for _ in counts]
    triggered = [random_probs(min(c, 400) / 40) for c in counts]
    acc = PoisoningAccumulator(
        num_classes=k, samples=n, source_classes=source, target_class=target,
        poison_counts=counts, poison_fractions=[c / 500 for c in counts],
    )
    pieces = []
    for i in range(len(counts)):
        cuts = np.sort(rng.choice(np.arange(1, n), size=min(n - 1, int(rng.integers(0, 5))), replace=False)) if n > 1 else []
        bounds = [0, *map(int, cuts), n]
        pieces += [(i, lo, hi) for lo, hi in zip(bounds, bounds[1:])]
    for j in rng.permutation(len(pieces)):
        i, lo, hi = pieces[j]
        acc.add(i, PoisoningBatch(lo, labels[lo:hi], clean[i][lo:hi], triggered[i][lo:hi]))
    m = acc.finish()

    attacked, expected, at_90 = reference(labels, clean, triggered, counts, source, target, k)
    assert m.attacked_test_samples == attacked
    assert m.count_at_90_percent_asr == at_90
    assert [p.poison_count for p in m.poisoned] == sorted(c for c in counts if c)
    for result in (m.baseline, *m.poisoned):
        for name, value in expected[result.poison_count].items():
            assert getattr(result, name) == pytest.approx(value, abs=1e-12), name
        assert result.poison_fraction == result.poison_count / 500
        assert len(result.per_class_accuracy) == k
