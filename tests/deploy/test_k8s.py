"""deploy/k8s: every overlay renders with `kubectl kustomize`, validates
against the Kubernetes 1.32 schemas (strict: an unknown field fails), offline,
and the rendered objects say what the deployment promises (gRPC probes,
locked-down pods, headless attack Service, GPU only in the gpu overlay,
NetworkPolicies, Secrets feeding the right variables).

No cluster and no network: kubectl only renders, kubernetes-validate carries
its schemas. Both must be installed; a missing one fails these tests, it
never skips them.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32.0"
OVERLAYS = ("cpu", "gpu")
NAMESPACE = "advex"

# What each overlay renders, (kind, name); generated ConfigMaps and Secrets
# are listed without their content-hash suffix. Both overlays render the same
# objects; they differ in the attack Deployment and its HPA.
EXPECTED_OBJECTS = sorted(
    [
        ("Namespace", "advex"),
        ("ServiceAccount", "gateway"),
        ("ServiceAccount", "storage"),
        ("ServiceAccount", "attack"),
        ("ServiceAccount", "scoring"),
        ("ConfigMap", "gateway-config"),
        ("ConfigMap", "storage-config"),
        ("ConfigMap", "attack-config"),
        ("ConfigMap", "scoring-config"),
        ("ConfigMap", "s3-config"),
        ("Secret", "advex-s3"),
        ("Secret", "advex-database"),
        ("Deployment", "gateway"),
        ("Deployment", "storage"),
        ("Deployment", "attack"),
        ("Deployment", "scoring"),
        ("Service", "gateway"),
        ("Service", "storage"),
        ("Service", "attack"),
        ("Service", "scoring"),
        ("PodDisruptionBudget", "gateway"),
        ("PodDisruptionBudget", "storage"),
        ("PodDisruptionBudget", "attack"),
        ("PodDisruptionBudget", "scoring"),
        ("HorizontalPodAutoscaler", "attack"),
        ("NetworkPolicy", "default-deny-ingress"),
        ("NetworkPolicy", "gateway"),
        ("NetworkPolicy", "storage"),
        ("NetworkPolicy", "attack"),
        ("NetworkPolicy", "scoring"),
    ]
)

SERVICES = ("gateway", "storage", "attack", "scoring")
GRPC_PORTS = {"gateway": 50051, "storage": 50052, "attack": 50053, "scoring": 50054}
METRICS_PORTS = {"gateway": 9451, "storage": 9452, "attack": 9453, "scoring": 9454}
IMAGES = {
    "cpu": {
        "gateway": "advex/gateway:0.1.0",
        "storage": "advex/storage:0.1.0",
        "attack": "advex/attack:0.1.0-cpu",
        "scoring": "advex/scoring:0.1.0",
    },
    "gpu": {
        "gateway": "advex/gateway:0.1.0",
        "storage": "advex/storage:0.1.0",
        "attack": "advex/attack:0.1.0-cuda",
        "scoring": "advex/scoring:0.1.0",
    },
}
# Secret -> {key: the one service whose variable of that name it feeds}.
SECRET_KEYS = {
    "advex-s3": {"ADVEX_S3_ACCESS_KEY_ID": "storage", "ADVEX_S3_SECRET_ACCESS_KEY": "storage"},
    "advex-database": {"ADVEX_DATABASE_URL": "gateway", "ADVEX_STORAGE_DATABASE_URL": "storage"},
}
SECRET_ENV_FILES = {"advex-s3": "s3.env", "advex-database": "database.env"}
MONITORING_NAMESPACES = {"matchLabels": {"advex.io/monitoring": "true"}}
HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")


# -- tools -------------------------------------------------------------------


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail(
            "kubectl is not on PATH: these tests render deploy/k8s with `kubectl kustomize`. Install kubectl "
            "1.27 or newer (it bundles kustomize; https://kubernetes.io/docs/tasks/tools/), no cluster needed."
        )
    return path


def kubernetes_validate():
    try:
        import kubernetes_validate as module
    except ImportError:
        pytest.fail(
            "kubernetes-validate is not installed: `.venv/bin/pip install -r requirements-dev.txt -c constraints.txt` "
            "(PyPI kubernetes-validate; it carries the Kubernetes schemas, no network needed)."
        )
    return module


def schema_errors(document: dict) -> list[str]:
    """What the Kubernetes KUBERNETES_VERSION schema (strict: no unknown
    fields) has against one object; [] when it is valid."""
    kv = kubernetes_validate()
    where = f"{document.get('kind')}/{(document.get('metadata') or {}).get('name')}"
    try:
        kv.validate(document, KUBERNETES_VERSION, strict=True)
    except kv.ValidationError as exc:
        path = ".".join(str(part) for part in exc.path)
        return [f"{where}: {path}: {exc.message}"]
    except kv.SchemaNotFoundError as exc:
        return [f"{where}: {exc}"]
    return []


def kustomize(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )


def render(directory: Path) -> list[dict]:
    result = kustomize(directory)
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {directory} failed (exit {result.returncode}):\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def copy_tree(destination: Path, with_secrets: bool) -> Path:
    """deploy/k8s copied without any real *.env a developer made, and with
    the committed examples in their place when `with_secrets`."""
    tree = destination / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("*.env"))
    if with_secrets:
        for example in (tree / "base" / "secrets").glob("*.env.example"):
            shutil.copyfile(example, example.with_suffix(""))
    return tree


# -- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return copy_tree(tmp_path_factory.mktemp("deploy"), with_secrets=True)


@pytest.fixture(scope="module")
def rendered(tree) -> dict[str, list[dict]]:
    return {name: render(tree / "overlays" / name) for name in OVERLAYS}


def objects(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def generated(docs: list[dict], kind: str) -> dict[str, dict]:
    """ConfigMaps or Secrets by their name without the hash suffix."""
    return {HASH_SUFFIX.sub("", name): doc for name, doc in objects(docs, kind).items()}


def container(docs: list[dict], service: str) -> dict:
    (only,) = objects(docs, "Deployment")[service]["spec"]["template"]["spec"]["containers"]
    return only


def pod_spec(docs: list[dict], service: str) -> dict:
    return objects(docs, "Deployment")[service]["spec"]["template"]["spec"]


def named_port(c: dict, name: str) -> int:
    ports = {port["name"]: port["containerPort"] for port in c.get("ports", [])}
    assert name in ports, f"container {c['name']} has no port named {name!r}: {ports}"
    return ports[name]


def environment(docs: list[dict], c: dict) -> dict[str, object]:
    """The container's variables: a ConfigMap value as a string, a
    reference as ("secret", name-without-hash, key) or ("field", path)."""
    config_maps = objects(docs, "ConfigMap")
    env: dict[str, object] = {}
    for source in c.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in config_maps, f"{c['name']} takes envFrom ConfigMap {name}, which is not rendered"
        env.update(config_maps[name]["data"])
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = ("secret", HASH_SUFFIX.sub("", ref["name"]), ref["key"])
        elif "fieldRef" in var["valueFrom"]:
            env[var["name"]] = ("field", var["valueFrom"]["fieldRef"]["fieldPath"])
        else:
            env[var["name"]] = ("other", var["valueFrom"])
    return env


def quantity(value) -> float:
    """A Kubernetes quantity (cpu "250m", memory "8Gi") as a number."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


