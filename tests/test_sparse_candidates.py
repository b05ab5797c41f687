"""Sparse candidate generation against a brute-force dense reference, state size, the route table."""

import numpy as np
import pytest

from recsys_runtime.candidates import FEATURES, Requests, feature_names, generate, recency_weights, user_state
from recsys_runtime.kernels import best_positions
from recsys_runtime.recommender import Recommender
from recsys_runtime.routes import ROUTES, Route
from recsys_runtime.sparse import Accumulator
from recsys_training import synthetic
from recsys_training.components_fit import fit_components

PER_ROUTE = 40


def _components(n_users: int, n_items: int, n_interactions: int, seed: int):
    tables = synthetic.generate(n_users, n_items, n_interactions, seed=seed)
    items = tables.items.rows
    vectors = synthetic.item_vectors(items, seed=seed, dim=32)
    train = tables.interactions.rows
    return fit_components(train, items, vectors, {"ease_max_items": 2_000})


@pytest.fixture(scope="module")
def components():
    return _components(150, 600, 6_000, seed=5)


def _dense_top(scores: np.ndarray, n: int) -> set:
    """The n best positive scores, ties to the lower index: the old dense top_mask, for one row."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    return {int(i) for i in order[:n] if scores[i] > 0}


def _content_reference(vectors, top_k):
    """Each item's top_k nearest other items with a positive cosine, by brute force, as dense rows."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.zeros_like(sims, dtype=np.float32)
    for item, row in enumerate(sims):
        best = np.argsort(-row, kind="stable")[:top_k]
        best = best[row[best] > 0]
        nearest[item, best] = row[best]
    return nearest


def test_content_neighbour_lists_equal_a_brute_force_search(components):
    from recsys_runtime.content_index import NEIGHBOURS_TOP_K

    lists = components.content_index.neighbours().toarray()
    assert np.allclose(lists, _content_reference(components.embeddings, NEIGHBOURS_TOP_K), atol=1e-6)
    assert (np.diff(components.content_index.neighbours().indptr) <= NEIGHBOURS_TOP_K).all()


