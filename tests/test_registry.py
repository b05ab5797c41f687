"""The registry file, MLflow aliases and the `recsys models` commands, without the pipeline."""

import json

import pytest
from mlflow.tracking import MlflowClient

from recsys_assets.cli import main
from recsys_registry.registry import MlflowRegistry, ModelRegistry, RegistryError


@pytest.fixture
def env(tmp_path, monkeypatch):
    models = tmp_path / "models"
    (models / "bundles").mkdir(parents=True)
    uri = f"sqlite:///{models / 'mlflow.db'}"
    monkeypatch.setenv("RECSYS_MODELS_DIR", str(models))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return models, uri


def _register(models, uri, names):
    mlflow_side = MlflowRegistry(uri, "recsys")
    registry = ModelRegistry(models / "model_registry.json", mlflow_side)
    import mlflow

    mlflow.set_experiment("registry-test")  # other tests leave another store's experiment active

    for name in names:
        bundle = models / "bundles" / name
        bundle.mkdir()
        (bundle / "manifest.json").write_text("{}")
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(bundle), "bundle")
            version = mlflow_side.create_version(run.info.run_id, mlflow.get_artifact_uri("bundle"), {})
        registry.register(name, {"path": str(bundle), "mlflow_version": version, "metrics": {"ndcg@10": 0.1}})
    return registry


def test_promote_rollback_and_list(env, capsys):
    models, uri = env
    _register(models, uri, ["v1", "v2", "v3"])
    assert main(["models", "promote", "v1"]) == 0
    assert main(["models", "promote", "v2"]) == 0
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert str(client.get_model_version_by_alias("recsys", "champion").version) == "2"
    assert main(["models", "rollback"]) == 0
    data = json.loads((models / "model_registry.json").read_text())
    assert data["aliases"]["champion"] == "v1"
    assert str(client.get_model_version_by_alias("recsys", "champion").version) == "1"
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "v1" in out and "champion" in out and "3 versions" in out


def test_errors_exit_non_zero_with_a_message(env, capsys):
    models, uri = env
    _register(models, uri, ["v1"])
    assert main(["models", "promote", "nope"]) == 2
    assert "unknown model version 'nope'" in capsys.readouterr().err
    assert main(["models", "rollback"]) == 2
    assert "no previous champion" in capsys.readouterr().err


def test_prune_keeps_champion_challenger_and_newest(env):
    models, uri = env
    registry = _register(models, uri, ["v1", "v2", "v3", "v4"])
    registry.promote("v1", "test")
    # v4 is the challenger (the newest registration), v1 the champion
    assert main(["models", "prune", "--keep", "1", "--dry-run"]) == 0
    assert (models / "bundles" / "v2").exists()
    assert main(["models", "prune", "--keep", "1"]) == 0
    remaining = json.loads((models / "model_registry.json").read_text())["versions"]
    assert set(remaining) == {"v1", "v4"}
    assert not (models / "bundles" / "v2").exists() and (models / "bundles" / "v1").exists()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert sorted(v.version for v in client.search_model_versions("name='recsys'")) == [1, 4]


def test_cleanup_removes_only_orphaned_bundles(env, capsys):
    models, uri = env
    _register(models, uri, ["v1"])
    (models / "bundles" / "abandoned").mkdir()
    assert main(["models", "cleanup", "--dry-run"]) == 0
    assert (models / "bundles" / "abandoned").exists()
    assert main(["models", "cleanup", "--execute"]) == 0
    assert not (models / "bundles" / "abandoned").exists() and (models / "bundles" / "v1").exists()


def test_registry_file_alone_supports_rollback(tmp_path):
    registry = ModelRegistry(tmp_path / "model_registry.json")
    for v in ("a", "b"):
        registry.register(v, {"path": str(tmp_path / v)})
        registry.promote(v, "test")
    assert registry.rollback() == "a"
    with pytest.raises(RegistryError):
        registry.promote("a", "again")
