"""Item and user feature views (the tables synced to the online feature store)."""

from __future__ import annotations

import pandas as pd

from recsys_training.schema import canonical_order


def item_feature_view(items: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    stats = train.assign(item_id=train["item_id"].astype(str)).groupby("item_id").agg(
        interactions=("user_id", "size"), users=("user_id", "nunique"), mean_value=("value", "mean"),
        first_seen=("timestamp", "min"), last_seen=("timestamp", "max"))
    view = items.assign(item_id=items["item_id"].astype(str)).set_index("item_id")[["title", "categories"]]
    view = view.join(stats, how="left")
    view["interactions"] = view["interactions"].fillna(0).astype(int)
    view["users"] = view["users"].fillna(0).astype(int)
    return view


def user_feature_view(train: pd.DataFrame, items: pd.DataFrame, recent: int = 10) -> pd.DataFrame:
    ordered = canonical_order(train)
    ordered = ordered.assign(user_id=ordered["user_id"].astype(str), item_id=ordered["item_id"].astype(str))
    grouped = ordered.groupby("user_id")
    view = grouped.agg(interactions=("item_id", "size"), mean_value=("value", "mean"),
                       first_seen=("timestamp", "min"), last_seen=("timestamp", "max"))
    view["recent_items"] = grouped["item_id"].agg(lambda s: "|".join(s.iloc[-recent:][::-1]))
    categories = items.assign(item_id=items["item_id"].astype(str)).set_index("item_id")["categories"]
    exploded = ordered[["user_id", "item_id"]].assign(category=ordered["item_id"].map(categories).fillna("").str.split("|"))
    exploded = exploded.explode("category")
    exploded = exploded[exploded["category"].str.len() > 0]
    top = exploded.groupby(["user_id", "category"]).size().rename("n").reset_index()
    top = top.sort_values(["user_id", "n", "category"], ascending=[True, False, True]).groupby("user_id").head(3)
    view["top_categories"] = top.groupby("user_id")["category"].agg("|".join)
    view["top_categories"] = view["top_categories"].fillna("")
    return view
