"""SearchMilvus: the top hits in a collection for each encoded query.

Queries are batched (one search call carries many vectors) and each worker
keeps one client, made in ``setup``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam

from transforms.config import MilvusTarget
from transforms.milvus.client import connect
from transforms.milvus.rows import FIELD_DOCUMENT_ID, FIELD_TEXT, FIELD_VECTOR
from transforms.types import EncodedQuery, SearchHit, SearchResult

__all__ = ["SearchMilvus"]


class _SearchMilvusFn(beam.DoFn):
    def __init__(
        self,
        target: MilvusTarget,
        top_k: int,
        filter_expression: str,
        output_fields: tuple[str, ...],
        search_params: dict[str, Any] | None,
    ) -> None:
        self._target = target
        self._top_k = top_k
        self._filter = filter_expression
        self._output_fields = list(output_fields)
        self._search_params = search_params
        self._client: Any = None

    def setup(self) -> None:
        self._client = connect(self._target)

    def process(self, queries: Sequence[EncodedQuery]) -> Iterator[SearchResult]:
        answers = self._client.search(
            self._target.collection,
            data=[q.embedding.tolist() for q in queries],
            filter=self._filter,
            limit=self._top_k,
            output_fields=self._output_fields,
            search_params=self._search_params,
            anns_field=FIELD_VECTOR,
            timeout=self._target.timeout_s,
        )
        for query, hits in zip(queries, answers, strict=True):
            yield SearchResult(
                query=query.text,
                hits=tuple(
                    SearchHit(
                        id=str(h["id"]),
                        distance=float(h["distance"]),
                        fields=dict(h.get("entity", {})),
                    )
                    for h in hits
                ),
            )

    def teardown(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class SearchMilvus(beam.PTransform):
    """Finds the ``top_k`` nearest rows for each encoded query.

    Args:
      target: The collection to search.
      top_k: Hits per query.
      filter_expression: Milvus boolean expression the hits must satisfy,
        e.g. ``'document_id like "docs/%"'``; empty for none.
      output_fields: Fields to return with each hit.
      search_params: Index search parameters, passed through.
      max_batch_size: Queries per search call at most.
    """

    def __init__(
        self,
        target: MilvusTarget,
        *,
        top_k: int = 5,
        filter_expression: str = "",
        output_fields: Sequence[str] = (FIELD_TEXT, FIELD_DOCUMENT_ID),
        search_params: dict[str, Any] | None = None,
        max_batch_size: int = 64,
    ) -> None:
        super().__init__()
        if top_k < 1:
            raise ValueError(f"top_k={top_k!r}: must be at least 1.")
        self._target = target
        self._top_k = top_k
        self._filter = filter_expression
        self._output_fields = tuple(output_fields)
        self._search_params = search_params
        self._max_batch_size = max_batch_size

    def expand(self, queries: beam.PCollection[EncodedQuery]) -> beam.PCollection[SearchResult]:
        return (
            queries
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._max_batch_size)
            | "Search"
            >> beam.ParDo(
                _SearchMilvusFn(
                    self._target,
                    self._top_k,
                    self._filter,
                    self._output_fields,
                    self._search_params,
                )
            )
        )

    def display_data(self) -> dict[str, Any]:
        return {"collection": self._target.collection, "top_k": self._top_k, "filter": self._filter}
