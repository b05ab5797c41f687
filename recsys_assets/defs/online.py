"""The online feature store: the user feature view synced to Redis (FEATURE_REDIS_URL)."""

import dagster as dg
import pandas as pd

from recsys_runtime.online_features import sync_user_features


class FeatureStoreResource(dg.ConfigurableResource):
    """Redis for online features; an empty URL means no online store is configured."""

    redis_url: str = ""
    ttl_days: int = 30

    def client(self):
        import redis

        return redis.Redis.from_url(self.redis_url)


@dg.asset(group_name="features", kinds={"redis"}, automation_condition=dg.AutomationCondition.eager())
def online_user_features(context: dg.AssetExecutionContext, feature_store: FeatureStoreResource,
                         user_features: pd.DataFrame) -> dg.MaterializeResult:
    """Writes ``user_features`` as one Redis hash per user, read by the service at request time."""
    if not feature_store.redis_url:
        return dg.MaterializeResult(metadata={"synced_users": 0, "note": "FEATURE_REDIS_URL not set; nothing synced"})
    written = sync_user_features(feature_store.client(), user_features, feature_store.ttl_days * 86_400)
    context.log.info(f"synced {written} users to {feature_store.redis_url.split('@')[-1]}")
    return dg.MaterializeResult(metadata={"synced_users": written, "dagster/row_count": written})
