"""Recall candidates with validation labels, the LightGBM ranker and the servable bundle."""


import time

import dagster as dg
import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_assets import settings
from recsys_assets.defs.resources import DaskResource, StorageResource
from recsys_runtime.bundle import save_bundle
from recsys_runtime.candidates import STATE_HISTORY
from recsys_runtime.compiled_ranker import serving_ranker
from recsys_runtime.components import Components, ItemTimeline
from recsys_runtime.content_index import ContentIndex
from recsys_runtime.recommender import Recommender
from recsys_runtime.sequential import SequentialModel
from recsys_training.components_fit import assemble_components, collaborative_description, fold_items
from recsys_training.distributed_ranker import dask_final_fit
from recsys_training.images import ImageVectors
from recsys_training.ranker import DEFAULT_PAGES_PER_USER, Rankers, TrainingSet, train_rankers, training_set
from recsys_training.split import SERVING, VALIDATION, Split


def _components(fold: str, split: dict[str, Split], raw_items: pd.DataFrame, collaborative_index: dict,
                covisitation_index: dict, content_index: dict, popular_items: dict,
                images: ImageVectors, sequential: dict) -> Components:
    train = split[fold].train
    return assemble_components(train, raw_items, fold_items(train), collaborative_index[fold],
                               covisitation_index[fold], content_index[fold], popular_items[fold], images.vectors,
                               sequential[fold])


class TrainingRequestsConfig(dg.Config):
    """Which requests the ranker learns from besides every validation user's list: the next-item
    detail page's, ``next`` (with the user) and ``similar`` (without, as /similar asks). The
    default, ``similar``, is what measured best (README, "Detail page, next item").
    ``max_users``: learn from a seeded sample of that many users (0: all of them).
    ``pages_per_user``: how many of a user's first held-out items become next-item pages.
    ``max_pages``: at most this many pages in all (fewer per user above it; 0: no limit)."""

    extra: list[str] = ["similar"]
    max_users: int = settings.ranker_max_users()
    pages_per_user: int = DEFAULT_PAGES_PER_USER
    max_pages: int = settings.ranker_max_pages()


@dg.asset(group_name="ranking", kinds={"numpy"})
def recall_candidates(
    context: dg.AssetExecutionContext,
    config: TrainingRequestsConfig,
    interactions_split: dict[str, Split],
    raw_items: pd.DataFrame,
    item_features: pd.DataFrame,
    user_features: pd.DataFrame,
    collaborative_index: dict[str, sp.csr_matrix],
    covisitation_index: dict[str, sp.csr_matrix],
    content_index: dict[str, ContentIndex],
    popular_items: dict[str, ItemTimeline],
    item_image_vectors: ImageVectors,
    sequential_model: dict[str, SequentialModel | None],
) -> TrainingSet:
    """Candidates of every route for the validation users, each with its route scores and
    features, labelled 1 when the user consumed it in the validation cut."""
    started = time.perf_counter()
    components = _components(VALIDATION, interactions_split, raw_items, collaborative_index,
                             covisitation_index, content_index, popular_items, item_image_vectors, sequential_model)
    data = training_set(components, interactions_split[VALIDATION].test, extra=tuple(config.extra),
                        max_users=config.max_users or None, seed=settings.seed(),
                        pages_per_user=config.pages_per_user, max_pages=config.max_pages or None)
    rows = []
    for bit, route in enumerate(r.name for r in data.candidates.route_table):
        proposed = ((data.candidates.routes >> bit) & 1).astype(bool)
        rows.append({"route": route, "candidates": int(proposed.sum()),
                     "labels_found": int(data.labels[proposed].sum())})
    held_out = len(interactions_split[VALIDATION].test)
    user_rows = np.flatnonzero(["#" not in u for u in data.user_ids])
    extra_requests = int(len(data.user_ids) - len(user_rows))
    context.add_output_metadata({
        "dagster/row_count": len(data.labels),
        "users": len(user_rows),
        "max_users": config.max_users or "all",
        "candidates_per_user": float(len(data.labels) / max(1, len(data.user_ids))),
        "label_recall": float(data.labels[np.isin(data.candidates.rows, user_rows)].sum() / max(1, held_out)),
        "requests": dg.MetadataValue.json({"user": len(user_rows), "next_item_and_similar": extra_requests}),
        "routes": dg.MetadataValue.md(pd.DataFrame(rows).to_markdown(index=False)),
        "seconds": round(time.perf_counter() - started, 2),
    })
    return data


