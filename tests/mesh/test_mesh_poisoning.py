"""Backdoor poisoning end to end over real sockets: upload the digits
training and test sets, poison, train on the attack service, store what it
made as artifacts, score, report; and everything a bad request or a cancel
must do.

The reference (issue 7): a 2x2 bottom-right patch of the maximum value on 20
training images of class 1, relabelled 7, gives a backdoor that works (ASR
>= 0.9) at no measurable cost in clean accuracy, while a baseline trained
the same way on clean data ignores the trigger. The recipe here is the
smallest that reaches it with margin on 2 CPU cores (mesh_requests.REFERENCE_RECIPE).
"""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from advex.cli import digits
from advex.cli.client import upload, watch
from advex.v1 import artifact_pb2, evaluation_pb2, poisoning_pb2
from mesh_requests import download, poisoning_request, run_cli


def _run(gateway, request) -> tuple[evaluation_pb2.Evaluation, list[evaluation_pb2.Evaluation]]:
    created = gateway.evaluations.CreateEvaluation(request).evaluation
    assert created.WhichOneof("spec") == "poisoning" and created.state == evaluation_pb2.EVALUATION_STATE_QUEUED
    events = list(watch(gateway, created.name))
    return events[-1], events


def test_dirty_label_backdoor_reaches_the_reference_and_stores_what_it_made(
    mesh, gateway, digits_sets, digits_split, tmp_path
):
    final, events = _run(gateway, poisoning_request(digits_sets, counts=(20,)))
    assert final.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, final.error
    assert final.progress.done == final.progress.total == 2 * 10 * int(np.ceil(1438 / 64))
    stages = [e.progress.stage for e in events]
    assert any("training with the clean baseline (1/2): epoch" in s for s in stages), stages
    # The resolved spec: the counts to train and the sources in effect.
    assert list(final.poisoning.counts) == [20] and final.poisoning.kind == "dirty"

    report = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=final.name)).report
    assert report.WhichOneof("result") == "poisoning"
    p = report.poisoning
    baseline, (poisoned,) = p.baseline, p.poisoned
    assert (p.training_samples, p.test_samples, list(p.source_classes)) == (1438, 359, [1])
    assert p.pool_samples == int((digits_split.y_train == 1).sum())
    assert p.attacked_test_samples == int((digits_split.y_test == 1).sum())
    # The reference: the backdoor works, clean accuracy does not give it away.
    assert poisoned.attack_success_rate >= 0.9, poisoned
    assert poisoned.clean_accuracy_drop <= 0.03, (baseline.clean_accuracy, poisoned.clean_accuracy)
    assert baseline.clean_accuracy >= 0.93
    # Proof the trigger alone does nothing: the clean model ignores it.
    assert baseline.attack_success_rate <= 0.1
    assert poisoned.poison_count == 20 and poisoned.poison_fraction == pytest.approx(20 / p.pool_samples)
    assert poisoned.triggered_accuracy_source <= 1 - poisoned.attack_success_rate + 1e-9
    assert poisoned.accuracy_gap == pytest.approx(
        poisoned.triggered_accuracy_non_source - poisoned.triggered_accuracy_source
    )
    assert len(poisoned.per_class_accuracy) == 10 and poisoned.training_seconds > 0
    assert p.count_at_90_percent_asr == 20

    # What training made is stored as READY artifacts, verified like uploads.
    trained = gateway.artifacts.GetArtifact(artifact_pb2.GetArtifactRequest(name=poisoned.model.name)).artifact
    assert trained.state == artifact_pb2.ARTIFACT_STATE_READY and trained.kind == artifact_pb2.ARTIFACT_KIND_MODEL
    assert trained.sha256 == poisoned.model.sha256 and baseline.model.name != poisoned.model.name
    assert not baseline.HasField("poisoned_dataset")
    data = np.load(download(gateway, poisoned.poisoned_dataset.name, tmp_path / "poisoned.npz"), allow_pickle=False)
    flags = data["poisoned"]
    assert flags.sum() == 20 and (data["y"][flags] == 7).all() and (data["original_y"][flags] == 1).all()
    assert (data["x"][flags][:, 6:8, 6:8, :] == 1.0).all()  # the 2x2 bottom-right patch
    assert (data["y"][~flags] == digits_split.y_train[~flags]).all()
    assert np.array_equal(data["x"][~flags], digits_split.x_train[~flags])

    # The report's page shows triggered test images through the 20-image model.
    page = download(gateway, report.html_page.name, tmp_path / "page.html").read_text()
    assert 'id="triggered"' in page and "through the model poisoned with 20 images" in page
    assert 'id="dose"' in page and "Poisoning resistance" in page

    # The poisoned model is a model like any upload: evasion can evaluate it.
    from mesh_requests import evasion_request
    from advex.v1 import evasion_pb2

    evasion = gateway.evaluations.CreateEvaluation(
        evasion_request(poisoned.model.name, digits_sets[2].name, [evasion_pb2.AttackSpec(attack="fgsm", eps=0.1)],
                        max_samples=20)
    ).evaluation
    assert list(watch(gateway, evasion.name))[-1].state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED

    # The stream gives the very same poisoned set the artifact holds.
    out = tmp_path / "streamed.npz"
    code, _, err = run_cli("--gateway", mesh.gateway_address, "poisoned-data", final.name, "--count", "20", "--out", str(out))
    assert code == 0, err
    streamed = np.load(out, allow_pickle=False)
    for key in ("x", "y", "original_y", "poisoned"):
        assert np.array_equal(streamed[key], data[key]), key


