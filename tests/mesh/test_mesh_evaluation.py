"""End to end over real sockets: upload through presigned URLs (HTTP to the
S3 endpoint), evaluate, watch, report, cancel, restart the gateway."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import grpc
import numpy as np
import pytest

from advex.cli import digits
from advex.cli.client import file_digest, upload, watch
from advex.cli.main import main as advex_main
from advex.v1 import evasion_pb2, evaluation_pb2
from mesh_requests import evasion_request


REPORT_KEYS = {"name", "state", "model", "dataset", "evasion"}
EVASION_KEYS = {"samples", "clean_accuracy", "attacks", "worst_case", "robustness_score", "curves"}
ATTACK_KEYS = {
    "attack", "norm", "eps", "adversarial_accuracy", "attack_success_rate", "mean_confidence_clean",
    "mean_confidence_adversarial", "robustness_score", "perturbation_linf_mean", "perturbation_l2_mean",
}


def rpc_error(call, *args) -> grpc.RpcError:
    """Calls and returns the RpcError it must raise."""
    with pytest.raises(grpc.RpcError) as info:
        call(*args)
    return info.value


def _attacks(*budgets, pgd_steps=10):
    specs = [evasion_pb2.AttackSpec(attack="fgsm", norm="inf", eps=e) for e in budgets]
    specs += [evasion_pb2.AttackSpec(attack="pgd", norm="inf", eps=e, steps=pgd_steps) for e in budgets]
    return specs


def _run_to_end(gateway, request) -> evaluation_pb2.Evaluation:
    created = gateway.evaluations.CreateEvaluation(request).evaluation
    assert created.state == evaluation_pb2.EVALUATION_STATE_QUEUED
    events = list(watch(gateway, created.name))
    assert events, "watch streamed nothing"
    return events[-1]


def test_evaluation_runs_to_a_consistent_report(gateway, uploaded_digits, digits_files):
    model, dataset = uploaded_digits
    final = _run_to_end(
        gateway,
        evasion_request(model.name, dataset.name, attacks=_attacks(0.1, 0.3), max_samples=120, display_name="e2e"
        ),
    )
    assert final.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, final.error
    assert final.progress.done == final.progress.total == 120 * (1 + 1 + 10 + 10)

    report = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=final.name)).report
    assert report.name == final.name and report.state == "SUCCEEDED" and report.evasion.samples == 120
    assert report.model.sha256 == file_digest(Path(digits_files[0]))[1]
    assert report.dataset.sha256 == file_digest(Path(digits_files[1]))[1]
    metrics = report.evasion
    assert metrics.clean_accuracy > 0.85  # the demo CNN is a working classifier
    by_key = {(a.attack, a.eps): a for a in metrics.attacks}
    assert set(by_key) == {("fgsm", 0.1), ("fgsm", 0.3), ("pgd", 0.1), ("pgd", 0.3)}
    fgsm_03 = by_key[("fgsm", 0.3)]
    assert fgsm_03.adversarial_accuracy <= metrics.clean_accuracy
    assert fgsm_03.adversarial_accuracy < 0.5 * metrics.clean_accuracy  # eps 0.3 of a 0..1 range is a big budget
    # PGD is at least about as strong as FGSM at the same budget.
    assert by_key[("pgd", 0.3)].adversarial_accuracy <= fgsm_03.adversarial_accuracy + 0.05
    for attack in metrics.attacks:
        assert attack.perturbation_linf_mean <= attack.eps + 1e-5
        assert 0.0 <= attack.robustness_score <= 1.0
    for worst in metrics.worst_case:
        group = [a.adversarial_accuracy for a in metrics.attacks if a.eps == worst.eps]
        assert worst.accuracy <= min(group) + 1e-12
    assert 0.0 <= metrics.robustness_score <= 1.0


def test_cli_evaluate_wait_json_prints_the_report_contract(mesh, uploaded_digits):
    model, dataset = uploaded_digits
    out = io.StringIO()
    with redirect_stdout(out):
        code = advex_main([
            "--gateway", mesh.gateway_address, "evaluate", "--model", model.name, "--dataset", dataset.name,
            "--attack", "fgsm", "--attack", "pgd:steps=5,norm=inf", "--eps", "0.1", "--eps", "0.2",
            "--max-samples", "40", "--wait", "--json",
        ])
    assert code == 0
    report = json.loads(out.getvalue())  # stdout holds JSON and nothing else
    assert REPORT_KEYS <= set(report) and EVASION_KEYS <= set(report["evasion"])
    metrics = report["evasion"]
    # int64 counts travel as JSON strings (proto3 JSON), doubles as numbers.
    assert report["state"] == "SUCCEEDED" and metrics["samples"] == "40"
    assert isinstance(metrics["clean_accuracy"], float)
    assert {"name", "sha256"} <= set(report["model"]) and {"name", "sha256"} <= set(report["dataset"])
    assert len(metrics["attacks"]) == 4 and all(ATTACK_KEYS <= set(a) for a in metrics["attacks"])
    assert metrics["attacks"][0]["norm"] == "inf"
    assert [w["eps"] for w in metrics["worst_case"]] == [0.1, 0.2]

    out = io.StringIO()
    with redirect_stdout(out):
        assert advex_main(["--gateway", mesh.gateway_address, "report", report["name"], "--json"]) == 0
    assert json.loads(out.getvalue()) == report


def test_bad_evaluation_requests_fail_with_what_to_fix_and_leave_no_job(gateway, uploaded_digits, tmp_path):
    model, dataset = uploaded_digits
    before = len(gateway.evaluations.ListEvaluations(evaluation_pb2.ListEvaluationsRequest(page_size=1000)).evaluations)
    create = gateway.evaluations.CreateEvaluation
    fgsm = [evasion_pb2.AttackSpec(attack="fgsm", eps=0.1)]

    def request(**overrides):
        fields = dict(model=model.name, dataset=dataset.name, attacks=fgsm)
        fields.update(overrides)
        return evasion_request(**fields)

    split = digits.load_digits_split()
    # No class_names: storage would already refuse labels beyond them.
    np.savez(tmp_path / "labels.npz", x=split.x_test[:20], y=np.full(20, 12))
    wrong_labels = upload(gateway, "dataset", tmp_path / "labels.npz")
    wrong_shape = upload(
        gateway, "dataset",
        digits.save_dataset(tmp_path / "shape.npz", np.zeros((20, 4, 4, 1), np.float32), split.y_test[:20]),
    )
    cases = [
        (request(model="artifacts/000000000000deadbeef"), grpc.StatusCode.NOT_FOUND, "no artifact"),
        (request(dataset=wrong_labels.name), grpc.StatusCode.INVALID_ARGUMENT, "10 classes"),
        (request(dataset=wrong_shape.name), grpc.StatusCode.INVALID_ARGUMENT, "8x8x1"),
        (request(attacks=[evasion_pb2.AttackSpec(attack="fgsm", eps=-0.1)]), grpc.StatusCode.INVALID_ARGUMENT, "eps must be >= 0"),
        (request(attacks=[evasion_pb2.AttackSpec(attack="pgd", eps=0.1, steps=0)]), grpc.StatusCode.INVALID_ARGUMENT, "steps must be"),
        (request(attacks=[evasion_pb2.AttackSpec(attack="deepfool", eps=0.1)]), grpc.StatusCode.INVALID_ARGUMENT, "known attacks: apgd, bim, cw, fgsm, mim, pgd, spsa"),
        (request(attacks=[]), grpc.StatusCode.INVALID_ARGUMENT, "at least one"),
        (request(model=dataset.name), grpc.StatusCode.INVALID_ARGUMENT, "not a model"),
        (request(clip_min=1.0, clip_max=0.0), grpc.StatusCode.INVALID_ARGUMENT, "clip_min"),
        (request(clip_max=0.5), grpc.StatusCode.INVALID_ARGUMENT, "clip"),
    ]
    for req, code, phrase in cases:
        error = rpc_error(create, req)
        assert error.code() == code, (req, error.details())
        assert phrase in error.details(), (phrase, error.details())
    after = gateway.evaluations.ListEvaluations(evaluation_pb2.ListEvaluationsRequest(page_size=1000)).evaluations
    assert len(after) == before


def test_bad_uploads_through_the_gateway_are_rejected(gateway, tmp_path, digits_files):
    model_path = Path(digits_files[0])
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(model_path.read_bytes()[: model_path.stat().st_size // 2])
    error = rpc_error(upload, gateway, "model", truncated)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    object_array = tmp_path / "objects.npz"
    np.savez(object_array, x=np.zeros((2, 8, 8, 1), np.float32), y=np.array([1, "a"], dtype=object))
    error = rpc_error(upload, gateway, "dataset", object_array)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "object" in error.details()
    from advex.v1 import artifact_pb2

    artifacts = gateway.artifacts.ListArtifacts(artifact_pb2.ListArtifactsRequest(page_size=1000)).artifacts
    rejected = [a for a in artifacts if a.display_name in ("truncated.keras", "objects.npz")]
    assert len(rejected) == 2 and all(a.state == artifact_pb2.ARTIFACT_STATE_REJECTED for a in rejected)
    assert all(a.rejection_reason for a in rejected)


def test_cancel_stops_a_running_evaluation(gateway, uploaded_digits):
    model, dataset = uploaded_digits
    created = gateway.evaluations.CreateEvaluation(
        evasion_request(model.name, dataset.name, attacks=[evasion_pb2.AttackSpec(attack="pgd", eps=0.1, steps=2000)],
        )
    ).evaluation
    states = []
    for evaluation in watch(gateway, created.name):
        first_running = evaluation.state == evaluation_pb2.EVALUATION_STATE_RUNNING and not states.count(evaluation.state)
        states.append(evaluation.state)
        if first_running:
            cancelled = gateway.evaluations.CancelEvaluation(
                evaluation_pb2.CancelEvaluationRequest(name=created.name)
            ).evaluation
            assert cancelled.state in (evaluation_pb2.EVALUATION_STATE_RUNNING, evaluation_pb2.EVALUATION_STATE_CANCELLED)
    assert states[-1] == evaluation_pb2.EVALUATION_STATE_CANCELLED
    final = gateway.evaluations.GetEvaluation(evaluation_pb2.GetEvaluationRequest(name=created.name)).evaluation
    assert final.progress.done < final.progress.total
    error = rpc_error(gateway.evaluations.GetReport, evaluation_pb2.GetReportRequest(name=created.name))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "CANCELLED" in error.details()
    error = rpc_error(gateway.evaluations.CancelEvaluation, evaluation_pb2.CancelEvaluationRequest(name=created.name))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_evaluations_and_reports_survive_a_gateway_restart(mesh, uploaded_digits):
    from advex.cli.client import Gateway

    gateway = Gateway.connect(mesh.gateway_address)
    model, dataset = uploaded_digits
    done = _run_to_end(
        gateway,
        evasion_request(model.name, dataset.name, attacks=_attacks(0.2, pgd_steps=3), max_samples=30
        ),
    )
    assert done.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED
    report = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=done.name)).report
    listed = gateway.evaluations.ListEvaluations(evaluation_pb2.ListEvaluationsRequest(page_size=1000)).evaluations
    gateway.close()

    mesh.stop_gateway()
    restarted = mesh.start_gateway(instance_id="restarted-gateway")
    try:
        after = restarted.evaluations.ListEvaluations(evaluation_pb2.ListEvaluationsRequest(page_size=1000)).evaluations
        assert [(e.name, e.state) for e in after] == [(e.name, e.state) for e in listed]
        again = restarted.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=done.name)).report
        assert again == report
        # Watching an ended evaluation after the restart yields its final state.
        assert [e.state for e in watch(restarted, done.name)] == [evaluation_pb2.EVALUATION_STATE_SUCCEEDED]
    finally:
        restarted.close()


def test_draining_gateway_hands_running_work_to_the_next_one(mesh, uploaded_digits):
    from advex.cli.client import Gateway

    gateway = Gateway.connect(mesh.gateway_address)
    model, dataset = uploaded_digits
    created = gateway.evaluations.CreateEvaluation(
        evasion_request(model.name, dataset.name, attacks=[evasion_pb2.AttackSpec(attack="pgd", eps=0.1, steps=10000)],
        )
    ).evaluation
    for evaluation in watch(gateway, created.name):
        if evaluation.state == evaluation_pb2.EVALUATION_STATE_RUNNING:
            break
    gateway.close()
    mesh.stop_gateway(grace=0.5)

    # Nothing runs it while no gateway is up: it waits, QUEUED, in SQL.
    from advex.gateway import jobs

    store = jobs.JobStore(mesh.gateway_config.database_url)
    assert store.get(created.name.split("/")[1]).state == jobs.QUEUED
    store.close()

    successor = mesh.start_gateway(instance_id="successor")
    try:
        successor.evaluations.CancelEvaluation(evaluation_pb2.CancelEvaluationRequest(name=created.name))
        states = [e.state for e in watch(successor, created.name)]
        assert states[-1] == evaluation_pb2.EVALUATION_STATE_CANCELLED
    finally:
        successor.close()


def test_bim_mim_and_pgd_restarts_run_through_the_mesh(gateway, uploaded_digits):
    model, dataset = uploaded_digits
    attacks = [
        evasion_pb2.AttackSpec(attack="bim", eps=0.2, steps=5),
        evasion_pb2.AttackSpec(attack="mim", eps=0.2, steps=5, decay=0.9),
        evasion_pb2.AttackSpec(attack="pgd", eps=0.2, steps=5, restarts=2),
    ]
    final = _run_to_end(gateway, evasion_request(model.name, dataset.name, attacks=attacks, max_samples=30))
    assert final.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, final.error
    assert final.progress.total == 30 * (5 + 5 + 10)
    assert [a.restarts for a in final.evasion.attacks] == [0, 0, 2]
    report = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=final.name)).report.evasion
    by_name = {a.attack: a for a in report.attacks}
    assert set(by_name) == {"bim", "mim", "pgd"}
    assert by_name["mim"].spec.decay == 0.9 and by_name["pgd"].spec.restarts == 2
    assert by_name["bim"].spec.step_size == pytest.approx(2.5 * 0.2 / 5)
    for attack in report.attacks:
        assert attack.adversarial_accuracy < report.clean_accuracy and attack.perturbation_linf_mean <= 0.2 + 1e-6
    assert report.worst_case[0].attacks == ["bim", "mim", "pgd"]


def test_create_evaluation_checks_the_dataset_from_its_metadata(mesh, gateway, uploaded_digits, digits_split, tmp_path):
    """Storage records the value range at upload; CreateEvaluation checks the
    clip range, shapes and labels against it without the attack service
    downloading or reading the dataset."""
    model, _ = uploaded_digits
    path = tmp_path / "half.npz"
    x = digits_split.x_test[:50] * 0.5
    np.savez(path, x=x, y=digits_split.y_test[:50])
    dataset = upload(gateway, "dataset", path)
    assert (dataset.dataset.min_value, dataset.dataset.max_value) == (0.0, pytest.approx(float(x.max())))
    cached = mesh.attack_cache / f"{dataset.sha256}.npz"
    attack = [evasion_pb2.AttackSpec(attack="fgsm", eps=0.1)]
    error = rpc_error(
        gateway.evaluations.CreateEvaluation,
        evasion_request(model.name, dataset.name, attacks=attack, clip_min=0.0, clip_max=0.25),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "dataset values span 0..0.5 but the clip range is 0..0.25" in error.details()
    assert not cached.exists(), "CreateEvaluation made the attack service fetch the dataset"
    final = _run_to_end(gateway, evasion_request(model.name, dataset.name, attacks=attack, clip_min=0.0, clip_max=1.0))
    assert final.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, final.error
    assert final.evasion.samples == 50 and cached.exists()
