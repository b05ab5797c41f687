"""The history states of live requests' users, kept within a byte budget, least recently used
evicted first."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator

from recsys_runtime.candidates import UserState

DEFAULT_BUDGET_BYTES = 256 * 2**20


class UserStateCache:
    """Thread-safe LRU of ``UserState`` by user row; ``budget_bytes`` 0 keeps nothing."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self._states: OrderedDict[int, UserState] = OrderedDict()
        self.nbytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._states)

    def values(self) -> Iterator[UserState]:
        return iter(list(self._states.values()))

    def get(self, key: int) -> UserState | None:
        with self._lock:
            state = self._states.get(key)
            if state is not None:
                self._states.move_to_end(key)
            return state

    def put(self, key: int, state: UserState) -> None:
        with self._lock:
            if key not in self._states:
                self._states[key] = state
                self.nbytes += state.nbytes
            while self.nbytes > self.budget_bytes and self._states:
                _, evicted = self._states.popitem(last=False)
                self.nbytes -= evicted.nbytes

    def clear(self) -> None:
        with self._lock:
            self._states.clear()
            self.nbytes = 0
