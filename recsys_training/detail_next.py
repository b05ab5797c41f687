"""The "detail page, next item" protocol of shared/EVALUATION.md: the user opens the page of an
item outside their train history (their first test item); the other test items are relevant."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_training import baselines
from recsys_training.collaborative import ease_item_weights
from recsys_training.matrix import InteractionMatrix, top_k_excluding
from recsys_training.schema import canonical_order


@dataclass(frozen=True)
class NextItemCases:
    users: np.ndarray  # sorted
    queries: list[str]  # each user's first test item
    relevant: dict[str, set]  # each user's other test items


def next_item_cases(test: pd.DataFrame) -> NextItemCases:
    """Users with at least 2 test items; the query is the first by (timestamp, item_id)."""
    ordered = canonical_order(test.assign(user_id=test["user_id"].astype(str), item_id=test["item_id"].astype(str)))
    grouped = ordered.groupby("user_id", sort=True)["item_id"].apply(list)
    grouped = grouped[grouped.map(len) >= 2]
    return NextItemCases(users=grouped.index.to_numpy().astype(str), queries=[items[0] for items in grouped],
                         relevant={u: set(items[1:]) for u, items in grouped.items()})


def _ranked(data: InteractionMatrix, cases: NextItemCases, score, k: int, with_history: bool) -> dict:
    """Lists of the cases' users by ``score(rows, query columns)``, excluding the query and (always,
    as the protocol says) the user's train items."""
    rows = data.user_index(cases.users)
    queries = data.item_index(np.array(cases.queries))
    lists = {}
    step = baselines.user_batch(data.matrix.shape[1])
    for start in range(0, len(rows), step):
        batch = slice(start, start + step)
        history = data.matrix[rows[batch]]
        query = sp.csr_matrix((np.ones(len(queries[batch])), (np.arange(len(queries[batch])), queries[batch])),
                              shape=history.shape)
        given = (history + query) if with_history else query
        scores = np.asarray(score(given), dtype=np.float64)
        top = top_k_excluding(scores, (history + query).tocsr(), k)
        for user, cols in zip(cases.users[batch], top, strict=True):
            lists[user] = data.items[cols].tolist()
    return lists


def baseline_lists(train: pd.DataFrame, cases: NextItemCases, k: int) -> tuple[dict, dict]:
    """(lists by baseline name, skipped reasons): most popular, co-occurrence cosine and EASE row of
    the query (no user), item-kNN and EASE of history plus query."""
    data = InteractionMatrix.from_interactions(train)
    known = data.item_index(np.array(cases.queries)) >= 0
    if not known.all():
        raise ValueError(f"{int((~known).sum())} next-item queries are not train items; the split drops those")
    popularity = np.asarray(data.matrix.sum(axis=0), dtype=np.float64)
    cosine = baselines.cosine_similarity(data.matrix)
    lists = {"most_pop": _ranked(data, cases, lambda g: np.repeat(popularity, g.shape[0], 0), k, False),
             "cooccurrence_of_query": _ranked(data, cases, lambda g: (g @ cosine).toarray(), k, False),
             "item_knn_history_and_query": _ranked(data, cases, lambda g: (g @ cosine).toarray(), k, True)}
    skipped = {}
    if data.matrix.shape[1] > baselines.EASE_MAX_ITEMS:
        for name in ("ease_row_of_query", "ease_history_and_query"):
            skipped[name] = f"{data.matrix.shape[1]} items > {baselines.EASE_MAX_ITEMS}"
    else:
        weights = ease_item_weights(data.matrix, 500.0)
        lists["ease_row_of_query"] = _ranked(data, cases, lambda g: np.asarray(g @ weights), k, False)
        lists["ease_history_and_query"] = _ranked(data, cases, lambda g: np.asarray(g @ weights), k, True)
    return lists, skipped
