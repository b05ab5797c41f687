"""Recall candidates and ranker features, one request at a time, in sparse form.

The same function feeds the ranker's training (components fitted on the training cut), the
offline evaluation and the service (components fitted on all training data), so the features the
ranker learnt from are exactly the ones it sees in production. A request's work grows with its
history and its candidates: every route answers from per-item neighbour lists or from global
top-N lists (``routes.ROUTES``), and features are computed for the candidates only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_runtime import kernels
from recsys_runtime.components import Components
from recsys_runtime.routes import ROUTES, Route, RouteInput, route_names, routes_for
from recsys_runtime.sparse import SparseRow, row_entries, unique_sorted

RECENCY_HALF_LIFE = 10.0
STATE_HISTORY = 200  # a state reads the latest items of a history (older ones weigh < 1e-6 in recency)
STATE_SUPPORT = 2_048  # a state keeps the strongest entries of each summed neighbour list
DAY = 86_400
TREND_WINDOWS = (7 * DAY, 30 * DAY, 365 * DAY)
BASE_FEATURES = (
    "collaborative_score", "collaborative_rel", "covisitation_score", "covisitation_rel",
    "content_score", "anchor_collaborative", "anchor_covisitation", "anchor_content",
    "log_count", "trend_7d", "trend_30d", "trend_365d", "item_age_days", "item_mean_value",
    "category_affinity", "log_history_length",
)
# the features computed per candidate by ``kernels.item_features``, in the order it writes them
ITEM_FEATURES = ("content_score", "anchor_content", "log_count", "trend_7d", "trend_30d", "trend_365d",
                 "item_age_days", "item_mean_value", "category_affinity", "log_history_length")


def feature_names(routes: tuple[Route, ...] = ROUTES) -> tuple[str, ...]:
    """The ranker's feature columns: the base features, those only some routes bring, then which
    routes proposed the item."""
    return (BASE_FEATURES + tuple(name for route in routes for name in route.features)
            + tuple(f"from_{route.name}" for route in routes))


FEATURES = feature_names(ROUTES)


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
    route_table: tuple[Route, ...] = ROUTES

    def route_names(self, position: int) -> list[str]:
        bits = int(self.routes[position])
        return [route.name for r, route in enumerate(self.route_table) if bits & (1 << r)]


@dataclass
class UserState:
    """What a request's candidates need from its history alone (no anchor, no exclusions): the
    strongest ``STATE_SUPPORT`` entries of the history's summed collaborative and co-visitation
    neighbour lists as sparse rows, the content profile, the strongest ``per_route`` items of its
    summed content neighbour lists, and the category profile. Deterministic for a given history,
    so a service can keep it per user. Its size is bounded whatever the history and the catalog:
    8 bytes x (collaborative support + co-visitation support + content hits) + 4 bytes x
    (embedding dimension + categories), where a support is at most min(STATE_SUPPORT,
    min(history, STATE_HISTORY) x neighbours per item) and content hits at most ``per_route``,
    plus 4 bytes x the sequential model's dimension once a request without a new anchor needed
    the history's sequential vector (``sequence_vectors`` keeps it here)."""

    collaborative: SparseRow
    covisitation: SparseRow
    content: SparseRow
    profile: np.ndarray
    user_categories: np.ndarray
    failed_routes: tuple = ()
    image: SparseRow | None = None  # with image vectors: the image profile's nearest items
    image_profile: np.ndarray | None = None
    sequence: np.ndarray | None = None  # the sequential model's vector of the history, once a request needed it

    @property
    def nbytes(self) -> int:
        image = (self.image.nbytes + self.image_profile.nbytes) if self.image is not None else 0
        sequence = self.sequence.nbytes if self.sequence is not None else 0
        return (self.collaborative.nbytes + self.covisitation.nbytes + self.content.nbytes
                + self.profile.nbytes + self.user_categories.nbytes + image + sequence)


def _isolated(failed: list, route: str, compute, empty):
    """A route that raises is cut off for this request (its scores are zero), not the request."""
    try:
        return compute()
    except Exception:  # noqa: BLE001 - any route failure degrades to the other routes
        failed.append(route)
        return empty


def recency_weights(length: int) -> np.ndarray:
    """Weight of each history position (oldest first): halves every RECENCY_HALF_LIFE items."""
    from_end = np.arange(length - 1, -1, -1).astype(np.float32)
    return np.power(0.5, from_end / RECENCY_HALF_LIFE).astype(np.float32)


