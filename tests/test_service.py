"""The Litestar service against real bundles and a real redis-server."""

import json
import re
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from litestar.testing import TestClient

from recsys_registry.registry import ModelRegistry
from recsys_runtime.bundle import load_bundle
from recsys_service.agreement import overlap_at_k, rank_biased_overlap
from recsys_service.app import create_app
from recsys_service.models import user_bucket
from recsys_service.settings import ServiceSettings
from tests.bundles import build_bundle
from tests.redis_server import redis_server

TOKEN = "test-token"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("service-models")
    registry = ModelRegistry(root / "model_registry.json")
    for seed, version in ((1, "v1"), (2, "v2")):  # two different models for reloads and canaries
        build_bundle(root / "bundles" / version, seed, version, precompute=version == "v1")
        registry.register(version, {"path": str(root / "bundles" / version)})
    registry.promote("v1", "test")
    return root


def _settings(models: Path, tmp: Path, **extra) -> ServiceSettings:
    return ServiceSettings(models_dir=models, admin_token=TOKEN, exposure_log=tmp / "exposures.jsonl",
                           state_poll_seconds=0.2, **extra)


def _admin():
    return {"Authorization": f"Bearer {TOKEN}"}


def test_endpoints_answer_with_versions_routes_and_request_ids(models, tmp_path):
    with TestClient(create_app(_settings(models, tmp_path))) as client:
        body = client.get("/recommend/user/u3?top_n=5").json()
        assert body["model_version"] == "v1" and body["arm"] == "primary" and body["fallback"] is None
        assert len(body["items"]) == 5 and all(item["routes"] for item in body["items"])
        assert len(body["request_id"]) == 32
        detail = client.get("/recommend/detail/i5?user_id=u3&top_n=4").json()
        assert "i5" not in [i["item_id"] for i in detail["items"]]
        similar = client.get("/similar/i5").json()
        assert len(similar["items"]) == 10
        cold = client.get("/recommend/user/nobody").json()
        assert cold["fallback"] == {"reason": "unknown user"} and cold["items"][0]["routes"] == ["popular"]
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").json()["primary"] == "v1"


def test_bad_input_is_a_4xx_naming_the_field(models, tmp_path):
    with TestClient(create_app(_settings(models, tmp_path))) as client:
        response = client.get("/recommend/user/u3?top_n=0")
        assert response.status_code == 400 and "top_n" in response.text
        response = client.get("/similar/no-such-item")
        assert response.status_code == 404 and "item_id" in response.text
        response = client.post("/events", content=b"{not json", headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500
        response = client.post("/events", json={"item_id": "i1"})
        assert response.status_code == 400 and "request_id" in response.text


def test_explain_and_category_filter(models, tmp_path):
    with TestClient(create_app(_settings(models, tmp_path))) as client:
        body = client.get("/recommend/user/u3?top_n=5&explain=true").json()
        assert all(len(item["contributions"]) == 5 for item in body["items"])
        topic = client.get("/similar/i5?top_n=8&category=topic3").json()
        items = create_app(_settings(models, tmp_path)).state.service.models.load_verified("v1")
        names = list(items.components.category_names)
        column = names.index("topic3")
        for item in topic["items"]:
            index = items.components.item_index([item["item_id"]])[0]
            assert items.components.categories[index, column] == 1


def test_events_are_excluded_and_linked_to_exposures(models, tmp_path):
    with TestClient(create_app(_settings(models, tmp_path))) as client:
        first = client.get("/recommend/user/u3?top_n=5").json()
        clicked = first["items"][0]["item_id"]
        assert client.post("/events", json={"request_id": first["request_id"], "item_id": clicked, "type": "click",
                                            "user_id": "u3"}).status_code == 202
        again = client.get("/recommend/user/u3?top_n=5").json()
        assert clicked not in [i["item_id"] for i in again["items"]]
        client.app.state.service.exposures.flush()
    lines = [json.loads(x) for x in (tmp_path / "exposures.jsonl").read_text().splitlines()]
    exposures = [x for x in lines if x["type"] == "exposure"]
    events = [x for x in lines if x["type"] == "event"]
    assert events[0]["request_id"] == exposures[0]["request_id"] and events[0]["item_id"] == clicked
    assert exposures[0]["items"][0] == {"item_id": clicked, "position": 1} and exposures[0]["model_version"] == "v1"


def test_admin_needs_the_token_and_bad_bundles_are_refused(models, tmp_path):
    with TestClient(create_app(_settings(models, tmp_path))) as client:
        assert client.post("/models/reload", json={"mode": "primary", "version": "v2"}).status_code == 401
        assert client.post("/models/rollback").status_code == 401
        refused = client.post("/models/reload", json={"version": "nope"}, headers=_admin())
        assert refused.status_code == 409 and "unknown model version" in refused.text
        corrupt = models / "bundles" / "v2-corrupt"

        shutil.copytree(models / "bundles" / "v2", corrupt)
        (corrupt / "ranker.txt").write_text("broken")
        registry = ModelRegistry(models / "model_registry.json")
        registry.file.add_version("v2-corrupt", {"path": str(corrupt)})
        registry.file.save()
        refused = client.post("/models/reload", json={"version": "v2-corrupt"}, headers=_admin())
        assert refused.status_code == 409 and "checksum mismatch" in refused.text
        assert client.get("/recommend/user/u3").json()["model_version"] == "v1"
        assert 'recsys_model_reloads_total{mode="primary",result="refused"} 2.0' in client.get("/metrics").text


def test_reload_under_concurrent_requests_fails_no_request(models, tmp_path):
    with TestClient(create_app(_settings(models, tmp_path))) as client:
        statuses, versions = [], set()
        stop = threading.Event()

        def hammer():
            while not stop.is_set():
                response = client.get(f"/recommend/detail/i{np.random.randint(0, 50)}?user_id=u{np.random.randint(0, 50)}")
                statuses.append(response.status_code)
                versions.add(response.json().get("model_version"))

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(hammer) for _ in range(4)]
            for version in ("v2", "v1", "v2"):
                assert client.post("/models/reload", json={"version": version}, headers=_admin()).status_code == 200
            stop.set()
            for f in futures:
                f.result()
        assert statuses and set(statuses) <= {200, 404}
        assert {"v1", "v2"} <= versions
        rolled = client.post("/models/rollback", headers=_admin()).json()
        assert rolled["primary"] == "v1"


