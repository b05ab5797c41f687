"""Candidate generation, ranker features and the recommender on a hand-made world."""

import numpy as np
import pandas as pd
import pytest

from recsys_runtime.candidates import FEATURES, Requests, generate, route_names
from recsys_runtime.recommender import Recommender
from recsys_training.components_fit import fit_components
from recsys_training.ranker import training_set, user_requests
from tests.conftest import interactions

DAY = 86_400


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        group = u % 2  # even users like items 0-9, odd users like 10-19
        for k, item in enumerate(rng.choice(10, size=6, replace=False) + 10 * group):
            rows.append((f"u{u}", f"i{item}", u * DAY + k * 3600, float(1 + k % 5)))
    train = interactions(rows)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(20)], "title": [f"t{i}" for i in range(20)],
                          "categories": ["even" if i < 10 else "odd" for i in range(20)]})
    vectors = np.zeros((20, 4), dtype=np.float32)
    vectors[:10, 0] = 1.0
    vectors[10:, 1] = 1.0
    embeddings = pd.DataFrame(vectors, index=items["item_id"])
    return train, items, fit_components(train, items, embeddings, {"ease_lambda": 1.0})


def test_features_match_their_definitions(world):
    train, _, comp = world
    users = np.array(["u0", "u1"])
    cands = generate(comp, user_requests(comp, users), per_route=20)
    assert cands.features.shape == (len(cands.rows), len(FEATURES))
    history0, _ = comp.histories.row(comp.histories.user_index(np.array(["u0"]))[0])
    binary = np.zeros(len(comp.items), np.float32)
    binary[history0] = 1
    expected_collab = binary @ comp.ease.toarray()
    mine = cands.rows == 0
    col = FEATURES.index("collaborative_score")
    assert np.allclose(cands.features[mine, col], expected_collab[cands.items[mine]], atol=1e-5)
    # seen items are never candidates
    assert not set(cands.items[mine]) & set(history0.tolist())
    # category affinity: u0 only consumed "even" items
    aff = cands.features[:, FEATURES.index("category_affinity")]
    even = np.array([int(i[1:]) < 10 for i in comp.items[cands.items]])
    assert np.allclose(aff[mine & even], 1.0) and np.allclose(aff[mine & ~even], 0.0)
    # history length feature
    assert np.allclose(cands.features[mine, FEATURES.index("log_history_length")], np.log1p(len(history0)))
    # route flags agree with the bitmask
    for bit, route in enumerate(route_names()):
        assert np.array_equal(cands.features[:, FEATURES.index(f"from_{route}")], (cands.routes >> bit) & 1)


def test_training_labels_mark_held_out_items(world):
    _, _, comp = world
    in_candidates = generate(comp, user_requests(comp, np.array(["u0"])), per_route=20)
    target = comp.items[in_candidates.items[0]]
    labels = pd.DataFrame({"user_id": ["u0", "u0"], "item_id": [target, "not-an-item"]})
    data = training_set(comp, labels, per_route=20)
    assert data.labels.sum() == 1
    assert comp.items[data.candidates.items[data.labels == 1][0]] == target


def test_recommendations_stay_in_taste_and_exclude_history(world):
    _, _, comp = world
    rec = Recommender(comp)  # no ranker: collaborative score order
    result = rec.recommend("u0", k=4)
    history, _ = comp.histories.row(comp.histories.user_index(np.array(["u0"]))[0])
    assert result.fallback is None
    assert not set(result.items) & set(comp.items[history].tolist())
    assert all(int(i[1:]) < 10 for i in result.items)
    assert all(routes for routes in result.routes)


def test_detail_excludes_anchor_and_unknowns_fall_back(world):
    _, _, comp = world
    rec = Recommender(comp)
    detail = rec.recommend_detail("i3", user_id="u1", k=5)
    assert "i3" not in detail.items and detail.fallback is None
    similar = rec.similar("i12", k=3)
    assert "i12" not in similar.items and all(int(i[1:]) >= 10 for i in similar.items)
    unknown_user = rec.recommend("nobody", k=3)
    assert unknown_user.fallback == "unknown user" and len(unknown_user.items) == 3
    assert unknown_user.routes == [["popular"]] * 3
    unknown_item = rec.similar("no-such-item", k=3)
    assert unknown_item.fallback == "unknown item"


