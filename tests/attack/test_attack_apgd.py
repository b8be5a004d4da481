"""Auto-PGD (advex.attack.apgd) against Croce & Hein 2020, Algorithm 1, and
on the digits CNN against PGD."""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
import pytest

from advex.attack import apgd, datasets
from advex.attack.attack_run import AttackRun
from advex.core.errors import Cancelled, InvalidArgument
from engine_runs import accuracy, first_digits, resolve, run_attack

N = 48


spec = resolve
run = functools.partial(run_attack, batch_size=N)


@pytest.fixture(scope="module")
def dataset(digits_split):
    return first_digits(digits_split, N)


# --- The checkpoint schedule ---------------------------------------------------------------


def paper_checkpoints(n_iter: int) -> list[int]:
    """w_j = ceil(p_j N) for p_j <= 1, from the paper's recurrence in exact arithmetic."""
    p = [Fraction(0), Fraction(22, 100)]
    while True:
        following = p[-1] + max(p[-1] - p[-2] - Fraction(3, 100), Fraction(6, 100))
        if following > 1:
            break
        p.append(following)
    return sorted({math.ceil(pj * n_iter) for pj in p})


@pytest.mark.parametrize("n_iter", [1, 2, 5, 10, 20, 37, 100, 1000, 10_000])
def test_checkpoints_follow_the_papers_recurrence(n_iter):
    marks = apgd.checkpoints(n_iter)
    assert marks == paper_checkpoints(n_iter)
    assert marks[0] == 0 and marks[-1] <= n_iter
    assert all(a < b for a, b in zip(marks, marks[1:]))


def test_checkpoints_for_100_iterations():
    # p = 0, .22, .41, .57, .70, .80, .87, .93, .99 (the next, 1.05, is past the end).
    assert apgd.checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    # Float p_j would give ceil(0.41 * 100) = 42 (0.41 * 100 = 41.00000000000001).
    assert apgd.checkpoints(1000)[:3] == [0, 220, 410]


# --- The step-size rule --------------------------------------------------------------------


def test_halving_decision_is_condition_1_or_condition_2():
    # span 4: condition 1 is "fewer than 0.75 * 4 = 3 rises" (strict).
    increases = np.array([2, 3, 4, 3, 0, 4])
    reduced_last = np.array([False, False, False, True, True, False])
    f_max = np.array([2.0, 2.0, 1.0, 1.0, 5.0, 3.0])
    f_max_last = np.array([1.0, 1.0, 1.0, 1.0, 5.0, 2.0])
    halve = apgd.halves_step(increases, 4, reduced_last, f_max, f_max_last)
    # 0: 2 < 3 rises (condition 1).  1: 3 rises is not < 3, f_max rose: keep.
    # 2: no condition 1, but eta and f_max unchanged (condition 2).
    # 3: f_max unchanged, but eta was halved last time: keep.
    # 4: condition 1 alone (condition 2 is off after a halving).  5: both off.
    np.testing.assert_array_equal(halve, [True, False, True, False, True, False])


def scripted_run(script, steps, eps=0.1):
    """An AttackRun over a logits function whose per-sample margin s (logits
    [0, s], label 0: CE = softplus(s), rising with s) follows `script[call]`
    and whose gradient is 0, so each step's loss is exactly the script's."""
    import tensorflow as tf

    script = tf.constant(np.asarray(script, dtype=np.float32))
    # A TF counter, not a Python one: APGD compiles its gradient step, and a
    # traced function would replay a Python counter's first value.
    calls = tf.Variable(0)

    def logits_fn(x):
        s = tf.gather(script, calls)
        calls.assign_add(1)
        return tf.stack([tf.zeros_like(s), s], axis=1) + 0.0 * tf.reduce_sum(x, axis=1, keepdims=True)

    n = script.shape[1]
    x = tf.fill((n, 2), 0.5)
    y = tf.zeros((n,), dtype=tf.int64)
    attack = spec(attack="apgd", eps=eps, steps=steps)
    return AttackRun(logits_fn, x, y, None, attack, 0.0, 1.0, 0, 0, lambda: False, lambda passes: None)


