"""`make bench`: the service under uvicorn (one worker), driven by wrk from another process.

Requests draw item and user ids Zipf-like from the real catalog and users of the champion
bundle, a fresh stream long enough that no run replays it (repeats are the Zipf draws' own);
the warm-up uses another stream from the same distribution. Scenarios: health, similar,
recommend_detail, recommend_user (closed loop: wrk, 32 connections), recommend_detail_at_1000rps
(open loop: ``scripts/open_loop.py`` sends BENCH_OPEN_LOOP_RPS requests/s on a fixed schedule for
BENCH_OPEN_LOOP_SECONDS and times each from its scheduled send), and recommend_detail while a hot
reload swaps the model mid-run. With two or
more CPUs the server is pinned to CPU 0 and wrk (one thread) to CPU 1, so the load generator
does not take time from the one worker it measures (BENCH_PIN=0: no pinning, two wrk threads).
Output: data/bench/serving.json (or BENCH_OUTPUT).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from recsys_delivery.service_client import reload_model
from recsys_registry.registry import ModelRegistry, RegistryFile
from recsys_runtime.bundle import load_bundle
from recsys_runtime.components import Components
from recsys_service.settings import ServiceSettings

CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
PATHS = int(os.environ.get("BENCH_PATHS", "300000"))  # per stream: more than a run sends
OPEN_LOOP_RATE = float(os.environ.get("BENCH_OPEN_LOOP_RPS", "1000"))
OPEN_LOOP_SECONDS = float(os.environ.get("BENCH_OPEN_LOOP_SECONDS", "30"))
SERVER = os.environ.get("BENCH_SERVER", "uvicorn")  # or granian
PIN = os.environ.get("BENCH_PIN", "1") == "1" and (os.cpu_count() or 1) >= 2
TOKEN = "bench-token"
ROOT = Path(__file__).resolve().parent


def zipf_sample(weights_order: np.ndarray, n: int, rng: np.random.Generator, exponent: float = 1.1) -> np.ndarray:
    """Indices of ``weights_order`` (most popular first) drawn with p ~ 1 / rank^exponent."""
    p = 1.0 / np.arange(1, len(weights_order) + 1) ** exponent
    return weights_order[rng.choice(len(weights_order), size=n, p=p / p.sum())]


def prepare_models(source: Path, target: Path) -> tuple[str, str]:
    """A registry with the champion and a copy of it, so a reload really loads another bundle."""
    registry = RegistryFile.load(source / "model_registry.json")
    if registry.champion is None:
        raise SystemExit(f"no champion in {source}: run `make demo` first")
    champion = registry.version(registry.champion)
    copy = target / "bundles" / "reload-copy"
    shutil.copytree(champion["path"], copy)
    bench = ModelRegistry(target / "model_registry.json")
    bench.register(registry.champion, {"path": champion["path"]})
    bench.promote(registry.champion, "bench")
    bench.register("reload-copy", {"path": str(copy)})
    return registry.champion, "reload-copy"


def paths_file(directory: Path, kind: str, comp: Components, n: int = PATHS, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    items = comp.items[zipf_sample(np.argsort(-comp.timeline.counts, kind="stable"), n, rng)]
    lengths = np.diff(comp.histories.indptr)
    users = comp.histories.users[zipf_sample(np.argsort(-lengths, kind="stable"), n, rng)]
    if kind == "health":
        lines = ["/health"] * n
    elif kind == "similar":
        lines = [f"/similar/{i}" for i in items]
    elif kind == "user":
        lines = [f"/recommend/user/{u}" for u in users]
    else:
        lines = [f"/recommend/detail/{i}?user_id={u}" for i, u in zip(items, users, strict=True)]
    path = directory / f"{kind}-{seed}.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def server_command(port: int) -> list[str]:
    """The service under one worker of BENCH_SERVER (uvicorn or granian), no access log."""
    app = "recsys_service.app:create_app"
    if SERVER == "granian":
        return [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", app, "--port", str(port),
                "--workers", "1", "--log-level", "warning", "--no-access-log"]
    return [sys.executable, "-m", "uvicorn", "--factory", app, "--port", str(port), "--workers", "1",
            "--log-level", "warning", "--no-access-log"]


def pinned(command: list[str], cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu), *command] if PIN and shutil.which("taskset") else command


def wrk(port: int, paths: Path, seconds: int) -> dict:
    threads = 1 if PIN else 2
    out = subprocess.run(
        pinned(["wrk", f"-t{threads}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "5s", "-s",
                str(ROOT / "wrk_paths.lua"), f"http://127.0.0.1:{port}"], 1),
        env={**os.environ, "WRK_PATHS": str(paths), "WRK_THREADS": str(threads)}, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    errors = result.pop("errors") + result.pop("status_errors")
    return {"rps": round(result["requests"] / result.pop("duration_s"), 1), "p50_ms": result["p50_ms"],
            "p95_ms": result["p95_ms"], "p99_ms": result["p99_ms"], "errors": errors, "requests": result["requests"]}


def open_loop(port: int, paths: Path, rate: float, seconds: float) -> dict:
    """``scripts/open_loop.py`` on its own CPU: requests on a fixed schedule, latency from it."""
    out = subprocess.run(pinned([sys.executable, "-m", "scripts.open_loop", f"http://127.0.0.1:{port}", str(paths),
                                 str(rate), str(seconds)], 1), capture_output=True, text=True, check=True,
                         cwd=ROOT.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cache_counts(port: int) -> tuple[float, float]:
    """(hits, misses) of the service's response cache so far, from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    totals = {"hits": 0.0, "misses": 0.0}
    for line in text.splitlines():
        for kind in totals:
            if line.startswith(f"recsys_cache_{kind}_total{{"):
                totals[kind] += float(line.rsplit(" ", 1)[1])
    return totals["hits"], totals["misses"]