def test_same_request_and_seed_give_the_same_numbers_and_counts_form_a_dose_response(gateway, digits_sets):
    tiny = dict(epochs=2, batch_size=128, learning_rate=3e-3)
    first, _ = _run(gateway, poisoning_request(digits_sets, counts=(5,), recipe=tiny, fractions=[0.5], seed=3))
    second, _ = _run(gateway, poisoning_request(digits_sets, counts=(5,), recipe=tiny, fractions=[0.5], seed=3))
    reports = [
        gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=e.name)).report.poisoning
        for e in (first, second)
    ]
    for report in reports:
        assert [r.poison_count for r in report.poisoned] == [5, round(0.5 * report.pool_samples)]
    figures = [
        [(r.clean_accuracy, r.attack_success_rate, r.final_training_loss, tuple(r.per_class_accuracy)) for r in (p.baseline, *p.poisoned)]
        for p in reports
    ]
    assert figures[0] == figures[1]


def test_clean_label_and_flip_kinds_run(gateway, digits_sets):
    tiny = dict(epochs=2, batch_size=128, learning_rate=3e-3)
    clean, _ = _run(
        gateway,
        poisoning_request(digits_sets, counts=(30,), recipe=tiny, kind="clean",
                 perturbation={"attack": "pgd", "eps": 0.1, "steps": 3}),
    )
    assert clean.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, clean.error
    report = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=clean.name)).report.poisoning
    assert report.spec.kind == "clean" and report.spec.perturbation.attack == "pgd"
    assert list(report.source_classes) == [1]

    flip, _ = _run(gateway, poisoning_request(digits_sets, counts=(40,), recipe=tiny, kind="flip", trigger=None))
    assert flip.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, flip.error
    report = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=flip.name)).report.poisoning
    # No trigger: the "triggered" images are the clean ones.
    for model in (report.baseline, *report.poisoned):
        assert model.triggered_accuracy_source == pytest.approx(model.clean_accuracy_source)


