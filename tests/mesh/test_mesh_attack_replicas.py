"""Several attack processes behind one DNS name, as a headless Service gives
them in Kubernetes: the gateway's ADVEX_ATTACK_TARGET=dns:///NAME:PORT
spreads an evaluation's calls over all of them (gRPC round_robin), and each
replica's own Prometheus metrics show the share it attacked."""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from advex.cli.client import upload
from advex.v1 import evasion_pb2, evaluation_pb2
from logged_process import LoggedProcess
from loopback_dns import LoopbackDns
from mesh_requests import evasion_request, run_to_end

REPLICAS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def _port_free_on_every_replica() -> int:
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            for ip in REPLICAS[1:]:
                with socket.socket() as other:
                    other.bind((ip, port))
            return port
        except OSError:
            continue
    raise AssertionError("no port free on 127.0.0.1, .2 and .3 alike")


def _samples_attacked(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as response:  # noqa: S310
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "advex_attack_samples_total"
    )


def test_an_evaluation_runs_on_every_replica_behind_one_name(mesh_with, digits_files, tmp_path):
    mesh = mesh_with()
    port = _port_free_on_every_replica()
    replicas = []
    try:
        for index, ip in enumerate(REPLICAS):
            env = {k: v for k, v in os.environ.items() if not k.startswith("ADVEX_")}
            env.update(
                PYTHONUNBUFFERED="1", ADVEX_ATTACK_ADDR=f"{ip}:{port}", ADVEX_ATTACK_METRICS_ADDR="127.0.0.1:0",
                ADVEX_ATTACK_CACHE_DIR=str(tmp_path / f"cache-{index}"),
            )
            replicas.append(LoggedProcess([sys.executable, "-m", "advex.attack"], env, ready="serving on port"))
        metrics_ports = [int(r.ready_line().rsplit("127.0.0.1:", 1)[1].split("/")[0]) for r in replicas]
        dns = LoopbackDns({"attack.advex.test": list(REPLICAS)})
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
        assert final.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, final.error
        attacked = [_samples_attacked(p) for p in metrics_ports]
    finally:
        for replica in replicas:
            replica.kill()
    # 4 attacks x 32 samples, one RunEvasion per attack, over more than one replica.
    assert sum(attacked) == 4 * 32 and sum(1 for n in attacked if n) >= 2, attacked
