"""Shared fixtures: tiny offline models, corpora and Milvus Lite stores."""

from __future__ import annotations

import json
import pathlib
import sys
import uuid

import numpy as np
import pytest

from transforms.testing import runners, servers

REPO = pathlib.Path(__file__).resolve().parents[1]
DEMO_MODEL = str(REPO / "models" / "minilm-l6-m2v-256")


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--engines``: the local engines the tests that take ``engine`` run on."""
    parser.addoption(
        "--engines",
        default="fnapi",
        help="Comma-separated local engines for the tests that take `engine`: fnapi (Beam's "
        "FnApiRunner), prism (Prism, from --prism_location). make test names both where Go "
        "can build Prism; CI always does.",
    )
    parser.addoption(
        "--prism_location",
        default=str(pathlib.Path(sys.prefix) / "bin" / "prism"),
        help="The Prism binary for --engines=prism (default: the venv's, which make prism builds).",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Runs each test that takes ``engine`` once per engine ``--engines`` names."""
    if "engine" in metafunc.fixturenames:
        keys = [k.strip() for k in str(metafunc.config.getoption("engines")).split(",") if k]
        unknown = sorted(set(keys) - set(runners.LOCAL_ENGINES))
        if unknown:
            raise pytest.UsageError(
                f"--engines: unknown {unknown}; known: {', '.join(runners.LOCAL_ENGINES)}"
            )
        metafunc.parametrize("engine", keys, indirect=True)


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> runners.LocalEngine:
    """A local engine of ``--engines``; fails (never skips) when Prism's binary is missing."""
    location = pathlib.Path(str(request.config.getoption("prism_location")))
    return runners.local_engine(str(request.param), location)


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


@pytest.fixture(scope="module")
def demo_tokenizer(demo_model: str):
    """The demo model's tokenizer, without truncation or padding (as chunking counts)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(f"{demo_model}/tokenizer.json")
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


@pytest.fixture
def lite_uri(tmp_path: pathlib.Path) -> str:
    """A fresh embedded Milvus Lite store."""
    return str(tmp_path / "milvus.db")


@pytest.fixture(scope="session")
def milvus_bin(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The Milvus 2.3.5 binary from the PyPI wheel, unpacked once per session."""
    folder = tmp_path_factory.getbasetemp() / "milvus-bin"
    servers.ensure_milvus_binary(folder)
    return folder


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory, milvus_bin: pathlib.Path):
    """A real Milvus 2.3.5 standalone server, without authentication."""
    proc, _ = servers.start_milvus_server(tmp_path_factory.mktemp("milvus"), bin_dir=milvus_bin)
    yield proc
    servers.stop(proc)


@pytest.fixture(scope="session")
def milvus_auth_server(tmp_path_factory: pytest.TempPathFactory, milvus_bin: pathlib.Path):
    """A real Milvus 2.3.5 standalone server with authentication (root:Milvus)."""
    proc, _ = servers.start_milvus_server(
        tmp_path_factory.mktemp("milvus-auth"), auth=True, bin_dir=milvus_bin
    )
    yield proc
    servers.stop(proc)


@pytest.fixture(scope="session")
def lite_server(tmp_path_factory: pytest.TempPathFactory):
    """Milvus Lite in server mode."""
    proc, _ = servers.start_lite_server(tmp_path_factory.mktemp("lite-server"))
    yield proc
    servers.stop(proc)


@pytest.fixture(scope="session")
def worker_venv(tmp_path_factory: pytest.TempPathFactory) -> runners.WorkerVenv:
    """A runner's worker environment: Beam only, then this checkout's sdist (~35 s, once)."""
    return runners.make_worker_venv(REPO, tmp_path_factory.mktemp("worker-venv"))


MILVUS_KINDS = ["lite", "lite_server", "milvus_server"]


@pytest.fixture(params=MILVUS_KINDS)
def milvus_kind(request: pytest.FixtureRequest) -> str:
    """The kinds of Milvus every contract and end-to-end test runs against:
    embedded Milvus Lite, Milvus Lite as a server, a Milvus 2.3.5 server."""
    return str(request.param)


@pytest.fixture
def milvus_uri(milvus_kind: str, request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    """The URI of the Milvus of ``milvus_kind``."""
    if milvus_kind == "lite":
        return str(tmp_path / "milvus.db")
    return str(request.getfixturevalue(milvus_kind).milvus["uri"])


@pytest.fixture
def collection_name(request: pytest.FixtureRequest) -> str:
    """A collection name no other test uses (servers live for the session)."""
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def milvus_target(milvus_uri: str, collection_name: str):
    """Makes targets for fresh collections on the Milvus of ``milvus_kind``."""
    from transforms import MilvusTarget

    def make(name: str) -> MilvusTarget:
        collection = f"{collection_name}_{name}"
        if milvus_uri.endswith(".db"):
            return MilvusTarget.lite(milvus_uri, collection)
        return MilvusTarget.server(milvus_uri, collection, token_env=None)

    return make


def write_jsonl(path: pathlib.Path, records: list) -> str:
    """Writes records (dicts as JSON, strings as raw lines) one per line."""
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(record if isinstance(record, str) else json.dumps(record))
            f.write("\n")
    return str(path)
