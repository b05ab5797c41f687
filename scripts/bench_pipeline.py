"""`make bench-pipeline`: wall time of every asset on the sample and on a 10x synthetic set.

Each data set runs cold (fresh data and model directories, so embeddings are computed) in one
process on an ephemeral instance; times are the step durations Dagster records. Results go to
``data/bench/pipeline.json`` (or BENCH_OUTPUT).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

from recsys_assets import settings
from recsys_assets.definitions import defs
from recsys_assets.defs.online import FeatureStoreResource
from recsys_assets.defs.resources import DataSourceResource, StorageResource
from recsys_assets.defs.tracking import MlflowResource

SAMPLE = {"interactions": 100_836, "users": 610, "items": 9_742}


def datasets() -> dict[str, dict]:
    """BENCH_SCALE (10): size of the synthetic set against the sample; BENCH_DATASETS: a
    comma-separated subset of the names (default all)."""
    scale = int(os.environ.get("BENCH_SCALE", "10"))
    every = {
        "sample": {"kind": "sample", "sample_dir": str(settings.sample_dir())},
        f"synthetic_{scale}x": {
            "kind": "synthetic", "synthetic_users": SAMPLE["users"] * scale,
            "synthetic_items": SAMPLE["items"] * scale, "synthetic_interactions": SAMPLE["interactions"] * scale,
            "seed": 0,
        },
    }
    chosen = [n.strip() for n in os.environ.get("BENCH_DATASETS", "").split(",") if n.strip()]
    return {name: source for name, source in every.items() if not chosen or name in chosen}


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    starts, seconds = {}, {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = record.timestamp
        elif event.event_type_value == "STEP_SUCCESS":
            seconds[event.step_key] = round(record.timestamp - starts[event.step_key], 2)
    return seconds


def run_one(name: str, source: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        resources = {
            "storage": StorageResource(data_dir=f"{tmp}/data", models_dir=f"{tmp}/models"),
            "source": DataSourceResource(**source),
            "io_manager": dg.FilesystemIOManager(base_dir=f"{tmp}/storage"),
            "feature_store": FeatureStoreResource(),
            "mlflow_tracking": MlflowResource(tracking_uri=f"sqlite:///{tmp}/mlflow.db", models_dir=f"{tmp}/models"),
        }
        instance = dg.DagsterInstance.ephemeral()
        definitions = defs()
        started = time.perf_counter()
        result = dg.materialize([*definitions.assets, *definitions.asset_checks], resources=resources,
                                instance=instance, raise_on_error=False)
        total = time.perf_counter() - started
        summary = json.loads(Path(f"{tmp}/data/evaluation/summary.json").read_text())
        return {
            "total_seconds": round(total, 1),
            "assets": step_seconds(instance, result.run_id),
            "dataset": summary["dataset"],
            "user_ndcg@10": round(summary["user"]["model"]["ndcg@10"], 4),
            "detail_ndcg@10": round(summary["detail"]["model"]["ndcg@10"], 4),
            "ease_baseline_ndcg@10": summary["user"]["baselines"].get("ease", {}).get("ndcg@10"),
            "checks": {c.check_name: bool(c.passed) for c in result.get_asset_check_evaluations()},
            "gate_latency": next((c.description for c in result.get_asset_check_evaluations()
                                  if c.check_name == "latency_within_budget"), None),
        }


def main() -> int:
    output = Path(os.environ.get("BENCH_OUTPUT", settings.data_dir() / "bench" / "pipeline.json"))
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "datasets": {}}
    for name, source in datasets().items():
        print(f"running {name} ...", flush=True)
        report["datasets"][name] = run_one(name, source)
        output.write_text(json.dumps(report, indent=2))
    names = list(report["datasets"])
    assets = list(report["datasets"][names[0]]["assets"])
    print("\n| asset | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for asset in assets + ["total"]:
        cells = [report["datasets"][n]["total_seconds"] if asset == "total" else report["datasets"][n]["assets"].get(asset, "")
                 for n in names]
        print(f"| {asset} | " + " | ".join(f"{c} s" for c in cells) + " |")
    print(f"\nwritten to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
