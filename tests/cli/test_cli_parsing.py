"""The CLI's flag parsers (units: no gateway needed)."""

from __future__ import annotations

import argparse

import pytest

from advex.cli.client import CliError, parse_attack, parse_budgets, parse_classes, parse_counts, parse_trigger
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
