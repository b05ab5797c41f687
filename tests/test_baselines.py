"""The most-popular baseline read from one popularity order equals the dense ranking of every item;
item-kNN's scores summed straight into a dense array equal scipy's sparse product."""

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_training import baselines, synthetic
from recsys_training.matrix import InteractionMatrix, rows_times


def test_most_popular_from_the_head_of_one_order_equals_ranking_every_item():
    rows = synthetic.generate(150, 400, 6_000, seed=11).interactions.rows
    data = InteractionMatrix.from_interactions(rows)
    users = data.users[::3]
    counts = np.asarray(data.matrix.sum(axis=0), dtype=np.float64)
    assert len(np.unique(counts)) < counts.size  # equal counts exist, so the tie order is tested
    # the dense reference: every item scored, equal counts broken by item order
    tie_free = counts - np.arange(counts.size)[None, :] * 1e-6
    dense_users = baselines.rank_all(data, users, lambda h: np.repeat(tie_free, h.shape[0], 0), 10)
    # half the pages are the user's own first most-popular item, which the page list must leave out
    rng = np.random.default_rng(0)
    pages = [dense_users[u][0] if i % 2 else str(rng.choice(data.items)) for i, u in enumerate(users)]
    dense_pages = baselines.rank_for_pages(data, users, pages, lambda g: np.repeat(tie_free, g.shape[0], 0), 10)
    assert baselines.most_popular_sparse(data, users, 10) == dense_users
    on_pages = baselines.most_popular_sparse(data, users, 10, pages)
    assert on_pages == dense_pages
    assert all(page not in on_pages[u] for u, page in zip(users, pages, strict=True))
    assert any(on_pages[u] != dense_users[u] for u in users)  # the page's item is left out where it ranked


@pytest.mark.parametrize("with_pages", [False, True])
def test_item_knn_scores_summed_into_a_dense_array_equal_the_sparse_product(with_pages):
    rows = synthetic.generate(200, 500, 9_000, seed=4).interactions.rows
    data = InteractionMatrix.from_interactions(rows)
    cosine = baselines.cosine_similarity(data.matrix)
    history = data.matrix[::2]
    assert np.diff(history.indptr).min() >= 1 and history.dtype == cosine.dtype == np.float32
    if with_pages:  # one-hot float64 page rows, plus a row with no entries: scipy sums in float64 then
        pages = sp.csr_matrix((np.ones(3), ([0, 1, 3], [5, 7, 9])), shape=(4, data.matrix.shape[1]))
        history = (history[:4] + pages).tocsr()
        history = sp.vstack([history, sp.csr_matrix((1, data.matrix.shape[1]))]).tocsr()
    expected = (history @ cosine).toarray()
    found = rows_times(history, cosine)
    assert found.dtype == expected.dtype == (np.float64 if with_pages else np.float32)
    assert np.array_equal(found, expected)  # equal, not close: the same sums in the same order
    with pytest.raises(ValueError, match="columns"):
        rows_times(history[:, :-1], cosine)
