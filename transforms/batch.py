"""ChunkBatch: embedded chunks kept together, from the model to the sink.

:class:`EmbedChunks` embeds chunks a batch at a time; with
``output=EmbedOutput.BATCHES`` it emits each batch as one ``ChunkBatch`` (the
chunks as they came, and their vectors as one ``(n, dim)`` float32 array)
instead of one new ``Chunk`` per vector. :class:`WriteToMilvus` takes either.

Use batches when the next step is the sink: a runner then moves one element
per few hundred chunks, nothing is copied per chunk, and the sink checks the
vectors of a batch in one numpy call. Use chunks when the next step works on
single chunks (a filter, a ``Map``); :meth:`ChunkBatch.to_chunks` turns a
batch back into them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

from transforms.types import Chunk

__all__ = ["ChunkBatch"]


@dataclasses.dataclass(frozen=True, eq=False)
class ChunkBatch:
    """Chunks and their embeddings, in the same order.

    Attributes:
      chunks: The chunks, as they were before embedding (their own
        ``embedding`` is not used).
      embeddings: ``float32`` array of shape ``(len(chunks), dim)``; row ``i``
        is the vector of ``chunks[i]``. Read-only.
    """

    chunks: tuple[Chunk, ...]
    embeddings: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.chunks, tuple):
            object.__setattr__(self, "chunks", tuple(self.chunks))
        if self.embeddings.ndim != 2 or len(self.embeddings) != len(self.chunks):
            raise ValueError(
                f"ChunkBatch needs one embedding row per chunk: {len(self.chunks)} chunks, "
                f"embeddings of shape {self.embeddings.shape}"
            )
        self.embeddings.flags.writeable = False

    @classmethod
    def of(cls, chunks: Sequence[Chunk], embeddings: np.ndarray) -> ChunkBatch:
        """A batch of ``chunks`` with their ``embeddings`` (rows in the same order)."""
        return cls(tuple(chunks), np.asarray(embeddings, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def to_chunks(self) -> Iterator[Chunk]:
        """Each chunk with its own embedding, as ``EmbedChunks`` emits by default."""
        for chunk, vector in zip(self.chunks, self.embeddings, strict=True):
            yield dataclasses.replace(chunk, embedding=vector)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChunkBatch):
            return NotImplemented
        return self.chunks == other.chunks and bool(
            np.array_equal(self.embeddings, other.embeddings)
        )

    __hash__ = None  # type: ignore[assignment]
