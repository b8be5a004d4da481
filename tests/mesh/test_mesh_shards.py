"""Evasion evaluations in shards (an attack on a range of samples, stored as
it finishes): the report is the same whatever the shard size, and a gateway
stopped mid-evaluation resumes from the shards it finished, redoing less
than a whole run, to the same report."""

from __future__ import annotations

from pathlib import Path

import pytest

from advex.attack.config import AttackConfig
from advex.attack.server import AttackServicer
from advex.attack.server import create_server as create_attack
from advex.cli.client import upload, watch
from advex.gateway import jobs
from advex.v1 import artifact_pb2, evasion_pb2, evaluation_pb2
from mesh_requests import run_to_end

ATTACKS = [
    evasion_pb2.AttackSpec(attack="pgd", eps=0.1, steps=30),  # a random start: per-sample seeds
    evasion_pb2.AttackSpec(attack="fgsm", eps=0.1, target="least_likely"),
]


def _request(model, dataset, attacks=ATTACKS, **fields):
    return evaluation_pb2.CreateEvaluationRequest(
        model=model, evasion=evasion_pb2.EvasionSpec(dataset=dataset, attacks=attacks, seed=11, **fields)
    )


# Slow enough (about 0.3 s a shard on 2 cores) to be stopped in the middle.
SLOW = [evasion_pb2.AttackSpec(attack="pgd", eps=0.1, steps=1000)]


def _comparable(report):
    """The report without what names this run (its name, stored files)."""
    report = type(report).FromString(report.SerializeToString())
    report.name = ""
    report.ClearField("html_page")
    report.evasion.ClearField("outcomes")
    for attack in report.evasion.attacks:
        attack.ClearField("adversarial_dataset")
    return report


@pytest.fixture(scope="module")
def sharded(mesh_with, digits_files, tmp_path_factory):
    """A mesh whose attack service the tests can watch, and the uploads."""
    mesh = mesh_with()
    # Batches of 32: shards are cut at multiples of the batch (ModelInfo.batch_size).
    config = AttackConfig(cache_dir=str(tmp_path_factory.mktemp("attack-cache")), batch_size=32)
    servicer = AttackServicer(config)
    attack, port = create_attack("127.0.0.1:0", config, servicer)
    mesh.stop_gateway()
    gateway = mesh.start_gateway(attack_target=f"127.0.0.1:{port}")
    model = upload(gateway, "model", Path(digits_files[0]))
    dataset = upload(gateway, "dataset", Path(digits_files[1]))
    gateway.close()
    yield mesh, servicer, port, model.name, dataset.name
    attack.stop(grace=None)


def _report(gateway, name):
    return gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=name)).report


def test_the_report_is_the_same_whatever_the_shard_size(sharded):
    mesh, _, port, model, dataset = sharded
    reports, kept = [], []
    for shard_samples in (4096, 100, 33):  # 1, 4 (of 128) and 6 (of 64) shards per attack of 359 samples
        mesh.stop_gateway()
        gateway = mesh.start_gateway(attack_target=f"127.0.0.1:{port}", shard_samples=shard_samples)
        final = run_to_end(gateway, _request(model, dataset, keep_adversarial=True))
        assert final.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, final.error
        report = _report(gateway, final.name)
        reports.append(report)
        kept.append([a.adversarial_dataset.sha256 for a in report.evasion.attacks])
        store = jobs.JobStore(mesh.gateway_config.database_url)
        assert store.shards(final.name.split("/")[1]) == []  # removed with their files once the report is made
        store.close()
        shard_files = gateway.artifacts.ListArtifacts(
            artifact_pb2.ListArtifactsRequest(kind=artifact_pb2.ARTIFACT_KIND_SHARD)).artifacts
        assert list(shard_files) == []
        gateway.close()
    assert _comparable(reports[1]) == _comparable(reports[0]) == _comparable(reports[2])
    assert reports[0].evasion.outcomes.sha256 == reports[1].evasion.outcomes.sha256 == reports[2].evasion.outcomes.sha256
    assert kept[0] == kept[1] == kept[2] and all(kept[0])  # the kept adversarial sets, byte for byte


def test_a_stopped_gateway_resumes_from_the_finished_shards(sharded):
    mesh, servicer, port, model, dataset = sharded
    mesh.stop_gateway()
    gateway = mesh.start_gateway(attack_target=f"127.0.0.1:{port}", shard_samples=32)  # 5 shards
    reference = run_to_end(gateway, _request(model, dataset, SLOW, max_samples=160))
    assert reference.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, reference.error
    before = servicer.progress.evasions_finished
    created = gateway.evaluations.CreateEvaluation(_request(model, dataset, SLOW, max_samples=160)).evaluation
    for snapshot in watch(gateway, created.name):
        # The stage names the shard running: from the third on, two are stored.
        if "samples 64-95" in snapshot.progress.stage:
            break
    gateway.close()  # ends the watch too
    mesh.stop_gateway(grace=30)  # a drain: the evaluation is handed back
    store = jobs.JobStore(mesh.gateway_config.database_url)
    done = [s for s in store.shards(created.name.split("/")[1]) if s.state == jobs.DONE]
    assert store.get(created.name.split("/")[1]).state == jobs.QUEUED
    assert 2 <= len(done) < 5, len(done)
    store.close()

    gateway = mesh.start_gateway(attack_target=f"127.0.0.1:{port}", shard_samples=40)
    resumed = list(watch(gateway, created.name))[-1]
    assert resumed.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, resumed.error
    calls = servicer.progress.evasions_finished - before
    # Every shard ran once, but for the one the stop interrupted: less than
    # the 5 + 5 a restart from scratch would take.
    assert calls <= 5 + 1, calls
    assert _comparable(_report(gateway, created.name)) == _comparable(_report(gateway, reference.name))
    gateway.close()