def test_step_size_halves_at_checkpoints_exactly_as_the_paper_says():
    steps = 20
    marks = apgd.checkpoints(steps)
    assert marks == [0, 5, 9, 12, 14, 16, 18, 19, 20]
    k = np.arange(steps + 1, dtype=np.float32)  # steps gradient passes + scoring the last iterate
    rising = k * 0.5 - 5  # the loss rises at every step: eta never halves
    flat = np.zeros_like(k)  # never rises: condition 1 at every checkpoint
    # A high start, then steady rises that never reach it again.
    below = np.where(k == 0, 10.0, -10.0 + 0.5 * k)
    trace = []
    apgd._apgd_once(scripted_run(np.stack([rising, flat, below], axis=1), steps), 0, trace)
    eta = np.array(trace)  # (steps, 3): the eta each step moved with
    halved = [[i for i in range(1, steps) if eta[i, s] < eta[i - 1, s]] for s in range(3)]
    assert eta[0].tolist() == pytest.approx([0.2] * 3)  # eta(0) = 2 eps
    assert halved[0] == []
    assert halved[1] == [5, 9, 12, 14, 16, 18, 19]
    # below: at 5, 4 of 5 rises (not < 3.75) but f_max = f(x0) unchanged and
    # eta too (condition 2): halve, restart from x_max = x0. At 9: after the
    # restart the first step falls (from f_max), 3 of 4 rises (not < 3), and
    # eta just changed: keep. At 12: 3 of 3 rises, but eta and f_max unchanged
    # since 9: halve. From 14 on every window of 1-2 steps starts with a fall
    # from f_max, leaving fewer than 0.75 * span rises: halve each time.
    assert halved[2] == [5, 12, 14, 16, 18, 19]
    for s, h in enumerate(halved):
        assert set(h) <= set(marks)
        assert eta[-1, s] == pytest.approx(0.2 / 2 ** len(h))


# --- The losses ----------------------------------------------------------------------------


