"""LightGBM ranker trained on recall candidates labelled with the validation cut."""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from recsys_runtime.candidates import Candidates, Requests, feature_names, generate
from recsys_runtime.components import Components
from recsys_training.detail_next import next_item_cases

# Each choice is cross-validated on the user folds (raced on the first: ``DEFAULT_RACE_Z``) and
# the one with the best out-of-fold ndcg@10 is fitted: rank_xendcg won on the sample and
# lambdarank on a synthetic set, and the out-of-fold ndcg@10 ranked them as the test parts did on
# both (README, "Rankers").
_SAMPLING = {"learning_rate": 0.05, "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1}
RANKER_CHOICES = {
    "rank_xendcg": {"objective": "rank_xendcg", "num_leaves": 15, "min_data_in_leaf": 100, **_SAMPLING},
    "lambdarank": {"objective": "lambdarank", "num_leaves": 31, "min_data_in_leaf": 50,
                   "lambdarank_truncation_level": 20, **_SAMPLING},
}
DEFAULT_CHOICES = ("rank_xendcg", "lambdarank")
# the training requests' defaults: users sampled, next-item pages per user and in all (README, "Rankers")
DEFAULT_MAX_USERS, DEFAULT_PAGES_PER_USER, DEFAULT_MAX_PAGES = 2_000, 5, 8_000
DEFAULT_PARAMS = RANKER_CHOICES["rank_xendcg"]
# rounds without a better out-of-fold ndcg@10 before a fold stops
DEFAULT_PATIENCE = 100
# the share of negative candidate rows the rankers learn from, every positive kept (README, "Rankers")
DEFAULT_NEGATIVE_FRACTION = 1.0
# how far behind the leader's first fold (a paired z of per-query ndcg@10) a choice stops; None:
# never (README, "Rankers": over 24 choices measured, 1.0 never changed the choice)
DEFAULT_RACE_Z = 1.0
RUNTIME_PARAMS = {"num_threads": 2, "verbose": -1}  # how it runs, not what it learns


@dataclass
class TrainingSet:
    candidates: Candidates
    labels: np.ndarray
    user_ids: np.ndarray


def user_requests(components: Components, user_ids: np.ndarray) -> Requests:
    """Requests for known users: their whole history, anchored on their latest item."""
    rows = components.histories.user_index(user_ids)
    if (rows < 0).any():
        raise KeyError(f"{int((rows < 0).sum())} users have no history in the components")
    histories, stamps = zip(*(components.histories.row(r) for r in rows), strict=True)
    return Requests(
        histories=list(histories),
        anchors=np.array([h[-1] for h in histories], dtype=np.int64),
        as_of=np.array([s[-1] for s in stamps], dtype=np.int64),
        exclude=[np.empty(0, np.int64)] * len(rows),
    )


# suffixes of the ids of next-item training requests: a page with the user (at the user's last
# interaction), a page without one asked as the service asks /similar (at the log's end: the
# service cannot know a user's time), and the first of those pages at the user's time, which the
# ranker of requests with a user learns from (README, "Rankers")
NEXT, SIMILAR, PAGE_AT_USER_TIME = "#next", "#similar", "#page"


def _next_item_requests(components: Components, labels: pd.DataFrame, user_ids: np.ndarray,
                        requests: Requests, kinds: tuple[str, ...],
                        pages_per_user: int = 1) -> tuple[Requests, list[str], list[tuple[int, int]]]:
    """Per user with at least 2 held-out items, more requests as the next-item detail page asks
    them: the history with a held-out item as the page (``next``, at the user's last interaction),
    and (as ``/similar``) that item alone (``similar``, at the log's end, as the service asks it;
    the first page also at the user's time, ``PAGE_AT_USER_TIME``); the held-out items after the
    page are their labels. The pages are the user's first ``pages_per_user`` held-out items (at
    most all but the last). Returns the extended requests, the extra ids and (request row, item)
    positives."""
    cases = next_item_cases(labels)
    rows_of = {u: i for i, u in enumerate(user_ids)}
    histories, anchors, as_of, exclude = list(requests.histories), list(requests.anchors), list(requests.as_of), \
        list(requests.exclude)
    ids, positives = [], []
    for user in cases.users:
        row = rows_of.get(user)
        if row is None:
            continue
        held_out = components.item_index(np.array(cases.ordered[user]))
        for page in range(min(pages_per_user, len(held_out) - 1)):
            anchor = int(held_out[page])
            if anchor < 0:
                continue
            relevant = np.unique(held_out[page + 1:])
            page_only, user_time = np.array([anchor], np.int32), requests.as_of[row]
            asked = []  # (id suffix, history, time) of each request of this page
            if NEXT[1:] in kinds:
                asked.append((NEXT, requests.histories[row], user_time))
            if SIMILAR[1:] in kinds:
                if page == 0:
                    asked.append((PAGE_AT_USER_TIME, page_only, user_time))
                asked.append((SIMILAR, page_only, components.now))
            for suffix, history, time in asked:
                request = len(histories)
                histories.append(history)
                anchors.append(anchor)
                as_of.append(time)
                exclude.append(np.array([anchor], np.int64))
                ids.append(user + suffix + (str(page) if page else ""))
                positives += [(request, int(item)) for item in relevant if item >= 0]
    extended = Requests(histories=histories, anchors=np.array(anchors, np.int64), as_of=np.array(as_of, np.int64),
                        exclude=exclude)
    return extended, ids, positives


def sample_users(user_ids: np.ndarray, max_users: int | None, seed: int) -> np.ndarray:
    """At most ``max_users`` of ``user_ids`` (sorted), drawn without replacement for ``seed``;
    all of them when ``max_users`` is None or not smaller."""
    if max_users is None or len(user_ids) <= max_users:
        return user_ids
    return np.sort(np.random.default_rng(seed).choice(user_ids, size=max_users, replace=False))


def training_set(components: Components, labels: pd.DataFrame, per_route: int = 100,
                 extra: tuple[str, ...] = (), max_users: int | None = None, seed: int = 0,
                 pages_per_user: int = 1, max_pages: int | None = None) -> TrainingSet:
    """Candidates for every user in ``labels`` (user_id, item_id[, timestamp]), labelled 1 when
    held out. ``extra``: also the next-item detail page's requests (``_next_item_requests``):
    ``next`` (anchored outside the history) and/or ``similar`` (no user). ``max_users``: a seeded
    sample of that many users (with their extra requests) instead of all of them, so the cost
    of the candidates and of the ranker's fit stops growing with the users. ``pages_per_user``:
    how many of a user's first held-out items become next-item pages; ``max_pages``: fewer per user
    (at least one) when the users times ``pages_per_user`` would exceed it, so the similar ranker's
    rows stop growing with the users too."""
    unknown = sorted(set(extra) - {NEXT[1:], SIMILAR[1:]})
    if unknown:
        raise ValueError(f"extra training requests {unknown}: use next and/or similar")
    user_ids = np.unique(labels["user_id"].to_numpy().astype(str))
    user_ids = sample_users(user_ids[components.histories.user_index(user_ids) >= 0], max_users, seed)
    if max_pages is not None:
        pages_per_user = min(pages_per_user, max(1, max_pages // max(1, len(user_ids))))
    requests = user_requests(components, user_ids)
    label_users = labels["user_id"].to_numpy().astype(str)
    label_rows = np.searchsorted(user_ids, label_users)
    label_items = components.item_index(labels["item_id"].to_numpy())
    valid = (label_rows < len(user_ids)) & (label_items >= 0)
    valid &= user_ids[np.minimum(label_rows, len(user_ids) - 1)] == label_users
    n_items = len(components.items)
    positive = label_rows[valid].astype(np.int64) * n_items + label_items[valid]
    ids = list(user_ids)
    if extra:
        requests, extra_ids, pairs = _next_item_requests(components, labels, user_ids, requests, extra,
                                                         pages_per_user)
        ids += extra_ids
        if pairs:
            pairs = np.array(pairs, dtype=np.int64)
            positive = np.concatenate([positive, pairs[:, 0] * n_items + pairs[:, 1]])
    candidates = generate(components, requests, per_route)
    keys = candidates.rows.astype(np.int64) * n_items + candidates.items
    is_positive = np.isin(keys, positive)
    return TrainingSet(candidates=candidates, labels=is_positive.astype(np.float32), user_ids=np.array(ids))


def page_only_requests(data: TrainingSet) -> np.ndarray:
    """Per request, whether it is a page without a user (``/similar``'s next-item requests)."""
    return np.array([SIMILAR in u for u in data.user_ids], dtype=bool)


def first_page_requests(data: TrainingSet) -> np.ndarray:
    """Per request, whether it is a user's list or a user's first next-item page at the user's time
    (with the user, or ``PAGE_AT_USER_TIME``): what the ranker of requests with a user learns from
    (``pages_per_user`` adds pages, at the log's end, for the similar ranker)."""
    return np.array(["#" not in u or u.endswith((NEXT, PAGE_AT_USER_TIME)) for u in data.user_ids], dtype=bool)


def _candidate_rows(c: Candidates, keep: np.ndarray, requests: np.ndarray | None = None) -> Candidates:
    """The candidates ``keep`` marks, with ``requests`` as their request rows (their own by default)."""
    return Candidates(rows=c.rows[keep] if requests is None else requests, items=c.items[keep],
                      features=c.features[keep], routes=c.routes[keep], failed_routes=c.failed_routes,
                      route_table=c.route_table)


def requests_of(data: TrainingSet, keep: np.ndarray) -> TrainingSet:
    """The training set of the requests ``keep`` marks, rows renumbered in their order."""
    renumber = np.cumsum(keep) - 1
    c = data.candidates
    rows = keep[c.rows]
    subset = _candidate_rows(c, rows, renumber[c.rows[rows]].astype(c.rows.dtype))
    return TrainingSet(candidates=subset, labels=data.labels[rows], user_ids=data.user_ids[keep])


def sample_negatives(data: TrainingSet, fraction: float, seed: int) -> TrainingSet:
    """Every positive candidate and a seeded ``fraction`` (in (0, 1]) of the negatives, in their order."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"negative_fraction={fraction}: use a share in (0, 1]")
    if fraction == 1.0:
        return data
    # a stream of its own, apart from the folds' draw from ``seed``
    keep = (data.labels > 0) | (np.random.default_rng((seed, 1)).random(len(data.labels)) < fraction)
    return TrainingSet(candidates=_candidate_rows(data.candidates, keep), labels=data.labels[keep],
                       user_ids=data.user_ids)


def _subset(data: TrainingSet, rows_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keep = rows_mask[data.candidates.rows]
    rows = data.candidates.rows[keep]
    order = np.argsort(rows, kind="stable")
    groups = np.bincount(rows, minlength=len(rows_mask))[rows_mask]
    return data.candidates.features[keep][order], data.labels[keep][order], groups[groups > 0]


def ranking_auc(booster, data: TrainingSet) -> float | None:
    """AUC of a booster's scores on the candidates of users with at least one positive: how a
    model trained elsewhere (the champion) ranks this training set's labels. The booster reads its
    own features by name, so a champion with fewer routes is scored on its columns; None when it
    needs a feature this set does not have (a route the challenger lacks)."""
    names = list(feature_names(data.candidates.route_table))
    wanted = list(booster.feature_name())
    if not set(wanted) <= set(names):
        return None
    columns = [names.index(name) for name in wanted]
    positives = np.bincount(data.candidates.rows, weights=data.labels, minlength=len(data.user_ids))
    rows = np.flatnonzero(positives[data.candidates.rows] > 0)
    return float(roc_auc_score(data.labels[rows], booster.predict(data.candidates.features[np.ix_(rows, columns)])))


def _fit_in_process(config: dict, x: np.ndarray, y: np.ndarray, groups: np.ndarray, names: list[str],
                    rounds: int) -> lgb.Booster:
    return lgb.train(config, lgb.Dataset(x, y, group=groups, feature_name=names), num_boost_round=rounds)


def query_ndcg(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int = 10) -> np.ndarray:
    """Each query's ndcg@k as LightGBM's ``ndcg`` metric computes it for binary labels: gain 1 for
    a relevant item at rank r (0-based) discounted by log2(r + 2), over the ideal; ``groups`` are
    the queries' row counts, in order, each with at least one relevant row."""
    query = np.repeat(np.arange(len(groups)), groups)
    starts = np.concatenate([[0], np.cumsum(groups)[:-1]])
    order = np.lexsort((-scores, query))
    rank = np.arange(len(scores)) - starts[query]
    discount = np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)
    dcg = np.bincount(query, weights=labels[order] * discount, minlength=len(groups))
    relevant = np.bincount(query, weights=labels, minlength=len(groups)).astype(np.int64)
    ideal = np.cumsum(np.concatenate([[0.0], 1.0 / np.log2(np.arange(k) + 2.0)]))[np.minimum(relevant, k)]
    return dcg / ideal


def _fold_fit(data: TrainingSet, useful: np.ndarray, fold_of: np.ndarray, fold: int, config: dict,
              max_rounds: int, patience: int) -> tuple[int, float, float, np.ndarray]:
    """One cross-validation fold: its best round, its best ndcg@10, its AUC at that round, and
    each validation query's ndcg@10 at that round."""
    names = list(feature_names(data.candidates.route_table))
    x_train, y_train, g_train = _subset(data, useful & (fold_of != fold))
    x_valid, y_valid, g_valid = _subset(data, useful & (fold_of == fold))
    train_set = lgb.Dataset(x_train, y_train, group=g_train, feature_name=names)
    valid_set = lgb.Dataset(x_valid, y_valid, group=g_valid, reference=train_set)
    booster = lgb.train({**config, "metric": "ndcg", "ndcg_eval_at": [10]}, train_set,
                        num_boost_round=max_rounds, valid_sets=[valid_set],
                        callbacks=[lgb.early_stopping(patience, verbose=False)])
    scores = booster.predict(x_valid, num_iteration=booster.best_iteration)
    auc = roc_auc_score(y_valid, scores)
    return booster.best_iteration, booster.best_score["valid_0"]["ndcg@10"], auc, query_ndcg(scores, y_valid, g_valid)


def race_statistics(first_fold: dict[str, np.ndarray]) -> dict[str, float]:
    """For each choice, how far it is behind the leader on the first fold (the best mean
    ndcg@10): the mean of the per-query differences over their standard error, a paired z (0 for
    the leader and for a choice whose every query ties with it)."""
    leader = max(first_fold, key=lambda name: first_fold[name].mean())

    def behind(values: np.ndarray) -> float:
        gaps = first_fold[leader] - values
        spread = gaps.std(ddof=1) / np.sqrt(len(gaps)) if len(gaps) > 1 else 0.0
        return float(gaps.mean() / spread) if spread > 0 else (float("inf") if gaps.mean() > 0 else 0.0)

    return {name: behind(values) for name, values in first_fold.items()}


def _cross_validate(data: TrainingSet, useful: np.ndarray, fold_of: np.ndarray, folds: int,
                    configs: dict[str, dict], max_rounds: int, patience: int,
                    race_z: float | None = None) -> tuple[dict[str, dict], dict | None]:
    """Every choice's folds, one after another: LightGBM's thread count is process-wide state,
    and two fits in threads of one process crashed it (README, "Rankers"). With more than one
    choice, the first fold is a race (``race_statistics``); with ``race_z``, a choice further
    behind the leader than that fits no other fold and cannot be chosen. Returns each choice's
    results and the race (None for one choice)."""
    fits = {name: [_fold_fit(data, useful, fold_of, 0, config, max_rounds, patience)] for name, config in configs.items()}
    if len(configs) == 1:
        behind, dropped = {}, set()
    else:
        behind = race_statistics({name: f[0][3] for name, f in fits.items()})
        dropped = {name for name, z in behind.items() if race_z is not None and z > race_z}
    for name, config in configs.items():
        if name not in dropped:
            fits[name] += [_fold_fit(data, useful, fold_of, fold, config, max_rounds, patience)
                           for fold in range(1, folds)]
    results = {}
    for name, fitted in fits.items():
        best_rounds, ndcgs, aucs, _ = zip(*fitted, strict=True)
        results[name] = {"fold_best_rounds": list(best_rounds), "fold_ndcg@10": [round(float(n), 6) for n in ndcgs],
                         "auc": float(np.mean(aucs)), "valid_ndcg@10": float(np.mean(ndcgs))}
    # a choice raced out has its first fold's ndcg@10 as its "valid_ndcg@10"
    race = ({"behind": {name: round(z, 3) for name, z in behind.items()}, "raced_out": sorted(dropped)}
            if behind else None)
    return results, race


def train_ranker(data: TrainingSet, seed: int = 0, params: dict | None = None,
                 folds: int = 3, max_rounds: int = 1000, patience: int = DEFAULT_PATIENCE,
                 final_fit=_fit_in_process, choices: tuple[str, ...] | None = None,
                 negative_fraction: float = DEFAULT_NEGATIVE_FRACTION,
                 race_z: float | None = DEFAULT_RACE_Z) -> tuple[lgb.Booster, dict]:
    """A LightGBM ranker on users with at least one positive candidate: ``DEFAULT_PARAMS``, or,
    given ``choices`` (names in ``RANKER_CHOICES``), the choice with the best out-of-fold
    ndcg@10; ``params`` updates either.

    The number of rounds is chosen by early stopping (``patience`` rounds) on ``folds`` user folds (one validation
    user set is too small and noisy to trust); the final model is refitted on all users with the
    mean best round, by ``final_fit`` (in this process, or ``distributed_ranker.dask_final_fit``).
    AUC and ndcg@10 are measured out of fold. With ``negative_fraction`` below 1 every step
    learns from that seeded share of the negative candidate rows (``sample_negatives``). With
    ``race_z``, a choice whose first fold is that far behind the leader's fits no other fold
    (``_cross_validate``).
    """
    unknown = sorted(set(choices or ()) - set(RANKER_CHOICES))
    if unknown:
        raise ValueError(f"ranker choices {unknown}: use {sorted(RANKER_CHOICES)}")
    if race_z is not None and race_z < 0:
        raise ValueError(f"race_z={race_z}: use a distance behind the leader >= 0, or None for no race")
    data = sample_negatives(data, negative_fraction, seed)
    positives = np.bincount(data.candidates.rows, weights=data.labels, minlength=len(data.user_ids))
    useful = positives > 0
    # a user's next-item requests share the user's fold, so early stopping never sees a user twice
    base_ids, base_row = np.unique([u.split("#")[0] for u in data.user_ids], return_inverse=True)
    fold_of = np.random.default_rng(seed).integers(0, folds, len(base_ids))[base_row]
    candidates = ({name: {**RANKER_CHOICES[name], **(params or {})} for name in choices} if choices
                  else {"given": {**DEFAULT_PARAMS, **(params or {})}})
    configs = {name: {**learned, **RUNTIME_PARAMS, "seed": seed, "deterministic": True}
               for name, learned in candidates.items()}
    results, race = _cross_validate(data, useful, fold_of, folds, configs, max_rounds, patience, race_z)
    standing = [name for name in results if not race or name not in race["raced_out"]]
    chosen = max(standing, key=lambda name: results[name]["valid_ndcg@10"])  # the first on a tie
    learned, measured, config = candidates[chosen], results[chosen], configs[chosen]
    rounds = max(10, int(np.mean(measured["fold_best_rounds"])))
    x_all, y_all, g_all = _subset(data, useful)
    final = final_fit(config, x_all, y_all, g_all, list(feature_names(data.candidates.route_table)), rounds)
    info = {
        "rounds": rounds,
        "patience": patience,
        "negative_fraction": negative_fraction,
        "race_z": race_z,
        "params": learned,
        **measured,
        "choices": {name: round(r["valid_ndcg@10"], 6) for name, r in results.items()} if choices else None,
        "race": race,
        "users": int(len(g_all)),
        "rows": int(len(y_all)),
        "positive_rate": float(y_all.mean()),
        "labels_in_candidates": int(data.labels.sum()),
        "requests": {kind: int(sum(suffix in u for u in data.user_ids)) for kind, suffix in
                     (("next_item", NEXT), ("similar", SIMILAR), ("page_at_user_time", PAGE_AT_USER_TIME))} | {
            "user": int(sum("#" not in u for u in data.user_ids))},
    }
    return final, info


@dataclass
class Rankers:
    """The ranker of requests with a history of their own and, when trained, the ranker of pages
    without a user (``/similar``), each with its ``train_ranker`` info."""

    user: lgb.Booster
    user_info: dict
    similar: lgb.Booster | None = None
    similar_info: dict | None = None


def train_rankers(data: TrainingSet, seed: int = 0, choices: tuple[str, ...] | None = None,
                  params: dict | None = None, similar_ranker: bool = True,
                  final_fit=_fit_in_process, patience: int = DEFAULT_PATIENCE,
                  negative_fraction: float = DEFAULT_NEGATIVE_FRACTION,
                  race_z: float | None = DEFAULT_RACE_Z) -> Rankers:
    """The pipeline's rankers (README, "Rankers"): the user ranker learns from the users' lists and
    their first pages (``first_page_requests``); with ``similar_ranker`` and pages without a user
    in ``data``, a second ranker learns from those pages alone (``page_only_requests``). The other
    arguments go to ``train_ranker`` for both."""
    user, user_info = train_ranker(requests_of(data, first_page_requests(data)), seed=seed, params=params,
                                   final_fit=final_fit, choices=choices, patience=patience,
                                   negative_fraction=negative_fraction, race_z=race_z)
    rankers = Rankers(user, user_info)
    page_only = page_only_requests(data)
    if similar_ranker and page_only.any():
        rankers.similar, rankers.similar_info = train_ranker(requests_of(data, page_only), seed=seed, params=params,
                                                             final_fit=final_fit, choices=choices, patience=patience,
                                                             negative_fraction=negative_fraction, race_z=race_z)
    return rankers
