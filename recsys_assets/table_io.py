"""The IO manager between assets: tables as Parquet, fitted objects pickled.

A DataFrame output, or a dict of them, or a dataclass whose fields are all DataFrames (such as a
``Split``), or a dict of those (``interactions_split``), is written as Parquet files, one per
frame, beside a ``layout.json`` that says how to put them together again. Anything else (fitted
indexes, models, small records) is pickled. An input declared with ``metadata={ONLY_KEYS: [...]}``
loads only those entries of a stored dict of tables.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pickle
import shutil
import time
import uuid
from pathlib import Path

import dagster as dg
import pandas as pd

LAYOUT = "layout.json"
PICKLE = "value.pickle"
WRITING = ".writing-"  # a value being written (incomplete until renamed into place)
PREVIOUS = ".previous-"  # the value being replaced, complete, between the two renames of a write
STEPS = "steps"  # outputs of steps that are not assets, by run
KEPT_STEP_RUNS = 3
ONLY_KEYS = "only_keys"  # an input's metadata: load only these entries of a stored dict of tables


def _frame_layout(value) -> dict | None:
    """How ``value`` is made of DataFrames, or None when it is not only DataFrames."""
    if isinstance(value, pd.DataFrame):
        return {"kind": "frame"}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [f.name for f in dataclasses.fields(value)]
        if fields and all(isinstance(getattr(value, f), pd.DataFrame) for f in fields):
            cls = type(value)
            return {"kind": "dataclass", "class": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
        return None
    if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        parts = {k: _frame_layout(v) for k, v in value.items()}
        if all(p is not None and p["kind"] != "dict" for p in parts.values()):
            return {"kind": "dict", "items": parts}
    return None


def _frames(value, layout: dict, prefix: str) -> dict[str, pd.DataFrame]:
    if layout["kind"] == "frame":
        return {prefix or "frame": value}
    if layout["kind"] == "dataclass":
        return {f"{prefix}{'.' if prefix else ''}{f}": getattr(value, f) for f in layout["fields"]}
    out = {}
    for key, part in layout["items"].items():
        out.update(_frames(value[key], part, key))
    return out


def _assemble(directory: Path, layout: dict, prefix: str = ""):
    def read(name: str) -> pd.DataFrame:
        return pd.read_parquet(directory / f"{name}.parquet")

    if layout["kind"] == "frame":
        return read(prefix or "frame")
    if layout["kind"] == "dataclass":
        module, name = layout["class"].split(":")
        cls = getattr(importlib.import_module(module), name)
        return cls(**{f: read(f"{prefix}{'.' if prefix else ''}{f}") for f in layout["fields"]})
    return {key: _assemble(directory, part, key) for key, part in layout["items"].items()}


class TableIOManager(dg.ConfigurableIOManager):
    """Asset values under ``base_dir/<asset key>/``: Parquet for tables, a pickle otherwise. The
    outputs of steps inside a graph-backed asset (its shards) go under
    ``base_dir/steps/<run id>/<step>/<output>/``; those of the newest ``KEPT_STEP_RUNS`` runs are
    kept, for a re-execution from failure to load its parent run's finished shards."""

    base_dir: str

    def _directory(self, context) -> Path:
        if context.has_asset_key:
            return Path(self.base_dir).joinpath(*context.asset_key.path)
        return Path(self.base_dir, STEPS).joinpath(*context.get_identifier())

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        directory = self._directory(context)
        if not context.has_asset_key:
            _prune_step_runs(Path(self.base_dir, STEPS), keep=context.run_id)
        _recover(directory)
        staging = directory.with_name(f"{directory.name}{WRITING}{uuid.uuid4().hex[:8]}")
        staging.mkdir(parents=True)
        try:
            layout = _frame_layout(obj)
            if layout is None:
                with open(staging / PICKLE, "wb") as handle:
                    pickle.dump(obj, handle, protocol=pickle.HIGHEST_PROTOCOL)
                context.add_output_metadata({"storage": "pickle"})
            else:
                frames = _frames(obj, layout, "")
                for name, frame in frames.items():
                    frame.to_parquet(staging / f"{name}.parquet")
                (staging / LAYOUT).write_text(json.dumps(layout))
                context.add_output_metadata({"storage": "parquet", "parquet_files": len(frames)})
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        # Two renames swap the value; a process killed between them leaves the previous value
        # complete under PREVIOUS, and the next read or write puts it back (``_recover``).
        previous = directory.with_name(f"{directory.name}{PREVIOUS}{uuid.uuid4().hex[:8]}")
        if directory.exists():
            directory.rename(previous)
        staging.rename(directory)
        shutil.rmtree(previous, ignore_errors=True)
        _remove_leftovers(directory)

    def load_input(self, context: dg.InputContext):
        directory = self._directory(context)
        _recover(directory)
        if (directory / LAYOUT).exists():
            layout = json.loads((directory / LAYOUT).read_text())
            wanted = (context.definition_metadata or {}).get(ONLY_KEYS)
            if wanted is not None and layout["kind"] == "dict":
                missing = sorted(set(wanted) - set(layout["items"]))
                if missing:
                    raise KeyError(f"{directory}: asset {context.asset_key.to_user_string()} has no {missing}")
                layout = {**layout, "items": {key: layout["items"][key] for key in wanted}}
            return _assemble(directory, layout)
        if (directory / PICKLE).exists():
            with open(directory / PICKLE, "rb") as handle:
                return pickle.load(handle)
        raise FileNotFoundError(f"{directory}: no stored value of asset {context.asset_key.to_user_string()}; "
                                "materialise it first")


def _recover(directory: Path) -> None:
    """After a write killed between its two renames the value is missing and the previous one is
    complete under a PREVIOUS name: put it back."""
    if directory.exists():
        return
    kept = sorted(directory.parent.glob(f"{directory.name}{PREVIOUS}*"), key=lambda p: p.stat().st_mtime)
    if kept:
        kept[-1].rename(directory)


STALE_WRITE_SECONDS = 3_600


def _prune_step_runs(steps: Path, keep: str) -> None:
    """Step outputs of all but the newest ``KEPT_STEP_RUNS`` runs (the run ``keep`` always stays)."""
    if not steps.exists():
        return
    runs = sorted((d for d in steps.iterdir() if d.is_dir() and d.name != keep), key=lambda d: d.stat().st_mtime)
    for old in runs[: max(0, len(runs) - (KEPT_STEP_RUNS - 1))]:
        shutil.rmtree(old, ignore_errors=True)


def _remove_leftovers(directory: Path) -> None:
    """Previous values of killed writes, and staging directories no write has touched for an hour
    (younger ones may belong to a write still running in another process)."""
    for leftover in directory.parent.glob(f"{directory.name}{PREVIOUS}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for leftover in directory.parent.glob(f"{directory.name}{WRITING}*"):
        if time.time() - leftover.stat().st_mtime > STALE_WRITE_SECONDS:
            shutil.rmtree(leftover, ignore_errors=True)
