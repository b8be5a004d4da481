"""The attack engine against CleverHans called directly, on the digits CNN."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

from advex.attack import attack_run, compiled, engine
from advex.core.errors import Cancelled
from engine_runs import first_digits, resolve, run_attack

N = 64


def assert_same_as_cleverhans(ours, direct):
    """The engine runs CleverHans' ops compiled (compiled.py); a compiled
    graph may sum in another order (the L2 normalisation), so equal to
    float32 round-off, not bit for bit. Iterated attacks (BIM, MIM: 10
    steps) accumulate that round-off: seen up to 2.1e-6 on inputs near 0.5
    (about 35 float32 ulps) when the CPU was shared, so the bound is 5e-6,
    still a hundred times below any step size tested."""
    np.testing.assert_allclose(ours, direct, rtol=0, atol=5e-6)


spec = resolve
run = functools.partial(run_attack, batch_size=32)


@pytest.fixture(scope="module")
def dataset(digits_split):
    return first_digits(digits_split, N)


@pytest.mark.parametrize("norm, eps", [("inf", 0.1), ("2", 1.0)])
def test_fgsm_equals_cleverhans(model, dataset, norm, eps):
    import tensorflow as tf
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method

    _, out = run(model, dataset, spec(attack="fgsm", norm=norm, eps=eps))
    x, y = dataset.batch(0, 32)
    direct = fast_gradient_method(
        model.logits_fn, tf.constant(x), eps, np.inf if norm == "inf" else 2,
        clip_min=0.0, clip_max=1.0, y=tf.constant(y), targeted=False,
    ).numpy()
    assert_same_as_cleverhans(out["adversarial"][:32], direct)
    assert not np.array_equal(direct, x)


def test_pgd_without_random_start_equals_cleverhans(model, dataset):
    import tensorflow as tf
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

    attack = spec(attack="pgd", eps=0.2, steps=5, random_init=False)
    _, out = run(model, dataset, attack, batch_size=N)
    direct = projected_gradient_descent(
        model.logits_fn, tf.constant(dataset.x), 0.2, attack.step_size, 5, np.inf,
        clip_min=0.0, clip_max=1.0, y=tf.constant(dataset.y), targeted=False, rand_init=False,
    ).numpy()
    assert_same_as_cleverhans(out["adversarial"], direct)


def test_pgd_breaks_the_model_within_budget_and_reproduces(model, dataset):
    attack = spec(attack="pgd", eps=0.3, steps=20)
    passes = []
    batches, out = run(model, dataset, attack, seed=7, on_passes=passes.append)
    y = dataset.y
    clean = float(np.mean(out["clean_probs"].argmax(1) == y))
    adversarial = float(np.mean(out["adv_probs"].argmax(1) == y))
    assert clean >= 0.85 and adversarial <= clean - 0.5, (clean, adversarial)
    assert sum(passes) == 20 * len(batches) == 40
    delta = out["adversarial"] - dataset.x
    assert np.abs(delta).max() <= 0.3 + 1e-6 and out["linf"].max() <= 0.3 + 1e-6
    assert out["adversarial"].min() >= 0.0 and out["adversarial"].max() <= 1.0
    np.testing.assert_allclose(out["linf"], np.abs(delta).reshape(N, -1).max(1), rtol=1e-6)
    np.testing.assert_allclose(out["l2"], np.sqrt((delta.astype(np.float64) ** 2).reshape(N, -1).sum(1)), rtol=1e-5)
    # Probabilities reported are the model's own softmax output.
    np.testing.assert_allclose(out["clean_probs"], model.keras_model(dataset.x, training=False), atol=1e-5)

    _, again = run(model, dataset, attack, seed=7)
    assert np.array_equal(again["adversarial"], out["adversarial"])
    _, other = run(model, dataset, attack, seed=8)
    assert not np.array_equal(other["adversarial"], out["adversarial"])


def test_random_start_depends_on_sample_not_batching():
    whole = engine.random_start((6, 8, 8, 1), "inf", 0.3, seed=5, first_sample=10)
    part = engine.random_start((2, 8, 8, 1), "inf", 0.3, seed=5, first_sample=13)
    assert np.array_equal(whole[3:5], part) and np.abs(whole).max() <= 0.3
    l2 = engine.random_start((50, 8, 8, 1), "2", 1.5, seed=1, first_sample=0)
    norms = np.sqrt((l2.astype(np.float64) ** 2).reshape(50, -1).sum(1))
    assert norms.max() <= 1.5 + 1e-5 and norms.min() > 0.5  # uniform in a 64-d ball: mostly near the surface


def test_zero_budget_changes_nothing(model, dataset):
    _, out = run(model, dataset, spec(attack="pgd", eps=0.0, steps=3))
    assert np.array_equal(out["adversarial"], dataset.x)
    assert not out["linf"].any() and not out["l0"].any()
    np.testing.assert_array_equal(out["clean_probs"], out["adv_probs"])


def test_l2_pgd_stays_in_the_l2_ball(model, dataset):
    _, out = run(model, dataset, spec(attack="pgd", norm="2", eps=1.0, steps=5), want_images=False)
    assert out["l2"].max() <= 1.0 + 1e-5 and out["l0"].max() > 0


def test_should_stop_cancels_between_chunks(model, dataset):
    """Steps run in compiled chunks; should_stop is asked before each one,
    and no chunk starts after it said stop."""
    passes = []
    with pytest.raises(Cancelled, match="cancelled"):
        run(model, dataset, spec(attack="pgd", eps=0.1, steps=5000), should_stop=lambda: len(passes) >= 3,
            on_passes=passes.append)
    assert len(passes) == 3
    # One step first (it traces), then chunks of many steps each.
    assert passes[0] == 1 and passes[1] > 1


def test_chunks_hold_the_same_steps_as_single_steps(model, dataset, monkeypatch):
    """Chunking changes when Python looks, never the result."""
    attack = spec(attack="mim", eps=0.1, steps=12)
    passes = []
    _, chunked = run(model, dataset, attack, on_passes=passes.append)
    assert max(passes) > 1 and sum(passes) == 12 * 2
    monkeypatch.setattr(compiled, "CHUNK_SECONDS", 0.0)  # one step per call
    passes.clear()
    _, single = run(model, dataset, attack, on_passes=passes.append)
    assert passes == [1] * 24
    np.testing.assert_array_equal(chunked["adversarial"], single["adversarial"])


def test_perturbation_norms_tolerance():
    x = np.zeros((2, 4), dtype=np.float32)
    adv = np.array([[0.0, 1e-8, -0.5, 0.25], [0, 0, 0, 0]], dtype=np.float32)
    linf, l2, l0 = engine.perturbation_norms(adv, x, 0.0, 1.0)
    np.testing.assert_allclose(linf, [0.5, 0.0])
    np.testing.assert_allclose(l2, [np.hypot(0.5, 0.25), 0.0], rtol=1e-6)
    np.testing.assert_array_equal(l0, [2, 0])  # 1e-8 is round-off, not a change


@pytest.mark.parametrize("norm, eps, step_size", [("inf", 0.2, 0.03), ("2", 1.5, 0.3)])
def test_bim_and_mim_equal_cleverhans(model, dataset, norm, eps, step_size):
    import tensorflow as tf
    from cleverhans.tf2.attacks.momentum_iterative_method import momentum_iterative_method
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

    order = np.inf if norm == "inf" else 2
    x, y = tf.constant(dataset.x), tf.constant(dataset.y)
    _, bim = run(model, dataset, spec(attack="bim", norm=norm, eps=eps, steps=5, step_size=step_size), batch_size=N)
    direct = projected_gradient_descent(
        model.logits_fn, x, eps, step_size, 5, order, clip_min=0.0, clip_max=1.0, y=y, targeted=False,
        rand_init=False,
    ).numpy()
    assert_same_as_cleverhans(bim["adversarial"], direct)

    mim_spec = spec(attack="mim", norm=norm, eps=eps, steps=5, step_size=step_size, decay=0.8)
    _, mim = run(model, dataset, mim_spec, batch_size=N)
    direct = momentum_iterative_method(
        model.logits_fn, x, eps, step_size, 5, order, clip_min=0.0, clip_max=1.0, y=y, targeted=False,
        decay_factor=0.8,
    ).numpy()
    assert_same_as_cleverhans(mim["adversarial"], direct)
    assert not np.allclose(direct, dataset.x)


@pytest.mark.parametrize("attack", ["bim", "mim", "pgd"])
def test_iterative_attacks_break_the_model_inside_the_ball_and_range(model, dataset, attack):
    _, out = run(model, dataset, spec(attack=attack, eps=0.3, steps=10))
    clean = float(np.mean(out["clean_probs"].argmax(1) == dataset.y))
    adversarial = float(np.mean(out["adv_probs"].argmax(1) == dataset.y))
    assert adversarial <= clean - 0.5, (attack, clean, adversarial)
    assert out["linf"].max() <= 0.3 + 1e-6
    assert out["adversarial"].min() >= 0.0 and out["adversarial"].max() <= 1.0


def test_restarts_never_weaken_pgd_and_cost_their_passes(model, dataset):
    one = spec(attack="pgd", eps=0.1, steps=3)
    five = spec(attack="pgd", eps=0.1, steps=3, restarts=5)
    assert (one.cost, five.cost) == (3, 15)
    _, single = run(model, dataset, one, seed=3)
    passes = []
    _, restarted = run(model, dataset, five, seed=3, on_passes=passes.append)
    broken_once = single["adv_probs"].argmax(1) != dataset.y
    broken_restarted = restarted["adv_probs"].argmax(1) != dataset.y
    # The first run is the single run's: whatever it broke stays broken.
    assert np.all(broken_restarted[broken_once]) and broken_restarted.sum() >= broken_once.sum()
    assert restarted["linf"].max() <= 0.1 + 1e-6
    # Per sample: the same result whatever the batch.
    _, rebatched = run(model, dataset, five, seed=3, batch_size=7)
    assert np.array_equal(rebatched["adversarial"], restarted["adversarial"])
    assert sum(passes) == 15 * 2  # every restart of both batches of 32


def test_mim_stops_within_a_step_when_chunks_are_single_steps(model, dataset, monkeypatch):
    monkeypatch.setattr(compiled, "CHUNK_SECONDS", 0.0)
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled, match="step 2 of 50"):
        run(model, dataset, spec(attack="mim", eps=0.1, steps=50), should_stop=should_stop)


@pytest.mark.parametrize("norm, eps, step_size", [("inf", 0.2, 0.03), ("2", 1.5, 0.3)])
def test_targeted_fgsm_bim_and_mim_equal_cleverhans(model, dataset, norm, eps, step_size):
    """Targeted: CleverHans is given the targets as y, with targeted=True."""
    import tensorflow as tf
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
    from cleverhans.tf2.attacks.momentum_iterative_method import momentum_iterative_method
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

    order = np.inf if norm == "inf" else 2
    x, t = tf.constant(dataset.x), tf.constant(np.full(N, 3, dtype=np.int64))
    _, fgsm = run(model, dataset, spec(attack="fgsm", norm=norm, eps=eps, target="3"), batch_size=N)
    assert np.array_equal(fgsm["targets"], np.full(N, 3))
    direct = fast_gradient_method(
        model.logits_fn, x, eps, order, clip_min=0.0, clip_max=1.0, y=t, targeted=True
    ).numpy()
    assert_same_as_cleverhans(fgsm["adversarial"], direct)
    _, bim = run(model, dataset, spec(attack="bim", norm=norm, eps=eps, steps=5, step_size=step_size, target="3"),
                 batch_size=N)
    direct = projected_gradient_descent(
        model.logits_fn, x, eps, step_size, 5, order, clip_min=0.0, clip_max=1.0, y=t, targeted=True,
        rand_init=False,
    ).numpy()
    assert_same_as_cleverhans(bim["adversarial"], direct)
    _, mim = run(model, dataset, spec(attack="mim", norm=norm, eps=eps, steps=5, step_size=step_size, target="3"),
                 batch_size=N)
    direct = momentum_iterative_method(
        model.logits_fn, x, eps, step_size, 5, order, clip_min=0.0, clip_max=1.0, y=t, targeted=True,
    ).numpy()
    assert_same_as_cleverhans(mim["adversarial"], direct)


@pytest.mark.parametrize("attack", ["fgsm", "bim", "pgd", "mim"])
def test_targeted_attacks_reach_their_targets(model, dataset, attack):
    kwargs = {} if attack == "fgsm" else {"steps": 20}
    _, out = run(model, dataset, spec(attack=attack, eps=0.3, target="random", **kwargs), seed=5)
    targets, labels = out["targets"], out["labels"]
    assert np.all(targets != labels) and np.all((0 <= targets) & (targets < 10))
    reached = float(np.mean(out["adv_probs"].argmax(1) == targets))
    # One step rarely lands on a chosen class; iterative attacks nearly always do.
    assert reached >= (0.2 if attack == "fgsm" else 0.9), (attack, reached)
    assert out["linf"].max() <= 0.3 + 1e-6


def test_target_modes():
    labels = np.array([0, 1, 2, 2])
    logits = np.array([[5.0, 1.0, 3.0], [0.0, 4.0, -1.0], [2.0, 1.0, 3.0], [9.0, 0.0, 8.0]])
    assert attack_run.choose_targets("least_likely", labels, logits, 3, 0, 0).tolist() == [1, 2, 1, 1]
    assert attack_run.choose_targets("most_likely", labels, logits, 3, 0, 0).tolist() == [2, 0, 0, 0]
    assert attack_run.choose_targets("2", labels, logits, 3, 0, 0).tolist() == [2, 2, 2, 2]
    # Random: another class than the label, drawn per sample (not per batch).
    whole = attack_run.choose_targets("random", np.arange(200) % 10, None, 10, 9, 100)
    part = attack_run.choose_targets("random", np.arange(50, 60) % 10, None, 10, 9, 150)
    assert np.all(whole != np.arange(200) % 10) and np.array_equal(whole[50:60], part)
    assert set(whole.tolist()) == set(range(10))
    other_seed = attack_run.choose_targets("random", np.arange(200) % 10, None, 10, 10, 100)
    assert not np.array_equal(whole, other_seed)


def test_untargeted_batches_carry_no_targets(model, dataset):
    batches, _ = run(model, dataset, spec(attack="fgsm", eps=0.1))
    assert all(b.targets is None for b in batches)


def test_batch_size_follows_the_model_and_the_memory(model):
    """The digits CNN is tiny: the cap. A model with big activations gets
    fewer rows, a power of two; one too big for the budget gets one row."""
    assert model.summary.activation_elements > 0
    assert engine.auto_batch_size(model.summary, 1024**3) == engine.MAX_AUTO_BATCH
    big = dataclasses.replace(model.summary, input_shape=(224, 224, 3), activation_elements=10_000_000)
    rows = engine.auto_batch_size(big, 1024**3)
    assert rows == 8  # 1 GiB / (12 bytes x (10M + 4 x 150528) values) = 8.4
    assert engine.auto_batch_size(big, 1000) == 1


def test_attack_config_batch_size_zero_means_chosen(monkeypatch):
    from advex.attack.config import AttackConfig

    assert AttackConfig.from_env({}).batch_size == 0
    config = AttackConfig.from_env({"ADVEX_ATTACK_BATCH_SIZE": "64", "ADVEX_ATTACK_MEMORY_BYTES": "1000"})
    assert (config.batch_size, config.attack_memory_bytes) == (64, 1000)
    with pytest.raises(ValueError, match="ADVEX_ATTACK_BATCH_SIZE must be >= 0"):
        AttackConfig.from_env({"ADVEX_ATTACK_BATCH_SIZE": "-1"})


def test_attacks_on_the_same_samples_share_the_clean_pass(model, dataset, monkeypatch):
    calls = []
    logits = model.kernels.logits
    monkeypatch.setattr(model.kernels, "logits", lambda x, rows: calls.append(len(x)) or logits(x, rows))
    clean = engine.CleanLogits(max_bytes=2**20)
    batches, first = run_attack(model, dataset, resolve(attack="fgsm", eps=0.1), batch_size=16, clean=clean)
    # Every batch: one clean and one adversarial pass.
    assert len(calls) == 2 * len(batches) and clean.hits == 0
    calls.clear()
    _, second = run_attack(model, dataset, resolve(attack="pgd", eps=0.1, steps=5), batch_size=16, clean=clean)
    # Only the adversarial passes: the clean logits come from the first run.
    assert len(calls) == len(batches) and clean.hits == len(batches)
    assert np.array_equal(second["clean_probs"], first["clean_probs"])
    _, alone = run_attack(model, dataset, resolve(attack="pgd", eps=0.1, steps=5), batch_size=16)
    np.testing.assert_allclose(second["clean_probs"], alone["clean_probs"], atol=1e-6)
    assert np.array_equal(second["adversarial"], alone["adversarial"])


def test_clean_logits_beyond_their_memory_are_computed_not_kept(model, dataset):
    one_batch = 16 * model.summary.num_classes * 4
    clean = engine.CleanLogits(max_bytes=one_batch)
    batches, _ = run_attack(model, dataset, resolve(attack="fgsm", eps=0.1), batch_size=16, clean=clean)
    assert len(batches) > 1
    run_attack(model, dataset, resolve(attack="fgsm", eps=0.1), batch_size=16, clean=clean)
    assert clean.hits == 1  # only the first batch fitted
