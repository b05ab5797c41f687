"""Popularity over time: overall counts, per-time trending lists and an item timeline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys_runtime.components import ItemTimeline


def item_timeline(train: pd.DataFrame, items: np.ndarray, trending_days: float = 30.0,
                  n_buckets: int = 256, list_size: int = 100) -> ItemTimeline:
    """Sorted (item, timestamp) keys plus, for each of ``n_buckets`` moments, the items most
    consumed in the ``trending_days`` before it."""
    col = np.searchsorted(items, train["item_id"].to_numpy().astype(str))
    ts = train["timestamp"].to_numpy(dtype=np.int64)
    keys = np.sort(col.astype(np.int64) * ItemTimeline.KEY_STRIDE + ts)
    counts = np.bincount(col, minlength=len(items)).astype(np.float32)
    start, end = int(ts.min()), int(ts.max())
    edges = np.linspace(start, end, n_buckets + 1)[1:].astype(np.int64)
    window = int(trending_days * 86_400)
    order = np.argsort(ts, kind="stable")
    ts_sorted, col_sorted = ts[order], col[order]
    lists = np.full((n_buckets, list_size), -1, dtype=np.int32)
    lo = np.searchsorted(ts_sorted, edges - window, side="left")
    hi = np.searchsorted(ts_sorted, edges, side="right")
    for b in range(n_buckets):
        window_counts = np.bincount(col_sorted[lo[b]:hi[b]], minlength=len(items))
        top = np.argsort(-window_counts, kind="stable")[:list_size]
        top = top[window_counts[top] > 0]
        lists[b, : len(top)] = top
    return ItemTimeline(keys=keys, counts=counts, bucket_ends=edges, trending=lists,
                        trending_seconds=window)


def popular_table(train: pd.DataFrame, items: np.ndarray, timeline: ItemTimeline,
                  top_n: int = 100) -> pd.DataFrame:
    """Overall and currently trending items, for display and for the fallback route."""
    counts = timeline.counts
    overall = np.argsort(-counts, kind="stable")[:top_n]
    now = int(train["timestamp"].max())
    trending = timeline.window_counts(np.arange(len(items)), np.full(len(items), now))
    trend_top = np.argsort(-trending, kind="stable")[:top_n]
    return pd.concat([
        pd.DataFrame({"list": "overall", "rank": np.arange(1, len(overall) + 1),
                      "item_id": items[overall], "count": counts[overall]}),
        pd.DataFrame({"list": "trending", "rank": np.arange(1, len(trend_top) + 1),
                      "item_id": items[trend_top], "count": trending[trend_top]}),
    ], ignore_index=True)
