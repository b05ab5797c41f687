"""The runtime: bundle, recall routes, candidates, ranker scoring and the ``Recommender``.

The service and the offline evaluation both serve lists through this package, so offline numbers
measure exactly what is served. It imports nothing else of the project and no Dagster.
"""
