"""`make soak`: the service under steady mixed traffic while models, Redis and the log change under it.

One uvicorn worker serves the registry's champion with a real redis-server (cache and rollout
state) and an exposure log small enough to rotate. An open-loop client sends /similar,
/recommend/detail, /recommend/user and /events (clicks on lists it was served) at half the
capacity measured first, each latency taken from its scheduled send time. Meanwhile, every
minute: a hot reload to the other model, a shadow switched on then off, a canary switched on
then rolled back; Redis is stopped at 40% of the run and restarted at 55%. The service is then
stopped with SIGTERM, and the log is read back.

Output (data/bench/soak.json, or SOAK_OUTPUT): requests, errors, p99 and RSS per minute, RSS growth
from minute 2 to the end, exposure-log lists against lists served, events recorded against
events accepted. SOAK_MINUTES (10), SOAK_RATE (half the measured capacity).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from recsys_registry.registry import RegistryFile
from recsys_runtime.bundle import load_bundle
from recsys_service.settings import ServiceSettings
from recsys_training.online_eval import read_log
from scripts.bench_scale import rss_mb
from scripts.bench_serving import free_port, wait_ready
from scripts.open_loop import read_response
from tests.redis_server import RedisServer

MINUTES = float(os.environ.get("SOAK_MINUTES", "10"))
TOKEN = "soak-token"
MIX = (("detail", 0.4), ("similar", 0.25), ("user", 0.25), ("event", 0.1))


def _versions() -> tuple[str, str]:
    registry = RegistryFile.load(ServiceSettings().registry_path)
    champion = registry.champion
    if champion is None:
        raise SystemExit("no champion: run `make demo` first")
    others = [v for v, e in registry.data["versions"].items() if v != champion and Path(e["path"]).exists()]
    return champion, (sorted(others)[-1] if others else champion)


def _paths(n: int, seed: int = 0) -> list[tuple[str, str]]:
    registry = RegistryFile.load(ServiceSettings().registry_path)
    comp = load_bundle(registry.version(registry.champion)["path"]).components
    rng = np.random.default_rng(seed)
    items = comp.items[rng.integers(0, len(comp.items), n)]
    users = comp.histories.users[rng.integers(0, len(comp.histories.users), n)]
    kinds = rng.choice([k for k, _ in MIX], n, p=[w for _, w in MIX])
    out = []
    for kind, item, user in zip(kinds, items, users, strict=True):
        if kind == "detail":
            out.append(("GET", f"/recommend/detail/{item}?user_id={user}"))
        elif kind == "similar":
            out.append(("GET", f"/similar/{item}"))
        elif kind == "user":
            out.append(("GET", f"/recommend/user/{user}"))
        else:
            out.append(("POST", "/events"))
    return out


class Client:
    """Requests over a pool of keep-alive connections; the event of a POST clicks the first item
    of the latest list this client was served."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.last_list: tuple[str, str] | None = None

    async def send(self, connection, method: str, path: str) -> tuple[int, bytes]:
        reader, writer = connection
        body = b""
        if method == "POST":
            request_id, item_id = self.last_list or ("none", "none")
            body = json.dumps({"request_id": request_id, "item_id": item_id, "type": "click"}).encode()
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nConnection: keep-alive\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        writer.write(head.encode() + body)
        await writer.drain()
        return await read_response(reader)


async def traffic(base: str, paths: list[tuple[str, str]], rate: float, seconds: float,
                  connections: int = 32) -> dict:
    """Open loop at ``rate`` for ``seconds``: per request its scheduled time, latency (ms) and status."""
    url = urlsplit(base)
    client = Client(url.hostname, url.port)
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(url.hostname, url.port))
    total = int(rate * seconds)
    latencies = np.full(total, np.nan)
    statuses = np.zeros(total, dtype=np.int32)
    served_ids: list[str] = []
    events_accepted = 0
    start = time.perf_counter() + 0.2

    async def one(i: int) -> None:
        nonlocal events_accepted
        method, path = paths[i % len(paths)]
        connection = await pool.get()
        try:
            status, payload = await client.send(connection, method, path)
            statuses[i] = status
            if method == "GET" and status == 200:
                body = json.loads(payload)
                served_ids.append(body["request_id"])
                if body["items"]:
                    client.last_list = (body["request_id"], body["items"][0]["item_id"])
            elif method == "POST" and status == 202:
                events_accepted += 1
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            statuses[i] = -1
            connection[1].close()
            connection = await asyncio.open_connection(url.hostname, url.port)
        finally:
            pool.put_nowait(connection)
        latencies[i] = (time.perf_counter() - start - i / rate) * 1000

    tasks = []
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait()[1].close()
    return {"scheduled": np.arange(total) / rate, "latency_ms": latencies, "status": statuses, "served_ids": served_ids,
            "events_accepted": events_accepted}


def capacity(base: str, paths: list[tuple[str, str]], seconds: float = 10.0) -> float:
    """Closed-loop requests/s of the GET mix with 16 requests in flight."""
    gets = [p for p in paths if p[0] == "GET"]

    async def run() -> float:
        url = urlsplit(base)
        client = Client(url.hostname, url.port)
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker(offset: int) -> None:
            nonlocal done
            connection = await asyncio.open_connection(url.hostname, url.port)
            i = offset
            while time.perf_counter() < deadline:
                await client.send(connection, *gets[i % len(gets)])
                done += 1
                i += 16
            connection[1].close()

        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(16)))
        return done / (time.perf_counter() - started)

    return asyncio.run(run())