def measured(port: int, paths: Path, seconds: int) -> dict:
    """wrk's numbers plus the share of requests the response cache answered."""
    hits, misses = cache_counts(port)
    result = wrk(port, paths, seconds)
    hits_after, misses_after = cache_counts(port)
    looked_up = (hits_after - hits) + (misses_after - misses)
    result["cache_hit_ratio"] = round((hits_after - hits) / looked_up, 3) if looked_up else None
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
                if json.loads(response.read())["ready"]:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the service did not become ready")


def main() -> int:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for the load (Debian: apt-get install wrk)")
    settings = ServiceSettings()
    output = Path(os.environ.get("BENCH_OUTPUT", settings.models_dir.parent / "data" / "bench" / "serving.json"))
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        tmp = Path(tmp)
        champion, other = prepare_models(settings.models_dir, tmp / "models")
        bundle_path = RegistryFile.load(tmp / "models" / "model_registry.json").version(champion)["path"]
        comp = load_bundle(bundle_path).components
        paths = {kind: paths_file(tmp, kind, comp) for kind in ("health", "similar", "detail", "user")}
        warm_up = {kind: paths_file(tmp, kind, comp, n=PATHS // 10, seed=1) for kind in ("similar", "detail", "user")}
        open_loop_paths = paths_file(tmp, "detail", comp, seed=3)
        reload_paths = paths_file(tmp, "detail", comp, seed=2)  # not a replay of the scenario before
        port = free_port()
        env = {**os.environ, "RECSYS_MODELS_DIR": str(tmp / "models"), "RECSYS_ADMIN_TOKEN": TOKEN,
               "RECSYS_EXPOSURE_LOG": str(tmp / "exposures.jsonl"), "REDIS_URL": ""}
        server = subprocess.Popen(pinned(server_command(port), 0), env=env)
        try:
            wait_ready(port)
            report = {"machine": {"cpus": os.cpu_count(), "connections": CONNECTIONS, "seconds": SECONDS,
                                  "server": f"{SERVER}, 1 worker", "model": champion,
                                  "pinned": "server CPU 0, wrk CPU 1" if PIN else "no", "paths_per_stream": PATHS}}
            report["health"] = wrk(port, paths["health"], SECONDS)  # first: nothing else still in flight
            for kind in ("similar", "detail", "user"):
                wrk(port, warm_up[kind], 5)
            report["similar"] = measured(port, paths["similar"], SECONDS)
            report["recommend_detail"] = measured(port, paths["detail"], SECONDS)
            report["recommend_user"] = measured(port, paths["user"], SECONDS)
            report["recommend_detail_at_1000rps"] = open_loop(port, open_loop_paths, OPEN_LOOP_RATE, OPEN_LOOP_SECONDS)
            swap = {}
            timer = threading.Timer(SECONDS / 3, lambda: swap.update(reload_model(f"http://127.0.0.1:{port}", TOKEN, other)))
            timer.start()
            report["recommend_detail_reload"] = measured(port, reload_paths, SECONDS)
            timer.join()
            report["recommend_detail_reload"]["reloaded_to"] = swap.get("primary")
        finally:
            server.terminate()
            server.wait(timeout=30)
    output.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
