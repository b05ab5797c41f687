"""Response cache: Redis when configured, an in-process LRU with TTL otherwise or when Redis fails."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import msgspec

from recsys_service.served import ServedList

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(tuple).decode


def _to_bytes(value: ServedList) -> bytes:
    return _encode(tuple(value))


def _from_bytes(raw: bytes) -> ServedList:
    body, items, routes, fallback, failed, version, arm, exposed = _decode(raw)
    return ServedList(body, tuple(items), tuple(routes), fallback, tuple(failed), version, arm, exposed)


class LocalCache:
    """Bounded LRU with a time to live, safe across threads. Entries are kept as plain tuples of
    bytes, strings and tuples of strings, which CPython's collector stops tracking (a named tuple
    it would keep walking)."""

    backend = "local"

    def __init__(self, ttl: float, size: int) -> None:
        self.ttl, self.size = ttl, size
        self._data: OrderedDict[str, tuple[float, tuple]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> ServedList | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None or hit[0] < time.monotonic():
                self._data.pop(key, None)
                return None
            self._data.move_to_end(key)
        return ServedList._make(hit[1])

    def set(self, key: str, value: ServedList) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + self.ttl, tuple(value))
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class RedisCache:
    """Redis with a short socket timeout; every error falls back to the local cache and is counted."""

    backend = "redis"

    def __init__(self, url: str, ttl: int, local: LocalCache, on_error) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=0.05, socket_connect_timeout=0.05)
        self.ttl, self.local, self.on_error = ttl, local, on_error

    def get(self, key: str) -> ServedList | None:
        try:
            raw = self.client.get(key)
        except Exception:  # noqa: BLE001 - Redis down: serve without it
            self.on_error("get")
            return self.local.get(key)
        return _from_bytes(raw) if raw is not None else None

    def set(self, key: str, value: ServedList) -> None:
        try:
            self.client.set(key, _to_bytes(value), ex=self.ttl)
        except Exception:  # noqa: BLE001
            self.on_error("set")
            self.local.set(key, value)

    def clear(self) -> None:
        self.local.clear()
