"""Bundles reach the service through MLflow's proxied artifact store: the pipeline side logs and
registers them against a real ``mlflow server``; the service, with its own empty models directory
and no access to the server's disk, loads the champion by alias and reloads another version."""

from recsys_registry.registry import MlflowRegistry
from recsys_service.settings import ServiceSettings
from recsys_training import tracking
from tests.bundles import build_bundle
from tests.mlflow_server import mlflow_server
from tests.running_service import RunningService

TOKEN = "mlflow-token"


def test_the_service_loads_the_champion_by_alias_with_no_shared_directory(tmp_path):
    pipeline, service_dir = tmp_path / "pipeline", tmp_path / "service"
    with mlflow_server(tmp_path / "mlflow") as url:
        tracking.configure_client(url)
        experiment = tracking.ensure_experiment("recsys", None)  # the server's proxied artifact root
        registry = MlflowRegistry(url, "recsys")
        versions = {}
        for seed, version in ((1, "v1"), (2, "v2")):
            build_bundle(pipeline / version, seed, version)
            record = {"version": version, "bundle_path": str(pipeline / version), "params": {"seed": seed},
                      "metrics": {"ndcg@10": 0.1}, "tags": {"dagster_job": "test"}}
            run_id, artifact_uri = tracking.log_record_in_new_run(record, experiment)
            assert artifact_uri.startswith("mlflow-artifacts:")  # stored by the server, not on a path we share
            versions[version] = registry.create_version(run_id, artifact_uri, {"bundle_version": version})
        registry.set_alias("champion", versions["v1"])
        settings = ServiceSettings(models_dir=service_dir / "models", mlflow_tracking_uri=url, admin_token=TOKEN,
                                   exposure_log=service_dir / "exposures.jsonl", data_dir=service_dir / "data")
        service = RunningService(settings)
        try:
            assert service.client.get("/ready").json()["primary"] == "v1"
            assert service.client.get("/recommend/user/u3").json()["model_version"] == "v1"
            reloaded = service.client.post("/models/reload", json={"version": "v2"},
                                           headers={"Authorization": f"Bearer {TOKEN}"})
            assert reloaded.status_code == 200 and reloaded.json()["primary"] == "v2"
            assert service.client.get("/recommend/user/u3").json()["model_version"] == "v2"
            missing = service.client.post("/models/reload", json={"version": "v9"},
                                          headers={"Authorization": f"Bearer {TOKEN}"})
            assert missing.status_code == 409 and "bundle_version 'v9'" in missing.json()["detail"]
        finally:
            service.stop()
    # what the service read came over HTTP into its own directory, never from the pipeline's
    downloaded = sorted(p.name for p in (service_dir / "models" / "downloaded").iterdir())
    assert downloaded == ["champion", "v2"]
    assert not (service_dir / "models" / "model_registry.json").exists()
