"""Offline evaluation of the served recommender beside the reference baselines."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from recsys_runtime.candidates import route_names
from recsys_runtime.recommender import Recommender
from recsys_training import baselines, detail_next
from recsys_training.metrics import K, aggregate, evaluate_lists, per_user_metrics
from recsys_training.schema import canonical_order
from recsys_training.split import Split

PER_USER = "per_user"


def last_train_items(train: pd.DataFrame) -> dict:
    ordered = canonical_order(train)
    last = ordered.groupby("user_id", sort=False)["item_id"].last()
    return {str(u): str(i) for u, i in last.items()}


def baseline_lists(models: baselines.ReferenceModels, users: np.ndarray, anchors: dict,
                   k: int = K) -> tuple[dict, dict, dict]:
    """(user lists, detail lists, skipped reasons) of most_pop, item_knn and ease."""
    data = models.data
    pages = [anchors[u] for u in users]
    user_lists, detail_lists, skipped = {}, {}, {}
    user_lists["most_pop"] = baselines.most_popular(data, users, k)
    detail_lists["most_pop"] = baselines.rank_for_pages(
        data, users, pages, lambda g: np.repeat(models.popularity, g.shape[0], 0), k)
    if models.cosine is None:
        skipped["item_knn"] = models.cosine_skipped
    else:
        user_lists["item_knn"] = baselines.rank_all(data, users, lambda h: (h @ models.cosine).toarray(), k)
        detail_lists["item_knn"] = baselines.rank_for_pages(data, users, pages,
                                                            lambda g: (g @ models.cosine).toarray(), k)
    if models.ease is None:
        skipped["ease"] = models.ease_skipped
    else:
        user_lists["ease"] = baselines.rank_all(data, users, lambda h: np.asarray(h @ models.ease), k)
        detail_lists["ease"] = baselines.rank_for_pages(data, users, pages, lambda g: np.asarray(g @ models.ease), k)
    return user_lists, detail_lists, skipped


def _as_lists(users: np.ndarray, recs: list) -> dict:
    return {u: r.items for u, r in zip(users, recs, strict=True)}


def _item_lists(users: np.ndarray, variants: dict) -> tuple[dict, int]:
    """Per variant the item lists by user, and how many of the model's lists were fallbacks."""
    fallbacks = sum(r.fallback is not None for r in variants[None])
    return {v: _as_lists(users, recs) for v, recs in variants.items()}, fallbacks


def evaluate(recommender: Recommender, split: Split, with_baselines: bool = True, k: int = K) -> dict:
    """The summary of shared/EVALUATION.md: model, each route alone and baselines, for user and
    detail-page recommendations, all through ``recommender`` (what the service serves).
    ``summary[PER_USER]`` holds each evaluated user's user-list ndcg and recall (model and
    baselines, users sorted) for paired comparisons; ``without_per_user`` drops it."""
    started = time.perf_counter()
    truth = split.test.groupby(split.test["user_id"].astype(str))["item_id"].apply(lambda s: set(s.astype(str))).to_dict()
    users = np.array(sorted(truth))
    anchors = last_train_items(split.train)
    anchor_list = [anchors[u] for u in users]
    n_train_items = int(split.train["item_id"].nunique())

    def score(lists: dict) -> dict:
        return evaluate_lists(lists, truth, n_train_items, k)

    def score_and_pair(lists: dict) -> tuple[dict, dict[str, np.ndarray]]:
        """The aggregates and the per-user ndcg and recall, from one pass over the users."""
        values = per_user_metrics(lists, truth, k)
        paired = {name: values[name] for name in (f"ndcg@{k}", f"recall@{k}")}
        return aggregate(values, lists, truth, n_train_items, k), paired

    variants = (None, *route_names(recommender.routes))
    # each call's lists are kept as item ids only: the recommendations themselves would hold every
    # user's scores and routes for every variant at once
    user_variants, user_fallbacks = _item_lists(users, recommender.recommend_variants(list(users), k=k,
                                                                                      variants=variants))
    detail_variants, detail_fallbacks = _item_lists(users, recommender.recommend_variants(
        list(users), anchor_list, k=k, variants=variants))
    user_model, user_model_paired = score_and_pair(user_variants[None])
    summary = {
        "dataset": {
            "train_interactions": int(len(split.train)),
            "test_interactions": int(len(split.test)),
            "users": int(split.train["user_id"].nunique()),
            "evaluated_users": int(len(users)),
            "train_items": n_train_items,
        },
        "model_version": recommender.version,
        "user": {"model": user_model, "routes": {}, "baselines": {}},
        "detail": {"model": score(detail_variants[None]), "routes": {}, "baselines": {}},
        "similar": {"model": score(_as_lists(users, recommender.recommend_many([None] * len(users), anchor_list, k=k)))},
        "fallbacks": {"user": user_fallbacks, "detail": detail_fallbacks},
        PER_USER: {"users": users.tolist(), "model": user_model_paired, "baselines": {}},
    }
    for route in route_names(recommender.routes):
        summary["user"]["routes"][route] = score(user_variants[route])
        summary["detail"]["routes"][route] = score(detail_variants[route])
    del user_variants, detail_variants
    models = baselines.ReferenceModels.fit(split.train) if with_baselines else None
    cases = detail_next.next_item_cases(split.test)
    next_paired = _evaluate_next(recommender, split, cases, summary, variants, models, n_train_items, k)
    summary[PER_USER]["detail_next"] = {"users": cases.users.tolist(), "model": next_paired}
    if with_baselines:
        user_lists, detail_lists, skipped = baseline_lists(models, users, anchors, k)
        for name, lists in user_lists.items():
            summary["user"]["baselines"][name], summary[PER_USER]["baselines"][name] = score_and_pair(lists)
        summary["detail"]["baselines"] = {name: score(lists) for name, lists in detail_lists.items()}
        for name, reason in skipped.items():
            summary["user"]["baselines"][name] = summary["detail"]["baselines"][name] = {"skipped": reason}
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary


