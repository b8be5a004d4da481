"""The scoring service's ScorePoisoning over a real gRPC channel: the
hand-worked poisoning example comes back as a PoisoningReport, and every
malformed stream ends in INVALID_ARGUMENT with a message that says what to fix."""

from __future__ import annotations

import grpc
import numpy as np
import poisoning_example as ex
import pytest
import scoring_example

from advex.core import tensors
from advex.internal.v1 import scoring_service_pb2
from advex.v1 import report_pb2

H = ex.header_request
R = ex.records_request


def assert_result(got: report_pb2.PoisonedModelResult, expected: dict):
    for name, value in expected.items():
        actual = getattr(got, name)
        if name == "per_class_accuracy":
            assert list(actual) == pytest.approx(list(value)), (got.poison_count, name)
        else:
            assert actual == pytest.approx(value, abs=1e-12), (got.poison_count, name)


def test_report_of_the_hand_worked_example(stub):
    report = stub.ScorePoisoning(iter(ex.full_stream()), timeout=10).report
    assert isinstance(report, report_pb2.PoisoningReport)
    assert report.test_samples == 6
    assert list(report.source_classes) == [0]
    assert report.attacked_test_samples == 3
    assert_result(report.baseline, ex.EXPECTED[0])
    assert [p.poison_count for p in report.poisoned] == [5, 10]
    assert_result(report.poisoned[0], ex.EXPECTED[5])
    assert_result(report.poisoned[1], ex.EXPECTED[10])
    assert report.HasField("count_at_90_percent_asr") and report.count_at_90_percent_asr == 10
    # The gateway's fields stay empty.
    for field in ("spec", "training_dataset", "pattern"):
        assert not report.HasField(field), field
    assert report.training_samples == 0 and report.pool_samples == 0
    for result in (report.baseline, *report.poisoned):
        assert not result.HasField("model") and not result.HasField("poisoned_dataset")
        assert (result.training_seconds, result.final_training_loss, result.final_training_accuracy) == (0, 0, 0)


def test_count_at_90_percent_unset_when_no_count_reaches_it(stub):
    # Only the baseline and count 5 (ASR 2/3).
    stream = [
        H(poison_counts=[0, 5], poison_fractions=[0.0, 0.1]),
        with_index(R(1, 0, 6), 0),  # the example's baseline
        with_index(R(2, 0, 6), 1),  # the example's count 5
    ]
    report = stub.ScorePoisoning(iter(stream), timeout=10).report
    assert [p.poison_count for p in report.poisoned] == [5]
    assert report.poisoned[0].attack_success_rate == pytest.approx(2 / 3)
    assert not report.HasField("count_at_90_percent_asr")


def f32(values):
    return tensors.to_proto(np.asarray(values, dtype=np.float32))


def i64(values):
    return tensors.to_proto(np.asarray(values, dtype=np.int64))


def with_index(request, model_index):
    request.records.model_index = model_index
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


