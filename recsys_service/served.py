"""A served list as the response cache keeps it and the exposure log writes it."""

from __future__ import annotations

from typing import NamedTuple

import msgspec


class ServedList(NamedTuple):
    """A served list as the caches keep it: the JSON body without the per-request fields, and
    what the request's bookkeeping reads. Only bytes, strings and tuples of them, so a cached
    entry (kept as a plain tuple) is not tracked by Python's garbage collector: a cache of dicts
    made every full collection walk them all, the service's long latency tail."""

    body: bytes
    items: tuple
    routes: tuple  # every served item's routes, flattened (the per-route tally)
    fallback: str | None
    failed_routes: tuple
    model_version: str
    arm: str
    exposed: bytes  # the items with their positions, as the exposure log writes them

    def response(self, request_id: str, cached: bool) -> bytes:
        """The body with the request id and whether the cache answered."""
        head = b'{"request_id":"%s","cached":%s,' % (request_id.encode(), b"true" if cached else b"false")
        return head + self.body[1:]


class Exposure(NamedTuple):
    """One served list for the exposure log, encoded by the log's writer thread, off the request."""

    request_id: str
    time: float
    user_id: str | None
    item_id: str | None
    endpoint: str
    served: ServedList
    cached: bool

    def encode(self, encoder: msgspec.json.Encoder) -> bytes:
        served = self.served
        head = encoder.encode({"type": "exposure", "request_id": self.request_id, "time": self.time,
                               "user_id": self.user_id, "item_id": self.item_id, "endpoint": self.endpoint,
                               "model_version": served.model_version, "arm": served.arm,
                               "fallback": served.fallback, "cached": self.cached})
        return head[:-1] + b',"items":' + served.exposed + b"}"