def test_exclude_seen_false_lets_history_back(world):
    _, _, comp = world
    rec = Recommender(comp)
    history, _ = comp.histories.row(comp.histories.user_index(np.array(["u0"]))[0])
    seen = set(comp.items[history].tolist())
    default = rec.recommend("u0", k=10)
    kept = rec.recommend("u0", k=10, exclude_seen=False)
    assert not seen & set(default.items)
    # the user's own items score highest on the collaborative route (EASE diagonal is zero, but
    # co-consumed items reinforce each other), so some of them come back
    assert seen & set(kept.items)
    assert rec.recommend("u0", k=10, exclude=[["i1"]], exclude_seen=False).items.count("i1") == 0


def test_batch_and_single_requests_agree(world):
    _, _, comp = world
    rec = Recommender(comp)
    users = [f"u{u}" for u in range(10)]
    batch = rec.recommend_many(users, k=5)
    assert [r.items for r in batch] == [rec.recommend(u, k=5).items for u in users]


def test_a_batch_equals_its_requests_one_by_one(world):
    from recsys_runtime.candidates import Requests

    _, _, comp = world
    requests = user_requests(comp, np.array([f"u{u}" for u in range(12)]))
    whole = generate(comp, requests, per_route=20)
    for row in range(12):
        one = generate(comp, Requests([requests.histories[row]], requests.anchors[row : row + 1],
                                      requests.as_of[row : row + 1], [requests.exclude[row]]), per_route=20)
        mine = whole.rows == row
        assert np.array_equal(whole.items[mine], one.items) and np.array_equal(whole.routes[mine], one.routes)
        assert np.array_equal(whole.features[mine], one.features)


def test_cached_user_states_give_the_same_lists_as_fresh_computation(world):
    _, _, comp = world
    cached, fresh = Recommender(comp), Recommender(comp, state_cache_bytes=0)
    for user, anchor in [("u0", "i3"), ("u1", "i12"), ("u0", None), ("u0", "i5"), ("u2", "i3"), ("u1", None)]:
        for _ in range(2):  # the second time from the cache
            a = cached.recommend_many([user], [anchor], k=8)[0]
            b = fresh.recommend_many([user], [anchor], k=8)[0]
            assert (a.items, a.scores, a.routes) == (b.items, b.scores, b.routes)
    assert len(cached.user_states) == 3 and not len(fresh.user_states)
    # activity newer than the bundle makes a different history: not served from the cache
    recent = cached.recommend_many(["u0"], ["i3"], k=8, recent=[["i15"]])[0]
    assert recent.items == fresh.recommend_many(["u0"], ["i3"], k=8, recent=[["i15"]])[0].items


def test_a_failing_route_is_cut_off_and_the_others_serve(world, monkeypatch):
    _, _, comp = world
    rec = Recommender(comp)

    def broken(*args, **kwargs):
        raise RuntimeError("index unavailable")

    monkeypatch.setattr(comp.content_index, "neighbours", broken)
    result = rec.recommend("u0", k=5)
    assert result.failed_routes == ("content",) and result.fallback is None and len(result.items) == 5
    assert not any("content" in routes for routes in result.routes)
    assert not len(rec.user_states)  # a degraded state is not kept
    monkeypatch.undo()
    healthy = rec.recommend("u0", k=5)
    assert healthy.failed_routes == () and len(rec.user_states) == 1