def user_state(components: Components, history: np.ndarray, per_route: int = 100) -> UserState:
    """The ``UserState`` of one history (item indices, oldest first), from its latest
    ``STATE_HISTORY`` items, so its cost and size are bounded whatever the history's length."""
    history = np.asarray(history, dtype=np.int64)[-STATE_HISTORY:]
    n_items = len(components.items)
    recency = recency_weights(len(history))
    failed: list[str] = []
    empty = SparseRow.empty(n_items)
    accumulate = components.accumulator.rows
    collaborative = _isolated(failed, "collaborative", lambda: _strongest(accumulate(
        components.ease, history, np.ones(len(history), np.float32)), STATE_SUPPORT), empty)
    covisitation = _isolated(failed, "covisitation", lambda: _strongest(accumulate(
        components.covisitation, history, recency), STATE_SUPPORT), empty)
    profile = _profile(components.embeddings, history, recency)
    content = _isolated(failed, "content", lambda: _strongest(accumulate(
        components.content_index.neighbours(), history, recency), per_route), empty)
    image = image_profile = None
    if components.image_index is not None:
        image_profile = _profile(components.image_index.vectors, history, recency)
        image = _isolated(failed, "image", lambda: _nearest(components.image_index, image_profile, per_route, n_items),
                          empty)
        image_profile = image_profile[0].astype(np.float32)
    categories = components.categories
    offsets, _ = row_entries(categories, history)
    counts = np.bincount(categories.indices[offsets], minlength=categories.shape[1]).astype(np.float32)
    return UserState(
        collaborative=collaborative,
        covisitation=covisitation,
        content=content,
        profile=profile[0].astype(np.float32),
        user_categories=counts / np.float32(max(len(history), 1)),
        failed_routes=tuple(failed),
        image=image,
        image_profile=image_profile,
    )


def _profile(vectors: np.ndarray, history: np.ndarray, recency: np.ndarray) -> np.ndarray:
    """The recency-weighted, L2-normalised mean of the history's vectors (zeros for no history)."""
    profile = kernels.weighted_row_sum(vectors, history, recency)[None, :]
    return profile / np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)


def _strongest(row: SparseRow, k: int) -> SparseRow:
    """The ``k`` best positive entries of ``row`` (ties to the lower item), still ascending by item."""
    if len(row.items) <= k:
        return row
    kept = kernels.strongest_positions(row.items, row.values, k)
    return SparseRow(row.items[kept], row.values[kept], row.catalog_size)


def _nearest(index, profile: np.ndarray, k: int, n_items: int) -> SparseRow:
    scores, indices = index.search(profile, k)
    keep = (indices[0] >= 0) & (scores[0] > 0)
    items, values = indices[0][keep], scores[0][keep].astype(np.float32)
    order = np.argsort(items)
    return SparseRow(items[order].astype(np.int32), values[order], n_items)


def _anchor_row(matrix, anchor: int) -> SparseRow:
    if anchor < 0:
        return SparseRow.empty(matrix.shape[1])
    lo, hi = matrix.indptr[anchor], matrix.indptr[anchor + 1]
    return SparseRow(matrix.indices[lo:hi].astype(np.int32), matrix.data[lo:hi].astype(np.float32), matrix.shape[1])


def _relative(values: np.ndarray, row: SparseRow) -> np.ndarray:
    return values / np.float32(max(row.max(), 1e-9))


@dataclass
class _OneRequest:
    items: np.ndarray
    bits: np.ndarray
    columns: dict[str, np.ndarray]
    failed: tuple


def sequence_vectors(components: Components, requests: Requests, states: list[UserState]) -> np.ndarray | None:
    """Each request's sequential vector (None without a sequential model): its state's (encoded
    and kept there the first time), or, when the anchor is not the history's last item, that of
    the history followed by the anchor (the page the user is on is their latest item)."""
    model = components.sequential
    if model is None:
        return None
    vectors = np.zeros((len(states), model.dimension), np.float32)
    for row, state in enumerate(states):
        history, anchor = requests.histories[row], int(requests.anchors[row])
        if anchor >= 0 and (len(history) == 0 or int(history[-1]) != anchor):
            vectors[row] = model.encode([np.append(np.asarray(history, dtype=np.int64)[-model.max_length:], anchor)])[0]
        else:
            if state.sequence is None:
                state.sequence = model.encode([history])[0]
            vectors[row] = state.sequence
    return vectors


