"""Team-draft interleaving: the draft itself, the service's interleave mode with click credit
through the exposure log, and on simulated users how many requests it needs against an A/B test."""

import numpy as np
import pytest
from litestar.testing import TestClient

from recsys_runtime.interleave import team_draft
from recsys_service.app import create_app
from recsys_service.service import arm_of
from recsys_training.online_eval import interleaving_preference, read_log
from tests.test_service import _admin, _settings, models  # noqa: F401 - the module's bundles fixture

Z_ALPHA, Z_POWER = 1.959964, 0.841621  # two-sided 5%, 80% power


@pytest.mark.parametrize("seed", range(20))
def test_the_draft_takes_each_teams_best_unpicked_item_in_turn(seed):
    rng = np.random.default_rng(seed)
    first = list(rng.permutation(30)[:12])
    second = list(rng.permutation(30)[:12])
    teams, positions = team_draft(first, second, 10, seed)
    picked = [(first, second)[t][p] for t, p in zip(teams, positions, strict=True)]
    assert len(picked) == 10 == len(set(picked))
    for team, ranking in ((0, first), (1, second)):
        mine = [p for t, p in zip(teams, positions, strict=True) if t == team]
        assert mine == sorted(mine)  # a team's picks follow its own order
        # nothing a team skipped was left unpicked
        for position in mine:
            assert all(item in picked for item in ranking[:position])
    for prefix in range(1, 11):
        assert abs(teams[:prefix].count(0) - teams[:prefix].count(1)) <= 1
    assert team_draft(first, second, 10, seed) == (teams, positions)


def test_a_short_list_leaves_the_rest_to_the_other_team():
    teams, positions = team_draft([1], [2, 3, 4], 4, seed=0)
    assert sorted(teams) == [0, 1, 1, 1] and len(positions) == 4


def test_interleaved_lists_credit_clicks_to_the_model_that_placed_the_item(models, tmp_path):  # noqa: F811
    settings = _settings(models, tmp_path)
    rng = np.random.default_rng(0)
    with TestClient(create_app(settings)) as client:
        state = client.post("/models/reload", json={"mode": "interleave", "version": "v2", "rollout": 1.0},
                            headers=_admin()).json()
        assert state["interleave"] is True and state["candidate"] == "v2"
        for u in range(150):
            body = client.get(f"/recommend/user/u{u}").json()
            assert body["arm"] == "interleave" and arm_of(body["request_id"]) == "interleave"
            teams = [i["team"] for i in body["items"]]
            assert set(teams) <= {"primary", "candidate"} and abs(teams.count("primary") - teams.count("candidate")) <= 1
            # a known better candidate: its items are clicked three times as often
            for item in body["items"][:3]:
                if rng.random() < (0.3 if item["team"] == "candidate" else 0.1):
                    client.post("/events", json={"request_id": body["request_id"], "item_id": item["item_id"],
                                                 "user_id": f"u{u}"})
        assert 'recsys_arm_clicked_lists_total{arm="interleave"}' in client.get("/metrics").text
        client.app.state.service.exposures.flush()
    found = interleaving_preference(read_log(settings.exposure_log).shown)
    assert len(found) == 1 and found[0]["candidate_version"] == "v2" and found[0]["lists"] == 150
    assert found[0]["candidate_wins"] > found[0]["primary_wins"] and found[0]["ci_low"] > 0


def _simulated_users(rng: np.random.Generator, users: int, requests: int, catalog: int = 400, relevant: int = 20,
                     depth: int = 10):
    """Users with known relevant items and their own propensity to click (log-normal: users differ
    far more from each other than two rankers do), each making ``requests`` requests. For each
    request two rankers: the better one puts each relevant item in its top ``depth`` with
    probability 0.06, the worse with 0.04 (about one relevant item a list); clicks follow a
    position-based model."""
    examine = 1.0 / np.arange(1, depth + 1) ** 0.7
    for _ in range(users):
        wanted = set(rng.choice(catalog, relevant, replace=False).tolist())
        propensity = rng.lognormal(0.0, 1.0)
        pages = []
        for _ in range(requests):
            lists = []
            for hit_rate in (0.04, 0.06):  # worse (primary), better (candidate)
                hits = [i for i in wanted if rng.random() < hit_rate]
                rest = [i for i in rng.permutation(catalog).tolist() if i not in wanted][:depth]
                ranking = (hits + rest)[:depth]
                rng.shuffle(ranking)
                lists.append(ranking)
            pages.append(lists)
        yield wanted, pages, examine * propensity


def _clicks(wanted: set, ranking: list, examine: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    relevant = np.array([i in wanted for i in ranking])
    return rng.random(len(ranking)) < np.minimum(1.0, examine[: len(ranking)] * np.where(relevant, 0.3, 0.01))


def test_interleaving_needs_fewer_requests_than_ab_to_find_the_better_model():
    """Both designs randomise as the service does: an A/B test puts each user in one arm (sticky
    buckets), interleaving shows each of the user's requests both rankers. The unit is the user;
    the requests each design needs for 80% power at 5% are computed from the simulated spread."""
    rng = np.random.default_rng(42)
    per_request = 5
    preference, clicks_per_list = [], {0: [], 1: []}
    for user, (wanted, pages, examine) in enumerate(_simulated_users(rng, 8_000, per_request)):
        outcomes, own = [], []
        arm = user % 2
        for k, (worse, better) in enumerate(pages):
            teams, positions = team_draft(worse, better, 10, seed=user * per_request + k)
            shown = [(worse, better)[t][p] for t, p in zip(teams, positions, strict=True)]
            credit = np.array(teams)[_clicks(wanted, shown, examine, rng)]
            outcomes.append(np.sign((credit == 1).sum() - (credit == 0).sum()))
            own.append(_clicks(wanted, (worse, better)[arm], examine, rng).sum())
        preference.append(np.mean(outcomes))
        clicks_per_list[arm].append(np.mean(own))
    preference = np.array(preference)
    interleaving_users = ((Z_ALPHA + Z_POWER) * preference.std(ddof=1) / preference.mean()) ** 2
    worse, better = np.array(clicks_per_list[0]), np.array(clicks_per_list[1])
    ab_users = (2 * (Z_ALPHA + Z_POWER) ** 2 * (worse.var(ddof=1) + better.var(ddof=1))
                / (better.mean() - worse.mean()) ** 2)
    print(f"requests for 80% power at 5%: interleaving {interleaving_users * per_request:.0f}, "
          f"A/B {ab_users * per_request:.0f} (preference {preference.mean():+.3f}; clicks per list "
          f"{worse.mean():.3f} vs {better.mean():.3f})")
    assert preference.mean() > 0 and better.mean() > worse.mean()
    assert interleaving_users < ab_users