def test_next_item_training_requests_are_labelled_with_the_other_held_out_items(world):
    _, _, comp = world
    history, stamps = comp.histories.row(comp.histories.user_index(np.array(["u0"]))[0])
    outside = [i for i in comp.items.tolist() if i not in set(comp.items[history].tolist())]
    query, later = outside[0], outside[1:4]
    labels = pd.DataFrame({"user_id": ["u0"] * 4, "item_id": [query, *later],
                           "timestamp": [stamps[-1] + 1, stamps[-1] + 2, stamps[-1] + 3, stamps[-1] + 4]})
    data = training_set(comp, labels, per_route=20, extra=("next", "similar"))
    assert list(data.user_ids) == ["u0", "u0#next", "u0#page", "u0#similar"]
    for row in (1, 2, 3):
        mine = data.candidates.rows == row
        proposed = set(comp.items[data.candidates.items[mine]].tolist())
        assert query not in proposed  # the page's own item is never proposed
        labelled = set(comp.items[data.candidates.items[mine & (data.labels == 1)]].tolist())
        assert labelled == proposed & set(later)
    with pytest.raises(ValueError, match="extra training requests"):
        training_set(comp, labels, extra=("nearby",))


def test_next_item_training_requests_have_the_features_the_service_would_give_them(world):
    """A page with the user is asked at the user's last interaction; a page without one at the
    log's end, as the service asks /similar (it cannot know the user's time), and the first page
    also at the user's time, for the ranker of requests with a user."""
    _, _, comp = world
    history, stamps = comp.histories.row(comp.histories.user_index(np.array(["u0"]))[0])
    outside = [i for i in comp.items.tolist() if i not in set(comp.items[history].tolist())]
    labels = pd.DataFrame({"user_id": ["u0"] * 3, "item_id": outside[:3],
                           "timestamp": [stamps[-1] + t for t in (1, 2, 3)]})
    data = training_set(comp, labels, per_route=20, extra=("next", "similar"))
    page = int(comp.item_index(np.array([outside[0]]))[0])
    assert comp.now > stamps[-1] + 30 * DAY  # u0 is the earliest user: the two times differ
    assert list(data.user_ids) == ["u0", "u0#next", "u0#page", "u0#similar"]
    for row, served_history, as_of in ((1, history, stamps[-1]), (2, np.array([page]), stamps[-1]),
                                       (3, np.array([page]), comp.now)):
        served = generate(comp, Requests([served_history], np.array([page]), np.array([as_of]), [np.array([page])]),
                          per_route=20)
        mine = data.candidates.rows == row
        assert np.array_equal(data.candidates.items[mine], served.items)
        assert np.array_equal(data.candidates.features[mine], served.features)


def test_more_pages_per_user_make_each_held_out_item_a_page_labelled_with_the_items_after_it(world):
    _, _, comp = world
    history, stamps = comp.histories.row(comp.histories.user_index(np.array(["u0"]))[0])
    held_out = [i for i in comp.items.tolist() if i not in set(comp.items[history].tolist())][:4]
    labels = pd.DataFrame({"user_id": ["u0"] * 4, "item_id": held_out,
                           "timestamp": [stamps[-1] + t for t in (1, 2, 3, 4)]})
    one = training_set(comp, labels, per_route=20, extra=("similar",))
    data = training_set(comp, labels, per_route=20, extra=("similar",), pages_per_user=10)  # capped at 3
    assert list(data.user_ids) == ["u0", "u0#page", "u0#similar", "u0#similar1", "u0#similar2"]
    for row, page in ((1, held_out[0]), *enumerate(held_out[:3], start=2)):
        mine = data.candidates.rows == row
        proposed = set(comp.items[data.candidates.items[mine]].tolist())
        assert page not in proposed
        labelled = set(comp.items[data.candidates.items[mine & (data.labels == 1)]].tolist())
        assert labelled == proposed & set(held_out[held_out.index(page) + 1:])
    first = data.candidates.rows <= 2  # one page per user is the start of the longer set
    assert np.array_equal(data.candidates.items[first], one.candidates.items)
    assert np.array_equal(data.labels[first], one.labels)


