"""`advex up`: the whole mesh on one machine, in the foreground.

Starts an embedded S3 endpoint (moto's server on loopback, only when
ADVEX_S3_ENDPOINT is unset), then storage, attack, scoring and the gateway,
each as its own process, waits until each reports SERVING on grpc.health.v1,
and on Ctrl-C or SIGTERM stops them gateway first, each draining gracefully.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from advex.cli.client import CliError
from advex.core.serving import StopSignals


# A presigned URL's credential and signature (query values of the request
# line an HTTP server logs).
_PRESIGNED_SECRETS = re.compile(r"(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"]+", re.IGNORECASE)


class _RedactPresigned(logging.Filter):
    """Takes the signature and credential out of a logged request line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _PRESIGNED_SECRETS.sub(r"\1<redacted>", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def quiet_s3_log() -> None:
    """The embedded S3 endpoint (werkzeug under moto) logs every request at
    INFO with its full presigned URL: warnings only, and never a signature
    or credential, even in those."""
    server_log = logging.getLogger("werkzeug")
    server_log.setLevel(logging.WARNING)
    if not any(isinstance(f, _RedactPresigned) for f in server_log.filters):
        server_log.addFilter(_RedactPresigned())


@dataclass
class Child:
    name: str
    address: str
    process: subprocess.Popen


def _wait_serving(child: Child, timeout: float, stop: StopSignals) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(child.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while stop.wait(0) is None:
            if child.process.poll() is not None:
                raise CliError(f"{child.name} exited with code {child.process.returncode} while starting; see its log above")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CliError(f"{child.name} did not report SERVING within {timeout:.0f} s at {child.address}")
            try:
                # wait_for_ready blocks until the port accepts connections.
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=min(remaining, 1), wait_for_ready=True)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise CliError(f"{child.name} health check failed: {exc.code().name} {exc.details()}") from None


def up(var_dir: Path = Path("var")) -> int:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Each service stops (drains) when this process dies, however it dies.
    env["ADVEX_PARENT_PID"] = str(os.getpid())
    var_dir.mkdir(parents=True, exist_ok=True)
    addresses = {
        "storage": env.setdefault("ADVEX_STORAGE_ADDR", "127.0.0.1:50052"),
        "attack": env.setdefault("ADVEX_ATTACK_ADDR", "127.0.0.1:50053"),
        "scoring": env.setdefault("ADVEX_SCORING_ADDR", "127.0.0.1:50054"),
        "gateway": env.setdefault("ADVEX_GATEWAY_ADDR", "127.0.0.1:50051"),
    }
    env.setdefault("ADVEX_STORAGE_TARGET", addresses["storage"])
    env.setdefault("ADVEX_ATTACK_TARGET", addresses["attack"])
    env.setdefault("ADVEX_SCORING_TARGET", addresses["scoring"])
    env.setdefault("ADVEX_DATABASE_URL", f"sqlite:///{var_dir / 'gateway.db'}")
    env.setdefault("ADVEX_ATTACK_CACHE_DIR", str(var_dir / "attack-cache"))

    s3_server = None
    if not env.get("ADVEX_S3_ENDPOINT"):
        from moto.server import ThreadedMotoServer

        quiet_s3_log()

        s3_server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(env.get("ADVEX_S3_PORT", "0")), verbose=False)
        s3_server.start()
        host, port = s3_server.get_host_and_port()
        env["ADVEX_S3_ENDPOINT"] = f"http://{host}:{port}"
        env.setdefault("ADVEX_S3_ACCESS_KEY_ID", "advex-local")
        env.setdefault("ADVEX_S3_SECRET_ACCESS_KEY", "advex-local")
        # The embedded endpoint keeps objects in memory only, so a registry
        # left from an earlier run would list READY artifacts whose bytes are
        # gone: start it afresh. Evaluations and reports (gateway.db) persist.
        storage_db = var_dir / "storage-embedded.db"
        storage_db.unlink(missing_ok=True)
        env.setdefault("ADVEX_STORAGE_DATABASE_URL", f"sqlite:///{storage_db}")
        print(f"advex: embedded S3 endpoint at {env['ADVEX_S3_ENDPOINT']} (in memory)", file=sys.stderr)
    env.setdefault("ADVEX_STORAGE_DATABASE_URL", f"sqlite:///{var_dir / 'storage.db'}")

    children: list[Child] = []
    stop = StopSignals()
    code = 0
    try:
        for name in ("storage", "scoring", "attack", "gateway"):
            if stop.wait(0) is not None:
                break
            # A session of its own: Ctrl-C in the terminal reaches only this
            # process, which then stops the services in order.
            process = subprocess.Popen([sys.executable, "-m", f"advex.{name}"], env=env, start_new_session=True)
            child = Child(name, addresses[name], process)
            children.append(child)
            _wait_serving(child, timeout=120, stop=stop)
            if stop.received is not None:
                break
            print(f"advex: {name:<8} SERVING at {child.address}", file=sys.stderr)
        if stop.received is not None:
            raise CliError("interrupted while starting; stopping what started")
        print(
            f"advex: mesh up; gateway at {addresses['gateway']}, attack service on Keras backend "
            f"{os.environ.get('KERAS_BACKEND') or 'tensorflow'}. Try `.venv/bin/advex demo` in another terminal. "
            "Ctrl-C stops.",
            file=sys.stderr,
        )
        while stop.wait(0.5) is None:
            dead = [c for c in children if c.process.poll() is not None]
            if dead:
                print(f"advex: {dead[0].name} exited with code {dead[0].process.returncode}; stopping", file=sys.stderr)
                code = 1
                break
    except CliError as exc:
        print(f"advex: {exc}", file=sys.stderr)
        code = 1
    finally:
        # Gateway first, so no new work reaches the services behind it.
        for child in reversed(children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
                try:
                    child.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.process.kill()
        if s3_server is not None:
            s3_server.stop()
        stop.close()
    return code
