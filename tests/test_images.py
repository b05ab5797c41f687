"""The image route: CLIP vectors from a local model (a tiny one with random weights, built by the
test and loaded through the same code path), generated images whose colour follows the topic,
same-topic neighbours, rejected images with reasons, and the route through the whole graph."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys_runtime.bundle import load_bundle
from recsys_training import synthetic
from recsys_training.images import embed_item_images
from recsys_training.sources import load_export
from tests.images import tiny_clip, topic_of, write_topic_images
from tests.pipeline_helpers import checks, materialize, metadata


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    tables = synthetic.generate(300, 400, 12_000, seed=7)
    export = root / "export"
    items = tables.items.rows.copy()
    items["image"] = write_topic_images(items, export)
    items.to_parquet(export / "items.parquet")
    tables.interactions.rows.to_parquet(export / "interactions.parquet")
    return {"root": root, "export": export, "clip": tiny_clip(root / "model"), "items": items}


def test_image_vectors_put_same_topic_items_next_to_each_other(catalog):
    raw = load_export(catalog["export"]).items.rows
    assert raw["image"].map(lambda p: Path(p).is_absolute() and Path(p).exists()).all()  # resolved to the export
    found = embed_item_images(raw, str(catalog["clip"]))
    assert not found.skipped and len(found.vectors) == len(raw) and found.rejected.empty
    vectors = found.vectors.to_numpy()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    topics = topic_of(raw.set_index("item_id").loc[found.vectors.index].reset_index())
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argsort(-sims, axis=1)[:, :10]
    same_topic = (topics[nearest] == topics[:, None]).mean()
    chance = np.mean([(topics == t).mean() for t in topics])
    assert same_topic > 5 * chance, (same_topic, chance)


def test_missing_remote_and_broken_images_are_rejected_with_their_reason(catalog, tmp_path):
    raw = load_export(catalog["export"]).items.rows.head(6).copy()
    (tmp_path / "broken.png").write_bytes(b"not a png")
    raw.loc[raw.index[1], "image"] = str(tmp_path / "missing.png")
    raw.loc[raw.index[2], "image"] = "https://example.com/i.png"
    raw.loc[raw.index[3], "image"] = str(tmp_path / "broken.png")
    raw.loc[raw.index[4], "image"] = ""
    found = embed_item_images(raw, str(catalog["clip"]))
    assert len(found.vectors) == 2
    reasons = dict(zip(found.rejected["item_id"], found.rejected["reason"], strict=True))
    assert reasons == {raw["item_id"].iloc[1]: "no such file",
                       raw["item_id"].iloc[2]: "not a local file (nothing is downloaded)",
                       raw["item_id"].iloc[3]: "unreadable image: UnidentifiedImageError"}


def test_without_a_model_or_images_the_route_is_skipped_with_the_reason(catalog):
    raw = load_export(catalog["export"]).items.rows
    assert embed_item_images(raw, "").skipped == "CLIP_MODEL_PATH is not set"
    assert embed_item_images(raw.assign(image=""), str(catalog["clip"])).skipped == "the items have no images"


def test_the_image_route_runs_through_the_graph_into_the_served_bundle(catalog, monkeypatch):
    tmp = catalog["root"] / "run"
    monkeypatch.setenv("RECSYS_LATENCY_BUDGET_MS", "100")  # not what this test is about
    result = materialize(tmp, kind="export", export_dir=str(catalog["export"]),
                         run_config={"ops": {"item_image_vectors": {"config": {"clip_model_path": str(catalog["clip"])}}}})
    assert result.success, [c for c, ok in checks(result).items() if not ok]
    assert metadata(result, "item_image_vectors")["image_route"] == "on (clip)"
    summary = json.loads((tmp / "data" / "evaluation" / "summary.json").read_text())
    manifest = json.loads((Path(summary["bundle"]) / "manifest.json").read_text())
    assert "image" in manifest["routes"] and {"image_score", "anchor_image", "from_image"} <= set(manifest["features"])
    assert manifest["image_route"]["items_with_vectors"] == len(catalog["items"])
    assert "image_vectors.npy" in manifest["files"]
    recommender = load_bundle(summary["bundle"])
    assert [route.name for route in recommender.routes[-2:]] == ["image", "sequential"]
    # the route alone is evaluated like every other route
    image_alone = summary["user"]["routes"]["image"]
    assert 0 < image_alone["ndcg@10"] < summary["user"]["model"]["ndcg@10"]
    # on an item page the image route proposes same-topic items
    items = catalog["items"].set_index("item_id")
    topics = pd.Series(topic_of(catalog["items"]), index=catalog["items"]["item_id"])
    anchors = [i for i in items.index[:40] if recommender.components.position(i) >= 0][:20]
    same, total = 0, 0
    for anchor in anchors:
        rec = recommender.recommend_many([None], [anchor], 10, route="image")[0]
        same += sum(topics[i] == topics[anchor] for i in rec.items)
        total += len(rec.items)
    assert total and same / total > 0.5