def test_a_sampled_training_set_holds_the_sampled_users_rows_unchanged(world):
    """Sampling users for the ranker keeps each sampled user's candidates, features and labels
    exactly as in the full set (a user's candidates never depend on another user's)."""
    train, _, comp = world
    seen = train.groupby("user_id")["item_id"].apply(set)
    labels = pd.DataFrame([(u, f"i{i}", 100 * DAY + i) for u in seen.index for i in range(20)
                           if f"i{i}" not in seen[u]], columns=["user_id", "item_id", "timestamp"])  # all unseen
    full = training_set(comp, labels, per_route=20, extra=("similar",))
    sampled = training_set(comp, labels, per_route=20, extra=("similar",), max_users=10, seed=4)
    base = sorted({u.split("#")[0] for u in sampled.user_ids})
    assert len(base) == 10 and set(sampled.user_ids) <= set(full.user_ids)
    assert base != sorted({u.split("#")[0] for u in training_set(
        comp, labels, per_route=20, max_users=10, seed=5).user_ids})  # another seed, another sample
    for user in sampled.user_ids:
        mine = sampled.candidates.rows == list(sampled.user_ids).index(user)
        theirs = full.candidates.rows == list(full.user_ids).index(user)
        assert np.array_equal(sampled.candidates.items[mine], full.candidates.items[theirs])
        assert np.array_equal(sampled.candidates.features[mine], full.candidates.features[theirs])
        assert np.array_equal(sampled.labels[mine], full.labels[theirs])
    assert sampled.labels.sum() > 0
    assert training_set(comp, labels, per_route=20, max_users=1_000).user_ids.tolist() == \
        training_set(comp, labels, per_route=20).user_ids.tolist()


def test_max_pages_gives_each_user_fewer_pages_never_none(world):
    train, _, comp = world
    seen = train.groupby("user_id")["item_id"].apply(set)
    labels = pd.DataFrame([(u, f"i{i}", 100 * DAY + i) for u in seen.index for i in range(20)
                           if f"i{i}" not in seen[u]], columns=["user_id", "item_id", "timestamp"])
    users = len(seen)

    def pages(data) -> int:
        return sum("#similar" in u for u in data.user_ids)

    full = training_set(comp, labels, per_route=20, extra=("similar",), pages_per_user=4)
    assert pages(full) == 4 * users
    capped = training_set(comp, labels, per_route=20, extra=("similar",), pages_per_user=4, max_pages=2 * users + 1)
    assert pages(capped) == 2 * users
    assert set(capped.user_ids) <= set(full.user_ids)
    floor = training_set(comp, labels, per_route=20, extra=("similar",), pages_per_user=4, max_pages=1)
    assert pages(floor) == users
    unchanged = training_set(comp, labels, per_route=20, extra=("similar",), pages_per_user=4, max_pages=4 * users)
    assert unchanged.user_ids.tolist() == full.user_ids.tolist()


def _booster_preferring(comp, odd: bool):
    """A real LightGBM ranker trained to put one category's items first."""
    import lightgbm as lgb

    cands = generate(comp, user_requests(comp, np.array([f"u{u}" for u in range(20)])), per_route=20)
    labels = (np.array([int(i[1:]) >= 10 for i in comp.items[cands.items]]) == odd).astype(float)
    params = {"objective": "rank_xendcg", "verbose": -1, "min_data_in_leaf": 1, "seed": 0, "deterministic": True}
    return lgb.train(params, lgb.Dataset(cands.features, labels, group=np.bincount(cands.rows)), 20)


