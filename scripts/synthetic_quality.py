"""`python -m scripts.synthetic_quality`: the served model against EASE on differently seeded
synthetic sets, with and without the sequential route, so a quality change on the sample can be
checked elsewhere.

Each run is a cold `train_and_evaluate` through the Dagster CLI in its own directories (as
`make bench-pipeline` runs it). The sets are small enough for the EASE baseline to be computed.
``BENCH_SEEDS``: the data sets' seeds (default ``1,2``); ``BENCH_SYNTHETIC``: users, items and
interactions (default ``1500,5000,100000``); ``BENCH_SEQUENTIAL``: the route settings to run,
``1`` on and/or ``0`` off (default ``1,0``). Output: data/bench/synthetic_quality.json (or
BENCH_OUTPUT) and a Markdown table on stdout.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from recsys_assets import settings
from scripts.bench_pipeline import _execute


def main() -> int:
    seeds = [s.strip() for s in os.environ.get("BENCH_SEEDS", "1,2").split(",") if s.strip()]
    users, items, interactions = os.environ.get("BENCH_SYNTHETIC", "1500,5000,100000").split(",")
    output = Path(os.environ.get("BENCH_OUTPUT", settings.data_dir() / "bench" / "synthetic_quality.json"))
    runs = []
    for seed in seeds:
        for sequential in os.environ.get("BENCH_SEQUENTIAL", "1,0").split(","):
            environment = {"RECSYS_SOURCE": "synthetic", "RECSYS_SYNTHETIC_USERS": users,
                           "RECSYS_SYNTHETIC_ITEMS": items, "RECSYS_SYNTHETIC_INTERACTIONS": interactions,
                           "RECSYS_SEED": seed, "RECSYS_SEQUENTIAL": sequential}
            with tempfile.TemporaryDirectory(prefix=f"synthetic-quality-{seed}-") as tmp:
                run = _execute(Path(tmp), environment, "in_process")
            runs.append({"seed": int(seed), "sequential_route": sequential == "1", "status": run["status"],
                         "user_ndcg@10": run["user_ndcg@10"], "ease_ndcg@10": run["ease_baseline_ndcg@10"],
                         "detail_next_ndcg@10": run["detail_next_ndcg@10"],
                         "similar_next_ndcg@10": run["similar_next_ndcg@10"],
                         "ease_row_of_query_ndcg@10": run["ease_row_of_query_ndcg@10"], "total_seconds": run["total_seconds"],
                         "sequential_model_seconds": run["assets"].get("sequential_model", {}).get("seconds"),
                         "checks_failed": sorted(c for c, r in run["checks"].items() if not r["passed"])})
            print(json.dumps(runs[-1]), flush=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"users": int(users), "items": int(items), "interactions": int(interactions),
                                  "runs": runs}, indent=2))
    print("| seed | sequential route | user ndcg@10 | EASE | model / EASE | detail_next ndcg@10 | run s |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        ratio = r["user_ndcg@10"] / r["ease_ndcg@10"] if r["user_ndcg@10"] and r["ease_ndcg@10"] else None
        print(f"| {r['seed']} | {'on' if r['sequential_route'] else 'off'} | {r['user_ndcg@10']:.4f} | "
              f"{r['ease_ndcg@10']:.4f} | {ratio:.2f} | {r['detail_next_ndcg@10']:.4f} | {r['total_seconds']} |"
              if ratio else json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
