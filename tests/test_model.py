"""Model loading and embedding: equal to StaticModel.encode, once per process, any source."""

from __future__ import annotations

import inspect
import os
import pathlib

import fsspec
import numpy as np
import pytest
from model2vec import StaticModel

from transforms import ChunkingTokenizer, ModelLoadError, QueryEncoder, StaticEmbedder
from transforms.embedding import describe_model
from transforms.model_files import ModelFiles, resolve_model_source

TEXTS = [
    "How do I catch an exception?",
    "for item in items: loop over the list",
    "",
    "zzz qqq unknown words only",
    "import a module from a package " * 300,  # longer than the model's max_length
]


def test_float32_model_matches_encode_within_1e6(tiny_model) -> None:
    expected = StaticModel.from_pretrained(tiny_model, force_download=False).encode(TEXTS)
    got = StaticEmbedder.load(tiny_model).embed(TEXTS)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_float16_model_matches_encode_within_float16_rounding(tiny_model_f16) -> None:
    model = StaticModel.from_pretrained(tiny_model_f16, force_download=False)
    assert model.embedding.dtype == np.float16
    got = StaticEmbedder.load(tiny_model_f16).embed(TEXTS)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, model.encode(TEXTS).astype(np.float32), atol=2e-3)


def test_int8_demo_model_matches_encode(demo_model) -> None:
    model = StaticModel.from_pretrained(demo_model, force_download=False)
    assert model.embedding.dtype == np.int8
    got = StaticEmbedder.load(demo_model).embed(TEXTS)
    np.testing.assert_allclose(got, model.encode(TEXTS), atol=1e-6)
    assert got.shape == (len(TEXTS), 256)


def test_embedding_does_not_touch_the_shared_tokenizer(tiny_model) -> None:
    embedder = StaticEmbedder.load(tiny_model)
    tokenizer = embedder._model.tokenizer
    before = tokenizer.truncation
    embedder.embed(TEXTS)
    assert tokenizer.truncation == before


def test_a_load_is_counted_once_by_the_model_it_made(tiny_model) -> None:
    embedder = StaticEmbedder.load(tiny_model)
    assert embedder.take_uncounted_load() == 1
    assert embedder.take_uncounted_load() == 0
    assert StaticEmbedder.load(tiny_model).take_uncounted_load() == 1  # a new load, its own count


@pytest.mark.parametrize("model", ["tiny_model", "tiny_model_f16", "demo_model"])
def test_the_model_files_say_what_the_loaded_model_says(model, request) -> None:
    source = request.getfixturevalue(model)
    embedder = StaticEmbedder.load(source)
    described = describe_model(source)
    assert described.fingerprint == embedder.fingerprint()
    assert (described.dim, described.max_length) == (embedder.dim, embedder.max_length)
    tokenizer = ChunkingTokenizer.load(source)
    assert tokenizer.fingerprint == embedder.tokenizer_fingerprint
    assert tokenizer.max_length == embedder.max_length
    long_text = "import a module from a package " * 300
    assert tokenizer.count_tokens(long_text) > (embedder.max_length or 0)  # never truncated


def test_a_model_without_max_length_or_with_padding_keeps_its_fingerprint(
    tiny_model, tmp_path
) -> None:
    import json
    import shutil

    folder = shutil.copytree(tiny_model, tmp_path / "variant")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "max_length": None}))
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["padding"] = {
        "strategy": "BatchLongest",
        "direction": "Right",
        "pad_to_multiple_of": None,
        "pad_id": 0,
        "pad_type_id": 0,
        "pad_token": "[PAD]",
    }
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    embedder = StaticEmbedder.load(str(folder))
    assert embedder.max_length is None
    assert describe_model(str(folder)).fingerprint == embedder.fingerprint()
    assert ChunkingTokenizer.load(str(folder)).fingerprint == embedder.tokenizer_fingerprint


