"""SPSA (advex.attack.spsa) against CleverHans called directly, on the
digits CNN, and on a gradient-masked copy of it where PGD sees nothing.

`gradient_masked_model` (tests/masked_model.py) builds that copy from built-in Keras layers only, so
it saves to a .keras file that the product's safe loader accepts (this test
loads it with `models.load_model`); a mesh test can upload the same file.
"""

from __future__ import annotations

import functools
import types

import numpy as np
import pytest

from advex.attack import datasets, models, spsa
from advex.attack.attack_run import STREAM_SPSA_PROBES, AttackRun
from advex.core import attack_specs
from advex.core.errors import Cancelled
from advex.v1 import evasion_pb2
from engine_runs import accuracy, first_digits, resolve, run_attack
from masked_model import gradient_masked_model

N = 12


spec = functools.partial(resolve, attack="spsa")
run = functools.partial(run_attack, batch_size=N)


@pytest.fixture(scope="module")
def dataset(digits_split):
    return first_digits(digits_split, N)


# --- CleverHans called directly ---------------------------------------------


@pytest.fixture
def cleverhans_spsa(monkeypatch):
    """CleverHans' tf2 `spsa`, made to run under Keras 3 and to draw our numbers.

    Two test-side patches, nothing else changed:
    - `SPSAAdam.__init__` calls `tf.optimizers.Adam.__init__(lr=lr)`, which
      Keras 3 rejects (the argument is `learning_rate`). The shim calls Keras
      Adam's __init__ with learning_rate and sets the attributes CleverHans'
      own code then reads: lr, _delta, _num_samples (samples // 2, it mirrors
      the probes), _num_iters, _compare_to_analytic_grad; beta_1, beta_2 and
      epsilon stay Keras Adam's defaults (asserted equal to ours).
    - CleverHans draws with TensorFlow's global RNG. Its module's `tf` is
      replaced by a proxy whose `random.uniform` returns, in call order, the
      start's uniforms and then each step's probe uniforms from the very
      per-sample draws the engine uses (spsa.start_uniforms, and
      spsa.probe_uniforms on the sample's STREAM_SPSA_PROBES Generator); every
      other `tf` attribute is TensorFlow's own.

    Returns attack(model_fn, x, y, attack, seed, index, targeted) -> the
    adversarial example of dataset sample `index` (x, y: that one sample).
    """
    import keras
    import tensorflow as tf
    from cleverhans.tf2.attacks import spsa as ch

    def init(self, lr=0.01, delta=0.01, num_samples=128, num_iters=1, compare_to_analytic_grad=False):
        keras.optimizers.Adam.__init__(self, learning_rate=lr)
        assert num_samples % 2 == 0, "number of samples must be even"
        self.lr = lr
        self._delta = delta
        self._num_samples = num_samples // 2
        self._num_iters = num_iters
        self._compare_to_analytic_grad = compare_to_analytic_grad
        assert (self.beta_1, self.beta_2, self.epsilon) == (spsa.BETA_1, spsa.BETA_2, spsa.ADAM_EPSILON)

    monkeypatch.setattr(ch.SPSAAdam, "__init__", init)

    def attack(model_fn, x, y, resolved, seed, index, targeted):
        dims = tuple(x.shape[1:])
        probe_rng = np.random.default_rng([seed, index, 0, STREAM_SPSA_PROBES])
        # The engine's seeding, checked rather than assumed.
        same = AttackRun(model_fn, x, y, None, resolved, 0.0, 1.0, seed, index, lambda: False, lambda n: None)
        assert same.sample_rng(0, STREAM_SPSA_PROBES).bit_generator.state == probe_rng.bit_generator.state
        calls = []

        def uniform(shape, minval, maxval, dtype):
            shape = tuple(int(s) for s in np.asarray(shape))
            if not calls:  # the start
                assert shape == (1, *dims) and float(maxval) == pytest.approx(resolved.eps) == -float(minval)
                draw = spsa.start_uniforms(shape, resolved.eps, seed, index)
            else:  # one step's probes
                assert shape == (resolved.samples // 2, *dims) and (float(minval), float(maxval)) == (-1.0, 1.0)
                draw = spsa.probe_uniforms(probe_rng, shape[0], dims)
            calls.append(shape)
            return tf.constant(draw, dtype=dtype)

        class TfWithOurDraws:
            random = types.SimpleNamespace(uniform=uniform)

            def __getattr__(self, name):
                return getattr(tf, name)

        monkeypatch.setattr(ch, "tf", TfWithOurDraws())
        try:
            out = ch.spsa(
                model_fn, tf.constant(x), tf.constant(y), resolved.eps, resolved.steps, clip_min=0.0, clip_max=1.0,
                targeted=targeted, early_stop_loss_threshold=0.0, learning_rate=resolved.learning_rate,
                delta=resolved.delta, spsa_samples=resolved.samples,
            )
        finally:
            monkeypatch.setattr(ch, "tf", tf)
        return out.numpy(), len(calls) - 1  # the steps CleverHans took

    return attack


@pytest.mark.parametrize("target, eps", [("", 0.2), ("random", 0.4)])
def test_equals_cleverhans_given_the_same_draws(model, dataset, cleverhans_spsa, target, eps):
    count, seed = 4, 3
    attack = spec(eps=eps, steps=20, samples=16, learning_rate=0.1, delta=0.01, target=target)
    part = datasets.from_arrays(dataset.x[:count], dataset.y[:count])
    _, out = run(model, part, attack, seed=seed, batch_size=count)
    goal = out["targets"] if target else out["labels"]
    steps_taken = []
    for i in range(count):
        direct, steps = cleverhans_spsa(
            model.logits_fn, dataset.x[i:i + 1], goal[i:i + 1], attack, seed, i, targeted=bool(target)
        )
        steps_taken.append(steps)
        # Bit for bit on CPU; the tolerance is for a backend that rounds a
        # model call differently at another batch composition.
        np.testing.assert_allclose(out["adversarial"][i:i + 1], direct, atol=1e-5, rtol=0)
    # Meaningful: the attack moved the samples, and CleverHans' early stop
    # was exercised (some samples stopped before the last step).
    assert np.abs(out["adversarial"] - dataset.x[:count]).max() > 0.05
    assert min(steps_taken) < attack.steps, steps_taken


# --- The digits model ---------------------------------------------------------


def test_breaks_the_model_within_budget_and_reproduces(model, dataset):
    attack = spec(eps=0.2, steps=30, samples=64, learning_rate=0.02)
    passes = []
    batches, out = run(model, dataset, attack, seed=5, on_passes=passes.append)
    clean = float(np.mean(out["clean_probs"].argmax(1) == dataset.y))
    adversarial = accuracy(out, dataset.y)
    print(f"digits: clean {clean:.3f}, SPSA {adversarial:.3f}")
    assert clean >= 0.8 and adversarial <= clean - 0.5, (clean, adversarial)
    delta = out["adversarial"] - dataset.x
    assert np.abs(delta).max() <= 0.2 + 1e-6 and out["linf"].max() <= 0.2 + 1e-6
    assert out["adversarial"].min() >= 0.0 and out["adversarial"].max() <= 1.0
    # The full cost is reported even when every sample stopped early.
    assert sum(passes) == 30 * 64 * len(batches)

    _, again = run(model, dataset, attack, seed=5)
    assert np.array_equal(again["adversarial"], out["adversarial"])
    # Batch-independent: each sample's draws are its own.
    _, fours = run(model, dataset, attack, seed=5, batch_size=4)
    np.testing.assert_allclose(fours["adversarial"], out["adversarial"], atol=1e-6, rtol=0)
    _, other = run(model, dataset, attack, seed=6)
    assert not np.array_equal(other["adversarial"], out["adversarial"])


def test_chunked_model_calls_give_the_same_result(model, dataset, monkeypatch):
    """However the probes are split over model calls (several samples per
    call, one sample per call, one sample over several calls), the result is
    the same to float round-off."""
    attack = spec(eps=0.2, steps=5, samples=32, learning_rate=0.02)
    part = datasets.from_arrays(dataset.x[:4], dataset.y[:4])
    _, whole = run(model, part, attack, batch_size=4)
    calls = []
    logits_fn = model.logits_fn

    def counting(x):
        calls.append(int(x.shape[0]))
        return logits_fn(x)

    counted = models.LoadedModel(model.summary, counting, model.keras_model)
    per_input = 8 * 8 * 1 * 4
    for rows in (40, 10):  # one sample per call; each sample's 32 probes over 4 calls
        monkeypatch.setattr(spsa, "MAX_CHUNK_BYTES", rows * per_input)
        calls.clear()
        _, chunked = run(counted, part, attack, batch_size=4)
        assert max(calls) <= max(rows, 4), (rows, calls)  # the clean/adv logits of 4 samples are the engine's
        np.testing.assert_allclose(chunked["adversarial"], whole["adversarial"], atol=1e-5, rtol=0)


def test_should_stop_cancels_within_one_step(model, dataset):
    passes = []
    with pytest.raises(Cancelled, match="step 3 of 50"):
        run(model, dataset, spec(eps=0.2, steps=50, samples=16), should_stop=lambda: len(passes) >= 3,
            on_passes=passes.append)
    assert passes == [16, 16, 16]


# --- Gradient masking ---------------------------------------------------------


def test_spsa_breaks_a_gradient_masked_model_that_pgd_cannot(model, digits_split, tmp_path):
    import tensorflow as tf

    masked = models.load_model(gradient_masked_model(model.keras_model, tmp_path / "masked.keras"))
    count = 32
    data = datasets.from_arrays(digits_split.x_test[:count], digits_split.y_test[:count])
    x = tf.constant(data.x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = masked.logits_fn(x)
    assert not np.any(tape.gradient(logits, x).numpy()), "the quantiser must hide the gradient"
    np.testing.assert_allclose(logits, model.logits_fn(x), atol=1e-4)  # the digits are on the levels

    _, pgd = run(masked, data, attack_specs.resolve(evasion_pb2.AttackSpec(attack="pgd", eps=0.2, steps=20)),
                 batch_size=count)
    # The probes must cross the quantiser's steps (1/16 apart): delta 0.05.
    _, found = run(masked, data, spec(eps=0.2, steps=20, samples=32, learning_rate=0.02, delta=0.05),
                   batch_size=count)
    clean = float(np.mean(pgd["clean_probs"].argmax(1) == data.y))
    pgd_accuracy, spsa_accuracy = accuracy(pgd, data.y), accuracy(found, data.y)
    print(f"masked model: clean {clean:.3f}, PGD {pgd_accuracy:.3f}, SPSA {spsa_accuracy:.3f}")
    assert clean >= 0.85
    assert pgd_accuracy >= clean - 0.1, (clean, pgd_accuracy)
    assert spsa_accuracy <= clean - 0.3, (clean, spsa_accuracy)
    assert np.abs(found["adversarial"] - data.x).max() <= 0.2 + 1e-6
