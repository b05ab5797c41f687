"""Item image vectors from a locally cached CLIP model, loaded through sentence-transformers.

Nothing is downloaded: the model comes from ``CLIP_MODEL_PATH`` with the Hugging Face hub offline,
and images are local files. An image that is missing, remote or unreadable gives its item no
vector (zeros: the image route never proposes it), and is counted with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

BATCH = 64


@dataclass
class ImageVectors:
    """Unit vectors indexed by item id (items without a usable image are absent), why any were
    not usable, and why the route is off altogether when it is."""

    vectors: pd.DataFrame
    rejected: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["item_id", "image", "reason"]))
    skipped: str = ""
    model: str = ""


def skipped(reason: str) -> ImageVectors:
    return ImageVectors(pd.DataFrame(), skipped=reason)


def load_clip(model_path: str):
    """The CLIP model saved (sentence-transformers format) in ``model_path``, on the CPU."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_path, device="cpu", local_files_only=True)


def _open(path: str):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def embed_item_images(items: pd.DataFrame, model_path: str, encoder=None) -> ImageVectors:
    """CLIP vectors of the items' ``image`` files; without a model path or an image column the
    route is skipped, with the reason."""
    if "image" not in items or not (items["image"].astype(str) != "").any():
        return skipped("the items have no images")
    if not model_path:
        return skipped("CLIP_MODEL_PATH is not set")
    encoder = encoder or load_clip(model_path)
    listed = items.loc[items["image"].astype(str) != "", ["item_id", "image"]].astype(str)
    usable, chunks, rejected, pending = [], [], [], []

    def flush() -> None:
        if pending:
            chunks.append(encoder.encode(pending, batch_size=BATCH, convert_to_numpy=True, normalize_embeddings=True,
                                         show_progress_bar=False).astype(np.float32))
            pending.clear()

    for item_id, path in zip(listed["item_id"], listed["image"], strict=True):
        if "://" in path:
            rejected.append((item_id, path, "not a local file (nothing is downloaded)"))
            continue
        if not Path(path).is_file():
            rejected.append((item_id, path, "no such file"))
            continue
        try:
            pending.append(_open(path))
        except Exception as error:  # noqa: BLE001 - any decoding error rejects this image only
            rejected.append((item_id, path, f"unreadable image: {type(error).__name__}"))
            continue
        usable.append(item_id)
        if len(pending) >= 4 * BATCH:  # images are decoded a chunk at a time, never all at once
            flush()
    flush()
    vectors = np.concatenate(chunks) if chunks else np.empty((0, 0), np.float32)
    return ImageVectors(pd.DataFrame(vectors, index=pd.Index(usable, name="item_id")),
                        pd.DataFrame(rejected, columns=["item_id", "image", "reason"]),
                        model=Path(model_path).name)
