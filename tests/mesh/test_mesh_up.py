"""`advex up` (what `make run` runs): the real processes, started, healthy,
used, and stopped by one Ctrl-C; and not left behind if `up` itself is killed."""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from advex.cli.client import Gateway
from advex.v1 import artifact_pb2, evasion_pb2
from logged_process import LoggedProcess

SERVICES = ("GATEWAY", "STORAGE", "ATTACK", "SCORING")


def _free_ports(count: int) -> list[int]:
    """`count` distinct free ports: all held open while they are picked, so
    the kernel cannot hand the same one out twice."""
    held = [socket.socket() for _ in range(count)]
    try:
        for s in held:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


class _Up(LoggedProcess):
    """`advex up` on free ports, ready when it says "mesh up"."""

    def __init__(self, cwd: Path):
        ports = _free_ports(2 * len(SERVICES))
        self.ports = dict(zip(SERVICES, ports))
        self.metrics_ports = dict(zip(SERVICES, ports[len(SERVICES):]))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ADVEX_")}
        env.update({f"ADVEX_{name}_ADDR": f"127.0.0.1:{port}" for name, port in self.ports.items()})
        env.update({f"ADVEX_{name}_METRICS_ADDR": f"127.0.0.1:{port}" for name, port in self.metrics_ports.items()})
        env["PYTHONUNBUFFERED"] = "1"
        super().__init__([sys.executable, "-m", "advex.cli.main", "up"], env, ready="mesh up", cwd=cwd)

    def wait_until_up(self) -> None:
        self.ready_line()


def test_advex_up_serves_the_mesh_and_ctrl_c_stops_every_service(tmp_path):
    up = _Up(tmp_path)
    try:
        up.wait_until_up()
        gateway = Gateway.connect(f"127.0.0.1:{up.ports['GATEWAY']}", timeout=30)
        listed = gateway.artifacts.ListArtifacts(artifact_pb2.ListArtifactsRequest(), timeout=30)
        assert list(listed.artifacts) == []  # storage answers through the gateway
        gateway.close()
        for name, port in up.ports.items():
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
        assert (tmp_path / "var" / "gateway.db").exists()  # SQLite under var/ of the working directory

        up.process.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal does
        # Four drains one after the other, each bounded by up's own 30 s.
        assert up.wait_for_exit(timeout=150) == 0, up.log
        assert up.log.count("received SIGTERM") == 4, up.log  # each service drained
        assert up.lines[-1].strip() == "advex: mesh stopped", up.log
        for name, port in up.ports.items():
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0, f"{name} still listens"
    finally:
        up.kill()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    if not path.exists():
        raise AssertionError(f"{path} is missing (kernel without CONFIG_PROC_CHILDREN): this test cannot run here")
    return [int(p) for p in path.read_text().split()]


def test_services_do_not_outlive_advex_up_killed_with_sigkill(tmp_path):
    if not sys.platform.startswith("linux"):
        raise AssertionError("this test needs Linux (/proc, pidfd); it must not be skipped silently")
    up = _Up(tmp_path)
    try:
        up.wait_until_up()
        children = _children(up.process.pid)
        assert len(children) == 4, children
        # pidfds tell when a process that is not our child exits, without polling.
        pidfds = [os.pidfd_open(pid) for pid in children]
        up.process.kill()  # no chance to stop its services itself
        up.process.wait()
        pending = list(pidfds)
        try:
            while pending:
                ready, _, _ = select.select(pending, [], [], 120)
                assert ready, f"services still running 120 s after `up` was killed: {up.log}"
                pending = [fd for fd in pending if fd not in ready]
        finally:
            for fd in pending:  # a failed test must not leave them running either
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            for fd in pidfds:
                os.close(fd)
        up._reader.join(timeout=30)
        assert up.log.count("received SIGTERM") == 4, up.log  # each drained, none was killed
    finally:
        up.kill()


