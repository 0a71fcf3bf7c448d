"""Pure functions: ids, dead letters and settings validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from transforms import (
    Chunk,
    ChunkingConfig,
    ConfigError,
    DeadLetter,
    MilvusTarget,
    SourceConfig,
    WriteConfig,
    chunk_id,
)
from transforms.config import SourceFormat, as_patterns


def test_chunk_id_is_deterministic_and_depends_on_every_part() -> None:
    base = chunk_id("doc-1", 0, "settings")
    assert base == chunk_id("doc-1", 0, "settings")
    assert len(base) == 32 and int(base, 16) >= 0
    others = {
        chunk_id("doc-2", 0, "settings"),
        chunk_id("doc-1", 1, "settings"),
        chunk_id("doc-1", 0, "other"),
    }
    assert base not in others and len(others) == 3


def test_chunking_fingerprint_changes_with_settings_and_tokenizer() -> None:
    a = ChunkingConfig(max_tokens=64, overlap_tokens=8)
    assert a.fingerprint("tok") == ChunkingConfig(max_tokens=64, overlap_tokens=8).fingerprint(
        "tok"
    )
    assert a.fingerprint("tok") != ChunkingConfig(max_tokens=64, overlap_tokens=4).fingerprint(
        "tok"
    )
    assert a.fingerprint("tok") != a.fingerprint("other-tokenizer")


def test_dead_letter_keeps_a_bounded_preview_and_serialises() -> None:
    letter = DeadLetter.of("read", "f.jsonl:3", "malformed JSON", "x" * 10_000)
    assert len(letter.record) == 500
    assert json.loads(letter.to_json())["source"] == "f.jsonl:3"


def test_chunks_compare_their_embeddings_as_values() -> None:
    a = Chunk("i", "d", 0, "t", 0, 1, embedding=np.ones(3, np.float32))
    assert a == Chunk("i", "d", 0, "t", 0, 1, embedding=np.ones(3, np.float32))
    assert a != Chunk("i", "d", 0, "t", 0, 1, embedding=np.zeros(3, np.float32))
    assert a != Chunk("i", "d", 0, "t", 0, 1)


@pytest.mark.parametrize(
    ("make", "names"),
    [
        (lambda: ChunkingConfig(max_tokens=0), "chunking.max_tokens"),
        (lambda: ChunkingConfig(max_tokens=16, overlap_tokens=16), "chunking.overlap_tokens"),
        (lambda: SourceConfig(patterns=()), "source.patterns"),
        (lambda: SourceConfig(patterns=("a",), format="xml"), "source.format"),  # type: ignore[arg-type]
        (lambda: MilvusTarget(uri="milvus", collection="c"), "milvus.uri"),
        (lambda: MilvusTarget(uri="x.db", collection="1bad-name"), "milvus.collection"),
        (lambda: WriteConfig(max_batch_bytes=100 * 1024 * 1024), "write.max_batch_bytes"),
    ],
)
def test_bad_settings_fail_with_a_message_naming_the_value(make, names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        make()


def test_source_config_normalises_its_values() -> None:
    # As a YAML config gives them: plain strings and lists.
    config = SourceConfig(patterns="docs/*.md", format="jsonl", metadata_fields=["a"])  # type: ignore[arg-type]
    assert config.patterns == ("docs/*.md",)
    assert config.format is SourceFormat.JSONL
    assert config.metadata_fields == ("a",)
    assert as_patterns("a/*.md, b/*.jsonl") == ("a/*.md", "b/*.jsonl")


def test_token_is_read_from_env_or_file_and_never_stored(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MY_TOKEN", "root:secret")
    target = MilvusTarget.server("http://localhost:19530", "docs", token_env="MY_TOKEN")
    assert target.client_kwargs()["token"] == "root:secret"
    assert "secret" not in repr(target)
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    from_file = MilvusTarget.server("http://localhost:19530", "docs", token_file=str(token_file))
    assert from_file.client_kwargs()["token"] == "from-file"
    assert "from-file" not in repr(from_file)
    missing = MilvusTarget.server("http://h:1", "docs", token_file=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="token_file"):
        missing.client_kwargs()


def test_lite_target_sends_no_token(monkeypatch) -> None:
    monkeypatch.setenv("MILVUS_TOKEN", "root:secret")
    assert "token" not in MilvusTarget.lite("./m.db", "docs").client_kwargs()
