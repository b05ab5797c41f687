"""Nearest-neighbour search over item embeddings: exact below a catalog size, HNSW above it, and
each item's nearest items as neighbour lists.

An exact search costs catalog x dimension per query; an HNSW graph costs about
log(catalog) x ``ef_search`` x dimension. Which one a bundle uses is decided when it is built
(``APPROXIMATE_ABOVE`` items) and recorded in its manifest (``ContentIndex.describe``). The
content route reads the neighbour lists (``neighbours``), searched once per item when the index
is built, so a request sums its history's lists instead of searching.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

APPROXIMATE_ABOVE = 50_000
NEIGHBOURS_TOP_K = 50  # nearest items kept per item for the content route
NEIGHBOURS_BLOCK = 4_096  # items searched at once while the lists are built
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 128


def faiss_enabled() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class ContentIndex:
    """Inner-product search over L2-normalised vectors (so scores are cosines).

    ``kind``: ``exact`` (faiss flat, or numpy without faiss) or ``hnsw`` (faiss HNSW, built with
    one thread so the same vectors always give the same graph); None picks ``hnsw`` above
    ``approximate_above`` items when faiss is there. ``graph``: a serialised HNSW index, or a
    function that reads one, so a loaded bundle does not build it again. With ``neighbours``
    given, the faiss index (which holds a copy of the vectors) is built or read only when
    something searches: serving reads the lists, so a loaded bundle never holds it."""

    def __init__(self, vectors: np.ndarray, use_faiss: bool | None = None, kind: str | None = None,
                 approximate_above: int = APPROXIMATE_ABOVE, graph: np.ndarray | Callable[[], np.ndarray] | None = None,
                 neighbours: sp.csr_matrix | None = None) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._neighbours = neighbours
        faiss_on = faiss_enabled() if use_faiss is None else use_faiss
        if kind is None:
            kind = "hnsw" if faiss_on and len(self.vectors) > approximate_above else "exact"
        if kind == "hnsw" and not faiss_on:
            raise RuntimeError("an HNSW content index needs faiss (faiss is not installed)")
        self.kind = kind
        self.backend = "faiss" if faiss_on else "numpy"
        self._graph = graph
        self._index = None
        self._lock = threading.Lock()
        if neighbours is None:
            self._faiss_index()

    def _faiss_index(self):
        """The faiss index, built (or read from the serialised graph) the first time it is needed;
        None for the numpy backend."""
        if self.backend != "faiss" or self._index is not None:
            return self._index
        with self._lock:
            if self._index is None:
                import faiss

                if self.kind == "hnsw":
                    graph = self._graph() if callable(self._graph) else self._graph
                    index = faiss.deserialize_index(graph) if graph is not None else self._build_hnsw()
                    index.hnsw.efSearch = HNSW_EF_SEARCH
                else:
                    index = faiss.IndexFlatIP(self.vectors.shape[1])
                    index.add(self.vectors)
                self._index = index
        return self._index

    def _build_hnsw(self):
        import faiss

        index = faiss.IndexHNSWFlat(self.vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            index.add(self.vectors)
        finally:
            faiss.omp_set_num_threads(threads)
        return index

    def graph(self) -> np.ndarray | None:
        """The serialised HNSW index (None for an exact one)."""
        if self.kind != "hnsw":
            return None
        if self._index is None and self._graph is not None:
            return self._graph() if callable(self._graph) else self._graph
        import faiss

        return faiss.serialize_index(self._faiss_index())

    def neighbours(self) -> sp.csr_matrix:
        """Each item's ``NEIGHBOURS_TOP_K`` nearest other items with a positive score (cosine), as
        CSR rows of float32, searched with this index (so approximate for an HNSW one) the first
        time they are asked for, in blocks of ``NEIGHBOURS_BLOCK`` items."""
        if self._neighbours is None:
            self._neighbours = self._search_neighbours(NEIGHBOURS_TOP_K)
        return self._neighbours

    def _search_neighbours(self, top_k: int) -> sp.csr_matrix:
        n = len(self.vectors)
        k = min(top_k + 1, n)
        rows, cols, values = [], [], []
        for start in range(0, n, NEIGHBOURS_BLOCK):
            scores, found = self.search(self.vectors[start:start + NEIGHBOURS_BLOCK], k)
            own = np.arange(start, start + len(found))[:, None]
            keep = (found >= 0) & (found != own) & (scores > 0)
            # at most top_k per row: the first top_k kept hits, best first as the search gives them
            keep &= np.cumsum(keep, axis=1) <= top_k
            rows.append(np.broadcast_to(own, found.shape)[keep])
            cols.append(found[keep])
            values.append(scores[keep].astype(np.float32))
        matrix = sp.csr_matrix((np.concatenate(values) if values else np.empty(0, np.float32),
                                (np.concatenate(rows) if rows else np.empty(0, np.int64),
                                 np.concatenate(cols) if cols else np.empty(0, np.int64))), shape=(n, n))
        matrix.sort_indices()
        return matrix

    def describe(self) -> dict:
        """What the manifest records about this index."""
        info = {"kind": self.kind, "backend": self.backend, "items": int(len(self.vectors)),
                "approximate_above": APPROXIMATE_ABOVE, "neighbours_per_item": NEIGHBOURS_TOP_K}
        if self.kind == "hnsw":
            info.update({"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH})
        return info

    def __getstate__(self) -> dict:
        return {"vectors": self.vectors, "backend": self.backend, "kind": self.kind, "graph": self.graph(),
                "neighbours": self._neighbours}

    def __setstate__(self, state: dict) -> None:
        kind = state.get("kind", "exact")
        use_faiss = (state["backend"] == "faiss" and faiss_enabled()) or kind == "hnsw"
        self.__init__(state["vectors"], use_faiss=use_faiss, kind=kind, graph=state.get("graph"),
                      neighbours=state.get("neighbours"))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, indices) of the ``k`` nearest items of each query row; -1 pads missing ones."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, len(self.vectors))
        index = self._faiss_index()
        if index is not None:
            scores, idx = index.search(queries, k)
            return scores, idx
        sims = queries @ self.vectors.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
        idx = np.take_along_axis(part, order, axis=1)
        return np.take_along_axis(sims, idx, axis=1), idx
