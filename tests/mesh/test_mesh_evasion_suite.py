"""The evasion suite end to end: targeted and unbounded attacks, kept
adversarial sets (downloaded and re-evaluated), the standard suite from the
CLI, and bad attack parameters refused before any work."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import grpc
import numpy as np
import pytest

from advex.cli.main import main as advex_main
from advex.v1 import evasion_pb2, evaluation_pb2
from mesh_requests import evasion_request, run_to_end

SAMPLES = 40


def _cli_json(mesh, *argv) -> dict:
    out = io.StringIO()
    with redirect_stdout(out):
        code = advex_main(["--gateway", mesh.gateway_address, *argv, "--json"])
    assert code == 0, out.getvalue()
    return json.loads(out.getvalue())


def test_kept_adversarial_sets_download_and_re_evaluate_to_the_report(mesh, gateway, uploaded_digits, digits_files,
                                                                      tmp_path):
    import keras

    model, dataset = uploaded_digits
    attacks = [
        evasion_pb2.AttackSpec(attack="fgsm", eps=0.1),
        evasion_pb2.AttackSpec(attack="pgd", eps=0.2, steps=10, target="random"),
        evasion_pb2.AttackSpec(attack="cw", steps=30, binary_search_steps=3, learning_rate=0.05, eps=1.0),
    ]
    request = evasion_request(model.name, dataset.name, attacks=attacks, max_samples=SAMPLES)
    request.evasion.keep_adversarial = True
    final = run_to_end(gateway, request)
    assert final.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, final.error
    report = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=final.name)).report.evasion

    keras_model = keras.saving.load_model(digits_files[0], compile=False)
    with np.load(digits_files[1]) as data:
        clean_x, clean_y = data["x"][:SAMPLES], data["y"][:SAMPLES]
    for result in report.attacks:
        name = result.adversarial_dataset.name
        assert name.startswith("artifacts/"), result.attack
        path = tmp_path / f"{result.attack}.npz"
        downloaded = _cli_json(mesh, "download", name, "-o", str(path))
        assert downloaded["sha256"] == result.adversarial_dataset.sha256
        with np.load(path, allow_pickle=False) as kept:
            x, y = kept["x"], kept["y"]
            assert x.shape == clean_x.shape and x.dtype == np.float32
            assert np.array_equal(y, clean_y)
            predictions = keras_model.predict(x, verbose=0).argmax(axis=1)
            assert np.array_equal(predictions, kept["adversarial_predictions"])
            assert np.array_equal(keras_model.predict(clean_x, verbose=0).argmax(1), kept["clean_predictions"])
            # The kept set re-evaluates to the reported accuracy.
            assert np.mean(predictions == y) == pytest.approx(result.adversarial_accuracy)
            assert x.min() >= 0.0 and x.max() <= 1.0
            delta = (x - clean_x).reshape(SAMPLES, -1)
            if result.attack == "pgd":
                targets = kept["targets"]
                assert result.target == "random" and np.all(targets != y)
                reached = (predictions == targets) & (kept["clean_predictions"] == y)
                assert reached.sum() == result.successful_samples
                assert np.abs(delta).max() <= 0.2 + 1e-6
            else:
                assert "targets" not in kept.files
            if result.attack == "cw":
                # Beyond eps an example is discarded: every kept one is within it.
                assert np.linalg.norm(delta, axis=1).max() <= 1.0 + 1e-5
                assert not result.unbounded and result.eps == 1.0


def test_an_unbounded_cw_row_and_its_place_in_the_report(gateway, uploaded_digits):
    model, dataset = uploaded_digits
    attacks = [
        evasion_pb2.AttackSpec(attack="cw", steps=30, binary_search_steps=3, learning_rate=0.05),
        evasion_pb2.AttackSpec(attack="fgsm", norm="inf", eps=0.3),
    ]
    final = run_to_end(gateway, evasion_request(model.name, dataset.name, attacks=attacks, max_samples=SAMPLES))
    assert final.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, final.error
    assert final.progress.total == SAMPLES * (30 * 3 + 1)
    report = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=final.name)).report.evasion
    cw, fgsm = report.attacks
    assert cw.unbounded and cw.eps == 0 and not cw.spec.HasField("eps")
    assert [w.attacks for w in report.worst_case] == [["fgsm"]]
    assert [c.attack for c in report.curves] == ["fgsm"]
    # At (nearly) equal success, CW's perturbations are far smaller.
    assert cw.attack_success_rate >= 0.95 and fgsm.attack_success_rate >= 0.95
    assert cw.perturbation_l2_median < 0.7 * fgsm.perturbation_l2_median


def test_the_standard_suite_from_the_cli(mesh, uploaded_digits):
    model, dataset = uploaded_digits
    report = _cli_json(
        mesh, "evaluate", "--model", model.name, "--dataset", dataset.name, "--suite", "standard",
        "--eps", "0.1", "--max-samples", "30", "--wait",
    )
    evasion = report["evasion"]
    assert [(a["attack"], a["spec"].get("loss"), a.get("target", "")) for a in evasion["attacks"]] == [
        ("apgd", "ce", ""), ("apgd", "dlr", "most_likely"), ("fgsm", None, ""),
    ]
    (worst,) = evasion["worst_case"]
    assert worst["attacks"] == ["apgd", "apgd target=most_likely", "fgsm"]
    assert worst["accuracy"] <= min(a["adversarial_accuracy"] for a in evasion["attacks"])


@pytest.mark.parametrize(
    "attack, phrase",
    [
        (evasion_pb2.AttackSpec(attack="pgd", eps=0.1, target="12"), "target 12 is not a class of this model"),
        (evasion_pb2.AttackSpec(attack="spsa", eps=0.1, samples=7), "samples must be between 2 and 8192 (even), got 7"),
        (evasion_pb2.AttackSpec(attack="cw", norm="inf"), "cw supports only L2"),
        (evasion_pb2.AttackSpec(attack="apgd", eps=0.1, loss="hinge"), "loss must be 'ce' or 'dlr'"),
    ],
)
def test_bad_attack_parameters_are_refused_before_any_work(gateway, uploaded_digits, attack, phrase):
    model, dataset = uploaded_digits
    with pytest.raises(grpc.RpcError) as info:
        gateway.evaluations.CreateEvaluation(evasion_request(model.name, dataset.name, attacks=[attack]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert phrase in info.value.details() and "evasion.attacks[0]" in info.value.details()


def test_spsa_sees_through_masked_gradients_and_the_report_warns(gateway, digits_files, tmp_path):
    """A model behind a zero-gradient input quantiser (built-in layers only,
    so it passes the upload checks): PGD finds nothing, SPSA breaks it, and
    the report says the gradients may be masked."""
    import keras

    from advex.cli.client import upload
    from masked_model import gradient_masked_model

    base = keras.saving.load_model(digits_files[0], compile=False)
    path = gradient_masked_model(base, tmp_path / "masked.keras")
    model = upload(gateway, "model", path)
    dataset = upload(gateway, "dataset", digits_files[1])
    attacks = [
        evasion_pb2.AttackSpec(attack="pgd", eps=0.2, steps=20),
        # The probes must cross the quantiser's steps (1/16 apart).
        evasion_pb2.AttackSpec(attack="spsa", eps=0.2, steps=20, samples=32, learning_rate=0.02, delta=0.05),
    ]
    final = run_to_end(gateway, evasion_request(model.name, dataset.name, attacks=attacks, max_samples=32))
    assert final.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, final.error
    report = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=final.name)).report.evasion
    pgd, spsa = report.attacks
    assert pgd.adversarial_accuracy >= report.clean_accuracy - 0.05
    assert spsa.adversarial_accuracy <= report.clean_accuracy - 0.4
    assert [w.check for w in report.warnings] == ["gradient_free_beats_gradient"]
    assert "spsa" in report.warnings[0].message and "pgd" in report.warnings[0].message


def test_the_same_seed_gives_the_same_results(gateway, uploaded_digits):
    """Random starts, random targets and SPSA's probes all come from the
    seed: two evaluations with one seed agree to the last digit, and a third
    without a seed reports the one derived for it."""
    model, dataset = uploaded_digits
    attacks = [
        evasion_pb2.AttackSpec(attack="pgd", eps=0.1, steps=5, target="random"),
        evasion_pb2.AttackSpec(attack="spsa", eps=0.1, steps=5, samples=8),
    ]
    reports = []
    for seed in (1234, 1234, None):
        request = evasion_request(model.name, dataset.name, attacks=attacks, max_samples=30)
        if seed is not None:
            request.evasion.seed = seed
        final = run_to_end(gateway, request)
        assert final.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, final.error
        reports.append(gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=final.name)).report.evasion)
    first, again, unseeded = reports
    assert first.seed == again.seed == 1234 and unseeded.seed not in (0, 1234)
    assert list(first.attacks) == list(again.attacks)
