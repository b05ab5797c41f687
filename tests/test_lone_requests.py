"""A lone request served from its user's cached route orders ranks exactly as the batch path."""

import numpy as np
import pytest

from recsys_serving import lone_request
from recsys_serving import recommender as recommender_module
from recsys_serving.bundle import load_bundle
from recsys_serving.candidates import top_mask
from tests.bundles import build_bundle


@pytest.fixture(scope="module")
def recommender(tmp_path_factory):
    path = tmp_path_factory.mktemp("lone") / "v1"
    build_bundle(path, seed=4, version="v1")
    return load_bundle(path)


@pytest.fixture
def lone_paths(monkeypatch):
    """Counts how often the lone path answered a lone request and how often it handed over."""
    counts = {"lone": 0, "dense": 0}
    original = lone_request.generate_one

    def counted(components, requests, *args):
        found = original(components, requests, *args)
        if len(requests.histories) == 1:
            counts["lone" if found is not None else "dense"] += 1
        return found

    monkeypatch.setattr(recommender_module, "generate_one", counted)
    return counts


def _pairs(recommender, n=60):
    comp = recommender.components
    rng = np.random.default_rng(1)
    users = comp.histories.users[rng.choice(len(comp.histories.users), n, replace=False)].tolist()
    anchors = comp.items[rng.choice(len(comp.items), n)].tolist()
    anchors[0] = None  # the user's latest item anchors the list
    history, _ = comp.histories.row(comp.histories.user_index(np.array([users[1]]))[0])
    anchors[1] = comp.items[history[0]]  # an anchor the user has seen
    return users, anchors


def _same(a, b):
    return (a.items, a.scores, a.routes, a.fallback) == (b.items, b.scores, b.routes, b.fallback)


def test_top_mask_breaks_ties_by_the_lower_index():
    scores = np.array([[0.0, 3.0, 1.0, 1.0, 1.0, 2.0, 1.0]], dtype=np.float32)
    assert np.flatnonzero(top_mask(scores, 4)[0]).tolist() == [1, 2, 3, 5]
    assert np.flatnonzero(top_mask(scores, 7)[0]).tolist() == [1, 2, 3, 4, 5, 6]  # never a zero score


def test_lone_requests_equal_the_batch_path(recommender, lone_paths):
    """A user's first request goes the dense way and leaves the state; later ones use its orders."""
    users, anchors = _pairs(recommender)
    recommender._states.clear()
    recommender._state_bytes = 0
    for k, categories in ((10, None), (3, None), (10, [recommender.components.category_names[0]])):
        batch = recommender.recommend_many(users, anchors, k, categories=categories)
        for user, anchor, expected in zip(users, anchors, batch, strict=True):
            lone = recommender.recommend_many([user], [anchor], k, categories=categories)[0]
            assert _same(lone, expected), (user, anchor, k, categories)
    assert lone_paths["dense"] == len(users) and lone_paths["lone"] == 2 * len(users)
    assert recommender._state_bytes == sum(state.nbytes for state in recommender._states.values())


def test_exclusions_and_short_lists_hand_over_to_the_dense_path(recommender, lone_paths, monkeypatch):
    """With no slack, excluding each route's best item empties a cut list: the dense path answers."""
    monkeypatch.setattr(lone_request, "SLACK", 0)
    recommender._states.clear()
    users, anchors = _pairs(recommender, 30)
    comp = recommender.components
    excluded = []
    for user in users:
        recommender.recommend_many([user], [None], 10)  # keeps the user's state
        recommender.recommend_many([user], [None], 10)  # adds its route orders
        state = recommender._states[int(comp.histories.user_index(np.array([user]))[0])]
        excluded.append([comp.items[order[0]] for order in state.orders.best_first if len(order)])
    lone_before = lone_paths["lone"]
    batch = recommender.recommend_many(users, anchors, 10, exclude=excluded)
    for user, anchor, exclude, expected in zip(users, anchors, excluded, batch, strict=True):
        lone = recommender.recommend_many([user], [anchor], 10, exclude=[exclude])[0]
        assert _same(lone, expected), (user, anchor)
        assert not set(exclude) & set(lone.items)
    assert lone_paths["lone"] == lone_before and lone_paths["dense"] >= len(users)
    # letting seen items back in is the dense path's work too, and equal to the batch
    kept = recommender.recommend_many(users[:5], anchors[:5], 10, exclude_seen=False)
    for user, anchor, expected in zip(users[:5], anchors[:5], kept, strict=True):
        assert _same(recommender.recommend_many([user], [anchor], 10, exclude_seen=False)[0], expected)
    recommender._states.clear()


def test_warming_builds_the_most_active_users_states_within_the_budget(recommender):
    comp = recommender.components
    lengths = np.diff(comp.histories.indptr)
    recommender._states.clear()
    recommender._state_bytes = 0
    assert recommender.warm_user_states(5) == 5
    most_active = set(np.argsort(-lengths, kind="stable")[:5].tolist())
    assert set(recommender._states) == most_active
    assert all(state.orders is not None for state in recommender._states.values())
    one_state = recommender._state_bytes // 5
    recommender._states.clear()
    recommender._state_bytes = 0
    budget = recommender.state_cache_bytes
    recommender.state_cache_bytes = 3 * one_state
    try:
        assert recommender.warm_user_states(50) <= 4 and recommender._state_bytes <= 4 * one_state
    finally:
        recommender.state_cache_bytes = budget
        recommender._states.clear()
        recommender._state_bytes = 0
