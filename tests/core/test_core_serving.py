"""The lifecycle every service shares: health that turns NOT_SERVING while
draining, SIGTERM handling in a real process, and error mapping."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from advex.core.errors import InvalidArgument, Unavailable
from advex.core.serving import Registration, StopSignals, start_server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _echo_registration(behaviour) -> Registration:
    """A one-method generic service, so the test needs no extra protos."""
    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Call": grpc.unary_unary_rpc_method_handler(behaviour)}
    )
    return Registration("test.Echo", lambda server: server.add_generic_rpc_handlers((handler,)))


def test_health_turns_not_serving_when_draining_starts():
    running = start_server("127.0.0.1:0", [_echo_registration(lambda request, context: request)])
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="test.Echo"))
        assert next(watch).status == SERVING
        stopper = threading.Thread(target=running.stop, kwargs={"grace": 5})
        stopper.start()
        # The watcher is told before the server goes away, so load balancers
        # and probes stop sending new work while in-flight calls finish.
        assert next(watch).status == NOT_SERVING
        stopper.join()
    finally:
        channel.close()


def test_open_health_watches_hold_no_worker_thread_so_other_calls_still_run():
    running = start_server("127.0.0.1:0", [_echo_registration(lambda request, context: request)], max_workers=2)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        health_stub = health_pb2_grpc.HealthStub(channel)
        watches = [health_stub.Watch(health_pb2.HealthCheckRequest(service="test.Echo"), timeout=60) for _ in range(6)]
        assert [next(w).status for w in watches] == [SERVING] * 6  # 6 watches, 2 threads
        assert channel.unary_unary("/test.Echo/Call")(b"still answered", timeout=30) == b"still answered"
        for watch in watches:
            watch.cancel()
    finally:
        channel.close()
        running.stop(0)


def test_a_second_server_on_a_taken_port_fails_to_start_instead_of_sharing_it():
    first = start_server("127.0.0.1:0", [_echo_registration(lambda request, context: request)])
    try:
        with pytest.raises(OSError, match=f"could not bind 127.0.0.1:{first.port}"):
            start_server(f"127.0.0.1:{first.port}", [_echo_registration(lambda request, context: request)])
    finally:
        first.stop(0)


def test_domain_errors_become_their_status_and_surprises_become_internal():
    def behaviour(request, context):
        if request == b"bad":
            raise InvalidArgument("eps must be >= 0, got -1")
        raise RuntimeError("secret internal detail")

    running = start_server("127.0.0.1:0", [_echo_registration(behaviour)])
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    call = channel.unary_unary("/test.Echo/Call")
    try:
        with pytest.raises(grpc.RpcError) as bad:
            call(b"bad")
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad.value.details() == "eps must be >= 0, got -1"
        with pytest.raises(grpc.RpcError) as surprise:
            call(b"boom")
        assert surprise.value.code() == grpc.StatusCode.INTERNAL
        assert "incident" in surprise.value.details() and "secret" not in surprise.value.details()
    finally:
        channel.close()
        running.stop(0)


def test_a_service_process_drains_and_exits_cleanly_on_sigterm():
    env = {**os.environ, "ADVEX_SCORING_ADDR": "127.0.0.1:0", "ADVEX_SCORING_METRICS_ADDR": "off",
           "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "advex.scoring"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        port = None
        for line in process.stderr:  # blocks until the service logs its port
            match = re.search(r"scoring serving on port (\d+)", line)
            if match:
                port = int(match.group(1))
                break
        assert port, "the service never said which port it bound"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == SERVING
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=60)  # reads the log while waiting, so no write blocks
        assert process.returncode == 0, rest
        assert "received SIGTERM" in rest and "stopped" in rest
    finally:
        if process.poll() is None:
            process.kill()


def test_stop_signals_hands_a_sigterm_to_the_waiting_main_thread_and_restores_what_was_there():
    before = signal.getsignal(signal.SIGTERM)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    earlier_fd = signal.set_wakeup_fd(write_fd)  # someone else's wakeup fd, to be given back
    try:
        stop = StopSignals()
        assert stop.wait(0) is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(timeout=10) == signal.SIGTERM
        assert stop.wait(0) == signal.SIGTERM  # remembered, not consumed
        stop.close()
        stop.close()  # twice is harmless
        assert signal.getsignal(signal.SIGTERM) is before
        assert signal.set_wakeup_fd(earlier_fd) == write_fd
    finally:
        signal.set_wakeup_fd(earlier_fd)
        os.close(read_fd)
        os.close(write_fd)


def test_stop_signals_refuses_a_thread_other_than_main():
    errors = []

    def create():
        try:
            StopSignals()
        except RuntimeError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=create)
    thread.start()
    thread.join()
    assert errors == ["StopSignals must be created on the main thread (signals are delivered there)"]


def test_stop_signals_ignores_signals_it_does_not_watch():
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, _frame: seen.append(signum))
    try:
        with StopSignals() as stop:
            os.kill(os.getpid(), signal.SIGUSR1)  # its number reaches the wakeup pipe too
            assert stop.wait(timeout=0.2) is None
            assert seen == [signal.SIGUSR1]  # the other handler still ran
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_service_that_cannot_start_says_why_in_one_line_and_exits_2():
    taken = start_server("127.0.0.1:0", [_echo_registration(lambda request, context: request)])
    try:
        for env, reason in (
            ({"ADVEX_SCORING_MAX_SAMPLES": "lots"}, "ADVEX_SCORING_MAX_SAMPLES must be a whole number"),
            ({"ADVEX_SCORING_ADDR": f"127.0.0.1:{taken.port}"}, f"could not bind 127.0.0.1:{taken.port}"),
            ({"ADVEX_SCORING_METRICS_ADDR": "9454"}, "ADVEX_SCORING_METRICS_ADDR must be HOST:PORT"),
            ({"ADVEX_SCORING_ADDR": "127.0.0.1:0", "ADVEX_SCORING_METRICS_ADDR": f"127.0.0.1:{taken.port}"},
             f"could not serve metrics at 127.0.0.1:{taken.port} (ADVEX_SCORING_METRICS_ADDR)"),
        ):
            done = subprocess.run(
                [sys.executable, "-m", "advex.scoring"], env={**os.environ, **env},
                capture_output=True, text=True, timeout=120,
            )
            assert done.returncode == 2, done.stderr
            assert f"scoring cannot start: {reason}" in done.stderr
            assert "Traceback" not in done.stderr
    finally:
        taken.stop(0)


def test_the_health_probe_exits_0_only_while_the_server_is_serving():
    """What compose's healthcheck runs: a real process against a real server."""
    running = start_server("127.0.0.1:0", [_echo_registration(lambda request, context: request)])
    address = f"127.0.0.1:{running.port}"

    def probe(*extra):
        return subprocess.run([sys.executable, "-m", "advex.core.health_probe", address, *extra],
                              capture_output=True, text=True, timeout=60, check=False)

    try:
        serving = probe()
        assert serving.returncode == 0 and "SERVING" in serving.stdout
        assert probe("no.such.Service").returncode == 1
        running.set_serving(False)  # as while draining
        draining = probe()
        assert draining.returncode == 1 and "NOT_SERVING" in draining.stderr
    finally:
        running.stop(grace=None)
    gone = probe("--timeout", "1")
    assert gone.returncode == 1 and "UNAVAILABLE" in gone.stderr