def _candidates_of(components: Components, state: UserState, history: np.ndarray, anchor: int, as_of: int,
                   exclude: np.ndarray, keep_seen: bool, per_route: int, routes: tuple[Route, ...],
                   sequence: np.ndarray | None = None) -> _OneRequest:
    failed = list(state.failed_routes)
    empty = SparseRow.empty(len(components.items))
    anchor_rows = {}  # the anchor's own neighbour list per route; empty where the route failed
    for route, matrix in (("collaborative", lambda: components.ease), ("covisitation", lambda: components.covisitation),
                          ("content", lambda: components.content_index.neighbours())):
        row = _isolated(failed, route, lambda matrix=matrix: _anchor_row(matrix(), anchor), empty)
        anchor_rows[route] = empty if route in state.failed_routes else row
    blocked = np.asarray(exclude, dtype=np.int64) if keep_seen else np.concatenate([history, exclude]).astype(np.int64)
    blocked = unique_sorted(blocked)
    given = RouteInput(components, state, anchor, anchor_rows["covisitation"], anchor_rows["content"], as_of, blocked,
                       sequence)
    sizes = [route.size(per_route) for route in routes]
    items, bits = components.accumulator.pick([route.propose(given, n) for route, n in zip(routes, sizes, strict=True)],
                                              sizes, blocked)
    collaborative, covisitation = state.collaborative.at(items), state.covisitation.at(items)
    columns = {
        "collaborative_score": collaborative,
        "collaborative_rel": _relative(collaborative, state.collaborative),
        "covisitation_score": covisitation,
        "covisitation_rel": _relative(covisitation, state.covisitation),
        "anchor_collaborative": anchor_rows["collaborative"].at(items),
        "anchor_covisitation": anchor_rows["covisitation"].at(items),
    }
    return _OneRequest(items, bits, columns, tuple(dict.fromkeys(failed)))


def generate(components: Components, requests: Requests, per_route: int = 100,
             states: list[UserState | None] | None = None, routes: tuple[Route, ...] | None = None) -> Candidates:
    """Candidates of every route for every request, with the ranker's feature matrix.
    ``states``: per request, its history's ``UserState`` when the caller already has it.
    ``routes``: default ``routes_for(components)``."""
    routes = routes_for(components) if routes is None else routes
    given = states if states is not None else [None] * len(requests.histories)
    states = [state if state is not None else user_state(components, history, per_route)
              for state, history in zip(given, requests.histories, strict=True)]
    sequences = sequence_vectors(components, requests, states)
    parts = []
    for row, (history, state) in enumerate(zip(requests.histories, states, strict=True)):
        keep_seen = bool(requests.keep_seen[row]) if requests.keep_seen is not None else False
        parts.append(_candidates_of(components, state, np.asarray(history, dtype=np.int64), int(requests.anchors[row]),
                                    int(requests.as_of[row]), requests.exclude[row], keep_seen, per_route, routes,
                                    sequences[row] if sequences is not None else None))
    profiles = [state.profile for state in states]
    categories = [state.user_categories for state in states]
    image_profiles = [state.image_profile for state in states]
    counts = [len(p.items) for p in parts]
    rows = np.repeat(np.arange(len(parts)), counts)
    items = np.concatenate([p.items for p in parts]) if parts else np.empty(0, np.int64)
    bits = np.concatenate([p.bits for p in parts]) if parts else np.empty(0, np.uint8)
    columns = {name: np.concatenate([p.columns[name] for p in parts]) if parts else np.empty(0, np.float32)
               for name in (parts[0].columns if parts else ())}
    dim = components.embeddings.shape[1]
    features = candidate_features(
        components, requests, rows, items, bits, columns,
        np.stack(profiles) if profiles else np.empty((0, dim), np.float32),
        np.stack(categories) if categories else np.empty((0, components.categories.shape[1]), np.float32),
        routes, np.stack(image_profiles) if components.image_index is not None and image_profiles else None,
        sequences)
    failed = tuple(dict.fromkeys(r for p in parts for r in p.failed))
    return Candidates(rows=rows, items=items, features=features, routes=bits, failed_routes=failed, route_table=routes)


