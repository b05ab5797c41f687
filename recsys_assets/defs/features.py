"""The evaluation split and the item and user feature views."""


import dagster as dg
import pandas as pd

from recsys_training.feature_views import item_feature_view, user_feature_view
from recsys_training.split import SERVING, VALIDATION, Split, protocol_folds


@dg.asset(group_name="features", kinds={"pandas"}, automation_condition=dg.AutomationCondition.eager())
def interactions_split(context: dg.AssetExecutionContext, raw_interactions: pd.DataFrame,
                       raw_items: pd.DataFrame) -> dict[str, Split]:
    """``serving``: the protocol's per-user temporal holdout (shared/EVALUATION.md).
    ``validation``: the same cut inside the serving train part, for ranker labels.
    Interactions with items missing from the catalog cannot be served and are left out."""
    known = raw_interactions["item_id"].isin(raw_items["item_id"])
    folds = protocol_folds(raw_interactions[known])
    rows = [{"fold": name, "train": len(s.train), "held_out": len(s.test),
             "users": s.train["user_id"].nunique(), "items": s.train["item_id"].nunique()} for name, s in folds.items()]
    context.add_output_metadata({
        "dagster/row_count": len(folds[SERVING].train) + len(folds[SERVING].test),
        "unknown_item_rows_left_out": int((~known).sum()),
        "test_users": int(folds[SERVING].test["user_id"].nunique()),
        "validation_users": int(folds[VALIDATION].test["user_id"].nunique()),
        "folds": dg.MetadataValue.md(pd.DataFrame(rows).to_markdown(index=False)),
    })
    return folds


@dg.asset(group_name="features", kinds={"pandas"}, automation_condition=dg.AutomationCondition.eager())
def item_features(context: dg.AssetExecutionContext, raw_items: pd.DataFrame,
                  interactions_split: dict[str, Split]) -> pd.DataFrame:
    """Per item, from the serving train part: counts, mean value, first/last seen, categories."""
    view = item_feature_view(raw_items, interactions_split[SERVING].train)
    context.add_output_metadata({"dagster/row_count": len(view),
                                 "items_with_interactions": int((view["interactions"] > 0).sum()),
                                 "preview": dg.MetadataValue.md(view.head(5).to_markdown())})
    return view


@dg.asset(group_name="features", kinds={"pandas"}, automation_condition=dg.AutomationCondition.eager())
def user_features(context: dg.AssetExecutionContext, raw_items: pd.DataFrame,
                  interactions_split: dict[str, Split]) -> pd.DataFrame:
    """Per user, from the serving train part: activity, recency, last items, top categories."""
    view = user_feature_view(interactions_split[SERVING].train, raw_items)
    context.add_output_metadata({"dagster/row_count": len(view),
                                 "median_interactions": float(view["interactions"].median()),
                                 "preview": dg.MetadataValue.md(view.head(5).to_markdown())})
    return view
