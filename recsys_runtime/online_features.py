"""Writing the user feature view to Redis, the online feature store the service reads."""

from __future__ import annotations

import pandas as pd

USER_KEY = "recsys:features:user:{}"
FIELDS = ("interactions", "mean_value", "first_seen", "last_seen", "recent_items", "top_categories")


def sync_user_features(client, view: pd.DataFrame, ttl_seconds: int | None = None, batch: int = 1_000) -> int:
    """One hash per user (pipelined, ``batch`` users per round trip); returns users written."""
    written = 0
    records = view.reset_index()
    for start in range(0, len(records), batch):
        pipe = client.pipeline(transaction=False)
        for row in records.iloc[start:start + batch].itertuples(index=False):
            key = USER_KEY.format(row.user_id)
            pipe.hset(key, mapping={f: str(getattr(row, f)) for f in FIELDS})
            if ttl_seconds:
                pipe.expire(key, ttl_seconds)
        pipe.execute()
        written += min(batch, len(records) - start)
    return written


def read_recent_items(client, user_id: str) -> list[str]:
    """The synced recent items of a user, oldest first (the view stores newest first)."""
    raw = client.hget(USER_KEY.format(user_id), "recent_items")
    if not raw:
        return []
    return [i for i in raw.decode().split("|") if i][::-1]
