# AdvEx gateway: the public gRPC API (port 50051) and its Prometheus metrics (9451).
#
# Build from the repository root, the build context (.dockerignore there lets
# in only constraints.txt, protos/ and services/):
#   docker build -f deploy/docker/gateway.Dockerfile -t advex/gateway:0.1.0 .
# deploy/compose.yaml builds and wires up all four images with MinIO and
# PostgreSQL. On its own, the gateway needs its database and the other three
# services (the defaults, 127.0.0.1:5005x, only fit one machine):
#   docker run --read-only --tmpfs /tmp -p 127.0.0.1:50051:50051 \
#     -e ADVEX_DATABASE_URL=postgresql+psycopg://USER:PASSWORD@HOST:5432/advex \
#     -e ADVEX_STORAGE_TARGET=storage:50052 -e ADVEX_ATTACK_TARGET=attack:50053 \
#     -e ADVEX_SCORING_TARGET=scoring:50054 advex/gateway:0.1.0
# Without ADVEX_DATABASE_URL the evaluations go to SQLite under /tmp (the
# working directory, the only writable place), gone with the container.
#
# The base image is pinned to an exact tag, the same in all four Dockerfiles
# (tests/deploy/test_images.py checks that they agree). To bump it, take the
# newest python:3.11.<patch>-slim-bookworm, change PYTHON_IMAGE in all four
# Dockerfiles, rebuild and run the tests. To make the build immune to a tag
# being re-pushed, pin the digest as well:
#   docker buildx imagetools inspect python:3.11.15-slim-bookworm   # prints "Digest: sha256:..."
#   ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm@sha256:<that digest>
# (or pass --build-arg PYTHON_IMAGE=... without editing the file).
ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

# Builder: a virtual environment holding the service and its dependencies at
# the versions of constraints.txt. Every dependency comes as a manylinux
# wheel, so no compiler is needed, here or below.
FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
COPY constraints.txt ./
COPY protos ./protos
COPY services/core ./services/core
COPY services/gateway ./services/gateway
# Not editable: the venv gets copies of the packages, not links into /src,
# so /opt/venv alone is the whole application.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -c constraints.txt \
        ./protos ./services/core ./services/gateway

# Runtime: the same base, because the venv's python is a link to the base's
# /usr/local/bin/python3.11. Only the venv is copied over.
FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 advex \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin advex
COPY --from=builder /opt/venv /opt/venv
# The root filesystem may be read-only: pip compiled the bytecode at build
# time, and everything written at run time goes to /tmp (HOME too).
WORKDIR /tmp
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    ADVEX_GATEWAY_ADDR=0.0.0.0:50051 \
    ADVEX_GATEWAY_METRICS_ADDR=0.0.0.0:9451
EXPOSE 50051 9451
USER 10001:10001
# SERVING on grpc.health.v1 (exit 0), anything else (starting, draining,
# unreachable) exit 1. Kubernetes uses its own grpc probes instead.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "advex.core.health_probe", "127.0.0.1:50051"]
# SIGTERM (docker stop's default) drains: NOT_SERVING, in-flight calls finish.
ENTRYPOINT ["python", "-m", "advex.gateway"]