def test_requests_whose_only_history_is_their_page_go_to_the_similar_ranker(world):
    _, _, comp = world
    for_users, for_pages = _booster_preferring(comp, odd=False), _booster_preferring(comp, odd=True)
    both = Recommender(comp, ranker=for_users, similar_ranker=for_pages)
    users_only, pages_only = Recommender(comp, ranker=for_users), Recommender(comp, ranker=for_pages)
    assert pages_only.similar("i3", k=5).items != users_only.similar("i3", k=5).items  # the test can tell them apart
    for rec in (both.similar("i3", k=5), both.recommend_detail("i3", "nobody", k=5)):
        expected = pages_only.similar("i3", k=5)
        assert rec.items == expected.items and rec.scores == pytest.approx(expected.scores)
    for user, page in (("u0", None), ("u0", "i12"), ("u1", "i3")):
        expected = users_only.recommend_detail(page, user, k=5) if page else users_only.recommend(user, k=5)
        got = both.recommend_detail(page, user, k=5) if page else both.recommend(user, k=5)
        assert got.items == expected.items and got.scores == pytest.approx(expected.scores)
    # a batch mixing both kinds ranks each request as it would alone
    users, pages = ["u0", None, "u1", "nobody"], [None, "i3", "i12", "i5"]
    batch = both.recommend_many(users, pages, k=5, explain=True)
    for rec, user, page in zip(batch, users, pages, strict=True):
        alone = both.recommend_many([user], [page], k=5, explain=True)[0]
        assert rec.items == alone.items and rec.scores == pytest.approx(alone.scores)
        for got, expected in zip(rec.contributions, alone.contributions, strict=True):
            assert got == pytest.approx(expected)


def test_the_training_set_splits_into_requests_with_and_without_a_user(world):
    from recsys_training.ranker import first_page_requests, page_only_requests, requests_of

    _, _, comp = world
    history, stamps = comp.histories.row(comp.histories.user_index(np.array(["u0"]))[0])
    held_out = [i for i in comp.items.tolist() if i not in set(comp.items[history].tolist())][:3]
    labels = pd.DataFrame({"user_id": ["u0"] * 3 + ["u1"], "item_id": [*held_out, "i0"],
                           "timestamp": [stamps[-1] + t for t in (1, 2, 3, 4)]})
    data = training_set(comp, labels, per_route=20, extra=("similar",), pages_per_user=2)
    page_only = page_only_requests(data)
    assert list(data.user_ids[page_only]) == ["u0#similar", "u0#similar1"]
    # the ranker of requests with a user learns from the lists and the first page at the user's time
    assert list(data.user_ids[first_page_requests(data)]) == ["u0", "u1", "u0#page"]
    for keep in (page_only, ~page_only):
        part = requests_of(data, keep)
        assert list(part.user_ids) == list(data.user_ids[keep])
        for row, original in enumerate(np.flatnonzero(keep)):
            mine, theirs = part.candidates.rows == row, data.candidates.rows == original
            assert np.array_equal(part.candidates.items[mine], data.candidates.items[theirs])
            assert np.array_equal(part.candidates.features[mine], data.candidates.features[theirs])
            assert np.array_equal(part.labels[mine], data.labels[theirs])


def test_the_ranker_is_the_choice_with_the_best_out_of_fold_ndcg(world):
    from recsys_training.ranker import RANKER_CHOICES, train_ranker

    _, _, comp = world
    seen = comp.histories
    labels = pd.DataFrame([(u, f"i{(int(u[1:]) % 2) * 10 + i}", 100 * DAY + i) for u in seen.users for i in range(10)],
                          columns=["user_id", "item_id", "timestamp"])
    data = training_set(comp, labels, per_route=20)
    booster, info = train_ranker(data, seed=0, choices=("lambdarank", "rank_xendcg"), race_z=None)
    assert set(info["choices"]) == {"lambdarank", "rank_xendcg"}
    chosen = max(info["choices"], key=info["choices"].get)
    assert info["params"] == RANKER_CHOICES[chosen] and info["valid_ndcg@10"] == pytest.approx(info["choices"][chosen])
    alone, alone_info = train_ranker(data, seed=0, choices=(chosen,))
    assert alone_info["rounds"] == info["rounds"]
    assert np.array_equal(alone.predict(data.candidates.features), booster.predict(data.candidates.features))
    with pytest.raises(ValueError, match="ranker choices"):
        train_ranker(data, choices=("xgboost",))


