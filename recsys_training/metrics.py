"""Top-k ranking metrics on the protocol of shared/EVALUATION.md (binary relevance)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

K = 10


def user_metrics(recommended: Sequence, relevant: set, k: int = K) -> tuple[float, float, float]:
    """(recall@k, ndcg@k, hit@k) of one ranked list against one set of relevant items."""
    if not relevant:
        raise ValueError("relevant set is empty: users without test items are not evaluated")
    top = list(recommended)[:k]
    gains = np.array([1.0 if item in relevant else 0.0 for item in top])
    hits = gains.sum()
    ideal = min(k, len(relevant))
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float((gains * discounts[: len(gains)]).sum())
    idcg = float(discounts[:ideal].sum())
    return float(hits / ideal), dcg / idcg, float(hits > 0)


def per_user_metrics(
    lists: Mapping[object, Sequence],
    truth: Mapping[object, Iterable],
    k: int = K,
) -> dict[str, np.ndarray]:
    """recall@k, ndcg@k and hr@k of each user in ``truth`` (in its order); a user with no list scores zero."""
    values = np.array([user_metrics(list(lists.get(user, []))[:k], set(relevant), k) for user, relevant in truth.items()],
                      dtype=np.float64).reshape(-1, 3)
    return {f"recall@{k}": values[:, 0], f"ndcg@{k}": values[:, 1], f"hr@{k}": values[:, 2]}


def evaluate_lists(
    lists: Mapping[object, Sequence],
    truth: Mapping[object, Iterable],
    n_train_items: int,
    k: int = K,
) -> dict[str, float]:
    """Average the metrics over the users in ``truth``; a user with no list scores zero."""
    if not truth:
        raise ValueError("no user to evaluate")
    return aggregate(per_user_metrics(lists, truth, k), lists, truth, n_train_items, k)


def aggregate(values: dict[str, np.ndarray], lists: Mapping[object, Sequence], truth: Mapping[object, Iterable],
              n_train_items: int, k: int = K) -> dict[str, float]:
    """``evaluate_lists`` from the ``per_user_metrics`` already computed for these lists."""
    recommended_items: set = set()
    for user in truth:
        recommended_items.update(list(lists.get(user, []))[:k])
    return {
        f"ndcg@{k}": float(np.mean(values[f"ndcg@{k}"])),
        f"recall@{k}": float(np.mean(values[f"recall@{k}"])),
        f"hr@{k}": float(np.mean(values[f"hr@{k}"])),
        f"coverage@{k}": len(recommended_items) / max(1, n_train_items),
        "users": len(truth),
    }
