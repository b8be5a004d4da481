"""The CLI's flag parsers (units: no gateway needed)."""

from __future__ import annotations

import argparse

import pytest

from advex.cli.client import (
    CliError,
    parse_attack,
    parse_budgets,
    parse_classes,
    parse_counts,
    parse_suite,
    parse_trigger,
)
from advex.cli.main import build_parser


def test_budgets_are_values_or_ranges():
    assert parse_budgets("0.1") == [0.1]
    assert parse_budgets("0.1:0.3:3") == [0.1, 0.2, 0.3]
    assert parse_budgets("0:1:5") == [0.0, 0.25, 0.5, 0.75, 1.0]
    for bad in ("0.3:0.1:3", "0.1:0.3:1", "a", "0.1:0.3", "0.1:0.3:x"):
        with pytest.raises(argparse.ArgumentTypeError, match="START:STOP:COUNT"):
            parse_budgets(bad)
    args = build_parser().parse_args(
        ["evaluate", "--model", "m", "--dataset", "d", "--attack", "pgd", "--eps", "0.05", "--eps", "0.1:0.3:3"]
    )
    assert args.eps == [0.05, 0.1, 0.2, 0.3]
    assert [a.eps for a in parse_attack("pgd:restarts=2", args.eps)] == [0.05, 0.1, 0.2, 0.3]


def test_attack_keys_of_the_whole_catalogue():
    (mim,) = parse_attack("mim:eps=0.1,steps=20,decay=0.5", [])
    assert (mim.attack, mim.steps, mim.decay) == ("mim", 20, 0.5)
    (pgd,) = parse_attack("pgd:eps=1.0,norm=2,steps=40,step_size=0.25,restarts=5", [])
    assert (pgd.norm, pgd.restarts, pgd.step_size) == ("2", 5, 0.25)
    with pytest.raises(CliError, match="'speed=3' is not key=value with key one of"):
        parse_attack("pgd:eps=0.1,speed=3", [])


def test_the_issue_s_attack_syntax():
    (bim,) = parse_attack("bim:eps=0.1,steps=20,step_size=0.01", [])
    assert (bim.steps, bim.step_size) == (20, 0.01)
    (pgd,) = parse_attack("pgd:eps=0.2,steps=40,step_size=0.05,target=7", [])
    assert pgd.target == "7"
    (cw,) = parse_attack("cw:steps=100,binary_search_steps=5,learning_rate=0.01,initial_const=0.01", [0.1, 0.2])
    assert (cw.binary_search_steps, cw.learning_rate, cw.initial_const) == (5, 0.01, 0.01)
    assert not cw.HasField("eps")  # no budget: one unbounded run, whatever --eps says
    (apgd,) = parse_attack("apgd:eps=0.1,loss=dlr", [])
    assert apgd.loss == "dlr"
    (spsa,) = parse_attack("spsa:eps=0.1,steps=100", [])
    assert (spsa.steps, spsa.HasField("samples")) == (100, False)
    assert [a.target for a in parse_attack("fgsm:target=least_likely", [0.1, 0.2])] == ["least_likely"] * 2
    with pytest.raises(CliError, match="samples=many is not a valid int"):
        parse_attack("spsa:eps=0.1,samples=many", [])
    with pytest.raises(CliError, match="random_init=maybe must be true or false"):
        parse_attack("pgd:eps=0.1,random_init=maybe", [])
    assert parse_attack("pgd:eps=0.1,random_init=off", [])[0].random_init is False
    with pytest.raises(CliError, match="'steps' is not key=value"):
        parse_attack("pgd:eps=0.1,steps", [])


def test_the_standard_suite_and_keep_adversarial():
    specs = parse_suite("standard", [0.05, 0.1], "inf")
    assert [(s.attack, s.loss, s.target, s.eps) for s in specs] == [
        ("apgd", "ce", "", 0.05), ("apgd", "dlr", "most_likely", 0.05), ("fgsm", "", "", 0.05),
        ("apgd", "ce", "", 0.1), ("apgd", "dlr", "most_likely", 0.1), ("fgsm", "", "", 0.1),
    ]
    with pytest.raises(CliError, match="give the budgets with --eps"):
        parse_suite("standard", [], "inf")
    args = build_parser().parse_args(
        ["evaluate", "--model", "m", "--dataset", "d", "--suite", "standard", "--eps", "0.1", "--keep-adversarial"]
    )
    assert (args.suite, args.attack, args.keep_adversarial, args.seed) == ("standard", [], True, None)


def test_triggers_keep_commas_of_positions():
    trigger = parse_trigger("checker:size=3,pos=4,2,value=0.8")
    assert (trigger.trigger, trigger.size, trigger.position, trigger.value) == ("checker", 3, "4,2", 0.8)
    assert parse_trigger("blend:alpha=0.2,pattern=artifacts/p").pattern == "artifacts/p"
    with pytest.raises(CliError, match="unknown key 'colour'"):
        parse_trigger("square:colour=red")
    with pytest.raises(CliError, match="size=big is not a valid int"):
        parse_trigger("square:size=big")


def test_sources_and_counts():
    assert parse_classes("all") == [] and parse_classes("1,2, 3") == [1, 2, 3]
    assert parse_counts("5,10,0.05") == ([5, 10], [0.05])
    for bad in ("0", "1.5", "-2", "x"):
        with pytest.raises(CliError):
            parse_counts(bad)


def test_global_options_work_before_and_after_the_subcommand():
    parser = build_parser()
    assert parser.parse_args(["--gateway", "a:1", "list"]).gateway == "a:1"
    assert parser.parse_args(["list", "--gateway", "b:2"]).gateway == "b:2"
    assert parser.parse_args(["report", "evaluations/x", "--gateway", "c:3", "--json"]).gateway == "c:3"
    assert parser.parse_args(["list"]).gateway is None
