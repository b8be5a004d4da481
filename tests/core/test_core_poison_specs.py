"""The poisoning catalogue and the checks a spec needs without data, shared
by the gateway (before queueing) and the attack service (before training)."""

from __future__ import annotations

import pytest

from advex.core import poison_specs
from advex.core.errors import InvalidArgument
from advex.v1 import evasion_pb2, poisoning_pb2


def spec(**fields) -> poisoning_pb2.PoisoningSpec:
    values = dict(
        training_dataset="artifacts/t", test_dataset="artifacts/e",
        trigger=poisoning_pb2.TriggerSpec(trigger="square", size=2), source_classes=[1], target_class=7,
        counts=[20, 5],
    )
    values.update(fields)
    return poisoning_pb2.PoisoningSpec(**{k: v for k, v in values.items() if v is not None})


def test_defaults_are_filled_in_and_the_canonical_spec_round_trips():
    resolved = poison_specs.resolve(spec(), 0.0, 255.0)
    assert resolved.kind == "dirty" and resolved.seed == 0 and resolved.perturbation is None
    assert resolved.trigger == poison_specs.ResolvedTrigger("square", 2, "bottom-right", 255.0, "", 0.0, 0)
    assert resolved.recipe == poison_specs.ResolvedRecipe(30, 64, 1e-3, "adam", False)
    assert poison_specs.resolve(resolved.to_proto(), 0.0, 255.0) == resolved
    blend = poison_specs.resolve(spec(trigger=poisoning_pb2.TriggerSpec(trigger="blend")), 0.0, 1.0).trigger
    assert (blend.alpha, blend.seed, blend.size, blend.position) == (0.1, 0, 0, "")
    assert poison_specs.resolve(poison_specs.resolve(
        spec(trigger=poisoning_pb2.TriggerSpec(trigger="blend")), 0.0, 1.0).to_proto(), 0.0, 1.0).trigger == blend


def test_a_blend_of_a_user_pattern_round_trips():
    # Its canonical form carries no seed (which only makes noise), so the
    # gateway's stored spec resolves again on the attack service.
    given = spec(trigger=poisoning_pb2.TriggerSpec(trigger="blend", alpha=0.2, pattern="artifacts/p"))
    resolved = poison_specs.resolve(given, 0.0, 1.0)
    assert not resolved.to_proto().trigger.HasField("seed")
    assert poison_specs.resolve(resolved.to_proto(), 0.0, 1.0) == resolved
    assert resolved.patterns == ("artifacts/p",)


def test_sources_default_to_every_class_but_the_target():
    resolved = poison_specs.resolve(spec(source_classes=[]), 0.0, 1.0)
    assert resolved.sources(10) == (0, 1, 2, 3, 4, 5, 6, 8, 9)
    assert poison_specs.resolve(spec(source_classes=[3, 1]), 0.0, 1.0).sources(10) == (1, 3)


