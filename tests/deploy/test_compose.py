"""deploy/compose.yaml and its GPU override deploy/compose.gpu.yaml, checked
without Docker: both parse under compose-spec (Python bindings of the Rust
compose_spec crate, a validating parser of the Compose Specification: an
unknown key, a wrong type, a malformed port or duration is an error), and
what the deployment relies on holds: every AdvEx service hardened and
health-probed, started in order of health, only the gateway, MinIO and the
metrics published and only on loopback, the volumes in place, and every
ADVEX_* variable one the code reads."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from compose_spec import PyOptions, parse_duration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
GPU_OVERRIDE = ROOT / "deploy" / "compose.gpu.yaml"
# service -> (gRPC port, metrics port), as the images set them.
ADVEX = {"gateway": (50051, 9451), "storage": (50052, 9452), "attack": (50053, 9453), "scoring": (50054, 9454)}
# What may be reached from the host, always on 127.0.0.1: the gateway (the
# API), MinIO's S3 API (presigned uploads and downloads go straight there)
# and each service's Prometheus metrics.
PUBLISHED = {"gateway": {50051, 9451}, "storage": {9452}, "attack": {9453}, "scoring": {9454}, "minio": {9000}}


def parse(text: str) -> dict:
    """The file as compose-spec validates it, as a dict. YAML merge keys
    (`<<: *advex-service`) are applied, as Docker Compose does."""
    compose = PyOptions(apply_merge=True).from_yaml(text)
    compose.validate()
    return compose.to_dict()


def merged(base: dict, override: dict) -> dict:
    """`docker compose -f base -f override`, for what the override holds:
    mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture(scope="module")
def compose() -> dict:
    return parse(COMPOSE.read_text())


@pytest.fixture(scope="module")
def gpu(compose) -> dict:
    return merged(compose, parse(GPU_OVERRIDE.read_text()))


def code_reads() -> set[str]:
    """Every ADVEX_* variable the services read (their config.py and what
    they share in advex.core), the same collection as
    tests/packaging/test_deploy_doc.py. The variables this deployment
    introduced (ADVEX_<SERVICE>_METRICS_ADDR, ADVEX_S3_PUBLIC_ENDPOINT) are
    read by the code already, so nothing is let through on trust."""
    names = set()
    for path in (ROOT / "services").rglob("*.py"):
        names.update(re.findall(r"\"(ADVEX_[A-Z0-9_]+)\"", path.read_text()))
    return names


# --- validity -----------------------------------------------------------------


@pytest.mark.parametrize("path", [COMPOSE, GPU_OVERRIDE], ids=lambda p: p.name)
def test_file_is_valid_compose(path):
    parse(path.read_text())
    # The Compose Specification dropped `version:`; compose-spec still accepts it.
    assert not re.search(r"^version:", path.read_text(), re.M)


