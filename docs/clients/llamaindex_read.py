"""Search a collection that milvus-ingest wrote, from LlamaIndex (see docs/clients.md).

    pip install -r docs/clients/llamaindex-requirements.txt    # not this project
    python docs/clients/llamaindex_read.py --uri http://localhost:19530 --collection python_docs \
        --query "how do I catch an exception"

Prints one JSON line per hit: the retrieved node's id, ref_doc_id, text and metadata, and its
score (the collection's metric: a cosine similarity for the default COSINE). The token, if the
server wants one, comes from MILVUS_TOKEN; --uri and --collection default to MILVUS_URI and
MILVUS_COLLECTION; --model defaults to MODEL, else to the model the collection records.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores import VectorStoreQueryResult
from llama_index.vector_stores.milvus import IndexManagement, MilvusVectorStore
from model2vec import StaticModel
from pydantic import PrivateAttr
from pymilvus import MilvusClient


class Model2VecEmbedding(BaseEmbedding):
    """A Model2Vec model as a LlamaIndex embedding: the model that filled the collection."""

    _model: StaticModel = PrivateAttr()

    def __init__(self, model: str, **kwargs: Any) -> None:
        super().__init__(model_name=model, **kwargs)
        self._model = StaticModel.from_pretrained(model)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._model.encode(texts).tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embedding(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


FIELDS = ["id", "document_id", "chunk_index", "metadata"]  # and text, which the store adds


class IngestedMilvusVectorStore(MilvusVectorStore):
    """MilvusVectorStore over a collection that milvus-ingest wrote.

    Nodes come back as LlamaIndex's own: node_id is the chunk id, ref_doc_id the
    document id, metadata the document's metadata with ``document_id`` and
    ``chunk_index`` beside it. (The store alone gives each node a random id, no
    ref_doc_id, and the row's fields as metadata.) ``delete(ref_doc_id)`` and
    ``VectorStoreQuery(doc_ids=...)`` work on document ids.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs = {
            "text_key": "text",
            "embedding_field": "vector",
            "doc_id_field": "document_id",
            "output_fields": FIELDS,
            "index_management": IndexManagement.NO_VALIDATION,  # never builds an index
            **kwargs,
        }
        super().__init__(**kwargs)

    def query(self, query: Any, **kwargs: Any) -> VectorStoreQueryResult:
        return as_chunk_nodes(super().query(query, **kwargs))

    async def aquery(self, query: Any, **kwargs: Any) -> VectorStoreQueryResult:
        return as_chunk_nodes(await super().aquery(query, **kwargs))


def as_chunk_nodes(result: VectorStoreQueryResult) -> VectorStoreQueryResult:
    """The result with each node rebuilt from the row's fields."""
    nodes = []
    for node in result.nodes or []:
        fields = dict(node.metadata)  # id, document_id, chunk_index, metadata
        chunk_id, metadata = fields.pop("id"), fields.pop("metadata") or {}
        source = RelatedNodeInfo(node_id=fields["document_id"])
        nodes.append(
            TextNode(
                id_=chunk_id,
                text=node.get_content(),
                metadata={**metadata, **fields},
                relationships={NodeRelationship.SOURCE: source},
            )
        )
    return VectorStoreQueryResult(nodes=nodes, similarities=result.similarities, ids=result.ids)


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

    store = IngestedMilvusVectorStore(uri=args.uri, token=token, collection_name=args.collection)
    index = VectorStoreIndex.from_vector_store(store, embed_model=Model2VecEmbedding(model))
    retriever = index.as_retriever(similarity_top_k=args.k)
    for query in args.query:
        for rank, hit in enumerate(retriever.retrieve(query), 1):
            node = hit.node
            print(
                json.dumps(
                    {
                        "query": query,
                        "rank": rank,
                        "id": node.node_id,
                        "ref_doc_id": node.ref_doc_id,
                        "score": hit.score,
                        "text": node.get_content(),
                        "metadata": node.metadata,
                    }
                )
            )


if __name__ == "__main__":
    main()
