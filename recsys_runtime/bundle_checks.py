"""Checks of a loaded bundle as it will serve: smoke queries and in-process latency.

The promotion gate runs them before a model is promoted and the service runs the smoke queries
before it swaps a model in; each returns a ``GateResult``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recsys_runtime.recommender import Recommender


@dataclass
class GateResult:
    """One check's outcome: passed, the reason in words, and the numbers behind it."""

    passed: bool
    reason: str
    numbers: dict = field(default_factory=dict)


def smoke_queries(recommender: Recommender, k: int = 10) -> GateResult:
    """A known user, an unknown user, a known item and an unknown item answer sensibly."""
    comp = recommender.components
    problems = []
    user = str(comp.histories.users[len(comp.histories.users) // 2])
    seen = set(comp.items[comp.histories.row(len(comp.histories.users) // 2)[0]].tolist())
    known = recommender.recommend(user, k=k)
    if known.fallback or len(known.items) != k or len(set(known.items)) != k or seen & set(known.items):
        problems.append(f"user {user}: fallback={known.fallback}, {len(known.items)} items, seen items returned")
    item = str(comp.items[int(np.argmax(comp.timeline.counts))])
    similar = recommender.similar(item, k=k)
    if similar.fallback or len(similar.items) != k or item in similar.items:
        problems.append(f"similar({item}): fallback={similar.fallback}, {len(similar.items)} items")
    if recommender.recommend("__smoke_unknown_user__", k=k).fallback != "unknown user":
        problems.append("an unknown user does not fall back to popular items")
    if recommender.similar("__smoke_unknown_item__", k=k).fallback != "unknown item":
        problems.append("an unknown item does not fall back to popular items")
    if problems:
        return GateResult(False, "; ".join(problems))
    return GateResult(True, "4 smoke queries answered")


def latency(recommender: Recommender, requests: int, budget_ms: float, seed: int = 0) -> GateResult:
    """p95 of single in-process requests: a mix of user, detail and similar requests on sampled ids."""
    comp = recommender.components
    rng = np.random.default_rng(seed)
    users = comp.histories.users[rng.integers(0, len(comp.histories.users), requests)]
    items = comp.items[rng.integers(0, len(comp.items), requests)]
    kinds = rng.integers(0, 3, requests)
    recommender.recommend(str(users[0]))  # warm-up
    durations = np.empty(requests)
    for i in range(requests):
        started = time.perf_counter()
        if kinds[i] == 0:
            recommender.recommend(str(users[i]))
        elif kinds[i] == 1:
            recommender.recommend_detail(str(items[i]), user_id=str(users[i]))
        else:
            recommender.similar(str(items[i]))
        durations[i] = (time.perf_counter() - started) * 1000
    p50, p95, p99 = np.percentile(durations, [50, 95, 99])
    ok = p95 < budget_ms
    return GateResult(ok, f"p95 {p95:.2f} ms {'<' if ok else '>='} budget {budget_ms} ms over {requests} requests",
                      {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "budget_ms": budget_ms})


# VmHWM is the peak of the process's own address space; ru_maxrss would also count the parent's
# resident memory at fork time (Linux keeps it across exec), so a check run from a 2 GB pipeline
# process read 2 GB for a bundle whose service holds 0.4 GB.
_LOAD_AND_MEASURE = (
    "import resource, sys\n"
    "from pathlib import Path\n"
    "from recsys_runtime.bundle import load_bundle\n"
    "model = load_bundle(sys.argv[1])\n"
    "model.recommend(str(model.components.histories.users[0]))\n"
    "status = Path('/proc/self/status')\n"
    "peak = [l for l in status.read_text().splitlines() if l.startswith('VmHWM:')] if status.exists() else []\n"
    "print(int(peak[0].split()[1]) if peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
)


def bundle_size_mb(path: str | Path) -> float:
    """The bundle directory's size on disk."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6


def loaded_memory_mb(path: str | Path, timeout: float = 600.0) -> float:
    """Peak resident memory (kB -> MB) of a fresh Python process that loads the bundle and answers
    one request: what a service replica holds for it (the process's own imports included)."""
    done = subprocess.run([sys.executable, "-c", _LOAD_AND_MEASURE, str(path)], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"loading {path} in a fresh process failed: {done.stderr.strip()[-500:]}")
    return int(done.stdout.strip().splitlines()[-1]) / 1024