HEADER = "num_classes, samples, source_classes, target_class, poison_counts, poison_fractions"
BAD_STREAMS = {
    "empty stream": ([], f"the stream was empty; send a header ({HEADER}) first"),
    "records before header": ([R(0, 0, 6), H()], "first message of ScorePoisoning must be a header"),
    "empty message first": ([scoring_service_pb2.ScorePoisoningRequest()], "must be a header"),
    "second header": (complete(H()), "a second header arrived; send one header, then only records"),
    "message without item": (complete(scoring_service_pb2.ScorePoisoningRequest()), "neither header nor records"),
    "one class": ([H(num_classes=1)], "num_classes must be at least 2, got 1"),
    "no samples": ([H(samples=0)], "samples must be between 1 and 1,000, got 0"),
    "too many samples": ([H(samples=1001)], "between 1 and 1,000, got 1,001"),
    "target out of range": ([H(target_class=3)], "target_class 3 is outside 0..2 (num_classes = 3)"),
    "no source classes": ([H(source_classes=[])], "the header lists no source_classes"),
    "source out of range": ([H(source_classes=[0, 7])], "source_classes[1] = 7 is outside 0..2"),
    "source repeated": ([H(source_classes=[1, 1])], "source_classes[1] = 1 repeats an earlier entry"),
    "source is the target": ([H(source_classes=[2])], "source_classes[0] = 2 is the target_class"),
    "no counts": ([H(poison_counts=[], poison_fractions=[])], "no poison_counts; give one per model"),
    "no baseline": (
        [H(poison_counts=[1, 2, 3])], "no clean baseline; exactly one of poison_counts must be 0"
    ),
    "two baselines": ([H(poison_counts=[0, 0, 5])], "poison_counts[1] = 0 repeats poison_counts[0]"),
    "negative count": ([H(poison_counts=[0, -1, 5])], "poison_counts[1] = -1 is negative"),
    "fractions missing": ([H(poison_fractions=[])], "3 poison_counts but 0 poison_fractions"),
    "fraction above one": ([H(poison_fractions=[0.2, 0.0, 2.0])], "poison_fractions[2] = 2.0 must be between 0 and 1"),
    "too many models": (
        [H(poison_counts=[0, 1, 2, 3, 4], poison_fractions=[0] * 5)], "lists 5 models, at most 4 fit one request"
    ),
    "model_index out of range": (complete(with_index(R(0, 0, 1), 3)), "model_index 3 is out of range"),
    "negative model_index": (complete(with_index(R(0, 0, 1), -1)), "model_index -1 is out of range"),
    "probability rows disagree": (
        complete(R(0, 0, 2, triggered_probabilities=f32(ex.TRIGGERED[0][:3]))),
        "model 0 (poison_count 10): triggered_probabilities must have shape (2, 3) to match 2 labels",
    ),
    "wrong class count": (
        complete(R(1, 0, 2, clean_probabilities=f32(np.full((2, 4), 0.25)))),
        "model 1 (baseline, poison_count 0): clean_probabilities has 4 columns but the header says num_classes = 3",
    ),
    "logits instead of probabilities": (
        complete(R(0, 0, 2, triggered_probabilities=f32([[4.0, -1, 0], [0, 3, 1]]))),
        "apply softmax to logits",
    ),
    "label out of range": (complete(R(0, 0, 2, labels=i64([0, 3]))), "label 3 is outside 0..2"),
    "float labels": (complete(R(0, 0, 2, labels=f32([0, 0]))), "labels must be integers"),
    "samples past the end": (complete(with_first(R(0, 4, 6), 5)), "samples 5..6 fall outside the header's 6 samples"),
    "sample twice": (complete(R(2, 3, 4)), "model 2 (poison_count 5): sample 3 was delivered twice"),
    "labels disagree across models": (
        [H(), R(0, 0, 6), R(1, 0, 6, labels=i64([0, 0, 1, 1, 1, 2]))],
        "sample 2 has label 1, but another model delivered label 0",
    ),
    "missing samples": (ex.full_stream()[:-1], "model 0 (poison_count 10) has 5 of 6 samples; samples 0..0"),
    "model never sent": ([H(), R(0, 0, 6), R(2, 0, 6)], "model 1 (baseline, poison_count 0) has 0 of 6 samples"),
    "missing tensor": (
        complete(without(R(0, 0, 1), "triggered_probabilities")),
        "records of model 0 from sample 0 lack the 'triggered_probabilities' tensor",
    ),
    "corrupt tensor": (
        complete(R(0, 0, 2, labels=truncated(i64([0, 0])))),
        "'labels': tensor of shape (2,) and dtype int64 needs 16 bytes, got 15",
    ),
}


@pytest.mark.parametrize("case", BAD_STREAMS)
def test_bad_stream_is_invalid_argument(stub, case):
    stream, message = BAD_STREAMS[case]
    with pytest.raises(grpc.RpcError) as info:
        stub.ScorePoisoning(iter(stream), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert message in info.value.details()


def test_server_still_works_after_errors(stub):
    with pytest.raises(grpc.RpcError):
        stub.ScorePoisoning(iter([H(source_classes=[2])]), timeout=10)
    assert stub.ScorePoisoning(iter(ex.full_stream()), timeout=10).report.test_samples == 6
    # And the other RPC of the same service is unaffected.
    assert stub.ScoreEvasion(iter(scoring_example.full_stream()), timeout=10).report.samples == 5
