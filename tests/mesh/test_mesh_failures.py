"""How the gateway behaves when parts of the mesh fail or are overloaded."""

from __future__ import annotations

import grpc
import pytest

from advex.cli.client import Gateway, watch
from advex.gateway import jobs
from advex.gateway.config import GatewayConfig
from advex.gateway.server import create_server as create_gateway
from advex.v1 import evasion_pb2, evaluation_pb2
from mesh_requests import evasion_request


def test_unreachable_attack_service_is_retried_then_failed_with_a_readable_error(
    mesh, uploaded_digits, tmp_path, caplog
):
    caplog.set_level("WARNING", logger="advex.gateway.runner")
    model, dataset = uploaded_digits
    database_url = f"sqlite:///{tmp_path / 'gateway.db'}"
    # Queued directly: CreateEvaluation itself would already refuse, since it
    # asks the (unreachable) attack service to check compatibility.
    store = jobs.JobStore(database_url)
    row = store.create(
        display_name="no attack service", kind=jobs.EVASION, model=model.name,
        spec=evasion_pb2.EvasionSpec(
            dataset=dataset.name, attacks=[evasion_pb2.AttackSpec(attack="fgsm", norm="inf", eps=0.1)], samples=10
        ),
        clip_min=0.0, clip_max=1.0, progress_total=10,
    )
    store.close()
    config = GatewayConfig(
        **{**mesh.gateway_config.__dict__, "database_url": database_url, "attack_target": "127.0.0.1:9",
           "instance_id": "gateway-without-attack", "max_attempts": 2,
           "retry_backoff_seconds": 0.1}
    )
    running, port = create_gateway("127.0.0.1:0", config)
    client = Gateway.connect(f"127.0.0.1:{port}")
    try:
        final = list(watch(client, f"evaluations/{row.id}"))[-1]
    finally:
        client.close()
        running.stop(1)
    assert final.state == evaluation_pb2.EVALUATION_STATE_FAILED
    assert "did not answer (UNAVAILABLE) in 2 attempt(s)" in final.error
    assert "127.0.0.1:9" not in final.error  # no internal addresses for users
    # Handed back with a backoff before the second run, not retried at once.
    assert "UNAVAILABLE at loading the model and dataset; queued again in 0.1 s (attempt 1 of 2)" in caplog.text
    reopened = jobs.JobStore(database_url)
    assert reopened.get(row.id).attempts == 2
    reopened.close()


def test_watch_streams_are_capped_so_other_calls_keep_working(mesh, uploaded_digits):
    model, dataset = uploaded_digits
    gateway = Gateway.connect(mesh.gateway_address)
    try:
        created = gateway.evaluations.CreateEvaluation(
            evasion_request(model.name, dataset.name, attacks=[evasion_pb2.AttackSpec(attack="pgd", eps=0.1, steps=10000)],
            )
        ).evaluation
        limited = mesh.gateway_config.__dict__ | {"max_watchers": 2, "instance_id": "few-watchers"}
        running, port = create_gateway("127.0.0.1:0", GatewayConfig(**limited))
        small = Gateway.connect(f"127.0.0.1:{port}")
        request = evaluation_pb2.WatchEvaluationRequest(name=created.name)
        open_streams = [small.evaluations.WatchEvaluation(request) for _ in range(2)]
        for stream in open_streams:
            next(stream)  # both are being served
        with pytest.raises(grpc.RpcError) as refused:
            next(small.evaluations.WatchEvaluation(request))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "poll GetEvaluation" in refused.value.details()
        # Unary calls still get a thread.
        got = small.evaluations.GetEvaluation(evaluation_pb2.GetEvaluationRequest(name=created.name), timeout=30)
        assert got.evaluation.name == created.name
        for stream in open_streams:
            stream.cancel()
        gateway.evaluations.CancelEvaluation(evaluation_pb2.CancelEvaluationRequest(name=created.name))
        assert list(watch(gateway, created.name))[-1].state == evaluation_pb2.EVALUATION_STATE_CANCELLED
        small.close()
        running.stop(1)
    finally:
        gateway.close()