def test_a_service_that_dies_is_started_again_and_ctrl_c_still_stops_everything(tmp_path):
    up = _Up(tmp_path)
    try:
        up.wait_until_up()
        children = {name: pid for pid in _children(up.process.pid) for name in SERVICES
                    if f"advex.{name.lower()}" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")}
        assert len(children) == 4, children
        seen = len(up.lines)
        os.kill(children["SCORING"], signal.SIGKILL)  # dies unexpectedly
        assert "restarting it in 1 s (restart 1 in a row)" in up.wait_for("scoring exited with code -9", after=seen)
        up.wait_for("scoring  SERVING again", timeout=120, after=seen)
        with grpc.insecure_channel(f"127.0.0.1:{up.ports['SCORING']}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert up.process.poll() is None  # the mesh stayed up

        up.process.send_signal(signal.SIGINT)
        assert up.wait_for_exit(timeout=150) == 0, up.log
        for name, port in up.ports.items():
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0, f"{name} still listens"
    finally:
        up.kill()


def _evaluation_state(var_dir: Path, name: str) -> str:
    """The evaluation's state as the stopped gateway left it in its database."""
    import sqlite3

    with sqlite3.connect(var_dir / "gateway.db") as db:
        (state,) = db.execute("SELECT state FROM evaluations WHERE id = ?", (name.split("/", 1)[1],)).fetchone()
    return state


def test_uploads_reports_and_an_interrupted_evaluation_survive_a_restart(tmp_path, digits_files):
    from advex.cli.client import upload, watch
    from advex.v1 import evaluation_pb2
    from mesh_requests import download, evasion_request, run_to_end

    model_path, data_path = digits_files
    up = _Up(tmp_path)
    try:
        up.wait_until_up()
        gateway = Gateway.connect(f"127.0.0.1:{up.ports['GATEWAY']}", timeout=30)
        model = upload(gateway, "model", Path(model_path))
        dataset = upload(gateway, "dataset", Path(data_path))
        quick = evasion_request(model.name, dataset.name, [evasion_pb2.AttackSpec(attack="fgsm", eps=0.1)], max_samples=64)
        finished = run_to_end(gateway, quick)
        assert finished.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, finished
        before = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=finished.name)).report
        page_before = download(gateway, before.html_page.name, tmp_path / "page-before.html").read_bytes()
        # Long enough (a few seconds on 2 cores) to be running when the mesh stops.
        slow = evasion_request(
            model.name, dataset.name,
            [evasion_pb2.AttackSpec(attack="pgd", eps=0.1, steps=200, restarts=8)],
        )
        interrupted = gateway.evaluations.CreateEvaluation(slow).evaluation
        for snapshot in watch(gateway, interrupted.name):
            if snapshot.state == evaluation_pb2.EVALUATION_STATE_RUNNING:
                break
        gateway.close()
        up.process.send_signal(signal.SIGINT)
        assert up.wait_for_exit(timeout=150) == 0, up.log
    finally:
        up.kill()
    assert f"evaluation {interrupted.name.split('/', 1)[1]} handed back for resumption" in up.log, up.log
    assert _evaluation_state(tmp_path / "var", interrupted.name) == "QUEUED"
    assert any((tmp_path / "var" / "s3").rglob("models%2F*")), "no object kept on disk"

    again = _Up(tmp_path)  # the same var/: the same state
    try:
        again.wait_until_up()
        assert "storage-embedded.db" not in again.log  # the registry was kept, not removed
        gateway = Gateway.connect(f"127.0.0.1:{again.ports['GATEWAY']}", timeout=30)
        listed = gateway.artifacts.ListArtifacts(artifact_pb2.ListArtifactsRequest(), timeout=30).artifacts
        names = {a.name: a for a in listed}
        assert {model.name, dataset.name, before.html_page.name} <= set(names), names
        assert names[model.name].state == artifact_pb2.ARTIFACT_STATE_READY
        # The bytes, not only the records: the same page as before the restart.
        assert download(gateway, before.html_page.name, tmp_path / "page-after.html").read_bytes() == page_before
        after = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=finished.name)).report
        assert after == before
        # The next gateway runs the handed-back evaluation, on the kept uploads.
        resumed = list(watch(gateway, interrupted.name))[-1]
        assert resumed.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, resumed
        report = gateway.evaluations.GetReport(evaluation_pb2.GetReportRequest(name=interrupted.name)).report
        assert report.evasion.samples == 359 and len(report.evasion.attacks) == 1
        # A new evaluation of the kept uploads works too.
        assert run_to_end(gateway, quick).state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED
        gateway.close()
        again.process.send_signal(signal.SIGINT)
        assert again.wait_for_exit(timeout=150) == 0, again.log
    finally:
        again.kill()


