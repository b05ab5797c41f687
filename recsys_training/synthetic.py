"""Seeded synthetic catalog and behaviour: latent topics, power-law popularity, sessions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys_training.schema import normalise_interactions, normalise_items
from recsys_training.sources import RawTables

WORDS = ("red blue green quiet loud fast slow dark bright old new deep light warm cold wild calm "
         "sharp soft grand small epic funny sad brave strange simple rich").split()


HORIZON_YEARS = 4  # every generated interaction lies within this many years of ``start``


def generate(n_users: int = 1_000, n_items: int = 2_000, n_interactions: int = 50_000,
             n_topics: int = 20, seed: int = 0, start: int = 1_600_000_000) -> RawTables:
    """Users pick a few favourite topics; items belong to one topic with Zipf popularity; each
    user consumes in sessions of related items spread over ~a year."""
    rng = np.random.default_rng(seed)
    item_topic = rng.integers(0, n_topics, n_items)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    popularity = popularity[rng.permutation(n_items)]
    release = start + rng.integers(0, 300 * 86_400, n_items)
    topic_words = rng.choice(WORDS, size=(n_topics, 3))
    items = pd.DataFrame({
        "item_id": [f"i{i}" for i in range(n_items)],
        "title": [f"{' '.join(topic_words[t][:2])} item {i}" for i, t in enumerate(item_topic)],
        "description": [f"A {topic_words[t][2]} story about {' and '.join(topic_words[t])}." for t in item_topic],
        "categories": [f"topic{t}|{'popular' if p > 0.01 else 'niche'}" for t, p in zip(item_topic, popularity, strict=True)],
        "tags": [topic_words[t][0] for t in item_topic],
    })
    activity = rng.pareto(1.5, n_users) + 1.0
    per_user = np.maximum(5, np.round(activity / activity.sum() * n_interactions)).astype(int)
    users = np.repeat(np.arange(n_users), per_user)
    tastes = np.argsort(rng.random((n_users, n_topics)), axis=1)[:, :3]
    taste_weights = rng.dirichlet(np.ones(3), n_users).cumsum(axis=1)
    pick = (rng.random(len(users))[:, None] > taste_weights[users]).sum(axis=1).clip(0, 2)
    topics = tastes[users, pick]
    # per topic: items ordered by topic, sampled through the cumulative popularity of the topic
    order = np.lexsort((np.arange(n_items), item_topic))
    bounds = np.searchsorted(item_topic[order], np.arange(n_topics + 1))
    cumulative = np.zeros(n_items)
    for t in range(n_topics):
        weights = popularity[order[bounds[t]:bounds[t + 1]]]
        cumulative[bounds[t]:bounds[t + 1]] = np.cumsum(weights) / max(weights.sum(), 1e-12)
    draws = rng.random(len(users))
    position = np.empty(len(users), dtype=np.int64)
    for t in range(n_topics):
        sel = topics == t
        local = np.searchsorted(cumulative[bounds[t]:bounds[t + 1]], draws[sel])
        position[sel] = bounds[t] + np.minimum(local, bounds[t + 1] - bounds[t] - 1)
    chosen = order[position]
    first = start + rng.integers(0, 360 * 86_400, n_users)
    gaps = rng.exponential(3 * 86_400, len(users)) * (rng.random(len(users)) < 0.2) + 60
    offsets = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[np.cumsum(per_user) - per_user], per_user)
    # a very active user's gaps would run for years, past today (and be rejected as future rows):
    # such a user's sessions are squeezed to end by the horizon; everyone else is left as drawn
    horizon = start + HORIZON_YEARS * 365 * 86_400
    last = offsets[np.cumsum(per_user) - 1]
    squeeze = np.minimum(1.0, (horizon - first) / np.maximum(last, 1.0))
    offsets = offsets * np.repeat(squeeze, per_user)
    # an item is consumed no earlier than its release: new items arrive over time
    stamps = np.maximum(first[users] + offsets.astype(np.int64), release[chosen]) + np.arange(len(users)) % 600
    rows_user, rows_item, rows_ts = users, chosen, stamps
    interactions = pd.DataFrame({
        "user_id": [f"u{u}" for u in rows_user],
        "item_id": [f"i{i}" for i in rows_item],
        "timestamp": rows_ts,
        "event": "view",
        "value": rng.integers(1, 6, len(rows_user)).astype(float),
    })
    return RawTables(normalise_items(items, "synthetic"), normalise_interactions(interactions, "synthetic"))


def shifted_window(base: RawTables, n_interactions: int, seed: int = 1, new_items: int = 100,
                   new_item_share: float = 0.3, gap_days: int = 1) -> RawTables:
    """A later window whose behaviour has shifted: the same users with redrawn tastes (each
    consumes the way another user did), popularity moved to other items, and ``new_items``
    brand-new items taking ``new_item_share`` of the interactions. Returns the grown catalog
    and only the new window's interactions, which start ``gap_days`` after ``base`` ends."""
    rng = np.random.default_rng(seed)
    items = base.items.rows
    old = base.interactions.rows
    sample = old.sample(n=n_interactions, replace=True, random_state=seed).reset_index(drop=True)
    users = old["user_id"].unique()
    sample["user_id"] = pd.Series(dict(zip(users, rng.permutation(users), strict=True)))[sample["user_id"]].to_numpy()
    item_ids = items["item_id"].to_numpy()
    sample["item_id"] = pd.Series(dict(zip(item_ids, rng.permutation(item_ids), strict=True)))[sample["item_id"]].to_numpy()
    fresh = items.sample(n=new_items, random_state=seed).reset_index(drop=True)
    fresh["item_id"] = [f"new{seed}-{i}" for i in range(new_items)]
    chosen = rng.random(len(sample)) < new_item_share
    weights = 1.0 / np.arange(1, new_items + 1) ** 1.2
    sample.loc[chosen, "item_id"] = fresh["item_id"].to_numpy()[rng.choice(new_items, int(chosen.sum()),
                                                                            p=weights / weights.sum())]
    start = int(old["timestamp"].max()) + gap_days * 86_400
    sample["timestamp"] = start + np.sort(rng.integers(0, 30 * 86_400, len(sample)))
    sample = sample.drop_duplicates(["user_id", "item_id"]).sort_values("timestamp").reset_index(drop=True)
    catalog = pd.concat([items, fresh], ignore_index=True)
    return RawTables(normalise_items(catalog, "synthetic-shifted"),
                     normalise_interactions(sample[["user_id", "item_id", "timestamp", "event", "value"]],
                                            "synthetic-shifted"))


def item_vectors(items: pd.DataFrame, seed: int = 0, dim: int = 384, noise: float = 0.6) -> pd.DataFrame:
    """Unit item vectors from the generator's latent topics (the ``topicN`` category) plus noise,
    indexed by item_id: a stand-in for text embeddings when encoding a large catalog would take
    hours and what is measured does not depend on how the vectors were made."""
    rng = np.random.default_rng(seed)
    topic = items["categories"].str.extract(r"topic(\d+)")[0].fillna(-1).astype(int).to_numpy()
    centroids = rng.standard_normal((max(topic.max(), 0) + 2, dim)).astype(np.float32)
    vectors = centroids[topic + 1] + noise * rng.standard_normal((len(items), dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return pd.DataFrame(vectors, index=items["item_id"].astype(str).to_numpy())
