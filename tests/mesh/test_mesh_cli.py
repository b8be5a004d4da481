"""The advex command against the running mesh: every --json output is JSON
alone on stdout, and the demo runs end to end."""

from __future__ import annotations

import json

import pytest

from mesh_requests import run_cli
from report_schema import ReportValidator


def test_demo_trains_uploads_evaluates_and_prints_the_table(mesh, tmp_path):
    code, out, err = run_cli("--gateway", mesh.gateway_address, "demo", "--cache-dir", str(tmp_path / "demo"))
    assert code == 0, err
    assert "demo: training a small CNN" in err
    for needle in ("clean accuracy", "fgsm    inf   0.05", "pgd     inf   0.3", "worst case", "robustness score"):
        assert needle in out, needle
    # Cached: a second demo trains nothing, says nothing of training, and
    # reports the same clean accuracy.
    code, again, err = run_cli("demo", "--cache-dir", str(tmp_path / "demo"), "--gateway", mesh.gateway_address)
    assert code == 0 and "training" not in err and again.splitlines()[4] == out.splitlines()[4]
    code, again, _ = run_cli("--gateway", mesh.gateway_address, "demo", "--json", "--cache-dir", str(tmp_path / "demo"))
    report = json.loads(again)
    assert code == 0 and report["evasion"]["samples"] == "359" and len(report["evasion"]["attacks"]) == 8
    assert f"clean accuracy {report['evasion']['clean_accuracy']:.4f}" in out


def test_subcommands_print_json_only(mesh, digits_files, tmp_path):
    gateway = ("--gateway", mesh.gateway_address)
    code, out, _ = run_cli(*gateway, "upload", "model", str(digits_files[0]), "--json")
    model = json.loads(out)
    assert code == 0 and model["state"] == "ARTIFACT_STATE_READY" and model["name"].startswith("artifacts/")
    code, out, _ = run_cli(*gateway, "upload", "dataset", str(digits_files[1]), "--name", "digits", "--json")
    dataset = json.loads(out)
    assert dataset["display_name"] == "digits" and dataset["dataset"]["samples"] == "359"

    code, out, _ = run_cli(
        *gateway, "evaluate", "--model", model["name"], "--dataset", dataset["name"],
        "--attack", "fgsm:eps=0.1", "--max-samples", "16", "--json",
    )
    queued = json.loads(out)
    assert code == 0 and queued["state"] == "EVALUATION_STATE_QUEUED"
    code, out, _ = run_cli(*gateway, "watch", queued["name"], "--json")
    assert code == 0 and json.loads(out)["state"] == "SUCCEEDED"
    code, out, _ = run_cli(*gateway, "status", queued["name"], "--json")
    assert json.loads(out)["state"] == "EVALUATION_STATE_SUCCEEDED"
    code, out, _ = run_cli(*gateway, "list", "--json", "--page-size", "1", "--all")
    assert queued["name"] in [e["name"] for e in json.loads(out)]
    code, out, _ = run_cli(*gateway, "list", "artifacts", "--json")
    assert {model["name"], dataset["name"]} <= {a["name"] for a in json.loads(out)}
    target = tmp_path / "report.json"
    code, out, _ = run_cli(*gateway, "report", queued["name"], "--json", "--out", str(target))
    assert code == 0 and out == "" and json.loads(target.read_text())["name"] == queued["name"]


def test_cli_errors_say_what_to_do():
    # No gateway is a gRPC error (UNAVAILABLE): exit code 1, as the README says.
    code, out, err = run_cli("--gateway", "127.0.0.1:9", "list")
    assert code == 1 and out == ""
    assert "no AdvEx gateway answers at 127.0.0.1:9" in err and "make run" in err
    # --gateway after the subcommand works the same.
    code, out, err = run_cli("list", "--gateway", "127.0.0.1:9")
    assert code == 1 and "no AdvEx gateway answers at 127.0.0.1:9" in err


def test_a_budget_over_the_whole_input_range_is_called_trivial(mesh, uploaded_digits):
    model, dataset = uploaded_digits
    code, out, err = run_cli("evaluate", "--gateway", mesh.gateway_address, "--model", model.name, "--dataset",
                             dataset.name, "--attack", "fgsm:eps=1e9", "--max-samples", "10", "--wait", "--json")
    assert code == 0, err
    assert "warning: L-inf eps 1e+09 covers the whole input range (0 to 1)" in err
    assert [w["check"] for w in json.loads(out)["evasion"]["warnings"]] == ["budget_covers_input_range"]


def test_bad_attack_flags_are_explained(mesh):
    code, _, err = run_cli(
        "--gateway", mesh.gateway_address, "evaluate", "--model", "m", "--dataset", "d", "--attack", "pgd:speed=3"
    )
    assert code == 2 and "'speed=3' is not key=value" in err
    code, _, err = run_cli(
        "--gateway", mesh.gateway_address, "evaluate", "--model", "m", "--dataset", "d", "--attack", "pgd"
    )
    assert code == 2 and "give eps=... or one or more --eps" in err


