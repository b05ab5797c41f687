"""Jobs over the asset graph."""

import dagster as dg

MONITORING = dg.AssetSelection.groups("monitoring")

train_and_evaluate = dg.define_asset_job(
    "train_and_evaluate",
    selection=dg.AssetSelection.all() - MONITORING,
    description="Raw data to an evaluated, gated model bundle: the whole graph but monitoring.",
)

monitor = dg.define_asset_job(
    "monitor",
    selection=dg.AssetSelection.groups("raw") | dg.AssetSelection.assets("item_embeddings") | MONITORING,
    description="New raw data, drift against the champion (with the vectors of new items), online metrics and "
                "reconciliation.",
)