@pytest.fixture(scope="module")
def synthetic_training_set():
    from recsys_training import synthetic
    from recsys_training.split import protocol_folds

    tables = synthetic.generate(200, 300, 8_000, seed=5)
    folds = protocol_folds(tables.interactions.rows)
    embeddings = np.random.default_rng(0).normal(size=(len(tables.items.rows), 16)).astype(np.float32)
    components = fit_components(folds["validation"].train, tables.items.rows,
                                pd.DataFrame(embeddings, index=tables.items.rows["item_id"]))
    return training_set(components, folds["validation"].test)


def test_sampled_negatives_keep_every_positive_and_the_share_asked(synthetic_training_set):
    from recsys_training.ranker import sample_negatives, train_ranker

    data = synthetic_training_set
    assert sample_negatives(data, 1.0, seed=0) is data
    sampled = sample_negatives(data, 0.3, seed=0)
    negatives = (data.labels == 0).sum()
    assert sampled.labels.sum() == data.labels.sum() > 0
    assert (sampled.labels == 0).sum() == pytest.approx(0.3 * negatives, rel=0.05)
    kept = np.isin(data.candidates.rows * 1_000_000 + data.candidates.items,
                   sampled.candidates.rows * 1_000_000 + sampled.candidates.items)
    assert np.array_equal(sampled.candidates.features, data.candidates.features[kept])
    assert np.array_equal(sampled.labels, data.labels[kept])
    _, info = train_ranker(data, seed=0, negative_fraction=0.3, patience=10)
    _, full_info = train_ranker(data, seed=0, patience=10)
    assert info["negative_fraction"] == 0.3 and full_info["negative_fraction"] == 1.0
    assert info["rows"] < 0.5 * full_info["rows"]


def test_query_ndcg_is_lightgbms_ndcg_at_10():
    import lightgbm as lgb

    from recsys_training.ranker import query_ndcg

    rng = np.random.default_rng(0)
    groups = rng.integers(5, 60, 200)
    x = rng.normal(size=(groups.sum(), 5))
    labels = (rng.random(groups.sum()) < 0.1).astype(np.float64)
    labels[np.concatenate([[0], np.cumsum(groups)[:-1]])] = 1.0  # every query has a relevant row
    data = lgb.Dataset(x, labels, group=groups)
    evaluations = {}
    booster = lgb.train({"objective": "lambdarank", "metric": "ndcg", "ndcg_eval_at": [10], "verbose": -1}, data,
                        num_boost_round=5, valid_sets=[data], callbacks=[lgb.record_evaluation(evaluations)])
    per_query = query_ndcg(booster.predict(x), labels, groups)
    assert len(per_query) == len(groups) and 0 <= per_query.min() < per_query.max() <= 1
    assert per_query.mean() == pytest.approx(evaluations["training"]["ndcg@10"][-1], abs=1e-12)


def test_a_choice_raced_out_on_the_first_fold_fits_no_other_fold(synthetic_training_set):
    from recsys_training.ranker import RANKER_CHOICES, train_ranker

    data = synthetic_training_set
    choices = ("lambdarank", "rank_xendcg")
    _, full = train_ranker(data, seed=0, choices=choices, patience=10, race_z=None)
    behind = full["race"]["behind"]
    leader = min(behind, key=behind.get)
    assert behind[leader] == 0 and full["race"]["raced_out"] == []
    other = next(name for name in choices if name != leader)
    assert behind[other] > 0
    booster, raced = train_ranker(data, seed=0, choices=choices, patience=10, race_z=0.0)
    assert raced["race"]["raced_out"] == [other] and raced["params"] == RANKER_CHOICES[leader]
    assert len(raced["fold_ndcg@10"]) == 3
    alone, alone_info = train_ranker(data, seed=0, choices=(leader,), patience=10)
    assert alone_info["rounds"] == raced["rounds"]
    assert np.array_equal(alone.predict(data.candidates.features), booster.predict(data.candidates.features))
    _, kept = train_ranker(data, seed=0, choices=choices, patience=10, race_z=abs(behind[other]) + 1)
    assert kept["race"]["raced_out"] == [] and kept["choices"] == full["choices"]
    with pytest.raises(ValueError, match="race_z"):
        train_ranker(data, choices=choices, race_z=-1.0)