def test_advex_poison_cli_prints_the_report_json(mesh, digits_sets):
    model, train, test = digits_sets
    code, out, err = run_cli(
        "--gateway", mesh.gateway_address, "poison", "--model", model.name, "--train", train.name,
        "--test", test.name, "--trigger", "checker:size=3,pos=4,4", "--source", "1,2", "--target", "7",
        "--count", "10", "--epochs", "1", "--batch-size", "256", "--wait", "--json",
        # The gate on a poisoning report: one threshold holds, one cannot.
        "--fail-under", "attack_success_rate@count=10<=1", "--fail-under", "clean_accuracy@baseline=1.01",
    )
    assert code == 3, err
    assert "ok: attack_success_rate of the model poisoned with 10 images" in err
    assert "FAILED: clean_accuracy of the clean baseline" in err and "1 of 2 threshold checks FAILED" in err
    report = json.loads(out)  # stdout stays the report alone
    poisoning = report["poisoning"]
    assert poisoning["spec"]["trigger"] == {"trigger": "checker", "size": "3", "position": "4,4", "value": 1.0, "pattern": ""}
    assert poisoning["source_classes"] == ["1", "2"] and poisoning["spec"]["training"]["epochs"] == 1
    row = poisoning["poisoned"][0]
    for key in ("attack_success_rate", "clean_accuracy", "clean_accuracy_drop", "triggered_accuracy_source",
                "accuracy_gap", "per_class_accuracy", "model", "poisoned_dataset"):
        assert key in row, key
    assert {"clean_accuracy", "attack_success_rate", "model"} <= set(poisoning["baseline"])


def test_bad_poisoning_requests_fail_before_training_and_leave_nothing(gateway, digits_sets, tmp_path):
    model, train, test = digits_sets
    list_evaluations = lambda: gateway.evaluations.ListEvaluations(  # noqa: E731
        evaluation_pb2.ListEvaluationsRequest(page_size=1000)
    ).evaluations
    list_artifacts = lambda: gateway.artifacts.ListArtifacts(  # noqa: E731
        artifact_pb2.ListArtifactsRequest(page_size=1000)
    ).artifacts
    np.savez(tmp_path / "wide.npz", pattern=np.ones((8, 8, 3), np.float32), mask=np.ones((2, 2, 3), np.float32))
    bad_channels = tmp_path / "channels.npz"
    np.savez(bad_channels, pattern=np.ones((2, 2, 3), np.float32), mask=np.ones((2, 2), np.float32))
    pattern = upload(gateway, "pattern", bad_channels)
    split = digits.load_digits_split()
    odd = upload(gateway, "dataset", digits.save_dataset(tmp_path / "odd.npz", np.zeros((30, 4, 4, 1), np.float32),
                                                         split.y_train[:30]))
    evaluations, artifacts = len(list_evaluations()), len(list_artifacts())

    def trig(**fields):
        return poisoning_pb2.TriggerSpec(**fields)

    cases = [
        (poisoning_request(digits_sets, target_class=10), "target_class 10 is not one of the model's 10 classes"),
        (poisoning_request(digits_sets, source_classes=[7]), "a source must differ from the target"),
        (poisoning_request(digits_sets, counts=(5000,)), "exceed the"),
        (poisoning_request(digits_sets, counts=(), fractions=[1.5]), "fractions must each be in (0, 1]"),
        (poisoning_request(digits_sets, trigger=trig(trigger="square", size=9)), "the images are 8x8"),
        (poisoning_request(digits_sets, trigger=trig(trigger="square", size=2, position="7,7")), "reaches outside"),
        (poisoning_request(digits_sets, trigger=trig(trigger="square", size=2, value=2.0)), "outside the data's range"),
        (poisoning_request(digits_sets, trigger=trig(trigger="pattern", pattern=pattern.name)), "channel"),
        (poisoning_request(digits_sets, trigger=trig(trigger="hexagon")), "unknown trigger"),
        (poisoning_request(digits_sets, training_dataset=odd.name), "8x8x1"),
        (poisoning_request(digits_sets, recipe=dict(epochs=0)), "epochs must be between 1 and 1000"),
        (poisoning_request(digits_sets, recipe=dict(epochs=100000)), "epochs must be between 1 and 1000"),
        (poisoning_request(digits_sets, kind="flip"), "does not apply to label flipping"),
        (poisoning_request(digits_sets, trigger=None), "trigger is required"),
    ]
    for request, phrase in cases:
        with pytest.raises(grpc.RpcError) as info:
            gateway.evaluations.CreateEvaluation(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (phrase, info.value.details())
        assert phrase in info.value.details(), (phrase, info.value.details())
    assert len(list_evaluations()) == evaluations  # no job left behind
    assert len(list_artifacts()) == artifacts  # and no half-made artifact


def test_cancel_stops_a_poisoning_evaluation_while_it_trains(gateway, digits_sets):
    created = gateway.evaluations.CreateEvaluation(
        poisoning_request(digits_sets, recipe=dict(epochs=1000, batch_size=8))
    ).evaluation
    for evaluation in watch(gateway, created.name):
        if "epoch" in evaluation.progress.stage:
            gateway.evaluations.CancelEvaluation(evaluation_pb2.CancelEvaluationRequest(name=created.name))
            break
    final = list(watch(gateway, created.name))[-1]
    assert final.state == evaluation_pb2.EVALUATION_STATE_CANCELLED
    assert final.progress.done < final.progress.total
    with pytest.raises(grpc.RpcError) as info:
        gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=created.name))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_gateway_restart_hands_a_running_poisoning_evaluation_to_the_next_one(mesh, digits_sets):
    from advex.cli.client import Gateway
    from advex.gateway import jobs

    gateway = Gateway.connect(mesh.gateway_address)
    created = gateway.evaluations.CreateEvaluation(
        poisoning_request(digits_sets, recipe=dict(epochs=1000, batch_size=8))
    ).evaluation
    for evaluation in watch(gateway, created.name):
        if "epoch" in evaluation.progress.stage:
            break
    gateway.close()
    mesh.stop_gateway(grace=0.5)
    store = jobs.JobStore(mesh.gateway_config.database_url)
    assert store.get(created.name.split("/")[1]).state == jobs.QUEUED  # handed back, not left RUNNING
    store.close()

    successor = mesh.start_gateway(instance_id="poisoning-successor")
    try:
        for evaluation in watch(successor, created.name):
            if evaluation.state == evaluation_pb2.EVALUATION_STATE_RUNNING and "epoch" in evaluation.progress.stage:
                successor.evaluations.CancelEvaluation(evaluation_pb2.CancelEvaluationRequest(name=created.name))
                break
        assert list(watch(successor, created.name))[-1].state == evaluation_pb2.EVALUATION_STATE_CANCELLED
    finally:
        successor.close()