def candidate_features(components: Components, requests: Requests, rows: np.ndarray, cols: np.ndarray,
                       bits: np.ndarray, columns: dict[str, np.ndarray], profiles: np.ndarray,
                       user_categories: np.ndarray, routes: tuple[Route, ...] = ROUTES,
                       image_profiles: np.ndarray | None = None, sequences: np.ndarray | None = None) -> np.ndarray:
    """The ranker's feature matrix of candidates ``(rows, cols)``; ``columns``: the features a
    request's own state gave; ``profiles`` / ``user_categories`` / ``image_profiles`` /
    ``sequences`` (``sequence_vectors``): one row per request. The item and user-item features
    come from one compiled pass over the candidates (``kernels.item_features``), which reads
    vectors in place instead of gathering them."""
    names = feature_names(routes)
    position = {name: j for j, name in enumerate(names)}
    features = np.empty((len(rows), len(names)), dtype=np.float32)
    for name, column in columns.items():
        features[:, position[name]] = column
    timeline = components.timeline
    anchors = np.asarray(requests.anchors, dtype=np.int64)
    kernels.item_features(
        features, np.array([position[name] for name in ITEM_FEATURES], np.int64),
        np.array([position[f"from_{route.name}"] for route in routes], np.int64),
        np.asarray(rows, np.int64), np.asarray(cols, np.int64), np.asarray(bits, np.uint8),
        np.ascontiguousarray(profiles, np.float32), anchors,
        np.array([len(h) for h in requests.histories], dtype=np.int64), np.asarray(requests.as_of, np.int64),
        components.embeddings, timeline.keys, timeline.item_starts, np.int64(timeline.KEY_STRIDE),
        np.array(TREND_WINDOWS, np.int64),
        components.log_counts, components.first_seen, components.item_mean_value,
        components.categories.indptr, components.categories.indices, components.categories.data,
        np.ascontiguousarray(user_categories, np.float32), components.category_counts, float(DAY))
    if image_profiles is not None:
        _image_features(components, anchors, rows, cols, image_profiles, features, position)
    if sequences is not None and "sequential_score" in position:
        _sequential_features(components, rows, cols, sequences, features, position)
    return features


def _sequential_features(components: Components, rows: np.ndarray, cols: np.ndarray, sequences: np.ndarray,
                         features: np.ndarray, position: dict[str, int]) -> None:
    """The sequential model's score of each candidate and its rank among its request's candidates
    (0 = best; ties to the lower item)."""
    embeddings = components.sequential.item_embeddings
    scores = np.empty(len(rows), np.float32)
    rank = np.empty(len(rows), np.float32)
    bounds = np.searchsorted(rows, np.arange(len(sequences) + 1))  # rows are grouped by request, ascending
    for request in range(len(sequences)):
        lo, hi = bounds[request], bounds[request + 1]
        if lo == hi:
            continue
        items = np.asarray(cols[lo:hi])
        scores[lo:hi] = embeddings[items + 1] @ sequences[request]
        rank[lo + np.lexsort((items, -scores[lo:hi]))] = np.arange(hi - lo)
    features[:, position["sequential_score"]] = scores
    features[:, position["sequential_rank"]] = rank


IMAGE_BLOCK_ROWS = 32_768  # candidates per block of gathered image vectors (~50 MB at 384 dims)


def _image_features(components: Components, anchors: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                    image_profiles: np.ndarray, features: np.ndarray, position: dict[str, int]) -> None:
    image_vectors = components.image_index.vectors
    has_anchor = anchors >= 0
    for start in range(0, len(rows), IMAGE_BLOCK_ROWS):
        block = slice(start, start + IMAGE_BLOCK_ROWS)
        block_rows, candidate_images = rows[block], image_vectors[cols[block]]
        features[block, position["image_score"]] = np.einsum("ij,ij->i", image_profiles[block_rows], candidate_images)
        features[block, position["anchor_image"]] = np.einsum(
            "ij,ij->i", image_vectors[np.where(has_anchor, anchors, 0)[block_rows]], candidate_images
        ) * has_anchor[block_rows]


def top_per_row(rows: np.ndarray, scores: np.ndarray, k: int, n_rows: int) -> list[np.ndarray]:
    """Positions (into ``rows``) of the ``k`` best scores of each row, best first."""
    order = np.lexsort((-scores, rows))
    sorted_rows = rows[order]
    starts = np.searchsorted(sorted_rows, np.arange(n_rows), side="left")
    ends = np.searchsorted(sorted_rows, np.arange(n_rows), side="right")
    return [order[s : min(e, s + k)] for s, e in zip(starts, ends, strict=True)]


__all__ = ["FEATURES", "ROUTES", "Candidates", "Requests", "UserState", "feature_names", "generate",
           "route_names", "top_per_row", "user_state"]
