"""Lone requests of a known user without the catalog-wide work.

A user's ``history_state`` is kept between requests; ``route_orders`` adds to it the user's
candidates per route in order (history excluded) and the per-item features that depend only on
the user. A request then drops its anchor and exclusions from those orders and reads the
anchor's own rows, which gives the same candidates, features and scores as ``generate`` on the
whole catalog: route top-n is a function of the scores (ties go to the lower item index), so
both methods find the same set. Tests compare the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys_serving.candidates import (
    TREND_WINDOWS,
    Candidates,
    HistoryState,
    Requests,
    candidate_features,
    category_affinity,
    route_sizes,
    top_mask,
    trending_scores,
)
from recsys_serving.components import Components


@dataclass
class RouteOrders:
    """One history's candidates per route, best first, with the history already excluded, so a
    lone request only drops its anchor and exclusions instead of ranking the catalog again.
    Each list holds ``SLACK`` more than the route proposes; ``complete`` marks lists that hold
    every candidate the route has. ``trends`` and ``affinity``: the history's per-item features
    over the whole catalog at ``as_of``, computed as the candidate features are."""

    best_first: tuple[np.ndarray, ...]
    complete: tuple[bool, ...]
    seen: np.ndarray
    as_of: int
    trends: tuple[np.ndarray, ...]
    affinity: np.ndarray

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (*self.best_first, self.seen, *self.trends, self.affinity))


SLACK = 16


def ordered_top(scores: np.ndarray, n: int) -> np.ndarray:
    """The item indices ``top_mask`` picks from one row, best first."""
    picked = np.flatnonzero(top_mask(scores[None, :], n)[0])
    return picked[np.lexsort((picked, -scores[picked]))]


def route_orders(components: Components, state: HistoryState, history: np.ndarray, as_of: int,
                 per_route: int = 100) -> RouteOrders:
    """The ``RouteOrders`` of one history (``state`` is its ``history_state``)."""
    seen = np.zeros(len(components.items), dtype=bool)
    seen[history] = True
    rows = (state.collaborative[0], state.covisitation[0], state.content[0],
            trending_scores(components, np.array([as_of]))[0], components.log_counts)
    best_first = tuple(ordered_top(np.where(seen, 0.0, scores), n + SLACK)
                       for scores, n in zip(rows, route_sizes(per_route), strict=True))
    complete = tuple(len(order) < n + SLACK for order, n in zip(best_first, route_sizes(per_route), strict=True))
    everything = np.arange(len(components.items))
    trends = tuple(components.timeline.windows(everything, np.full(len(everything), as_of), TREND_WINDOWS))
    user_categories = np.broadcast_to(state.user_categories[0], (len(everything), state.user_categories.shape[1]))
    affinity = category_affinity(components, user_categories, everything)
    return RouteOrders(best_first=best_first, complete=complete, seen=seen, as_of=int(as_of), trends=trends,
                       affinity=affinity)


def _row(matrix: sp.csr_matrix, row: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices (ascending) and values of one row of a canonical CSR matrix, as the dense
    gathers see them (float32)."""
    lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
    return matrix.indices[lo:hi].astype(np.int64), matrix.data[lo:hi].astype(np.float32)


def _values_at(row: tuple[np.ndarray, np.ndarray], items: np.ndarray) -> np.ndarray:
    cols, values = row
    if not len(cols):
        return np.zeros(len(items), dtype=np.float32)
    pos = np.minimum(np.searchsorted(cols, items), len(cols) - 1)
    return np.where(cols[pos] == items, values[pos], np.float32(0.0))


def _unblocked(items: np.ndarray, blocked: np.ndarray) -> np.ndarray:
    if len(blocked) == 1:  # the anchor alone, the common case: no set operation
        return items[items != blocked[0]]
    return items[~np.isin(items, blocked)] if len(blocked) else items


def _take(order: np.ndarray, blocked: np.ndarray, n: int, complete: bool) -> np.ndarray | None:
    """The first ``n`` of ``order`` that are not blocked; None when too many were blocked from a
    list that was cut short."""
    kept = _unblocked(order, blocked)
    if len(kept) < n and not complete:
        return None
    return kept[:n]


def generate_one(components: Components, requests: Requests, per_route: int,
                 state: HistoryState | None) -> Candidates | None:
    """``generate`` for a lone request from its history's route orders, touching only the
    candidates instead of the catalog; None when it cannot answer exactly and ``generate`` must."""
    orders = state.orders if state is not None else None
    if (len(requests.histories) != 1 or orders is None or int(requests.as_of[0]) != orders.as_of
            or (requests.keep_seen is not None and requests.keep_seen[0])):
        return None
    anchor, blocked = int(requests.anchors[0]), requests.exclude[0].astype(np.int64)
    no_row = (np.empty(0, np.int64), np.empty(0, np.float32))
    try:
        anchor_collab = _row(components.ease, anchor) if anchor >= 0 else no_row
        anchor_covis = _row(components.covisitation, anchor) if anchor >= 0 else no_row
    except Exception:  # noqa: BLE001 - the dense path cuts the failing route off and counts it
        return None
    sizes = route_sizes(per_route)
    picks = []
    for r, (order, n, complete) in enumerate(zip(orders.best_first, sizes, orders.complete, strict=True)):
        pick = _take(order, blocked, n, complete)
        if pick is None:
            return None
        if r == 1 and len(anchor_covis[0]):
            # co-visitation adds the anchor's row: anything it lifts is in the row, anything else
            # ranks by the history's score, where the first n unblocked of the order beat it
            lifted = anchor_covis[0][~orders.seen[anchor_covis[0]]]
            pool = _unblocked(np.union1d(order, lifted), blocked)
            values = state.covisitation[0, pool] + _values_at(anchor_covis, pool)
            positive = values > 0
            pool, values = pool[positive], values[positive]
            pick = pool[np.lexsort((pool, -values))[:n]]
        picks.append(pick)
    cols, inverse = np.unique(np.concatenate(picks), return_inverse=True)
    bits = np.zeros(len(cols), dtype=np.uint8)
    route_bits = np.repeat((1 << np.arange(len(picks))).astype(np.uint8), [len(p) for p in picks])
    np.bitwise_or.at(bits, inverse, route_bits)
    rows = np.zeros(len(cols), dtype=np.int64)
    features = candidate_features(components, requests, state, rows, cols, bits, _values_at(anchor_collab, cols),
                                  _values_at(anchor_covis, cols), orders)
    return Candidates(rows=rows, items=cols, features=features, routes=bits)
