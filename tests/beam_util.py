"""Collecting a PCollection's elements in the test process.

``assert_that`` is the tool for checking a PCollection; this is for the few
tests that compare two runs. It works on the in-process DirectRunner only,
which is what the tests use.
"""

from __future__ import annotations

import uuid
from typing import Any

import apache_beam as beam

_COLLECTED: dict[str, list[Any]] = {}


def _append(element: Any, key: str) -> None:
    _COLLECTED[key].append(element)


def collect(pcoll: beam.PCollection, label: str = "Collect") -> list[Any]:
    """Returns a list that holds the elements of ``pcoll`` once the pipeline ran."""
    key = uuid.uuid4().hex
    _COLLECTED[key] = []
    _ = pcoll | label >> beam.Map(_append, key)
    return _COLLECTED[key]