def test_a_name_with_several_addresses_gets_calls_spread_over_all_of_them():
    """What the gateway does with ADVEX_ATTACK_TARGET=dns:///attack.advex.svc:50053
    over a headless Service: round robin over every replica the name resolves to."""
    from advex.core.serving import open_channel
    from loopback_dns import LoopbackDns

    def answering_with(address):
        return _echo_registration(lambda request, context: address.encode())

    first = start_server("127.0.0.1:0", [answering_with("127.0.0.1")])
    port = first.port
    servers = [first] + [start_server(f"{ip}:{port}", [answering_with(ip)]) for ip in ("127.0.0.2", "127.0.0.3")]
    dns = LoopbackDns({"attack.advex.test": ["127.0.0.1", "127.0.0.2", "127.0.0.3"]})
    try:
        with open_channel(dns.authority("attack.advex.test", port)) as channel:
            call = channel.unary_unary("/test.Echo/Call")
            answers = [call(b"", timeout=10, wait_for_ready=True).decode() for _ in range(30)]
    finally:
        dns.close()
        for server in servers:
            server.stop(grace=None)
    assert ("attack.advex.test", 1) in dns.queries  # resolved through the name, not a fixed address
    counts = {ip: answers.count(ip) for ip in ("127.0.0.1", "127.0.0.2", "127.0.0.3")}
    assert all(count >= 5 for count in counts.values()), counts


