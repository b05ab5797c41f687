"""Jobs over the asset graph."""

import dagster as dg

train_and_evaluate = dg.define_asset_job(
    "train_and_evaluate",
    selection=dg.AssetSelection.all(),
    description="Raw data to an evaluated model bundle: the whole graph.",
)
