"""Search a collection that milvus-ingest wrote, from LangChain (see docs/clients.md).

    pip install -r docs/clients/langchain-requirements.txt    # not this project
    python docs/clients/langchain_read.py --uri http://localhost:19530 --collection python_docs \
        --query "how do I catch an exception"

Prints one JSON line per hit: the LangChain Document's id, page_content and metadata, and its
score (the collection's metric: a cosine similarity for the default COSINE). The token, if the
server wants one, comes from MILVUS_TOKEN; --uri and --collection default to MILVUS_URI and
MILVUS_COLLECTION; --model defaults to MODEL, else to the model the collection records.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_milvus import Milvus
from model2vec import StaticModel
from pymilvus import MilvusClient


class Model2VecEmbeddings(Embeddings):
    """A Model2Vec model as LangChain embeddings: the model that filled the collection."""

    def __init__(self, model: str) -> None:
        self.model = StaticModel.from_pretrained(model)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class IngestedMilvus(Milvus):
    """langchain_milvus.Milvus over a collection that milvus-ingest wrote.

    Each Document's id is the chunk id, and its metadata is the source document's
    metadata with ``document_id`` and ``chunk_index`` beside it, flat. (Milvus alone
    leaves Document.id None and nests the metadata under metadata["metadata"].)
    """

    def __init__(self, embedding: Embeddings, collection_name: str, **kwargs: Any) -> None:
        super().__init__(
            embedding,
            collection_name=collection_name,
            primary_field="id",
            text_field="text",
            vector_field="vector",
            **kwargs,
        )
        # Relevance scores (similarity_search_with_relevance_scores, the retriever's
        # score_threshold) follow index_params' metric: the collection's, not L2.
        index = self.client.describe_index(collection_name, "vector")
        self.index_params = {"metric_type": index["metric_type"]}

    def _parse_document(self, data: dict) -> Document:
        # The one place langchain-milvus turns a row into a Document (0.4).
        doc = super()._parse_document(data)
        fields = dict(doc.metadata)  # id, document_id, chunk_index, metadata
        chunk_id, metadata = fields.pop("id"), fields.pop("metadata") or {}
        return Document(id=chunk_id, page_content=doc.page_content, metadata={**metadata, **fields})


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
    args = parser.parse_args()
    if not args.uri or not args.collection:
        parser.error("pass --uri and --collection (or set MILVUS_URI and MILVUS_COLLECTION)")
    token = os.environ.get("MILVUS_TOKEN", "")
    model = args.model or recorded_model(args.uri, token, args.collection)

    store = IngestedMilvus(
        Model2VecEmbeddings(model),
        args.collection,
        connection_args={"uri": args.uri, "token": token},
    )
    for query in args.query:
        hits = store.similarity_search_with_score(query, k=args.k)
        for rank, (doc, score) in enumerate(hits, 1):
            hit = {"id": doc.id, "score": score, "text": doc.page_content, "metadata": doc.metadata}
            print(json.dumps({"query": query, "rank": rank, **hit}))


if __name__ == "__main__":
    main()
