"""Training and offline maths: sources, split, route fitting, ranker, evaluation, drift, quality.

Built on ``recsys_runtime``; no Dagster, so every piece is testable on its own.
"""
