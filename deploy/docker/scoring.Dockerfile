# AdvEx scoring: metrics, curves and the report page from streamed per-sample
# records (gRPC on port 50054, Prometheus metrics on 9454). Stateless.
#
# Build from the repository root, the build context (.dockerignore there lets
# in only constraints.txt, protos/ and services/):
#   docker build -f deploy/docker/scoring.Dockerfile -t advex/scoring:0.1.0 .
# deploy/compose.yaml builds and wires up all four images. On its own:
#   docker run --read-only --tmpfs /tmp advex/scoring:0.1.0
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
COPY services/scoring ./services/scoring
# Not editable: the venv gets copies of the packages, not links into /src,
# so /opt/venv alone is the whole application.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -c constraints.txt \
        ./protos ./services/core ./services/scoring

# Runtime: the same base, because the venv's python is a link to the base's
# /usr/local/bin/python3.11. Only the venv is copied over.
FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 advex \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin advex
COPY --from=builder /opt/venv /opt/venv
# The root filesystem may be read-only: pip compiled the bytecode at build
# time, and everything written at run time goes to /tmp (HOME, and
# matplotlib's font cache, named outright so that no HOME can misplace it).
WORKDIR /tmp
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    ADVEX_SCORING_ADDR=0.0.0.0:50054 \
    ADVEX_SCORING_METRICS_ADDR=0.0.0.0:9454 \
    MPLCONFIGDIR=/tmp/matplotlib
EXPOSE 50054 9454
USER 10001:10001
# SERVING on grpc.health.v1 (exit 0), anything else (starting, draining,
# unreachable) exit 1. Kubernetes uses its own grpc probes instead.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "advex.core.health_probe", "127.0.0.1:50054"]
# SIGTERM (docker stop's default) drains: NOT_SERVING, in-flight calls finish.
ENTRYPOINT ["python", "-m", "advex.scoring"]
