"""`advex up` (what `make run` runs): the real processes, started, healthy,
used, and stopped by one Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from advex.cli.client import Gateway
from advex.v1 import artifact_pb2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_advex_up_serves_the_mesh_and_ctrl_c_stops_every_service(tmp_path):
    ports = {name: _free_port() for name in ("GATEWAY", "STORAGE", "ATTACK", "SCORING")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVEX_")}
    env.update({f"ADVEX_{name}_ADDR": f"127.0.0.1:{port}" for name, port in ports.items()})
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "advex.cli.main", "up"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    log = []
    try:
        for line in process.stderr:  # blocks until `up` reports the mesh ready (or exits)
            log.append(line)
            if "mesh up" in line:
                break
        assert "mesh up" in "".join(log), "".join(log)
        gateway = Gateway.connect(f"127.0.0.1:{ports['GATEWAY']}")
        listed = gateway.artifacts.ListArtifacts(artifact_pb2.ListArtifactsRequest())
        assert list(listed.artifacts) == []  # storage answers through the gateway
        gateway.close()
        for name, port in ports.items():
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
        assert (tmp_path / "var" / "gateway.db").exists()  # SQLite under var/ of the working directory

        process.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal does
        assert process.wait(timeout=60) == 0
        rest = process.stderr.read()
        assert rest.count("received SIGTERM") == 4, rest  # each service drained
        for name, port in ports.items():
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0, f"{name} still listens"
    finally:
        if process.poll() is None:
            process.kill()
