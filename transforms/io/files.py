"""Opening input files: fsspec, with decompression chosen by the extension.

``.gz``, ``.bz2``, ``.xz``/``.lzma`` and ``.zip`` need nothing more; ``.zst``
needs ``backports.zstd`` (Python < 3.14) or ``zstandard`` on the workers, and
``.lz4`` needs ``lz4``. A compressed file is a stream: it cannot be split, and
a truncated one raises ``EOFError`` where it breaks.

zstandard's stream reader ends quietly at a truncated frame; when fsspec falls
back to it, :func:`open_binary` checks the decompressed size against the one
the frame header announces (which ``zstd`` writes for files), so that a
truncated ``.zst`` is an error like a truncated ``.gz``.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator, Mapping
from typing import IO, Any

import fsspec
import fsspec.utils

__all__ = ["COMPRESSION_SUFFIXES", "open_binary", "strip_compression"]

COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".lzma", ".zst", ".zip", ".lz4")
# Suffixes fsspec knows only when their library is installed.
_LIBRARIES = {".zst": "backports.zstd (or zstandard)", ".lz4": "lz4"}
_ZSTD_FRAME_HEADER_MAX = 18


def strip_compression(name: str) -> str:
    """The name without its compression suffix, if it has one."""
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _has_zstd_file() -> bool:
    """Whether fsspec decompresses .zst with a ZstdFile (it checks truncation)."""
    for name in ("compression.zstd", "backports.zstd"):
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except ImportError:  # the parent package is missing
            continue
    return False


class _CheckedZstdReader:
    """zstandard's stream reader, with an error for a truncated frame."""

    def __init__(self, raw: IO[bytes]) -> None:
        import zstandard

        header = raw.read(_ZSTD_FRAME_HEADER_MAX)
        raw.seek(0)
        self._expected: int | None = None
        if header:
            size = zstandard.get_frame_parameters(header).content_size
            if size not in (0, zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR):
                self._expected = size
        self._reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._reader.read(size)
        self._read += len(data)
        if not data and self._expected is not None and self._read < self._expected:
            raise EOFError(
                f"zstd stream ends after {self._read} of the {self._expected} bytes its frame "
                "header announces: a truncated file"
            )
        return data


@contextlib.contextmanager
def open_binary(
    path: str, storage_options: Mapping[str, Any], *, decompress: bool = True
) -> Iterator[Any]:
    """Opens a file for binary reading, decompressed by its extension.

    Args:
      path: Local path or fsspec URL.
      storage_options: fsspec options for the filesystem.
      decompress: Whether to decompress by the extension; off for formats
        that need to seek (Parquet) and for byte ranges.

    Raises:
      ValueError: the extension needs a library that is not installed.
    """
    compression = fsspec.utils.infer_compression(path) if decompress else None
    lower = path.lower()
    if decompress and compression is None:
        for suffix, library in _LIBRARIES.items():
            if lower.endswith(suffix):
                raise ValueError(f"{suffix} files need the Python package {library} on the workers")
    if compression == "zstd" and not _has_zstd_file():
        with fsspec.open(path, "rb", **storage_options) as raw:
            yield _CheckedZstdReader(raw)
        return
    with fsspec.open(path, "rb", compression=compression, **storage_options) as f:
        yield f
