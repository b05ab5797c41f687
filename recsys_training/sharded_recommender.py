"""A recommender whose batch calls are split over user shards, each answered by a worker process
that loaded the same bundle: the evaluation's lists at the cost of 1/N of its requests per core.

A request's list does not depend on the other requests of its batch, so the shards' lists,
concatenated in order, are the lists one process would give. Workers are spawned (not forked:
the pipeline process has OpenMP and BLAS thread pools that a forked child must not inherit) and
load the bundle once each.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from recsys_runtime.bundle import load_bundle
from recsys_runtime.recommender import Recommendation, Recommender

_WORKER: Recommender | None = None  # the bundle a worker process loaded


def _load(path: str, ranker_cache: str | None) -> None:
    global _WORKER
    _WORKER = load_bundle(path, ranker_cache=Path(ranker_cache) if ranker_cache else None)


def _call(method: str, args: tuple, kwargs: dict):
    return getattr(_WORKER, method)(*args, **kwargs)


def _attribute(name: str):
    return getattr(_WORKER, name)


def can_start_workers() -> bool:
    """False inside a daemonic process (a Dask or multiprocessing worker), which may have no children."""
    return not multiprocessing.current_process().daemon


class ShardedRecommender:
    """The bundle's ``recommend_variants`` and ``recommend_many`` over ``workers`` processes once a
    call has at least ``min_requests`` requests; smaller calls, and everything else, go to the
    bundle loaded in this process, which is loaded only when such a call comes (or given as
    ``recommender``). Use as a context manager: the workers stop at exit."""

    def __init__(self, bundle: Path | str, workers: int, min_requests: int = 1_000, ranker_cache: Path | None = None,
                 recommender: Recommender | None = None) -> None:
        self.bundle, self.min_requests = str(bundle), min_requests
        self.workers = workers if can_start_workers() else 1
        self.ranker_cache = str(ranker_cache) if ranker_cache else None
        self._local = recommender
        self._pool: ProcessPoolExecutor | None = None
        self.sharded_calls = 0

    @property
    def recommender(self) -> Recommender:
        """The bundle loaded in this process."""
        if self._local is None:
            self._local = load_bundle(self.bundle, ranker_cache=Path(self.ranker_cache) if self.ranker_cache else None)
        return self._local

    @property
    def loaded_here(self) -> bool:
        return self._local is not None

    def _attribute(self, name: str):
        if self._local is None and self.workers > 1:
            return self._workers().submit(_attribute, name).result()
        return getattr(self.recommender, name)

    @property
    def routes(self) -> tuple:
        return self._attribute("routes")

    @property
    def version(self) -> str:
        return self._attribute("version")

    def __getattr__(self, name: str):
        return getattr(self.recommender, name)

    def __enter__(self) -> ShardedRecommender:
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _workers(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_load, initargs=(self.bundle, self.ranker_cache))
        return self._pool

    def _parts(self, method: str, user_ids: list, per_request: dict[str, list | None], **fixed) -> list:
        """The call's answers, one per shard in order (one part when it is not split)."""
        if self.workers <= 1 or len(user_ids) < self.min_requests:
            return [getattr(self.recommender, method)(user_ids, **per_request, **fixed)]
        bounds = np.linspace(0, len(user_ids), self.workers + 1).astype(int)
        pool = self._workers()
        futures = [pool.submit(_call, method, (user_ids[lo:hi],),
                               {**{k: (v[lo:hi] if v is not None else None) for k, v in per_request.items()}, **fixed})
                   for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        self.sharded_calls += 1
        return [future.result() for future in futures]

    def recommend_variants(self, user_ids: list, anchors: list | None = None, k: int = 10, variants: tuple = (None,),
                           exclude: list | None = None) -> dict[str | None, list[Recommendation]]:
        parts = self._parts("recommend_variants", user_ids, {"anchors": anchors, "exclude": exclude}, k=k,
                            variants=variants)
        return {v: [rec for part in parts for rec in part[v]] for v in variants}

    def recommend_many(self, user_ids: list, anchors: list | None = None, k: int = 10,
                       exclude: list | None = None) -> list[Recommendation]:
        parts = self._parts("recommend_many", user_ids, {"anchors": anchors, "exclude": exclude}, k=k)
        return [rec for part in parts for rec in part]
