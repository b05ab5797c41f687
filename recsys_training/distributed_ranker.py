"""The ranker's final fit on a Dask cluster, through LightGBM's own Dask interface.

Users are split into one contiguous shard per worker, so every query group lies whole inside one
partition, as ``DaskLGBMRanker`` needs. Distributed LightGBM finds each feature's bins on one
machine's shard and merges histograms by machine rank, so the model depends on which shard has
which rank. LightGBM ranks machines in the order ``Client.who_has`` lists their shards, and that
order comes from a set of keys (so from the process's string hash seed), and a machine is
wherever the scheduler happened to build its shard's part (two small shards may land on one
worker, which then trains alone): left alone, reruns give one of several models. Here shard
``i`` is placed on the ``i``-th worker (by address), its part is built there and nowhere else,
and ``who_has`` answers in shard order, so shard ``i`` has rank ``i`` and a rerun gives the same
model. The rounds and parameters are the in-process ones: only where the histograms are built
changes, which moves the model by a little."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np


def shard_rows(groups: np.ndarray, shards: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Chunk sizes in rows and in groups for ``shards`` contiguous shards of whole groups."""
    parts = [p for p in np.array_split(np.arange(len(groups)), max(1, min(shards, len(groups)))) if len(p)]
    return tuple(int(groups[p].sum()) for p in parts), tuple(len(p) for p in parts)


def pinned_array(client, array: np.ndarray, chunks: tuple[int, ...], workers: list[str]):
    """``array`` as a Dask array whose ``i``-th chunk (along the first axis) lives on ``workers[i]``."""
    import dask
    import dask.array as da

    bounds = np.cumsum((0, *chunks))
    pieces = []
    for i, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        future = client.scatter(array[start:stop], workers=[workers[i]], hash=False)
        pieces.append(da.from_delayed(dask.delayed(future), shape=(stop - start, *array.shape[1:]),
                                      dtype=array.dtype))
    return da.concatenate(pieces, axis=0)


class ShardOrderedClient:
    """A ``distributed.Client`` whose ``compute`` of a list of shard parts builds part ``i`` on
    ``workers[i]`` only, and whose ``who_has`` lists computed futures in the order ``compute``
    returned them (LightGBM's shard order), not in the order of a set."""

    def __init__(self, client, workers: list[str] | None = None) -> None:
        self._client = client
        self._workers = workers
        self._order: dict = {}

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    def compute(self, collections, *args, **kwargs):
        if isinstance(collections, list) and self._workers and len(collections) == len(self._workers):
            futures = [self._client.compute(part, *args, workers=[worker], allow_other_workers=False, **kwargs)
                       for part, worker in zip(collections, self._workers, strict=True)]
        else:
            futures = self._client.compute(collections, *args, **kwargs)
        if isinstance(futures, list):
            self._order.update({future.key: i for i, future in enumerate(futures)})
        return futures

    def who_has(self, futures=None, **kwargs) -> dict:
        found = self._client.who_has(futures, **kwargs)
        return dict(sorted(found.items(), key=lambda item: self._order.get(item[0], len(self._order))))


def dask_final_fit(client):
    """A ``final_fit`` for ``train_ranker`` that trains on the workers of ``client``."""

    def fit(config: dict, x: np.ndarray, y: np.ndarray, groups: np.ndarray, names: list[str],
            rounds: int) -> lgb.Booster:
        from lightgbm import DaskLGBMRanker

        workers = sorted(client.scheduler_info()["workers"])
        row_chunks, group_chunks = shard_rows(groups, len(workers))
        features = pinned_array(client, x, row_chunks, workers)
        labels = pinned_array(client, y, row_chunks, workers)
        sizes = pinned_array(client, groups, group_chunks, workers)
        params = {k: v for k, v in config.items() if k != "objective"}
        model = DaskLGBMRanker(client=ShardOrderedClient(client, workers[:len(row_chunks)]), n_estimators=rounds,
                               objective=config["objective"], **params)
        model.fit(features, labels, group=sizes, feature_name=names)
        return model.to_local().booster_

    return fit
