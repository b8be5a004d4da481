"""The Node.js example (examples/node/evaluate.js: @grpc/grpc-js with the
protos loaded at run time by @grpc/proto-loader) against this module's mesh:
upload -> evaluate -> watch -> report, its numbers checked against what the
Python client reads, and a rejected upload. Needs `node` and the example's
node_modules (`make node-example`, which `make test` runs)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from advex.cli.client import Gateway
from advex.v1 import evaluation_pb2

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node"
SCRIPT = EXAMPLE / "evaluate.js"
NUMBER = r"([0-9]+(?:\.[0-9]+)?(?:e-?[0-9]+)?)"


@pytest.fixture(scope="module")
def node():
    """The node binary, the example's dependencies installed."""
    binary = shutil.which("node")
    if binary is None:
        pytest.fail("the Node.js example needs `node` (Node.js 18 or newer) on PATH, then `make node-example`")
    for package in ("@grpc/grpc-js", "@grpc/proto-loader"):
        if not (EXAMPLE / "node_modules" / package / "package.json").is_file():
            pytest.fail(f"examples/node/node_modules lacks {package}: run `make node-example` "
                        "(npm ci --prefix examples/node)")
    return binary


def run_example(node, mesh, *args, timeout=120):
    # Run from elsewhere: the example finds ../../protos from its own path.
    env = {**os.environ, "ADVEX_GATEWAY_ADDR": "127.0.0.1:1"}  # --gateway must win
    return subprocess.run(
        [node, str(SCRIPT), "--gateway", mesh.gateway_address, *map(str, args)],
        cwd="/", env=env, capture_output=True, text=True, timeout=timeout,
    )


def test_the_node_example_uploads_evaluates_watches_and_reports(node, mesh, digits_files):
    model, dataset = digits_files
    done = run_example(node, mesh, model, dataset, "--max-samples", "32")
    out = done.stdout
    assert done.returncode == 0, f"{out[-3000:]}\n{done.stderr[-3000:]}"

    uploads = re.findall(r"^(artifacts/\S+)  (\w+)  (\S+)", out, re.MULTILINE)
    assert [(state, shown) for _, state, shown in uploads] == [
        ("READY", Path(model).name), ("READY", Path(dataset).name)
    ], out
    name = re.search(r"^evaluation (evaluations/\S+)", out, re.MULTILINE).group(1)
    updates = re.findall(r"^  ([A-Z]+)  (\d+)/(\d+)", out, re.MULTILINE)
    assert updates and updates[-1][0] == "SUCCEEDED", out
    assert updates[-1][1] == updates[-1][2] != "0", out  # all the work done
    assert re.search(r"^samples 32$", out, re.MULTILINE), out
    clean = float(re.search(rf"^clean accuracy {NUMBER}$", out, re.MULTILINE).group(1))
    adversarial = {
        attack: float(accuracy)
        for attack, accuracy in re.findall(rf"^(\w+) inf eps=0\.1  adversarial accuracy {NUMBER}", out, re.MULTILINE)
    }
    assert set(adversarial) == {"fgsm", "pgd"}, out
    score = float(re.search(rf"^robustness score {NUMBER}$", out, re.MULTILINE).group(1))
    assert 0.5 < clean <= 1 and 0 <= score <= 1

    # What the Python client reads for the same evaluation.
    gateway = Gateway.connect(mesh.gateway_address)
    try:
        evaluation = gateway.evaluations.GetEvaluation(evaluation_pb2.GetEvaluationRequest(name=name)).evaluation
        report = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=name)).report
    finally:
        gateway.close()
    assert evaluation.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED
    assert evaluation.model == uploads[0][0] and evaluation.evasion.dataset == uploads[1][0]
    assert evaluation.evasion.max_samples == 32
    # JavaScript and Python print a double the same way (shortest round trip).
    assert clean == report.evasion.clean_accuracy
    assert adversarial == {a.attack: a.adversarial_accuracy for a in report.evasion.attacks}
    assert score == report.evasion.robustness_score


def test_the_node_example_prints_why_an_upload_was_rejected(node, mesh, digits_files, tmp_path):
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(os.urandom(4096))
    done = run_example(node, mesh, corrupt, digits_files[1], timeout=60)
    assert done.returncode == 1, f"{done.stdout}\n{done.stderr}"
    assert re.search(r"^artifacts/\S+  REJECTED  corrupt\.keras", done.stdout, re.MULTILINE), done.stdout
    reason = re.search(r"^upload rejected: artifacts/\S+ \(corrupt\.keras\) was REJECTED: (.+)$", done.stderr,
                       re.MULTILINE)
    assert reason and reason.group(1) != "no reason given", done.stderr
    assert "evaluation" not in done.stdout  # it stopped at the rejection
