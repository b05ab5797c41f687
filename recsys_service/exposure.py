"""Exposure log: every served list appended as JSON lines by a background thread, rotated by size."""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path

import msgspec


class ExposureLog:
    """``write`` only appends to an in-memory deque (no lock on the request path); a background
    thread encodes and appends the records to ``path``. When ``capacity`` records are waiting,
    new ones are dropped and counted."""

    def __init__(self, path: Path, max_bytes: int, capacity: int = 100_000, interval: float = 0.05) -> None:
        self.path, self.max_bytes, self.capacity, self.interval = Path(path), max_bytes, capacity, interval
        self.dropped = 0
        self._tail_checked = False  # whether the file's last line was checked since it was opened
        self._pending: deque = deque()
        self._encoder = msgspec.json.Encoder(enc_hook=str)
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="exposure-log", daemon=True)
        self._thread.start()

    def write(self, record) -> None:
        """Never blocks the request. ``record``: a dict, or anything with ``encode(encoder) -> bytes``."""
        if len(self._pending) >= self.capacity:
            self.dropped += 1
            return
        self._pending.append(record)

    def _rotate(self) -> None:
        if self.path.exists() and self.path.stat().st_size >= self.max_bytes:
            index = 1
            while self.path.with_suffix(f".jsonl.{index}").exists():
                index += 1
            self.path.rename(self.path.with_suffix(f".jsonl.{index}"))
            self._tail_checked = False

    def _drain(self) -> None:
        with self._write_lock:
            batch = []
            while self._pending and len(batch) < 10_000:
                batch.append(self._pending.popleft())
            if not batch:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._rotate()
            with self.path.open("ab") as handle:
                if not self._tail_checked and handle.tell() and not self._ends_with_newline():
                    handle.write(b"\n")  # a line torn by a killed writer stays one bad line, alone
                self._tail_checked = True
                handle.write(b"".join(self._encode(r) + b"\n" for r in batch))

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as handle:
            handle.seek(-1, 2)
            return handle.read(1) == b"\n"

    def _encode(self, record) -> bytes:
        return self._encoder.encode(record) if isinstance(record, dict) else record.encode(self._encoder)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            while self._pending:
                self._drain()

    def flush(self) -> None:
        """Write everything logged so far (the caller's thread does it)."""
        while self._pending:
            self._drain()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()
