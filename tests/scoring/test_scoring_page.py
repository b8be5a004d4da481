"""The report's HTML page: what scoring gathers for it (histograms, per-class
counts, confusion, example images), RenderReport over a real channel, and
the page itself (sections, escaping, nothing external). That a browser
shows it whole is tests/mesh/test_mesh_report_page.py."""

from __future__ import annotations

import re

import grpc
import numpy as np
import pytest

import scoring_example as ex
from advex.core import tensors
from advex.internal.v1 import records_pb2, scoring_service_pb2
from advex.scoring import html_report
from advex.scoring.metrics import EvasionAccumulator, Examples
from advex.v1 import evasion_pb2, report_pb2


def _examples_message(k=2, attack=0, shape=(4, 4, 1), **override):
    rng = np.random.default_rng(attack)
    fields = dict(
        samples=list(range(k)), clean=tensors.to_proto(rng.random((k, *shape)).astype(np.float16)),
        adversarial=tensors.to_proto(rng.random((k, *shape)).astype(np.float16)),
        labels=ex.LABELS[:k].tolist(), clean_predictions=ex.LABELS[:k].tolist(), adversarial_predictions=[2] * k,
    )
    fields.update(override)
    return scoring_service_pb2.ScoreEvasionRequest(
        examples=scoring_service_pb2.ScoredExamples(attack_index=attack, examples=records_pb2.EvasionExamples(**fields))
    )


def test_figures_count_what_the_records_say():
    accumulator = EvasionAccumulator(ex.SPECS, ex.SAMPLES, ex.CLASSES)
    for attack in range(3):
        accumulator.add(attack, ex.batch(attack, 0, ex.SAMPLES))
    figures = accumulator.finish().attacks[0].figures  # fgsm eps=0.3
    top_clean = ex.CLEAN.max(axis=1)
    top_adversarial = ex.ADVERSARIAL[0].max(axis=1)
    assert figures.confidence_clean == tuple(np.histogram(top_clean, bins=20, range=(0, 1))[0])
    assert figures.confidence_adversarial == tuple(np.histogram(top_adversarial, bins=20, range=(0, 1))[0])
    # Labels 0 1 2 0 1; clean right on samples 0 1 2 4; attack 0 leaves none right.
    assert figures.class_samples == (2, 2, 1)
    assert figures.class_clean_correct == (1, 2, 1)
    assert figures.class_adversarial_correct == (0, 0, 0)
    # True -> adversarial prediction: 0->2, 1->0, 2->0, 0->2, 1->0.
    assert figures.confusion.tolist() == [[0, 0, 2], [2, 0, 0], [1, 0, 0]]


def test_examples_are_kept_once_per_attack_and_checked():
    accumulator = EvasionAccumulator(ex.SPECS, ex.SAMPLES, ex.CLASSES)
    good = Examples(np.array([0, 4]), np.zeros((2, 4, 4, 1), np.float16), np.ones((2, 4, 4, 1), np.float16),
                    np.array([0, 1]), np.array([0, 1]), np.array([2, 0]))
    accumulator.add_examples(1, good)
    with pytest.raises(Exception, match="examples arrived twice"):
        accumulator.add_examples(1, good)
    bad_sample = Examples(np.array([0, 5]), good.clean, good.adversarial, good.labels, good.clean_predictions,
                          good.adversarial_predictions)
    with pytest.raises(Exception, match=r"example samples must be in 0..4"):
        accumulator.add_examples(2, bad_sample)
    bad_class = Examples(good.samples, good.clean, good.adversarial, np.array([0, 3]), good.clean_predictions,
                         good.adversarial_predictions)
    with pytest.raises(Exception, match=r"example labels must be 2 classes in 0..2"):
        accumulator.add_examples(2, bad_class)


def test_score_evasion_details_only_the_strongest_attack(stub):
    response = stub.ScoreEvasion(iter([*ex.full_stream(), _examples_message(attack=2), _examples_message(attack=0)]))
    figures = response.figures.attacks
    # Every attack's histograms; the strongest (attack 0: accuracy 0) alone
    # carries the rest, so the message stays small with many attacks.
    assert len(figures) == 3 and all(sum(f.confidence_clean) == ex.SAMPLES for f in figures)
    assert [f.HasField("examples") for f in figures] == [True, False, False]
    assert [len(f.confusion) for f in figures] == [ex.CLASSES**2, 0, 0]
    assert [len(f.class_samples) for f in figures] == [ex.CLASSES, 0, 0]
    assert list(figures[0].examples.adversarial_predictions) == [2, 2]


