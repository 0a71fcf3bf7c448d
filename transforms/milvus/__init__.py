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

from typing import TYPE_CHECKING

from transforms.lazy import lazy_exports
from transforms.milvus.client import MilvusAuthError, MilvusConnectionError
from transforms.milvus.collection import (
    CollectionMismatchError,
    RowCountMismatchError,
    count_rows,
    finish_collection,
    prepare_collection,
)
from transforms.milvus.retry import RetryPolicy

if TYPE_CHECKING:
    from transforms.milvus.search import SearchMilvus
    from transforms.milvus.sink import WriteToMilvus

# Imported on first use, not with the package: the Beam transforms import Beam
# (2 s), which a client that only searches (instant search) does without.
_EXPORTS = {"SearchMilvus": "transforms.milvus.search", "WriteToMilvus": "transforms.milvus.sink"}


__getattr__ = lazy_exports(globals(), _EXPORTS)


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
