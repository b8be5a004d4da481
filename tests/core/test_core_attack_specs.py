"""The evasion catalogue: every attack's keys, defaults and ranges."""

from __future__ import annotations

import pytest

from advex.core import attack_specs
from advex.core.errors import InvalidArgument
from advex.v1 import evasion_pb2


def resolve(**fields):
    return attack_specs.resolve(evasion_pb2.AttackSpec(**fields))


@pytest.mark.parametrize(
    "attack, steps, step_size, random_init, restarts, decay",
    [
        ("fgsm", 1, 0.2, False, 1, 0.0),
        ("bim", 10, 2.5 * 0.2 / 10, False, 1, 0.0),
        ("pgd", 40, 2.5 * 0.2 / 40, True, 1, 0.0),
        ("mim", 10, 0.2 / 10, False, 1, 1.0),
    ],
)
def test_defaults_and_the_canonical_spec(attack, steps, step_size, random_init, restarts, decay):
    resolved = resolve(attack=attack, eps=0.2)
    assert (resolved.steps, resolved.random_init, resolved.restarts, resolved.decay) == (
        steps, random_init, restarts, decay,
    )
    assert resolved.step_size == pytest.approx(step_size)
    assert attack_specs.resolve(resolved.to_proto()) == resolved
    assert set(attack_specs.ATTACKS) == {"fgsm", "bim", "pgd", "mim"}


@pytest.mark.parametrize(
    "fields, phrase",
    [
        (dict(attack="fgsm", eps=0.1, steps=3), "'steps' does not apply to fgsm, which takes only eps and norm"),
        (dict(attack="bim", eps=0.1, random_init=True), "'random_init' does not apply to bim"),
        (dict(attack="mim", eps=0.1, restarts=2), "'restarts' does not apply to mim, which takes steps, step_size, decay"),
        (dict(attack="pgd", eps=0.1, decay=0.5), "'decay' does not apply to pgd"),
        (dict(attack="pgd", eps=0.1, restarts=0), "restarts must be between 1 and 100"),
        (dict(attack="pgd", eps=0.1, restarts=101), "restarts must be between 1 and 100"),
        (dict(attack="mim", eps=0.1, decay=-1), "decay must be between 0 and 10"),
        (dict(attack="mim", eps=0.1, decay=float("nan")), "decay must be a finite number"),
        (dict(attack="bim", eps=0.1, steps=0), "steps must be between 1 and 10000"),
        (dict(attack="bim", eps=0.1, step_size=-0.1), "step_size must be > 0"),
        (dict(attack="deepfool", eps=0.1), "known attacks: bim, fgsm, mim, pgd"),
    ],
)
def test_bad_parameters_name_the_key_and_its_range(fields, phrase):
    with pytest.raises(InvalidArgument) as info:
        resolve(**fields)
    assert phrase in str(info.value)


def test_labels_and_costs():
    assert resolve(attack="pgd", eps=0.1, steps=20, restarts=3).label == "pgd Linf eps=0.1 steps=20 restarts=3"
    assert resolve(attack="pgd", eps=0.1, steps=20, restarts=3).cost == 60
    assert resolve(attack="mim", eps=0.1, norm="2").label == "mim L2 eps=0.1 steps=10 decay=1"
    assert resolve(attack="fgsm", eps=0.1).label == "fgsm Linf eps=0.1"