# -- rendering and schema validation ------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_expected_objects(rendered, overlay):
    docs = rendered[overlay]
    found = sorted((doc["kind"], HASH_SUFFIX.sub("", doc["metadata"]["name"])) for doc in docs)
    assert found == EXPECTED_OBJECTS
    for doc in docs:
        if doc["kind"] in ("ConfigMap", "Secret"):
            # Content-hashed names: a changed setting or credential rolls the pods.
            assert HASH_SUFFIX.search(doc["metadata"]["name"]), doc["metadata"]["name"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']}/{doc['metadata']['name']}"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "advex"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_the_kubernetes_schemas(rendered, overlay):
    errors = [error for doc in rendered[overlay] for error in schema_errors(doc)]
    assert errors == [], "\n".join(errors)


def test_base_renders_and_validates(tree):
    docs = render(tree / "base")
    assert len(docs) == len(EXPECTED_OBJECTS)
    errors = [error for doc in docs for error in schema_errors(doc)]
    assert errors == [], "\n".join(errors)


def test_the_validation_rejects_broken_objects(rendered):
    """schema_errors, the helper the tests above rely on, does fail: on a
    misspelled field, a wrong type, a field in the wrong place, an unknown kind."""
    gateway = objects(rendered["cpu"], "Deployment")["gateway"]
    assert schema_errors(gateway) == []

    misspelled = copy.deepcopy(gateway)
    c = misspelled["spec"]["template"]["spec"]["containers"][0]
    c["readinesProbe"] = c.pop("readinessProbe")
    (error,) = schema_errors(misspelled)
    assert "readinesProbe" in error and "spec.template.spec.containers.0" in error

    wrong_type = copy.deepcopy(gateway)
    wrong_type["spec"]["replicas"] = "two"
    (error,) = schema_errors(wrong_type)
    assert "spec.replicas" in error

    misplaced = copy.deepcopy(gateway)
    misplaced["spec"]["template"]["spec"]["readOnlyRootFilesystem"] = True  # a container field, not a pod's
    (error,) = schema_errors(misplaced)
    assert "readOnlyRootFilesystem" in error

    probe_port = copy.deepcopy(gateway)
    probe_port["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["port"] = "grpc"
    (error,) = schema_errors(probe_port)  # grpc probes take a number, not a port name
    assert "livenessProbe.grpc.port" in error

    unknown_kind = {"apiVersion": "apps/v1", "kind": "Deploymnet", "metadata": {"name": "x"}}
    assert schema_errors(unknown_kind) != []


def test_rendering_without_the_secret_files_stops(tmp_path):
    """No s3.env / database.env (only the committed examples): nothing
    renders, so placeholder credentials never reach a cluster."""
    bare = copy_tree(tmp_path, with_secrets=False)
    for overlay in OVERLAYS:
        result = kustomize(bare / "overlays" / overlay)
        assert result.returncode != 0
        assert ".env" in result.stderr, result.stderr


def test_secret_files_are_git_ignored_and_examples_committed():
    secrets = K8S / "base" / "secrets"
    for filename in SECRET_ENV_FILES.values():
        assert (secrets / f"{filename}.example").is_file()
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", str(secrets / filename)], cwd=REPO, check=False, timeout=30
        )
        assert ignored.returncode == 0, f"deploy/k8s/base/secrets/{filename} is not git-ignored"
        example = subprocess.run(
            ["git", "check-ignore", "-q", str(secrets / f"{filename}.example")], cwd=REPO, check=False, timeout=30
        )
        assert example.returncode == 1, f"{filename}.example must not be git-ignored"


# -- what the rendered objects promise -----------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_grpc_probes_on_its_port(rendered, overlay):
    for service in SERVICES:
        c = container(rendered[overlay], service)
        grpc_port = named_port(c, "grpc")
        assert grpc_port == GRPC_PORTS[service]
        probes = ("livenessProbe", "readinessProbe") + (("startupProbe",) if service == "attack" else ())
        for probe in probes:
            assert probe in c, f"{service} has no {probe}"
            assert c[probe].get("grpc") == {"port": grpc_port}, f"{service} {probe}: {c[probe]}"
            assert not {"httpGet", "tcpSocket", "exec"} & set(c[probe]), f"{service} {probe}: {c[probe]}"
        # TensorFlow's import may take minutes: the startup probe allows them.
        if service == "attack":
            startup = c["startupProbe"]
            assert startup["periodSeconds"] * startup["failureThreshold"] >= 180


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_locked_down(rendered, overlay):
    for service in SERVICES:
        spec = pod_spec(rendered[overlay], service)
        assert spec["automountServiceAccountToken"] is False, service
        assert spec["serviceAccountName"] == service
        account = objects(rendered[overlay], "ServiceAccount")[service]
        assert account["automountServiceAccountToken"] is False
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, service
        assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (10001, 10001, 10001), service
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, service
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, service
            assert (sc["runAsUser"], sc["runAsGroup"]) == (10001, 10001), service
            assert sc["readOnlyRootFilesystem"] is True, service
            assert sc["allowPrivilegeEscalation"] is False, service
            assert sc["capabilities"] == {"drop": ["ALL"]}, service
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, service
            assert sc.get("privileged", False) is False, service
            # The root filesystem is read-only: /tmp is an emptyDir.
            mounts = {mount["mountPath"]: mount["name"] for mount in c["volumeMounts"]}
            volumes = {volume["name"]: volume for volume in spec["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], service
    namespace = objects(rendered[overlay], "Namespace")[NAMESPACE]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(rendered, overlay):
    for service in SERVICES:
        resources = container(rendered[overlay], service)["resources"]
        for resource in ("cpu", "memory"):
            request = quantity(resources["requests"][resource])
            limit = quantity(resources["limits"][resource])
            assert 0 < request <= limit, f"{service} {resource}: request {request}, limit {limit}"
    attack = container(rendered[overlay], "attack")["resources"]
    assert quantity(attack["limits"]["memory"]) >= 8 * 2**30, "TensorFlow needs memory"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_metrics_ports_are_named_and_annotated(rendered, overlay):
    for service in SERVICES:
        c = container(rendered[overlay], service)
        port = named_port(c, "metrics")
        assert port == METRICS_PORTS[service]
        annotations = objects(rendered[overlay], "Deployment")[service]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_environment(rendered, overlay):
    docs = rendered[overlay]
    env = {service: environment(docs, container(docs, service)) for service in SERVICES}
    for service in SERVICES:
        c = container(docs, service)
        upper = service.upper()
        # Listening on every interface, on the ports the container declares.
        assert env[service][f"ADVEX_{upper}_ADDR"] == f"0.0.0.0:{named_port(c, 'grpc')}"
        assert env[service][f"ADVEX_{upper}_METRICS_ADDR"] == f"0.0.0.0:{named_port(c, 'metrics')}"

    gateway = env["gateway"]
    assert gateway["ADVEX_STORAGE_TARGET"] == "storage:50052"
    assert gateway["ADVEX_SCORING_TARGET"] == "scoring:50054"
    assert str(gateway["ADVEX_ATTACK_TARGET"]).startswith("dns:///")
    # The headless Service's full name, in the namespace the objects render into.
    assert gateway["ADVEX_ATTACK_TARGET"] == f"dns:///attack.{NAMESPACE}.svc.cluster.local:50053"
    assert gateway["ADVEX_INSTANCE_ID"] == ("field", "metadata.name")

    assert env["attack"]["ADVEX_ATTACK_CACHE_DIR"] == "/var/cache/advex"
    assert env["attack"]["KERAS_HOME"] == "/tmp/keras"
    assert env["scoring"]["MPLCONFIGDIR"] == "/tmp/matplotlib"
    attack_spec = pod_spec(docs, "attack")
    mounts = {m["mountPath"]: m["name"] for m in container(docs, "attack")["volumeMounts"]}
    volumes = {v["name"]: v for v in attack_spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/var/cache/advex"]]

    # The object store: storage, gateway and attack know it; only storage
    # holds credentials (it signs the URLs the other two use).
    for service in ("storage", "gateway", "attack"):
        for name in ("ADVEX_S3_ENDPOINT", "ADVEX_S3_PUBLIC_ENDPOINT", "ADVEX_S3_BUCKET", "ADVEX_S3_REGION"):
            assert name in env[service], f"{service} lacks {name}"
    assert env["storage"]["ADVEX_S3_ENDPOINT"] == ""  # empty: AWS S3
    assert "ADVEX_S3_ENDPOINT" not in env["scoring"]

    # Every Secret key feeds the variable of the same name, in exactly the
    # service that reads it, and the keys are those of the committed example.
    secrets = generated(docs, "Secret")
    for secret, keys in SECRET_KEYS.items():
        assert set(secrets[secret]["data"]) == set(keys), secret
        example = (K8S / "base" / "secrets" / f"{SECRET_ENV_FILES[secret]}.example").read_text()
        example_keys = {line.split("=", 1)[0] for line in example.splitlines() if line and not line.startswith("#")}
        assert example_keys == set(keys), f"{SECRET_ENV_FILES[secret]}.example"
        for key, reader in keys.items():
            for service in SERVICES:
                if service == reader:
                    assert env[service].get(key) == ("secret", secret, key), f"{service} {key}"
                else:
                    assert key not in env[service], f"{service} gets {key}, which only {reader} reads"
    # No reference to a Secret that is not rendered.
    for service in SERVICES:
        for value in env[service].values():
            if isinstance(value, tuple) and value[0] == "secret":
                assert value[1] in secrets, f"{service} refers to Secret {value[1]}"


def variables_table() -> dict[str, set[str]]:
    """docs/deploy.md's variables (tested against the code by
    tests/packaging/test_deploy_doc.py) and the services that read each."""
    text = (REPO / "docs" / "deploy.md").read_text().split("## Environment variables", 1)[1]
    table = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([A-Z][A-Z0-9_]+)`", cells[0]) if len(cells) == 4 else None
        if match:
            table[match.group(1)] = {reader.strip() for reader in cells[1].split(",")}
    return table


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_advex_variable_is_one_the_service_reads(rendered, overlay):
    """A misspelt or misplaced variable would be silently ignored by the service."""
    docs = rendered[overlay]
    table = variables_table()
    shared_s3 = set(generated(docs, "ConfigMap")["s3-config"]["data"])
    for service in SERVICES:
        for name in environment(docs, container(docs, service)):
            if not name.startswith("ADVEX_"):
                continue
            assert name in table, f"{service} gets {name}, which no AdvEx code reads (docs/deploy.md's table)"
            readers = table[name]
            # The shared s3-config goes whole to storage, gateway and attack.
            assert service in readers or "all" in readers or name in shared_s3, (
                f"{service} gets {name}, read by {readers}"
            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_their_pods(rendered, overlay):
    docs = rendered[overlay]
    services = objects(docs, "Service")
    for name in SERVICES:
        service = services[name]["spec"]
        labels = objects(docs, "Deployment")[name]["spec"]["template"]["metadata"]["labels"]
        assert selects({"matchLabels": service["selector"]}, labels), name
        for other in SERVICES:
            other_labels = objects(docs, "Deployment")[other]["spec"]["template"]["metadata"]["labels"]
            assert (other == name) == selects({"matchLabels": service["selector"]}, other_labels)
        ports = {port["name"]: port for port in service["ports"]}
        assert ports["grpc"]["port"] == GRPC_PORTS[name]
        assert ports["grpc"]["targetPort"] in ("grpc", GRPC_PORTS[name])
        if name == "attack":
            assert service.get("clusterIP") == "None", "attack must be headless for round_robin over its pods"
        else:
            assert service.get("clusterIP") != "None"
            assert service.get("type", "ClusterIP") == "ClusterIP"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_replicas_and_disruption_budget(rendered, overlay):
    docs = rendered[overlay]
    gateway = objects(docs, "Deployment")["gateway"]
    assert gateway["spec"]["replicas"] == 2
    assert gateway["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60
    budgets = objects(docs, "PodDisruptionBudget")
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert budgets["gateway"]["spec"]["minAvailable"] == 1
    assert selects(budgets["gateway"]["spec"]["selector"], labels)
    attack_labels = objects(docs, "Deployment")["attack"]["spec"]["template"]["metadata"]["labels"]
    assert selects(budgets["attack"]["spec"]["selector"], attack_labels)
    for name, budget in budgets.items():
        assert ("minAvailable" in budget["spec"]) != ("maxUnavailable" in budget["spec"]), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_attack_autoscaler(rendered, overlay):
    docs = rendered[overlay]
    hpa = objects(docs, "HorizontalPodAutoscaler")["attack"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "attack"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    minimum, maximum = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
    assert minimum == (2 if overlay == "cpu" else 1)
    assert maximum > minimum
    # The HPA owns the replica count; a `replicas:` in the manifest would
    # reset it on every apply.
    assert "replicas" not in objects(docs, "Deployment")["attack"]["spec"]


def test_only_the_gpu_overlay_asks_for_gpus(rendered):
    gpu = container(rendered["gpu"], "attack")["resources"]
    assert gpu["requests"]["nvidia.com/gpu"] == gpu["limits"]["nvidia.com/gpu"] == 1
    tolerations = pod_spec(rendered["gpu"], "attack")["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations
    # No surge: a rollout must not wait for a spare GPU.
    assert objects(rendered["gpu"], "Deployment")["attack"]["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0

    for overlay in OVERLAYS:
        for service in SERVICES:
            if overlay == "gpu" and service == "attack":
                continue
            resources = container(rendered[overlay], service)["resources"]
            for section in ("requests", "limits"):
                assert "nvidia.com/gpu" not in resources[section], f"{overlay} {service}"
            assert "tolerations" not in pod_spec(rendered[overlay], service), f"{overlay} {service}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_come_from_the_kustomize_image_names(rendered, overlay):
    for service in SERVICES:
        assert container(rendered[overlay], service)["image"] == IMAGES[overlay][service]
    # The manifests name bare images that the base's `images:` list tags, so
    # a registry or tag changes in one place.
    base = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    listed = {image["name"] for image in base["images"]}
    for service in SERVICES:
        (deployment,) = [
            doc for doc in yaml.safe_load_all((K8S / "base" / f"{service}.yaml").read_text())
            if doc["kind"] == "Deployment"
        ]
        (c,) = deployment["spec"]["template"]["spec"]["containers"]
        assert c["image"] == f"advex/{service}" and c["image"] in listed


def test_a_users_overlay_retags_images_and_points_at_its_s3(tree, rendered):
    """What base/kustomization.yaml tells a platform team to write: images
    retagged in one list, S3 settings merged into s3-config."""
    mine = tree / "overlays" / "mine"
    mine.mkdir()
    images = "".join(
        f"  - name: advex/{service}\n    newName: registry.example.com/advex/{service}\n    newTag: 9.9.9\n"
        for service in SERVICES
    )
    (mine / "kustomization.yaml").write_text(
        "resources: [../gpu]\n"
        f"images:\n{images}"
        "configMapGenerator:\n"
        "  - name: s3-config\n"
        "    behavior: merge\n"
        "    literals:\n"
        "      - ADVEX_S3_BUCKET=my-team-advex\n"
        "      - ADVEX_S3_ENDPOINT=http://minio.minio.svc:9000\n"
    )
    docs = render(mine)
    for service in SERVICES:
        assert container(docs, service)["image"] == f"registry.example.com/advex/{service}:9.9.9"
    for service in ("storage", "gateway", "attack"):
        env = environment(docs, container(docs, service))
        assert env["ADVEX_S3_BUCKET"] == "my-team-advex"
        assert env["ADVEX_S3_ENDPOINT"] == "http://minio.minio.svc:9000"
        assert env["ADVEX_S3_REGION"] == "us-east-1"
    # A new hash: the pods using it roll.
    assert set(objects(docs, "ConfigMap")) != set(objects(rendered["gpu"], "ConfigMap"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies(rendered, overlay):
    docs = rendered[overlay]
    policies = objects(docs, "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and not deny.get("ingress")

    def open_to_anyone(rule: dict) -> bool:
        peers = rule.get("from")
        if not peers:
            return True
        return any(
            peer.get("ipBlock", {}).get("cidr") in ("0.0.0.0/0", "::/0")
            or (peer.get("namespaceSelector") == {} and not peer.get("podSelector"))
            for peer in peers
        )

    for name, policy in policies.items():
        # Ingress only: egress to S3 and the databases stays open.
        assert policy["spec"]["policyTypes"] == ["Ingress"], name
    for service in SERVICES:
        labels = objects(docs, "Deployment")[service]["spec"]["template"]["metadata"]["labels"]
        applying = [
            policy for name, policy in policies.items()
            if name != "default-deny-ingress" and selects(policy["spec"]["podSelector"], labels)
        ]
        assert len(applying) == 1, f"{service}: {len(applying)} policies"
        rules = applying[0]["spec"]["ingress"]
        allowed = {}
        for rule in rules:
            assert rule.get("ports"), f"{service}: a rule opens every port: {rule}"
            for port in rule["ports"]:
                allowed[port["port"]] = rule
        assert set(allowed) == {GRPC_PORTS[service], METRICS_PORTS[service]}, service
        assert allowed[METRICS_PORTS[service]]["from"] == [{"namespaceSelector": MONITORING_NAMESPACES}]
        grpc_rule = allowed[GRPC_PORTS[service]]
        if service == "gateway":
            assert open_to_anyone(grpc_rule)
        else:
            assert grpc_rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}]
        anyone = [port["port"] for rule in rules if open_to_anyone(rule) for port in rule["ports"]]
        assert anyone == ([GRPC_PORTS["gateway"]] if service == "gateway" else []), service
