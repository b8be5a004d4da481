# AdvEx attack service: safe model loading, evasion attacks and poisoning on
# TensorFlow (gRPC on port 50053, Prometheus metrics on 9453). The only image
# with a deep-learning framework, in two variants chosen by VARIANT:
#   cpu   tensorflow-cpu (the default; an image of about 1.7 GiB)
#   cuda  tensorflow[and-cuda]: the CUDA and cuDNN libraries come as pip
#         wheels (about 6.4 GiB), so the base stays python slim and the host
#         needs only the NVIDIA driver and the NVIDIA Container Toolkit.
#
# Build from the repository root, the build context (.dockerignore there lets
# in only constraints.txt, protos/ and services/):
#   docker build -f deploy/docker/attack.Dockerfile -t advex/attack:0.1.0-cpu .
#   docker build -f deploy/docker/attack.Dockerfile --build-arg VARIANT=cuda -t advex/attack:0.1.0-cuda .
# deploy/compose.yaml builds and wires up all four images (the cuda variant
# with deploy/compose.gpu.yaml added). On its own:
#   docker run --read-only --tmpfs /tmp -v advex-attack-cache:/var/cache/advex \
#     [--gpus all] advex/attack:0.1.0-cpu
# It downloads models and datasets through presigned URLs into
# /var/cache/advex (ADVEX_ATTACK_CACHE_DIR), a volume; a lost cache only
# costs a download.
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
COPY services/attack ./services/attack
# cpu installs the attack package's [cpu] extra (tensorflow-cpu), cuda its
# [gpu] extra (tensorflow[and-cuda]). constraints.txt pins tensorflow-cpu
# only, so both name the TensorFlow version it pins: the CUDA build is the
# same TensorFlow as the one the tests ran.
ARG VARIANT=cpu
# Not editable: the venv gets copies of the packages, not links into /src,
# so /opt/venv alone is the whole application.
RUN tf_version="$(sed -n 's/^tensorflow[_-]cpu==//p' constraints.txt)" \
    && if [ -z "$tf_version" ]; then echo "constraints.txt pins no tensorflow-cpu version" >&2; exit 1; fi \
    && case "$VARIANT" in \
        cpu) extra=cpu tensorflow="tensorflow-cpu==$tf_version" ;; \
        cuda) extra=gpu tensorflow="tensorflow[and-cuda]==$tf_version" ;; \
        *) echo "VARIANT must be cpu or cuda, not '$VARIANT'" >&2; exit 1 ;; \
    esac \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -c constraints.txt \
        ./protos ./services/core "./services/attack[$extra]" "$tensorflow"

# Runtime: the same base, because the venv's python is a link to the base's
# /usr/local/bin/python3.11. Only the venv is copied over.
FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 advex \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin advex
COPY --from=builder /opt/venv /opt/venv
# The download cache, owned by the service's user: a named volume mounted
# here starts as a copy of this folder, ownership included, so the service
# can write to it on a read-only root filesystem. VOLUME gives a plain
# `docker run` an anonymous volume there too.
RUN mkdir -p /var/cache/advex && chown 10001:10001 /var/cache/advex
VOLUME ["/var/cache/advex"]
# The root filesystem may be read-only: pip compiled the bytecode at build
# time, and everything written at run time goes to /tmp (HOME, Keras'
# config) or to the cache volume.
WORKDIR /tmp
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    ADVEX_ATTACK_ADDR=0.0.0.0:50053 \
    ADVEX_ATTACK_METRICS_ADDR=0.0.0.0:9453 \
    ADVEX_ATTACK_CACHE_DIR=/var/cache/advex \
    KERAS_HOME=/tmp/keras
EXPOSE 50053 9453
USER 10001:10001
# SERVING on grpc.health.v1 (exit 0), anything else (starting, draining,
# unreachable) exit 1. Kubernetes uses its own grpc probes instead. The
# long start period covers importing TensorFlow and finding the GPU.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-m", "advex.core.health_probe", "127.0.0.1:50053"]
# SIGTERM (docker stop's default) drains: NOT_SERVING, running attack streams
# get 10 s, then the gateway reruns their shards elsewhere.
ENTRYPOINT ["python", "-m", "advex.attack"]