def test_fail_under_gates_a_ci_pipeline_with_exit_codes(mesh, uploaded_digits):
    model, dataset = uploaded_digits
    validated = ReportValidator.validated
    gateway = ("--gateway", mesh.gateway_address)
    code, out, err = run_cli(
        *gateway, "evaluate", "--model", model.name, "--dataset", dataset.name, "--attack", "fgsm:eps=0.1",
        "--attack", "pgd:eps=0.1,steps=10", "--max-samples", "40", "--seed", "0",
        "--fail-under", "robustness_score=0.99", "--fail-under", "adversarial_accuracy@fgsm:eps=0.1=0.05",
    )
    # The table first, then the verdict: exit 3, each failed threshold named.
    assert code == 3, err
    assert "adv_acc" in out and "pgd" in out
    assert "FAILED: robustness_score of the report is" in err and "must be >= 0.99" in err
    assert "ok: adversarial_accuracy of fgsm Linf eps=0.1" in err and "1 of 2 threshold checks FAILED" in err

    code, out, _ = run_cli(*gateway, "list", "--json")
    name = json.loads(out)[0]["name"]
    code, out, err = run_cli(*gateway, "gate", name, "--fail-under", "worst_case@inf:0.1=0",
                             "--fail-under", "adversarial_accuracy@pgd<=1", "--json")
    assert code == 0 and "every one of 2 threshold checks holds" in err, err
    assert json.loads(out)["evasion"]["samples"] == "40"
    # Both reports were checked against docs/report.schema.json on arrival.
    assert ReportValidator.validated >= validated + 2

    code, out, err = run_cli(*gateway, "gate", name, "--fail-under", "adversarial_accuracy@apgd=0.5")
    assert code == 2 and "nothing in this evasion report matches it" in err, err
    code, out, err = run_cli(*gateway, "evaluate", "--model", model.name, "--dataset", dataset.name,
                             "--attack", "fgsm:eps=0.1", "--fail-under", "robustness=0.5")
    assert code == 2 and "unknown metric 'robustness'" in err and out == ""
    code, out, _ = run_cli(*gateway, "list", "--json")
    assert json.loads(out)[0]["name"] == name  # the bad threshold queued nothing


def test_compare_two_models_on_the_same_samples_with_a_paired_test(mesh, uploaded_digits, digits_logits_model_file,
                                                                   tmp_path):
    model, dataset = uploaded_digits
    gateway = ("--gateway", mesh.gateway_address)
    code, out, err = run_cli(*gateway, "upload", "model", str(digits_logits_model_file), "--json")
    assert code == 0, err
    other = json.loads(out)["name"]
    names = []
    for model_name in (model.name, other):
        code, out, err = run_cli(*gateway, "evaluate", "--model", model_name, "--dataset", dataset.name,
                                 "--attack", "fgsm", "--attack", "pgd:steps=10", "--eps", "0.05", "--eps", "0.2",
                                 "--max-samples", "80", "--seed", "0", "--wait", "--json")
        assert code == 0, out + err
        report = json.loads(out)
        assert report["evasion"]["outcomes"]["name"].startswith("artifacts/")
        names.append(report["name"])

    page = tmp_path / "compare.html"
    code, out, err = run_cli(*gateway, "compare", *names, "--json", "--html", str(page))
    assert code == 0, err
    rows = {r["what"]: r for r in json.loads(out)["rows"]}
    assert list(rows)[:3] == ["clean", "worst case Linf eps=0.05", "worst case Linf eps=0.2"]
    assert {"fgsm Linf eps=0.05", "pgd Linf eps=0.2 steps=10"} <= set(rows), sorted(rows)
    for row in rows.values():
        assert row["samples"] == 80 and 0 <= row["mcnemar_p"] <= 1
        low, high = row["a"]["interval_95"]
        assert low <= row["a"]["accuracy"] <= high
        assert row["difference"] == row["b"]["accuracy"] - row["a"]["accuracy"]
        assert row["verdict"] in ("A more robust", "B more robust", "no significant difference")
    # The paired counts add up to the accuracies' difference.
    clean = rows["clean"]
    assert (clean["only_b_right"] - clean["only_a_right"]) / 80 == pytest.approx(clean["difference"])
    assert page.read_text().startswith("<!DOCTYPE html>")

    code, out, err = run_cli(*gateway, "compare", names[0], names[0])
    assert code == 0 and "no significant difference" in out and "B - A" in out
    code, out, err = run_cli(*gateway, "evaluate", "--model", other, "--dataset", dataset.name, "--attack",
                             "fgsm:eps=0.05", "--max-samples", "80", "--wait", "--json")
    code, out, err = run_cli(*gateway, "compare", names[0], json.loads(out)["name"])
    assert code == 2 and "ran different attacks" in err and "only in A: fgsm Linf eps=0.2" in err


def test_progress_in_a_log_is_one_line_per_stage(mesh, uploaded_digits):
    """Where stderr is no terminal (a CI log, a pipe), a progress bar's
    redraws would all stay in the text: one plain line per stage instead."""
    model, dataset = uploaded_digits
    code, out, err = run_cli("--gateway", mesh.gateway_address, "evaluate", "--model", model.name, "--dataset",
                             dataset.name, "--attack", "fgsm:eps=0.1", "--max-samples", "16", "--wait")
    assert code == 0 and "robustness score" in out
    assert "\r" not in err and "it/s" not in err
    lines = err.splitlines()
    assert lines[-1].startswith("advex: evaluations/") and lines[-1].endswith("100.0% SUCCEEDED: done")
    assert len(lines) == len(set(lines)) <= 10, lines  # a line per change, never a repeat
