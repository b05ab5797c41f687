"""The deployment files parse and point at what the code provides."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENT = ROOT / "deployment"
VALUES = DEPLOYMENT / "helm" / "dagster-values.yaml"
PROJECT_IMAGE = "recsys"
# Variables read by the software the deployment runs rather than by this project's settings modules.
THIRD_PARTY_VARIABLES = {
    "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "PGDATA",  # the postgres image
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL",  # MLflow's S3 artifact store (boto3)
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",  # Hugging Face
    "GF_SECURITY_ADMIN_PASSWORD", "GF_AUTH_ANONYMOUS_ENABLED", "GF_AUTH_ANONYMOUS_ORG_ROLE",  # Grafana
}
# The part of the chart's values the project relies on, as the chart's values.schema.json types it
# (dagster/dagster 1.13.27). The chart's own schema file cannot be fetched here: `helm lint
# --strict -f deployment/helm/dagster-values.yaml dagster/dagster --version 1.13.27` checks it
# where helm and the chart repository are reachable.
NAMED = {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}
IMAGE = {"type": "object", "required": ["repository", "tag", "pullPolicy"],
         "properties": {"pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}}}
CHART_SUBSET = {
    "type": "object",
    "required": ["dagster-user-deployments", "runLauncher", "postgresql", "global"],
    "properties": {
        "global": {"type": "object", "required": ["postgresqlSecretName"]},
        "dagsterWebserver": {"type": "object", "properties": {
            "replicaCount": {"type": "integer"},
            "service": {"type": "object", "required": ["type", "port"]}}},
        "dagsterDaemon": {"type": "object", "properties": {"enabled": {"type": "boolean"}}},
        "dagster-user-deployments": {"type": "object", "required": ["enabled", "deployments"], "properties": {
            "enabled": {"const": True},
            "deployments": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["name", "image", "dagsterApiGrpcArgs", "port"],
                "properties": {"image": IMAGE, "dagsterApiGrpcArgs": {"type": "array", "items": {"type": "string"}},
                               "port": {"type": "integer"}, "envConfigMaps": NAMED, "envSecrets": NAMED,
                               "env": {"type": "array", "items": {"type": "object", "required": ["name", "value"]}},
                               "includeConfigInLaunchedRuns": {"type": "object",
                                                               "properties": {"enabled": {"type": "boolean"}}}}}}}},
        "runLauncher": {"type": "object", "required": ["type", "config"], "properties": {
            "type": {"enum": ["K8sRunLauncher", "CeleryK8sRunLauncher", "CustomRunLauncher"]},
            "config": {"type": "object", "properties": {"k8sRunLauncher": {"type": "object", "properties": {
                "envConfigMaps": NAMED, "envSecrets": NAMED, "volumes": {"type": "array"},
                "volumeMounts": {"type": "array"}, "runK8sConfig": {"type": "object"}}}}}}},
        "postgresql": {"type": "object", "required": ["enabled", "postgresqlHost", "postgresqlUsername",
                                                      "postgresqlDatabase", "service"], "properties": {
            "enabled": {"type": "boolean"}, "service": {"type": "object", "required": ["port"]}}},
        "generatePostgresqlPasswordSecret": {"type": "boolean"},
    },
}


def _kustomize_documents() -> list[dict]:
    kustomization = yaml.safe_load((DEPLOYMENT / "kustomization.yaml").read_text())
    return [d for f in kustomization["resources"] for d in yaml.safe_load_all((DEPLOYMENT / f).read_text()) if d]


def _named(documents: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def test_compose_runs_every_component_with_postgres_backed_dagster():
    compose = yaml.safe_load((DEPLOYMENT / "docker-compose.yml").read_text())
    assert set(compose["services"]) >= {"postgres", "redis", "mlflow", "dagster-webserver", "dagster-daemon", "service",
                                        "prometheus", "grafana", "alertmanager"}
    instance = yaml.safe_load((DEPLOYMENT / "dagster" / "dagster.yaml").read_text())
    assert "postgres" in instance["storage"]
    service = compose["services"]["service"]
    assert "recsys_service.app:create_app" in service["command"]
    assert service["environment"]["REDIS_URL"].startswith("redis://redis")


def test_kubernetes_manifests_and_generated_configs_exist():
    kustomization = yaml.safe_load((DEPLOYMENT / "kustomization.yaml").read_text())
    for generator in kustomization["configMapGenerator"]:
        for file in generator["files"]:
            assert (DEPLOYMENT / file).exists(), file
    kinds = {(d["kind"], d["metadata"]["name"]) for f in kustomization["resources"]
             for d in yaml.safe_load_all((DEPLOYMENT / f).read_text()) if d}
    assert {("Deployment", "service"), ("Deployment", "mlflow"), ("StatefulSet", "postgres"),
            ("Deployment", "prometheus"), ("Deployment", "alertmanager"), ("Deployment", "grafana")} <= kinds
    assert not {name for kind, name in kinds if name.startswith("dagster-") and kind == "Deployment"}  # the chart's
    prometheus = yaml.safe_load((DEPLOYMENT / "prometheus" / "prometheus.yml").read_text())
    assert prometheus["scrape_configs"][0]["metrics_path"] == "/metrics"
    assert prometheus["rule_files"] == ["alerts.yml"]


def test_the_github_workflow_runs_the_project_ci_then_the_gate_report():
    workflow = yaml.safe_load((Path(__file__).resolve().parent.parent / ".github" / "workflows" / "ci.yml").read_text())
    steps = [step.get("run", "") for step in workflow["jobs"]["test-and-gate"]["steps"]]
    script = "\n".join(steps)
    assert "./.ci/run" in script and "make lint" in script and "make demo" in script and "make bench" in script
    assert "recsys report --output model-report.md" in script and "GITHUB_STEP_SUMMARY" in script
    assert script.index("./.ci/run") < script.index("make demo") < script.index("recsys report")


def test_dagster_runs_on_the_official_chart_with_postgres_storage_and_the_k8s_run_launcher():
    values = yaml.safe_load(VALUES.read_text())
    jsonschema.validate(values, CHART_SUBSET)
    documents = _kustomize_documents()
    config_maps, secrets = _named(documents, "ConfigMap"), _named(documents, "Secret")
    claims, services = _named(documents, "PersistentVolumeClaim"), _named(documents, "Service")
    (code,) = values["dagster-user-deployments"]["deployments"]
    module = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
    assert code["dagsterApiGrpcArgs"] == ["--module-name", module]
    service = _named(documents, "Deployment")["service"]["spec"]["template"]["spec"]["containers"][0]
    assert f"{code['image']['repository']}:{code['image']['tag']}" == service["image"]  # one image for both
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    for source in (code, launcher):
        assert {m["name"] for m in source["envConfigMaps"]} <= set(config_maps)
        assert {s["name"] for s in source["envSecrets"]} <= set(secrets)
        assert {v["persistentVolumeClaim"]["claimName"] for v in source["volumes"]} <= set(claims)
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    postgres = values["postgresql"]
    assert not postgres["enabled"] and postgres["postgresqlHost"] in services
    assert not values["generatePostgresqlPasswordSecret"]
    assert "postgresql-password" in secrets[values["global"]["postgresqlSecretName"]]["stringData"]


def test_the_service_shares_no_disk_and_mlflow_proxies_object_storage():
    deployments = _named(_kustomize_documents(), "Deployment")
    service = deployments["service"]["spec"]["template"]["spec"]
    assert all("persistentVolumeClaim" not in volume for volume in service.get("volumes", []))
    environment = yaml.safe_load((DEPLOYMENT / "k8s" / "platform.yaml").read_text().split("---")[1])["data"]
    assert environment["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"  # bundles arrive through MLflow
    mlflow = " ".join(deployments["mlflow"]["spec"]["template"]["spec"]["containers"][0]["command"])
    assert "--serve-artifacts" in mlflow and "--artifacts-destination s3://" in mlflow
    assert "postgresql://" in mlflow  # not a file on a shared volume


def test_the_k8s_job_executor_is_selectable_per_job(monkeypatch):
    from dagster_k8s import k8s_job_executor

    from recsys_assets.defs.jobs import executor_for

    monkeypatch.setenv("RECSYS_EXECUTOR_TRAIN_AND_EVALUATE", "k8s")
    monkeypatch.setenv("RECSYS_EXECUTOR", "in_process")
    assert executor_for("train_and_evaluate") is k8s_job_executor
    assert executor_for("monitor").name == "in_process"
    monkeypatch.setenv("RECSYS_EXECUTOR", "spark")
    with pytest.raises(ValueError, match="RECSYS_EXECUTOR for monitor is 'spark'"):
        executor_for("monitor")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (Debian: apt-get install "
                                                            "kubectl; .ci/run installs it)")
def test_kubectl_kustomize_renders_every_manifest():
    rendered = subprocess.run(["kubectl", "kustomize", str(DEPLOYMENT)], capture_output=True, text=True, check=True)
    documents = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    assert {d["metadata"].get("namespace") for d in documents if d["kind"] != "Namespace"} == {"recsys"}
    assert {"service", "mlflow", "redis", "prometheus", "grafana", "alertmanager"} <= set(_named(documents, "Deployment"))
    assert "alerts.yml" in _named(documents, "ConfigMap")["prometheus-config"]["data"]


def _images() -> list[str]:
    found = []
    for document in _kustomize_documents():
        spec = document.get("spec", {}).get("template", {}).get("spec", {})
        found += [c["image"] for c in spec.get("containers", [])]
    compose = yaml.safe_load((DEPLOYMENT / "docker-compose.yml").read_text())
    found += [s["image"] for s in compose["services"].values() if "image" in s]
    image = yaml.safe_load(VALUES.read_text())["dagster-user-deployments"]["deployments"][0]["image"]
    return [*found, f"{image['repository']}:{image['tag']}"]


def test_every_image_is_the_projects_own_or_a_pinned_release():
    images = _images()
    assert f"{PROJECT_IMAGE}:latest" in images and (DEPLOYMENT / "Dockerfile").exists()
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name == PROJECT_IMAGE or (tag and tag != "latest" and re.search(r"\d", tag)), image
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name.startswith("recsys_")}
    copied = set(re.findall(r"^COPY (recsys_\w+) ", (DEPLOYMENT / "Dockerfile").read_text(), flags=re.M))
    assert copied == packages


def _set_variables() -> set[str]:
    """Every environment variable the deployment files set for a container."""
    names = set()
    for document in _kustomize_documents():
        if document["kind"] in ("ConfigMap", "Secret") and document["metadata"]["name"] in ("recsys-env",
                                                                                             "recsys-secrets"):
            names |= set(document.get("data", {}) | document.get("stringData", {}))
        spec = document.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            names |= {e["name"] for e in container.get("env", [])}
    compose = yaml.safe_load((DEPLOYMENT / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        environment = service.get("environment", {})
        names |= set(environment if isinstance(environment, dict) else [e.split("=")[0] for e in environment])
    names |= {e["name"] for e in yaml.safe_load(VALUES.read_text())["dagster-user-deployments"]["deployments"][0]["env"]}
    return names


def test_every_environment_variable_set_is_read_by_the_code_or_a_named_program():
    readers = "".join((ROOT / f).read_text() for f in ("recsys_assets/settings.py", "recsys_service/settings.py",
                                                       "deployment/dagster/dagster.yaml"))
    unread = sorted(n for n in _set_variables() if n not in THIRD_PARTY_VARIABLES and f'"{n}"' not in readers
                    and f"env: {n}" not in readers)
    assert not unread, f"set by the deployment but read by nothing: {unread}"


def test_the_dask_cluster_runs_the_project_image_on_the_pipeline_volume():
    cluster = yaml.safe_load((DEPLOYMENT / "dask" / "daskcluster.yaml").read_text())
    assert cluster["kind"] == "DaskCluster"
    worker = cluster["spec"]["worker"]["spec"]
    scheduler = cluster["spec"]["scheduler"]["spec"]["containers"][0]
    service = _named(_kustomize_documents(), "Deployment")["service"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["containers"][0]["image"] == scheduler["image"] == service["image"]
    env = {e["name"]: e["value"] for e in worker["containers"][0]["env"]}
    address = f"tcp://{cluster['metadata']['name']}-scheduler:8786"  # the operator's scheduler Service
    assert env["RECSYS_DASK_SCHEDULER"] == address
    claims = set(_named(_kustomize_documents(), "PersistentVolumeClaim"))
    assert {v["persistentVolumeClaim"]["claimName"] for v in worker["volumes"]} <= claims
