"""The runtime recommender: recall routes, LightGBM ranking and popular-item fallback."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from recsys_runtime.candidates import (
    Candidates,
    Requests,
    UserState,
    feature_names,
    generate,
    top_per_row,
    user_state,
)
from recsys_runtime.components import Components
from recsys_runtime.routes import Route, names_of_bits, routes_for
from recsys_runtime.similar_table import SimilarTable
from recsys_runtime.user_states import DEFAULT_BUDGET_BYTES, UserStateCache

BATCH_REQUESTS = 512
SIMILAR_DEPTH = 100


def _empty(ids) -> bool:
    return ids is None or len(ids) == 0


@dataclass
class Recommendation:
    """One ranked list with where each item came from."""

    items: list
    scores: list[float]
    routes: list[list[str]]
    fallback: str | None = None
    contributions: list[dict[str, float]] | None = None
    failed_routes: tuple = ()


@dataclass
class Recommender:
    """Answers "similar to X", "for user U on the page of X" and "for user U".

    ``ranker`` is a LightGBM booster (anything with ``predict(features)``); without one, or when
    ``route`` is given, candidates are ordered by one route's own score. ``similar_ranker``, when
    there is one, ranks the requests whose only history is their page ("similar to X", and a
    detail page for a user without history); without it, ``ranker`` ranks them too.
    """

    components: Components
    ranker: object | None = None
    similar_ranker: object | None = None
    per_route: int = 100
    version: str = "unversioned"
    similar_table: SimilarTable | None = field(default=None, init=False)
    catalog_path: Path | None = field(default=None, init=False)  # titles for people, not for requests
    state_cache_bytes: int = DEFAULT_BUDGET_BYTES  # the initial budget of ``user_states``
    routes: tuple[Route, ...] | None = None  # default: ``routes_for(components)``

    def __post_init__(self) -> None:
        if self.routes is None:
            self.routes = routes_for(self.components)
        self.popular = self.components.popular_order
        self.features = feature_names(self.routes)
        self._route_names = names_of_bits(self.routes)
        self._route_bits = {route.name: 1 << bit for bit, route in enumerate(self.routes)}
        self._route_score = {route.name: (bit, self.features.index(route.score_feature))
                             for bit, route in enumerate(self.routes)}
        self.user_states = UserStateCache(self.state_cache_bytes)

    def precompute_similar(self, max_items: int, depth: int = SIMILAR_DEPTH) -> int:
        """Rank the "similar to X" list of the ``max_items`` most popular items ahead of time,
        with the same code as a live request, so those requests become a lookup. Returns the
        number of items stored."""
        anchors = np.sort(self.popular[:max_items])
        ids = self.components.items[anchors].tolist()
        lists = self.recommend_many([None] * len(ids), ids, depth)
        table = SimilarTable.empty(len(self.components.items), len(anchors), depth)
        for row, (anchor, rec) in enumerate(zip(anchors, lists, strict=True)):
            if rec.fallback is None:
                table.store(row, anchor, self.components.item_index(np.asarray(rec.items)), rec.scores,
                            [sum(self._route_bits[r] for r in routes) for routes in rec.routes])
        self.similar_table = table
        return int((table.row_of >= 0).sum())

    def stored_similar_row(self, item_id) -> int:
        """The row of ``item_id``'s stored "similar to X" list, -1 when there is none."""
        if self.similar_table is None:
            return -1
        position = self.components.position(item_id)
        return int(self.similar_table.row_of[position]) if position >= 0 else -1

    def _lookup_similar(self, anchor_id, k: int, allowed: CategoryFilter | None) -> Recommendation | None:
        table = self.similar_table
        row = self.stored_similar_row(anchor_id)
        found = table.lookup(row, k, allowed.allows if allowed is not None else None) if row >= 0 else None
        if found is None:
            return None
        items, positions = found
        return Recommendation(
            items=self.components.items[items].tolist(),
            scores=table.scores[row, positions].tolist(),
            routes=[self._route_names[b] for b in table.routes[row, positions].tolist()],
        )

    @property
    def now(self) -> int:
        return self.components.now

    def _indices(self, ids: list | None) -> np.ndarray:
        if not ids:
            return np.empty(0, np.int64)
        idx = self.components.item_index(np.array([str(i) for i in ids]))
        return idx[idx >= 0].astype(np.int64)

    def _requests(self, user_ids: list, anchors: list, recent: list | None = None,
                  exclude: list | None = None, exclude_seen: bool = True) -> tuple[Requests, list[str | None], list]:
        """``recent``: per request, item ids seen since the bundle was trained (appended to the
        history, newest last). ``exclude``: per request, item ids never to return. Returns the
        requests, a fallback reason per request, and per request the user row whose history
        state can be cached (None when the history has activity newer than the bundle)."""
        comp = self.components
        recent = recent or [None] * len(user_ids)
        exclude = exclude or [None] * len(user_ids)
        user_rows = comp.histories.user_index(np.array(["" if u is None else str(u) for u in user_ids]))
        anchor_idx = comp.item_index(np.array(["" if a is None else str(a) for a in anchors]))
        histories, as_of, excluded, reasons, keys = [], [], [], [], []
        for i, (user, row, anchor, anchor_id) in enumerate(zip(user_ids, user_rows, anchor_idx, anchors, strict=True)):
            items, stamps = comp.histories.row(row) if row >= 0 else (np.empty(0, np.int32), np.empty(0, np.int64))
            fresh = self._indices(recent[i])
            if len(fresh):
                fresh = fresh[~np.isin(fresh, items)]
                items = np.concatenate([items, fresh]).astype(np.int32)
            has_anchor = anchor_id is not None
            reason = None
            if has_anchor and anchor < 0:
                reason = "unknown item"
            elif user is not None and len(items) == 0 and not has_anchor:
                reason = "unknown user"
            if len(items) == 0 and anchor >= 0 and has_anchor:
                items = np.array([anchor], dtype=np.int32)
            keys.append(int(row) if row >= 0 and not len(fresh) else None)
            histories.append(items)
            as_of.append(self.now if len(fresh) or not len(stamps) else stamps[-1])
            extra = self._indices(exclude[i])
            if has_anchor and anchor >= 0:
                extra = np.append(extra, anchor)
            excluded.append(extra)
            reasons.append(reason)
        # Without an explicit anchor, the user's latest item anchors the list.
        anchor_rows = [
            a if a_id is not None else (h[-1] if len(h) else -1)
            for a, a_id, h in zip(anchor_idx, anchors, histories, strict=True)
        ]
        requests = Requests(
            histories=histories,
            anchors=np.array(anchor_rows, dtype=np.int64),
            as_of=np.asarray(as_of, dtype=np.int64),
            exclude=excluded,
            keep_seen=None if exclude_seen else np.ones(len(histories), dtype=bool),
        )
        return requests, reasons, keys

    def _user_state(self, key: int | None, history: np.ndarray) -> UserState | None:
        """A known user's history state, from the cache when there (requests without activity
        newer than the bundle only); a state with a failed route is never kept."""
        if key is None:
            return None
        state = self.user_states.get(key)
        if state is None:
            state = user_state(self.components, history, self.per_route)
            if not state.failed_routes:
                self.user_states.put(key, state)
        return state

    def clear_user_states(self) -> None:
        """Forget every cached user state (the next request of each user is a first one again)."""
        self.user_states.clear()

    def warm_user_states(self, max_users: int) -> int:
        """Build the history states of up to ``max_users`` users, most active first, while the
        state cache has room, so their first live request after a (re)load is not a cold one.
        Returns the number of users warmed."""
        histories = self.components.histories
        lengths = np.diff(histories.indptr)
        warmed = 0
        for row in np.argsort(-lengths, kind="stable")[:max_users]:
            if lengths[row] == 0:
                break
            requests, _, keys = self._requests([histories.users[row]], [None])
            state = self._user_state(keys[0], requests.histories[0])
            warmed += 1
            if self.user_states.nbytes + state.nbytes > self.user_states.budget_bytes:
                break  # the next one would evict one of these
        return warmed

    def category_filter(self, categories: list[str] | None) -> CategoryFilter | None:
        """Keeps items carrying any of ``categories`` (None: no filter)."""
        if not categories:
            return None
        names = list(self.components.category_names)
        return CategoryFilter(self.components, [names.index(c) for c in categories if c in names])

    def page_only(self, requests: Requests) -> np.ndarray | None:
        """Per request, whether ``similar_ranker`` ranks it: its history is its page alone. None
        when there is no such ranker."""
        if self.similar_ranker is None:
            return None
        return np.array([len(h) == 1 and h[0] == a for h, a in zip(requests.histories, requests.anchors, strict=True)],
                        dtype=bool)

    def _by_ranker(self, candidates: Candidates, page_only: np.ndarray | None, predict) -> np.ndarray:
        """``predict(ranker, features)`` of each candidate with its request's ranker; a batch of one
        kind is predicted in one call on the features as they are."""
        features = candidates.features
        if page_only is None or not page_only.any():
            return predict(self.ranker, features)
        if page_only.all():
            return predict(self.similar_ranker, features)
        rows = page_only[candidates.rows]
        first = predict(self.ranker, features[~rows])
        out = np.empty((len(rows), *first.shape[1:]), dtype=np.float64)
        out[~rows] = first
        out[rows] = predict(self.similar_ranker, features[rows])
        return out

    def score(self, candidates: Candidates, route: str | None = None,
              page_only: np.ndarray | None = None) -> np.ndarray:
        """Each candidate's score: by ``route``'s own score, else by the ranker of its request
        (``page_only``: per request, whether ``similar_ranker`` ranks it)."""
        if route is not None:
            bit, column_index = self._route_score[route]
            column = candidates.features[:, column_index]
            proposed = (candidates.routes >> bit) & 1
            return np.where(proposed > 0, column, -np.inf)
        if self.ranker is None:
            return candidates.features[:, self.features.index("collaborative_score")]
        # no num_threads argument: passing one makes LightGBM rebuild its predictor on every call
        return self._by_ranker(candidates, page_only,
                               lambda ranker, x: np.asarray(ranker.predict(x), dtype=np.float64))

    def _popular_list(self, exclude: set, k: int, allowed: CategoryFilter | None = None) -> list[int]:
        """The ``k`` most popular items not in ``exclude`` that pass the filter, read in chunks of
        the popularity order, so an unfiltered list reads about ``k + len(exclude)`` items."""
        out: list[int] = []
        start, chunk = 0, k + len(exclude)
        while len(out) < k and start < len(self.popular):
            block = self.popular[start : start + chunk]
            if allowed is not None:
                block = block[allowed.allows(block)]
            out += [int(i) for i in block.tolist() if i not in exclude][: k - len(out)]
            start, chunk = start + chunk, chunk * 2
        return out

    def popular_fallback(self, k: int, reason: str, exclude: set | None = None,
                         allowed: CategoryFilter | None = None) -> Recommendation:
        """The ``k`` most popular items outside ``exclude`` (item indices) that pass ``allowed``,
        scored by log popularity: what any request falls back to, and why."""
        chosen = self._popular_list(exclude or set(), k, allowed)
        return Recommendation(items=self.components.items[chosen].tolist(),
                              scores=np.log1p(self.components.timeline.counts[chosen]).tolist(),
                              routes=[["popular"]] * len(chosen), fallback=reason)

    def recommend_many(
        self, user_ids: list, anchors: list | None = None, k: int = 10, route: str | None = None,
        explain: bool = False, recent: list | None = None, exclude: list | None = None,
        categories: list[str] | None = None, exclude_seen: bool = True,
    ) -> list[Recommendation]:
        """One list per (user, anchor) pair; ``None`` stands for "no user" or "no anchor".
        ``recent`` / ``exclude``: per-request item id lists; ``categories``: keep only items in any;
        ``exclude_seen=False`` lets items of the user's history back into the lists."""
        return self.recommend_variants(user_ids, anchors, k, (route,), explain, recent, exclude, categories,
                                       exclude_seen)[route]

    def recommend_variants(
        self, user_ids: list, anchors: list | None = None, k: int = 10,
        variants: tuple = (None,), explain: bool = False, recent: list | None = None,
        exclude: list | None = None, categories: list[str] | None = None, exclude_seen: bool = True,
    ) -> dict[str | None, list[Recommendation]]:
        """Lists ranked by the model (variant ``None``) and by single routes, from one recall pass."""
        anchors = anchors if anchors is not None else [None] * len(user_ids)
        allowed = self.category_filter(categories)
        recent = recent if recent is not None else [None] * len(user_ids)
        exclude = exclude if exclude is not None else [None] * len(user_ids)
        # "similar to X" with nothing else is one list per X: each distinct X is answered once, from
        # the stored table where it holds X (as a single /similar request is), ranked otherwise
        plain = {i for i, (user, anchor) in enumerate(zip(user_ids, anchors, strict=True))
                 if user is None and anchor is not None and _empty(recent[i]) and _empty(exclude[i])}
        if not plain or explain:
            return self._recommend_batches(user_ids, anchors, k, variants, explain, recent, exclude, allowed,
                                           exclude_seen)
        answered: dict = {}
        if self.similar_table is not None and variants == (None,) and k <= self.similar_table.depth:
            for anchor in {anchors[i] for i in plain}:
                found = self._lookup_similar(anchor, k, allowed)
                if found is not None:
                    answered[anchor] = {None: found}
        ranked, first = [], set()
        for i in range(len(user_ids)):
            if i in plain:
                if anchors[i] in answered or anchors[i] in first:
                    continue
                first.add(anchors[i])
            ranked.append(i)
        answers = self._recommend_batches([user_ids[i] for i in ranked], [anchors[i] for i in ranked], k, variants,
                                          explain, [recent[i] for i in ranked], [exclude[i] for i in ranked],
                                          allowed, exclude_seen)
        answer_of = {i: position for position, i in enumerate(ranked)}
        for i in ranked:
            if i in plain:
                answered[anchors[i]] = {v: answers[v][answer_of[i]] for v in variants}
        return {v: [replace(answered[anchors[i]][v]) if i in plain else answers[v][answer_of[i]]
                    for i in range(len(user_ids))] for v in variants}

    def _recommend_batches(self, user_ids: list, anchors: list, k: int, variants: tuple, explain: bool,
                           recent: list, exclude: list, allowed: CategoryFilter | None,
                           exclude_seen: bool) -> dict[str | None, list[Recommendation]]:
        results: dict[str | None, list[Recommendation]] = {v: [] for v in variants}
        step = BATCH_REQUESTS
        for start in range(0, len(user_ids), step):
            window = slice(start, start + step)
            batch = self._recommend_batch(user_ids[window], anchors[window], k, variants, explain,
                                          recent[window], exclude[window], allowed, exclude_seen)
            for variant in variants:
                results[variant] += batch[variant]
        return results

    def _recommend_batch(self, user_ids: list, anchors: list, k: int, variants: tuple, explain: bool,
                         recent: list, exclude: list, allowed: CategoryFilter | None,
                         exclude_seen: bool = True) -> dict[str | None, list[Recommendation]]:
        requests, reasons, keys = self._requests(user_ids, anchors, recent, exclude, exclude_seen)
        key = keys[0] if len(user_ids) == 1 and self.user_states.budget_bytes > 0 else None
        states = [self._user_state(key, requests.histories[0])] if key is not None else None
        candidates = generate(self.components, requests, self.per_route, states, self.routes)
        page_only = self.page_only(requests)
        out = {}
        for variant in variants:
            scores = self.score(candidates, variant, page_only)
            if allowed is not None:
                scores = np.where(allowed.allows(candidates.items), scores, -np.inf)
            contributions = None
            if explain and self.ranker is not None and variant is None:
                contributions = self._by_ranker(candidates, page_only,
                                                lambda ranker, x: ranker.predict(x, pred_contrib=True))
            out[variant] = self._lists(requests, reasons, candidates, scores, contributions, k, allowed)
            for rec in out[variant]:
                rec.failed_routes = candidates.failed_routes
        return out

    def _lists(self, requests: Requests, reasons: list, candidates: Candidates, scores: np.ndarray,
               contributions: np.ndarray | None, k: int, allowed: CategoryFilter | None = None) -> list[Recommendation]:
        results = []
        items = self.components.items
        for row, positions in enumerate(top_per_row(candidates.rows, scores, k, len(requests.histories))):
            positions = positions[np.isfinite(scores[positions])]
            reason = reasons[row]
            if reason is None and len(requests.histories[row]) == 0 and requests.anchors[row] < 0:
                reason = "no history"
            if reason is not None or len(positions) == 0:
                seen = set(requests.exclude[row].tolist())
                if requests.keep_seen is None or not requests.keep_seen[row]:
                    seen |= set(requests.histories[row].tolist())
                results.append(self.popular_fallback(k, reason or "no candidates", seen, allowed))
                continue
            rec = Recommendation(
                items=items[candidates.items[positions]].tolist(),
                scores=scores[positions].tolist(),
                routes=[candidates.route_names(p) for p in positions],
            )
            if contributions is not None:
                rec.contributions = [_top_contributions(contributions[p], self.features) for p in positions]
            results.append(rec)
        return results

    def recommend(self, user_id, k: int = 10, **kwargs) -> Recommendation:
        return self.recommend_many([user_id], [None], k, **kwargs)[0]

    def similar(self, item_id, k: int = 10, **kwargs) -> Recommendation:
        return self.recommend_many([None], [item_id], k, **kwargs)[0]

    def recommend_detail(self, item_id, user_id=None, k: int = 10, **kwargs) -> Recommendation:
        return self.recommend_many([user_id], [item_id], k, **kwargs)[0]


def _top_contributions(row: np.ndarray, names: tuple[str, ...], n: int = 5) -> dict[str, float]:
    values = row[:-1]
    order = np.argsort(-np.abs(values))[:n]
    return {names[i]: float(values[i]) for i in order}


@dataclass(frozen=True)
class CategoryFilter:
    """Items carrying any of some category columns, asked item by item (never catalog-wide)."""

    components: Components
    columns: list[int]

    def allows(self, items: np.ndarray) -> np.ndarray:
        return self.components.items_in_categories(np.asarray(items, dtype=np.int64), self.columns)
