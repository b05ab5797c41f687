"""The sequential route: SASRec's numpy forward pass equals torch's, its training is deterministic
and learns an order, and the route serves through the table, the batch path and a bundle."""

import numpy as np
import pytest

from recsys_runtime.candidates import Requests, feature_names, generate, user_state
from recsys_runtime.components import Histories
from recsys_runtime.routes import routes_for
from recsys_training import synthetic
from recsys_training.components_fit import fit_components
from recsys_training.sequential import (
    SEQUENTIAL_DEFAULTS,
    export_encoder,
    sasrec_encoder,
    train_sequential,
    training_windows,
)
from recsys_training.split import temporal_holdout

SMALL = {"dimension": 16, "max_length": 8, "epochs": 2, "negatives": 16, "batch_size": 32}


def _histories(sequences: list[list[int]]) -> Histories:
    indptr = np.cumsum([0] + [len(s) for s in sequences]).astype(np.int64)
    items = np.concatenate([np.asarray(s, np.int32) for s in sequences])
    return Histories(users=np.array([f"u{i}" for i in range(len(sequences))]), indptr=indptr, items=items,
                     timestamps=np.arange(len(items), dtype=np.int64))


def test_numpy_forward_equals_torch_on_padded_histories():
    import torch

    params = {**SEQUENTIAL_DEFAULTS, **SMALL, "blocks": 2}  # the last block is computed for one position only
    torch.manual_seed(3)
    module = sasrec_encoder(30, params)
    with torch.no_grad():  # non-trivial layer norms and biases, not their initial ones and zeros
        for parameter in module.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
        module.items.weight[0].zero_()
    module.eval()
    model = export_encoder(module, params)
    rng = np.random.default_rng(0)
    histories = [rng.integers(0, 30, size) for size in (1, 3, 8, 13)]
    rows = np.zeros((len(histories), 8), np.int64)
    for r, history in enumerate(histories):
        tail = history[-8:]
        rows[r, 8 - len(tail):] = tail + 1
    with torch.no_grad():
        expected = module(torch.from_numpy(rows))[:, -1, :].numpy()
    assert np.allclose(model.encode(histories), expected, atol=2e-5)
    assert not np.allclose(expected[0], expected[1])
    assert np.array_equal(model.encode([]), np.zeros((0, 16), np.float32))
    assert not model.encode([np.empty(0, np.int64)]).any()


def test_training_windows_cut_histories_from_their_end():
    windows = training_windows(_histories([[0, 1, 2, 3, 4, 5, 6], [7], [8, 9]]), length=3, max_sequences=100, seed=0)
    # rows are item + 1, left-padded with 0; consecutive windows share one item (a target becomes an input)
    assert windows.tolist() == [[4, 5, 6, 7], [1, 2, 3, 4], [0, 0, 9, 10]]
    sampled = training_windows(_histories([[0, 1, 2, 3, 4, 5, 6], [7], [8, 9]]), length=3, max_sequences=2, seed=0)
    assert len(sampled) == 2 and all(row.tolist() in windows.tolist() for row in sampled)


N_CYCLE = 20
CYCLE_PARAMS = {"dimension": 32, "max_length": 10, "epochs": 40, "negatives": 10, "batch_size": 32,
                "learning_rate": 0.01, "dropout": 0.0}


def _cycles() -> list[list[int]]:
    """60 users who walk the items in a cycle: after item i comes item i + 1."""
    return [list((start + np.arange(12)) % N_CYCLE) for start in np.random.default_rng(1).integers(0, N_CYCLE, 60)]


