"""A tiny CLIP with random weights, saved the way sentence-transformers saves a CLIP model (no
weights can be downloaded here), and generated item images whose colour follows the item's topic."""

import colorsys
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def tiny_clip(directory: Path) -> Path:
    """A CLIP model with random weights in ``directory/clip``, loadable by SentenceTransformer."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sentence_transformers.sentence_transformer.modules import CLIPModel as SentenceCLIP

    torch.manual_seed(0)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for i, letter in enumerate("abcdefghijklmnopqrstuvwxyz"):
        vocab[letter], vocab[letter + "</w>"] = 2 + i, 28 + i
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                     "vocab_size": len(vocab), "max_position_embeddings": 32},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    hf = directory / "hf"
    CLIPModel(config).save_pretrained(hf)
    processor.save_pretrained(hf)
    target = directory / "clip"
    SentenceTransformer(modules=[SentenceCLIP(str(hf))], device="cpu").save(str(target))
    return target


def topic_of(items: pd.DataFrame) -> np.ndarray:
    """The synthetic items' topic number (their first category, ``topicK``)."""
    return items["categories"].str.extract(r"topic(\d+)")[0].astype(int).to_numpy()


def write_topic_images(items: pd.DataFrame, directory: Path, seed: int = 0) -> pd.Series:
    """A 32x32 PNG per item, its hue set by its topic, with pixel noise; returns the relative paths."""
    rng = np.random.default_rng(seed)
    topics = topic_of(items)
    n_topics = topics.max() + 1
    (directory / "images").mkdir(parents=True, exist_ok=True)
    paths = []
    for item_id, topic in zip(items["item_id"], topics, strict=True):
        colour = np.array(colorsys.hsv_to_rgb(topic / n_topics, 0.8, 0.9)) * 255
        pixels = np.clip(colour[None, None, :] + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
        relative = f"images/{item_id}.png"
        Image.fromarray(pixels).save(directory / relative)
        paths.append(relative)
    return pd.Series(paths, index=items.index)
