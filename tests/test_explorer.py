"""The explorer page in a real browser (Playwright driving Debian's chromium) against a real
uvicorn service, and its JSON API."""

import os
import shutil
from pathlib import Path

import pytest

from recsys_registry.registry import ModelRegistry
from recsys_service.settings import ServiceSettings
from tests.bundles import build_bundle
from tests.running_service import RunningService

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("RECSYS_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / ".test-artifacts"))


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("explorer")
    registry = ModelRegistry(root / "models" / "model_registry.json")
    for seed, version in ((1, "v1"), (2, "v2")):
        build_bundle(root / "bundles" / version, seed, version, precompute=version == "v1")
        registry.register(version, {"path": str(root / "bundles" / version), "dagster_run_id": f"run-{version}",
                                    "mlflow_version": version[1:], "metrics": {"ndcg@10": 0.1}})
    registry.promote("v1", "test")
    settings = ServiceSettings(models_dir=root / "models", exposure_log=root / "exposures.jsonl",
                               data_dir=root / "data", dagster_ui_url="http://dagster.example:3000",
                               mlflow_ui_url="http://mlflow.example:5000")
    running = RunningService(settings)
    yield running
    running.stop()


def test_the_api_answers_titled_lists_and_compares_versions(service):
    client = service.client
    versions = client.get("/explore/api/versions").json()
    assert (versions["default_a"], versions["default_b"]) == ("v1", "v2")
    v1 = next(v for v in versions["versions"] if v["version"] == "v1")
    assert v1["aliases"] == ["champion"] and v1["links"]["dagster_run"] == "http://dagster.example:3000/runs/run-v1"
    assert v1["links"]["mlflow_version"] == "http://mlflow.example:5000/#/models/recsys/versions/1"
    lists = client.get("/explore/api/lists", params={"item_id": "i5", "user_id": "u3"}).json()["lists"]
    assert set(lists) == {"similar", "recommend_detail", "recommend_user"}
    served = client.get("/similar/i5").json()["items"]
    assert [e["item_id"] for e in lists["similar"]["items"]] == [e["item_id"] for e in served]
    assert all(e["title"] and e["routes"] for e in lists["similar"]["items"])
    explained = client.get("/explore/api/lists", params={"user_id": "u3", "explain": "true"}).json()
    assert explained["lists"]["recommend_user"]["items"][0]["contributions"]
    compared = client.get("/explore/api/compare", params={"a": "v1", "b": "v2", "item_id": "i5"}).json()
    assert compared["a"]["version"] == "v1" and compared["b"]["version"] == "v2"
    agreement = compared["agreement"]["similar"]
    assert 0.0 <= agreement["overlap@10"] <= 1.0 and 0.0 <= agreement["rbo"] <= 1.0
    assert agreement["overlap@10"] < 1.0  # two different models
    assert client.get("/explore/api/lists", params={"item_id": "nope"}).status_code == 404
    assert client.get("/explore/api/lists").status_code == 422
    assert client.get("/explore/api/compare", params={"a": "v1", "b": "v9", "item_id": "i5"}).status_code == 409
    # the explorer is not traffic: nothing counted, nothing logged
    metrics = client.get("/metrics").text
    assert 'recsys_requests_total{endpoint="recommend_user",status="200"}' not in metrics


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium; "
                                             ".ci/run installs it)")
def test_the_page_looks_up_lists_and_shows_two_versions_side_by_side(service):
    from playwright.sync_api import expect, sync_playwright

    expected = [e["item_id"] for e in service.client.get("/similar/i5").json()["items"]]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{service.url}/explore")
            expect(page.locator("body[data-ready='1']")).to_have_count(1)
            assert page.locator("#version-a").input_value() == "v1"
            assert page.locator("#version-b").input_value() == "v2"
            page.fill("#item", "i5")
            page.fill("#user", "u3")
            page.click("#lookup-button")
            similar = page.locator("#single table[data-endpoint='similar'] tbody tr")
            expect(similar).to_have_count(10)
            assert [row.get_attribute("data-item") for row in similar.all()] == expected
            expect(page.locator("#single table.list")).to_have_count(3)
            page.locator("#single button", has_text="explain").first.click()
            expect(page.locator("#single .contrib").first).to_be_visible()
            page.click("#compare-button")
            expect(page.locator("#compared table[data-endpoint='similar']")).to_have_count(2)
            versions = page.locator("#compared table[data-endpoint='similar']").evaluate_all(
                "tables => tables.map(t => t.dataset.version)")
            assert versions == ["v1", "v2"]
            expect(page.locator("#compared .agreement[data-endpoint='similar']")).to_contain_text("overlap@10")
            assert page.locator("#compared a", has_text="Dagster run").count() >= 2
            page.screenshot(path=str(ARTIFACTS / "explore.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "explore.png").stat().st_size > 10_000
