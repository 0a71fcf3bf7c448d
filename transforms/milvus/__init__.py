"""Milvus: clients, retries, rows, the collection contract, the sink and search.

Public steps: :func:`prepare_collection` (once, on the launcher, before the
run), :class:`WriteToMilvus` (workers only write), :func:`finish_collection`
(once, after the run), and :class:`SearchMilvus`. Every retried call to
Milvus follows one :class:`RetryPolicy`.

Depends only on the shared modules (``types``, ``config``, ``metrics``,
``batch``): the sink writes vectors and needs their dimension and
fingerprint, never the model that made them.
"""

from __future__ import annotations

from transforms.milvus.client import MilvusAuthError, MilvusConnectionError
from transforms.milvus.collection import (
    CollectionMismatchError,
    RowCountMismatchError,
    count_rows,
    finish_collection,
    prepare_collection,
)
from transforms.milvus.retry import RetryPolicy
from transforms.milvus.search import SearchMilvus
from transforms.milvus.sink import WriteToMilvus

__all__ = [
    "CollectionMismatchError",
    "MilvusAuthError",
    "MilvusConnectionError",
    "RetryPolicy",
    "RowCountMismatchError",
    "SearchMilvus",
    "WriteToMilvus",
    "count_rows",
    "finish_collection",
    "prepare_collection",
]
