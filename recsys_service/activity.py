"""A user's activity since the bundle was trained, so their next list can follow it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from recsys_runtime.online_features import read_recent_items

RECENT_EVENTS = 50
MAX_LOCAL_USERS = 100_000


class ActivityStore:
    """The pipeline's online features (``features``: FEATURE_REDIS_URL) and the events reported
    since, kept in Redis when one is configured (``features`` or the shared ``redis``) and in this
    process otherwise: the last ``RECENT_EVENTS`` items of at most ``max_local_users`` users, the
    least recently active forgotten first."""

    def __init__(self, features=None, redis=None, on_error: Callable[[], None] = lambda: None,
                 max_local_users: int = MAX_LOCAL_USERS) -> None:
        self.features, self.store = features, features or redis
        self.on_error, self.max_local_users = on_error, max_local_users
        self._local: OrderedDict[str, list[str]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._local)

    def recent_items(self, user_id: str | None) -> list[str]:
        """Items of the user's recent activity, oldest first, without repeats."""
        if user_id is None:
            return []
        synced: list[str] = []
        if self.features is not None:
            try:
                synced = read_recent_items(self.features, user_id)
            except Exception:  # noqa: BLE001 - counted; the list is served without them
                self.on_error()
        with self._lock:
            events = list(self._local.get(user_id, []))
        if self.store is not None:
            try:
                events = [i.decode() for i in self.store.lrange(_key(user_id), 0, RECENT_EVENTS - 1)][::-1]
            except Exception:  # noqa: BLE001
                self.on_error()
        return list(dict.fromkeys(synced + events))

    def remember(self, user_id: str, item_id: str) -> None:
        with self._lock:
            items = self._local.setdefault(user_id, [])
            self._local.move_to_end(user_id)
            items.append(item_id)
            del items[:-RECENT_EVENTS]
            while len(self._local) > self.max_local_users:
                self._local.popitem(last=False)
        if self.store is not None:
            try:
                self.store.lpush(_key(user_id), item_id)
                self.store.ltrim(_key(user_id), 0, RECENT_EVENTS - 1)
            except Exception:  # noqa: BLE001
                self.on_error()


def _key(user_id: str) -> str:
    return f"recsys:recent:{user_id}"
