import pandas as pd

from recsys_training.split import dedupe_interactions, protocol_folds, temporal_holdout
from tests.conftest import interactions


def test_last_fifth_of_each_user_is_held_out_in_time_order():
    rows = [("a", f"i{k}", 100 - k) for k in range(10)]  # timestamps run backwards to the ids
    rows += [("b", f"i{k}", k) for k in range(5)]
    split = temporal_holdout(interactions(rows))
    test = split.test.groupby("user_id")["item_id"].apply(set).to_dict()
    # a: 10 items -> round(2.0) = 2 latest (i0 at 100, i1 at 99); b: 5 -> 1 latest (i4)
    assert test == {"a": {"i0", "i1"}, "b": {"i4"}}
    assert len(split.train) == 8 + 4


def test_users_under_five_interactions_and_unseen_test_items_are_dropped():
    rows = [("a", "x", 1), ("a", "y", 2), ("a", "z", 3), ("a", "w", 4)]  # 4 rows: dropped
    rows += [("b", "x", 1), ("b", "y", 2), ("b", "z", 3), ("b", "w", 4), ("b", "only_b", 5)]
    rows += [("c", "x", 1), ("c", "y", 2), ("c", "z", 3), ("c", "w", 4), ("c", "v", 5), ("c", "x2", 6), ("c", "w", 7)]
    split = temporal_holdout(interactions(rows))
    assert set(split.train["user_id"]) == {"b", "c"}
    # b's test item only_b never occurs in train: no model can rank it
    assert "only_b" not in set(split.test["item_id"])
    # c: duplicate w keeps the earliest (t=4); 6 unique rows -> round(1.2) = 1 test row: x2 (unseen in train)
    assert split.test.empty


def test_tie_on_timestamp_is_broken_by_item_id():
    rows = [("u", i, 5) for i in ["e", "d", "c", "b", "a"]]
    others = [("v", i, t) for t, i in enumerate("eabcd")]  # v puts e in train
    split = temporal_holdout(interactions(rows + others))
    assert split.test[split.test.user_id == "u"]["item_id"].tolist() == ["e"]


def test_dedupe_keeps_the_earliest_row():
    frame = interactions([("u", "a", 5), ("u", "a", 3), ("u", "b", 4)])
    kept = dedupe_interactions(frame)
    assert sorted(zip(kept.item_id, kept.timestamp, strict=True)) == [("a", 3), ("b", 4)]


def test_validation_fold_is_cut_from_serving_train_only():
    rows = [(f"u{u}", f"i{(u + k) % 30}", k) for u in range(20) for k in range(15)]
    folds = protocol_folds(interactions(rows))
    serving, validation = folds["serving"], folds["validation"]
    keys = ["user_id", "item_id"]
    inner = pd.concat([validation.train, validation.test])[keys]
    assert len(inner.merge(serving.test[keys])) == 0
    assert len(inner) <= len(serving.train)
