"""The fitted pieces a recommender is made of, as plain arrays (no training code here)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from recsys_runtime.content_index import ContentIndex
from recsys_runtime.ids import index_of
from recsys_runtime.sequential import SequentialModel
from recsys_runtime.sparse import Accumulator


@dataclass
class ItemTimeline:
    """When each item was consumed: sorted ``item_index * KEY_STRIDE + timestamp`` keys."""

    KEY_STRIDE = 1 << 36

    keys: np.ndarray
    counts: np.ndarray
    bucket_ends: np.ndarray
    trending: np.ndarray
    trending_seconds: int

    def window_counts(self, item_idx: np.ndarray, as_of: np.ndarray, seconds: int | None = None) -> np.ndarray:
        """Interactions with each item in ``(as_of - seconds, as_of]``."""
        return self.windows(item_idx, as_of, (self.trending_seconds if seconds is None else seconds,))[0]

    def windows(self, item_idx: np.ndarray, as_of: np.ndarray, seconds: tuple[int, ...]) -> list[np.ndarray]:
        """``window_counts`` for several window lengths, sharing the search for ``as_of``."""
        base = item_idx.astype(np.int64) * self.KEY_STRIDE + np.asarray(as_of, dtype=np.int64)
        hi = np.searchsorted(self.keys, base, side="right")
        return [(hi - np.searchsorted(self.keys, base - s, side="right")).astype(np.float32) for s in seconds]

    def first_seen(self, item_idx: np.ndarray) -> np.ndarray:
        """Timestamp of the first interaction with each item."""
        base = item_idx.astype(np.int64) * self.KEY_STRIDE
        pos = np.minimum(np.searchsorted(self.keys, base, side="left"), len(self.keys) - 1)
        return (self.keys[pos] - base).astype(np.float64)

    def trending_at(self, as_of: np.ndarray) -> np.ndarray:
        """The trending list (item indices, -1 padded) of the last bucket ending at ``as_of``."""
        bucket = np.searchsorted(self.bucket_ends, np.asarray(as_of, dtype=np.int64), side="right") - 1
        return self.trending[np.clip(bucket, 0, len(self.bucket_ends) - 1)]

    def trending_list(self, as_of: int) -> np.ndarray:
        """``trending_at`` of one moment, without array calls (a request's path)."""
        bucket = bisect.bisect_right(self.bucket_ends_list, int(as_of)) - 1
        return self.trending[min(max(bucket, 0), len(self.bucket_ends) - 1)]

    @cached_property
    def item_starts(self) -> np.ndarray:
        """Where each item's keys begin in ``keys`` (one more entry: the end), so a request
        searches an item's own interactions only."""
        return np.searchsorted(self.keys, np.arange(len(self.counts) + 1, dtype=np.int64) * self.KEY_STRIDE)

    @cached_property
    def bucket_ends_list(self) -> list[int]:
        return self.bucket_ends.tolist()


@dataclass
class Histories:
    """Each user's train interactions, oldest first, as CSR-like arrays over user rows."""

    users: np.ndarray
    indptr: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray

    def row(self, user_idx: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.indptr[user_idx], self.indptr[user_idx + 1]
        return self.items[lo:hi], self.timestamps[lo:hi]

    def user_index(self, user_ids: np.ndarray) -> np.ndarray:
        return index_of(self.users, user_ids)


@dataclass
class Components:
    """Everything the recall routes and the ranker features read, indexed by item position."""

    items: np.ndarray
    ease: sp.csr_matrix
    covisitation: sp.csr_matrix
    content_index: ContentIndex
    categories: sp.csr_matrix
    item_mean_value: np.ndarray
    timeline: ItemTimeline
    histories: Histories
    category_names: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=str))
    image_index: ContentIndex | None = None  # item image vectors (CLIP), when the catalog has images
    sequential: SequentialModel | None = None  # SASRec over ordered histories, when it was trained

    @cached_property
    def category_counts(self) -> np.ndarray:
        """How many categories each item carries."""
        return np.diff(self.categories.indptr).astype(np.float32)

    @cached_property
    def accumulator(self) -> Accumulator:
        """Sums of neighbour lists for requests (scratch arrays reused across requests)."""
        return Accumulator(len(self.items))

    @cached_property
    def popular_order(self) -> np.ndarray:
        """Item indices by interaction count, most first (ties: lower index first)."""
        return np.argsort(-self.timeline.counts, kind="stable").astype(np.int64)

    def items_in_categories(self, items: np.ndarray, columns: list[int]) -> np.ndarray:
        """Whether each of ``items`` carries any of the category ``columns``."""
        if not columns or not len(items):
            return np.zeros(len(items), dtype=bool)
        return self.categories[items][:, columns].getnnz(axis=1) > 0

    @cached_property
    def now(self) -> int:
        """The latest interaction's timestamp: the time of a request that brings none of its own
        (computed once: a scan of the whole log per request would grow with the log)."""
        return int(self.histories.timestamps.max(initial=0))

    @cached_property
    def first_seen(self) -> np.ndarray:
        """Timestamp of each item's first interaction."""
        return self.timeline.first_seen(np.arange(len(self.items)))

    @cached_property
    def log_counts(self) -> np.ndarray:
        """log1p of each item's interaction count (the popular route and a ranker feature)."""
        return np.log1p(self.timeline.counts)

    @property
    def embeddings(self) -> np.ndarray:
        return self.content_index.vectors

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.items.tolist())}

    def position(self, item_id) -> int:
        """The index of one item id, -1 when unknown (a dict lookup, for the request path)."""
        return self._positions.get(str(item_id), -1)

    def item_index(self, item_ids: np.ndarray) -> np.ndarray:
        return index_of(self.items, item_ids)
