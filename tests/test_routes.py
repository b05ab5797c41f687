import numpy as np
import pytest
import scipy.sparse as sp

from recsys_runtime.content_index import ContentIndex
from recsys_training.collaborative import ease_item_weights, ease_recall_matrix, item_cosine_matrix
from recsys_training.covisitation import covisitation_matrix
from recsys_training.popularity import item_timeline
from recsys_training.sparse_topk import keep_top_k_per_row
from tests.conftest import interactions

DAY = 86_400



def ease_weights(matrix: sp.csr_matrix, lam: float = 500.0) -> np.ndarray:
    """The textbook closed form (Steck 2019) with a float64 inverse: the reference the
    package's Cholesky solver is checked against."""
    gram = (matrix.T @ matrix).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += lam
    precision = np.linalg.inv(gram)
    weights = precision / (-np.diag(precision))
    weights[np.diag_indices_from(weights)] = 0.0
    return weights

def test_covisitation_pairs_decay_with_time_and_are_cosine_normalised():
    rows = [("u", "a", 0), ("u", "b", 30 * DAY), ("v", "a", 0), ("v", "c", 0)]
    items = np.array(["a", "b", "c"])
    m = covisitation_matrix(interactions(rows), items, window=5, half_life_days=30.0).toarray()
    # a-b: one pair 30 days apart = 0.5, a seen twice, b once -> 0.5 / sqrt(2 * 1)
    assert m[0, 1] == pytest.approx(0.5 / np.sqrt(2), rel=1e-5)
    # a-c: same moment = 1.0 -> 1 / sqrt(2)
    assert m[0, 2] == pytest.approx(1 / np.sqrt(2), rel=1e-5)
    assert m[1, 2] == 0 and np.allclose(m, m.T)


def test_covisitation_window_limits_pair_distance():
    rows = [("u", x, t) for t, x in enumerate("abcd")]
    m = covisitation_matrix(interactions(rows), np.array(list("abcd")), window=1).toarray()
    assert m[0, 1] > 0 and m[0, 2] == 0 and m[0, 3] == 0


def test_ease_cholesky_matches_closed_form():
    rng = np.random.default_rng(1)
    x = sp.csr_matrix((rng.random((200, 40)) < 0.15).astype(np.float32))
    assert np.allclose(ease_item_weights(x, 10.0), ease_weights(x, 10.0), atol=1e-5)


def test_ease_recall_keeps_largest_magnitudes_and_most_popular_items():
    rng = np.random.default_rng(2)
    x = sp.csr_matrix((rng.random((300, 30)) < 0.2).astype(np.float32))
    full = ease_weights(x, 5.0)
    pruned = ease_recall_matrix(x, lam=5.0, top_k=5).toarray()
    assert ((pruned != 0).sum(axis=1) <= 5).all()
    kept = pruned != 0
    for row in range(30):
        smallest_kept = np.abs(full[row][kept[row]]).min()
        assert np.abs(full[row][~kept[row]]).max() <= smallest_kept + 1e-6
    limited = ease_recall_matrix(x, lam=5.0, top_k=5, max_items=10)
    counts = np.asarray(x.sum(axis=0)).ravel()
    outside = np.argsort(-counts, kind="stable")[10:]
    assert limited[outside].nnz == 0 and limited[:, outside].nnz == 0


def test_keep_top_k_per_row():
    m = sp.csr_matrix(np.array([[5.0, 1.0, 3.0, 0.0], [0.0, 2.0, 0.0, 0.0]]))
    assert keep_top_k_per_row(m, 2).toarray().tolist() == [[5.0, 0.0, 3.0, 0.0], [0.0, 2.0, 0.0, 0.0]]


def test_timeline_window_counts_and_trending():
    rows = [("u1", "a", 1 * DAY), ("u2", "a", 2 * DAY), ("u3", "b", 40 * DAY), ("u4", "b", 41 * DAY),
            ("u5", "b", 42 * DAY)]
    items = np.array(["a", "b"])
    timeline = item_timeline(interactions(rows), items, trending_days=30, n_buckets=4, list_size=2)
    counts = timeline.window_counts(np.array([0, 1, 0]), np.array([2 * DAY, 42 * DAY, 42 * DAY]), 30 * DAY)
    assert counts.tolist() == [2.0, 3.0, 0.0]
    assert timeline.first_seen(np.array([0, 1])).tolist() == [1 * DAY, 40 * DAY]
    assert timeline.trending_at(np.array([42 * DAY]))[0].tolist()[0] == 1  # b is trending at the end
    assert timeline.trending_at(np.array([12 * DAY]))[0].tolist()[0] == 0  # a, earlier


