"""`make bench-pipeline`: wall time and peak memory of every asset of ``train_and_evaluate``.

Each data set runs cold (fresh data, model and Dagster directories, so embeddings are computed) in
a child process, configured through the environment as a user would configure it. The parent
samples the resident memory of the child's whole process tree (Dask workers included) and gives
each asset the peak seen while its step ran. Results go to ``data/bench/pipeline.json`` (or
BENCH_OUTPUT); a data set's entry is replaced when it is run again, the others are kept.

BENCH_DATASETS picks a comma-separated subset of: sample, synthetic_10x (6,100 users, 97,420 items,
~1M interactions), synthetic_100x (61,000 users, the same items, ~10M interactions) and
synthetic_100x_dask (the 100x set on a LocalCluster of RECSYS_DASK_WORKERS processes) and
synthetic_10x_incremental (the 10x set as an export directory, a cold run, then 1% newer
interactions appended and a second run on the same directories). Default: sample and synthetic_10x.
BENCH_KEEP_DIR: run each cold data set (not the incremental one) in ``<BENCH_KEEP_DIR>/<name>`` and
keep it (data, models, Dagster instance, run log) instead of a temporary directory.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from recsys_assets import settings

SAMPLE = {"interactions": 100_836, "users": 610, "items": 9_742}
DEFAULT = ("sample", "synthetic_10x")


def _synthetic(users_scale: int) -> dict[str, str]:
    return {"RECSYS_SOURCE": "synthetic", "RECSYS_SYNTHETIC_USERS": str(SAMPLE["users"] * users_scale),
            "RECSYS_SYNTHETIC_ITEMS": str(SAMPLE["items"] * 10),
            "RECSYS_SYNTHETIC_INTERACTIONS": str(SAMPLE["interactions"] * users_scale), "RECSYS_SEED": "0"}


DATASETS: dict[str, dict[str, str]] = {
    "sample": {"RECSYS_SOURCE": "sample", "RECSYS_SAMPLE_DIR": str(settings.sample_dir())},
    "synthetic_10x": _synthetic(10),
    "synthetic_100x": _synthetic(100),
    "synthetic_100x_dask": {**_synthetic(100), "RECSYS_DASK_SCHEDULER": "local", "RECSYS_EXECUTOR": "dask"},
}
INCREMENTAL = "synthetic_10x_incremental"  # the 10x set, then 1% new interactions on the same directories


def chosen() -> list[str]:
    names = [n.strip() for n in os.environ.get("BENCH_DATASETS", "").split(",") if n.strip()] or list(DEFAULT)
    known = {*DATASETS, INCREMENTAL}
    unknown = sorted(set(names) - known)
    if unknown:
        raise SystemExit(f"BENCH_DATASETS: unknown data sets {unknown}; known: {sorted(known)}")
    return names


class TreeMemory:
    """Samples the summed RSS of a process and all its descendants every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.root, self.interval = psutil.Process(pid), interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        total = 0
        for process in [self.root, *self.root.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), self._rss()))
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mb(self, start: float = 0.0, end: float = float("inf")) -> float | None:
        inside = [rss for t, rss in self.samples if start - self.interval <= t <= end + self.interval]
        return round(max(inside) / 2**20, 1) if inside else None


def read_run(home: Path, tmp: str) -> dict:
    """The finished run's step windows, check outcomes and headline numbers, from its instance."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_runs(limit=1)[0]
        windows: dict[str, list[float]] = {}
        for record in instance.all_logs(run.run_id):
            event = record.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type_value == "STEP_START":
                windows[event.step_key] = [record.timestamp, record.timestamp]
            elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in windows:
                windows[event.step_key][1] = record.timestamp
        checks = {}
        for record in instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records:
            evaluation = record.event_log_entry.dagster_event.event_specific_data
            checks[evaluation.check_name] = {"passed": bool(evaluation.passed), "description": evaluation.description}
        status = run.status.value
    summary_path = Path(tmp) / "data" / "evaluation" / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return {"status": status, "windows": windows, "checks": checks, "dataset": summary.get("dataset"),
            "user_ndcg@10": summary.get("user", {}).get("model", {}).get("ndcg@10"),
            "detail_next_ndcg@10": summary.get("detail_next", {}).get("model", {}).get("ndcg@10"),
            "similar_next_ndcg@10": summary.get("detail_next", {}).get("similar", {}).get("ndcg@10"),
            "ease_row_of_query_ndcg@10": summary.get("detail_next", {}).get("baselines", {}).get(
                "ease_row_of_query", {}).get("ndcg@10"),
            "ease_baseline_ndcg@10": summary.get("user", {}).get("baselines", {}).get("ease", {}).get("ndcg@10")}


def _execute(tmp: Path, environment: dict[str, str], executor: str) -> dict:
    """One run of ``train_and_evaluate`` through the Dagster CLI in ``tmp``'s instance and
    directories, as a user would start it, with its step windows and the process tree's memory."""
    home = tmp / "dagster_home"
    if not home.exists():
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, **environment, "DAGSTER_HOME": str(home), "RECSYS_DATA_DIR": f"{tmp}/data",
           "RECSYS_MODELS_DIR": f"{tmp}/models", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
    log = tmp / "run.log"
    started = time.perf_counter()
    with log.open("a") as sink:
        child = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "recsys_assets.definitions",
             "-j", "train_and_evaluate"], env=env, cwd=Path(__file__).resolve().parent.parent,
            stdout=sink, stderr=subprocess.STDOUT)
        with TreeMemory(child.pid) as memory:
            code = child.wait()
    total = time.perf_counter() - started
    if code != 0:
        print(log.read_text()[-4000:], file=sys.stderr)
    run = read_run(home, str(tmp))
    steps = {step: {"seconds": round(end - start, 2), "peak_memory_mb": memory.peak_mb(start, end)}
             for step, (start, end) in sorted(run.pop("windows").items(), key=lambda kv: kv[1][0])}
    return {"executor": executor, "exit_code": code, "total_seconds": round(total, 1),
            "peak_memory_mb": memory.peak_mb(), **run, "assets": steps}


