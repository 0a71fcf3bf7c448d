"""Searching a collection from a client, with or without Beam.

:func:`open_for_search` is what a search does first, once: it checks that the
collection exists, that the model which encodes the queries is the one that
filled it (the fingerprint ``prepare_collection`` stored), and reads how to
search it (its metric, its vector index and the fields its rows have).
:class:`Searcher` then sends the searches: the same call for a command that
answers one query at once (:mod:`pipelines.instant`) and for each batch of
:class:`~transforms.milvus.search.SearchMilvus`. Nothing here imports Beam.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from transforms.config import ConfigError, MilvusTarget, default_search_params
from transforms.milvus.collection import (
    _COMPARED_FINGERPRINT_KEYS,
    FINGERPRINT_PROPERTY,
    CollectionMismatchError,
)
from transforms.milvus.rows import (
    FIELD_CHUNK_INDEX,
    FIELD_DOCUMENT_ID,
    FIELD_METADATA,
    FIELD_TEXT,
    FIELD_VECTOR,
)
from transforms.types import SearchHit, SearchResult

__all__ = [
    "HIT_FIELDS",
    "CollectionInfo",
    "ModelMismatchError",
    "Searcher",
    "open_for_search",
    "require_exists",
    "score_name",
    "stored_fingerprint",
]

_LOGGER = logging.getLogger(__name__)

HIT_FIELDS = (FIELD_DOCUMENT_ID, FIELD_CHUNK_INDEX, FIELD_TEXT, FIELD_METADATA)
"""The fields every hit carries, where the collection has them."""

# Metrics whose score grows as rows get closer (a similarity); L2's shrinks (a distance).
_SIMILARITY_METRICS = frozenset({"COSINE", "IP"})


class ModelMismatchError(CollectionMismatchError):
    """The queries would be encoded by another model than the one that filled the collection."""


def score_name(metric: str | None) -> str:
    """What Milvus's score is for a metric: ``similarity`` (COSINE, IP: higher
    is closer) or ``distance`` (L2, and any other: lower is closer)."""
    return "similarity" if str(metric or "").upper() in _SIMILARITY_METRICS else "distance"


@dataclasses.dataclass(frozen=True)
class CollectionInfo:
    """What a search needs to know of a collection, read once.

    Attributes:
      metric: The vector index's metric (``COSINE``, ``IP``, ``L2``), or
        ``None`` when the collection has no vector index.
      index_type: The vector index's type (``FLAT``, ``HNSW``...), or ``None``.
      fields: The names of the collection's fields.
      fingerprint: The model fingerprint stored on the collection, or ``None``.
    """

    metric: str | None
    index_type: str | None
    fields: tuple[str, ...]
    fingerprint: Mapping[str, Any] | None

    @property
    def score_name(self) -> str:
        """``similarity`` or ``distance``: see :func:`score_name`."""
        return score_name(self.metric)

    @property
    def hit_fields(self) -> tuple[str, ...]:
        """The fields of :data:`HIT_FIELDS` the collection has."""
        return tuple(f for f in HIT_FIELDS if f in self.fields)


def stored_fingerprint(description: Mapping[str, Any]) -> dict[str, Any] | None:
    """The model fingerprint in a ``describe_collection`` answer, or ``None``.

    Raises:
      CollectionMismatchError: the property is there but is not a JSON object.
    """
    stored = (description.get("properties") or {}).get(FINGERPRINT_PROPERTY)
    if not stored:
        return None
    try:
        fingerprint = json.loads(stored)
    except (TypeError, ValueError) as e:
        raise CollectionMismatchError(
            f"the collection's {FINGERPRINT_PROPERTY} property is not JSON: {stored!r:.80}"
        ) from e
    return fingerprint if isinstance(fingerprint, dict) else None


def _vector_index(client: Any, collection: str) -> Mapping[str, Any]:
    """``describe_index`` of the index on the vector field, or {} (two calls to Milvus)."""
    for name in client.list_indexes(collection) or ():
        description = client.describe_index(collection, index_name=name) or {}
        if description.get("field_name") == FIELD_VECTOR:
            return description
    return {}


def _check_model(
    target: MilvusTarget, stored: Mapping[str, Any] | None, model: Mapping[str, Any]
) -> None:
    if stored is None:
        _LOGGER.warning(
            "%s records no model (no %s property: not made by this framework, or by a version "
            "before it recorded one): searching it with model %r, which must be the one that "
            "made its vectors, or the hits mean nothing",
            target.describe(),
            FINGERPRINT_PROPERTY,
            model.get("model"),
        )
        return
    differs = [k for k in _COMPARED_FINGERPRINT_KEYS if stored.get(k) != model.get(k)]
    if differs:
        raise ModelMismatchError(
            f"{target.describe()} was filled by model {stored.get('model')!r}, and the queries "
            f"would be encoded by model {model.get('model')!r}, which differs in "
            f"{', '.join(differs)}: search with --model {stored.get('model')!r} (the model "
            "that filled it)."
        )


def require_exists(client: Any, target: MilvusTarget) -> None:
    """Raises :class:`CollectionMismatchError` if the collection does not exist (one call)."""
    if not client.has_collection(target.collection):
        raise CollectionMismatchError(
            f"{target.describe()} does not exist: ingest into it first "
            "(python -m pipelines.ingest), or name another one with --collection."
        )


def open_for_search(
    client: Any, target: MilvusTarget, model_fingerprint: Mapping[str, Any] | None
) -> CollectionInfo:
    """Checks that ``target`` can be searched with the model, and reads how.

    Costs four calls to Milvus (``has_collection``, ``describe_collection``,
    and two for the index), and a fifth, ``load_collection``, which a server
    answers at once when the collection is loaded already.

    Args:
      client: A connected ``MilvusClient``.
      target: The collection.
      model_fingerprint: The fingerprint of the model that encodes the
        queries (``StaticEmbedder.fingerprint()``, ``describe_model``);
        ``None`` checks nothing (vectors from elsewhere).

    Raises:
      CollectionMismatchError: the collection does not exist.
      ModelMismatchError: the collection was filled by another model.
    """
    require_exists(client, target)
    description = client.describe_collection(target.collection) or {}
    stored = stored_fingerprint(description)
    if model_fingerprint is not None:
        _check_model(target, stored, model_fingerprint)
    index = _vector_index(client, target.collection)
    client.load_collection(target.collection)
    kind = str(index.get("index_type", "")).upper() or None
    metric = str(index.get("metric_type", "")).upper() or None
    return CollectionInfo(
        metric=metric,
        index_type=kind,
        fields=tuple(str(f.get("name")) for f in description.get("fields", [])),
        fingerprint=stored,
    )


def _is_milvus_error(error: BaseException) -> bool:
    from pymilvus import MilvusException

    return isinstance(error, MilvusException)


def _error_message(error: BaseException) -> str:
    """A pymilvus error's own message on one line, without its ``<MilvusException>`` frame."""
    return " ".join(str(getattr(error, "message", "") or error).split())