def _reference(comp, history, anchor, as_of, exclude, per_route):
    """Every route and feature computed densely over the whole catalog, as the code did before."""
    n = len(comp.items)
    ease, covis = comp.ease.toarray(), comp.covisitation.toarray()
    recency = recency_weights(len(history))
    collaborative = np.zeros(n, np.float64)
    covisitation = np.zeros(n, np.float64)
    for item, weight in zip(history, recency, strict=True):
        collaborative += ease[item].astype(np.float32).astype(np.float64)
        covisitation += (covis[item].astype(np.float32) * weight).astype(np.float64)
    collaborative, covisitation = collaborative.astype(np.float32), covisitation.astype(np.float32)
    anchor_covis = covis[anchor].astype(np.float32) if anchor >= 0 else np.zeros(n, np.float32)
    profile = (comp.embeddings[history] * recency[:, None]).sum(axis=0)
    profile /= max(np.linalg.norm(profile), 1e-12)
    sims = comp.embeddings @ profile
    nearest = comp.content_index.neighbours().toarray()  # checked against a brute-force search below
    summed = np.zeros(n, np.float64)
    for item, weight in zip(history, recency, strict=True):
        summed += (nearest[item] * weight).astype(np.float64)
    summed = summed.astype(np.float32)
    strongest = sorted(_dense_top(summed, per_route))
    content = np.zeros(n, np.float32)
    content[strongest] = summed[strongest]
    if anchor >= 0:
        content += nearest[anchor]
    trending = np.zeros(n, np.float32)
    listed = comp.timeline.trending_at(np.array([as_of]))[0]
    trending[listed[listed >= 0]] = len(listed) - np.flatnonzero(listed >= 0)
    unavailable = np.zeros(n, bool)
    unavailable[history] = True
    unavailable[exclude] = True
    proposals = {"collaborative": (collaborative, per_route), "covisitation": (covisitation + anchor_covis, per_route),
                 "content": (content, per_route // 2), "trending": (trending, per_route // 2),
                 "popular": (comp.log_counts.astype(np.float32), per_route // 2)}
    routes = {name: _dense_top(np.where(unavailable, 0, s), k) for name, (s, k) in proposals.items()}
    return routes, collaborative, covisitation, sims


def test_sparse_candidates_equal_a_dense_reference(components):
    comp = components
    rng = np.random.default_rng(0)
    users = rng.choice(len(comp.histories.users), 40, replace=False)
    for user in users:
        history, stamps = comp.histories.row(user)
        history = history.astype(np.int64)
        anchor = int(rng.integers(0, len(comp.items)))
        exclude = rng.choice(len(comp.items), 3, replace=False)
        requests = Requests([history], np.array([anchor]), np.array([stamps[-1]]), [np.append(exclude, anchor)])
        cands = generate(comp, requests, PER_ROUTE)
        routes, collaborative, covisitation, sims = _reference(comp, history, anchor, int(stamps[-1]),
                                                               np.append(exclude, anchor), PER_ROUTE)
        for bit, route in enumerate(ROUTES):
            proposed = {int(i) for i in cands.items[(cands.routes >> bit) & 1 == 1]}
            assert proposed == routes[route.name], (user, route.name)
        assert set(cands.items.tolist()) == set().union(*routes.values())
        features = dict(zip(FEATURES, cands.features.T, strict=True))
        assert np.array_equal(features["collaborative_score"], collaborative[cands.items])
        assert np.array_equal(features["covisitation_score"], covisitation[cands.items])
        assert np.allclose(features["collaborative_rel"], collaborative[cands.items] / max(collaborative.max(), 1e-9))
        assert np.allclose(features["content_score"], sims[cands.items], atol=1e-5)
        assert np.array_equal(features["anchor_covisitation"], comp.covisitation[anchor].toarray()[0][cands.items])
        _assert_item_features(comp, features, cands, history, anchor, int(stamps[-1]))


def _assert_item_features(comp, features, cands, history, anchor, as_of):
    """The compiled per-candidate features against their numpy formulation over dense arrays."""
    items = cands.items
    day = 86_400
    keys_of = comp.timeline.keys // comp.timeline.KEY_STRIDE
    stamps = comp.timeline.keys % comp.timeline.KEY_STRIDE
    for name, seconds in (("trend_7d", 7 * day), ("trend_30d", 30 * day), ("trend_365d", 365 * day)):
        counts = np.array([np.sum((keys_of == i) & (stamps > as_of - seconds) & (stamps <= as_of)) for i in items])
        assert np.allclose(features[name], np.log1p(counts), rtol=1e-6), name
    assert np.allclose(features["log_count"], np.log1p(comp.timeline.counts[items]))
    assert np.allclose(features["item_age_days"], (as_of - comp.first_seen[items]) / day, rtol=1e-6)
    assert np.array_equal(features["item_mean_value"], comp.item_mean_value[items])
    dense_categories = comp.categories.toarray()
    user_categories = dense_categories[history[-200:]].sum(axis=0) / max(len(history[-200:]), 1)
    affinity = dense_categories[items] @ user_categories / np.maximum(dense_categories[items].sum(axis=1), 1)
    assert np.allclose(features["category_affinity"], affinity, atol=1e-6)
    assert np.allclose(features["anchor_content"], comp.embeddings[items] @ comp.embeddings[anchor], atol=1e-5)
    assert np.allclose(features["log_history_length"], np.log1p(len(history)))
    for bit, route in enumerate(ROUTES):
        assert np.array_equal(features[f"from_{route.name}"], (cands.routes >> bit) & 1), route.name


@pytest.mark.parametrize("n_rows", [5, 200])  # fewer entries than items (scratch sums), more (a catalog count)
def test_accumulated_rows_equal_a_dense_product(n_rows):
    import scipy.sparse as sp

    rng = np.random.default_rng(1)
    matrix = sp.random(300, 300, density=0.05, random_state=2, format="csr", dtype=np.float32)
    rows = rng.integers(0, 300, n_rows)
    weights = rng.random(n_rows).astype(np.float32)
    accumulator = Accumulator(300)
    row = accumulator.rows(matrix, rows, weights)
    dense = np.zeros(300)
    for r, w in zip(rows, weights, strict=True):
        dense += (matrix[r].toarray()[0] * w).astype(np.float64)
    assert row.items.tolist() == np.unique(matrix[rows].indices).tolist()
    assert np.array_equal(row.at(np.arange(300)), dense.astype(np.float32))
    again = accumulator.rows(matrix, rows, weights)  # the scratch was left clean
    assert np.array_equal(again.values, row.values)
    assert np.array_equal(np.sort(row.items), row.items) and len(np.unique(row.items)) == len(row.items)


def test_best_breaks_ties_by_the_lower_index_and_skips_blocked():
    items = np.array([5, 3, 9, 1, 7, 2])
    scores = np.array([1.0, 2.0, 1.0, 1.0, 0.0, 1.0], dtype=np.float32)
    picked = items[best_positions(items, scores, 3, np.array([2]))]
    assert picked.tolist() == [3, 1, 5]  # 2 blocked, 7 scores zero, ties go to the lower index


def test_user_state_size_does_not_grow_with_the_catalog():
    small = _components(150, 600, 6_000, seed=7)
    large = _components(150, 6_000, 6_000, seed=7)
    sizes = {}
    for name, comp in (("small", small), ("large", large)):
        lengths = np.diff(comp.histories.indptr)
        per_user = []
        for user in range(len(comp.histories.users)):
            history = comp.histories.row(user)[0]
            state = user_state(comp, history, PER_ROUTE)
            bound = (8 * lengths[user] * (200 + 100) + 8 * PER_ROUTE
                     + 4 * (comp.embeddings.shape[1] + comp.categories.shape[1]))
            assert state.nbytes <= bound, (name, user, state.nbytes, bound)
            per_user.append(state.nbytes)
        sizes[name] = float(np.median(per_user))
    assert 0.5 < sizes["large"] / sizes["small"] < 2.0, sizes


def test_a_state_keeps_the_strongest_entries_of_each_summed_list(components, monkeypatch):
    from recsys_runtime import candidates

    comp = components
    users = np.argsort(-np.diff(comp.histories.indptr))[:10]  # the longest histories: the widest sums
    full = {u: user_state(comp, comp.histories.row(u)[0], PER_ROUTE) for u in users}
    monkeypatch.setattr(candidates, "STATE_SUPPORT", 30)
    for user in users:
        capped = user_state(comp, comp.histories.row(user)[0], PER_ROUTE)
        for name in ("collaborative", "covisitation"):
            whole, kept = getattr(full[user], name), getattr(capped, name)
            assert len(whole.items) > 30 and len(kept.items) == 30
            dense = whole.at(np.arange(len(comp.items)))
            assert set(kept.items.tolist()) == _dense_top(dense, 30), (user, name)
            assert np.array_equal(kept.values, dense[kept.items]) and np.all(np.diff(kept.items) > 0)
        assert capped.nbytes <= 8 * (30 + 30 + PER_ROUTE) + 4 * (comp.embeddings.shape[1] + comp.categories.shape[1])


def _long_tail(given, n):
    order = given.components.popular_order[::-1][: n + len(given.blocked)]
    return order, np.ones(len(order), np.float32)


def test_a_route_added_to_the_table_needs_no_other_change(components):
    routes = (*ROUTES, Route("long_tail", 4, "log_count", _long_tail))
    recommender = Recommender(components, routes=routes, per_route=PER_ROUTE)
    user = str(components.histories.users[0])
    lists = recommender.recommend_variants([user], k=5, variants=(None, "long_tail"))
    tail = lists["long_tail"][0]
    assert len(tail.items) == 5 and all("long_tail" in r for r in tail.routes)
    least_popular = set(components.items[components.popular_order[::-1][:40]].tolist())
    assert set(tail.items) <= least_popular
    history = components.histories.row(0)[0]
    requests = Requests([history], np.array([-1]), np.array([0]), [np.empty(0, np.int64)])
    cands = generate(components, requests, PER_ROUTE, routes=routes)
    names = feature_names(routes)
    flag = cands.features[:, names.index("from_long_tail")]
    assert names[-1] == "from_long_tail" and flag.sum() == PER_ROUTE // 4
    assert np.array_equal(flag, (cands.routes >> 5) & 1)


def test_a_state_reads_only_the_latest_items_of_a_long_history(components):
    from recsys_runtime.candidates import STATE_HISTORY

    rng = np.random.default_rng(4)
    long_history = rng.integers(0, len(components.items), STATE_HISTORY * 3)
    whole = user_state(components, long_history, PER_ROUTE)
    latest = user_state(components, long_history[-STATE_HISTORY:], PER_ROUTE)
    for part in ("collaborative", "covisitation", "content"):
        assert np.array_equal(getattr(whole, part).items, getattr(latest, part).items), part
        assert np.array_equal(getattr(whole, part).values, getattr(latest, part).values), part
    assert np.array_equal(whole.profile, latest.profile)
    neighbours = np.diff(components.ease.indptr).max() + np.diff(components.covisitation.indptr).max()
    assert whole.nbytes <= 8 * (STATE_HISTORY * neighbours + PER_ROUTE) + 4 * (
        components.embeddings.shape[1] + components.categories.shape[1])