def admin(port: int, path: str, body: dict | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body or {}).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def controller(port: int, redis: RedisServer, seconds: float, versions: tuple[str, str], stop: threading.Event,
               actions: list) -> None:
    """Per minute: hot reload to the other model (0 s), shadow on (15 s), canary on (30 s), canary
    rolled back (45 s), shadow off (46 s); Redis stopped at 40% of the run and restarted at 55%."""

    def restart_redis() -> int:
        redis.process = subprocess.Popen(
            ["redis-server", "--port", str(redis.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", redis.dir], stdout=subprocess.DEVNULL)
        return 0

    def stop_redis() -> int:
        redis.process.terminate()
        return redis.process.wait(timeout=10)

    schedule = [(0.40 * seconds, "redis stopped", stop_redis), (0.55 * seconds, "redis restarted", restart_redis)]
    for minute in range(int(seconds // 60)):
        primary, other = versions[(minute + 1) % 2], versions[minute % 2]
        schedule += [
            (60 * minute, f"reload {primary}", lambda v=primary: admin(port, "/models/reload", {"version": v})),
            (60 * minute + 15, "shadow on", lambda v=other: admin(port, "/models/reload", {"mode": "shadow", "version": v})),
            (60 * minute + 30, "canary on", lambda v=other: admin(port, "/models/reload", {"version": v, "rollout": 0.1})),
            (60 * minute + 45, "canary off", lambda: admin(port, "/models/rollback")),
            (60 * minute + 46, "shadow off", lambda: admin(port, "/models/reload", {"mode": "stop_shadow"})),
        ]
    began = time.monotonic()
    for at, label, action in sorted(schedule, key=lambda entry: entry[0]):
        if stop.wait(max(0.0, at - (time.monotonic() - began))):
            return
        actions.append((round(time.monotonic() - began, 1), label, action()))


def main() -> int:
    seconds = MINUTES * 60
    output = Path(os.environ.get("SOAK_OUTPUT", ServiceSettings().data_dir / "bench" / "soak.json"))
    versions = _versions()
    paths = _paths(200_000)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        tmp = Path(tmp)
        redis = RedisServer()
        port = free_port()
        log = tmp / "exposure_log.jsonl"
        env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0", "RECSYS_ADMIN_TOKEN": TOKEN,
               "RECSYS_EXPOSURE_LOG": str(log), "RECSYS_EXPOSURE_LOG_MAX_MB": "2"}
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "recsys_service.app:create_app",
                                   "--port", str(port), "--workers", "1", "--log-level", "warning", "--no-access-log"],
                                  env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(port, timeout=600)
            measured = capacity(base, paths)
            rate = float(os.environ.get("SOAK_RATE", round(measured / 2, 1)))
            print(f"capacity {measured:.0f} requests/s; soaking at {rate} for {MINUTES} min", flush=True)
            stop, actions, rss = threading.Event(), [], []
            control = threading.Thread(target=controller, args=(port, redis, seconds, versions, stop, actions))

            def sample_rss() -> None:
                began = time.monotonic()
                while not stop.wait(5.0):
                    rss.append((time.monotonic() - began, rss_mb(server.pid)))

            sampler = threading.Thread(target=sample_rss)
            control.start()
            sampler.start()
            run = asyncio.run(traffic(base, paths, rate, seconds))
            stop.set()
            control.join(timeout=180)
            sampler.join(timeout=10)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
            redis.stop()
        read = read_log(log)
        rotated = len(list(tmp.glob("exposure_log.jsonl.*")))
    minutes = int(np.ceil(seconds / 60))
    minute_of = np.minimum((run["scheduled"] // 60).astype(int), minutes - 1)
    errors = (run["status"] < 200) | (run["status"] >= 400)
    per_minute = []
    for m in range(minutes):
        mine = minute_of == m
        samples = [r for t, r in rss if m * 60 <= t < (m + 1) * 60]
        per_minute.append({"minute": m + 1, "requests": int(mine.sum()), "errors": int(errors[mine].sum()),
                           "p99_ms": round(float(np.nanpercentile(run["latency_ms"][mine], 99)), 2),
                           "rss_mb": round(float(np.median(samples)), 1) if samples else None})
    rss_values = [m["rss_mb"] for m in per_minute if m["rss_mb"] is not None]
    growth = (rss_values[-1] / rss_values[1] - 1) if len(rss_values) > 2 else None
    report = {
        "minutes": MINUTES, "capacity_rps": round(measured, 1), "rate_rps": rate, "requests": int(len(run["status"])),
        "errors": int(errors.sum()), "per_minute": per_minute,
        "rss_growth_minute2_to_end": None if growth is None else round(growth, 4),
        "lists_served": len(run["served_ids"]),
        "served_lists_missing_from_log": len(set(run["served_ids"]) - set(read.lists["request_id"])),
        "exposure_log_bad_lines": read.bad_lines, "exposure_log_rotations": rotated,
        "events_accepted": run["events_accepted"], "events_recorded": int(len(read.events)),
        "actions": [{"at_s": at, "action": label, "status": status} for at, label, status in actions],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k not in ("per_minute", "actions")}, indent=2))
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