def test_a_folder_without_model_files_is_refused_by_name(tmp_path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="holds no Model2Vec model"):
        ModelFiles.locate(str(tmp_path))


def test_local_folder_and_hub_id_resolution(tiny_model, tmp_path) -> None:
    assert resolve_model_source(tiny_model) == tiny_model
    assert resolve_model_source("minishlab/potion-base-8M") == "minishlab/potion-base-8M"
    with pytest.raises(ModelLoadError, match="missing-model"):
        resolve_model_source(str(tmp_path / "missing-model"))
    with pytest.raises(ModelLoadError, match="no-such-org/no-such-model"):
        StaticEmbedder.load("./no-such-org/no-such-model")


def test_fsspec_url_is_staged_to_a_local_cache_once(tiny_model, tmp_path) -> None:
    memory = fsspec.filesystem("memory")
    for file in pathlib.Path(tiny_model).iterdir():
        memory.pipe(f"/models/tiny/{file.name}", file.read_bytes())
    cache = tmp_path / "cache"
    staged = resolve_model_source("memory://models/tiny", str(cache))
    assert sorted(os.listdir(staged)) == sorted(os.listdir(tiny_model))
    assert resolve_model_source("memory://models/tiny", str(cache)) == staged
    assert [p.name for p in cache.iterdir()] == [pathlib.Path(staged).name]  # no staging left
    np.testing.assert_allclose(
        StaticEmbedder.load(staged).embed(TEXTS), StaticEmbedder.load(tiny_model).embed(TEXTS)
    )
    with pytest.raises(ModelLoadError, match="memory://models/absent"):
        resolve_model_source("memory://models/absent", str(cache))


def test_fingerprint_identifies_the_vectors_not_the_path(
    tiny_model, tiny_model_f16, tmp_path
) -> None:
    import shutil

    copy = shutil.copytree(tiny_model, tmp_path / "copy")
    a = StaticEmbedder.load(tiny_model).fingerprint()
    b = StaticEmbedder.load(str(copy)).fingerprint()
    c = StaticEmbedder.load(tiny_model_f16).fingerprint()
    assert a["model"] != b["model"]
    assert (a["vectors_sha256"], a["tokenizer_sha256"], a["dim"]) == (
        b["vectors_sha256"],
        b["tokenizer_sha256"],
        b["dim"],
    )
    assert a["vectors_sha256"] != c["vectors_sha256"]


def test_query_encoder_has_the_pymilvus_api_and_loads_lazily(tiny_model) -> None:
    encoder = QueryEncoder(tiny_model)
    assert encoder._embedder is None  # nothing loaded until first use
    queries = encoder.encode_queries(["how do i catch an exception"])
    documents = encoder.encode_documents(["try except catches exceptions", "loops"])
    assert encoder.dim == 16
    assert isinstance(queries, list) and all(isinstance(v, np.ndarray) for v in queries)
    assert [v.shape for v in documents] == [(16,), (16,)]
    expected = StaticModel.from_pretrained(tiny_model, force_download=False).encode(
        ["try except catches exceptions", "loops"]
    )
    np.testing.assert_allclose(np.stack(documents), expected, atol=1e-6)
    # The parameter names of pymilvus.model.dense.Model2VecEmbeddingFunction.
    assert list(inspect.signature(QueryEncoder.encode_queries).parameters) == ["self", "queries"]
    assert list(inspect.signature(QueryEncoder.encode_documents).parameters) == [
        "self",
        "documents",
    ]


def test_fingerprint_hashes_the_float32_table_whatever_the_stored_dtype(demo_model) -> None:
    import hashlib

    stored = StaticModel.from_pretrained(demo_model, force_download=False).embedding
    expected = hashlib.sha256(np.asarray(stored, np.float32).tobytes()).hexdigest()[:16]
    assert StaticEmbedder.load(demo_model).fingerprint()["vectors_sha256"] == expected
