"""Several attack replicas behind one DNS name, as a headless Service gives
them in Kubernetes: the gateway's ADVEX_ATTACK_TARGET=dns:///NAME:PORT
spreads an evaluation's calls over all of them (gRPC round_robin)."""

from __future__ import annotations

from pathlib import Path

from advex.attack.config import AttackConfig
from advex.attack.server import AttackServicer
from advex.attack.server import create_server as create_attack
from advex.cli.client import upload
from advex.v1 import evasion_pb2, evaluation_pb2
from loopback_dns import LoopbackDns
from mesh_requests import evasion_request, run_to_end


def test_an_evaluation_runs_on_every_replica_behind_one_name(mesh_with, digits_files, tmp_path):
    mesh = mesh_with()
    replicas, servicers = [], []
    port = 0
    for ip in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        config = AttackConfig(cache_dir=str(tmp_path / ip))
        servicers.append(AttackServicer(config))
        running, port = create_attack(f"{ip}:{port}", config, servicers[-1])  # one port, three addresses
        replicas.append(running)
    dns = LoopbackDns({"attack.advex.test": ["127.0.0.1", "127.0.0.2", "127.0.0.3"]})
    mesh.stop_gateway()
    gateway = mesh.start_gateway(attack_target=dns.authority("attack.advex.test", port))
    try:
        model = upload(gateway, "model", Path(digits_files[0]))
        dataset = upload(gateway, "dataset", Path(digits_files[1]))
        attacks = [evasion_pb2.AttackSpec(attack="fgsm", eps=eps) for eps in (0.05, 0.1, 0.2, 0.3)]
        final = run_to_end(gateway, evasion_request(model.name, dataset.name, attacks, max_samples=32))
    finally:
        gateway.close()
        dns.close()
        for running in replicas:
            running.stop(grace=None)
    assert final.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, final.error
    ran = [servicer.progress.evasions_finished for servicer in servicers]
    assert sum(ran) == 4 and sum(1 for n in ran if n) >= 2, ran  # one RunEvasion per attack, spread out
