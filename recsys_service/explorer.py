"""The explorer page (``/explore``) and its JSON API: look up an item or a user, see the three lists
with titles, categories, scores, routes and explanations; put two registry versions side by side.

It asks the models directly, never through the serving path: nothing it shows is cached, counted
in the metrics or written to the exposure log.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd
from litestar import MediaType, Request, Response, get
from litestar.exceptions import HTTPException, NotFoundException

from recsys_registry.registry import RegistryFile
from recsys_runtime.recommender import Recommender
from recsys_service.agreement import overlap_at_k, rank_biased_overlap
from recsys_service.models import ReloadRefused

PAGE = Path(__file__).parent / "static" / "explore.html"


@lru_cache(maxsize=8)
def catalog(path: Path | None) -> dict[str, tuple[str, str]]:
    """item id -> (title, categories) from a bundle's catalog file; empty without one."""
    if path is None or not Path(path).exists():
        return {}
    table = pd.read_parquet(path)
    categories = table["categories"] if "categories" in table else pd.Series("", index=table.index)
    return dict(zip(table["item_id"].astype(str), zip(table["title"].astype(str), categories.astype(str),
                                                      strict=True), strict=True))


def _entries(model: Recommender, rec) -> list[dict]:
    names = catalog(model.catalog_path)
    out = []
    for position, (item, score, routes) in enumerate(zip(rec.items, rec.scores, rec.routes, strict=True)):
        title, categories = names.get(str(item), ("", ""))
        entry = {"item_id": str(item), "title": title, "categories": categories, "score": round(float(score), 6),
                 "routes": list(routes)}
        if rec.contributions is not None:
            entry["contributions"] = {k: round(float(v), 6) for k, v in rec.contributions[position].items()}
        out.append(entry)
    return out


def model_lists(model: Recommender, item_id: str | None, user_id: str | None, top_n: int,
                explain: bool) -> dict[str, dict]:
    """The lists the service's endpoints would answer for this item and user, by endpoint."""
    asks = {"similar": (None, item_id) if item_id else None,
            "recommend_detail": (user_id, item_id) if item_id else None,
            "recommend_user": (user_id, None) if user_id else None}
    out = {}
    for endpoint, ask in asks.items():
        if ask is None:
            continue
        rec = model.recommend_many([ask[0]], [ask[1]], top_n, explain=explain)[0]
        out[endpoint] = {"items": _entries(model, rec), "fallback": rec.fallback}
    return out


def _model(request: Request, version: str | None) -> Recommender:
    models = request.app.state.service.models
    deployment = models.deployment
    if not version or version == deployment.primary.version:
        return deployment.primary
    for loaded in (deployment.candidate, deployment.shadow):
        if loaded is not None and loaded.version == version:
            return loaded
    try:
        return models.load_verified(version)
    except ReloadRefused as error:
        raise HTTPException(status_code=409, detail=str(error), extra={"field": "version"}) from error


def _check_item(model: Recommender, item_id: str | None) -> None:
    if item_id and model.components.position(item_id) < 0:
        raise NotFoundException(detail=f"unknown item_id {item_id!r} in model {model.version}",
                                extra={"field": "item_id"})


@get("/explore", media_type=MediaType.HTML, sync_to_thread=False, include_in_schema=False)
def explore_page() -> Response:
    return Response(PAGE.read_bytes(), media_type=MediaType.HTML)


@get("/explore/api/versions", sync_to_thread=True)
def explore_versions(request: Request) -> dict:
    """Registered versions (newest first) with aliases and links, and what the service serves."""
    service = request.app.state.service
    settings = service.settings
    deployment = service.models.deployment
    registry = RegistryFile.load(settings.registry_path)
    aliases: dict[str, list[str]] = {}
    for alias, version in registry.data["aliases"].items():
        aliases.setdefault(version, []).append(alias)
    rows = []
    ordered = sorted(registry.data["versions"].items(), key=lambda kv: kv[1].get("sequence", 0), reverse=True)
    for version, entry in ordered:
        links = {}
        if entry.get("dagster_run_id"):
            links["dagster_run"] = f"{settings.dagster_ui_url}/runs/{entry['dagster_run_id']}"
            links["dagster_asset"] = f"{settings.dagster_ui_url}/assets/model_bundle"
        if entry.get("mlflow_version"):
            links["mlflow_version"] = f"{settings.mlflow_ui_url}/#/models/recsys/versions/{entry['mlflow_version']}"
        if entry.get("run_id"):
            links["mlflow_run_id"] = entry["run_id"]
        rows.append({"version": version, "aliases": sorted(aliases.get(version, [])), "links": links,
                     "ndcg@10": entry.get("metrics", {}).get("ndcg@10"), "registered_at": entry.get("registered_at")})
    roles = deployment.roles()
    if not any(r["version"] == roles["primary"] for r in rows):  # served from RECSYS_BUNDLE, not registered
        rows.insert(0, {"version": roles["primary"], "aliases": [], "links": {}, "ndcg@10": None, "registered_at": None})
    first = registry.champion or roles["primary"]
    second = registry.challenger or roles["candidate"] or roles["shadow"] or registry.previous_champion()
    return {"versions": rows, "serving": roles, "default_a": first,
            "default_b": second if second and second != first else None}


@get("/explore/api/lists", sync_to_thread=True)
def explore_lists(request: Request, item_id: str | None = None, user_id: str | None = None,
                  version: str | None = None, top_n: int = 10, explain: bool = False) -> dict:
    """One version's lists for an item and/or a user (default: the primary)."""
    if not item_id and not user_id:
        raise HTTPException(status_code=422, detail="give item_id, user_id or both", extra={"field": "item_id"})
    model = _model(request, version)
    _check_item(model, item_id)
    return {"version": model.version, "lists": model_lists(model, item_id, user_id, min(top_n, 100), explain)}


@get("/explore/api/compare", sync_to_thread=True)
def explore_compare(request: Request, a: str, b: str, item_id: str | None = None, user_id: str | None = None,
                    top_n: int = 10) -> dict:
    """Two versions' lists side by side, with overlap@10 and rank-biased overlap per endpoint."""
    if not item_id and not user_id:
        raise HTTPException(status_code=422, detail="give item_id, user_id or both", extra={"field": "item_id"})
    first, second = _model(request, a), _model(request, b)
    for model in (first, second):
        _check_item(model, item_id)
    lists_a = model_lists(first, item_id, user_id, min(top_n, 100), False)
    lists_b = model_lists(second, item_id, user_id, min(top_n, 100), False)
    agreement = {}
    for endpoint in lists_a:
        ids_a = [e["item_id"] for e in lists_a[endpoint]["items"]]
        ids_b = [e["item_id"] for e in lists_b[endpoint]["items"]]
        agreement[endpoint] = {"overlap@10": overlap_at_k(ids_a, ids_b), "rbo": rank_biased_overlap(ids_a, ids_b)}
    return {"a": {"version": first.version, "lists": lists_a}, "b": {"version": second.version, "lists": lists_b},
            "agreement": agreement}


HANDLERS = [explore_page, explore_versions, explore_lists, explore_compare]
