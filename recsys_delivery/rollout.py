"""A staged rollout of a candidate model: shadow, canary shares, then primary.

Each tick reads the replicas' per-arm numbers, judges the current stage against the primary and
either holds, advances (through the service's admin API) or rolls back. The state lives in one
JSON file (``models/rollout.json``) so the Dagster sensor that ticks and the ``recsys rollout``
command see and change the same rollout.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from recsys_delivery import arm_numbers
from recsys_delivery.sequential import click_rate_difference
from recsys_delivery.service_client import ServiceClient

RUNNING, PAUSED, COMPLETED, ROLLED_BACK, ABORTED = "running", "paused", "completed", "rolled_back", "aborted"
FINISHED = (COMPLETED, ROLLED_BACK, ABORTED)
HOLD, ADVANCE, ROLLBACK = "hold", "advance", "rollback"
MIN_LATENCY_LISTS = 100  # a p99 of fewer lists is not judged


class RolloutError(RuntimeError):
    """A rollout command cannot be done; the message says why."""


@dataclass(frozen=True)
class RolloutPolicy:
    """Stages as shares of users on the candidate (0: shadow, 1: primary) and what a stage needs.
    ``min_lists``: candidate lists (shadow: shadow-scored requests) before a stage may advance;
    ``min_seconds``: its minimum duration; ``max_error_excess``: roll back when the candidate's
    rate of errors and fallbacks exceeds the primary's by more (and the confidence sequence puts
    the excess above 0); ``latency_p99_ms``: the candidate arm's budget; ``click_tolerance``: the
    largest loss of list click rate a stage may hide when it advances; ``alpha``: of the
    confidence sequences; ``planned_lists``: where they are tightest."""

    stages: tuple[float, ...] = (0.0, 0.05, 0.25, 0.5, 1.0)
    min_lists: int = 1_000
    min_seconds: float = 600.0
    max_error_excess: float = 0.01
    latency_p99_ms: float = 50.0
    click_tolerance: float = 0.02
    alpha: float = 0.05
    planned_lists: int = 10_000

    def __post_init__(self) -> None:
        if not self.stages or self.stages[-1] != 1.0 or any(not 0.0 <= s <= 1.0 for s in self.stages):
            raise ValueError(f"rollout stages must lie in [0, 1] and end with 1 (primary), not {self.stages}")
        if list(self.stages) != sorted(self.stages):
            raise ValueError(f"rollout stages must increase, not {self.stages}")


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str
    numbers: dict = field(default_factory=dict)


def stage_name(share: float) -> str:
    return "shadow" if share == 0.0 else "primary" if share == 1.0 else f"canary {share:.0%}"


def judge(policy: RolloutPolicy, share: float, numbers: dict, elapsed: float) -> Decision:
    """The decision on one stage from its numbers (``arm_numbers.difference`` since it began)."""
    primary, candidate, shadow = numbers["arms"]["primary"], numbers["arms"]["candidate"], numbers["shadow"]
    primary_degraded = primary["error"] + primary["fallback"]
    if share == 0.0:
        tried = shadow["scored"] + shadow["errors"]
        errors = click_rate_difference(int(shadow["errors"]), int(tried), int(primary["error"]), int(primary["lists"]),
                                       policy.alpha, policy.planned_lists)
        p99 = arm_numbers.quantile_ms(shadow["latency"], 0.99) if shadow["scored"] >= MIN_LATENCY_LISTS else None
        seen = {"shadow_scored": int(shadow["scored"]), "shadow_errors": int(shadow["errors"]),
                "error_excess": errors.as_dict(), "latency_p99_ms": p99, "seconds": round(elapsed, 1)}
        if errors.estimate > policy.max_error_excess and errors.low > 0:
            return Decision(ROLLBACK, f"shadow errors {errors.candidate_rate:.2%} against the primary's "
                                      f"{errors.primary_rate:.2%}", seen)
        if p99 is not None and p99 > policy.latency_p99_ms:
            return Decision(ROLLBACK, f"shadow p99 {p99:.1f} ms over the {policy.latency_p99_ms:.0f} ms budget", seen)
        if shadow["scored"] < policy.min_lists or elapsed < policy.min_seconds:
            return Decision(HOLD, f"shadow scored {int(shadow['scored'])} of {policy.min_lists} requests, "
                                  f"{elapsed:.0f} of {policy.min_seconds:.0f} s", seen)
        return Decision(ADVANCE, f"shadow: {int(shadow['scored'])} requests scored, no excess errors, p99 "
                                 f"{p99 if p99 is not None else float('nan'):.1f} ms", seen)
    errors = click_rate_difference(int(candidate["error"] + candidate["fallback"]), int(candidate["lists"]),
                                   int(primary_degraded), int(primary["lists"]), policy.alpha, policy.planned_lists)
    clicks = click_rate_difference(int(candidate["clicked"]), int(candidate["lists"]), int(primary["clicked"]),
                                   int(primary["lists"]), policy.alpha, policy.planned_lists)
    p99 = arm_numbers.quantile_ms(candidate["latency"], 0.99) if candidate["lists"] >= MIN_LATENCY_LISTS else None
    seen = {"candidate_lists": int(candidate["lists"]), "primary_lists": int(primary["lists"]),
            "error_excess": errors.as_dict(), "click_difference": clicks.as_dict(), "latency_p99_ms": p99,
            "seconds": round(elapsed, 1)}
    if errors.estimate > policy.max_error_excess and errors.low > 0:
        return Decision(ROLLBACK, f"errors and fallbacks {errors.candidate_rate:.2%} against the primary's "
                                  f"{errors.primary_rate:.2%}", seen)
    if p99 is not None and p99 > policy.latency_p99_ms:
        return Decision(ROLLBACK, f"candidate p99 {p99:.1f} ms over the {policy.latency_p99_ms:.0f} ms budget", seen)
    if clicks.high < 0:
        return Decision(ROLLBACK, f"list click rate {clicks.candidate_rate:.4f} against {clicks.primary_rate:.4f}: "
                                  f"difference in [{clicks.low:+.4f}, {clicks.high:+.4f}]", seen)
    if candidate["lists"] < policy.min_lists or elapsed < policy.min_seconds:
        return Decision(HOLD, f"{int(candidate['lists'])} of {policy.min_lists} candidate lists, "
                              f"{elapsed:.0f} of {policy.min_seconds:.0f} s", seen)
    if clicks.low <= -policy.click_tolerance:
        return Decision(HOLD, f"click difference in [{clicks.low:+.4f}, {clicks.high:+.4f}] does not yet exclude a "
                              f"loss of {policy.click_tolerance}", seen)
    return Decision(ADVANCE, f"click difference in [{clicks.low:+.4f}, {clicks.high:+.4f}], errors within "
                             f"{policy.max_error_excess:.0%}, p99 {p99 if p99 is not None else float('nan'):.1f} ms",
                    seen)


class Rollout:
    """The rollout in ``path``, driven through ``client``. ``now`` is injectable for tests."""

    def __init__(self, path: Path, client: ServiceClient, policy: RolloutPolicy | None = None, now=time.time) -> None:
        self.path, self.client, self.now = Path(path), client, now
        self.default_policy = policy or RolloutPolicy()

    # --- state ---------------------------------------------------------------------------
    def state(self) -> dict | None:
        return json.loads(self.path.read_text()) if self.path.exists() else None

    def _save(self, state: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self.path)

    def policy(self, state: dict) -> RolloutPolicy:
        values = dict(state["policy"])
        values["stages"] = tuple(values["stages"])
        return RolloutPolicy(**values)

    # --- commands ------------------------------------------------------------------------
    def start(self, version: str) -> dict:
        """Begin rolling ``version`` out against what the service serves now (its first stage is
        applied at once)."""
        current = self.state()
        if current and current["status"] in (RUNNING, PAUSED):
            raise RolloutError(f"a rollout of {current['version']} is {current['status']}: abort it first")
        ready = self.client.ready()
        if ready.get("primary") == version:
            raise RolloutError(f"{version} is already the service's primary")
        state = {"version": version, "baseline": ready.get("primary"), "policy": asdict(self.default_policy),
                 "status": RUNNING, "stage": 0, "started": self.now(), "decisions": []}
        self._enter(state, 0, "rollout started")
        self._save(state)
        return state

    def pause(self) -> dict:
        return self._set_status(PAUSED, (RUNNING,), "paused by request")

    def resume(self) -> dict:
        state = self._set_status(RUNNING, (PAUSED,), "resumed by request")
        self._begin_counting(state)
        self._save(state)
        return state

    def abort(self, reason: str = "aborted by request") -> dict:
        state = self.state()
        if not state or state["status"] in FINISHED:
            raise RolloutError("no rollout is running or paused")
        self._undo(state)
        state["status"] = ABORTED
        self._record(state, ROLLBACK, reason, {})
        self._save(state)
        return state

    def _set_status(self, status: str, allowed: tuple[str, ...], reason: str) -> dict:
        state = self.state()
        if not state or state["status"] not in allowed:
            raise RolloutError(f"no rollout is {' or '.join(allowed)}")
        state["status"] = status
        self._record(state, status, reason, {})
        self._save(state)
        return state

    # --- the tick ------------------------------------------------------------------------
    def tick(self) -> Decision | None:
        """Judge the running stage once; None when no rollout is running."""
        state = self.state()
        if not state or state["status"] != RUNNING:
            return None
        policy = self.policy(state)
        share = policy.stages[state["stage"]]
        latest = arm_numbers.snapshot(self.client.metrics_texts())
        numbers, reset = arm_numbers.difference(latest, state["stage_numbers"])
        if reset:
            state["stage_numbers"], state["stage_started"] = latest, self.now()
            decision = Decision(HOLD, "a replica's counters went down (restart): the stage counts again", {})
            self._record(state, HOLD, decision.reason, {})
            self._save(state)
            return decision
        decision = judge(policy, share, numbers, self.now() - state["stage_started"])
        if decision.action == ROLLBACK:
            self._undo(state)
            state["status"] = ROLLED_BACK
        elif decision.action == ADVANCE:
            self._enter(state, state["stage"] + 1, decision.reason)
        state["last"] = {"action": decision.action, "reason": decision.reason, "numbers": decision.numbers,
                         "time": self.now()}
        if decision.action != ADVANCE:
            self._record(state, decision.action, decision.reason, decision.numbers, keep=decision.action != HOLD)
        self._save(state)
        return decision

    # --- applying stages -----------------------------------------------------------------
    def _enter(self, state: dict, index: int, reason: str) -> None:
        policy = self.policy(state)
        share, version = policy.stages[index], state["version"]
        previous = policy.stages[state["stage"]] if index else None
        if share == 0.0:
            self.client.reload(version, mode="shadow")
        else:
            if previous == 0.0:
                self.client.reload(None, mode="stop_shadow")
            self.client.reload(version, mode="primary", rollout=None if share == 1.0 else share)
        state["stage"] = index
        if share == 1.0:
            state["status"] = COMPLETED
        self._begin_counting(state)
        self._record(state, ADVANCE, f"{stage_name(share)}: {reason}", {})

    def _begin_counting(self, state: dict) -> None:
        state["stage_numbers"] = arm_numbers.snapshot(self.client.metrics_texts())
        state["stage_started"] = self.now()

    def _undo(self, state: dict) -> None:
        """Back to the baseline alone: stop the shadow, drop the canary (or return to the previous
        primary when the candidate had already replaced it)."""
        ready = self.client.ready()
        if ready.get("shadow") == state["version"]:
            self.client.reload(None, mode="stop_shadow")
        if ready.get("candidate") == state["version"] or ready.get("primary") == state["version"]:
            self.client.rollback()

    def _record(self, state: dict, action: str, reason: str, numbers: dict, keep: bool = True) -> None:
        share = self.policy(state).stages[state["stage"]]
        entry = {"time": self.now(), "stage": stage_name(share), "action": action, "reason": reason}
        if numbers:
            entry["numbers"] = numbers
        if keep:
            state["decisions"].append(entry)