def test_poisoned_data_is_only_for_a_count_of_a_poisoning_evaluation(gateway, digits_sets):
    from mesh_requests import evasion_request
    from advex.v1 import evasion_pb2

    model, _, test = digits_sets
    evasion = gateway.evaluations.CreateEvaluation(
        evasion_request(model.name, test.name, [evasion_pb2.AttackSpec(attack="fgsm", eps=0.1)], max_samples=5)
    ).evaluation
    poisoning = gateway.evaluations.CreateEvaluation(poisoning_request(digits_sets, counts=(5,))).evaluation
    gateway.evaluations.CancelEvaluation(evaluation_pb2.CancelEvaluationRequest(name=poisoning.name))
    for name, count, code, phrase in (
        (evasion.name, 5, grpc.StatusCode.FAILED_PRECONDITION, "only poisoning evaluations have poisoned data"),
        (poisoning.name, 6, grpc.StatusCode.INVALID_ARGUMENT, "poison_count 6 is not one of this evaluation's counts (5)"),
    ):
        with pytest.raises(grpc.RpcError) as info:
            list(gateway.evaluations.StreamPoisonedData(
                evaluation_pb2.StreamPoisonedDataRequest(name=name, poison_count=count)
            ))
        assert info.value.code() == code and phrase in info.value.details(), info.value.details()
    # Made from the stored spec, so a cancelled evaluation still has its data.
    pieces = list(gateway.evaluations.StreamPoisonedData(
        evaluation_pb2.StreamPoisonedDataRequest(name=poisoning.name, poison_count=5)
    ))
    flags = [p.piece.samples.poisoned for p in pieces if p.piece.HasField("samples")]
    from advex.core import tensors

    assert sum(int(tensors.from_proto(f).sum()) for f in flags) == 5
    assert all(p.ByteSize() <= 1024**2 for p in pieces)
