"""The ranker's final fit on a Dask cluster, through LightGBM's own Dask interface.

Users are split into one contiguous shard per worker, so every query group lies whole inside one
partition, as ``DaskLGBMRanker`` needs. The rounds and parameters are the in-process ones: only
where the histograms are built changes, which moves the model by a little (distributed LightGBM
merges per-worker histograms)."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np


def shard_rows(groups: np.ndarray, shards: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Chunk sizes in rows and in groups for ``shards`` contiguous shards of whole groups."""
    parts = [p for p in np.array_split(np.arange(len(groups)), max(1, min(shards, len(groups)))) if len(p)]
    return tuple(int(groups[p].sum()) for p in parts), tuple(len(p) for p in parts)


def dask_final_fit(client):
    """A ``final_fit`` for ``train_ranker`` that trains on the workers of ``client``."""

    def fit(config: dict, x: np.ndarray, y: np.ndarray, groups: np.ndarray, names: list[str],
            rounds: int) -> lgb.Booster:
        import dask.array as da
        from lightgbm import DaskLGBMRanker

        workers = len(client.scheduler_info()["workers"])
        row_chunks, group_chunks = shard_rows(groups, workers)
        features = da.from_array(x, chunks=(row_chunks, x.shape[1]))
        labels = da.from_array(y, chunks=(row_chunks,))
        sizes = da.from_array(groups, chunks=(group_chunks,))
        params = {k: v for k, v in config.items() if k != "objective"}
        model = DaskLGBMRanker(client=client, n_estimators=rounds, objective=config.get("objective", "lambdarank"),
                               **params)
        model.fit(features, labels, group=sizes, feature_name=names)
        return model.to_local().booster_

    return fit
