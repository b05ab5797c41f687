"""Recall routes and ranker features, computed for a batch of requests at once.

The same function feeds the ranker's training (components fitted on the training cut) and the
served recommendations (components fitted on all training data), so the features the ranker
learnt from are exactly the ones it sees in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recsys_serving.components import Components

if TYPE_CHECKING:
    from recsys_serving.lone_request import RouteOrders

ROUTES = ("collaborative", "covisitation", "content", "trending", "popular")
FEATURES = (
    "collaborative_score", "collaborative_rel", "covisitation_score", "covisitation_rel",
    "content_score", "anchor_collaborative", "anchor_covisitation", "anchor_content",
    "log_count", "trend_7d", "trend_30d", "trend_365d", "item_age_days", "item_mean_value",
    "category_affinity", "log_history_length",
) + tuple(f"from_{route}" for route in ROUTES)
# Score each route ranks by when it is evaluated alone.
ROUTE_SCORE = {
    "collaborative": "collaborative_score",
    "covisitation": "covisitation_score",
    "content": "content_score",
    "trending": "trend_30d",
    "popular": "log_count",
}
RECENCY_HALF_LIFE = 10.0
DAY = 86_400
TREND_WINDOWS = (7 * DAY, 30 * DAY, 365 * DAY)


@dataclass
class Requests:
    """A batch of requests: each has a history (item indices, oldest first), an anchor item
    index (-1 for none), a reference time and items that must not be returned. History items
    are never returned unless ``keep_seen`` is set for the request."""

    histories: list[np.ndarray]
    anchors: np.ndarray
    as_of: np.ndarray
    exclude: list[np.ndarray]
    keep_seen: np.ndarray | None = None


@dataclass
class Candidates:
    """Flat (request row, item index) pairs with their feature matrix and route bitmask."""

    rows: np.ndarray
    items: np.ndarray
    features: np.ndarray
    routes: np.ndarray
    failed_routes: tuple = ()

    def route_names(self, position: int) -> list[str]:
        bits = int(self.routes[position])
        return [name for r, name in enumerate(ROUTES) if bits & (1 << r)]


@dataclass
class _History:
    """The batch's histories as flat arrays: request row, item index and recency weight."""

    rows: np.ndarray
    items: np.ndarray
    recency: np.ndarray
    indptr: np.ndarray

    @classmethod
    def of(cls, histories: list[np.ndarray]) -> _History:
        lengths = np.array([len(h) for h in histories], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        items = np.concatenate(histories).astype(np.int64) if len(histories) else np.empty(0, np.int64)
        from_end = (np.repeat(indptr[1:], lengths) - 1 - np.arange(len(items))).astype(np.float32)
        return cls(np.repeat(np.arange(len(histories)), lengths), items,
                   np.power(0.5, from_end / RECENCY_HALF_LIFE).astype(np.float32), indptr)

    def row_sums(self, values: np.ndarray) -> np.ndarray:
        """Per request, the sum of ``values`` (one row per history entry)."""
        out = np.zeros((len(self.indptr) - 1, values.shape[1]), dtype=np.float32)
        nonempty = np.flatnonzero(np.diff(self.indptr) > 0)
        if len(nonempty):
            out[nonempty] = np.add.reduceat(values, self.indptr[:-1][nonempty], axis=0)
        return out


def _gather_rows(matrix: sp.csr_matrix, request_rows: np.ndarray, item_rows: np.ndarray, weights: np.ndarray,
                 batch: int) -> np.ndarray:
    """Dense (batch x items): each (request, item, weight) adds ``weight * matrix[item]`` to the
    request's row. The same as a sparse product, without scipy's per-call overhead."""
    n_cols = matrix.shape[1]
    starts = matrix.indptr[item_rows]
    lengths = matrix.indptr[item_rows + 1] - starts
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
    target = np.repeat(request_rows, lengths) * n_cols + matrix.indices[offsets]
    values = matrix.data[offsets] * np.repeat(weights, lengths)
    return np.bincount(target, weights=values, minlength=batch * n_cols).reshape(batch, n_cols).astype(np.float32)


def top_mask(scores: np.ndarray, n: int) -> np.ndarray:
    """Per row, the ``n`` best positive scores as a mask, ties broken by the lower item index:
    a function of the scores alone, so every method that finds it agrees."""
    n = min(n, scores.shape[1])
    kth = -np.partition(-scores, n - 1, axis=1)[:, n - 1 : n]
    above = scores > kth
    tied = scores == kth
    need = n - above.sum(axis=1)
    excess = np.flatnonzero(tied.sum(axis=1) > need)
    if len(excess):
        tied[excess] &= np.cumsum(tied[excess], axis=1, dtype=np.int32) <= need[excess, None]
    return (above | tied) & (scores > 0)


def _scatter(scores: np.ndarray, indices: np.ndarray, batch: int, n_items: int) -> np.ndarray:
    """Dense (batch x items) matrix holding the positive search scores, zero elsewhere."""
    dense = np.zeros((batch, n_items), dtype=np.float32)
    rows, pos = np.nonzero((indices >= 0) & (scores > 0))
    dense[rows, indices[rows, pos]] = scores[rows, pos]
    return dense


def _row_normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


@dataclass
class HistoryState:
    """What a batch's candidates need from the histories alone (no anchor, no exclusions): the
    collaborative and co-visitation scores over the catalog, the content profile and its
    neighbours, and the category profile. Deterministic for a given history, so a service can
    keep it per user."""

    collaborative: np.ndarray
    covisitation: np.ndarray
    profile: np.ndarray
    content: np.ndarray
    user_categories: np.ndarray
    failed_routes: tuple = ()
    orders: RouteOrders | None = None  # set by lone_request.route_orders for a cached user

    @property
    def nbytes(self) -> int:
        arrays = [self.collaborative, self.covisitation, self.profile, self.content, self.user_categories]
        return sum(a.nbytes for a in arrays) + (self.orders.nbytes if self.orders is not None else 0)


def _isolated(failed: list, route: str, compute):
    """A route that raises is cut off for this batch (its scores are zero), not the request."""
    try:
        return compute()
    except Exception:  # noqa: BLE001 - any route failure degrades to the other routes
        failed.append(route)
        return None


def history_state(components: Components, histories: list[np.ndarray], per_route: int = 100) -> HistoryState:
    n_items = len(components.items)
    batch = len(histories)
    history = _History.of(histories)
    ones = np.ones(len(history.items), dtype=np.float32)
    failed: list[str] = []
    empty = np.zeros((batch, n_items), dtype=np.float32)
    collaborative = _isolated(failed, "collaborative", lambda: _gather_rows(
        components.ease, history.rows, history.items, ones, batch))
    covisitation = _isolated(failed, "covisitation", lambda: _gather_rows(
        components.covisitation, history.rows, history.items, history.recency, batch))
    embeddings = components.embeddings
    profile = _row_normalise(history.row_sums(embeddings[history.items] * history.recency[:, None]))
    content = _isolated(failed, "content", lambda: components.content_index.search(profile, per_route))
    lengths = np.array([len(h) for h in histories], dtype=np.float32)
    categories = components.category_matrix
    user_categories = history.row_sums(categories[history.items]) / np.maximum(lengths, 1.0)[:, None]
    return HistoryState(
        collaborative=empty if collaborative is None else collaborative,
        covisitation=empty if covisitation is None else covisitation,
        profile=profile,
        content=_scatter(*content, batch, n_items) if content is not None else empty,
        user_categories=user_categories,
        failed_routes=tuple(failed),
    )


def route_sizes(per_route: int) -> tuple[int, ...]:
    """How many candidates each route of ROUTES proposes."""
    return per_route, per_route, per_route // 2, per_route // 2, per_route // 2


def trending_scores(components: Components, as_of: np.ndarray) -> np.ndarray:
    """Dense (requests x items): the trending list at each request's time as descending scores."""
    lists = components.timeline.trending_at(as_of)
    trending = np.zeros((len(lists), len(components.items)), dtype=np.float32)
    list_rows, list_pos = np.nonzero(lists >= 0)
    trending[list_rows, lists[list_rows, list_pos]] = lists.shape[1] - list_pos
    return trending


def generate(components: Components, requests: Requests, per_route: int = 100,
             state: HistoryState | None = None) -> Candidates:
    """Candidates of every route for every request, with the ranker's feature matrix, from dense
    (requests x catalog) scores. ``state``: the requests' ``history_state``, when the caller
    already has it. ``lone_request.generate_one`` answers a lone request identically without
    the catalog-wide work."""
    state = state if state is not None else history_state(components, requests.histories, per_route)
    n_items = len(components.items)
    batch = len(requests.histories)
    lengths = np.array([len(h) for h in requests.histories], dtype=np.int64)
    history_rows = np.repeat(np.arange(batch), lengths)
    history_items = np.concatenate(requests.histories).astype(np.int64) if batch else np.empty(0, np.int64)
    anchors = requests.anchors
    anchor_rows = np.flatnonzero(anchors >= 0)
    failed = list(state.failed_routes)
    empty = np.zeros((batch, n_items), dtype=np.float32)
    anchor_weights = np.ones(len(anchor_rows), dtype=np.float32)
    anchor_collab = _isolated(failed, "collaborative", lambda: _gather_rows(
        components.ease, anchor_rows, anchors[anchor_rows], anchor_weights, batch))
    anchor_covis = _isolated(failed, "covisitation", lambda: _gather_rows(
        components.covisitation, anchor_rows, anchors[anchor_rows], anchor_weights, batch))
    anchor_collab = empty if anchor_collab is None or "collaborative" in state.failed_routes else anchor_collab
    anchor_covis = empty if anchor_covis is None or "covisitation" in state.failed_routes else anchor_covis
    failed = list(dict.fromkeys(failed))

    unavailable = np.zeros((batch, n_items), dtype=bool)
    hide = np.ones(len(history_rows), dtype=bool) if requests.keep_seen is None else ~requests.keep_seen[history_rows]
    unavailable[history_rows[hide], history_items[hide]] = True
    for row, items in enumerate(requests.exclude):
        unavailable[row, items] = True
    proposals = (state.collaborative, state.covisitation + anchor_covis, state.content,
                 trending_scores(components, requests.as_of), np.broadcast_to(components.log_counts, (batch, n_items)))
    mask = np.zeros((batch, n_items), dtype=np.uint8)
    for bit, (scores, n) in enumerate(zip(proposals, route_sizes(per_route), strict=True)):
        mask |= top_mask(np.where(unavailable, 0.0, scores), n).astype(np.uint8) << np.uint8(bit)
    rows, cols = np.nonzero(mask)
    features = candidate_features(components, requests, state, rows, cols, mask[rows, cols],
                                  anchor_collab[rows, cols], anchor_covis[rows, cols])
    return Candidates(rows=rows, items=cols, features=features, routes=mask[rows, cols], failed_routes=tuple(failed))


def category_affinity(components: Components, user_categories: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Share of each candidate's categories in its user's history (row i: candidate ``cols[i]``)."""
    item_categories = components.category_matrix[cols]
    affinity = np.einsum("ij,ij->i", item_categories, user_categories)
    affinity /= np.maximum(components.category_counts[cols], 1.0)
    return affinity


def candidate_features(components: Components, requests: Requests, state: HistoryState, rows: np.ndarray,
                       cols: np.ndarray, bits: np.ndarray, anchor_collab: np.ndarray, anchor_covis: np.ndarray,
                       orders: RouteOrders | None = None) -> np.ndarray:
    """The ranker's feature matrix (FEATURES) of candidates ``(rows, cols)``; ``anchor_*``: the
    anchor's route scores of each candidate; ``orders``: a lone request's per-item features."""
    embeddings = components.embeddings
    timeline = components.timeline
    as_of = requests.as_of[rows]
    has_anchor = requests.anchors >= 0
    lengths = np.array([len(h) for h in requests.histories], dtype=np.float32)
    collaborative, covisitation = state.collaborative[rows, cols], state.covisitation[rows, cols]
    if orders is not None:
        affinity = orders.affinity[cols]
        trend_7d, trend_30d, trend_365d = (trend[cols] for trend in orders.trends)
    else:
        affinity = category_affinity(components, state.user_categories[rows], cols)
        trend_7d, trend_30d, trend_365d = timeline.windows(cols, as_of, TREND_WINDOWS)
    candidate_vectors = embeddings[cols]
    anchor_vectors = embeddings[np.where(has_anchor, requests.anchors, 0)[rows]]
    columns = [
        collaborative,
        collaborative / np.maximum(state.collaborative.max(axis=1), 1e-9)[rows],
        covisitation,
        covisitation / np.maximum(state.covisitation.max(axis=1), 1e-9)[rows],
        np.einsum("ij,ij->i", state.profile[rows], candidate_vectors),
        anchor_collab,
        anchor_covis,
        np.einsum("ij,ij->i", anchor_vectors, candidate_vectors) * has_anchor[rows],
        components.log_counts[cols],
        np.log1p(trend_7d),
        np.log1p(trend_30d),
        np.log1p(trend_365d),
        (as_of - components.first_seen[cols]) / DAY,
        components.item_mean_value[cols],
        affinity,
        np.log1p(lengths[rows]),
    ]
    columns += [(bits >> r) & 1 for r in range(len(ROUTES))]
    features = np.empty((len(rows), len(columns)), dtype=np.float32)
    for j, column in enumerate(columns):
        features[:, j] = column
    return features


def generate_batched(components: Components, requests: Requests, per_route: int = 100,
                     batch_cells: int = 20_000_000) -> Candidates:
    """``generate`` over slices of the requests so the dense (requests x items) work arrays stay
    within about ``batch_cells`` cells; rows are renumbered to the whole batch."""
    step = max(1, batch_cells // max(1, len(components.items)))
    parts = []
    for start in range(0, len(requests.histories), step):
        window = slice(start, start + step)
        keep_seen = None if requests.keep_seen is None else requests.keep_seen[window]
        part = generate(components, Requests(requests.histories[window], requests.anchors[window],
                                             requests.as_of[window], requests.exclude[window], keep_seen), per_route)
        part.rows = part.rows + start
        parts.append(part)
    if len(parts) == 1:
        return parts[0]
    return Candidates(
        rows=np.concatenate([p.rows for p in parts]),
        items=np.concatenate([p.items for p in parts]),
        features=np.concatenate([p.features for p in parts]),
        routes=np.concatenate([p.routes for p in parts]),
        failed_routes=tuple(sorted({r for p in parts for r in p.failed_routes})),
    )


def top_per_row(rows: np.ndarray, scores: np.ndarray, k: int, n_rows: int) -> list[np.ndarray]:
    """Positions (into ``rows``) of the ``k`` best scores of each row, best first."""
    order = np.lexsort((-scores, rows))
    sorted_rows = rows[order]
    starts = np.searchsorted(sorted_rows, np.arange(n_rows), side="left")
    ends = np.searchsorted(sorted_rows, np.arange(n_rows), side="right")
    return [order[s : min(e, s + k)] for s, e in zip(starts, ends, strict=True)]
