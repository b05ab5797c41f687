import numpy as np
import pandas as pd

from recsys_training.content import embed_items_incrementally, embed_texts, encoder_backend, item_text, load_encoder


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
    from recsys_training.text_encoder import onnx_encoder

    model = load_encoder()
    model[1].pooling_mode = "cls"
    assert onnx_encoder(model, tmp_path, tmp_path) is None
    assert not list(tmp_path.glob("*.onnx"))