def test_training_is_deterministic_for_a_seed_and_learns_an_order():
    n_items, sequences, params = N_CYCLE, _cycles(), CYCLE_PARAMS
    model = train_sequential(_histories(sequences), n_items, params)
    again = train_sequential(_histories(sequences), n_items, params)
    other = train_sequential(_histories(sequences), n_items, {**params, "seed": 1, "epochs": 2})
    assert np.array_equal(model.item_embeddings, again.item_embeddings)
    assert not np.allclose(model.item_embeddings, other.item_embeddings)
    probes = [np.array([(i - 2) % n_items, (i - 1) % n_items, i]) for i in range(n_items)]
    vectors = model.encode(probes)
    predicted = [int(model.nearest(vector, 1)[0][0]) for vector in vectors]
    assert sum(p == (i + 1) % n_items for i, p in enumerate(predicted)) >= 18
    assert np.allclose(model.scores(vectors[0], np.arange(n_items)), model.item_embeddings[1:] @ vectors[0], atol=1e-5)
    assert model.params["windows"] == 120 and model.params["loss"] == "sampled_softmax"
    assert model.params["steps"] == 40 * 4 and other.params["steps"] == 2 * 4
    capped = train_sequential(_histories(sequences), n_items, {**params, "max_steps": 3})
    assert capped.params["steps"] == 3


def test_sparse_item_updates_are_deterministic_and_still_learn_the_order():
    n_items, sequences, params = N_CYCLE, _cycles(), CYCLE_PARAMS
    sparse = train_sequential(_histories(sequences), n_items, {**params, "sparse_items": True})
    again = train_sequential(_histories(sequences), n_items, {**params, "sparse_items": True})
    dense = train_sequential(_histories(sequences), n_items, {**params, "sparse_items": False})
    assert np.array_equal(sparse.item_embeddings, again.item_embeddings)
    # lazy moments: a row's Adam state moves only on the steps whose batch used it
    assert not np.allclose(sparse.item_embeddings, dense.item_embeddings)
    assert sparse.params["sparse_items"] is True and dense.params["sparse_items"] is False
    probes = [np.array([(i - 2) % n_items, (i - 1) % n_items, i]) for i in range(n_items)]
    predicted = [int(sparse.nearest(vector, 1)[0][0]) for vector in sparse.encode(probes)]
    assert sum(p == (i + 1) % n_items for i, p in enumerate(predicted)) >= 18


@pytest.fixture(scope="module")
def split():
    return temporal_holdout(synthetic.generate(120, 300, 4_000, seed=4).interactions.rows)


@pytest.fixture(scope="module")
def components(split):
    items = synthetic.generate(120, 300, 4_000, seed=4).items.rows
    return fit_components(split.train, items, synthetic.item_vectors(items, seed=4, dim=32),
                          {"ease_max_items": 2_000}, sequential_params=SMALL)


def test_the_route_and_its_features_come_from_the_table(components):
    routes = routes_for(components)
    assert routes[-1].name == "sequential"
    names = feature_names(routes)
    assert {"sequential_score", "sequential_rank", "from_sequential"} <= set(names)
    h = components.histories
    histories = [h.items[h.indptr[u]:h.indptr[u + 1]].astype(np.int64) for u in range(8)]
    anchors = np.array([-1, -1, -1, -1, 5, 17, 200, int(histories[7][-1])])
    requests = Requests(histories, anchors, np.full(8, int(h.timestamps.max())), [np.empty(0, np.int64)] * 8)
    found = generate(components, requests, per_route=40)
    column = {name: j for j, name in enumerate(names)}
    bit = len(routes) - 1
    from_route = ((found.routes >> bit) & 1).astype(bool)
    assert from_route.any()
    assert np.array_equal(found.features[:, column["from_sequential"]], from_route.astype(np.float32))
    model = components.sequential
    for row in range(8):
        mine = found.rows == row
        history, anchor = histories[row], int(anchors[row])
        appended = anchor >= 0 and anchor != int(history[-1])
        vector = model.encode([np.append(history, anchor) if appended else history])[0]
        assert np.allclose(found.features[mine, column["sequential_score"]], model.scores(vector, found.items[mine]),
                           atol=1e-5)
        # the route proposes the model's best unseen items, and ranks 0.. follow the scores
        best = [i for i in model.nearest(vector, 40 + len(history))[0] if i not in set(history.tolist())][:20]
        assert set(best) == set(found.items[mine & from_route].tolist())
        ranks = found.features[mine, column["sequential_rank"]]
        assert sorted(ranks.tolist()) == list(range(int(mine.sum())))
        assert found.items[mine][np.argmin(ranks)] == found.items[mine][np.argmax(found.features[mine, column[
            "sequential_score"]])]
        # one request alone gives the same candidates and features as in the batch
        alone = generate(components, Requests([history], anchors[row:row + 1], requests.as_of[row:row + 1],
                                              [np.empty(0, np.int64)]), per_route=40)
        assert np.array_equal(alone.items, found.items[mine])
        assert np.array_equal(alone.features, found.features[mine])
    # a state encodes its history's vector the first time a request without a new anchor needs it
    state = user_state(components, histories[0], 40)
    assert state.sequence is None
    one = Requests([histories[0]], anchors[:1], requests.as_of[:1], [np.empty(0, np.int64)])
    generate(components, one, per_route=40, states=[state])
    assert np.array_equal(state.sequence, model.encode([histories[0]])[0])
    before = state.nbytes
    generate(components, Requests([histories[0]], np.array([200]), requests.as_of[:1], [np.empty(0, np.int64)]),
             per_route=40, states=[state])
    assert state.nbytes == before


