"""Request and response bodies of the service's endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

TopN = Annotated[int, Parameter(ge=1, le=100, description="number of items")]


@dataclass
class ReloadRequest:
    mode: str = "primary"
    version: str | None = None
    rollout: float | None = None


@dataclass
class RecommendedItem:
    item_id: str
    score: float
    routes: list[str]
    contributions: dict[str, float] | None = None  # explain=true: the ranker's top feature contributions


@dataclass
class RecommendationList:
    """What the recommendation endpoints answer (documentation: bodies are encoded once and cached)."""

    request_id: str
    cached: bool
    items: list[RecommendedItem]
    model_version: str
    arm: str
    endpoint: str
    fallback: dict[str, str] | None
    failed_routes: list[str]


# Bodies are encoded once (and cached encoded), so the handlers answer with the ASGI response
# itself; the schema is documented through LIST_RESPONSES.
LIST_RESPONSES = {200: ResponseSpec(data_container=RecommendationList, description="A ranked list")}


@dataclass
class Event:
    request_id: str
    item_id: str
    type: str = "click"
    user_id: str | None = None