def test_canary_split_is_sticky_and_close_to_the_share(models, tmp_path):
    shares = np.array([user_bucket(f"user-{i}") for i in range(20_000)])
    assert abs((shares < 0.2).mean() - 0.2) < 0.01
    with TestClient(create_app(_settings(models, tmp_path))) as client:
        client.post("/models/reload", json={"version": "v2", "rollout": 0.3}, headers=_admin())
        arms = {}
        for u in range(200):
            body = client.get(f"/recommend/user/u{u}").json()
            arms[u] = (body["arm"], body["model_version"])
            again = client.get(f"/recommend/user/u{u}").json()
            assert (again["arm"], again["model_version"]) == arms[u]
        share = sum(a == "candidate" for a, _ in arms.values()) / len(arms)
        assert 0.2 < share < 0.4
        assert all(v == ("v2" if a == "candidate" else "v1") for a, v in arms.values())


def test_shadow_agreement_is_exported(models, tmp_path):
    with TestClient(create_app(_settings(models, tmp_path))) as client:
        client.post("/models/reload", json={"mode": "shadow", "version": "v2"}, headers=_admin())
        for u in range(20):
            client.get(f"/recommend/user/u{u}")
        service = client.app.state.service
        service.shadow.pool.submit(lambda: None).result()
        text = client.get("/metrics").text
        assert "recsys_shadow_rbo_count 20.0" in text and "recsys_shadow_overlap_at_10_count 20.0" in text
        assert client.get("/ready").json().get("shadow") == "v2"
        stopped = client.post("/models/reload", json={"mode": "stop_shadow"}, headers=_admin())
        assert stopped.status_code == 200 and stopped.json().get("shadow") is None
        for u in range(5):
            client.get(f"/recommend/user/u{u}")
        service.shadow.pool.submit(lambda: None).result()
        assert "recsys_shadow_rbo_count 20.0" in client.get("/metrics").text  # no more shadow scoring


def test_list_agreement_measures():
    assert overlap_at_k(list("abcdefghij"), list("abcdefghij")) == 1.0
    assert rank_biased_overlap(list("abcdefghij"), list("abcdefghij")) == pytest.approx(1.0)
    assert rank_biased_overlap(list("abcdefghij"), list("klmnopqrst")) == 0.0
    swapped_top = rank_biased_overlap(list("bacdefghij"), list("abcdefghij"))
    swapped_tail = rank_biased_overlap(list("abcdefghji"), list("abcdefghij"))
    assert swapped_top < swapped_tail < 1.0


