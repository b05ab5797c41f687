"""The deployment files parse and point at what the code provides."""

from pathlib import Path

import yaml

DEPLOYMENT = Path(__file__).resolve().parent.parent / "deployment"


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
    assert {("Deployment", "service"), ("Deployment", "dagster-daemon"), ("StatefulSet", "postgres"),
            ("Deployment", "prometheus"), ("Deployment", "alertmanager"), ("Deployment", "grafana")} <= kinds
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
