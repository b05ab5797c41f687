"""The evaluation's model lists split over worker processes are the lists of one process."""

import numpy as np
import pytest

from recsys_runtime.bundle import load_bundle
from recsys_training import synthetic
from recsys_training.evaluation import (
    PER_USER,
    ServedLists,
    evaluate,
    evaluated_users,
    served_lists,
    summarise,
    user_shards,
    without_per_user,
)
from recsys_training.sharded_recommender import ShardedRecommender
from recsys_training.split import protocol_folds
from tests.bundles import build_bundle


def test_evaluation_over_two_worker_processes_gives_the_in_process_summary(tmp_path):
    build_bundle(tmp_path / "v1", seed=4, version="v1", precompute=True)
    split = protocol_folds(synthetic.generate(200, 300, 8_000, seed=4).interactions.rows)["serving"]
    recommender = load_bundle(tmp_path / "v1")
    alone = evaluate(recommender, split, with_baselines=False)
    with ShardedRecommender(tmp_path / "v1", workers=2, min_requests=1) as sharded:
        split_up = evaluate(sharded, split, with_baselines=False)
        assert sharded.workers == 2 and sharded.sharded_calls == 5  # user, detail, similar, next, next similar
        assert not sharded.loaded_here  # the version and routes came from a worker
    assert split_up["dataset"]["evaluated_users"] >= 150
    drop = ("seconds",)
    assert ({k: v for k, v in without_per_user(split_up).items() if k not in drop}
            == {k: v for k, v in without_per_user(alone).items() if k not in drop})
    for name, values in alone[PER_USER]["model"].items():
        assert np.array_equal(split_up[PER_USER]["model"][name], values)


def test_small_calls_and_daemonic_processes_stay_in_process(tmp_path, monkeypatch):
    build_bundle(tmp_path / "v1", seed=4, version="v1")
    recommender = load_bundle(tmp_path / "v1")
    with ShardedRecommender(tmp_path / "v1", workers=2, min_requests=50, recommender=recommender) as sharded:
        users = list(recommender.components.histories.users[:49].astype(str))
        assert [r.items for r in sharded.recommend_many(users)] == [r.items for r in recommender.recommend_many(users)]
        assert sharded.sharded_calls == 0 and sharded._pool is None
    import multiprocessing

    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True, raising=False)
    assert ShardedRecommender(tmp_path / "v1", workers=2).workers == 1


def test_lists_of_user_shards_merged_give_the_summary_of_all_users_at_once(tmp_path):
    build_bundle(tmp_path / "v1", seed=5, version="v1", precompute=True)
    split = protocol_folds(synthetic.generate(200, 300, 8_000, seed=5).interactions.rows)["serving"]
    recommender = load_bundle(tmp_path / "v1")
    shards = user_shards(split, 3)
    sizes = [len(users) for users in shards]
    assert sum(sizes) == len(evaluated_users(split)) and max(sizes) - min(sizes) <= 1 and min(sizes) > 40
    merged = ServedLists.merge([served_lists(recommender, split, users) for users in reversed(shards)])
    at_once = served_lists(recommender, split)
    assert merged == at_once and merged.fallbacks == at_once.fallbacks
    assert (without_per_user(summarise(merged, split, with_baselines=False))
            == without_per_user(summarise(at_once, split, with_baselines=False)))
    with pytest.raises(ValueError, match="miss"):
        summarise(ServedLists.merge([served_lists(recommender, split, users) for users in shards[:2]]), split)
