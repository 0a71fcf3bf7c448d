"""Search a collection that milvus-ingest wrote, from a Beam pipeline (see docs/clients.md).

    pip install -r docs/clients/beam-requirements.txt    # not this project
    python docs/clients/beam_enrichment.py --uri http://localhost:19530 --collection python_docs \
        --query "how do I catch an exception" [Beam flags, e.g. --runner=DataflowRunner ...]

Each query is embedded, then enriched by Beam's MilvusSearchEnrichmentHandler with its
nearest chunks. Prints one JSON line per hit: the chunk id, score (the collection's metric:
a cosine similarity for the default COSINE), document id, chunk index, text and metadata.
The token, if the server wants one, comes from MILVUS_TOKEN; --uri and --collection default
to MILVUS_URI and MILVUS_COLLECTION; --model defaults to MODEL, else to the model the
collection records.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.ml.rag.enrichment.milvus_search import (
    MilvusCollectionLoadParameters,
    MilvusConnectionParameters,
    MilvusSearchEnrichmentHandler,
    MilvusSearchParameters,
    VectorSearchParameters,
)
from apache_beam.ml.rag.types import Chunk, Content, Embedding
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.enrichment import Enrichment
from model2vec import StaticModel
from pymilvus import MilvusClient


class EmbedQueries(beam.DoFn):
    """Each query as a Chunk with its embedding, by the model that filled the collection."""

    def __init__(self, model: str) -> None:
        self.model_source = model

    def setup(self) -> None:
        self.model = StaticModel.from_pretrained(self.model_source)

    def process(self, query: str) -> Iterator[Chunk]:
        vector = self.model.encode([query])[0].tolist()
        yield Chunk(content=Content(text=query), embedding=Embedding(dense_embedding=vector))


class KeepLoadedHandler(MilvusSearchEnrichmentHandler):
    """Beam's handler, except that it leaves the collection loaded when a worker is done.

    The stock handler releases the collection in ``__exit__`` (each worker's teardown):
    every other search of it, by any client or worker, then fails with "collection not
    loaded" until someone loads it again.
    """

    def __exit__(self, *exc_info: Any) -> None:
        self._client.close()
        self._client = None


def search_handler(uri: str, token: str, collection: str, k: int) -> KeepLoadedHandler:
    return KeepLoadedHandler(
        MilvusConnectionParameters(uri=uri, token=token),
        MilvusSearchParameters(
            collection_name=collection,
            search_strategy=VectorSearchParameters(anns_field="vector", limit=k),
            # Without output fields a hit has its id and score only.
            output_fields=["document_id", "chunk_index", "text", "metadata"],
        ),
        collection_load_parameters=MilvusCollectionLoadParameters(),
    )


def hits(chunk: Chunk) -> Iterator[str]:
    """One JSON line per hit of an enriched query."""
    found = chunk.metadata["enrichment_data"]  # {"id": [...], "distance": [...], "fields": [...]}
    for rank, (chunk_id, score, fields) in enumerate(
        zip(found["id"], found["distance"], found["fields"], strict=True), 1
    ):
        hit = {"id": chunk_id, "score": score, **fields}
        yield json.dumps({"query": chunk.content.text, "rank": rank, **hit})


def recorded_model(uri: str, token: str, collection: str) -> str:
    """The model milvus-ingest recorded on the collection (its fingerprint)."""
    client = MilvusClient(uri=uri, token=token)
    try:
        properties = client.describe_collection(collection).get("properties", {})
    finally:
        client.close()
    if "milvus_ingest.model" not in properties:
        raise SystemExit(f"{collection} records no model: pass --model")
    return json.loads(properties["milvus_ingest.model"])["model"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uri", default=os.environ.get("MILVUS_URI"))
    parser.add_argument("--collection", default=os.environ.get("MILVUS_COLLECTION"))
    parser.add_argument("--model", default=os.environ.get("MODEL"))
    parser.add_argument("--query", action="append", required=True, help="repeatable")
    parser.add_argument("--k", type=int, default=3, help="hits per query")
    args, beam_args = parser.parse_known_args()
    if not args.uri or not args.collection:
        parser.error("pass --uri and --collection (or set MILVUS_URI and MILVUS_COLLECTION)")
    token = os.environ.get("MILVUS_TOKEN", "")
    model = args.model or recorded_model(args.uri, token, args.collection)

    handler = search_handler(args.uri, token, args.collection, args.k)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        _ = (
            pipeline
            | "Queries" >> beam.Create(args.query)
            | "Embed" >> beam.ParDo(EmbedQueries(model))
            | "Search" >> Enrichment(handler)
            | "Hits" >> beam.FlatMap(hits)
            | "Print" >> beam.Map(print)  # a real pipeline writes them somewhere
        )


if __name__ == "__main__":
    main()
