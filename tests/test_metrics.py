import math

import pytest

from recsys_training.metrics import evaluate_lists, user_metrics


def test_ndcg_recall_hit_by_hand():
    # hits at ranks 1 and 3, two relevant items: dcg = 1 + 1/log2(4) = 1.5; idcg = 1 + 1/log2(3)
    recall, ndcg, hit = user_metrics(["a", "x", "b", "y"], {"a", "b"})
    assert recall == 1.0
    assert ndcg == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert hit == 1.0


def test_ideal_dcg_is_capped_at_k():
    relevant = {f"r{i}" for i in range(20)}
    recall, ndcg, _ = user_metrics([f"r{i}" for i in range(10)], relevant, k=10)
    assert recall == 1.0 and ndcg == pytest.approx(1.0)


def test_miss_and_averaging_and_coverage():
    lists = {"u1": ["a", "b"], "u2": ["c", "d"]}
    truth = {"u1": {"b"}, "u2": {"z"}, "u3": {"a"}}  # u3 has no list: scores zero
    m = evaluate_lists(lists, truth, n_train_items=8)
    assert m["users"] == 3
    assert m["hr@10"] == pytest.approx(1 / 3)
    assert m["recall@10"] == pytest.approx(1 / 3)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3)) / 3)
    assert m["coverage@10"] == pytest.approx(4 / 8)
