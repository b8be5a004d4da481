"""The statistics of `advex compare` (Wilson intervals, McNemar's test) and
its refusals, on hand-made reports. Two real evaluations compared end to
end: tests/mesh/test_mesh_cli.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from advex.cli import compare
from advex.cli.client import CliError
from advex.v1 import evasion_pb2, report_pb2


@pytest.mark.parametrize("right, n, low, high", [
    (0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0), (81, 100, 0.7222, 0.8749),
])
def test_wilson_intervals_match_the_textbook(right, n, low, high):
    got = compare.wilson_interval(right, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_mcnemar_exact_and_approximate():
    assert compare.mcnemar_p(0, 0) == 1.0 and compare.mcnemar_p(7, 7) == 1.0
    assert compare.mcnemar_p(10, 0) == pytest.approx(2 * 0.5**10)  # all 10 discordant samples one way
    assert compare.mcnemar_p(2, 8) == pytest.approx(2 * sum(math.comb(10, i) for i in range(3)) / 2**10)
    # Past the exact limit the chi-squared approximation takes over, and agrees.
    exact = compare.mcnemar_p(4_900, 5_100)
    approximate = compare.mcnemar_p(4_901, 5_101)
    assert approximate == pytest.approx(exact, abs=0.01) and 0.04 < exact < 0.06


def _report(name, dataset="d" * 64, specs=((0.1, "fgsm"), (0.1, "pgd")), samples=8):
    report = report_pb2.Report(name=name, dataset=report_pb2.ArtifactRef(sha256=dataset), model=report_pb2.ArtifactRef(
        name=f"artifacts/{name}", sha256="m" * 64))
    report.evasion.samples = samples
    for eps, attack in specs:
        report.evasion.attacks.add(attack=attack, norm="inf", eps=eps, spec=evasion_pb2.AttackSpec(
            attack=attack, norm="inf", eps=eps))
    report.evasion.worst_case.add(norm="inf", eps=0.1, attacks=[a for _, a in specs])
    return report


def test_rows_pair_the_samples_and_the_worst_case_needs_every_attack():
    a, b = _report("a"), _report("b", specs=((0.1, "pgd"), (0.1, "fgsm")))  # B listed its attacks the other way
    bits = lambda *v: np.array(v, dtype=bool)  # noqa: E731
    clean = bits(1, 1, 1, 1, 1, 1, 1, 0)
    outcomes_a = (clean, np.stack([bits(1, 1, 0, 0, 1, 1, 0, 0), bits(1, 0, 0, 0, 1, 1, 0, 0)]))  # fgsm, pgd
    outcomes_b = (clean, np.stack([bits(1, 1, 1, 1, 1, 1, 1, 0), bits(1, 1, 1, 1, 1, 1, 0, 0)]))  # pgd, fgsm
    found = {r.what: r for r in compare.rows(a, b, outcomes_a, outcomes_b)}
    assert list(found) == ["clean", "worst case Linf eps=0.1", "fgsm Linf eps=0.1", "pgd Linf eps=0.1"]
    assert (found["clean"].right_a, found["clean"].right_b, found["clean"].p_value) == (7, 7, 1.0)
    pgd = found["pgd Linf eps=0.1"]  # A: 3 right, B: 7; 4 samples only B gets right
    assert (pgd.right_a, pgd.right_b, pgd.only_a, pgd.only_b) == (3, 7, 0, 4)
    worst = found["worst case Linf eps=0.1"]  # A: right under both on 0, 4, 5; B on 0..5
    assert (worst.right_a, worst.right_b) == (3, 6)
    assert pgd.p_value == pytest.approx(2 * 0.5**4) and pgd.verdict == "no significant difference"


def test_a_big_enough_difference_is_called():
    a, b = _report("a", samples=200), _report("b", samples=200)
    right = np.ones(200, dtype=bool)
    weak = right.copy()
    weak[:40] = False
    found = compare.rows(a, b, (right, np.stack([weak, weak])), (right, np.stack([right, right])))
    assert found[-1].verdict == "B more robust" and found[-1].p_value < 1e-10
    page = compare.page(a, b, found)
    assert page.startswith("<!DOCTYPE html>") and "B more robust" in page and "http:" not in page and "https:" not in page


@pytest.mark.parametrize("b, phrase", [
    (_report("b", dataset="e" * 64), "compare two evaluations of the same samples"),
    (_report("b", samples=9), "compare two evaluations of the same samples"),
    (_report("b", specs=((0.1, "fgsm"), (0.2, "pgd"))), "only in A: pgd Linf eps=0.1; only in B: pgd Linf eps=0.2"),
    (report_pb2.Report(name="p", poisoning=report_pb2.PoisoningReport()), "is not an evasion evaluation"),
    (report_pb2.Report(name="b", clip_max=255.0, evasion=report_pb2.EvasionReport()), "clipped its attacks to 0..0, B to 0..255"),
])
def test_evaluations_that_do_not_compare_are_refused_with_the_difference(b, phrase):
    with pytest.raises(CliError, match=phrase):
        compare.check_comparable(_report("a"), b)


def test_the_answer_in_one_line_reads_the_worst_case_rows():
    rows = [compare.Row("clean", 100, 90, 90, 0, 0), compare.Row("worst case Linf eps=0.1", 100, 30, 60, 0, 30),
            compare.Row("worst case Linf eps=0.2", 100, 10, 11, 0, 1), compare.Row("fgsm Linf eps=0.1", 100, 50, 20, 30, 0)]
    assert compare.summary(rows) == "B is more robust at 1 of 2 budgets (worst case), A at 0; no significant difference at 1."
    assert "cannot tell A and B apart" in compare.summary(rows[:1] + [compare.Row("worst case x", 10, 5, 5, 0, 0)])