@pytest.mark.parametrize(
    "fields, phrase",
    [
        (dict(kind="sneaky"), "unknown kind 'sneaky'"),
        (dict(trigger=None), "trigger is required for dirty-label"),
        (dict(kind="flip"), "does not apply to label flipping"),
        (dict(source_classes=[7]), "a source must differ from the target"),
        (dict(source_classes=[1, 1]), "lists a class twice"),
        (dict(target_class=-1), "target_class must be a class index"),
        (dict(counts=[]), "give counts"),
        (dict(counts=[0]), "counts must each be at least 1"),
        (dict(counts=[], fractions=[1.5]), "fractions must each be in (0, 1]"),
        (dict(counts=list(range(1, 40))), "at most 32 counts"),
        (dict(training=poisoning_pb2.TrainingRecipe(epochs=0)), "epochs must be between 1 and 1000"),
        (dict(training=poisoning_pb2.TrainingRecipe(epochs=5000)), "epochs must be between 1 and 1000"),
        (dict(training=poisoning_pb2.TrainingRecipe(batch_size=0)), "batch_size must be between"),
        (dict(training=poisoning_pb2.TrainingRecipe(learning_rate=-1)), "learning_rate must be in"),
        (dict(training=poisoning_pb2.TrainingRecipe(optimizer="lbfgs")), "unknown optimizer 'lbfgs'"),
        (dict(trigger=poisoning_pb2.TriggerSpec(trigger="hexagon")), "unknown trigger 'hexagon'"),
        (dict(trigger=poisoning_pb2.TriggerSpec(trigger="square", value=2.0)), "outside the data's range 0..1"),
        (dict(trigger=poisoning_pb2.TriggerSpec(trigger="square", size=0)), "size must be between 1 and 4096"),
        (dict(trigger=poisoning_pb2.TriggerSpec(trigger="square", position="middle")), "is not a position"),
        (dict(trigger=poisoning_pb2.TriggerSpec(trigger="checker", value=0.0)), "one flat colour"),
        (dict(trigger=poisoning_pb2.TriggerSpec(trigger="pattern")), "pattern is required"),
        (dict(trigger=poisoning_pb2.TriggerSpec(trigger="pattern", pattern="a", size=3)), "'size' does not apply"),
        (dict(trigger=poisoning_pb2.TriggerSpec(trigger="blend", alpha=0)), "alpha must be in (0, 1]"),
        (dict(trigger=poisoning_pb2.TriggerSpec(trigger="blend", pattern="a", seed=1)), "'seed' makes a noise"),
        (dict(trigger=poisoning_pb2.TriggerSpec(trigger="square", alpha=0.5)), "'alpha' does not apply"),
        (dict(perturbation=evasion_pb2.AttackSpec(attack="pgd", eps=0.1)), "clean-label poisoning only"),
        (dict(kind="clean", perturbation=evasion_pb2.AttackSpec(attack="pgd", eps=-1)), "eps must be >= 0"),
        (dict(training_dataset=""), "training_dataset is required"),
    ],
)
def test_bad_specs_say_what_to_fix(fields, phrase):
    with pytest.raises(InvalidArgument) as info:
        poison_specs.resolve(spec(**fields), 0.0, 1.0)
    assert phrase in str(info.value)


def test_against_the_model_classes_and_image_size():
    resolved = poison_specs.resolve(spec(target_class=10, source_classes=[1]), 0.0, 1.0)
    with pytest.raises(InvalidArgument, match="target_class 10 is not one of the model's 10 classes"):
        poison_specs.check_against_model(resolved, 10, (8, 8, 1))
    with pytest.raises(InvalidArgument, match=r"source_classes \[12\] are not among"):
        poison_specs.check_against_model(poison_specs.resolve(spec(source_classes=[12]), 0, 1), 10, (8, 8, 1))
    big = poison_specs.resolve(spec(trigger=poisoning_pb2.TriggerSpec(trigger="square", size=9)), 0, 1)
    with pytest.raises(InvalidArgument, match="the trigger is 9x9 pixels but the images are 8x8"):
        poison_specs.check_against_model(big, 10, (8, 8, 1))
    poison_specs.check_against_model(poison_specs.resolve(spec(), 0, 1), 10, (8, 8, 1))  # fits


@pytest.mark.parametrize(
    "position, origin",
    [("top-left", (0, 0)), ("top-right", (0, 6)), ("bottom-left", (5, 0)), ("bottom-right", (5, 6)),
     ("center", (2, 3)), ("4,1", (1, 4))],
)
def test_patch_positions(position, origin):
    # A 3x2 patch on 8x8 images: (row, column) of its top-left pixel.
    assert poison_specs.patch_origin(position, (3, 2), (8, 8)) == origin


def test_a_patch_must_lie_inside_the_image():
    with pytest.raises(InvalidArgument, match="x must be at most 6 and y at most 6"):
        poison_specs.patch_origin("7,0", (2, 2), (8, 8))
    assert poison_specs.resolve_position(" 3 , 4 ") == "3,4"


def test_counts_of_a_pool_merge_counts_and_fractions():
    resolved = poison_specs.resolve(spec(counts=[20, 5], fractions=[0.5, 0.001]), 0, 1)
    assert poison_specs.counts_of_pool(resolved, 140) == (1, 5, 20, 70)
    with pytest.raises(InvalidArgument, match=r"counts \[20\] exceed the 10 source-class images"):
        poison_specs.counts_of_pool(resolved, 10)
    clean = poison_specs.resolve(spec(kind="clean"), 0, 1)
    with pytest.raises(InvalidArgument, match="no image of the target class 7"):
        poison_specs.counts_of_pool(clean, 0)
    assert poison_specs.resolve(spec(), 0, 1).recipe.steps_per_model(1438) == 30 * 23
