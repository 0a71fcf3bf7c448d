"""Runnable pipelines: ``python -m pipelines.ingest`` and ``python -m pipelines.search``."""
