"""Dagster definitions of the recsys asset graph."""