def _scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """{(metric, labels): value} from a service's /metrics over HTTP."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(scraped, name: str, **labels) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def test_every_service_serves_prometheus_metrics_that_move_with_the_work(tmp_path, digits_files):
    from advex.cli.client import upload
    from advex.v1 import evaluation_pb2
    from mesh_requests import evasion_request, run_to_end

    model_path, data_path = digits_files
    up = _Up(tmp_path)
    try:
        up.wait_until_up()
        before = {name: _scrape(port) for name, port in up.metrics_ports.items()}
        gateway = Gateway.connect(f"127.0.0.1:{up.ports['GATEWAY']}", timeout=30)
        model = upload(gateway, "model", Path(model_path))
        dataset = upload(gateway, "dataset", Path(data_path))
        junk = tmp_path / "junk.keras"
        junk.write_bytes(b"not a keras file")
        with pytest.raises(grpc.RpcError) as refused:
            upload(gateway, "model", junk)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        request = evasion_request(model.name, dataset.name, [evasion_pb2.AttackSpec(attack="fgsm", eps=0.1)],
                                  max_samples=48)
        assert run_to_end(gateway, request).state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED
        gateway.close()
        after = {name: _scrape(port) for name, port in up.metrics_ports.items()}
    finally:
        up.process.send_signal(signal.SIGINT)
        up.wait_for_exit(timeout=150)
        up.kill()

    def moved(service, name, **labels):
        return _value(after[service], name, **labels) - _value(before[service], name, **labels)

    # RPCs by method and code, on every service, with their latencies.
    rpc = dict(grpc_service="advex.v1.EvaluationService", grpc_method="CreateEvaluation", grpc_type="unary")
    assert moved("GATEWAY", "grpc_server_handled_total", **rpc, grpc_code="OK") == 1
    assert moved("GATEWAY", "grpc_server_handling_seconds_count", **rpc) == 1
    assert moved("GATEWAY", "grpc_server_handled_total", grpc_service="advex.v1.ArtifactService",
                 grpc_method="CompleteUpload", grpc_type="unary", grpc_code="INVALID_ARGUMENT") == 1
    assert moved("SCORING", "grpc_server_handled_total", grpc_service="advex.internal.v1.ScoringService",
                 grpc_method="ScoreEvasion", grpc_type="client_stream", grpc_code="OK") == 1
    # The gateway's evaluations by state, from its database.
    assert _value(after["GATEWAY"], "advex_evaluations", state="SUCCEEDED") == 1
    assert _value(after["GATEWAY"], "advex_evaluation_queue_depth") == 0
    assert moved("GATEWAY", "advex_evaluations_finished_total", kind="evasion", state="SUCCEEDED") == 1
    # Storage's uploads, verified and rejected by reason.
    assert moved("STORAGE", "advex_uploads_verified_total", kind="model") == 1
    assert moved("STORAGE", "advex_uploads_verified_total", kind="dataset") == 1
    assert moved("STORAGE", "advex_uploads_rejected_total", kind="model", reason="bad_format") == 1
    # The attack service's samples attacked (a rate in Prometheus).
    assert moved("ATTACK", "advex_attack_samples_total", attack="fgsm", norm="inf") == 48
