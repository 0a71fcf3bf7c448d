"""Shared fixtures: tiny offline models, corpora and Milvus Lite stores."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DEMO_MODEL = str(REPO / "models" / "minilm-l6-m2v-256")

WORDS = [
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "it",
    "for",
    "on",
    "with",
    "how",
    "do",
    "i",
    "catch",
    "exception",
    "exceptions",
    "try",
    "except",
    "raise",
    "error",
    "loop",
    "loops",
    "for",
    "while",
    "list",
    "lists",
    "item",
    "items",
    "import",
    "module",
    "modules",
    "package",
    "function",
    "functions",
    "define",
    "def",
    "class",
    "classes",
    "object",
    "argument",
    "default",
    "value",
    "return",
    "file",
    "read",
    "write",
    "open",
    "close",
    "string",
    "text",
    "number",
    "milvus",
    "vector",
    "search",
]


def save_tiny_model(
    path: pathlib.Path, *, dim: int = 16, dtype: str = "float32", seed: int = 0
) -> str:
    """Saves a WordLevel Model2Vec model with random vectors; returns its folder."""
    from model2vec import StaticModel
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {"[UNK]": 0, "[PAD]": 1, **{w: i + 2 for i, w in enumerate(dict.fromkeys(WORDS))}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    vectors = np.random.default_rng(seed).normal(size=(len(vocab), dim)).astype(dtype)
    StaticModel(vectors=vectors, tokenizer=tokenizer, normalize=True).save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 16-dimensional float32 model over a few dozen English words."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_model_f16(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The same kind of model, stored as float16."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model-f16"), dtype="float16", seed=1)


@pytest.fixture(scope="session")
def demo_model() -> str:
    """The distilled MiniLM demo model shipped in models/."""
    return DEMO_MODEL


@pytest.fixture
def lite_uri(tmp_path: pathlib.Path) -> str:
    """A fresh embedded Milvus Lite store."""
    return str(tmp_path / "milvus.db")


def write_jsonl(path: pathlib.Path, records: list) -> str:
    """Writes records (dicts as JSON, strings as raw lines) one per line."""
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(record if isinstance(record, str) else json.dumps(record))
            f.write("\n")
    return str(path)
