"""Names a package exports but imports only when first used (PEP 562).

The Beam transforms of ``transforms`` and its sub-packages import Beam (about
2 s); code that only reads a config, encodes a query or calls Milvus (the
instant search) does without them. A package lists such names with the
module each comes from, and sets its ``__getattr__`` to :func:`lazy_exports`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(namespace: dict[str, Any], exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each name of ``exports`` from its module on first use.

    Args:
      namespace: The package's ``globals()``: a name, once imported, is kept
        there, so that ``__getattr__`` is not asked for it again.
      exports: Each lazily exported name, and the module it is defined in.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value
        return value

    return __getattr__