@pytest.mark.parametrize("use_faiss", [True, False])
def test_content_index_backends_agree(use_faiss):
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = ContentIndex(vectors, use_faiss=use_faiss)
    scores, idx = index.search(vectors[:3], 4)
    assert idx[:, 0].tolist() == [0, 1, 2]
    exact = vectors[:3] @ vectors.T
    assert np.allclose(scores, np.take_along_axis(exact, idx, axis=1), atol=1e-5)
    assert np.allclose(np.sort(exact, axis=1)[:, ::-1][:, :4], scores, atol=1e-5)


def test_item_cosine_equals_the_dense_cosine_pruned_per_row_in_any_block_size():
    matrix = sp.random(60, 40, density=0.15, random_state=3, format="csr", dtype=np.float32)
    matrix.data[:] = 1.0
    dense = matrix.toarray()
    norms = np.maximum(np.sqrt(dense.sum(axis=0)), 1.0)
    cosine = (dense.T @ dense) / np.outer(norms, norms)
    np.fill_diagonal(cosine, 0.0)
    for block in (7, 40):
        pruned = item_cosine_matrix(matrix, top_k=5, block=block).toarray()
        for row in range(40):
            kept = np.flatnonzero(pruned[row])
            assert len(kept) == min(5, np.count_nonzero(cosine[row]))
            assert np.allclose(pruned[row, kept], cosine[row, kept], atol=1e-6)
            if len(kept):  # the kept ones are the row's largest
                assert cosine[row, kept].min() >= np.sort(cosine[row])[::-1][len(kept) - 1] - 1e-6
        assert np.all(np.diag(pruned) == 0)


def test_an_hnsw_index_round_trips_through_pickle_and_the_bundle(tmp_path):
    import pickle

    from recsys_runtime.bundle import HNSW_FILE, load_bundle, read_manifest
    from tests.bundles import build_bundle

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = ContentIndex(vectors, kind="hnsw")
    copy = pickle.loads(pickle.dumps(index))
    queries = vectors[:20]
    assert copy.kind == "hnsw"
    assert all(np.array_equal(a, b) for a, b in zip(index.search(queries, 10), copy.search(queries, 10), strict=True))
    exact = ContentIndex(vectors, kind="exact").search(queries, 10)[1]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(index.search(queries, 10)[1], exact, strict=True)]) > 0.9
    assert ContentIndex(vectors, approximate_above=100).kind == "hnsw" and ContentIndex(vectors).kind == "exact"
    build_bundle(tmp_path / "v", seed=2, version="v", content_kind="hnsw")
    manifest = read_manifest(tmp_path / "v")
    assert manifest["content_index"]["kind"] == "hnsw" and HNSW_FILE in manifest["files"]
    loaded = load_bundle(tmp_path / "v")
    assert loaded.components.content_index.kind == "hnsw" and loaded.recommend("u3", k=5).fallback is None
    # serving reads the stored neighbour lists: the graph (a second copy of the vectors) stays on disk
    served = loaded.components.content_index
    assert served._index is None
    stored = load_bundle(tmp_path / "v").components.content_index
    assert np.array_equal(served.search(served.vectors[:5], 10)[1], stored.search(stored.vectors[:5], 10)[1])
    assert served._index is not None and (served.graph() == stored.graph()).all()


def test_one_moments_trending_list_equals_the_vectorised_lookup():
    from recsys_runtime.components import ItemTimeline

    timeline = ItemTimeline(keys=np.arange(5), counts=np.ones(3, np.float32), bucket_ends=np.array([10, 20, 30]),
                            trending=np.arange(9).reshape(3, 3), trending_seconds=5)
    for moment in (0, 10, 15, 20, 29, 30, 35):
        assert np.array_equal(timeline.trending_list(moment), timeline.trending_at(np.array([moment]))[0]), moment
