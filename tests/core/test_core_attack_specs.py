"""The evasion catalogue: every attack's keys, defaults and ranges, the
target modes, suites, and the README table made from the catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest

from advex.core import attack_specs
from advex.core.errors import InvalidArgument
from advex.v1 import evasion_pb2

README = Path(__file__).resolve().parents[2] / "README.md"


def resolve(**fields):
    return attack_specs.resolve(evasion_pb2.AttackSpec(**fields))


@pytest.mark.parametrize(
    "attack, expected",
    [
        ("fgsm", dict(steps=1, step_size=0.2)),
        ("bim", dict(steps=10, step_size=2.5 * 0.2 / 10, random_init=False)),
        ("pgd", dict(steps=40, step_size=2.5 * 0.2 / 40, random_init=True, restarts=1)),
        ("mim", dict(steps=10, step_size=0.2 / 10, decay=1.0)),
        ("apgd", dict(steps=100, loss="ce", restarts=1)),
        ("spsa", dict(steps=100, learning_rate=0.01, delta=0.01, samples=128)),
    ],
)
def test_defaults_and_the_canonical_spec(attack, expected):
    resolved = resolve(attack=attack, eps=0.2)
    for key, value in expected.items():
        assert getattr(resolved, key) == pytest.approx(value), key
    assert attack_specs.resolve(resolved.to_proto()) == resolved
    assert resolved.bounded and not resolved.targeted


def test_cw_needs_no_budget_and_is_l2_only():
    unbounded = resolve(attack="cw")
    assert (unbounded.norm, unbounded.eps, unbounded.bounded) == ("2", None, False)
    assert (unbounded.steps, unbounded.binary_search_steps, unbounded.learning_rate) == (100, 5, 0.1)
    assert (unbounded.initial_const, unbounded.confidence) == (0.01, 0.0)
    assert unbounded.cost == 500
    assert unbounded.label == "cw L2 unbounded steps=100 binary_search_steps=5"
    assert not unbounded.to_proto().HasField("eps")
    assert attack_specs.resolve(unbounded.to_proto()) == unbounded
    assert resolve(attack="cw", eps=1.5).bounded
    with pytest.raises(InvalidArgument, match="cw supports only L2, got norm 'inf'"):
        resolve(attack="cw", norm="inf")
    with pytest.raises(InvalidArgument, match="spsa supports only Linf"):
        resolve(attack="spsa", eps=0.1, norm="2")
    with pytest.raises(InvalidArgument, match="eps .* is required for pgd"):
        resolve(attack="pgd")


def _bad_values(param: attack_specs.Param):
    """Values just outside `param`'s range, from the catalogue itself."""
    if param.choices:
        yield "nope"
        return
    if param.kind is bool:
        return
    if param.low is not None:
        yield param.low if param.low_open else param.low - (1 if param.kind is int else 0.5)
    if param.high is not None:
        yield param.high + 1
    if param.rule is not None:
        yield 3  # an odd count of probes
    if param.kind is float:
        yield float("nan")


CASES = [
    (name, param, value)
    for name, entry in attack_specs.ATTACKS.items()
    for param in entry.params
    for value in _bad_values(param)
]


@pytest.mark.parametrize("name, param, value", CASES, ids=[f"{n}-{p.key}-{v}" for n, p, v in CASES])
def test_every_bad_value_names_the_key_and_its_range(name, param, value):
    fields = {"attack": name, "eps": 0.1} if name != "cw" else {"attack": name}
    with pytest.raises(InvalidArgument) as info:
        resolve(**fields, **{param.key: value})
    message = str(info.value)
    assert param.key in message
    if value == value:  # not NaN
        assert param.requirement() in message


