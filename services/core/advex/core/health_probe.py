"""`python -m advex.core.health_probe ADDRESS [SERVICE]`: exit 0 when the
server at ADDRESS reports SERVING on grpc.health.v1, 1 otherwise (not
serving, draining, unreachable within the timeout).

For container health checks where no native gRPC probe exists (Docker
Compose); Kubernetes uses its own `grpc:` probes on the same health service.
Every AdvEx image carries it, so no extra binary is needed.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def probe(address: str, service: str = "", timeout: float = 3.0) -> tuple[bool, str]:
    """(serving, what was seen) for one health check of `address`."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as error:
            return False, f"{error.code().name}: {error.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m advex.core.health_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("address", help="HOST:PORT of an AdvEx service, e.g. 127.0.0.1:50052")
    parser.add_argument("service", nargs="?", default="", help="a service name; the server as a whole when omitted")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer (default 3)")
    args = parser.parse_args(argv)
    serving, seen = probe(args.address, args.service, args.timeout)
    print(f"{args.address}: {seen}", file=sys.stdout if serving else sys.stderr)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
