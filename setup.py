"""milvus-beam-ingest: fill Milvus with Model2Vec embeddings on Apache Beam.

``pip install .`` installs the ``transforms`` library and the ``pipelines``;
the same file is what Dataflow and portable workers install with
``--setup_file ./setup.py``.
"""

import pathlib

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "apache-beam>=2.60,<3",
    "model2vec>=0.10,<0.11",
    "pymilvus>=2.6,<4",
    "milvus-lite>=3.0,<4; sys_platform != 'win32'",
    "numpy>=1.26,<3",
    "fsspec>=2024.6",
    "pyarrow",  # Parquet; apache-beam already pins its range
    "pyyaml>=6,<7",
    # The progress bar of an ingestion on a terminal (pipelines.progress); model2vec needs it too.
    "tqdm>=4.66,<5",
]

# The tests start a real Milvus 2.3.5 standalone server: the PyPI package
# "milvus" ships its binary (Linux and macOS only).
# moto serves S3 on loopback for the s3:// tests; s3fs, aiohttp and zstandard let fsspec read
# s3://, http(s):// and .zst.
TEST_REQUIRES = [
    "pytest>=8,<10",
    "milvus==2.3.5; sys_platform != 'win32'",
    "moto[server]>=5,<6",
    "s3fs>=2024.6",
    "aiohttp>=3.9",
    "zstandard>=0.22",
    # The runner tests: DataflowRunner and gcsfs against a local GCS emulator.
    "apache-beam[gcp]>=2.60,<3",
    "gcsfs>=2024.6",
    "gcp-storage-emulator>=2024.8",
    # The Dask runner test: a local scheduler and workers.
    "apache-beam[dask]>=2.77,<2.78",
    # The layer contracts in pyproject.toml: make lint, and docs/library.md's runnable block.
    "import-linter>=2.1,<3",
]

EXTRAS_REQUIRE = {
    # Filesystems and codecs for sources, installed where the workers run.
    "s3": ["s3fs>=2024.6"],
    "gcs": ["gcsfs>=2024.6"],
    "azure": ["adlfs>=2024.4"],
    "http": ["aiohttp>=3.9"],
    "zstd": ["zstandard>=0.22"],
    # Launching on Dataflow: the DataflowRunner, and gs:// paths on the launcher.
    "gcp": ["apache-beam[gcp]>=2.60,<3", "gcsfs>=2024.6"],
    # Running on a Dask cluster (pipelines.runners.dask), on the launcher and the workers.
    "dask": ["apache-beam[dask]>=2.77,<2.78", "packaging>=22"],  # = its SUPPORTED_BEAM
    # make bench: the peers it measures (pymilvus-model's Model2VecEmbeddingFunction, which
    # brings transformers, onnxruntime and scipy) and the Milvus 2.3.5 server it starts.
    "bench": ["pymilvus[model]>=2.6,<4", "milvus==2.3.5; sys_platform != 'win32'"],
    "test": TEST_REQUIRES,
    "dev": [*TEST_REQUIRES, "ruff>=0.8,<1", "mypy>=1.13,<2", "types-PyYAML"],
}

setup(
    name="milvus-beam-ingest",
    version="0.1.0",
    description="Apache Beam pipelines that fill Milvus with Model2Vec embeddings, at any scale.",
    long_description=pathlib.Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["transforms", "transforms.*", "pipelines", "pipelines.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "milvus-ingest=pipelines.ingest:main",
            "milvus-search=pipelines.search:main",
            "milvus-ingest-demo=pipelines.demo:main",
            "milvus-inspect=pipelines.inspect:main",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
