"""Beam's own RAG path with a Model2Vec step, as a Beam user would write it.

``apache_beam.ml.rag`` ships embeddings managers for Hugging Face and Vertex
AI; a Model2Vec one is the same ~20 lines as ``HuggingfaceTextEmbeddings``:
a ``ModelHandler`` whose ``run_inference`` is ``StaticModel.encode``, wrapped
by Beam's text adapter. The writer is ``MilvusVectorWriterConfig`` with Beam's
default column mapping, minus the sparse vector (Milvus 2.3 has none) and
with our field names, plus the two scalar fields of our schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.ml.rag.embeddings.base import create_text_adapter
from apache_beam.ml.rag.ingestion.milvus_search import MilvusVectorWriterConfig
from apache_beam.ml.rag.ingestion.postgres_common import ColumnSpec, ColumnSpecsBuilder
from apache_beam.ml.rag.types import EmbeddableItem
from apache_beam.ml.transforms.base import EmbeddingsManager, _TextEmbeddingHandler

from bench.chunking import chunker, document

__all__ = ["ChunkToItems", "Model2VecTextEmbeddings", "column_specs"]


class _Model2VecHandler(ModelHandler[str, Any, Any]):
    def __init__(self, model: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._model = model

    def load_model(self) -> Any:
        from model2vec import StaticModel

        return StaticModel.from_pretrained(self._model, force_download=False)

    def run_inference(
        self, batch: Sequence[str], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Any:
        return model.encode(list(batch), **(inference_args or {}))


class Model2VecTextEmbeddings(EmbeddingsManager):
    """Model2Vec text embeddings for ``MLTransform`` on ``EmbeddableItem`` s."""

    def __init__(self, model: str, **kwargs: Any) -> None:
        super().__init__(type_adapter=create_text_adapter(), **kwargs)
        self.model = model

    def get_model_handler(self) -> ModelHandler:
        sizes = {"min_batch_size": self.min_batch_size, "max_batch_size": self.max_batch_size}
        kwargs = {k: v for k, v in sizes.items() if v is not None}
        return _Model2VecHandler(self.model, **kwargs)

    def get_ptransform_for_processing(self, **kwargs: Any) -> beam.PTransform:
        return RunInference(
            model_handler=_TextEmbeddingHandler(self), inference_args=self.inference_args
        ).with_output_types(EmbeddableItem)


def column_specs() -> list[ColumnSpec]:
    """Beam's default Milvus columns, named as our collection's fields."""
    return (
        ColumnSpecsBuilder()
        .with_id_spec(column_name="id")
        .with_embedding_spec(column_name="vector", convert_fn=lambda values: list(values))
        .with_content_spec(column_name="text")
        .with_metadata_spec(
            column_name="metadata",
            convert_fn=lambda values: {k: v for k, v in values.items() if k != "document_id"},
        )
        .add_metadata_field("document_id", str)
        .add_custom_column_spec(
            ColumnSpec(column_name="chunk_index", python_type=int, value_fn=lambda item: item.index)
        )
        .build()
    )


class ChunkToItems(beam.DoFn):
    """JSONL lines to the chunks our pipeline cuts, as ``EmbeddableItem`` s."""

    def __init__(self, model: str, max_tokens: int, overlap_tokens: int) -> None:
        self._settings = (model, max_tokens, overlap_tokens)
        self._cut: Any = None

    def setup(self) -> None:
        self._cut = chunker(*self._settings)

    def process(self, line: str) -> Iterator[EmbeddableItem]:
        for chunk in self._cut(document(json.loads(line))):
            yield EmbeddableItem.from_text(
                chunk.text,
                id=chunk.id,
                index=chunk.index,
                metadata={**chunk.metadata, "document_id": chunk.document_id},
            )


_ = MilvusVectorWriterConfig  # the writer config the peer builds (bench.peers)
