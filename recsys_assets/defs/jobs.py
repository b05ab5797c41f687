"""Jobs over the asset graph; each job's executor is configuration (``settings.executor``)."""

import pkgutil
from pathlib import Path

import dagster as dg

from recsys_assets import settings

MONITORING = dg.AssetSelection.groups("monitoring")
# each step's process forks from a server that has imported the definitions once, instead of
# spawning a fresh interpreter that imports dagster, torch and lightgbm again for every step. The
# entry point imports the modules of this folder only when it builds the definitions, so they are
# preloaded by name, with the libraries that steps import when they run: MLflow (the registry and
# every gate check), torch (the sequential route) and LightGBM. Importing torch or LightGBM starts
# no thread. The embedding step imports neither transformers nor sentence-transformers once the
# ONNX export exists, and ONNX Runtime imports in a fraction of a second, so they are not preloaded.
HEAVY_LIBRARIES = ["mlflow", "torch", "lightgbm"]
DEFINITION_MODULES = ["recsys_assets.definitions", *(
    f"{__package__}.{module.name}" for module in pkgutil.iter_modules([str(Path(__file__).parent)])),
    *HEAVY_LIBRARIES]
MULTIPROCESS = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": DEFINITION_MODULES}}}, name="multiprocess")


def executor_for(job_name: str) -> dg.ExecutorDefinition:
    """The job's executor from ``settings.executor``; dask runs each step as a task on the
    configured scheduler (an existing one, or a LocalCluster the run starts and stops)."""
    kind = settings.executor(job_name)
    if kind in ("multiprocess", "dask"):
        settings.share_cores_between_processes()
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if kind == "dask":
        from dagster_dask import dask_executor

        scheduler = settings.dask_scheduler()
        cluster = ({"local": {"n_workers": settings.dask_workers(), "threads_per_worker": 1, "processes": True}}
                   if scheduler == "local" else {"existing": {"address": scheduler}})
        return dask_executor.configured({"cluster": cluster}, name="dask")
    return {"in_process": dg.in_process_executor, "multiprocess": MULTIPROCESS}[kind]


train_and_evaluate = dg.define_asset_job(
    "train_and_evaluate",
    selection=dg.AssetSelection.all() - MONITORING,
    description="Raw data to an evaluated, gated model bundle: the whole graph but monitoring.",
    executor_def=executor_for("train_and_evaluate"),
)

monitor = dg.define_asset_job(
    "monitor",
    selection=dg.AssetSelection.groups("raw") | dg.AssetSelection.assets("item_embeddings") | MONITORING,
    description="New raw data, drift against the champion (with the vectors of new items), online metrics and "
                "reconciliation.",
    executor_def=executor_for("monitor"),
)
