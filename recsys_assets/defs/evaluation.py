"""Offline evaluation of the bundle through the runtime recommender, beside the baselines."""


import json
import time

import dagster as dg
import pandas as pd

from recsys_assets import settings
from recsys_assets.defs.resources import StorageResource
from recsys_assets.table_io import ONLY_KEYS
from recsys_training.evaluation import (
    PER_USER,
    ServedLists,
    markdown_table,
    served_lists,
    summarise,
    user_shards,
    without_per_user,
)
from recsys_training.sharded_recommender import ShardedRecommender
from recsys_training.split import SERVING, Split


class EvaluationShardConfig(dg.Config):
    """``workers``: processes a shard's lists are split over by user (RECSYS_EVAL_WORKERS; 1 keeps
    them in process; a step inside a Dask or multiprocess worker always stays in process), for
    calls of at least ``min_shard_requests`` requests. The lists are the same either way."""

    workers: int = settings.evaluation_workers()
    min_shard_requests: int = 1_000


def evaluation_shard_op(index: int, shards: int) -> dg.OpDefinition:
    """The step that lists shard ``index`` of ``shards`` of the evaluated users; a failure names
    the shard, and a retry (RECSYS_SHARD_RETRIES) reruns this shard alone."""

    @dg.op(name=f"evaluation_shard_{index}", ins={"interactions_split": dg.In(metadata={ONLY_KEYS: [SERVING]})},
           retry_policy=dg.RetryPolicy(max_retries=settings.shard_retries()),
           description=f"The served lists of user shard {index} of {shards} of the evaluation.")
    def evaluation_shard(context: dg.OpExecutionContext, config: EvaluationShardConfig, model_bundle: str,
                         interactions_split: dict[str, Split]) -> ServedLists:
        split = interactions_split[SERVING]
        users = user_shards(split, shards)[index]
        named = f"evaluation shard {index} of {shards} ({len(users)} users" + (
            f", {users[0]} to {users[-1]})" if len(users) else ")")
        started = time.perf_counter()
        try:
            workers = config.workers if len(users) >= config.min_shard_requests else 1
            with ShardedRecommender(model_bundle, workers, config.min_shard_requests,
                                    settings.ranker_cache()) as sharded:
                lists = served_lists(sharded, split, users)
        except Exception as error:
            raise dg.Failure(f"{named} failed: {error!r}", allow_retries=True) from error
        context.add_output_metadata({"users": len(users), "shard": named, "workers": sharded.workers,
                                     "sharded_calls": sharded.sharded_calls,
                                     "seconds": round(time.perf_counter() - started, 2)})
        return lists

    return evaluation_shard


_SHARDS = settings.evaluation_shards()
SHARD_OPS = [evaluation_shard_op(i, _SHARDS) for i in range(_SHARDS)]


# each shard is an input of its own, not one fan-in list: the dask executor runs a step without the
# run's record of which outputs were yielded, and loads a fan-in input as an empty list
@dg.op(ins={"interactions_split": dg.In(metadata={ONLY_KEYS: [SERVING]}),
            **{f"shard_{i}": dg.In(ServedLists) for i in range(_SHARDS)}})
def evaluation_report(context: dg.OpExecutionContext, storage: StorageResource, model_bundle: str,
                      interactions_split: dict[str, Split], ranking_model: dict, **shards: ServedLists) -> dict:
    """The shards' lists merged and scored beside the baselines; summary.json and per_user.parquet."""
    started = time.perf_counter()
    summary = summarise(ServedLists.merge(list(shards.values())), interactions_split[SERVING])
    summary["seconds"] = round(time.perf_counter() - started, 2)
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
        "model_version": summary["model_version"], "path": dg.MetadataValue.path(str(path)),
        "per_user_path": dg.MetadataValue.path(str(per_user_path)),
        "user_table": dg.MetadataValue.md(markdown_table(summary, "user")),
        "detail_table": dg.MetadataValue.md(markdown_table(summary, "detail")),
        "detail_next_table": dg.MetadataValue.md(markdown_table(summary, "detail_next")),
        "shards": len(shards), "merge_seconds": summary["seconds"],
    })
    return summary


@dg.graph_asset(group_name="evaluation", kinds={"json"})
def evaluation_summary(model_bundle: str, interactions_split: dict, ranking_model: dict) -> dict:
    """ndcg/recall/hr/coverage@10 of the served recommender, of each route alone and of the
    baselines (most popular, item-kNN, EASE), for user and detail-page lists, and for the next-item
    detail page (``detail_next``). The served lists come from user shards, a step each
    (RECSYS_EVAL_SHARDS), which the dask and multiprocess executors run side by side. summary.json
    holds the aggregates; per_user.parquet each user's ndcg and recall, which the gate compares paired."""
    shards = {f"shard_{i}": shard(model_bundle, interactions_split) for i, shard in enumerate(SHARD_OPS)}
    return evaluation_report(model_bundle=model_bundle, interactions_split=interactions_split,
                             ranking_model=ranking_model, **shards)


def per_user_table(summary: dict) -> pd.DataFrame:
    """One row per evaluated user: the model's and each baseline's user-list ndcg and recall."""
    per_user = summary[PER_USER]
    columns = {"user_id": per_user["users"]}
    for name, values in (("model", per_user["model"]), *per_user["baselines"].items()):
        for metric, array in values.items():
            columns[f"{name}_{metric}"] = array
    return pd.DataFrame(columns)
