"""Reading documents: fsspec files, formats, byte-range splitting → :class:`ReadDocuments`.

Depends only on the shared modules (``transforms.config``, ``types``, ``metrics``).
"""

from transforms.io.sources import ReadDocuments, match_files

__all__ = ["ReadDocuments", "match_files"]