def test_idempotent_calls_are_retried_on_unavailable_and_others_are_not():
    """The mesh's channels retry what may safely run twice (a replica
    restarting answers UNAVAILABLE); a call that changes state is not
    repeated behind the caller's back."""
    from advex.core.serving import open_channel

    attempts = {"GetArtifact": 0, "CreateUpload": 0}

    def flaky(method):
        def behaviour(request, context):
            attempts[method] += 1
            if attempts[method] < 3:
                raise Unavailable("restarting")
            return b"ok"
        return grpc.unary_unary_rpc_method_handler(behaviour)

    handler = grpc.method_handlers_generic_handler(
        "advex.v1.ArtifactService", {m: flaky(m) for m in attempts}
    )
    running = start_server(
        "127.0.0.1:0", [Registration("advex.v1.ArtifactService", lambda s: s.add_generic_rpc_handlers((handler,)))]
    )
    try:
        with open_channel(f"127.0.0.1:{running.port}") as channel:
            assert channel.unary_unary("/advex.v1.ArtifactService/GetArtifact")(b"", timeout=30) == b"ok"
            with pytest.raises(grpc.RpcError) as refused:
                channel.unary_unary("/advex.v1.ArtifactService/CreateUpload")(b"", timeout=30)
    finally:
        running.stop(grace=None)
    assert attempts["GetArtifact"] == 3  # two UNAVAILABLE, then the answer
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and attempts["CreateUpload"] == 1


def test_a_server_refuses_calls_beyond_its_bound_at_once_instead_of_queueing_them():
    from advex.core.serving import QUEUED_RPCS

    release = threading.Event()
    started = threading.Semaphore(0)

    def blocking(request, context):
        started.release()
        release.wait(60)
        return request

    running = start_server("127.0.0.1:0", [_echo_registration(blocking)], max_workers=1)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            call = channel.unary_unary("/test.Echo/Call")
            pending = [call.future(b"x", timeout=60) for _ in range(1 + QUEUED_RPCS)]  # 1 running, the rest waiting
            assert started.acquire(timeout=30)
            with pytest.raises(grpc.RpcError) as refused:
                call(b"one too many", timeout=30)
            release.set()
            assert [p.result() for p in pending] == [b"x"] * len(pending)
    finally:
        release.set()
        running.stop(grace=None)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_messages_over_the_mesh_limit_fail_where_they_are_made():
    from advex.core.serving import GRPC_MESSAGE_LIMIT_BYTES, open_channel

    running = start_server("127.0.0.1:0", [_echo_registration(lambda request, context: b"x" * int(request))])
    try:
        with open_channel(f"127.0.0.1:{running.port}") as channel:
            call = channel.unary_unary("/test.Echo/Call")
            assert len(call(str(GRPC_MESSAGE_LIMIT_BYTES - 1024).encode(), timeout=30)) == GRPC_MESSAGE_LIMIT_BYTES - 1024
            with pytest.raises(grpc.RpcError) as too_big:
                call(str(GRPC_MESSAGE_LIMIT_BYTES + 1).encode(), timeout=30)
    finally:
        running.stop(grace=None)
    assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
