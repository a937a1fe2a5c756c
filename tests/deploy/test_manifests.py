"""deploy/compose and deploy/k8s: schema-valid, wired together, in step with Settings.

No container engine or cluster runs here. Compose is validated against the vendored Compose
Specification schema, Kubernetes built-in kinds against kubernetes-validate's bundled schemas
(strict: unknown fields fail); the Kustomization and the PodMonitor (a CRD) get structural checks.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from streams.settings import Settings

from .helpers import DEPLOY, JOB, REPO, SETTING_RE, repo_path, unknown_settings

COMPOSE_DIR = DEPLOY / "compose"
K8S = DEPLOY / "k8s"
SCHEMAS = Path(__file__).with_name("schemas")
#: Oldest and newest Kubernetes minor versions the manifests are checked against.
K8S_VERSIONS = ("1.29", "1.37")
SECRET_FIELDS = frozenset(
    f"COLDSTREAM_{name.upper()}" for name, f in Settings.model_fields.items()
    if "SecretStr" in str(f.annotation))
#: Files where a COLDSTREAM_* name must be a real setting.
SETTING_SOURCES = sorted(
    [*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.sh"),
     *DEPLOY.rglob("Dockerfile"), *(REPO / "docs").glob("*.md")])


def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default} substitution, with an empty env."""
    env = env or {}

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(3) or ""
        return env.get(name, default)

    return re.sub(r"\$\{(\w+)(:?-([^}]*))?\}", repl, text)


def compose() -> dict[str, Any]:
    return yaml.safe_load(interpolate((COMPOSE_DIR / "compose.yaml").read_text()))


def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, doc) for p in sorted(K8S.glob("*.yaml"))
            for doc in yaml.safe_load_all(p.read_text()) if doc]


def k8s_kind(kind: str) -> dict[str, Any]:
    [doc] = [d for _, d in k8s_docs() if d["kind"] == kind]
    return doc


def settings_from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    """Build Settings the way a worker would, from exactly these variables."""
    import os

    for key in list(os.environ):
        if key.startswith("COLDSTREAM_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    return Settings()


# --- settings names ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", SETTING_SOURCES, ids=repo_path)
def test_coldstream_variables_are_real_settings(path: Path) -> None:
    unknown = unknown_settings(path.read_text())
    assert not unknown, f"{repo_path(path)} names settings that do not exist: {sorted(unknown)}"


def test_docs_exist_and_name_settings() -> None:
    text = (REPO / "docs" / "operations.md").read_text()
    assert SETTING_RE.search(text)


# --- compose ----------------------------------------------------------------------------------
def test_compose_matches_compose_spec_schema() -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(compose())


def test_compose_schema_rejects_a_broken_file() -> None:
    """The validator is not a no-op: an unknown service key fails."""
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    broken = copy.deepcopy(compose())
    broken["services"]["worker"]["replica"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(broken)


def test_compose_services_and_kraft() -> None:
    services = compose()["services"]
    assert {"kafka", "qdrant", "worker", "prometheus", "grafana"} <= services.keys()
    kafka_env = services["kafka"]["environment"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"], "KRaft: the broker is its controller"
    assert not any("zookeeper" in key.lower() for key in kafka_env)
    assert services["worker"]["command"] == ["worker"]
    assert int(services["worker"]["deploy"]["replicas"]) >= 1


def test_compose_worker_env_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose()["services"]
    settings = settings_from_env(monkeypatch, services["worker"]["environment"])
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.qdrant_url and settings.qdrant_url.startswith("http://qdrant:")
    assert settings.metrics_host == "0.0.0.0"
    prom = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    [job] = [j for j in prom["scrape_configs"] if j["job_name"] == JOB]
    [sd] = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["port"] == settings.metrics_port


def test_compose_paths_exist() -> None:
    """Bind mounts, build context and Dockerfile point at files in this repository."""
    services = compose()["services"]
    build = services["worker"]["build"]
    context = (COMPOSE_DIR / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).is_file()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                if source in {"./models", "./audio"}:
                    continue  # operator-provided data dirs
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source}"


def test_dockerfile_copies_what_exists() -> None:
    text = (COMPOSE_DIR / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (REPO / src).exists(), src
    assert "pip install ." in text
    assert 'CMD ["worker"]' in text


# --- kubernetes -------------------------------------------------------------------------------
BUILTIN = [(name, doc) for name, doc in k8s_docs()
           if doc["kind"] not in {"Kustomization", "PodMonitor"}]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name,doc", BUILTIN, ids=[f"{n}:{d['kind']}" for n, d in BUILTIN])
def test_k8s_manifest_schema(name: str, doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_k8s_schema_rejects_a_broken_manifest() -> None:
    broken = copy.deepcopy(k8s_kind("Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["envfrom"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_k8s_kinds_present() -> None:
    kinds = {doc["kind"] for _, doc in k8s_docs()}
    assert {"Deployment", "ConfigMap", "Secret", "Service", "PodMonitor"} <= kinds


def test_kustomization_lists_the_manifests() -> None:
    kust = k8s_kind("Kustomization")
    listed = set(kust["resources"])
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed <= files
    # PodMonitor needs the Prometheus Operator's CRDs: opt-in, documented in the file.
    assert files - listed == {"podmonitor.yaml"}
    assert all(doc["metadata"].get("namespace", kust["namespace"]) == kust["namespace"]
               for name, doc in k8s_docs() if doc["kind"] not in {"Kustomization", "Namespace"})


def test_k8s_settings_valid_and_secrets_separate(monkeypatch: pytest.MonkeyPatch) -> None:
    config = k8s_kind("ConfigMap")["data"]
    secret = k8s_kind("Secret")["stringData"]
    assert set(secret) == SECRET_FIELDS, "every SecretStr setting comes from the Secret"
    assert not SECRET_FIELDS & set(config), "no secret in the ConfigMap"
    settings = settings_from_env(monkeypatch, {**config, **secret})
    assert settings.qdrant_url, "many workers need a Qdrant server"
    assert settings.metrics_host == "0.0.0.0"
    for value in (settings.kafka_sasl_password, settings.qdrant_api_key):
        assert isinstance(value, SecretStr)


def test_k8s_wiring() -> None:
    """Names and labels agree across Deployment, ConfigMap, Secret, Service and PodMonitor."""
    deploy = k8s_kind("Deployment")
    config = k8s_kind("ConfigMap")
    pod = deploy["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [container] = pod["spec"]["containers"]
    assert container["args"] == ["worker"]
    env_from = {next(iter(ref)): ref[next(iter(ref))]["name"] for ref in container["envFrom"]}
    assert env_from == {"configMapRef": config["metadata"]["name"],
                        "secretRef": k8s_kind("Secret")["metadata"]["name"]}
    [port] = [p for p in container["ports"] if p["name"] == "metrics"]
    metrics_port = int(config["data"]["COLDSTREAM_METRICS_PORT"])
    assert port["containerPort"] == metrics_port
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == metrics_port
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {config["data"]["COLDSTREAM_DATA_DIR"], config["data"]["COLDSTREAM_MODEL_DIR"]} <= mounts
    # Partitions bound active workers: more replicas than partitions would idle.
    assert deploy["spec"]["replicas"] <= int(config["data"]["COLDSTREAM_PARTITIONS"])

    service = k8s_kind("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"

    monitor = k8s_kind("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    job = [r for r in endpoint["relabelings"] if r.get("targetLabel") == "job"]
    assert job and job[0]["replacement"] == JOB, "alerts select job=coldstream-worker"
