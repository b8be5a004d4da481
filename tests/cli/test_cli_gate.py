"""--fail-under thresholds (advex.cli.gate) on hand-made reports: parsing,
selectors, the <= form, and errors that say what to fix. That `advex
evaluate --fail-under` and `advex gate` exit 3 or 0 on a real report is in
tests/mesh/test_mesh_gate.py."""

from __future__ import annotations

import pytest

from advex.cli.client import CliError
from advex.cli.gate import check, parse_threshold
from advex.v1 import evasion_pb2, report_pb2


def _result(attack, eps, accuracy, norm="inf", steps=0, target="", **fields):
    return report_pb2.AttackResult(
        attack=attack, norm=norm, eps=eps, steps=steps, adversarial_accuracy=accuracy, target=target,
        spec=evasion_pb2.AttackSpec(attack=attack, norm=norm, eps=eps, steps=steps or None, target=target or None),
        **fields,
    )


EVASION = report_pb2.Report(evasion=report_pb2.EvasionReport(
    clean_accuracy=0.96, robustness_score=0.55,
    attacks=[
        _result("fgsm", 0.1, 0.61), _result("pgd", 0.1, 0.50, steps=40), _result("pgd", 0.2, 0.20, steps=40),
        _result("pgd", 0.1, 0.40, steps=40, target="random"), _result("pgd", 1.0, 0.30, norm="2", steps=40),
    ],
    worst_case=[report_pb2.WorstCase(norm="inf", eps=0.1, accuracy=0.45), report_pb2.WorstCase(norm="2", eps=0.1,
                                                                                                accuracy=0.9)],
))
POISONING = report_pb2.Report(poisoning=report_pb2.PoisoningReport(
    baseline=report_pb2.PoisonedModelResult(poison_count=0, attack_success_rate=0.0, clean_accuracy=0.97),
    poisoned=[report_pb2.PoisonedModelResult(poison_count=c, attack_success_rate=a, clean_accuracy_drop=d)
              for c, a, d in ((5, 0.1, 0.0), (20, 0.95, 0.005))],
))


def outcomes(report, *texts):
    return [(o.subject, round(o.actual, 6), o.passed) for o in check(report, [parse_threshold(t) for t in texts])]


def test_the_issues_examples_parse():
    t = parse_threshold("adversarial_accuracy@pgd:eps=0.1=0.5")
    assert (t.metric, t.selector, t.at_most, t.value) == ("adversarial_accuracy", "pgd:eps=0.1", False, 0.5)
    t = parse_threshold("attack_success_rate@count=20<=0.2")
    assert (t.metric, t.selector, t.at_most, t.value) == ("attack_success_rate", "count=20", True, 0.2)
    assert parse_threshold("worst_case@0.1>=0.4").selector == "0.1"


def test_report_level_numbers():
    assert outcomes(EVASION, "robustness_score=0.6", "clean_accuracy=0.9") == [
        ("the report", 0.55, False), ("the report", 0.96, True)]


def test_attack_selectors_match_the_spec():
    assert outcomes(EVASION, "adversarial_accuracy@pgd:eps=0.1=0.5") == [
        ("pgd Linf eps=0.1 steps=40", 0.5, True), ("pgd Linf eps=0.1 steps=40 target=random", 0.4, False)]
    assert [s for s, _, _ in outcomes(EVASION, "adversarial_accuracy@pgd:eps=0.1,target=random=0")] == [
        "pgd Linf eps=0.1 steps=40 target=random"]
    assert [s for s, _, _ in outcomes(EVASION, "adversarial_accuracy@pgd:norm=l2=0")] == ["pgd L2 eps=1 steps=40"]
    # Without a selector: every attack, so the weakest result decides.
    assert [p for _, _, p in outcomes(EVASION, "adversarial_accuracy=0.3")] == [True, True, False, True, True]


def test_worst_case_by_budget_and_norm():
    assert outcomes(EVASION, "worst_case@0.1=0.4") == [("inf eps=0.1", 0.45, True), ("2 eps=0.1", 0.9, True)]
    assert outcomes(EVASION, "worst_case@inf:0.1=0.5") == [("inf eps=0.1", 0.45, False)]


def test_poisoning_at_most_per_count_and_baseline():
    assert outcomes(POISONING, "attack_success_rate<=0.2") == [
        ("the model poisoned with 5 images", 0.1, True), ("the model poisoned with 20 images", 0.95, False)]
    assert outcomes(POISONING, "attack_success_rate@count=5<=0.2") == [("the model poisoned with 5 images", 0.1, True)]
    assert outcomes(POISONING, "clean_accuracy@baseline=0.95") == [("the clean baseline", 0.97, True)]


@pytest.mark.parametrize("text, phrase", [
    ("robustness_score", "write METRIC[@SELECTOR]=VALUE"),
    ("robustness_score=high", "write METRIC[@SELECTOR]=VALUE"),
    ("robustnes_score=0.5", "unknown metric 'robustnes_score'"),
])
def test_malformed_thresholds_say_how_to_write_them(text, phrase):
    with pytest.raises(CliError, match=phrase.replace("[", r"\[").replace("]", r"\]")):
        parse_threshold(text)


@pytest.mark.parametrize("report, text, phrase", [
    (EVASION, "adversarial_accuracy@apgd=0.5", "nothing in this evasion report matches it"),
    (EVASION, "worst_case@0.3=0.5", "nothing in this evasion report matches it"),
    (EVASION, "attack_success_rate@count=20<=0.2", "nothing in this evasion report matches it"),
    (POISONING, "robustness_score=0.5", "nothing in this poisoning report matches it"),
    (POISONING, "attack_success_rate@count=7<=0.2", "nothing in this poisoning report matches it"),
    (POISONING, "attack_success_rate@seven<=0.2", "a poisoning selector is count=N or baseline"),
    (EVASION, "worst_case@inf=0.5", "the worst_case selector is EPS or NORM:EPS"),
    (EVASION, "worst_case@l1:0.1=0.5", "unknown norm 'l1'"),
    (EVASION, "adversarial_accuracy@pgd:stepz=4=0.5", "'stepz=4' is not key=value with key one of"),
])
def test_a_threshold_that_matches_nothing_is_an_error_not_a_pass(report, text, phrase):
    with pytest.raises(CliError, match=phrase):
        check(report, [parse_threshold(text)])


def test_the_error_lists_what_the_report_has():
    with pytest.raises(CliError) as info:
        check(EVASION, [parse_threshold("adversarial_accuracy@apgd=0.5")])
    assert "it has attacks fgsm Linf eps=0.1; pgd L2 eps=1 steps=40;" in str(info.value)
    assert "worst-case budgets 2:0.1, inf:0.1" in str(info.value)
    with pytest.raises(CliError, match=r"it has the baseline and models poisoned with 5, 20 images"):
        check(POISONING, [parse_threshold("attack_success_rate@count=7<=0.2")])


@pytest.mark.parametrize("setting", ["eps", "steps", "poison_count"])
def test_settings_are_not_metrics(setting):
    with pytest.raises(CliError, match=f"unknown metric '{setting}'. Evasion: robustness_score"):
        parse_threshold(f"{setting}=1")