@pytest.mark.parametrize(
    "fields, phrase",
    [
        (dict(attack="fgsm", eps=0.1, steps=3), "'steps' does not apply to fgsm, which takes only eps and norm"),
        (dict(attack="bim", eps=0.1, random_init=True), "'random_init' does not apply to bim"),
        (dict(attack="mim", eps=0.1, restarts=2), "'restarts' does not apply to mim, which takes steps, step_size, decay"),
        (dict(attack="pgd", eps=0.1, loss="ce"), "'loss' does not apply to pgd"),
        (dict(attack="apgd", eps=0.1, step_size=0.1), "'step_size' does not apply to apgd"),
        (dict(attack="pgd", eps=0.1, restarts=0), "restarts must be between 1 and 100, got 0"),
        (dict(attack="spsa", eps=0.1, samples=3), "samples must be between 2 and 8192 (even), got 3"),
        (dict(attack="apgd", eps=0.1, loss="hinge"), "loss must be 'ce' or 'dlr', got 'hinge'"),
        (dict(attack="bim", eps=0.1, step_size=-0.1), "step_size must be > 0"),
        (dict(attack="pgd", eps=-0.1), "eps must be >= 0"),
        (dict(attack="fgsm", eps=0.1, target="cat"), "target must be a class index or one of random, least_likely"),
        (dict(attack="fgsm", eps=0.1, target="-1"), "target must be a class index >= 0"),
        (dict(attack="deepfool", eps=0.1), "known attacks: apgd, bim, cw, fgsm, mim, pgd, spsa"),
    ],
)
def test_bad_parameters_name_the_key_and_its_range(fields, phrase):
    with pytest.raises(InvalidArgument) as info:
        resolve(**fields)
    assert phrase in str(info.value)


@pytest.mark.parametrize("text, canonical", [("7", "7"), (" random ", "random"), ("least-likely", "least_likely"),
                                             ("MOST_LIKELY", "most_likely"), ("", "")])
def test_targets(text, canonical):
    resolved = resolve(attack="pgd", eps=0.1, target=text)
    assert resolved.target == canonical and resolved.targeted == bool(canonical)
    assert resolved.target_class == (7 if canonical == "7" else None)
    assert attack_specs.resolve(resolved.to_proto()) == resolved


def test_checks_against_the_model():
    attack_specs.check_for_model(resolve(attack="fgsm", eps=0.1, target="9"), 10)
    with pytest.raises(InvalidArgument, match="target 10 is not a class of this model, which has classes 0..9"):
        attack_specs.check_for_model(resolve(attack="fgsm", eps=0.1, target="10"), 10)
    with pytest.raises(InvalidArgument, match="loss=dlr needs at least 3 classes"):
        attack_specs.check_for_model(resolve(attack="apgd", eps=0.1, loss="dlr"), 2)
    with pytest.raises(InvalidArgument, match="loss=dlr needs at least 4 classes"):
        attack_specs.check_for_model(resolve(attack="apgd", eps=0.1, loss="dlr", target="random"), 3)


def test_labels_and_costs():
    assert resolve(attack="pgd", eps=0.1, steps=20, restarts=3).label == "pgd Linf eps=0.1 steps=20 restarts=3"
    assert resolve(attack="pgd", eps=0.1, steps=20, restarts=3).cost == 60
    assert resolve(attack="mim", eps=0.1, norm="2").label == "mim L2 eps=0.1 steps=10 decay=1"
    assert resolve(attack="fgsm", eps=0.1).label == "fgsm Linf eps=0.1"
    assert resolve(attack="fgsm", eps=0.1, target="3").label == "fgsm Linf eps=0.1 target=3"
    assert resolve(attack="apgd", eps=0.1, loss="dlr", restarts=2).cost == 200
    assert resolve(attack="spsa", eps=0.1, steps=10, samples=32).cost == 320


def test_the_standard_suite():
    specs = attack_specs.SUITES["standard"].expand([0.05, 0.1])
    resolved = [attack_specs.resolve(s) for s in specs]
    assert [(r.attack, r.loss, r.target, r.eps) for r in resolved] == [
        ("apgd", "ce", "", 0.05), ("apgd", "dlr", "most_likely", 0.05), ("fgsm", "", "", 0.05),
        ("apgd", "ce", "", 0.1), ("apgd", "dlr", "most_likely", 0.1), ("fgsm", "", "", 0.1),
    ]


def test_the_readme_table_is_the_catalogue():
    """The README's attack table is made from the catalogue
    (attack_specs.markdown_table); this fails when they drift apart."""
    assert attack_specs.markdown_table() in README.read_text()


@pytest.mark.parametrize("attack", ["bim", "pgd", "mim"])
def test_a_zero_budget_resolves_and_round_trips(attack):
    """eps 0 makes the default step size 0; its canonical spec must resolve
    again (the attack service re-resolves what the gateway stored)."""
    resolved = resolve(attack=attack, eps=0.0)
    assert resolved.step_size == 0.0
    assert attack_specs.resolve(resolved.to_proto()) == resolved
    with pytest.raises(InvalidArgument, match="step_size must be > 0"):
        resolve(attack=attack, eps=0.1, step_size=0.0)
