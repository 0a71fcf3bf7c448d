"""milvus-ingest: fill Milvus with Model2Vec embeddings on Apache Beam.

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
    "pyyaml>=6,<7",
]

# The tests start a real Milvus 2.3.5 standalone server: the PyPI package
# "milvus" ships its binary (Linux and macOS only).
TEST_REQUIRES = ["pytest>=8,<10", "milvus==2.3.5; sys_platform != 'win32'"]

EXTRAS_REQUIRE = {
    "test": TEST_REQUIRES,
    "dev": [*TEST_REQUIRES, "ruff>=0.8,<1", "mypy>=1.13,<2", "types-PyYAML"],
}

setup(
    name="milvus-ingest",
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
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
