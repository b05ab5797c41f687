"""The "detail page, next item" protocol of shared/EVALUATION.md: the user opens the page of an
item outside their train history (their first test item); the other test items are relevant."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys_training.baselines import ReferenceModels, most_popular, rank_for_pages
from recsys_training.matrix import rows_times
from recsys_training.schema import canonical_order


@dataclass(frozen=True)
class NextItemCases:
    users: np.ndarray  # sorted
    queries: list[str]  # each user's first test item
    relevant: dict[str, set]  # each user's other test items
    ordered: dict[str, list] | None = None  # each user's test items by (timestamp, item_id)


def next_item_cases(test: pd.DataFrame) -> NextItemCases:
    """Users with at least 2 test items; the query is the first by (timestamp, item_id)."""
    ordered = canonical_order(test.assign(user_id=test["user_id"].astype(str), item_id=test["item_id"].astype(str)))
    grouped = ordered.groupby("user_id", sort=True)["item_id"].apply(list)
    grouped = grouped[grouped.map(len) >= 2]
    return NextItemCases(users=grouped.index.to_numpy().astype(str), queries=[items[0] for items in grouped],
                         relevant={u: set(items[1:]) for u, items in grouped.items()},
                         ordered=grouped.to_dict())


def baseline_lists(models: ReferenceModels, cases: NextItemCases, k: int) -> tuple[dict, dict]:
    """(lists by baseline name, skipped reasons): most popular, co-occurrence cosine and EASE row of
    the query (no user), item-kNN and EASE of history plus query."""
    data = models.data
    known = data.item_index(np.array(cases.queries)) >= 0
    if not known.all():
        raise ValueError(f"{int((~known).sum())} next-item queries are not train items; the split drops those")

    def rank(score, with_history: bool) -> dict:
        return rank_for_pages(data, cases.users, cases.queries, score, k, with_history)

    lists = {"most_pop": most_popular(data, cases.users, k, cases.queries)}
    skipped = {}
    if models.cosine is None:
        skipped.update({name: models.cosine_skipped for name in ("cooccurrence_of_query", "item_knn_history_and_query")})
    else:
        lists["cooccurrence_of_query"] = rank(lambda g: rows_times(g, models.cosine), False)
        lists["item_knn_history_and_query"] = rank(lambda g: rows_times(g, models.cosine), True)
    if models.ease is None:
        skipped.update({name: models.ease_skipped for name in ("ease_row_of_query", "ease_history_and_query")})
    else:
        lists["ease_row_of_query"] = rank(lambda g: np.asarray(g @ models.ease), False)
        lists["ease_history_and_query"] = rank(lambda g: np.asarray(g @ models.ease), True)
    return lists, skipped
