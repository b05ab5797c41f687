"""Knobs are resource fields (launchpad, run records); secrets are environment variables by name."""

import dagster as dg

from recsys_assets.defs.resources import resources_from_environment


def test_gate_and_drift_knobs_come_from_the_environment_into_resources(monkeypatch):
    monkeypatch.setenv("RECSYS_MIN_EVAL_USERS", "42")
    monkeypatch.setenv("RECSYS_DRIFT_COOLDOWN_HOURS", "3.5")
    monkeypatch.setenv("RECSYS_OFF_POLICY_CHECK", "block")
    resources = resources_from_environment()
    gate, drift = resources["promotion_gate"], resources["drift_policy"]
    assert gate.min_eval_users == 42 and gate.thresholds().min_eval_users == 42
    assert gate.off_policy_check == "block" and gate.latency_budget_ms == 10.0
    assert drift.cooldown_hours == 3.5 and drift.thresholds().psi == 0.2


def test_secrets_are_environment_variables_never_values(monkeypatch):
    monkeypatch.setenv("RECSYS_WEBHOOK_URL", "https://hooks.example/secret-path")
    monkeypatch.setenv("RECSYS_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("RECSYS_DATABASE_URL", "postgresql://user:pw@db/recsys")
    resources = resources_from_environment()
    for resource, field in ((resources["notifier"], "url"), (resources["service_admin"], "token"),
                            (resources["source"], "database_url")):
        value = getattr(resource, field)
        assert isinstance(value, dg.EnvVar), f"{type(resource).__name__}.{field} holds the secret itself"
    assert "s3cret" not in repr(resources["service_admin"]) and "pw@" not in repr(resources["source"])


def test_unset_secrets_stay_empty(monkeypatch):
    for name in ("RECSYS_WEBHOOK_URL", "RECSYS_ADMIN_TOKEN", "RECSYS_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    resources = resources_from_environment()
    assert resources["notifier"].url == "" and resources["service_admin"].token == ""
