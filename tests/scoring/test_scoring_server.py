"""The scoring service's ScoreEvasion over a real gRPC channel: the
hand-worked example comes back as an EvasionReport, and every malformed stream ends in INVALID_ARGUMENT with a
message that says what to fix."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import scoring_example as ex
from grpc_health.v1 import health_pb2, health_pb2_grpc

from advex.core import tensors
from advex.internal.v1 import scoring_service_pb2
from advex.scoring.config import ScoringConfig
from advex.v1 import evasion_pb2, report_pb2


def test_health_reports_serving(channel):
    response = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="advex.internal.v1.ScoringService"), timeout=5
    )
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_report_of_the_hand_worked_example(stub):
    report = stub.ScoreEvasion(iter(ex.full_stream()), timeout=10).report
    assert isinstance(report, report_pb2.EvasionReport)
    assert report.samples == 5
    assert report.clean_accuracy == pytest.approx(0.8)
    assert report.mean_confidence_clean == pytest.approx(0.64)
    assert report.mean_true_class_probability_clean == pytest.approx(0.58)
    assert report.robustness_score == pytest.approx(0.125)

    assert [(a.attack, a.norm, a.eps, a.steps) for a in report.attacks] == [
        ("fgsm", "inf", 0.3, 1),
        ("fgsm", "inf", 0.1, 1),
        ("pgd", "inf", 0.1, 10),
    ]
    assert report.attacks[0].step_size == pytest.approx(0.3)  # fgsm: one step of eps
    assert report.attacks[2].step_size == pytest.approx(2.5 * 0.1 / 10)
    for got, expected in zip(report.attacks, ex.EXPECTED_ATTACKS, strict=True):
        for name, value in expected.items():
            assert getattr(got, name) == pytest.approx(value, abs=1e-6), (got.attack, got.eps, name)

    assert [(w.norm, w.eps, list(w.attacks)) for w in report.worst_case] == [
        ("inf", 0.1, ["fgsm", "pgd"]),
        ("inf", 0.3, ["fgsm"]),
    ]
    assert [w.accuracy for w in report.worst_case] == pytest.approx([0.2, 0.0])

    fgsm, pgd = report.curves
    assert (fgsm.attack, fgsm.norm) == ("fgsm", "inf")
    assert [(p.eps, p.adversarial_accuracy) for p in fgsm.points] == [(0.1, 0.4), (0.3, 0.0)]
    assert fgsm.HasField("eps_at_half_clean_accuracy") and fgsm.eps_at_half_clean_accuracy == 0.3
    assert (pgd.attack, pgd.norm) == ("pgd", "inf")
    assert not pgd.HasField("eps_at_half_clean_accuracy")


def f32(values):
    return tensors.to_proto(np.asarray(values, dtype=np.float32))


H = ex.header_request
R = ex.records_request


def with_index(request, attack_index):
    request.records.attack_index = attack_index
    return request


def with_first(request, first_sample):
    request.records.records.first_sample = first_sample
    return request


def without(request, field):
    request.records.records.ClearField(field)
    return request


def truncated(tensor):
    tensor.data = tensor.data[:-1]
    return tensor


def complete(*extra):
    """Every record of the example, plus `extra` messages placed after the header."""
    stream = ex.full_stream()
    return [stream[0], *extra, *stream[1:]]


BAD_STREAMS = {
    "empty stream": ([], "stream was empty"),
    "records before header": ([R(0, 0, 5), H()], "first message of ScoreEvasion must be a header"),
    "empty message first": ([scoring_service_pb2.ScoreEvasionRequest()], "must be a header"),
    "second header": (complete(H()), "a second header"),
    "message without item": (complete(scoring_service_pb2.ScoreEvasionRequest()), "neither header nor records"),
    "no attacks": ([H(attacks=[])], "no attacks"),
    "bad attack spec": (
        [H(attacks=[evasion_pb2.AttackSpec(attack="deepfool", eps=0.1)])],
        "attack 0: unknown attack 'deepfool'",
    ),
    "duplicate attack": ([H(attacks=[ex.SPEC_PROTOS[0]] * 2)], "attack 1 (fgsm Linf eps=0.3) repeats attack 0"),
    "no samples": ([H(samples=0)], "samples must be between 1 and 1,000"),
    "too many samples": ([H(samples=1001)], "between 1 and 1,000"),
    "too many attacks": (
        [H(attacks=[evasion_pb2.AttackSpec(attack="fgsm", eps=e) for e in (0.1, 0.2, 0.3, 0.4, 0.5)])],
        "lists 5 attacks, at most 4 fit one request",
    ),
    "one class": ([H(num_classes=1)], "num_classes must be at least 2"),
    "attack_index out of range": (complete(with_index(R(0, 0, 1), 3)), "attack_index 3 is out of range"),
    "negative attack_index": (complete(with_index(R(0, 0, 1), -1)), "attack_index -1 is out of range"),
    "rows disagree": (
        complete(R(0, 0, 2, perturbation_l2=f32([1.0]))),
        "perturbation_l2 must have shape (2,) to match 2 labels",
    ),
    "probability rows disagree": (
        complete(R(0, 0, 2, adversarial_probabilities=f32(ex.ADVERSARIAL[0][:3]))),
        "adversarial_probabilities must have shape (2, 3)",
    ),
    "wrong class count": (
        complete(R(0, 0, 2, clean_probabilities=f32(np.full((2, 4), 0.25)))),
        "clean_probabilities has 4 columns but the header says num_classes = 3",
    ),
    "logits instead of probabilities": (
        complete(R(0, 0, 2, clean_probabilities=f32([[4.0, -1, 0], [0, 3, 1]]))),
        "apply softmax to logits",
    ),
    "label out of range": (
        complete(R(0, 0, 2, labels=tensors.to_proto(np.array([0, 3], dtype=np.int64)))),
        "label 3 is outside 0..2",
    ),
    "float labels": (complete(R(0, 0, 2, labels=f32([0, 1]))), "labels must be integers"),
    "samples past the end": (complete(with_first(R(0, 3, 5), 4)), "samples 4..5 fall outside the header's 5 samples"),
    "negative first sample": (complete(with_first(R(0, 0, 2), -1)), "samples -1..0 fall outside"),
    "sample twice": (complete(R(1, 2, 3)), "attack 1 (fgsm Linf eps=0.1): sample 2 was delivered twice"),
    "labels disagree across attacks": (
        [H(), R(0, 0, 5), R(1, 0, 5, labels=tensors.to_proto(np.array([0, 1, 2, 2, 1], dtype=np.int64)))],
        "sample 3 has label 2, but another attack delivered label 0",
    ),
    "missing samples": (ex.full_stream()[:-1], "attack 0 (fgsm Linf eps=0.3) has 3 of 5 samples; samples 0..1"),
    "attack never sent": ([H(), R(0, 0, 5), R(1, 0, 5)], "attack 2 (pgd Linf eps=0.1 steps=10) has 0 of 5"),
    "missing tensor": (complete(without(R(0, 0, 1), "perturbation_l0")), "lack the 'perturbation_l0' tensor"),
    "corrupt tensor": (
        complete(R(0, 0, 2, perturbation_linf=truncated(f32([0.1, 0.1])))),
        "'perturbation_linf': tensor of shape (2,) and dtype float32 needs 8 bytes, got 7",
    ),
}


@pytest.mark.parametrize("case", BAD_STREAMS)
def test_bad_stream_is_invalid_argument(stub, case):
    stream, message = BAD_STREAMS[case]
    with pytest.raises(grpc.RpcError) as info:
        stub.ScoreEvasion(iter(stream), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert message in info.value.details()


def test_server_still_works_after_errors(stub):
    with pytest.raises(grpc.RpcError):
        stub.ScoreEvasion(iter([]), timeout=10)
    assert stub.ScoreEvasion(iter(ex.full_stream()), timeout=10).report.samples == 5


def test_config_from_env():
    assert ScoringConfig.from_env({}) == ScoringConfig(address="127.0.0.1:50054")
    config = ScoringConfig.from_env(
        {"ADVEX_SCORING_ADDR": "0.0.0.0:6000", "ADVEX_SCORING_MAX_SAMPLES": "42",
         "ADVEX_SCORING_MAX_ATTACKS": "7", "ADVEX_SCORING_MAX_MODELS": "3"}
    )
    assert (config.address, config.max_samples, config.max_attacks, config.max_models) == (
        "0.0.0.0:6000", 42, 7, 3
    )
    with pytest.raises(ValueError, match="ADVEX_SCORING_MAX_SAMPLES must be a whole number"):
        ScoringConfig.from_env({"ADVEX_SCORING_MAX_SAMPLES": "lots"})
    with pytest.raises(ValueError, match="ADVEX_SCORING_MAX_MODELS must be >= 1, got 0"):
        ScoringConfig.from_env({"ADVEX_SCORING_MAX_MODELS": "0"})
