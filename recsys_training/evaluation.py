"""Offline evaluation of the served recommender beside the reference baselines."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys_runtime.candidates import route_names
from recsys_runtime.recommender import Recommender
from recsys_training import baselines, detail_next
from recsys_training.matrix import rows_times
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
    detail_lists["most_pop"] = baselines.most_popular(data, users, k, pages)
    if models.cosine is None:
        skipped["item_knn"] = models.cosine_skipped
    else:
        user_lists["item_knn"] = baselines.rank_all(data, users, lambda h: rows_times(h, models.cosine), k)
        detail_lists["item_knn"] = baselines.rank_for_pages(data, users, pages,
                                                            lambda g: rows_times(g, models.cosine), k)
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


@dataclass
class ServedLists:
    """What the served recommender listed for some of the evaluated users, as item ids: per page
    (``user``, ``detail``, ``next``: the next-item detail page) and variant (None: the model, a
    route name: that route alone) each user's list; ``similar`` the user-less /similar lists of
    the ``detail`` and ``next`` anchors; and how many model lists were fallbacks."""

    version: str
    routes: tuple[str, ...]
    pages: dict[str, dict[str | None, dict[str, list]]]
    similar: dict[str, dict[str, list]]
    fallbacks: dict[str, int]

    @classmethod
    def merge(cls, parts: list[ServedLists]) -> ServedLists:
        """One object from the lists of disjoint user shards (of one bundle)."""
        if not parts or len({(p.version, p.routes) for p in parts}) != 1:
            raise ValueError(f"cannot merge lists of bundles {sorted({p.version for p in parts})}")
        first = parts[0]
        return cls(
            version=first.version, routes=first.routes,
            pages={page: {v: {u: items for p in parts for u, items in p.pages[page][v].items()} for v in variants}
                   for page, variants in first.pages.items()},
            similar={kind: {u: items for p in parts for u, items in p.similar[kind].items()} for kind in first.similar},
            fallbacks={page: sum(p.fallbacks[page] for p in parts) for page in first.fallbacks},
        )


def evaluated_users(split: Split) -> np.ndarray:
    """The users the protocol evaluates (those with test items), sorted."""
    return np.array(sorted(split.test["user_id"].astype(str).unique()))


def user_shards(split: Split, shards: int) -> list[np.ndarray]:
    """The evaluated users in ``shards`` contiguous, nearly equal parts."""
    return np.array_split(evaluated_users(split), shards)


def served_lists(recommender: Recommender, split: Split, users: np.ndarray | None = None, k: int = K) -> ServedLists:
    """The lists the evaluation scores, for ``users`` (default: every evaluated user). A user's
    lists do not depend on the other users asked, so the lists of disjoint shards, merged, are
    the lists of all users at once."""
    users = evaluated_users(split) if users is None else np.asarray(users, dtype=str)
    train = split.train[split.train["user_id"].astype(str).isin(set(users))]  # a shard reads its own users' rows
    anchors = last_train_items(train)
    variants = (None, *route_names(recommender.routes))
    anchor_list = [anchors[u] for u in users]
    # each call's lists are kept as item ids only: the recommendations themselves would hold every
    # user's scores and routes for every variant at once
    user_pages, user_fallbacks = _item_lists(users, recommender.recommend_variants(list(users), k=k,
                                                                                   variants=variants))
    detail_pages, detail_fallbacks = _item_lists(users, recommender.recommend_variants(
        list(users), anchor_list, k=k, variants=variants))
    similar = _as_lists(users, recommender.recommend_many([None] * len(users), anchor_list, k=k))
    cases = _cases_of(detail_next.next_item_cases(split.test), users)
    next_pages, _ = _item_lists(cases.users, recommender.recommend_variants(list(cases.users), cases.queries, k=k,
                                                                            variants=variants))
    # /similar knows no user; as the protocol asks, its list leaves out the user's train items too
    seen = train.groupby(train["user_id"].astype(str))["item_id"].apply(lambda s: s.astype(str).tolist())
    similar_next = _as_lists(cases.users, recommender.recommend_many(
        [None] * len(cases.users), cases.queries, k=k, exclude=[seen.get(u, []) for u in cases.users]))
    return ServedLists(version=recommender.version, routes=variants[1:],
                       pages={"user": user_pages, "detail": detail_pages, "next": next_pages},
                       similar={"detail": similar, "next": similar_next},
                       fallbacks={"user": user_fallbacks, "detail": detail_fallbacks})


def _cases_of(cases: detail_next.NextItemCases, users: np.ndarray) -> detail_next.NextItemCases:
    keep = np.isin(cases.users, users)
    return detail_next.NextItemCases(users=cases.users[keep],
                                     queries=[q for q, kept in zip(cases.queries, keep, strict=True) if kept],
                                     relevant={u: cases.relevant[u] for u in cases.users[keep]})


def evaluate(recommender: Recommender, split: Split, with_baselines: bool = True, k: int = K) -> dict:
    """The summary of shared/EVALUATION.md: model, each route alone and baselines, for user and
    detail-page recommendations, all through ``recommender`` (what the service serves).
    ``summary[PER_USER]`` holds each evaluated user's user-list ndcg and recall (model and
    baselines, users sorted) for paired comparisons; ``without_per_user`` drops it."""
    started = time.perf_counter()
    summary = summarise(served_lists(recommender, split, k=k), split, with_baselines, k)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary


def summarise(served: ServedLists, split: Split, with_baselines: bool = True, k: int = K) -> dict:
    """``evaluate``'s summary from the served lists of every evaluated user (one call or merged
    shards), with the baselines fitted on the train fold."""
    truth = split.test.groupby(split.test["user_id"].astype(str))["item_id"].apply(lambda s: set(s.astype(str))).to_dict()
    users = np.array(sorted(truth))
    missing = len(set(users) - set(served.pages["user"][None]))
    if missing:
        raise ValueError(f"the served lists miss {missing} of {len(users)} evaluated users")
    n_train_items = int(split.train["item_id"].nunique())

    def score(lists: dict) -> dict:
        return evaluate_lists(lists, truth, n_train_items, k)

    def score_and_pair(lists: dict) -> tuple[dict, dict[str, np.ndarray]]:
        """The aggregates and the per-user ndcg and recall, from one pass over the users."""
        values = per_user_metrics(lists, truth, k)
        paired = {name: values[name] for name in (f"ndcg@{k}", f"recall@{k}")}
        return aggregate(values, lists, truth, n_train_items, k), paired

    user_pages, detail_pages = served.pages["user"], served.pages["detail"]
    user_model, user_model_paired = score_and_pair(user_pages[None])
    summary = {
        "dataset": {
            "train_interactions": int(len(split.train)),
            "test_interactions": int(len(split.test)),
            "users": int(split.train["user_id"].nunique()),
            "evaluated_users": int(len(users)),
            "train_items": n_train_items,
        },
        "model_version": served.version,
        "user": {"model": user_model, "routes": {}, "baselines": {}},
        "detail": {"model": score(detail_pages[None]), "routes": {}, "baselines": {}},
        "similar": {"model": score(served.similar["detail"])},
        "fallbacks": dict(served.fallbacks),
        PER_USER: {"users": users.tolist(), "model": user_model_paired, "baselines": {}},
    }
    for route in served.routes:
        summary["user"]["routes"][route] = score(user_pages[route])
        summary["detail"]["routes"][route] = score(detail_pages[route])
    models = baselines.ReferenceModels.fit(split.train) if with_baselines else None
    cases = detail_next.next_item_cases(split.test)
    next_paired = _summarise_next(served, cases, summary, models, n_train_items, k)
    summary[PER_USER]["detail_next"] = {"users": cases.users.tolist(), "model": next_paired}
    if with_baselines:
        anchors = last_train_items(split.train)
        user_lists, detail_lists, skipped = baseline_lists(models, users, anchors, k)
        for name, lists in user_lists.items():
            summary["user"]["baselines"][name], summary[PER_USER]["baselines"][name] = score_and_pair(lists)
        summary["detail"]["baselines"] = {name: score(lists) for name, lists in detail_lists.items()}
        for name, reason in skipped.items():
            summary["user"]["baselines"][name] = summary["detail"]["baselines"][name] = {"skipped": reason}
    return summary


def _summarise_next(served: ServedLists, cases: detail_next.NextItemCases, summary: dict,
                    models: baselines.ReferenceModels | None, n_train_items: int, k: int) -> dict[str, np.ndarray]:
    """``summary["detail_next"]``: the served detail list (with the user), each route alone, the
    /similar list (no user) and the baselines on the next-item protocol; returns the model's
    per-user ndcg and recall for paired comparisons."""
    lists_of = served.pages["next"]
    model_lists = lists_of[None]
    values = per_user_metrics(model_lists, cases.relevant, k)
    section = {"model": aggregate(values, model_lists, cases.relevant, n_train_items, k), "routes": {}, "baselines": {},
               "similar": evaluate_lists(served.similar["next"], cases.relevant, n_train_items, k)}
    for route in served.routes:
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


