"""Offline evaluation of the bundle through the runtime recommender, beside the baselines."""


import json

import dagster as dg

from recsys_assets import settings
from recsys_assets.defs.resources import StorageResource
from recsys_runtime.bundle import load_bundle
from recsys_training.evaluation import evaluate, markdown_table
from recsys_training.split import SERVING, Split


@dg.asset(group_name="evaluation", kinds={"json"})
def evaluation_summary(context: dg.AssetExecutionContext, storage: StorageResource, model_bundle: str,
                       interactions_split: dict[str, Split], ranking_model: dict) -> dict:
    """ndcg/recall/hr/coverage@10 of the served recommender, of each route alone and of the
    baselines (most popular, item-kNN, EASE), for user and detail-page lists."""
    recommender = load_bundle(model_bundle, ranker_cache=settings.ranker_cache())
    summary = evaluate(recommender, interactions_split[SERVING])
    summary["ranking_auc"] = ranking_model["info"]["auc"]
    summary["bundle"] = model_bundle
    path = storage.path("evaluation", "summary.json")
    path.write_text(json.dumps(summary, indent=2))
    user, detail = summary["user"]["model"], summary["detail"]["model"]
    context.add_output_metadata({
        "user_ndcg@10": user["ndcg@10"], "user_recall@10": user["recall@10"], "user_hr@10": user["hr@10"],
        "detail_ndcg@10": detail["ndcg@10"], "detail_recall@10": detail["recall@10"],
        "ranking_auc": summary["ranking_auc"], "evaluated_users": user["users"],
        "model_version": recommender.version, "path": dg.MetadataValue.path(str(path)),
        "user_table": dg.MetadataValue.md(markdown_table(summary, "user")),
        "detail_table": dg.MetadataValue.md(markdown_table(summary, "detail")),
        "seconds": summary["seconds"],
    })
    return summary
