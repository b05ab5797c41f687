"""The executor is configuration: the whole training graph on a small synthetic set, run by the
Dagster CLI in a fresh process, in process, with the multiprocess executor, and on a real
``distributed.LocalCluster`` of 2 worker processes (steps as Dask tasks, the ranker's final fit
through LightGBM's Dask interface). The maths is deterministic, so the first two give the same
``summary.json``. Distributed LightGBM finds bins per machine and merges per-worker histograms, so
the third trains a slightly different model; on 200 users one standard error of hr@10 is about
0.02, so it is held to statistical equality with the in-process model (the paired 99% bootstrap
interval of each per-user metric's difference contains 0) and to a cap on the difference."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys_training import synthetic
from recsys_training.bootstrap import paired_interval
from recsys_training.components_fit import fit_components
from recsys_training.distributed_ranker import ShardOrderedClient, dask_final_fit, pinned_array, shard_rows
from recsys_training.ranker import train_ranker, training_set
from recsys_training.split import protocol_folds

ROOT = Path(__file__).resolve().parent.parent
RUN_SPECIFIC = ("model_version", "bundle", "seconds")
DASK_MAX_DIFFERENCE = 0.05  # absolute, on the model's mean user ndcg / recall / hr
DASK_LEVEL = 0.99  # of the paired interval that must contain 0


def _environment(tmp: Path, name: str, **environment: str) -> dict[str, str]:
    """The run's environment: the CLI's, and the Dask workers' (a step reads its settings where it runs)."""
    home = tmp / name / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "RECSYS_DATA_DIR": str(tmp / name / "data"),
           "RECSYS_MODELS_DIR": str(tmp / name / "models"), "RECSYS_SOURCE": "synthetic",
           "RECSYS_SYNTHETIC_USERS": "200", "RECSYS_SYNTHETIC_ITEMS": "300", "RECSYS_SYNTHETIC_INTERACTIONS": "8000",
           "RECSYS_SEED": "3", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / name / 'mlflow.db'}",
           "RECSYS_LATENCY_BUDGET_MS": "100", "RECSYS_LATENCY_REQUESTS": "200", "RECSYS_SIMILAR_PRECOMPUTE_ITEMS": "100",
           **environment}
    for key in ("RECSYS_EXECUTOR", "RECSYS_DASK_SCHEDULER"):
        if key not in environment:
            env.pop(key, None)
    return env


def _run(tmp: Path, name: str, **environment: str) -> dict:
    env = _environment(tmp, name, **environment)
    finished = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "recsys_assets.definitions",
         "-j", "train_and_evaluate"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    evaluation = tmp / name / "data" / "evaluation"
    return {"summary": json.loads((evaluation / "summary.json").read_text()),
            "per_user": pd.read_parquet(evaluation / "per_user.parquet"), "log": finished.stdout + finished.stderr}


def _comparable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in RUN_SPECIFIC}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from distributed import LocalCluster

    tmp = tmp_path_factory.mktemp("executors")
    out = {"in_process": _run(tmp, "in_process", RECSYS_EXECUTOR="in_process"),
           "multiprocess": _run(tmp, "multiprocess", RECSYS_EXECUTOR="multiprocess")}
    # the workers get the run's settings (where its data and models live, which cluster) when they start
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    workers_env = {k: v for k, v in _environment(tmp, "dask", RECSYS_DASK_SCHEDULER=address).items()
                   if k.startswith(("RECSYS_", "MLFLOW_", "DAGSTER_"))}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_port=port, host="127.0.0.1", env=workers_env) as cluster:
        assert cluster.scheduler_address == address
        out["dask"] = _run(tmp, "dask", RECSYS_DASK_SCHEDULER=address)
    return out


def test_the_multiprocess_executor_gives_the_in_process_summary(runs):
    assert "Executing steps in process" in runs["in_process"]["log"]
    assert "Executing steps using multiprocess executor" in runs["multiprocess"]["log"]
    assert _comparable(runs["multiprocess"]["summary"]) == _comparable(runs["in_process"]["summary"])


