"""The whole asset graph on a small synthetic data set, materialised for real."""

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from recsys_assets.definitions import defs
from recsys_assets.defs import evaluation as evaluation_defs
from recsys_runtime.bundle import BundleError, load_bundle, verify_bundle
from recsys_training.evaluation import user_shards
from recsys_training.metrics import evaluate_lists
from recsys_training.ranker import DEFAULT_CHOICES
from tests.pipeline_helpers import materialize, metadata

ASSETS = ["raw_items", "raw_interactions", "interactions_split", "item_features", "user_features",
          "collaborative_index", "covisitation_index", "item_embeddings", "item_image_vectors", "content_index",
          "popular_items", "sequential_model",
          "recall_candidates", "ranking_model", "model_bundle", "evaluation_summary", "data_quality_report",
          "challenger", "champion", "online_user_features", "drift_report", "exposure_metrics", "metrics_reconciliation"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    instance = dg.DagsterInstance.ephemeral()
    # this run chooses between both ranker settings (the other tests' pipelines use one, conftest)
    choices = {"ops": {"ranking_model": {"config": {"choices": list(DEFAULT_CHOICES)}}}}
    result = materialize(tmp, instance=instance, run_config=choices)
    return tmp, result, instance


def _metadata(result, key: str) -> dict:
    return metadata(result, key)


def test_definitions_load_and_validate():
    definitions = defs()
    dg.Definitions.validate_loadable(definitions)
    graph = definitions.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == set(ASSETS) | {"exposure_log", "rollout"}
    # the rollout sensor and `recsys rollout` record it; no job materialises it
    assert not graph.get(dg.AssetKey("rollout")).is_materializable
    # the service writes the exposure log; the monitoring assets and the off-policy check depend on it
    log = dg.AssetKey("exposure_log")
    assert not graph.get(log).is_materializable
    assert {k.to_user_string() for k in graph.get(log).child_keys} == {"exposure_metrics", "metrics_reconciliation"}
    specs = {spec.name: spec for checks in definitions.asset_checks for spec in checks.check_specs}
    assert [dep.asset_key for dep in specs["off_policy_clicks"].additional_deps] == [log]


def test_every_asset_materialised_with_metadata(run):
    _, result, _ = run
    assert result.success
    for key in ASSETS:
        metadata = _metadata(result, key)
        assert metadata, key
    raw = _metadata(result, "raw_interactions")
    assert raw["new_rows"] == raw["dagster/row_count"] > 12_000 * 0.9
    assert _metadata(result, "recall_candidates")["label_recall"] > 0.2
    assert 0.5 < _metadata(result, "ranking_model")["auc"] <= 1.0
    assert "| **model** |" in _metadata(result, "evaluation_summary")["user_table"]
    embeddings = _metadata(result, "item_embeddings")
    assert (embeddings["encoder"], embeddings["encoder_weights"]) == ("onnxruntime-int8", "int8")  # the default


def test_summary_shape_and_model_beats_popularity(run):
    tmp, _, _ = run
    summary = json.loads((tmp / "data" / "evaluation" / "summary.json").read_text())
    metric_keys = {"ndcg@10", "recall@10", "hr@10", "coverage@10", "users"}
    for context in ("user", "detail"):
        assert set(summary[context]["model"]) == metric_keys
        assert set(summary[context]["routes"]) == {"collaborative", "covisitation", "content", "trending", "popular",
                                                   "sequential"}
        assert set(summary[context]["baselines"]) == {"most_pop", "item_knn", "ease"}
    assert summary["dataset"]["evaluated_users"] == summary["user"]["model"]["users"] > 250
    user = summary["user"]
    assert user["model"]["ndcg@10"] > user["baselines"]["most_pop"]["ndcg@10"]
    assert user["model"]["ndcg@10"] > user["routes"]["popular"]["ndcg@10"]
    assert 0.5 < summary["ranking_auc"] <= 1.0
    # the next-item detail page: its own users, queries outside the history, its own baselines
    following = summary["detail_next"]
    assert set(following["model"]) == set(following["similar"]) == metric_keys
    assert set(following["routes"]) == set(summary["detail"]["routes"])
    assert set(following["baselines"]) == {"most_pop", "cooccurrence_of_query", "ease_row_of_query",
                                           "item_knn_history_and_query", "ease_history_and_query"}
    assert 0 < following["model"]["users"] <= summary["user"]["model"]["users"]
    assert following["model"] != summary["detail"]["model"]
    assert following["model"]["ndcg@10"] > following["baselines"]["most_pop"]["ndcg@10"]
    assert _metadata(run[1], "evaluation_summary")["detail_next_ndcg@10"] == following["model"]["ndcg@10"]


def test_evaluation_numbers_come_from_the_runtime_recommender(run):
    """Single requests through the served class reproduce the summary's model numbers."""
    tmp, result, _ = run
    summary = json.loads((tmp / "data" / "evaluation" / "summary.json").read_text())
    recommender = load_bundle(summary["bundle"])
    assert recommender.version == summary["model_version"]
    split = result.output_for_node("interactions_split")["serving"]
    truth = split.test.groupby("user_id")["item_id"].apply(set).to_dict()
    lists = {user: recommender.recommend(user, k=10).items for user in truth}
    served = evaluate_lists(lists, truth, split.train["item_id"].nunique())
    for key in ("ndcg@10", "recall@10", "hr@10", "coverage@10"):
        assert served[key] == pytest.approx(summary["user"]["model"][key], abs=1e-12)


def test_bundle_manifest_checksums(run):
    tmp, _, _ = run
    summary = json.loads((tmp / "data" / "evaluation" / "summary.json").read_text())
    bundle = Path(summary["bundle"])
    manifest = verify_bundle(bundle)
    assert set(manifest["files"]) == {"arrays.npz", "ease.npz", "covisitation.npz", "categories.npz", "ranker.txt",
                                      "similar_ranker.txt", "content_neighbours.npz", "sequential.npz",
                                      "similar.npz", "catalog.parquet"}
    # two rankers, each with its requests and the parameters it was trained with
    # each ranker is the choice with the best out-of-fold ndcg@10
    for ranker in (manifest["ranker"], manifest["similar_ranker"]):
        scores = ranker["choices"]
        assert set(scores) == {"rank_xendcg", "lambdarank"}
        assert ranker["params"]["objective"] == max(scores, key=scores.get)
    # the user ranker learns from each user's list and first page at the user's time; the similar
    # ranker from up to five pages per user, without the user, at the log's end
    user_ranker, similar_ranker = manifest["ranker"]["requests"], manifest["similar_ranker"]["requests"]
    assert 0 < user_ranker["page_at_user_time"] <= user_ranker["user"] and user_ranker["similar"] == 0
    assert similar_ranker["user"] == similar_ranker["page_at_user_time"] == 0
    assert similar_ranker["similar"] > user_ranker["page_at_user_time"]
    assert load_bundle(bundle).similar_ranker is not None
    # the tests train the sequential route for two epochs (conftest); the manifest records its settings
    assert manifest["sequential"]["epochs"] == 2 and manifest["sequential"]["windows"] > 0
    assert manifest["collaborative"]["model"] == "ease" and manifest["content_index"]["kind"] == "exact"
    # synthetic items have no images: the image route is off, and the manifest says why
    assert manifest["image_route"] == {"skipped": "the items have no images"} and "image" not in manifest["routes"]
    with (bundle / "ranker.txt").open("a") as handle:
        handle.write("\n")
    with pytest.raises(BundleError, match="checksum mismatch for ranker.txt"):
        load_bundle(bundle)


def test_rerun_without_new_data_keeps_watermark_and_data_version(run):
    tmp, first, instance = run
    again = materialize(tmp, instance=instance, selection=["raw_items", "raw_interactions"])
    before, after = _metadata(first, "raw_interactions"), _metadata(again, "raw_interactions")
    assert after["new_rows"] == 0
    assert after["watermark_timestamp"] == before["watermark_timestamp"]
    assert after["dagster/row_count"] == before["dagster/row_count"]
    events = [e for e in again.get_asset_materialization_events() if e.asset_key.to_user_string() == "raw_interactions"]
    first_events = [e for e in first.get_asset_materialization_events()
                    if e.asset_key.to_user_string() == "raw_interactions"]
    assert events[0].materialization.tags["dagster/data_version"] == first_events[0].materialization.tags[
        "dagster/data_version"]


def test_failed_extraction_does_not_advance_the_watermark(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "items.csv").write_text("item_id,title\n1,A\n2,B\n")
    (export / "interactions.csv").write_text("user_id,item_id,timestamp\nu,1,10\nu,2,20\n")
    source = {"kind": "export", "export_dir": str(export)}
    ok = materialize(tmp_path, selection=["raw_items", "raw_interactions"], **source)
    assert ok.success
    watermark = (tmp_path / "data" / "raw" / "interactions" / "watermark.json").read_text()
    # a later export is broken: the run fails, the stored table and watermark stay as they were
    (export / "interactions.csv").write_text("user_id,item_id\nu,3\n")
    failed = materialize(tmp_path, selection=["raw_interactions"], **source)
    assert not failed.success
    assert (tmp_path / "data" / "raw" / "interactions" / "watermark.json").read_text() == watermark
    # new valid rows then arrive and are appended
    (export / "interactions.csv").write_text("user_id,item_id,timestamp\nu,1,10\nu,2,20\nv,1,30\n")
    again = materialize(tmp_path, selection=["raw_interactions"], **source)
    assert _metadata(again, "raw_interactions")["new_rows"] == 1
    assert json.loads((tmp_path / "data" / "raw" / "interactions" / "watermark.json").read_text())[
        "max_timestamp"] == 30
    assert np.isfinite(_metadata(again, "raw_interactions")["watermark_timestamp"])


def _step_events(result, event_type: str) -> list[str]:
    return [e.step_key for e in result.all_events if e.event_type_value == event_type]


def test_a_failed_evaluation_shard_is_retried_alone_and_named(tmp_path, monkeypatch):
    tmp, instance = tmp_path, dg.DagsterInstance.ephemeral()
    assert materialize(tmp, instance=instance,
                       selection=dg.AssetSelection.assets("evaluation_summary").upstream()).success
    summary_before = json.loads((tmp / "data" / "evaluation" / "summary.json").read_text())
    real = evaluation_defs.served_lists
    failures = {"left": 1}

    def fails_on_the_second_shard(recommender, split, users):
        if users[0] == user_shards(split, 2)[1][0] and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("worker lost")
        return real(recommender, split, users)

    monkeypatch.setattr(evaluation_defs, "served_lists", fails_on_the_second_shard)
    retried = materialize(tmp, instance=instance, selection=["evaluation_summary"])
    assert retried.success
    shard_1 = "evaluation_summary.evaluation_shard_1"
    assert _step_events(retried, "STEP_UP_FOR_RETRY") == [shard_1]
    assert _step_events(retried, "STEP_RESTARTED") == [shard_1]
    assert sorted(_step_events(retried, "STEP_SUCCESS")) == [
        "evaluation_summary.evaluation_report", "evaluation_summary.evaluation_shard_0", shard_1]
    summary_after = json.loads((tmp / "data" / "evaluation" / "summary.json").read_text())
    assert ({k: v for k, v in summary_after.items() if k != "seconds"}
            == {k: v for k, v in summary_before.items() if k != "seconds"})

    failures["left"] = 10  # more than the retries: the run fails, naming the shard
    failed = materialize(tmp, instance=instance, selection=["evaluation_summary"])
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == shard_1
    error = failure.event_specific_data.error.to_string()
    assert "Exceeded max_retries of 1" in error and "evaluation shard 1 of 2 (" in error and "worker lost" in error