class RankerConfig(dg.Config):
    """``choices``: the LightGBM settings (``ranker.RANKER_CHOICES``) each ranker is
    cross-validated with on the validation users; the best out-of-fold ndcg@10 is fitted (README,
    "Rankers"). ``similar_ranker``: a second ranker, trained on the requests without a user only,
    ranks the requests whose only history is their page. ``patience``: rounds without a better
    out-of-fold ndcg@10 before a fold stops. ``negative_fraction``: the seeded share of negative
    candidate rows the rankers learn from (every positive kept). ``race_z``: a choice whose first
    fold is further behind the leader's than this paired z fits no other fold; None: no race."""

    choices: list[str] = settings.ranker_choices()
    similar_ranker: bool = True
    patience: int = settings.ranker_patience()
    negative_fraction: float = settings.ranker_negative_fraction()
    race_z: float | None = settings.ranker_race_z()


def _train(data: TrainingSet, config: RankerConfig, dask: DaskResource) -> Rankers:
    choices = tuple(config.choices)
    if dask.scheduler:
        with dask.client() as client:
            rankers = train_rankers(data, seed=settings.seed(), choices=choices, similar_ranker=config.similar_ranker,
                                    final_fit=dask_final_fit(client), patience=config.patience,
                                    negative_fraction=config.negative_fraction, race_z=config.race_z)
            trained_on = f"dask, {len(client.scheduler_info()['workers'])} workers"
    else:
        rankers = train_rankers(data, seed=settings.seed(), choices=choices, similar_ranker=config.similar_ranker,
                                patience=config.patience, negative_fraction=config.negative_fraction,
                                race_z=config.race_z)
        trained_on = "in process"
    for info in (rankers.user_info, rankers.similar_info):
        if info is not None:
            info["trained_on"] = trained_on
    return rankers


def _importance(booster: lgb.Booster) -> dg.MetadataValue:
    gain = booster.feature_importance("gain")
    importance = pd.DataFrame({"feature": booster.feature_name(), "gain_share": np.round(gain / max(gain.sum(), 1e-12), 4)})
    return dg.MetadataValue.md(importance.sort_values("gain_share", ascending=False).head(12).to_markdown(index=False))


@dg.asset(group_name="ranking", kinds={"lightgbm"})
def ranking_model(context: dg.AssetExecutionContext, config: RankerConfig, dask: DaskResource,
                  recall_candidates: TrainingSet) -> dict:
    """LightGBM rankers (``RankerConfig``) over the candidates: one for requests with a user and,
    when there are requests without one, one for those (every page of ``pages_per_user``); rounds
    chosen by early stopping on user folds; the final fit on the Dask cluster (LightGBM's Dask
    interface) when one is configured. Their parameters go into the bundle manifest and MLflow."""
    started = time.perf_counter()
    rankers = _train(recall_candidates, config, dask)
    booster, info = rankers.user, rankers.user_info
    out = {"model": booster.model_to_string(), "info": info}
    metadata = {
        **{k: v for k, v in info.items() if not isinstance(v, list | dict)},
        "fold_best_rounds": str(info["fold_best_rounds"]),
        "params": dg.MetadataValue.json(info["params"]),
        "choices_valid_ndcg@10": dg.MetadataValue.json(info["choices"] or {}),
        "choices_race": dg.MetadataValue.json(info["race"] or {}),
        "requests": dg.MetadataValue.json(info["requests"]),
        "feature_importance": _importance(booster),
    }
    if rankers.similar is not None:
        similar, similar_info = rankers.similar, rankers.similar_info
        out |= {"similar_model": similar.model_to_string(), "similar_info": similar_info}
        metadata |= {"similar_rounds": similar_info["rounds"], "similar_auc": similar_info["auc"],
                     "similar_objective": similar_info["params"]["objective"],
                     "similar_valid_ndcg@10": similar_info["valid_ndcg@10"],
                     "similar_requests": similar_info["requests"]["similar"],
                     "similar_feature_importance": _importance(similar)}
    context.add_output_metadata({**metadata, "seconds": round(time.perf_counter() - started, 2)})
    return out


