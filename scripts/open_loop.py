"""An open-loop HTTP load: requests leave on a fixed schedule whatever the server does.

Each latency is measured from the request's scheduled send time, not from when a connection
became free, so a slow server is not hidden by sending less (no coordinated omission). Requests
go over a pool of keep-alive HTTP/1.1 connections; when every connection is busy, the request
waits, and that wait counts in its latency.

    python -m scripts.open_loop URL_PREFIX PATHS_FILE RATE SECONDS [CONNECTIONS]

prints one JSON line: requests, errors, p50/p95/p99/max ms, achieved rate.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

import numpy as np


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.1 response with a Content-Length."""
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(status_line.split()[1]), await reader.readexactly(length)


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str) -> int:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n".encode())
    await writer.drain()
    return (await read_response(reader))[0]


async def run(base: str, paths: list[str], rate: float, seconds: float, connections: int) -> dict:
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    total = int(rate * seconds)
    latencies = np.full(total, np.nan)
    errors = 0
    start = time.perf_counter() + 0.2

    async def one(i: int) -> None:
        nonlocal errors
        scheduled = start + i / rate
        connection = await pool.get()
        try:
            status = await _request(*connection, host, paths[i % len(paths)])
            if status >= 400:
                errors += 1
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors += 1
            connection[1].close()
            connection = await asyncio.open_connection(host, port)
        finally:
            pool.put_nowait(connection)
        latencies[i] = (time.perf_counter() - scheduled) * 1000

    tasks = []
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait()[1].close()
    done = latencies[~np.isnan(latencies)]
    p50, p95, p99 = np.percentile(done, [50, 95, 99])
    return {"requests": int(len(done)), "errors": errors, "target_rps": rate, "achieved_rps": round(len(done) / elapsed, 1),
            "p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2), "p99_ms": round(float(p99), 2),
            "max_ms": round(float(done.max()), 2)}


def main() -> int:
    base, paths_file, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    connections = int(sys.argv[5]) if len(sys.argv) > 5 else 64
    paths = [line for line in open(paths_file).read().splitlines() if line]
    print(json.dumps(asyncio.run(run(base, paths, rate, seconds, connections))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
