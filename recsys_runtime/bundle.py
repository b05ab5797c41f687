"""The model bundle: everything the service needs, in one directory with a checksummed manifest."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_runtime.candidates import feature_names
from recsys_runtime.compiled_ranker import serving_ranker
from recsys_runtime.components import Components, Histories, ItemTimeline
from recsys_runtime.content_index import ContentIndex
from recsys_runtime.recommender import Recommender
from recsys_runtime.routes import route_names, route_table, routes_for
from recsys_runtime.sequential import SequentialModel
from recsys_runtime.similar_table import SimilarTable

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
SPARSE_FILES = ("ease", "covisitation", "categories")
SIMILAR_FILE = "similar.npz"
CATALOG_FILE = "catalog.parquet"
HNSW_FILE = "content_hnsw.faiss"
CONTENT_NEIGHBOURS_FILE = "content_neighbours.npz"
IMAGE_FILE = "image_vectors.npy"
IMAGE_HNSW_FILE = "image_hnsw.faiss"
SEQUENTIAL_FILE = "sequential.npz"
SEQUENTIAL_HNSW_FILE = "sequential_hnsw.faiss"
SIMILAR_RANKER_FILE = "similar_ranker.txt"


class BundleError(RuntimeError):
    """A bundle is missing, incomplete or does not match its manifest."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_bundle(components: Components, ranker: lgb.Booster, target: Path, metadata: dict,
                similar: SimilarTable | None = None, catalog: pd.DataFrame | None = None,
                similar_ranker: lgb.Booster | None = None) -> dict:
    """Write the bundle to ``target`` atomically (a temporary sibling, then a rename).
    ``similar_ranker``: the ranker of requests whose only history is their page.
    ``similar``: precomputed "similar to X" lists (``Recommender.precompute_similar``).
    ``catalog``: the items table; the served items' titles and categories are kept for people
    (the explorer page), never read on the request path."""
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    timeline, histories = components.timeline, components.histories
    np.savez(
        staging / "arrays.npz",
        items=components.items,
        embeddings=components.embeddings,
        item_mean_value=components.item_mean_value,
        timeline_keys=timeline.keys,
        timeline_counts=timeline.counts,
        timeline_bucket_ends=timeline.bucket_ends,
        timeline_trending=timeline.trending,
        timeline_trending_seconds=np.array(timeline.trending_seconds),
        history_users=histories.users,
        history_indptr=histories.indptr,
        history_items=histories.items,
        history_timestamps=histories.timestamps,
        category_names=components.category_names,
    )
    for name in SPARSE_FILES:
        sp.save_npz(staging / f"{name}.npz", getattr(components, name).tocsr())
    sp.save_npz(staging / CONTENT_NEIGHBOURS_FILE, components.content_index.neighbours())
    if similar is not None:
        np.savez(staging / SIMILAR_FILE, **vars(similar))
    graph = components.content_index.graph()
    if graph is not None:
        (staging / HNSW_FILE).write_bytes(graph.tobytes())
    if components.image_index is not None:
        np.save(staging / IMAGE_FILE, components.image_index.vectors)
        image_graph = components.image_index.graph()
        if image_graph is not None:
            (staging / IMAGE_HNSW_FILE).write_bytes(image_graph.tobytes())
    if components.sequential is not None:
        np.savez(staging / SEQUENTIAL_FILE, **components.sequential.arrays())
        sequential_graph = components.sequential.graph()
        if sequential_graph is not None:
            (staging / SEQUENTIAL_HNSW_FILE).write_bytes(sequential_graph.tobytes())
    if catalog is not None:
        served = catalog[catalog["item_id"].astype(str).isin(set(map(str, components.items)))]
        columns = [c for c in ("item_id", "title", "categories") if c in served]
        served[columns].astype(str).to_parquet(staging / CATALOG_FILE, index=False)
    ranker.save_model(str(staging / "ranker.txt"))
    if similar_ranker is not None:
        similar_ranker.save_model(str(staging / SIMILAR_RANKER_FILE))
    files = {p.name: sha256(p) for p in sorted(staging.iterdir())}
    routes = routes_for(components)
    manifest = {
        "format": FORMAT_VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "features": list(feature_names(routes)),
        "routes": list(route_names(routes)),
        "content_index": components.content_index.describe(),
        "image_index": components.image_index.describe() if components.image_index is not None else None,
        "sequential": components.sequential.params if components.sequential is not None else None,
        "items": int(len(components.items)),
        "users": int(len(histories.users)),
        "trained_until": int(histories.timestamps.max(initial=0)),
        "files": files,
        **metadata,
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return manifest


def read_manifest(path: Path) -> dict:
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise BundleError(f"{path}: no {MANIFEST}")
    return json.loads(manifest_path.read_text())


def verify_bundle(path: Path) -> dict:
    """The manifest, after checking every listed file exists and matches its checksum."""
    manifest = read_manifest(path)
    if manifest.get("format") != FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format {manifest.get('format')} is not {FORMAT_VERSION}")
    # the table the bundle was built with
    routes = route_table(IMAGE_FILE in manifest["files"], SEQUENTIAL_FILE in manifest["files"])
    if list(manifest.get("routes", route_names(routes))) != list(route_names(routes)):
        raise BundleError(f"{path}: bundle routes {manifest.get('routes')} differ from this code's "
                          f"{list(route_names(routes))}")
    if list(manifest.get("features", [])) != list(feature_names(routes)):
        raise BundleError(f"{path}: bundle features differ from this code's features")
    for name, expected in manifest["files"].items():
        file = path / name
        if not file.exists():
            raise BundleError(f"{path}: missing file {name}")
        if sha256(file) != expected:
            raise BundleError(f"{path}: checksum mismatch for {name}")
    return manifest


def trained_until(path: Path | str) -> int:
    """The time of the last interaction a bundle was trained on."""
    path = Path(path)
    manifest = read_manifest(path)
    if "trained_until" in manifest:
        return int(manifest["trained_until"])
    with np.load(path / "arrays.npz", allow_pickle=False) as arrays:
        return int(arrays["history_timestamps"].max(initial=0))


def _content_index(path: Path, manifest: dict, vectors: np.ndarray, use_faiss: bool,
                   graph_file: str = HNSW_FILE, neighbours_file: str | None = None) -> ContentIndex:
    """A bundle's vector index as it was built: its HNSW graph when it has one, else exact; with
    its stored neighbour lists when ``neighbours_file`` is one of its files."""
    neighbours = None
    if neighbours_file is not None and neighbours_file in manifest["files"]:
        neighbours = sp.load_npz(path / neighbours_file).tocsr()
    if graph_file in manifest["files"]:
        def graph() -> np.ndarray:
            return np.frombuffer((path / graph_file).read_bytes(), dtype=np.uint8)

        return ContentIndex(vectors, use_faiss=True, kind="hnsw", graph=graph, neighbours=neighbours)
    return ContentIndex(vectors, use_faiss=use_faiss, kind="exact", neighbours=neighbours)


def _sequential(path: Path, manifest: dict) -> SequentialModel | None:
    if SEQUENTIAL_FILE not in manifest["files"]:
        return None
    with np.load(path / SEQUENTIAL_FILE, allow_pickle=False) as arrays:
        model = SequentialModel.from_arrays({k: arrays[k] for k in arrays.files}, manifest.get("sequential") or {})
    if SEQUENTIAL_HNSW_FILE in manifest["files"]:
        model.use_graph(lambda: np.frombuffer((path / SEQUENTIAL_HNSW_FILE).read_bytes(), dtype=np.uint8))
    return model


def load_bundle(path: Path | str, use_faiss: bool = True, ranker_cache: Path | None = None) -> Recommender:
    """A ready recommender from a verified bundle directory. ``ranker_cache``: rank with the forest
    compiled to machine code, kept in this directory (None: LightGBM's own predict)."""
    path = Path(path)
    manifest = verify_bundle(path)
    with np.load(path / "arrays.npz", allow_pickle=False) as arrays:
        a = {k: arrays[k] for k in arrays.files}
    sparse = {name: sp.load_npz(path / f"{name}.npz").tocsr() for name in SPARSE_FILES}
    components = Components(
        items=a["items"],
        ease=sparse["ease"],
        covisitation=sparse["covisitation"],
        content_index=_content_index(path, manifest, a["embeddings"], use_faiss,
                                     neighbours_file=CONTENT_NEIGHBOURS_FILE),
        categories=sparse["categories"],
        item_mean_value=a["item_mean_value"],
        timeline=ItemTimeline(
            keys=a["timeline_keys"], counts=a["timeline_counts"], bucket_ends=a["timeline_bucket_ends"],
            trending=a["timeline_trending"], trending_seconds=int(a["timeline_trending_seconds"]),
        ),
        histories=Histories(users=a["history_users"], indptr=a["history_indptr"],
                            items=a["history_items"], timestamps=a["history_timestamps"]),
        category_names=a.get("category_names", np.empty(0, dtype=str)),
        image_index=(_content_index(path, manifest, np.load(path / IMAGE_FILE), use_faiss, IMAGE_HNSW_FILE)
                     if IMAGE_FILE in manifest["files"] else None),
        sequential=_sequential(path, manifest),
    )
    components.content_index.neighbours()  # a bundle from before the lists were stored searches them now
    if components.sequential is not None:
        components.sequential.build_index()  # at load, not in the first request
    ranker = serving_ranker(lgb.Booster(model_file=str(path / "ranker.txt")), ranker_cache)
    similar_ranker = (serving_ranker(lgb.Booster(model_file=str(path / SIMILAR_RANKER_FILE)), ranker_cache)
                      if SIMILAR_RANKER_FILE in manifest["files"] else None)
    recommender = Recommender(components=components, ranker=ranker, similar_ranker=similar_ranker,
                              version=str(manifest.get("version", path.name)),
                              per_route=int(manifest.get("per_route", 100)))
    if SIMILAR_FILE in manifest["files"]:
        with np.load(path / SIMILAR_FILE, allow_pickle=False) as table:
            recommender.similar_table = SimilarTable(**{k: table[k] for k in table.files})
    if CATALOG_FILE in manifest["files"]:
        recommender.catalog_path = path / CATALOG_FILE
    return recommender
