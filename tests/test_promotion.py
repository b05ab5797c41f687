"""Tracking, registration and the promotion gate across successive runs of the whole graph."""

import json
import os
import socket

import dagster as dg
import pytest
from mlflow.tracking import MlflowClient

from recsys_registry.registry import RegistryFile
from recsys_training import synthetic
from tests.pipeline_helpers import checks, materialised, materialize, metadata

GATE = {"beats_champion", "beats_baselines", "enough_evaluated_users", "trained_on_quality_data",
        "bundle_loads_and_answers", "latency_within_budget", "cost_within_budget"}


@pytest.fixture(autouse=True)
def fewer_latency_requests(monkeypatch):
    monkeypatch.setenv("RECSYS_LATENCY_REQUESTS", "200")


def _export(directory, share: float, broken_share: float = 0.0):
    tables = synthetic.generate(300, 400, 12_000, seed=11)
    interactions = tables.interactions.rows.sort_values("timestamp")
    interactions = interactions.iloc[: int(len(interactions) * share)].copy()
    if broken_share:
        n = int(len(interactions) * broken_share)
        interactions.iloc[:n, interactions.columns.get_loc("item_id")] = "no-such-item"
    directory.mkdir(parents=True, exist_ok=True)
    tables.items.rows.to_parquet(directory / "items.parquet")
    interactions.to_parquet(directory / "interactions.parquet")
    return {"kind": "export", "export_dir": str(directory)}


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Run 1 on the first 40% of the data, run 2 on the same data, run 3 on all of it."""
    tmp = tmp_path_factory.mktemp("promotion")
    instance = dg.DagsterInstance.ephemeral()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECSYS_LATENCY_REQUESTS", "200")
        source = _export(tmp / "export", 0.4)
        first = materialize(tmp, instance=instance, **source)
        second = materialize(tmp, instance=instance, **source)
        third = materialize(tmp, instance=instance, **_export(tmp / "export", 1.0))
    return tmp, first, second, third


def _registry(tmp):
    return RegistryFile.load(tmp / "models" / "model_registry.json")


def _client(tmp):
    uri = f"sqlite:///{tmp / 'models' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_first_model_is_tracked_registered_and_promoted(history):
    tmp, first, _, _ = history
    assert first.success
    assert checks(first).keys() >= GATE and all(checks(first)[c] for c in GATE)
    challenger = metadata(first, "challenger")
    assert challenger["mlflow_status"] == "logged"
    run = _client(tmp).get_run(challenger["mlflow_run_id"])
    assert run.data.metrics["ndcg_at_10"] == pytest.approx(challenger["ndcg@10"])
    assert run.data.metrics["data_quality_score"] >= 90
    assert run.data.tags["dagster_run_id"] == first.run_id
    assert "data_version.raw_interactions" in run.data.tags and "code_version" in run.data.tags
    artifacts = {a.path for a in _client(tmp).list_artifacts(run.info.run_id, "bundle")}
    assert {"bundle/manifest.json", "bundle/ranker.txt", "bundle/similar_ranker.txt"} <= artifacts
    assert run.data.params["ranker_objective"] in {"rank_xendcg", "lambdarank"}
    assert int(run.data.params["similar_ranker_rounds"]) >= 10
    assert run.data.params["ranker_patience"] == os.environ["RECSYS_RANKER_PATIENCE"]  # conftest.py
    assert float(run.data.params["ranker_negative_fraction"]) == 1.0  # the default: every row
    assert float(run.data.params["ranker_race_z"]) == 1.0  # the default race
    assert run.data.params["text_encoder_weights"] == "int8"  # the default
    assert metadata(first, "champion")["previous"] == "none"
    evaluations = {e.check_name: e.metadata for e in first.get_asset_check_evaluations()}
    baselines = evaluations["beats_baselines"]
    assert baselines["most_pop_ndcg@10_diff_low"].value > 0 and baselines["ease_ndcg@10_diff_low"].value > 0
    assert run.data.metrics["gate.beats_baselines.most_pop_ndcg_at_10_diff_low"] == pytest.approx(
        baselines["most_pop_ndcg@10_diff_low"].value)
    cost = evaluations["cost_within_budget"]
    assert 0 < cost["bundle_mb"].value < cost["max_bundle_mb"].value
    assert 100 < cost["loaded_memory_mb"].value < cost["max_loaded_memory_mb"].value


def test_a_challenger_that_is_not_better_is_rejected(history):
    tmp, first, second, _ = history
    assert not second.success
    assert checks(second)["beats_champion"] is False
    assert "champion" not in materialised(second)
    registry = _registry(tmp)
    v1, v2 = metadata(first, "challenger")["version"], metadata(second, "challenger")["version"]
    version = _client(tmp).get_model_version("recsys", metadata(second, "challenger")["mlflow_model_version"])
    assert version.tags["gate.beats_champion"].startswith("failed: ndcg@10")
    promoted = [e["version"] for e in registry.data["history"] if e["action"] == "promote"]
    assert v1 in promoted and v2 not in promoted


def test_a_better_challenger_is_promoted_and_rollback_restores_both_sides(history):
    tmp, first, _, third = history
    assert third.success, checks(third)
    v1, v3 = metadata(first, "challenger")["version"], metadata(third, "challenger")["version"]
    gain = [e for e in third.get_asset_check_evaluations() if e.check_name == "beats_champion"][0]
    low, mean = gain.metadata["champion_ndcg@10_diff_low"].value, gain.metadata["champion_ndcg@10_diff"].value
    assert 0 < low < mean
    registry = _registry(tmp)
    assert registry.champion == v3
    client = _client(tmp)
    assert str(client.get_model_version_by_alias("recsys", "champion").version) == metadata(third, "challenger")[
        "mlflow_model_version"]

    from recsys_assets.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECSYS_MODELS_DIR", str(tmp / "models"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'models' / 'mlflow.db'}")
        assert main(["models", "rollback"]) == 0
    registry = _registry(tmp)
    assert registry.champion == v1
    assert str(client.get_model_version_by_alias("recsys", "champion").version) == metadata(first, "challenger")[
        "mlflow_model_version"]
    last = registry.data["history"][-1]
    assert (last["action"], last["version"], last["previous"]) == ("rollback", v1, v3)


def test_too_few_evaluated_users_stop_promotion_unless_overridden_and_the_override_is_recorded(tmp_path, monkeypatch):
    source = _export(tmp_path / "export", 0.5)
    monkeypatch.setenv("RECSYS_MIN_EVAL_USERS", "100000")
    refused = materialize(tmp_path, **source)
    assert checks(refused)["enough_evaluated_users"] is False and "champion" not in materialised(refused)
    monkeypatch.setenv("RECSYS_ALLOW_SMALL_EVAL", "1")
    allowed = materialize(tmp_path, **source)
    assert checks(allowed)["enough_evaluated_users"] is True and "champion" in materialised(allowed)
    version = metadata(allowed, "challenger")["version"]
    overrides = [e for e in _registry(tmp_path).data["history"] if e["action"] == "override"]
    assert [(e["version"], e["check"]) for e in overrides] == [(version, "enough_evaluated_users")]
    assert "RECSYS_ALLOW_SMALL_EVAL" in overrides[0]["reason"]


def test_broken_data_fails_the_quality_gate_and_stops_promotion(tmp_path):
    source = _export(tmp_path / "export", 1.0, broken_share=0.3)
    result = materialize(tmp_path, **source)
    assert checks(result)["quality_score_above_threshold"] is False
    assert metadata(result, "data_quality_report")["score"] < 90
    assert not {"challenger", "champion"} & materialised(result)
    assert not (tmp_path / "models" / "model_registry.json").exists()


def _dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_training_finishes_when_mlflow_is_down_and_the_backlog_is_uploaded_later(tmp_path):
    source = _export(tmp_path / "export", 0.5)
    down = materialize(tmp_path, tracking_uri=_dead_address(), **source)
    assert "challenger" in materialised(down)
    info = metadata(down, "challenger")
    assert info["mlflow_status"] == "pending"
    backlog = list((tmp_path / "models" / "mlflow_backlog").glob("*.json"))
    assert [p.stem for p in backlog] == [info["version"]]
    assert json.loads(backlog[0].read_text())["metrics"]["ndcg@10"] == pytest.approx(info["ndcg@10"])
    assert _registry(tmp_path).champion == info["version"]  # the JSON registry works without MLflow

    up = materialize(tmp_path, **_export(tmp_path / "export", 1.0))
    assert metadata(up, "challenger")["backlog_uploaded"] == 1
    assert not list((tmp_path / "models" / "mlflow_backlog").glob("*.json"))
    entry = _registry(tmp_path).version(info["version"])
    assert entry["mlflow_status"] == "logged" and entry["mlflow_version"]
    uploaded = _client(tmp_path).get_model_version("recsys", entry["mlflow_version"])
    assert uploaded.tags["bundle_version"] == info["version"]


def test_service_can_fetch_the_champion_through_the_mlflow_alias(history, tmp_path):
    from recsys_service.models import ModelManager

    tmp, *_ = history
    champion = _registry(tmp).champion
    manager = ModelManager(tmp_path / "no_registry.json", mlflow_uri=f"sqlite:///{tmp / 'models' / 'mlflow.db'}")
    assert manager.load_verified(None).version == champion


def test_the_report_lists_every_gate_check_with_its_value_threshold_and_outcome(history, capsys, tmp_path):
    from recsys_assets.cli import main

    tmp, first, second, third = history
    v2 = metadata(second, "challenger")["version"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECSYS_MODELS_DIR", str(tmp / "models"))
        mp.setenv("RECSYS_DATA_DIR", str(tmp / "data"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'models' / 'mlflow.db'}")
        assert main(["report", "--version", v2, "--output", str(tmp_path / "report.md")]) == 1  # v2 was refused
        capsys.readouterr()
        assert main(["report"]) == 0  # the latest version (run 3) passed its gate
    text = (tmp_path / "report.md").read_text()
    assert text.startswith(f"# Model report: {v2}") and "Gate **failed**" in text and "blocking failures: beats_champion" in text
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert GATE <= set(rows)
    assert "❌ fail" in rows["beats_champion"] and "lower end > 0.0" in rows["beats_champion"]
    assert "✅ pass" in rows["latency_within_budget"] and "p95 ms < 10.0" in rows["latency_within_budget"]
    assert "✅ pass" in rows["beats_baselines"] and "(most_pop)" in rows["beats_baselines"] or "(ease)" in rows["beats_baselines"]
    assert "MB after loading" in text and "## Metrics" in text
    latest = capsys.readouterr().out
    assert "Gate **passed**" in latest and metadata(third, "challenger")["version"] in latest