def _evaluate_next(recommender: Recommender, split: Split, cases: detail_next.NextItemCases, summary: dict,
                   variants: tuple, models: baselines.ReferenceModels | None, n_train_items: int,
                   k: int) -> dict[str, np.ndarray]:
    """``summary["detail_next"]``: the served detail list (with the user), each route alone, the
    /similar list (no user) and the baselines on the next-item protocol; returns the model's
    per-user ndcg and recall for paired comparisons."""
    lists_of, _ = _item_lists(cases.users, recommender.recommend_variants(list(cases.users), cases.queries, k=k,
                                                                          variants=variants))
    model_lists = lists_of[None]
    values = per_user_metrics(model_lists, cases.relevant, k)
    # /similar knows no user; as the protocol asks, its list leaves out the user's train items too
    seen = split.train.groupby(split.train["user_id"].astype(str))["item_id"].apply(lambda s: s.astype(str).tolist())
    similar = recommender.recommend_many([None] * len(cases.users), cases.queries, k=k,
                                         exclude=[seen.get(u, []) for u in cases.users])
    section = {"model": aggregate(values, model_lists, cases.relevant, n_train_items, k), "routes": {}, "baselines": {},
               "similar": evaluate_lists(_as_lists(cases.users, similar), cases.relevant, n_train_items, k)}
    for route in route_names(recommender.routes):
        section["routes"][route] = evaluate_lists(lists_of[route], cases.relevant, n_train_items, k)
    if models is not None:
        lists, skipped = detail_next.baseline_lists(models, cases, k)
        section["baselines"] = {name: evaluate_lists(found, cases.relevant, n_train_items, k)
                                for name, found in lists.items()}
        section["baselines"].update({name: {"skipped": reason} for name, reason in skipped.items()})
    summary["detail_next"] = section
    return {name: values[name] for name in (f"ndcg@{k}", f"recall@{k}")}


def without_per_user(summary: dict) -> dict:
    """The summary as summary.json stores it: the aggregates, without the per-user arrays."""
    return {key: value for key, value in summary.items() if key != PER_USER}


def markdown_table(summary: dict, context: str) -> str:
    """One row per system (model, routes, baselines) with the four metrics."""
    section = summary[context]
    lines = [f"| {context} | ndcg@10 | recall@10 | hr@10 | coverage@10 |", "|---|---|---|---|---|"]
    rows = [("**model**", section["model"])]
    if "similar" in section:
        rows.append(("/similar (no user)", section["similar"]))
    rows += [(f"route: {n}", m) for n, m in section.get("routes", {}).items()]
    rows += [(f"baseline: {n}", m) for n, m in section.get("baselines", {}).items()]
    for name, m in rows:
        if "skipped" in m:
            lines.append(f"| {name} | skipped: {m['skipped']} | | | |")
        else:
            lines.append(f"| {name} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {m['hr@10']:.4f} | {m['coverage@10']:.4f} |")
    return "\n".join(lines)


