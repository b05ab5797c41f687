"""Exposure log: every served list appended as JSON lines by a background thread, rotated by size."""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path


class ExposureLog:
    def __init__(self, path: Path, max_bytes: int, capacity: int = 100_000) -> None:
        self.path, self.max_bytes = Path(path), max_bytes
        self.dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="exposure-log", daemon=True)
        self._thread.start()

    def write(self, record: dict) -> None:
        """Never blocks the request: a full queue drops the record and counts it."""
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def _rotate(self) -> None:
        if self.path.exists() and self.path.stat().st_size >= self.max_bytes:
            index = 1
            while self.path.with_suffix(f".jsonl.{index}").exists():
                index += 1
            self.path.rename(self.path.with_suffix(f".jsonl.{index}"))

    def _run(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            record = self._queue.get()
            if record is None:
                self._queue.task_done()
                return
            batch = [record]
            while not self._queue.empty() and len(batch) < 1_000:
                nxt = self._queue.get_nowait()
                if nxt is None:
                    self._queue.put_nowait(None)
                    self._queue.task_done()
                    break
                batch.append(nxt)
            self._rotate()
            with self.path.open("a") as handle:
                handle.write("".join(json.dumps(r, default=str) + "\n" for r in batch))
            for _ in batch:
                self._queue.task_done()

    def flush(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
