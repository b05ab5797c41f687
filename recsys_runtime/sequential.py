"""The sequential route's model at serving time: a SASRec forward pass in numpy.

A history (item indices, oldest first) becomes one vector, the transformer's output at the last
position; an item's score is that vector's dot product with the item's embedding. Training is in
``recsys_training.sequential`` (torch); this module only reads the exported arrays, so the
service does not import torch. Training left-pads histories to ``max_length``; serving leaves
the padding out, which gives the same output (``_encode_one``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recsys_runtime.content_index import APPROXIMATE_ABOVE, ContentIndex, faiss_enabled

LAYER_NORM_EPS = 1e-8
BLOCK_ARRAYS = ("ln1_w", "ln1_b", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo",
                "ln2_w", "ln2_b", "w1", "b1", "w2", "b2")


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + LAYER_NORM_EPS) * weight + bias


@dataclass
class SequentialModel:
    """SASRec's arrays: ``item_embeddings`` has one row per catalog item plus a padding row 0
    (so item ``i`` is row ``i + 1``); ``blocks`` holds each transformer block's arrays by name
    (``BLOCK_ARRAYS``, weights stored as ``input x output``); ``params`` the training settings."""

    item_embeddings: np.ndarray
    positions: np.ndarray
    blocks: list[dict[str, np.ndarray]]
    final_w: np.ndarray
    final_b: np.ndarray
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.item_embeddings = np.ascontiguousarray(self.item_embeddings, dtype=np.float32)
        self._index: ContentIndex | None = None
        self._graph = None  # a stored HNSW graph (or a function reading one) for ``build_index``
        # each block's query, key and value projections as one matrix: one product per block
        self._qkv = [(np.concatenate([b["wq"], b["wk"], b["wv"]], axis=1), np.concatenate([b["bq"], b["bk"], b["bv"]]))
                     for b in self.blocks]
        self._causal = np.triu(np.ones((self.max_length, self.max_length), dtype=bool), k=1)

    @property
    def max_length(self) -> int:
        return len(self.positions)

    @property
    def dimension(self) -> int:
        return self.item_embeddings.shape[1]

    def encode(self, histories: list[np.ndarray]) -> np.ndarray:
        """(len(histories), dimension) float32: each history's vector (zeros for an empty history).
        Each history is encoded on its own, so its vector does not depend on the batch."""
        out = np.zeros((len(histories), self.dimension), np.float32)
        for r, history in enumerate(histories):
            tail = np.asarray(history, dtype=np.int64)[-self.max_length:]
            if len(tail):
                out[r] = self._encode_one(tail)
        return out

    def _encode_one(self, tail: np.ndarray) -> np.ndarray:
        """The last position's output for one history of at most ``max_length`` items. Padding
        positions are left out instead of masked: they are masked from every real position's
        attention and zeroed after every block, so they cannot change the result."""
        m, d = len(tail), self.dimension
        x = self.item_embeddings[tail + 1] * np.float32(np.sqrt(d)) + self.positions[-m:]
        causal = self._causal[:m, :m]
        scale = np.float32(1.0 / np.sqrt(d))
        last = len(self.blocks) - 1
        for b, block in enumerate(self.blocks):
            weight, bias = self._qkv[b]
            qkv = _layer_norm(x, block["ln1_w"], block["ln1_b"]) @ weight + bias
            q, k, v = qkv[:, :d], qkv[:, d:2 * d], qkv[:, 2 * d:]
            if b == last:  # only the last position's output is read
                x, q, causal = x[-1:], q[-1:], causal[-1:]
            scores = q @ k.T * scale
            scores[causal] = np.float32(-np.inf)
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            x = x + ((scores / scores.sum(axis=1, keepdims=True)) @ v) @ block["wo"] + block["bo"]
            f = _layer_norm(x, block["ln2_w"], block["ln2_b"])
            x = x + np.maximum(f @ block["w1"] + block["b1"], 0.0) @ block["w2"] + block["b2"]
        return _layer_norm(x[-1], self.final_w, self.final_b)

    def scores(self, vector: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Each of ``items``' score for one history vector."""
        return self.item_embeddings[np.asarray(items, dtype=np.int64) + 1] @ vector

    def build_index(self) -> ContentIndex:
        """Inner-product search over the item embeddings, built the first time it is asked for:
        HNSW above the content index's threshold, else exact in numpy (one query is faster there
        than faiss's flat index)."""
        if self._index is None:
            vectors = self.item_embeddings[1:]
            self._index = ContentIndex(vectors, use_faiss=faiss_enabled() and len(vectors) > APPROXIMATE_ABOVE,
                                       approximate_above=APPROXIMATE_ABOVE, graph=self._graph)
        return self._index

    def use_graph(self, graph) -> None:
        """Read the HNSW graph from ``graph`` (bytes, or a function returning them) instead of
        building it, as a bundle stores it."""
        self._graph, self._index = graph, None

    def graph(self) -> np.ndarray | None:
        """The serialised HNSW graph of the search index (None when the search is exact)."""
        return self.build_index().graph()

    def nearest(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(items, scores) of the ``k`` best-scoring items of one history vector, best first."""
        scores, found = self.build_index().search(vector[None, :], k)
        keep = found[0] >= 0
        return found[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat named arrays for the bundle (``from_arrays`` reads them back)."""
        flat = {"item_embeddings": self.item_embeddings, "positions": self.positions,
                "final_w": self.final_w, "final_b": self.final_b}
        for b, block in enumerate(self.blocks):
            flat.update({f"block{b}_{name}": block[name] for name in BLOCK_ARRAYS})
        return flat

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: dict) -> SequentialModel:
        count = sum(1 for name in arrays if name.endswith("_ln1_w"))
        blocks = [{name: arrays[f"block{b}_{name}"] for name in BLOCK_ARRAYS} for b in range(count)]
        return cls(arrays["item_embeddings"], arrays["positions"], blocks, arrays["final_w"], arrays["final_b"],
                   params)

    def __getstate__(self) -> dict:
        return {"arrays": self.arrays(), "params": self.params}

    def __setstate__(self, state: dict) -> None:
        loaded = SequentialModel.from_arrays(state["arrays"], state["params"])
        self.__dict__.update(loaded.__dict__)
