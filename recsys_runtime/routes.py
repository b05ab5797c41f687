"""The recall routes as a table: each proposes scored items for one request from neighbour lists
or global top-N lists, so its cost depends on the history and on ``n``, not on the catalog.

Adding a route is one ``Route`` entry: its bit in the candidates' route mask is its position,
its ``from_<name>`` ranker feature follows from the table, and ``score_feature`` names the
feature it ranks by when evaluated alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recsys_runtime.components import Components
from recsys_runtime.sparse import SparseRow


@dataclass(frozen=True)
class RouteInput:
    """What a route may read for one request: ``state`` is the history's ``UserState``,
    ``anchor`` an item index (-1 for none), ``blocked`` the sorted items it must not return
    (``n`` plus their count is the most any prefix list needs)."""

    components: Components
    state: object
    anchor: int
    anchor_covisitation: SparseRow
    anchor_content: SparseRow
    as_of: int
    blocked: np.ndarray
    sequence: np.ndarray | None = None  # the sequential model's vector of the history (and anchor)


Proposal = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Route:
    name: str
    divisor: int  # proposes per_route // divisor candidates
    score_feature: str
    propose: Callable[[RouteInput, int], Proposal]
    features: tuple[str, ...] = ()  # ranker features only this route brings

    def size(self, per_route: int) -> int:
        return per_route // self.divisor


def _collaborative(given: RouteInput, n: int) -> Proposal:
    row = given.state.collaborative
    return row.items, row.values


def _covisitation(given: RouteInput, n: int) -> Proposal:
    return given.state.covisitation.plus(given.anchor_covisitation)


def _content(given: RouteInput, n: int) -> Proposal:
    """The history's strongest summed content neighbours, merged with the anchor's nearest items."""
    return given.state.content.plus(given.anchor_content)


def _image(given: RouteInput, n: int) -> Proposal:
    """The history's image profile's nearest items, merged with the anchor's nearest images."""
    row = given.state.image
    if given.anchor < 0:
        return row.items, row.values
    index = given.components.image_index
    scores, indices = index.search(index.vectors[given.anchor][None, :], n + 1)
    keep = (indices[0] >= 0) & (indices[0] != given.anchor) & (scores[0] > 0)
    items, values = indices[0][keep], scores[0][keep].astype(np.float32)
    order = np.argsort(items)
    return row.plus(SparseRow(items[order].astype(np.int32), values[order], row.catalog_size))


SEQUENTIAL_SEARCH_SPARE = 2  # the sequential search asks for up to n x this many more items than n


def _sequential(given: RouteInput, n: int) -> Proposal:
    """The items the sequential model scores highest after the history (and the anchor), ranked
    by position: its dot-product scores can be negative, and the route's pick keeps positive ones.
    The search asks for room for the blocked items, up to ``SEQUENTIAL_SEARCH_SPARE`` x n."""
    if given.sequence is None or not given.sequence.any():
        return np.empty(0, np.int64), np.empty(0, np.float32)
    k = n + min(len(given.blocked), SEQUENTIAL_SEARCH_SPARE * n)
    items, _ = given.components.sequential.nearest(given.sequence, k)
    return items, np.arange(len(items), 0, -1).astype(np.float32)


def _trending(given: RouteInput, n: int) -> Proposal:
    listed = given.components.timeline.trending_list(given.as_of)
    positions = np.flatnonzero(listed >= 0)
    return listed[positions].astype(np.int64), (len(listed) - positions).astype(np.float32)


def _popular(given: RouteInput, n: int) -> Proposal:
    components = given.components
    order = components.popular_order[: n + len(given.blocked)]
    return order, components.log_counts[order]


ROUTES: tuple[Route, ...] = (
    Route("collaborative", 1, "collaborative_score", _collaborative),
    Route("covisitation", 1, "covisitation_score", _covisitation),
    Route("content", 2, "content_score", _content),
    Route("trending", 2, "trend_30d", _trending),
    Route("popular", 2, "log_count", _popular),
)


IMAGE_ROUTE = Route("image", 2, "image_score", _image, features=("image_score", "anchor_image"))
SEQUENTIAL_ROUTE = Route("sequential", 2, "sequential_score", _sequential,
                         features=("sequential_score", "sequential_rank"))


def route_table(with_images: bool, with_sequential: bool = False) -> tuple[Route, ...]:
    """The routes every catalog has, then the image route when there are image vectors, then the
    sequential route when a sequential model was trained."""
    return ROUTES + ((IMAGE_ROUTE,) if with_images else ()) + ((SEQUENTIAL_ROUTE,) if with_sequential else ())


def routes_for(components: Components) -> tuple[Route, ...]:
    """The route table of these components."""
    return route_table(components.image_index is not None, components.sequential is not None)


def route_names(routes: tuple[Route, ...] = ROUTES) -> tuple[str, ...]:
    return tuple(route.name for route in routes)


def names_of_bits(routes: tuple[Route, ...] = ROUTES) -> list[list[str]]:
    """The route names of every route bitmask, so a list's routes are a lookup."""
    return [[r.name for bit, r in enumerate(routes) if bits & (1 << bit)] for bits in range(1 << len(routes))]
