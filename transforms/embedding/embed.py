"""Model2Vec on Beam's RunInference: EmbedChunks for documents, EncodeQueries for queries.

Both go through :class:`Model2VecModelHandler`, so a query is embedded with
exactly the model, tokenizer and normalisation that embedded the documents.
RunInference batches the elements, loads the model in ``setup()`` once per
worker process, and shares it between the process's threads.

What it costs: per batch, one tokenizer call (skipped for the chunks that
carry the token ids chunking counted them with, see
``StaticEmbedder.embed``) and one gather-and-sum per text; per chunk, a few
microseconds of Python to batch it. ``EmbedChunks`` can emit each batch as one
:class:`~transforms.batch.ChunkBatch` (``output=EmbedOutput.BATCHES``), which
is what ``WriteToMilvus`` writes fastest.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from transforms import metrics
from transforms.batch import ChunkBatch
from transforms.embedding.model import StaticEmbedder
from transforms.types import Chunk, EncodedQuery

__all__ = ["EmbedChunks", "EmbedOutput", "EncodeQueries", "Model2VecModelHandler"]


class EmbedOutput(str, enum.Enum):
    """What :class:`EmbedChunks` emits."""

    CHUNKS = "chunks"
    """One ``Chunk`` with its ``embedding`` per chunk (the default)."""
    BATCHES = "batches"
    """One :class:`~transforms.batch.ChunkBatch` per inference batch: for a
    sink that writes batches (``WriteToMilvus``), with nothing made per chunk."""


def count_model_load(model: StaticEmbedder) -> None:
    """Adds the model's load to the ``model_loads`` counter, the first time only.

    Called while a bundle is processed, where Beam counts metrics (not in
    ``setup()``, where the model is loaded).
    """
    loads = model.take_uncounted_load()
    if loads:
        metrics.counter(metrics.MODEL_LOADS).inc(loads)


class Model2VecModelHandler(ModelHandler[str, PredictionResult, StaticEmbedder]):
    """Embeds texts with a Model2Vec static model.

    Static models are small (tens of MB) and fast: one copy per process is
    plenty, so the model is neither shared across processes nor copied.

    Args:
      model: Hugging Face id, local folder or fsspec URL of the model.
      min_batch_size: Smallest batch RunInference forms.
      max_batch_size: Largest batch RunInference forms. Bigger batches cost
        less per text; a few hundred texts is where the gain flattens.
    """

    def __init__(self, model: str, *, min_batch_size: int = 1, max_batch_size: int = 512) -> None:
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size)
        self._model = model

    @property
    def model_source(self) -> str:
        return self._model

    def load_model(self) -> StaticEmbedder:
        """Loads the model; RunInference calls it once per worker process."""
        return StaticEmbedder.load(self._model)

    def run_inference(
        self,
        batch: Sequence[str],
        model: StaticEmbedder,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        count_model_load(model)
        vectors = model.embed(list(batch))
        return [
            PredictionResult(text, vector, self._model)
            for text, vector in zip(batch, vectors, strict=True)
        ]

    def get_num_bytes(self, batch: Sequence[str]) -> int:
        return sum(len(text) for text in batch)

    def get_metrics_namespace(self) -> str:
        return metrics.NAMESPACE


class _ChunkEmbeddingHandler(ModelHandler[Chunk, Any, StaticEmbedder]):
    """Adapts a :class:`Model2VecModelHandler` to chunks: embeds their text and
    returns them with their embedding (or the whole batch as one
    :class:`ChunkBatch`), without pickling them to count bytes."""

    def __init__(self, texts: Model2VecModelHandler, output: EmbedOutput) -> None:
        super().__init__()
        self._texts = texts
        self._output = output

    def load_model(self) -> StaticEmbedder:
        return self._texts.load_model()

    def run_inference(
        self,
        batch: Sequence[Chunk],
        model: StaticEmbedder,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[Chunk | ChunkBatch]:
        count_model_load(model)
        vectors = model.embed([chunk.text for chunk in batch], [c.token_ids for c in batch])
        if self._output is EmbedOutput.BATCHES:
            return [ChunkBatch(tuple(batch), vectors)]
        return [
            dataclasses.replace(chunk, embedding=v, token_ids=None)
            for chunk, v in zip(batch, vectors, strict=True)
        ]

    def get_num_bytes(self, batch: Sequence[Chunk]) -> int:
        return sum(len(chunk.text) for chunk in batch)

    def get_metrics_namespace(self) -> str:
        return self._texts.get_metrics_namespace()

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return dict(self._texts.batch_elements_kwargs())


def _as_handler(model: str | Model2VecModelHandler) -> Model2VecModelHandler:
    return model if isinstance(model, Model2VecModelHandler) else Model2VecModelHandler(model)


class EmbedChunks(beam.PTransform):
    """Adds a Model2Vec embedding to each chunk.

    Args:
      model: Model source, or a :class:`Model2VecModelHandler` to set batching.
      output: ``EmbedOutput.CHUNKS`` (default) emits each chunk with its
        embedding; ``EmbedOutput.BATCHES`` emits each inference batch as one
        :class:`~transforms.batch.ChunkBatch`, for ``WriteToMilvus``.
    """

    def __init__(
        self, model: str | Model2VecModelHandler, *, output: EmbedOutput = EmbedOutput.CHUNKS
    ) -> None:
        super().__init__()
        self._handler = _as_handler(model)
        self._output = EmbedOutput(output)

    def expand(self, chunks: beam.PCollection[Chunk]) -> beam.PCollection[Any]:
        return chunks | "RunInference" >> RunInference(
            _ChunkEmbeddingHandler(self._handler, self._output)
        )

    def display_data(self) -> dict[str, Any]:
        return {"model": self._handler.model_source, "output": self._output.value}


def _to_encoded_query(result: PredictionResult) -> EncodedQuery:
    return EncodedQuery(text=str(result.example), embedding=np.asarray(result.inference))


class EncodeQueries(beam.PTransform):
    """Embeds query texts with the same model and settings as the documents.

    Args:
      model: Model source, or a :class:`Model2VecModelHandler`.
    """

    def __init__(self, model: str | Model2VecModelHandler) -> None:
        super().__init__()
        self._handler = _as_handler(model)

    def expand(self, queries: beam.PCollection[str]) -> beam.PCollection[EncodedQuery]:
        return (
            queries
            | "RunInference" >> RunInference(self._handler)
            | "ToEncodedQuery" >> beam.Map(_to_encoded_query)
        )

    def display_data(self) -> dict[str, Any]:
        return {"model": self._handler.model_source}