def run_one(name: str) -> dict:
    """One cold run (fresh instance, data and model directories) of the data set ``name``."""
    if name == INCREMENTAL:
        return run_incremental()
    executor = DATASETS[name].get("RECSYS_EXECUTOR", "in_process")
    if os.environ.get("BENCH_KEEP_DIR"):
        kept = Path(os.environ["BENCH_KEEP_DIR"]) / name
        if kept.exists():
            raise SystemExit(f"BENCH_KEEP_DIR: {kept} exists; a cold run needs a fresh directory")
        kept.mkdir(parents=True)
        return _execute(kept, DATASETS[name], executor)
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        return _execute(Path(tmp), DATASETS[name], executor)


def run_incremental(new_share: float = 0.01) -> dict:
    """The 10x set as an export directory without its latest ``new_share`` of interactions: a cold
    run, then the held-back rows appended to the export and a second run on the same instance,
    data and models (what a nightly retraining sees). The entry is the second run, with the cold
    one under ``cold``."""
    from recsys_training import synthetic

    spec = DATASETS["synthetic_10x"]
    tables = synthetic.generate(n_users=int(spec["RECSYS_SYNTHETIC_USERS"]), n_items=int(spec["RECSYS_SYNTHETIC_ITEMS"]),
                                n_interactions=int(spec["RECSYS_SYNTHETIC_INTERACTIONS"]), seed=int(spec["RECSYS_SEED"]))
    interactions = tables.interactions.rows.sort_values(["timestamp", "user_id", "item_id"], kind="stable")
    held = int(round(len(interactions) * new_share))
    with tempfile.TemporaryDirectory(prefix=f"bench-{INCREMENTAL}-") as tmp:
        export = Path(tmp) / "export"
        export.mkdir()
        tables.items.rows.to_parquet(export / "items.parquet", index=False)
        interactions.iloc[: len(interactions) - held].to_parquet(export / "interactions.parquet", index=False)
        environment = {"RECSYS_SOURCE": "export", "RECSYS_EXPORT_DIR": str(export)}
        cold = _execute(Path(tmp), environment, "in_process")
        interactions.to_parquet(export / "interactions.parquet", index=False)
        second = _execute(Path(tmp), environment, "in_process")
    return {**second, "new_interactions": held, "share_of_cold": round(second["total_seconds"] / cold["total_seconds"], 3),
            "cold": cold}


def main() -> int:
    output = Path(os.environ.get("BENCH_OUTPUT", settings.data_dir() / "bench" / "pipeline.json"))
    output.parent.mkdir(parents=True, exist_ok=True)
    report = json.loads(output.read_text()) if output.exists() else {}
    report.setdefault("datasets", {})
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}
    for name in chosen():
        print(f"running {name} ...", flush=True)
        report["datasets"][name] = {**run_one(name), "measured": time.strftime("%Y-%m-%d")}
        output.write_text(json.dumps(report, indent=2))
        entry = report["datasets"][name]
        print(f"{name}: {entry.get('total_seconds')} s, peak {entry.get('peak_memory_mb')} MB, "
              f"checks {sum(c['passed'] for c in entry.get('checks', {}).values())}/{len(entry.get('checks', {}))}",
              flush=True)
    print(markdown(report))
    print(f"\nwritten to {output}")
    return 0


def markdown(report: dict) -> str:
    names = [n for n, d in report["datasets"].items() if "assets" in d]
    steps = list(dict.fromkeys(s for n in names for s in report["datasets"][n]["assets"]))
    lines = ["| step | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for step in steps:
        cells = []
        for n in names:
            cell = report["datasets"][n]["assets"].get(step)
            cells.append(f"{cell['seconds']} s, {cell['peak_memory_mb']} MB" if cell else "-")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(
        f"**{report['datasets'][n]['total_seconds']} s, {report['datasets'][n]['peak_memory_mb']} MB**" for n in names) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
