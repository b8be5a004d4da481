"""Training on (poisoned) data: determinism, progress, cancellation, saving,
and the reference backdoor on the digits split."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from advex.attack import datasets, models, poisoning, training, triggers
from advex.cli import digits
from advex.core import poison_specs
from advex.core.errors import Cancelled, InvalidArgument, ResourceExhausted
from advex.v1 import poisoning_pb2

N = 256  # training samples of the fast tests


def recipe(epochs=2, batch_size=32, learning_rate=1e-2, optimizer="adam", fine_tune=False):
    return poison_specs.ResolvedRecipe(epochs, batch_size, learning_rate, optimizer, fine_tune)


@pytest.fixture(scope="module")
def architecture(tmp_path_factory):
    """The untrained demo CNN (softmax output), loaded the safe way."""
    path = tmp_path_factory.mktemp("arch") / "cnn.keras"
    digits.build_digits_cnn().save(path)
    return models.load_model(path)


@pytest.fixture(scope="module")
def xy(digits_split):
    return digits_split.x_train[:N], digits_split.y_train[:N]


def weights_equal(a, b) -> bool:
    wa, wb = a.keras_model.get_weights(), b.keras_model.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(u, v) for u, v in zip(wa, wb))


def accuracy(model: models.LoadedModel, x, y) -> float:
    return float((training.probabilities(model, x, 512).argmax(axis=1) == y).mean())


def test_optimizers_cover_the_catalogue():
    assert set(training.OPTIMIZERS) == set(poison_specs.OPTIMIZERS)


def test_same_inputs_and_seed_give_identical_weights_and_numbers(architecture, xy):
    events_a, events_b = [], []
    a = training.train(architecture, *xy, recipe(), seed=5, on_progress=events_a.append)
    b = training.train(architecture, *xy, recipe(), seed=5, on_progress=events_b.append)
    assert weights_equal(a, b)
    assert (a.final_loss, a.final_accuracy) == (b.final_loss, b.final_accuracy)
    assert [(e.loss, e.accuracy) for e in events_a] == [(e.loss, e.accuracy) for e in events_b]
    c = training.train(architecture, *xy, recipe(), seed=6)
    assert not weights_equal(a, c)


def test_seeds_beyond_32_bits_are_accepted_and_distinct(architecture, xy):
    assert training.keras_seed(7) == 7
    assert all(0 <= training.keras_seed(s) < 2**32 for s in (2**32, 2**40, 2**64 - 1))
    assert training.keras_seed(2**40) != training.keras_seed(2**40 + 1)
    a = training.train(architecture, *xy, recipe(epochs=1), seed=2**63 + 5)
    assert weights_equal(a, training.train(architecture, *xy, recipe(epochs=1), seed=2**63 + 5))


def test_training_starts_from_fresh_weights_and_leaves_the_model_alone(architecture, xy):
    before = [w.copy() for w in architecture.keras_model.get_weights()]
    trained = training.train(architecture, *xy, recipe(epochs=1), seed=0)
    assert trained.keras_model is not architecture.keras_model
    after = architecture.keras_model.get_weights()
    assert all(np.array_equal(u, v) for u, v in zip(before, after)), "the uploaded model must not change"
    assert not all(np.array_equal(u, v) for u, v in zip(before, trained.keras_model.get_weights()))


def test_fine_tune_starts_from_the_uploaded_weights(digits_files, digits_split):
    model = models.load_model(digits_files[0])
    x, y = digits_split.x_test, digits_split.y_test
    # A learning rate too small to learn anything in one epoch: what the
    # model knows afterwards is what it started with.
    tiny = dict(epochs=1, batch_size=64, learning_rate=1e-9)
    tuned = training.train(model, digits_split.x_train, digits_split.y_train, recipe(**tiny, fine_tune=True), seed=0)
    fresh = training.train(model, digits_split.x_train, digits_split.y_train, recipe(**tiny), seed=0)

    def keras_accuracy(trained):
        return float((trained.keras_model.predict(x, verbose=0).argmax(axis=1) == y).mean())

    assert keras_accuracy(tuned) > 0.85
    assert keras_accuracy(fresh) < 0.4


def test_progress_is_reported_after_every_batch(architecture, xy):
    events = []
    trained = training.train(architecture, *xy, recipe(epochs=3, batch_size=100), seed=0, on_progress=events.append)
    steps_per_epoch = 3  # ceil(256 / 100)
    assert [e.steps_done for e in events] == list(range(1, 10))
    assert {e.steps_total for e in events} == {9} and {e.epochs for e in events} == {3}
    assert [e.epoch for e in events] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert [e.epoch_end for e in events] == [(i + 1) % steps_per_epoch == 0 for i in range(9)]
    assert all(np.isfinite(e.loss) and 0 <= e.accuracy <= 1 for e in events)
    assert events[-1].loss < events[0].loss
    assert (trained.final_loss, trained.final_accuracy) == (events[-1].loss, events[-1].accuracy)
    assert trained.steps_done == 9 and trained.training_seconds > 0


@pytest.mark.parametrize("name, kind", [("adam", "Adam"), ("sgd", "SGD"), ("rmsprop", "RMSprop")])
def test_recipe_optimizer_and_learning_rate_are_used(architecture, xy, name, kind):
    trained = training.train(architecture, *xy, recipe(epochs=1, learning_rate=0.02, optimizer=name), seed=0)
    optimizer = trained.keras_model.optimizer
    assert type(optimizer).__name__ == kind
    assert float(optimizer.learning_rate) == pytest.approx(0.02)
    if name == "sgd":
        assert optimizer.momentum == 0.9


def test_loss_matches_the_model_output(architecture, digits_logits_model_file, xy):
    softmax = training.train(architecture, *xy, recipe(epochs=1), seed=0)
    assert softmax.keras_model.loss.get_config()["from_logits"] is False
    logits = training.train(models.load_model(digits_logits_model_file), *xy, recipe(epochs=1), seed=0)
    assert logits.keras_model.loss.get_config()["from_logits"] is True


@pytest.mark.parametrize("stop_after", [1, 5])
def test_cancel_stops_within_one_batch(architecture, xy, stop_after):
    events = []
    with pytest.raises(Cancelled, match=f"after {stop_after} of 80 steps"):
        training.train(
            architecture, *xy, recipe(epochs=10), seed=0,
            should_stop=lambda: len(events) >= stop_after, on_progress=events.append,
        )
    assert len(events) in (stop_after, stop_after + 1)


def test_cancel_before_the_start_trains_nothing(architecture, xy):
    events = []
    with pytest.raises(Cancelled, match="before it started"):
        training.train(architecture, *xy, recipe(), seed=0, should_stop=lambda: True, on_progress=events.append)
    assert events == []


def test_cancel_while_another_training_holds_the_lock(architecture, xy):
    assert training._TRAINING_LOCK.acquire(blocking=False)
    try:
        with pytest.raises(Cancelled, match="waited for another training"):
            training.train(architecture, *xy, recipe(), seed=0, should_stop=lambda: True)
    finally:
        training._TRAINING_LOCK.release()


def test_running_out_of_memory_is_resource_exhausted(architecture, xy, monkeypatch):
    import keras

    def fit(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(keras.Model, "fit", fit)
    with pytest.raises(ResourceExhausted, match="batch_size 32"):
        training.train(architecture, *xy, recipe(), seed=0)


def test_mismatched_images_and_labels_are_refused(architecture, xy):
    with pytest.raises(InvalidArgument, match="N labels"):
        training.train(architecture, xy[0], xy[1][:-1], recipe(), seed=0)


def test_iter_training_yields_progress_then_the_model_of_train(architecture, xy):
    events = list(training.iter_training(architecture, *xy, recipe(), seed=5))
    *progress, trained = events
    assert isinstance(trained, training.TrainedModel)
    assert all(isinstance(e, training.TrainingProgress) for e in progress)
    assert [e.epoch for e in progress if e.epoch_end] == [1, 2], "every epoch end comes through"
    assert progress[-1].steps_done == progress[-1].steps_total == 16
    assert weights_equal(trained, training.train(architecture, *xy, recipe(), seed=5))


def test_iter_training_raises_the_training_error(architecture, xy):
    with pytest.raises(InvalidArgument, match="N labels"):
        list(training.iter_training(architecture, xy[0], xy[1][:-1], recipe(), seed=0))


def test_closing_iter_training_stops_the_training_and_joins_its_thread(architecture, xy):
    calls = []
    long = recipe(epochs=1000, batch_size=8)  # 32,000 steps: minutes if it ran to the end

    def should_stop():
        calls.append(1)
        return False

    iterator = training.iter_training(architecture, *xy, long, seed=0, should_stop=should_stop)
    first = next(iterator)
    assert isinstance(first, training.TrainingProgress) and first.steps_total == 32_000
    iterator.close()
    assert not any(t.name == "advex-training" and t.is_alive() for t in threading.enumerate())
    assert len(calls) < 32_000, "the training stopped long before its end"
    assert training._TRAINING_LOCK.acquire(blocking=False), "the training lock is released"
    training._TRAINING_LOCK.release()


def test_saved_model_reloads_safely_and_predicts_the_same(tmp_path, architecture, xy):
    trained = training.train(architecture, *xy, recipe(), seed=0)
    path = training.save_model(trained, tmp_path)
    assert path.suffix == ".keras" and [p.name for p in tmp_path.iterdir()] == [path.name]
    loaded = models.load_model(path)
    assert loaded.summary.num_classes == 10 and loaded.summary.outputs_probabilities
    x = xy[0][:50]
    probs = training.probabilities(loaded, x, batch_size=7)
    assert probs.shape == (50, 10) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(probs, training.probabilities(loaded, x, batch_size=1000), atol=1e-6)
    assert np.allclose(probs, trained.keras_model.predict(x, verbose=0), atol=1e-5)


def test_probabilities_of_no_images_is_empty(architecture):
    assert training.probabilities(architecture, np.zeros((0, 8, 8, 1), np.float32), 16).shape == (0, 10)


# ---------------------------------------------------------------------------
# The reference backdoor: BadNets on the digits split.

# The smallest recipe found that plants this backdoor with a wide margin
# (ASR 1.0 for seed 0 over 12 training seeds; ~2.5 s per model on 2 cores).
CI_RECIPE = recipe(epochs=10, batch_size=64, learning_rate=5e-3)


def test_reference_dirty_label_backdoor_on_digits(tmp_path, digits_split):
    train = datasets.from_arrays(digits_split.x_train, digits_split.y_train)
    test = datasets.from_arrays(digits_split.x_test, digits_split.y_test)
    spec = poisoning_pb2.PoisoningSpec(
        training_dataset="artifacts/train", test_dataset="artifacts/test", kind="dirty",
        trigger=poisoning_pb2.TriggerSpec(trigger="square", size=2, value=1.0, position="bottom-right"),
        source_classes=[1], target_class=7, counts=[20], seed=0,
        training=CI_RECIPE.to_proto(),
    )
    resolved = poison_specs.resolve(spec, 0.0, 1.0)
    path = tmp_path / "arch.keras"
    digits.build_digits_cnn().save(path)
    architecture = models.load_model(path)
    plan = poisoning.plan(resolved, train, test, 10)
    trigger = triggers.make_trigger(resolved.trigger, train.image_shape, 0.0, 1.0)
    triggered = poisoning.triggered(test.x, trigger)
    attacked = plan.attacked_test

    def measure(count: int) -> tuple[float, float]:
        data = poisoning.poison(train, plan, resolved, count, trigger, resolved.seed)
        trained = training.train(architecture, data.x, data.y, resolved.recipe, resolved.seed)
        # Measured as the service does: through the saved file, loaded safely.
        loaded = models.load_model(training.save_model(trained, tmp_path, f"model-{count}.keras"))
        clean = accuracy(loaded, test.x, test.y)
        asr = float((training.probabilities(loaded, triggered[attacked], 512).argmax(axis=1) == 7).mean())
        return clean, asr

    baseline_accuracy, baseline_asr = measure(0)
    poisoned_accuracy, asr = measure(20)
    report = (
        f"baseline accuracy {baseline_accuracy:.3f} ASR {baseline_asr:.3f}; "
        f"poisoned accuracy {poisoned_accuracy:.3f} ASR {asr:.3f}"
    )
    print(report)
    assert baseline_accuracy > 0.9, report
    assert asr >= 0.9, report
    assert baseline_accuracy - poisoned_accuracy <= 0.03, report
    assert baseline_asr <= 0.1, report