@contextlib.contextmanager
def _rpc_errors_unlogged() -> Iterator[None]:
    """pymilvus logs every failed call as an ERROR with a traceback (its logger
    ``pymilvus.decorators``) before raising it; here the caller says what
    failed, in one line, or raises it on. Logged still under DEBUG."""
    logger = logging.getLogger("pymilvus.decorators")
    if _LOGGER.isEnabledFor(logging.DEBUG):
        yield
        return
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


class Searcher:
    """Sends searches of one collection: the same request for every batch of queries.

    Args:
      client: A connected ``MilvusClient``; the caller closes it.
      target: The collection.
      info: What :func:`open_for_search` read of it.
      top_k: Hits per query.
      filter_expression: Milvus boolean expression the hits must match, on
        ``document_id``, ``chunk_index`` or paths of ``metadata``
        (``metadata["lang"] == "en"``); empty for none.
      search_params: The index's search parameters, passed through; ``None``
        for :func:`~transforms.config.default_search_params` of its index.
      output_fields: Fields each hit carries (default: :data:`HIT_FIELDS`
        the collection has).
    """

    def __init__(
        self,
        client: Any,
        target: MilvusTarget,
        info: CollectionInfo,
        *,
        top_k: int,
        filter_expression: str = "",
        search_params: Mapping[str, Any] | None = None,
        output_fields: Sequence[str] | None = None,
    ) -> None:
        self._client = client
        self._target = target
        self._top_k = top_k
        self._filter = filter_expression
        self._fields = list(info.hit_fields if output_fields is None else output_fields)
        self._given_params = None if search_params is None else dict(search_params)
        if search_params is None:
            zilliz = "zilliz" in target.uri.lower()
            self.params = default_search_params(info.index_type or "", top_k, zilliz=zilliz)
        else:
            self.params = _flat(search_params)

    def search(self, texts: Sequence[str], vectors: Sequence[np.ndarray]) -> list[SearchResult]:
        """The top hits of each query, best first, in the order of ``texts``.

        Raises:
          ConfigError: Milvus refused the filter expression (asked again,
            alone, once the search failed: see :meth:`check_filter`), or the
            search parameters given.
        """
        try:
            with _rpc_errors_unlogged():
                answers = self._client.search(
                    self._target.collection,
                    data=[np.asarray(v, dtype=np.float32).tolist() for v in vectors],
                    filter=self._filter,
                    limit=self._top_k,
                    output_fields=self._fields,
                    search_params={"params": self.params},
                    anns_field=FIELD_VECTOR,
                    timeout=self._target.timeout_s,
                )
        except Exception as e:
            self.check_filter()  # the usual mistake; raises ConfigError if it is this one
            if self._given_params is not None and _is_milvus_error(e):
                raise ConfigError(
                    f"--search_params {json.dumps(self._given_params)}: Milvus refused the "
                    f"search ({_error_message(e)})"
                ) from e
            raise
        return [
            SearchResult(
                query=text,
                hits=tuple(
                    SearchHit(
                        id=str(h["id"]),
                        distance=float(h["distance"]),
                        fields=dict(h.get("entity", {})),
                    )
                    for h in hits
                ),
            )
            for text, hits in zip(texts, answers, strict=True)
        ]

    def check_filter(self) -> None:
        """Asks Milvus whether it accepts the filter expression: a query for one
        row, with Bounded consistency (a Strong one waits for a time tick).

        Raises:
          ConfigError: Milvus refused it; the message is Milvus's.
        """
        if not self._filter:
            return
        from pymilvus import MilvusException

        try:
            with _rpc_errors_unlogged():
                self._client.query(
                    self._target.collection,
                    filter=self._filter,
                    limit=1,
                    output_fields=[FIELD_DOCUMENT_ID],
                    consistency_level="Bounded",
                    timeout=self._target.timeout_s,
                )
        except MilvusException as e:
            raise ConfigError(
                f"--filter {self._filter!r}: Milvus cannot use it ({_error_message(e)}); "
                'fields are document_id, chunk_index and metadata paths: metadata["lang"] == "en"'
            ) from e


def _flat(search_params: Mapping[str, Any]) -> dict[str, Any]:
    """Search parameters in one layer: pymilvus's ``{"params": {"ef": 64}}``
    shape is accepted too, as ``{"ef": 64}``."""
    flat = {k: v for k, v in search_params.items() if k != "params"}
    nested = search_params.get("params")
    if isinstance(nested, Mapping):
        flat.update(nested)
    return flat
