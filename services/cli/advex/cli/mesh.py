"""`advex up`: the whole mesh on one machine, in the foreground.

Starts an embedded S3 endpoint (moto's server on loopback, only when
ADVEX_S3_ENDPOINT is unset), then storage, attack, scoring and the gateway,
each as its own process, waits until each reports SERVING on grpc.health.v1,
starts again (after a backoff, with a log line) a service that exits while
the mesh is up, and on Ctrl-C or SIGTERM stops them gateway first, each
draining gracefully.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from advex.cli.client import CliError
from advex.cli.embedded_s3 import EmbeddedS3
from advex.core.serving import StopSignals


# A service that exits while the mesh is up is started again after
# RESTART_DELAYS[n] seconds (its n-th restart in a row; the last delay
# repeats); one that then serves for RESTART_RESET_SECONDS starts over at the
# first delay. MAX_RESTARTS restarts in a row without that stop the mesh: a
# crash loop is not worth hiding.
RESTART_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
RESTART_RESET_SECONDS = 60.0
MAX_RESTARTS = 10


@dataclass
class Child:
    name: str
    address: str
    process: subprocess.Popen
    # Restarts since it last served for RESTART_RESET_SECONDS.
    restarts: int = 0
    serving_since: float | None = None


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


def _start(name: str, env: dict[str, str]) -> subprocess.Popen:
    # A session of its own: Ctrl-C in the terminal reaches only this
    # process, which then stops the services in order.
    return subprocess.Popen([sys.executable, "-m", f"advex.{name}"], env=env, start_new_session=True)


def _restart(child: Child, env: dict[str, str], stop: StopSignals) -> None:
    """Starts `child` again after its backoff; CliError (the mesh stops)
    after MAX_RESTARTS in a row."""
    if child.serving_since is not None and time.monotonic() - child.serving_since >= RESTART_RESET_SECONDS:
        child.restarts = 0
    if child.restarts >= MAX_RESTARTS:
        raise CliError(
            f"{child.name} exited with code {child.process.returncode} after {MAX_RESTARTS} restarts in a row; "
            "stopping (see its log above)"
        )
    delay = RESTART_DELAYS[min(child.restarts, len(RESTART_DELAYS) - 1)]
    child.restarts += 1
    print(
        f"advex: {child.name} exited with code {child.process.returncode}; restarting it in {delay:g} s "
        f"(restart {child.restarts} in a row)",
        file=sys.stderr,
    )
    if stop.wait(delay) is not None:
        return  # Ctrl-C during the wait: everything stops
    child.process = _start(child.name, env)
    try:
        _wait_serving(child, timeout=120, stop=stop)
    except CliError as exc:
        # It died again while starting: the next look restarts it, later.
        print(f"advex: {exc}", file=sys.stderr)
        child.serving_since = None
        return
    if stop.received is None:
        child.serving_since = time.monotonic()
        print(f"advex: {child.name:<8} SERVING again at {child.address}", file=sys.stderr)


def _start_embedded_s3(var_dir: Path, env: dict[str, str]) -> EmbeddedS3:
    """The embedded endpoint, its objects under var/s3, and storage pointed
    at it with a registry of its own (var/storage-embedded.db): the two are
    kept together, since the registry lists what the objects hold."""
    objects_dir = var_dir / "s3"
    storage_db = var_dir / "storage-embedded.db"
    if storage_db.exists() and not objects_dir.exists():
        # Left by a version whose embedded endpoint kept objects in memory:
        # its READY artifacts have no bytes anywhere, so it cannot be kept.
        storage_db.unlink()
        print(f"advex: removed {storage_db}: its objects were never kept on disk", file=sys.stderr)
    server = EmbeddedS3(objects_dir, port=int(env.get("ADVEX_S3_PORT", "0")))
    env["ADVEX_S3_ENDPOINT"] = server.start()
    env.setdefault("ADVEX_S3_ACCESS_KEY_ID", "advex-local")
    env.setdefault("ADVEX_S3_SECRET_ACCESS_KEY", "advex-local")
    env.setdefault("ADVEX_STORAGE_DATABASE_URL", f"sqlite:///{storage_db}")
    print(f"advex: embedded S3 endpoint at {env['ADVEX_S3_ENDPOINT']} (objects kept in {objects_dir})", file=sys.stderr)
    return server


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
        s3_server = _start_embedded_s3(var_dir, env)
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
            child = Child(name, addresses[name], _start(name, env))
            children.append(child)
            _wait_serving(child, timeout=120, stop=stop)
            if stop.received is not None:
                break
            child.serving_since = time.monotonic()
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
            for child in children:
                if child.process.poll() is not None and stop.received is None:
                    _restart(child, env, stop)
    except CliError as exc:
        print(f"advex: {exc}", file=sys.stderr)
        code = 1
    finally:
        # The gateway first (it hands running evaluations back and stops
        # sending work), then the services behind it, all at once.
        gateway = [c for c in children if c.name == "gateway"]
        _stop_children(gateway)
        _stop_children([c for c in children if c.name != "gateway"])
        if s3_server is not None:
            s3_server.stop()
        stop.close()
        if children:
            print("advex: mesh stopped", file=sys.stderr)
    return code


def _stop_children(children: list[Child]) -> None:
    """SIGTERM (each drains), then waits up to 30 s for all; kills stragglers."""
    running = [c for c in children if c.process.poll() is None]
    for child in running:
        child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    for child in running:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
