"""One scoring server on 127.0.0.1 port 0 per test module, and its stub."""

from __future__ import annotations

import grpc
import pytest

from advex.internal.v1 import scoring_service_pb2_grpc
from advex.scoring.config import ScoringConfig
from advex.scoring.server import create_server

# Small limits, so the tests can cross them.
TEST_CONFIG = ScoringConfig(max_samples=1000, max_attacks=4, max_models=4)


@pytest.fixture(scope="module")
def channel():
    running, port = create_server("127.0.0.1:0", TEST_CONFIG)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    running.stop(grace=None)


@pytest.fixture
def stub(channel):
    return scoring_service_pb2_grpc.ScoringServiceStub(channel)