def test_dask_runs_every_step_on_the_cluster_within_the_stated_tolerance(runs):
    assert "dask" in runs["dask"]["log"].lower()
    local, dask = runs["in_process"]["summary"], runs["dask"]["summary"]
    assert dask["dataset"] == local["dataset"]  # data, split and candidates are exact
    assert dask["user"]["baselines"] == local["user"]["baselines"]
    assert dask["user"]["routes"] == local["user"]["routes"]
    local_users, dask_users = runs["in_process"]["per_user"], runs["dask"]["per_user"]
    assert local_users["user_id"].tolist() == dask_users["user_id"].tolist()
    # a user's hit is a recall above 0
    for metric, column, as_hit in (("ndcg@10", "model_ndcg@10", False), ("recall@10", "model_recall@10", False),
                                   ("hr@10", "model_recall@10", True)):
        value = local["user"]["model"][metric]
        ours, theirs = dask_users[column].to_numpy(), local_users[column].to_numpy()
        if as_hit:
            ours, theirs = (ours > 0).astype(float), (theirs > 0).astype(float)
        interval = paired_interval(ours, theirs, level=DASK_LEVEL)
        print(f"user {metric}: in process {value:.4f}, dask {dask['user']['model'][metric]:.4f}, "
              f"difference {interval.describe()}")
        assert interval.mean == pytest.approx(dask["user"]["model"][metric] - value, abs=1e-9)
        assert interval.low <= 0 <= interval.high, metric
        assert abs(interval.mean) <= DASK_MAX_DIFFERENCE, metric
    for metric, value in local["detail"]["model"].items():
        assert abs(dask["detail"]["model"][metric] - value) <= DASK_MAX_DIFFERENCE, ("detail", metric)
    manifest = json.loads((Path(dask["bundle"]) / "manifest.json").read_text())
    assert manifest["ranker"]["trained_on"] == "dask, 2 workers"


def test_shards_hold_whole_query_groups():
    groups = np.array([3, 1, 4, 1, 5, 9, 2])
    rows, sizes = shard_rows(groups, 2)
    assert sum(rows) == groups.sum() and sum(sizes) == len(groups)
    assert rows == (int(groups[:4].sum()), int(groups[4:].sum()))


def test_the_dask_final_fit_ranks_like_the_in_process_one():
    from distributed import Client, LocalCluster

    tables = synthetic.generate(200, 300, 8_000, seed=5)
    folds = protocol_folds(tables.interactions.rows)
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(len(tables.items.rows), 16)).astype(np.float32)

    components = fit_components(folds["validation"].train, tables.items.rows,
                                pd.DataFrame(embeddings, index=tables.items.rows["item_id"]))
    data = training_set(components, folds["validation"].test)
    local, local_info = train_ranker(data, seed=1)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        remote, remote_info = train_ranker(data, seed=1, final_fit=dask_final_fit(client))
    assert remote.num_trees() == local.num_trees() == local_info["rounds"]
    a, b = local.predict(data.candidates.features), remote.predict(data.candidates.features)
    assert np.corrcoef(a, b)[0, 1] > 0.9


def test_shards_are_placed_and_ranked_in_shard_order():
    """LightGBM ranks its machines in ``who_has`` order; a plain client lists keys in set order."""
    import dask
    from distributed import Client, LocalCluster, wait

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        workers = sorted(client.scheduler_info()["workers"])
        array = pinned_array(client, np.arange(10.0), (6, 4), workers)
        parts = client.compute(array.to_delayed().tolist())
        wait(parts)
        holders = [next(iter(client.who_has([part])[part.key])) for part in parts]
        assert holders == workers
        assert np.array_equal(np.concatenate([part.result() for part in parts]), np.arange(10.0))

        ordered = ShardOrderedClient(client)
        futures = ordered.compute([dask.delayed(lambda i: i)(i, dask_key_name=f"shard-{i}") for i in range(12)])
        wait(futures)
        assert list(ordered.who_has(futures)) == [future.key for future in futures]

        # a shard's part is built on its worker only, so every worker is one LightGBM machine
        for placement in (workers, workers[::-1]):
            pinned = ShardOrderedClient(client, placement)
            parts = pinned.compute([dask.delayed(lambda i: i)(i, dask_key_name=f"part-{i}-{placement[0]}")
                                    for i in range(2)])
            wait(parts)
            found = pinned.who_has(parts)
            assert [next(iter(found[part.key])) for part in parts] == placement


@pytest.mark.parametrize(("executor", "policy"), [("in_process", None), ("multiprocess", "PASSIVE")])
def test_only_executors_that_share_the_cores_make_openmp_threads_sleep(monkeypatch, executor, policy):
    from recsys_assets.defs.jobs import executor_for

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("RECSYS_DASK_SCHEDULER", raising=False)
    monkeypatch.setenv("RECSYS_EXECUTOR", executor)
    executor_for("train_and_evaluate")
    assert os.environ.get("OMP_WAIT_POLICY") == policy