# Each turns the real file into a broken one; the parser must refuse them all,
# or the test above proves nothing.
BREAKAGES = {
    "unknown key": ("  read_only: true\n", "  read_only: true\n  readonly: true\n"),
    "wrong type": ("  read_only: true\n", "  read_only: sometimes\n"),
    "bad port": ('"127.0.0.1:50051:50051"', '"127.0.0.1:50051:grpc"'),
    "bad condition": ("condition: service_healthy", "condition: service_happy"),
    "bad duration": ("stop_grace_period: 30s", "stop_grace_period: thirty"),
    "misspelled healthcheck key": ("      retries: 3\n", "      retry: 3\n"),
    "unknown top-level key": ("\nvolumes:\n", "\nvolume:\n"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_validation_rejects_a_broken_file(breakage):
    old, new = BREAKAGES[breakage]
    text = COMPOSE.read_text()
    assert old in text, "the breakage no longer applies to compose.yaml: update it"
    with pytest.raises(ValueError):
        parse(text.replace(old, new, 1))


def test_references_resolve(compose, gpu):
    # compose-spec checks each service on its own; what they name must exist.
    for config in (compose, gpu):
        services, volumes = config["services"], set(config.get("volumes") or {})
        used = set()
        for name, service in services.items():
            for dependency in service.get("depends_on", {}):
                assert dependency in services, f"{name} depends on {dependency}, which is no service"
            for mount in service.get("volumes", []):
                source = mount.split(":")[0] if isinstance(mount, str) else mount.get("source")
                if source and not source.startswith((".", "/")):
                    assert source in volumes, f"{name} mounts {source}, which is not declared under volumes:"
                    used.add(source)
        assert used == volumes, f"declared but not mounted: {volumes - used}"


# --- the AdvEx services ---------------------------------------------------------


@pytest.mark.parametrize("name", list(ADVEX))
def test_advex_service_is_built_here_and_hardened(compose, name):
    service = compose["services"][name]
    assert service["build"]["context"] == ".."
    dockerfile = service["build"]["dockerfile"]
    assert dockerfile == f"deploy/docker/{name}.Dockerfile" and (ROOT / dockerfile).exists()
    assert re.fullmatch(rf"advex/{name}:\d+\.\d+\.\d+(-cpu)?", service["image"])
    assert service.get("read_only") is True, "read_only: true"
    assert "/tmp" in ([service["tmpfs"]] if isinstance(service["tmpfs"], str) else service["tmpfs"])
    assert service["user"] == "10001:10001"
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert not service.get("privileged")
    # SIGTERM drains: in-flight calls get 10 s; SIGKILL must not come sooner.
    assert parse_duration(service["stop_grace_period"]) >= 20


@pytest.mark.parametrize("name", list(ADVEX))
def test_advex_service_listens_and_is_health_probed(compose, name):
    grpc_port, metrics_port = ADVEX[name]
    service = compose["services"][name]
    env = service["environment"]
    assert env[f"ADVEX_{name.upper()}_ADDR"] == f"0.0.0.0:{grpc_port}"
    assert env[f"ADVEX_{name.upper()}_METRICS_ADDR"] == f"0.0.0.0:{metrics_port}"
    assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "advex.core.health_probe", f"127.0.0.1:{grpc_port}"]


def test_every_service_is_health_checked_and_waits_for_health(compose):
    services = compose["services"]
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert not service["healthcheck"].get("disable")
        for dependency, how in service.get("depends_on", {}).items():
            assert how["condition"] == "service_healthy", f"{name} -> {dependency}"
    def needs(name):
        return set(services[name].get("depends_on", {}))

    assert needs("gateway") >= {"postgres", "storage", "attack", "scoring"}
    assert needs("storage") >= {"postgres", "minio"}


def test_only_gateway_minio_and_metrics_are_published_on_loopback(compose):
    published = {}
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            # Only the short form HOST_IP:HOST_PORT:CONTAINER_PORT: a port
            # without a host address would listen on every interface.
            match = re.fullmatch(r"(?P<ip>[\d.]+):(?P<host>\d+):(?P<container>\d+)", str(port))
            assert match, f"{name}: {port!r} must read 127.0.0.1:PORT:PORT"
            assert match["ip"] == "127.0.0.1", f"{name}: {port} is published beyond this machine"
            assert match["host"] == match["container"]
            published.setdefault(name, set()).add(int(match["container"]))
        assert service.get("network_mode") != "host", f"{name} shares the host's network"
    assert published == PUBLISHED


def test_the_attack_cache_and_data_are_volumes(compose):
    services = compose["services"]

    def mounts(name):
        return dict(reversed(m.split(":")[:2]) for m in services[name].get("volumes", []))

    assert mounts("minio")["/data"] == "minio-data"
    assert "/data" in services["minio"]["command"]
    assert mounts("postgres")["/var/lib/postgresql/data"] == "postgres-data"
    cache = services["attack"]["environment"]["ADVEX_ATTACK_CACHE_DIR"]
    assert mounts("attack")[cache] == "attack-cache"


def test_every_advex_variable_is_one_the_code_reads():
    # Environment keys and ${...} substitutions alike, so a misspelled
    # variable (silently ignored by the services) fails here.
    # Comments count too: they tell users which variables to set.
    known = code_reads()
    for path in (COMPOSE, GPU_OVERRIDE):
        used = set(re.findall(r"\b(ADVEX_[A-Z0-9_]+)\b", path.read_text()))
        assert used <= known, f"{path.name} names variables no service reads: {sorted(used - known)}"
    assert len(set(re.findall(r"\b(ADVEX_[A-Z0-9_]+)\b", COMPOSE.read_text()))) > 10  # the regex finds them


# --- wiring ---------------------------------------------------------------------


def test_gateway_targets_name_the_services(compose):
    env = compose["services"]["gateway"]["environment"]
    for name in ("storage", "attack", "scoring"):
        assert env[f"ADVEX_{name.upper()}_TARGET"] == f"{name}:{ADVEX[name][0]}"


def test_object_store_endpoints(compose):
    services = compose["services"]
    published_minio = {f"{ip}:{port}" for ip, port in (p.split(":")[:2] for p in services["minio"]["ports"])}
    for name in ("storage", "gateway", "attack"):
        env = services[name]["environment"]
        assert env["ADVEX_S3_ENDPOINT"] == "http://minio:9000", name
        # Presigned URLs carry the public endpoint: the user's machine must
        # reach it, through MinIO's published port.
        public = urlsplit(env["ADVEX_S3_PUBLIC_ENDPOINT"])
        host = "127.0.0.1" if public.hostname == "localhost" else public.hostname
        assert f"{host}:{public.port}" in published_minio, name
    # Only storage holds S3 credentials, MinIO's root user's.
    minio = services["minio"]["environment"]
    storage = services["storage"]["environment"]
    assert storage["ADVEX_S3_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert storage["ADVEX_S3_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    for name in ("gateway", "attack", "scoring"):
        assert not any("ACCESS_KEY" in k for k in services[name]["environment"]), name


def test_databases_are_the_compose_postgres(compose):
    services = compose["services"]
    postgres = services["postgres"]["environment"]
    urls = {
        "gateway": services["gateway"]["environment"]["ADVEX_DATABASE_URL"],
        "storage": services["storage"]["environment"]["ADVEX_STORAGE_DATABASE_URL"],
    }
    for name, url in urls.items():
        match = re.fullmatch(r"postgresql\+psycopg://(\w+):(.+)@postgres:5432/(\w+)", url)
        assert match, f"{name}: {url}"
        assert match.groups() == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])