def test_redis_cache_invalidation_shared_rollout_and_outage(models, tmp_path):
    with redis_server() as server:
        settings = _settings(models, tmp_path, redis_url=server.url)
        with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
            first = one.get("/recommend/user/u3").json()
            assert first["cached"] is False
            assert one.get("/recommend/user/u3").json()["cached"] is True
            assert two.get("/recommend/user/u3").json()["cached"] is True  # shared through Redis
            one.post("/models/reload", json={"version": "v2", "rollout": 0.5}, headers=_admin())
            after = one.get("/recommend/user/u3").json()
            assert after["cached"] is False  # a model change invalidates
            service_two = two.app.state.service
            deadline = __import__("time").monotonic() + 10
            while service_two.models.deployment.rollout != 0.5:
                assert __import__("time").monotonic() < deadline, "replica two never followed the rollout"
                threading.Event().wait(0.05)
            users = [f"u{i}" for i in range(40)]
            assert [one.get(f"/recommend/user/{u}").json()["arm"] for u in users] == [
                two.get(f"/recommend/user/{u}").json()["arm"] for u in users]
            server.stop()
            down = [one.get(f"/recommend/user/u{i}") for i in range(5)]
            assert all(r.status_code == 200 for r in down)
            assert "recsys_cache_errors_total" in one.get("/metrics").text


def test_fuzzed_requests_never_get_a_5xx(models, tmp_path):
    """Requests generated from the service's own OpenAPI schema (schemathesis + hypothesis)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    app = create_app(_settings(models, tmp_path))
    app.state.service.start()  # what the lifespan does; the ASGI transport does not run it
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    failures, statuses = [], []

    @given(case=st.one_of([op.as_strategy() for op in operations]))
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case):
        response = case.call()
        statuses.append(response.status_code)
        if response.status_code >= 500:
            failures.append((case.method, case.formatted_path, case.query, response.text[:200]))

    run()
    app.state.service.stop()
    assert failures == []
    assert 200 in statuses and any(400 <= code < 500 for code in statuses)  # both paths were exercised


def test_online_features_personalise_users_the_bundle_does_not_know(models, tmp_path):
    import pandas as pd
    import redis

    from recsys_runtime.online_features import read_recent_items, sync_user_features

    view = pd.DataFrame({"user_id": ["newcomer", "u1"], "interactions": [3, 5], "mean_value": [4.0, 3.0],
                         "first_seen": [1, 2], "last_seen": [3, 4], "recent_items": ["i7|i8|i9", "i1"],
                         "top_categories": ["topic1", ""]}).set_index("user_id")
    with redis_server() as server:
        client = redis.Redis.from_url(server.url)
        assert sync_user_features(client, view) == 2
        assert read_recent_items(client, "newcomer") == ["i9", "i8", "i7"]
        settings = _settings(models, tmp_path, feature_redis_url=server.url)
        with TestClient(create_app(settings)) as api:
            body = api.get("/recommend/user/newcomer?top_n=5").json()
            assert body["fallback"] is None and len(body["items"]) == 5
            assert not {"i7", "i8", "i9"} & {i["item_id"] for i in body["items"]}
            assert api.get("/recommend/user/stranger").json()["fallback"] == {"reason": "unknown user"}


def test_precomputed_similar_lists_equal_the_live_ranking(models):
    """The bundle's "similar to X" table is a cache of the live ranking, not another model."""
    path = models / "bundles" / "v1"
    # ranked by the compiled forest, as the service ranks; LightGBM's own predict adds the trees in
    # another order (lleaves sums them in blocks of 34), so its scores may differ in the last bit
    compiled = ServiceSettings().ranker_cache_dir
    stored = load_bundle(path, ranker_cache=compiled)
    live = load_bundle(path, ranker_cache=compiled)
    live.similar_table = None
    table = stored.similar_table
    assert table is not None and (table.row_of >= 0).sum() == len(stored.components.items) // 2
    names = list(stored.components.category_names)
    looked_up = 0
    for n, item in enumerate(stored.components.items.tolist()):
        categories = [names[n % len(names)]] if n % 3 == 0 and names else None
        for k in (1, 10):
            a, b = stored.similar(item, k, categories=categories), live.similar(item, k, categories=categories)
            assert (a.items, a.scores, a.routes, a.fallback) == (b.items, b.scores, b.routes, b.fallback), item
        looked_up += stored._lookup_similar(item, 10, stored.category_filter(categories)) is not None
    assert looked_up >= len(stored.components.items) // 3


