"""Nearest-neighbour search over item embeddings: faiss when available, exact numpy otherwise."""

from __future__ import annotations

import os

import numpy as np


def faiss_enabled() -> bool:
    if os.environ.get("USE_FAISS_RECALL", "1") == "0":
        return False
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class ContentIndex:
    """Inner-product search over L2-normalised vectors (so scores are cosines)."""

    def __init__(self, vectors: np.ndarray, use_faiss: bool | None = None) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.backend = "faiss" if (faiss_enabled() if use_faiss is None else use_faiss) else "numpy"
        self._index = None
        if self.backend == "faiss":
            import faiss

            self._index = faiss.IndexFlatIP(self.vectors.shape[1])
            self._index.add(self.vectors)

    def __getstate__(self) -> dict:
        return {"vectors": self.vectors, "backend": self.backend}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["vectors"], use_faiss=state["backend"] == "faiss" and faiss_enabled())

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, indices) of the ``k`` nearest items of each query row; -1 pads missing ones."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, len(self.vectors))
        if self._index is not None:
            scores, idx = self._index.search(queries, k)
            return scores, idx
        sims = queries @ self.vectors.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
        idx = np.take_along_axis(part, order, axis=1)
        return np.take_along_axis(sims, idx, axis=1), idx
