"""How a search prints its hits: a table for people, JSON lines for programs.

Both show, for every hit, its rank, its score named for what it is
(``similarity`` for a COSINE or IP collection: higher is closer;
``distance`` for L2: lower is closer), the document id, the chunk's position
in its document, its text and its metadata. Nothing here imports Beam.

One JSON line per query::

    {"query": "...", "metric": "COSINE", "hits": [{"rank": 1, "similarity": 0.71,
     "document_id": "try", "chunk_index": 0, "id": "3f...", "metadata": {"title": "try"},
     "text": "..."}]}
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from transforms.milvus.searcher import score_name

__all__ = ["TITLE_KEYS", "readable", "table", "write_hits"]

TITLE_KEYS = ("title", "name", "heading", "subject", "path", "source", "url")
"""Metadata keys shown as a hit's title in the table, the first one present;
without any, the table shows the metadata's first keys and values."""

_SNIPPET_MIN = 16
_RULE = "-"


def readable(result: Mapping[str, Any], metric: str | None) -> dict[str, Any]:
    """One query's hits (``SearchResult`` as JSON: ``query``, ``hits`` with
    ``id``, ``distance``, ``fields``) as the JSON line a search prints."""
    name = score_name(metric)
    hits = []
    for rank, hit in enumerate(result.get("hits", ()), start=1):
        fields = dict(hit.get("fields") or {})
        readable_hit: dict[str, Any] = {"rank": rank, name: hit.get("distance")}
        readable_hit["document_id"] = fields.pop("document_id", None)
        readable_hit["chunk_index"] = fields.pop("chunk_index", None)
        readable_hit["id"] = hit.get("id")
        readable_hit["metadata"] = fields.pop("metadata", None) or {}
        readable_hit["text"] = fields.pop("text", None)
        readable_hit.update(fields)  # any other field asked for
        hits.append(readable_hit)
    return {"query": result.get("query"), "metric": metric, "hits": hits}


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())


def _cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, ``…`` marking a cut."""
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _title(metadata: Mapping[str, Any]) -> str:
    """A hit's title: the first of :data:`TITLE_KEYS` in its metadata, else its first pairs."""
    for key in TITLE_KEYS:
        if metadata.get(key) not in (None, ""):
            return _one_line(metadata[key])
    return ", ".join(f"{k}={_one_line(v)}" for k, v in metadata.items())


def table(result: Mapping[str, Any], width: int | None = None) -> str:
    """One query's hits (as :func:`readable` returns them) as a text table.

    Columns: rank, the score, the document id (with ``#n`` for its n-th chunk
    after the first), its title (or its first metadata), and the start of the
    text, cut to fit ``width`` characters (default: the terminal's).
    """
    width = width or shutil.get_terminal_size((120, 24)).columns
    hits: Sequence[Mapping[str, Any]] = result.get("hits", ())
    name = next((k for k in ("similarity", "distance") if hits and k in hits[0]), "score")
    closer = {"similarity": "higher is closer", "distance": "lower is closer"}.get(name, "")
    lines = [f"query: {result.get('query')}"]
    if not hits:
        lines.append("  no hits")
        return "\n".join(lines)
    rows = []
    for hit in hits:
        doc = _one_line(hit.get("document_id") or hit.get("id") or "")
        if hit.get("chunk_index") not in (None, 0):
            doc = f"{doc}#{hit['chunk_index']}"
        score = hit.get(name)
        rows.append(
            (
                str(hit.get("rank", "")),
                "" if score is None else f"{score:.4f}",
                doc,
                _title(hit.get("metadata") or {}),
                _one_line(hit.get("text") or ""),
            )
        )
    headers = ("#", name, "document", "title", "text")
    rank_w = max(len(headers[0]), *(len(r[0]) for r in rows))
    score_w = max(len(headers[1]), *(len(r[1]) for r in rows))
    free = width - 1 - rank_w - score_w - 4 * 2  # the indent, and four two-space gaps
    doc_w = min(max(len(headers[2]), *(len(r[2]) for r in rows)), max(free // 4, 8))
    title_w = min(max(len(headers[3]), *(len(r[3]) for r in rows)), max(free // 4, 8))
    text_w = max(free - doc_w - title_w, _SNIPPET_MIN)

    def line(cells: Sequence[str]) -> str:
        rank, score, doc, title, text = cells
        return "  ".join(
            (
                " " + rank.rjust(rank_w),
                score.rjust(score_w),
                _cut(doc, doc_w).ljust(doc_w),
                _cut(title, title_w).ljust(title_w),
                _cut(text, text_w),
            )
        ).rstrip()

    lines.append(line(headers) + (f"   ({name}: {closer})" if closer else ""))
    lines.append(line(tuple(_RULE * w for w in (rank_w, score_w, doc_w, title_w, text_w))))
    lines.extend(line(row) for row in rows)
    return "\n".join(lines)


def write_hits(
    results: Iterable[Mapping[str, Any]],
    metric: str | None,
    output_format: str,
    stream: TextIO,
) -> None:
    """Prints each query's hits: a table, or one JSON line per query.

    Args:
      results: ``SearchResult`` as JSON, one per query.
      metric: The collection's metric, which names the score.
      output_format: ``table``, ``jsonl``, or ``auto``: a table when
        ``stream`` is a terminal, else JSON lines.
    """
    if output_format == "auto":
        output_format = "table" if stream.isatty() else "jsonl"
    for i, result in enumerate(results):
        shown = readable(result, metric)
        if output_format == "table":
            stream.write(("\n" if i else "") + table(shown) + "\n")
        else:
            stream.write(json.dumps(shown, ensure_ascii=False, default=str) + "\n")
    stream.flush()
