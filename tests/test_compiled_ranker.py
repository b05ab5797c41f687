"""The compiled forest ranks exactly as LightGBM does, is cached, and never stops a model loading."""

import numpy as np
import pytest

from recsys_runtime.bundle import load_bundle
from recsys_runtime.compiled_ranker import CompiledRanker, compile_ranker
from tests.bundles import build_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("compiled") / "v1"
    build_bundle(path, seed=3, version="v1")
    return path


def test_compiled_scores_and_lists_equal_lightgbm(bundle, tmp_path):
    compiled, plain = load_bundle(bundle, ranker_cache=tmp_path / "cache"), load_bundle(bundle)
    assert isinstance(compiled.ranker, CompiledRanker) and not isinstance(plain.ranker, CompiledRanker)
    users = plain.components.histories.users[:60].tolist()
    anchors = plain.components.items[:60].tolist()
    features = np.random.default_rng(0).normal(size=(5000, compiled.ranker.num_feature())).astype(np.float32)
    # one thread below PARALLEL_ROWS rows, all cores above: both equal LightGBM
    for rows in (300, len(features)):
        assert np.allclose(compiled.ranker.predict(features[:rows]), plain.ranker.predict(features[:rows]),
                           rtol=0, atol=1e-9)
    for a, b in zip(compiled.recommend_many(users, anchors, 10), plain.recommend_many(users, anchors, 10),
                    strict=True):
        assert a.items == b.items and np.allclose(a.scores, b.scores, atol=1e-9)
    # explanations still come from LightGBM's contributions
    explained = compiled.recommend_detail(anchors[0], users[0], 3, explain=True)
    assert explained.contributions is not None and len(explained.contributions) == 3


def test_compiled_forest_is_cached_by_model(bundle, tmp_path):
    cache = tmp_path / "cache"
    load_bundle(bundle, ranker_cache=cache)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".so"
    built = files[0].stat().st_mtime_ns
    load_bundle(bundle, ranker_cache=cache)  # loads the cached file instead of compiling again
    assert [f.name for f in cache.iterdir()] == [files[0].name] and files[0].stat().st_mtime_ns == built


def test_a_failed_compilation_falls_back_to_lightgbm(bundle, tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    recommender = load_bundle(bundle, ranker_cache=blocked)
    assert not isinstance(recommender.ranker, CompiledRanker)
    assert len(recommender.recommend(recommender.components.histories.users[0], 5).items) == 5
    assert compile_ranker(recommender.ranker, blocked) is None