def test_bad_examples_are_invalid_arguments(stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.ScoreEvasion(iter([*ex.full_stream(), _examples_message(labels=[0])]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "example labels must be 2 classes" in info.value.details()


def _report(**model) -> report_pb2.Report:
    report = report_pb2.Report(
        name="evaluations/e1", state="SUCCEEDED", clip_min=0.0, clip_max=1.0,
        model=report_pb2.ArtifactRef(name="artifacts/m", sha256="a" * 64, **model),
        dataset=report_pb2.ArtifactRef(name="artifacts/d", sha256="b" * 64),
    )
    e = report.evasion
    e.samples, e.clean_accuracy, e.robustness_score, e.seed = 5, 0.8, 0.25, 7
    for eps, accuracy in ((0.3, 0.0), (0.1, 0.4)):  # the header's order
        e.attacks.add(attack="fgsm", norm="inf", eps=eps, adversarial_accuracy=accuracy,
                      spec=evasion_pb2.AttackSpec(attack="fgsm", norm="inf", eps=eps))
        e.worst_case.add(norm="inf", eps=eps, accuracy=accuracy, attacks=["fgsm"])
    curve = e.curves.add(attack="fgsm", norm="inf", eps_at_half_clean_accuracy=0.1)
    curve.points.add(eps=0.1, adversarial_accuracy=0.4)
    curve.points.add(eps=0.3, adversarial_accuracy=0.0)
    return report


def _figures(stub):
    return stub.ScoreEvasion(iter([
        ex.header_request(attacks=ex.SPEC_PROTOS[:2]), ex.records_request(0, 0, 5), ex.records_request(1, 0, 5),
        _examples_message(attack=0),
    ])).figures


def test_render_report_streams_one_whole_page(stub):
    request = scoring_service_pb2.RenderReportRequest(
        report=_report(display_name="digits.keras"), evasion_figures=_figures(stub),
        class_names=["zero", "one", "two"], versions={"keras": "3.15.1", "keras_backend": "torch"},
    )
    pieces = list(stub.RenderReport(request))
    page = b"".join(p.html for p in pieces).decode("utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert all(len(p.html) <= 512 * 1024 for p in pieces)
    # The verdict first: the rating of 0.25 is D, with the collapse budget.
    verdict = page.index('id="verdict"')
    assert verdict < page.index('id="curve"') < page.index('id="reproduce"')
    assert ">D</div>" in page and "Robustness score 0.25" in page and "From L∞ eps 0.1 on, accuracy is below half" in page
    for section in ("curve", "numbers", "confidence", "examples", "per-class", "confusion", "reproduce"):
        assert f'id="{section}"' in page, section
    # The strongest attack (fgsm eps 0.3, accuracy 0) is the one shown in detail.
    assert "Samples under fgsm (L∞, eps 0.3)" in page
    assert "true <b>zero</b>" in page and "adversarial <b>two</b>" in page  # class names
    assert "keras_backend torch" in page and "a" * 64 in page and "seed" in page


def test_the_page_escapes_what_users_named_and_fetches_nothing():
    page = html_report.render(
        _report(display_name='<script>alert("x")</script>'), None, ['<img src="http://evil.example/x.png">'], {}
    ).decode()
    assert "<script>" not in page and "http://evil.example" not in page.replace("&quot;", '"').split("&lt;img")[0]
    assert "&lt;script&gt;" in page
    # Every image is embedded, nothing refers outside the file.
    assert re.findall(r'(?:src|href)="(?!data:)', page) == []
    assert "default-src 'none'" in page  # and the browser is told so


@pytest.mark.parametrize("score, letter", [(1.0, "A"), (0.8, "A"), (0.79, "B"), (0.6, "B"), (0.5, "C"),
                                           (0.2, "D"), (0.19, "F"), (0.0, "F")])
def test_rating_bands(score, letter):
    assert html_report.rating(score)[0] == letter


def test_a_poisoning_page_rates_the_smallest_poisoning():
    report = report_pb2.Report(name="evaluations/p", state="SUCCEEDED")
    p = report.poisoning
    p.training_samples = 1000
    p.baseline.CopyFrom(report_pb2.PoisonedModelResult(clean_accuracy=0.97, per_class_accuracy=[0.9] * 3))
    for count, asr in ((5, 0.3), (10, 0.6), (50, 0.99)):
        p.poisoned.add(poison_count=count, attack_success_rate=asr, clean_accuracy=0.97, clean_accuracy_drop=0.0,
                       per_class_accuracy=[0.9] * 3)
    score, chosen = html_report.poisoning_score(p)
    # Counts within 1% of 1000 training images: 5 and 10; the worse of them.
    assert chosen.poison_count == 10 and score == pytest.approx(0.4)
    page = html_report.render(report).decode()
    assert "Poisoning resistance 0.40" in page and ">C</div>" in page
    assert 'id="dose"' in page and 'id="poisoned-classes"' in page and 'id="poisoning-numbers"' in page
    assert "Clean accuracy alone would not have warned you" in page


def test_over_the_example_budget_the_weakest_attack_makes_room(monkeypatch):
    from advex.scoring import metrics

    def examples(k=2):
        images = np.zeros((k, 4, 4, 1), np.float16)  # 64 bytes a pair
        return Examples(np.arange(k), images, images, np.zeros(k, int), np.zeros(k, int), np.zeros(k, int))

    monkeypatch.setattr(metrics, "MAX_EXAMPLE_BYTES", 2 * 64 + 10)  # room for one attack's two samples
    accumulator = EvasionAccumulator(ex.SPECS, ex.SAMPLES, ex.CLASSES)
    for attack in range(3):
        accumulator.add(attack, ex.batch(attack, 0, ex.SAMPLES))
    # Adversarially correct: attack 0 none, attacks 1 and 2 two each.
    accumulator.add_examples(1, examples())
    accumulator.add_examples(0, examples())  # stronger: attack 1's go
    accumulator.add_examples(2, examples())  # weaker than what is kept: left out
    kept = [a.figures.examples is not None for a in accumulator.finish().attacks]
    assert kept == [True, False, False]


def test_a_backdoor_that_did_not_take_hold_is_no_proof():
    report = report_pb2.Report(name="evaluations/p", state="SUCCEEDED")
    p = report.poisoning
    p.training_samples = 1437
    p.baseline.CopyFrom(report_pb2.PoisonedModelResult(clean_accuracy=0.97))
    for count, asr in ((5, 0.0), (20, 0.086)):
        p.poisoned.add(poison_count=count, attack_success_rate=asr, clean_accuracy=0.97)
    page = html_report.render(report).decode()
    assert ">A</div>" in page and "the trigger worked on 0% of attacked images" in page
    assert "The most successful poisoning tested, 20 images, made the trigger work on 9% of them." in page
    assert "No poisoning tested planted a working backdoor with this training recipe. That is no proof" in page
