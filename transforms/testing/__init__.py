"""Real servers and clusters on loopback, for tests and benchmarks of pipelines that use Milvus.

What ``apache_beam.testing`` is to Beam: helpers that ship with the library
so that the project's tests, its benchmark and users' own tests start the
same things the same way. Nothing in the library imports this package.

* :mod:`transforms.testing.servers`: a Milvus 2.3.5 standalone server (the
  binary in the PyPI wheel ``milvus==2.3.5``, on free ports, with or without
  authentication) and a Milvus Lite server; ``stop`` and ``kill9``.
* :mod:`transforms.testing.runners`: what a runner's workers would have: a
  Beam-only virtual environment with the project's sdist installed, Beam's job
  service and an EXTERNAL worker pool, a Dask scheduler and workers, a GCS
  emulator for Dataflow's staging.
* :mod:`transforms.testing.processes`: free ports, processes in their own
  process group, waiting for a port, stopping a group.

Every process listens on 127.0.0.1, needs no network once installed, and is
stopped with its whole process group. They need the ``test`` extra
(``milvus``, ``apache-beam[gcp]``, ``apache-beam[dask]``,
``gcp-storage-emulator``), Linux or macOS, and cost seconds to start (see each
module); use them for end-to-end tests, not for unit tests, where a fake
client is the right tool.
"""
