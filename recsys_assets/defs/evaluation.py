"""Offline evaluation of the bundle through the runtime recommender, beside the baselines."""


import json

import dagster as dg
import pandas as pd

from recsys_assets import settings
from recsys_assets.defs.resources import StorageResource
from recsys_assets.table_io import ONLY_KEYS
from recsys_runtime.bundle import load_bundle
from recsys_training.evaluation import PER_USER, evaluate, markdown_table, without_per_user
from recsys_training.sharded_recommender import ShardedRecommender
from recsys_training.split import SERVING, Split


class EvaluationConfig(dg.Config):
    """``workers``: processes the model's lists are split over by user (RECSYS_EVAL_WORKERS; 1 keeps
    them in process; a step inside a Dask or multiprocess worker always stays in process), for
    calls of at least ``min_shard_requests`` requests. The lists are the same either way."""

    workers: int = settings.evaluation_workers()
    min_shard_requests: int = 1_000


@dg.asset(group_name="evaluation", kinds={"json"},
          ins={"interactions_split": dg.AssetIn(metadata={ONLY_KEYS: [SERVING]})})
def evaluation_summary(context: dg.AssetExecutionContext, config: EvaluationConfig, storage: StorageResource,
                       model_bundle: str, interactions_split: dict[str, Split], ranking_model: dict) -> dict:
    """ndcg/recall/hr/coverage@10 of the served recommender, of each route alone and of the
    baselines (most popular, item-kNN, EASE), for user and detail-page lists, and for the next-item
    detail page (``detail_next``). summary.json holds
    the aggregates; per_user.parquet each user's ndcg and recall, which the gate compares paired."""
    recommender = load_bundle(model_bundle, ranker_cache=settings.ranker_cache())
    with ShardedRecommender(recommender, model_bundle, config.workers, config.min_shard_requests,
                            settings.ranker_cache()) as sharded:
        summary = evaluate(sharded, interactions_split[SERVING])
    summary["ranking_auc"] = ranking_model["info"]["auc"]
    summary["bundle"] = model_bundle
    path = storage.path("evaluation", "summary.json")
    path.write_text(json.dumps(without_per_user(summary), indent=2))
    per_user_path = storage.path("evaluation", "per_user.parquet")
    per_user_table(summary).to_parquet(per_user_path)
    user, detail, detail_next = summary["user"]["model"], summary["detail"]["model"], summary["detail_next"]
    context.add_output_metadata({
        "user_ndcg@10": user["ndcg@10"], "user_recall@10": user["recall@10"], "user_hr@10": user["hr@10"],
        "detail_ndcg@10": detail["ndcg@10"], "detail_recall@10": detail["recall@10"],
        "detail_next_ndcg@10": detail_next["model"]["ndcg@10"], "detail_next_recall@10": detail_next["model"]["recall@10"],
        "similar_next_ndcg@10": detail_next["similar"]["ndcg@10"],
        "ranking_auc": summary["ranking_auc"], "evaluated_users": user["users"],
        "model_version": recommender.version, "path": dg.MetadataValue.path(str(path)),
        "per_user_path": dg.MetadataValue.path(str(per_user_path)),
        "user_table": dg.MetadataValue.md(markdown_table(summary, "user")),
        "detail_table": dg.MetadataValue.md(markdown_table(summary, "detail")),
        "detail_next_table": dg.MetadataValue.md(markdown_table(summary, "detail_next")),
        "seconds": summary["seconds"], "workers": sharded.workers, "sharded_calls": sharded.sharded_calls,
    })
    return summary


def per_user_table(summary: dict) -> pd.DataFrame:
    """One row per evaluated user: the model's and each baseline's user-list ndcg and recall."""
    per_user = summary[PER_USER]
    columns = {"user_id": per_user["users"]}
    for name, values in (("model", per_user["model"]), *per_user["baselines"].items()):
        for metric, array in values.items():
            columns[f"{name}_{metric}"] = array
    return pd.DataFrame(columns)