def test_dlr_loss_on_hand_computed_logits():
    import tensorflow as tf

    logits = tf.constant([[4.0, -1.0, 2.0, 0.5, 3.0], [4.0, -1.0, 2.0, 0.5, 3.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    labels = tf.constant([2, 0, 0], dtype=tf.int64)
    # Sorted: 4, 3, 2, 0.5, -1.  y=2: -(2 - 4) / (4 - 2); y=0: -(4 - 3) / (4 - 2); ties: 0.
    np.testing.assert_allclose(apgd.dlr_loss(logits, labels).numpy(), [1.0, -0.5, 0.0], rtol=1e-6)
    targets = tf.constant([0, 1, 3], dtype=tf.int64)
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2): 4 - (2 + 0.5) / 2 = 2.75.
    np.testing.assert_allclose(
        apgd.dlr_loss(logits, labels, targets).numpy(), [-(2 - 4) / 2.75, -(4 + 1) / 2.75, 0.0], rtol=1e-6
    )


def test_dlr_needs_three_classes_and_four_targeted():
    import tensorflow as tf

    with pytest.raises(InvalidArgument, match="at least 3 classes"):
        apgd.dlr_loss(tf.zeros((2, 2)), tf.constant([0, 1], dtype=tf.int64))
    with pytest.raises(InvalidArgument, match="at least 4 classes"):
        apgd.dlr_loss(tf.zeros((2, 3)), tf.constant([0, 1], dtype=tf.int64), tf.constant([1, 2], dtype=tf.int64))
    # Through the attack, on a 2-class model.
    x = tf.fill((2, 3), 0.5)
    attack = spec(attack="apgd", eps=0.1, steps=2, loss="dlr")
    two_classes = AttackRun(
        lambda v: tf.stack([tf.reduce_sum(v, 1), -tf.reduce_sum(v, 1)], 1), x, tf.constant([0, 1], dtype=tf.int64),
        None, attack, 0.0, 1.0, 0, 0, lambda: False, lambda passes: None,
    )
    with pytest.raises(InvalidArgument, match="use loss 'ce'"):
        apgd.apgd(two_classes)


# --- On the digits CNN ---------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.05, 0.1])
def test_apgd_is_no_weaker_than_pgd_with_as_many_steps(model, dataset, eps):
    _, pgd = run(model, dataset, spec(attack="pgd", eps=eps, steps=20))
    _, ce = run(model, dataset, spec(attack="apgd", eps=eps, steps=20, loss="ce"))
    _, dlr = run(model, dataset, spec(attack="apgd", eps=eps, steps=20, loss="dlr"))
    accuracies = {name: accuracy(out, dataset.y) for name, out in (("pgd", pgd), ("ce", ce), ("dlr", dlr))}
    print(f"eps {eps}: adversarial accuracy {accuracies}")
    assert accuracies["ce"] <= accuracies["pgd"], accuracies
    # DLR, a margin loss, can settle on another wrong class than CE does and
    # keep one sample PGD breaks (at eps 0.1 here: the margin to class 5
    # stalls where CE goes to class 3); AutoAttack runs both losses for that.
    assert accuracies["dlr"] <= accuracies["pgd"] + 1 / N, accuracies
    robust_to_both = (ce["adv_probs"].argmax(1) == dataset.y) & (dlr["adv_probs"].argmax(1) == dataset.y)
    assert robust_to_both.mean() <= accuracies["pgd"], accuracies
    assert accuracies["pgd"] < 1.0  # the comparison is about something


@pytest.mark.parametrize("loss", ["ce", "dlr"])
@pytest.mark.parametrize("target, floor", [("3", 0.6), ("random", 0.45)])
def test_targeted_apgd_reaches_its_targets(model, dataset, loss, target, floor):
    # At eps 0.2 this CNN can be pushed to class 3 from ~70% of the digits,
    # to a random class from only about half: PGD with 200 steps reaches 54%.
    _, out = run(model, dataset, spec(attack="apgd", eps=0.2, steps=20, loss=loss, target=target))
    _, pgd = run(model, dataset, spec(attack="pgd", eps=0.2, steps=20, target=target))
    np.testing.assert_array_equal(out["targets"], pgd["targets"])
    eligible = out["targets"] != dataset.y
    reached = float(np.mean(out["adv_probs"].argmax(1)[eligible] == out["targets"][eligible]))
    by_pgd = float(np.mean(pgd["adv_probs"].argmax(1)[eligible] == pgd["targets"][eligible]))
    print(f"target {target} {loss}: reached {reached:.3f} (PGD {by_pgd:.3f}) of {eligible.sum()}")
    assert reached >= floor, (reached, by_pgd)
    # Targeted DLR weighs only z_y against z_t: a third class overtaking the
    # target costs it nothing, so it may miss a target or two that CE reaches.
    assert reached >= by_pgd - (1 if loss == "ce" else 2) / eligible.sum(), (reached, by_pgd)
    assert out["linf"].max() <= 0.2 + 1e-6


@pytest.mark.parametrize("norm, eps", [("inf", 0.1), ("2", 1.0)])
def test_apgd_stays_in_the_ball_and_the_range_and_costs_its_steps(model, dataset, norm, eps):
    passes = []
    _, out = run(model, dataset, spec(attack="apgd", norm=norm, eps=eps, steps=10), batch_size=24,
                 on_passes=passes.append)
    assert sum(passes) == 10 * 2
    delta = (out["adversarial"].astype(np.float64) - dataset.x).reshape(N, -1)
    if norm == "inf":
        assert np.abs(delta).max() <= eps + 1e-6
    else:
        assert np.sqrt((delta**2).sum(1)).max() <= eps * (1 + 1e-5)
    assert out["adversarial"].min() >= 0.0 and out["adversarial"].max() <= 1.0
    assert accuracy(out, dataset.y) < 0.9


def test_apgd_is_per_sample_and_reproducible(model, dataset):
    attack = spec(attack="apgd", eps=0.1, steps=10, loss="dlr", restarts=2)
    sixteen = datasets.from_arrays(dataset.x[:16], dataset.y[:16])
    _, whole = run(model, sixteen, attack, seed=4, batch_size=16)
    _, halves = run(model, sixteen, attack, seed=4, batch_size=8)
    assert np.array_equal(whole["adversarial"], halves["adversarial"])
    _, again = run(model, sixteen, attack, seed=4, batch_size=16)
    assert np.array_equal(again["adversarial"], whole["adversarial"])
    _, other = run(model, sixteen, attack, seed=5, batch_size=16)
    assert not np.array_equal(other["adversarial"], whole["adversarial"])


def test_restarts_never_weaken_apgd(model, dataset):
    one = spec(attack="apgd", eps=0.1, steps=10)
    three = spec(attack="apgd", eps=0.1, steps=10, restarts=3)
    assert (one.cost, three.cost) == (10, 30)
    _, single = run(model, dataset, one, seed=2)
    passes = []
    _, restarted = run(model, dataset, three, seed=2, on_passes=passes.append)
    assert sum(passes) == 30
    broken_once = single["adv_probs"].argmax(1) != dataset.y
    broken_restarted = restarted["adv_probs"].argmax(1) != dataset.y
    # The first run is the single run's: whatever it broke stays broken.
    assert np.all(broken_restarted[broken_once])
    assert accuracy(restarted, dataset.y) <= accuracy(single, dataset.y)
    print(f"restarts 1: {accuracy(single, dataset.y):.3f}, restarts 3: {accuracy(restarted, dataset.y):.3f}")


def test_apgd_stops_within_a_step(model, dataset):
    passes = []
    with pytest.raises(Cancelled, match="step 3 of 40, restart 1 of 2"):
        run(model, dataset, spec(attack="apgd", eps=0.1, steps=40, restarts=2),
            should_stop=lambda: len(passes) >= 3, on_passes=passes.append)
    assert len(passes) == 3