@pytest.mark.parametrize("with_table", [True, False])
def test_a_batch_with_repeated_similar_requests_answers_each_as_a_single_request_would(models, with_table):
    recommender = load_bundle(models / "bundles" / "v1")
    if not with_table:
        recommender.similar_table = None
    items, user = recommender.components.items.tolist(), str(recommender.components.histories.users[0])
    tail = items[-1]  # past the stored half of the catalog: ranked, not looked up
    anchors = [items[0], tail, items[0], items[1], tail, items[0], tail]
    users = [None, None, None, user, None, None, None]
    exclude = [None, None, recommender.recommend_many([None], [items[0]], k=1)[0].items, None, None, None, None]
    batch = recommender.recommend_many(users, anchors, k=10, exclude=exclude)
    for got, one in zip(batch, (recommender.recommend_many([u], [a], k=10, exclude=[e])[0]
                                for u, a, e in zip(users, anchors, exclude, strict=True)), strict=True):
        assert (got.items, got.scores, got.routes, got.fallback) == (one.items, one.scores, one.routes, one.fallback)
    assert batch[0] is not batch[5] and batch[0].items == batch[5].items and batch[2].items != batch[0].items


DEPLOYMENT = Path(__file__).resolve().parent.parent / "deployment"
PROMQL_WORDS = {"sum", "rate", "increase", "histogram_quantile", "max", "min", "avg", "count", "max_over_time",
                "clamp_min", "scalar", "and", "or", "unless", "bool", "offset"}
PROMETHEUS_OWN = {"up"}


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"(?<![\w.])\d+(\.\d+)?(e-?\d+)?", "", expr)
    return set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)) - PROMQL_WORDS


def test_alert_rules_and_dashboard_use_only_metrics_the_service_exports(models, tmp_path):

    import yaml
    from prometheus_client.parser import text_string_to_metric_families

    rules = yaml.safe_load((DEPLOYMENT / "prometheus" / "alerts.yml").read_text())
    alert_exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {"RecsysLatencyP99OverBudget", "RecsysFallbackRateHigh", "RecsysNdcgDrop", "RecsysDataQualityScoreDrop",
            "RecsysChallengerStale", "RecsysDriftConfirmed"} <= alerts
    dashboard = json.loads((DEPLOYMENT / "grafana" / "dashboards" / "recsys.json").read_text())
    panel_exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set().union(*(_metric_names(e) for e in alert_exprs + panel_exprs))
    assert "recsys_request_latency_seconds_bucket" in used and "recsys_drift_confirmed" in used

    # a registry with a waiting challenger and a drift report, as the pipeline leaves them
    registry = json.loads((models / "model_registry.json").read_text())
    for version, score in (("v1", 0.31), ("v2", 0.33)):
        registry["versions"][version]["metrics"] = {"ndcg@10": score, "data_quality_score": 95.0}
    registry["aliases"]["challenger"] = "v2"
    registry["history"].append({"time": "2026-01-01T00:00:00Z", "alias": "challenger", "action": "register",
                                "version": "v2", "previous": None, "reason": "test"})
    registry["history"].append({"time": "2026-01-01T00:00:00Z", "alias": None, "action": "retraining",
                                "version": None, "run_id": "r1", "trigger": "drift", "outcome": "rejected"})
    own_models = tmp_path / "models"
    own_models.mkdir()
    (own_models / "model_registry.json").write_text(json.dumps(registry))
    (tmp_path / "data" / "drift_reports").mkdir(parents=True)
    (tmp_path / "data" / "drift_reports" / "latest-interactions.json").write_text(json.dumps(
        {"confirmed": True, "findings": [{"drifted": True}, {"drifted": False}]}))
    settings = _settings(own_models, tmp_path, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        client.get("/similar/i5")
        client.get("/recommend/user/nobody")  # a fallback
        client.post("/models/reload", json={"mode": "shadow", "version": "v2"}, headers=_admin())
        client.get("/recommend/detail/i5?user_id=u3")
        client.app.state.service.shadow.pool.submit(lambda: None).result()
        text = client.get("/metrics").text
    exported = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    assert used - PROMETHEUS_OWN <= exported, sorted(used - PROMETHEUS_OWN - exported)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("recsys_drift_confirmed", (("source", "interactions"),))] == 1.0
    assert samples[("recsys_registry_ndcg_at_10", (("role", "challenger"), ("version", "v2")))] == 0.33
    assert samples[("recsys_challenger_waiting_seconds", ())] > 86_400
    assert samples[("recsys_retraining_runs_total", (("outcome", "rejected"), ("trigger", "drift")))] == 1.0
    assert samples[("recsys_champion_changes_total", (("action", "promote"),))] == 1.0


