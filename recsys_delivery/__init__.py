"""Model delivery after the gate: the staged rollout of a promoted model through the service's admin
API, judged on the service's own per-arm numbers (plain Python, no Dagster)."""