def test_gateway_and_storage_can_share_one_database(compose):
    # They do share it (one PostgreSQL database); that is safe only while no
    # table or index of one has the name of one of the other's.
    from advex.gateway import jobs
    from advex.storage import registry

    def names(metadata):
        # Indexes too: in PostgreSQL they share the schema's namespace with tables.
        indexes = {str(index.name) for table in metadata.tables.values() for index in table.indexes}
        assert None not in indexes and "None" not in indexes
        return set(metadata.tables) | indexes

    env = compose["services"]
    if env["gateway"]["environment"]["ADVEX_DATABASE_URL"] == env["storage"]["environment"]["ADVEX_STORAGE_DATABASE_URL"]:
        assert names(jobs.metadata) & names(registry.metadata) == set()
        assert "evaluations" in jobs.metadata.tables and "artifacts" in registry.metadata.tables


def test_third_party_images_are_pinned(compose):
    for name in ("minio", "postgres"):
        image = compose["services"][name]["image"]
        repository, _, tag = image.partition("@")[0].rpartition(":")
        assert repository and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"
    assert compose["services"]["postgres"]["image"].startswith("postgres:16.")


# --- the GPU override -----------------------------------------------------------


def test_gpu_override_changes_only_the_attack_image_and_devices(compose, gpu):
    override = parse(GPU_OVERRIDE.read_text())
    assert set(override["services"]) == {"attack"}
    attack = gpu["services"]["attack"]
    assert attack["image"].endswith("-cuda") and compose["services"]["attack"]["image"].endswith("-cpu")
    assert attack["build"]["args"]["VARIANT"] == "cuda"
    assert attack["build"]["dockerfile"] == "deploy/docker/attack.Dockerfile"  # kept from compose.yaml
    (device,) = attack["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    # Everything else (hardening, health, wiring) is the CPU service's.
    for key in ("read_only", "user", "cap_drop", "security_opt", "healthcheck", "environment", "volumes"):
        assert attack[key] == compose["services"]["attack"][key], key