def test_alert_rules_pass_promtool():
    if not shutil.which("promtool"):
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus; .ci/run installs it)")
    checked = subprocess.run(["promtool", "check", "rules", str(DEPLOYMENT / "prometheus" / "alerts.yml")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_cached_lists_are_not_tracked_by_the_garbage_collector(models, tmp_path):
    """A cache of containers made every full collection walk it (the service's long tail)."""
    import gc

    with TestClient(create_app(_settings(models, tmp_path))) as client:
        for path in ("/similar/i5?top_n=3", "/recommend/detail/i5?user_id=u3", "/recommend/user/u4"):
            first, again = client.get(path).json(), client.get(path).json()
            assert again["cached"] and again["items"] == first["items"] and again["request_id"] != first["request_id"]
        entries = list(client.app.state.service.local_cache._data.values())
        assert len(entries) == 3
        for _ in range(3):  # a tuple is untracked in a pass that finds its contents untracked
            gc.collect()
        assert not any(gc.is_tracked(entry) or gc.is_tracked(entry[1]) for entry in entries)


def test_a_failing_model_falls_back_to_the_recommenders_popular_list(models, tmp_path):
    with TestClient(create_app(_settings(models, tmp_path))) as client:
        service = client.app.state.service
        model = service.models.deployment.primary
        cold = client.get("/recommend/user/nobody?top_n=5").json()

        def broken(*args, **kwargs):
            raise RuntimeError("broken ranker")

        model.recommend_many = broken
        try:
            body = client.get("/recommend/user/u3?top_n=5").json()
        finally:
            del model.recommend_many
        assert body["fallback"] == {"reason": "model error: RuntimeError"}
        # the same list and scores as any popular fallback, not zeros
        assert [i["item_id"] for i in body["items"]] == [i["item_id"] for i in cold["items"]]
        assert [i["score"] for i in body["items"]] == [i["score"] for i in cold["items"]]
        assert all(i["score"] > 0 for i in body["items"])


def test_local_activity_is_bounded_to_the_most_recent_users():
    from recsys_service.activity import RECENT_EVENTS, ActivityStore

    store = ActivityStore(max_local_users=100)
    for user in range(250):
        store.remember(f"u{user}", "i1")
    for _ in range(RECENT_EVENTS + 5):
        store.remember("u249", "i2")
    assert len(store) == 100
    assert store.recent_items("u0") == [] and store.recent_items("u200") == ["i1"]
    assert store.recent_items("u249") == ["i2"]  # the last 50 events only, without repeats
    store.remember("u150", "i3")  # touching a user keeps it; the least recent goes
    store.remember("new", "i4")
    assert store.recent_items("u150") == ["i1", "i3"] and store.recent_items("u151") == []


def test_oversized_input_is_refused_with_a_4xx_and_never_logged(models, tmp_path):
    settings = _settings(models, tmp_path, admin_rate_limit=3)
    with TestClient(create_app(settings)) as client:
        long_id = "r" * 100_000
        response = client.post("/events", json={"request_id": long_id, "item_id": "i1"})
        assert response.status_code == 413  # the body is over RECSYS_MAX_EVENT_BYTES before any parsing
        response = client.post("/events", json={"request_id": "r" * 257, "item_id": "i1"})
        assert response.status_code == 422 and "request_id" in response.text
        assert client.post("/events", json={"request_id": "r" * 256, "item_id": "i1"}).status_code == 202
        response = client.get(f"/recommend/detail/i5?user_id={'u' * 300}")
        assert response.status_code == 422 and "user_id" in response.text
        response = client.get(f"/recommend/user/{'u' * 300}")
        assert response.status_code == 422 and "user_id" in response.text
        response = client.get(f"/similar/{'i' * 300}")
        assert response.status_code == 422 and "item_id" in response.text
        many = "&".join(f"category=c{i}" for i in range(settings.max_categories + 1))
        response = client.get(f"/recommend/user/u3?{many}")
        assert response.status_code == 422 and "category" in response.text
        statuses = [client.post("/models/rollback").status_code for _ in range(5)]
        assert statuses[:3] == [401, 401, 401] and statuses[3:] == [429, 429]
        assert client.get("/recommend/user/u3").status_code == 200  # the limit is on admin endpoints only
    logged = (tmp_path / "exposures.jsonl").read_text()
    assert "r" * 257 not in logged and "u" * 300 not in logged and '"request_id": "' + "r" * 256 in logged.replace('":"', '": "')
