"""Runtime side of recsys: the recommender that both the service and the offline evaluation use."""
