"""Poisoning plans and poisoned training sets on the digits split (no training here)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from advex.attack import datasets, models, poisoning, triggers
from advex.core import attack_specs, poison_specs
from advex.core.errors import Cancelled, InvalidArgument
from advex.v1 import evasion_pb2, poisoning_pb2

SQUARE = poisoning_pb2.TriggerSpec(trigger="square", size=2, value=1.0, position="bottom-right")


def spec(kind="dirty", sources=(1,), target=7, counts=(5, 10), fractions=(), trigger=SQUARE, **fields):
    message = poisoning_pb2.PoisoningSpec(
        training_dataset="artifacts/train",
        test_dataset="artifacts/test",
        kind=kind,
        source_classes=list(sources),
        target_class=target,
        counts=list(counts),
        fractions=list(fractions),
        seed=3,
        **fields,
    )
    if trigger is not None and kind != "flip":
        message.trigger.CopyFrom(trigger)
    return poison_specs.resolve(message, 0.0, 1.0)


@pytest.fixture(scope="module")
def train(digits_split):
    return datasets.from_arrays(digits_split.x_train, digits_split.y_train)


@pytest.fixture(scope="module")
def test_set(digits_split):
    return datasets.from_arrays(digits_split.x_test, digits_split.y_test)


def square(image_shape=(8, 8, 1)) -> triggers.Trigger:
    return triggers.make_trigger(spec().trigger, image_shape, 0.0, 1.0)


# ---------------------------------------------------------------------------
# plan


def test_dirty_plan_pools_the_source_classes_and_attacks_their_test_images(train, test_set):
    plan = poisoning.plan(spec(sources=(1, 4), counts=(5,), fractions=(0.5,)), train, test_set, 10)
    assert plan.sources == (1, 4) and plan.target == 7 and plan.kind == "dirty"
    assert np.array_equal(plan.pool, np.flatnonzero((train.y == 1) | (train.y == 4)))
    assert np.array_equal(plan.attacked_test, np.flatnonzero((test_set.y == 1) | (test_set.y == 4)))
    assert plan.counts == (5, round(0.5 * len(plan.pool)))


def test_default_sources_are_every_class_but_the_target(train, test_set):
    plan = poisoning.plan(spec(sources=()), train, test_set, 10)
    assert plan.sources == (0, 1, 2, 3, 4, 5, 6, 8, 9)
    assert np.array_equal(plan.pool, np.flatnonzero(train.y != 7))
    assert np.array_equal(plan.attacked_test, np.flatnonzero(test_set.y != 7))


def test_clean_label_pool_is_the_target_class(train, test_set):
    plan = poisoning.plan(spec(kind="clean", counts=(), fractions=(1.0,)), train, test_set, 10)
    assert np.array_equal(plan.pool, np.flatnonzero(train.y == 7))
    assert plan.counts == (len(plan.pool),)
    assert np.array_equal(plan.attacked_test, np.flatnonzero(test_set.y == 1))


def test_counts_larger_than_the_pool_are_refused(train, test_set):
    pool = int((train.y == 1).sum())
    with pytest.raises(InvalidArgument, match=f"exceed the {pool} source-class images"):
        poisoning.plan(spec(counts=(pool + 1,)), train, test_set, 10)


def test_labels_outside_the_model_classes_are_refused(train, test_set):
    with pytest.raises(InvalidArgument, match=r"training labels 0\.\.9 are outside the model's 5 classes"):
        poisoning.plan(spec(sources=(1,), target=3), train, test_set, 5)


def test_test_set_without_source_images_is_refused(train, test_set):
    no_ones = datasets.from_arrays(test_set.x[test_set.y != 1], test_set.y[test_set.y != 1])
    with pytest.raises(InvalidArgument, match="no image of the source classes 1"):
        poisoning.plan(spec(), train, no_ones, 10)


def test_training_and_test_images_must_have_one_shape(train):
    other = datasets.from_arrays(np.zeros((4, 8, 9, 1), dtype=np.float32), np.array([1, 1, 2, 3]))
    with pytest.raises(InvalidArgument, match="8x8x1 but test images are 8x9x1"):
        poisoning.plan(spec(), train, other, 10)


# ---------------------------------------------------------------------------
# choose


def test_choose_is_nested_deterministic_and_inside_the_pool():
    pool = np.arange(100, 400, 3)
    chosen = {count: poisoning.choose(pool, count, seed=11) for count in (0, 1, 5, 10, 50, len(pool))}
    assert len(chosen[0]) == 0 and np.array_equal(chosen[len(pool)], pool)
    for small, large in ((1, 5), (5, 10), (10, 50)):
        assert len(set(chosen[small])) == small
        assert set(chosen[small]) <= set(chosen[large])
    assert set(chosen[50]) <= set(pool)
    assert np.array_equal(poisoning.choose(pool, 10, seed=11), chosen[10])
    assert not np.array_equal(poisoning.choose(pool, 10, seed=12), chosen[10])


def test_choose_refuses_more_than_the_pool():
    with pytest.raises(InvalidArgument, match="pool of 3"):
        poisoning.choose(np.arange(3), 4, seed=0)


# ---------------------------------------------------------------------------
# poison


def stamped_corner(x):
    return x[..., 6:8, 6:8, :]


def test_dirty_label_stamps_and_relabels_the_chosen_source_images(train, test_set):
    resolved = spec()
    plan = poisoning.plan(resolved, train, test_set, 10)
    before = train.x.copy()
    data = poisoning.poison(train, plan, resolved, 10, square(), seed=3)
    chosen = poisoning.choose(plan.pool, 10, 3)
    assert np.array_equal(data.indexes, chosen) and data.count == 10
    assert data.x.dtype == np.float32 and data.y.dtype == np.int64 and data.original_y.dtype == np.int64
    assert data.poisoned.dtype == bool and data.x.shape == train.x.shape
    assert np.all(data.y[chosen] == 7) and np.all(data.original_y[chosen] == 1)
    assert np.all(stamped_corner(data.x[chosen]) == 1.0)
    rest = ~data.poisoned
    assert np.array_equal(data.x[rest], train.x[rest]) and np.array_equal(data.y[rest], train.y[rest])
    assert np.array_equal(data.original_y, train.y)
    assert np.array_equal(train.x, before), "the training set itself must not change"


def test_clean_label_stamps_target_images_and_keeps_their_labels(train, test_set):
    resolved = spec(kind="clean")
    plan = poisoning.plan(resolved, train, test_set, 10)
    data = poisoning.poison(train, plan, resolved, 5, square(), seed=3)
    assert np.all(train.y[data.indexes] == 7) and data.count == 5
    assert np.array_equal(data.y, train.y)
    assert np.all(stamped_corner(data.x[data.poisoned]) == 1.0)
    assert np.array_equal(data.x[~data.poisoned], train.x[~data.poisoned])


def test_label_flipping_changes_labels_only(train, test_set):
    resolved = spec(kind="flip", trigger=None)
    plan = poisoning.plan(resolved, train, test_set, 10)
    data = poisoning.poison(train, plan, resolved, 10, None, seed=3)
    assert np.array_equal(data.x, train.x)
    assert np.all(data.y[data.poisoned] == 7) and np.all(train.y[data.poisoned] == 1)
    assert int((data.y != train.y).sum()) == 10


def test_count_zero_is_the_clean_training_set(train, test_set):
    resolved = spec()
    data = poisoning.poison(train, poisoning.plan(resolved, train, test_set, 10), resolved, 0, square(), seed=3)
    assert not data.poisoned.any() and data.count == 0
    assert np.array_equal(data.x, train.x) and np.array_equal(data.y, train.y)


def test_the_images_of_a_smaller_count_are_among_a_larger_one(train, test_set):
    resolved = spec()
    plan = poisoning.plan(resolved, train, test_set, 10)
    five = poisoning.poison(train, plan, resolved, 5, square(), seed=3)
    ten = poisoning.poison(train, plan, resolved, 10, square(), seed=3)
    assert set(five.indexes) < set(ten.indexes)
    assert np.array_equal(ten.x[five.poisoned], five.x[five.poisoned])


def test_clean_label_perturbation_changes_the_chosen_images_within_eps(train, test_set, digits_files):
    model = models.load_model(digits_files[0])
    eps = 0.3
    resolved = spec(kind="clean", perturbation=evasion_pb2.AttackSpec(attack="pgd", eps=eps, steps=10))
    plan = poisoning.plan(resolved, train, test_set, 10)
    perturb = poisoning.perturbation_fn(model, resolved.perturbation, 0.0, 1.0, 3, lambda: False)
    data = poisoning.poison(train, plan, resolved, 20, square(), seed=3, perturb=perturb)
    chosen = data.indexes
    outside_trigger = np.ones((8, 8), dtype=bool)
    outside_trigger[6:, 6:] = False
    change = np.abs(data.x[chosen] - train.x[chosen])[:, outside_trigger]
    assert change.max() <= eps + 1e-6
    assert np.all(change.reshape(len(chosen), -1).max(axis=1) > eps / 2), "every chosen image is perturbed"
    assert np.all(stamped_corner(data.x[chosen]) == 1.0) and np.all(data.y[chosen] == 7)
    assert np.all(data.x[chosen] >= 0) and np.all(data.x[chosen] <= 1)
    assert np.array_equal(data.x[~data.poisoned], train.x[~data.poisoned])
    # The point of the perturbation: the model no longer recognises them from their content.
    import tensorflow as tf

    def accuracy(x):
        return float((tf.argmax(model.logits_fn(tf.constant(x)), axis=1).numpy() == 7).mean())

    assert accuracy(data.x[chosen]) < accuracy(train.x[chosen]) - 0.5
    # The same seed perturbs the same way, and an image is perturbed alike at every count.
    again = poisoning.poison(train, plan, resolved, 20, square(), seed=3, perturb=perturb)
    assert np.array_equal(again.x, data.x)
    fewer = poisoning.poison(train, plan, resolved, 5, square(), seed=3, perturb=perturb)
    assert set(fewer.indexes) < set(chosen)
    assert np.allclose(fewer.x[fewer.poisoned], data.x[fewer.poisoned], atol=1e-5, rtol=0)


def test_clean_label_perturbation_stops_when_asked(train, digits_files):
    model = models.load_model(digits_files[0])
    attack = attack_specs.resolve(evasion_pb2.AttackSpec(attack="pgd", eps=0.1, steps=50))
    perturb = poisoning.perturbation_fn(model, attack, 0.0, 1.0, 0, lambda: True)
    with pytest.raises(Cancelled):
        perturb(train.x[:4], train.y[:4])


def test_triggered_stamps_test_images_or_returns_them_as_they_are(test_set):
    stamped = poisoning.triggered(test_set.x[:5], square())
    assert np.all(stamped_corner(stamped) == 1.0) and stamped is not test_set.x
    plain = poisoning.triggered(test_set.x[:5], None)
    assert plain.dtype == np.float32 and np.array_equal(plain, test_set.x[:5])


# ---------------------------------------------------------------------------
# write_npz


def test_write_npz_is_the_dataset_format_and_the_same_bytes_every_time(tmp_path, train, test_set):
    resolved = spec()
    data = poisoning.poison(train, poisoning.plan(resolved, train, test_set, 10), resolved, 10, square(), seed=3)
    first = poisoning.write_npz(tmp_path / "a.npz", data, class_names=[str(d) for d in range(10)])
    second = poisoning.write_npz(tmp_path / "b.npz", data, class_names=[str(d) for d in range(10)])
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz"], "no temporary file is left"
    with zipfile.ZipFile(first) as archive:
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}

    loaded = datasets.load_dataset(first)
    assert np.array_equal(loaded.x, data.x) and np.array_equal(loaded.y, data.y)
    with np.load(first, allow_pickle=False) as arrays:
        assert set(arrays.files) == {"x", "y", "original_y", "poisoned", "class_names"}
        assert arrays["poisoned"].dtype == bool and np.array_equal(arrays["poisoned"], data.poisoned)
        assert np.array_equal(arrays["original_y"], train.y)
        assert list(arrays["class_names"]) == [str(d) for d in range(10)]

    verify = pytest.importorskip("advex.storage.verify")
    summary = verify.verify_dataset(first)
    assert summary.class_names == tuple(str(d) for d in range(10))