def test_a_bundle_keeps_the_sequential_route(components, split, tmp_path):
    from recsys_runtime.bundle import load_bundle, save_bundle
    from recsys_training.ranker import train_ranker, training_set

    h = components.histories
    booster, info = train_ranker(training_set(components, split.test), seed=0)
    manifest = save_bundle(components, booster, tmp_path / "bundle", {"version": "v1", "ranker": info})
    assert manifest["routes"][-1] == "sequential" and manifest["sequential"]["epochs"] == SMALL["epochs"]
    loaded = load_bundle(tmp_path / "bundle")
    assert np.array_equal(loaded.components.sequential.item_embeddings, components.sequential.item_embeddings)
    user = str(h.users[3])
    from recsys_runtime.recommender import Recommender

    direct = Recommender(components=components, ranker=booster, version="v1").recommend(user, k=10)
    assert [i for i in loaded.recommend(user, k=10).items] == [i for i in direct.items]



def test_a_champion_without_the_route_is_scored_on_its_own_columns(components, split):
    import dataclasses

    from sklearn.metrics import roc_auc_score

    from recsys_training.ranker import ranking_auc, train_ranker, training_set

    with_route = training_set(components, split.test)
    without = training_set(dataclasses.replace(components, sequential=None), split.test)
    champion, _ = train_ranker(without, seed=0)
    challenger, _ = train_ranker(with_route, seed=0)
    names = list(feature_names(routes_for(components)))
    columns = [names.index(name) for name in champion.feature_name()]
    positives = np.bincount(with_route.candidates.rows, weights=with_route.labels)[with_route.candidates.rows] > 0
    expected = roc_auc_score(with_route.labels[positives],
                             champion.predict(with_route.candidates.features[positives][:, columns]))
    assert ranking_auc(champion, with_route) == pytest.approx(expected) and 0.5 < expected <= 1.0
    assert ranking_auc(challenger, without) is None


def test_a_bundle_stores_the_routes_hnsw_graph_and_searches_the_same(components, split, tmp_path, monkeypatch):
    import recsys_runtime.sequential as sequential_module
    from recsys_runtime.bundle import SEQUENTIAL_HNSW_FILE, load_bundle, save_bundle
    from recsys_training.ranker import train_ranker, training_set

    monkeypatch.setattr(sequential_module, "APPROXIMATE_ABOVE", 10)  # this small catalog gets an HNSW graph
    model = components.sequential
    model.use_graph(None)
    assert model.build_index().kind == "hnsw"
    booster, info = train_ranker(training_set(components, split.test), seed=0)
    manifest = save_bundle(components, booster, tmp_path / "bundle", {"version": "v1", "ranker": info})
    assert SEQUENTIAL_HNSW_FILE in manifest["files"]
    loaded = load_bundle(tmp_path / "bundle").components.sequential
    assert loaded._graph is not None and loaded.build_index().kind == "hnsw"  # read from the file, not rebuilt
    queries = model.encode([components.histories.items[:20].astype(np.int64), np.array([3, 7, 11])])
    for query in queries:
        assert np.array_equal(loaded.nearest(query, 30)[0], model.nearest(query, 30)[0])
    model.use_graph(None)
    monkeypatch.undo()
    assert model.build_index().kind == "exact"
