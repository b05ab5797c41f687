"""Offline maths of the recommender: sources, split, recall routes, ranker, metrics.

Nothing in this package imports Dagster, so every piece is testable on its own.
"""