class BundleConfig(dg.Config):
    per_route: int = 100  # candidates each recall route proposes per request when serving


@dg.asset(group_name="ranking", kinds={"filesystem"})
def model_bundle(
    context: dg.AssetExecutionContext,
    config: BundleConfig,
    storage: StorageResource,
    interactions_split: dict[str, Split],
    raw_items: pd.DataFrame,
    collaborative_index: dict[str, sp.csr_matrix],
    covisitation_index: dict[str, sp.csr_matrix],
    content_index: dict[str, ContentIndex],
    popular_items: dict[str, ItemTimeline],
    item_image_vectors: ImageVectors,
    sequential_model: dict[str, SequentialModel | None],
    ranking_model: dict,
) -> str:
    """Serving-fold routes plus the ranker in ``models/bundles/<version>`` with a checksummed
    manifest; returns the bundle directory."""
    components = _components(SERVING, interactions_split, raw_items, collaborative_index,
                             covisitation_index, content_index, popular_items, item_image_vectors, sequential_model)
    booster = lgb.Booster(model_str=ranking_model["model"])
    similar_booster = (lgb.Booster(model_str=ranking_model["similar_model"]) if "similar_model" in ranking_model
                       else None)
    version = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + context.run_id[:8]
    target = storage.bundles() / version
    # the stored lists are ranked by the rankers the service will use
    ranker = serving_ranker(booster, settings.ranker_cache())
    similar_ranker = serving_ranker(similar_booster, settings.ranker_cache()) if similar_booster is not None else None
    recommender = Recommender(components=components, ranker=ranker, similar_ranker=similar_ranker, version=version,
                              per_route=config.per_route)
    precompute_started = time.perf_counter()
    precomputed = recommender.precompute_similar(settings.similar_precompute_items())
    precompute_seconds = time.perf_counter() - precompute_started
    manifest = save_bundle(components, booster, target, {
        "version": version, "run_id": context.run_id, "ranker": ranking_model["info"],
        "similar_ranker": ranking_model.get("similar_info"),
        "per_route": config.per_route, "code_version": _code_version(), "similar_precomputed": precomputed,
        "collaborative": collaborative_description(), "state_history": STATE_HISTORY,
        "text_encoder": {"model": "all-MiniLM-L6-v2", "weights": settings.text_encoder_weights()},
        "image_route": ({"skipped": item_image_vectors.skipped} if item_image_vectors.skipped else
                        {"model": item_image_vectors.model, "items_with_vectors": len(item_image_vectors.vectors),
                         "images_rejected": len(item_image_vectors.rejected)}),
    }, similar=recommender.similar_table, catalog=raw_items, similar_ranker=similar_booster)
    size = sum(p.stat().st_size for p in target.iterdir())
    context.add_output_metadata({
        "version": version, "path": dg.MetadataValue.path(str(target)), "items": manifest["items"],
        "users": manifest["users"], "size_mb": round(size / 1e6, 2),
        "files": dg.MetadataValue.json(manifest["files"]),
        "similar_precomputed_items": precomputed, "similar_precompute_seconds": round(precompute_seconds, 1),
    })
    return str(target)


def _code_version() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=settings.PROJECT_ROOT, check=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
