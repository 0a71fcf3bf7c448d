"""Runner fixes: Beam runners that these pipelines can run on only once repaired.

A module here is a runner to name with ``--runner=pipelines.runners.<module>.<Class>``.
Each one builds on private parts of a Beam runner, so it pins the Beam versions
it was tested with, refuses to start on any other, and lists in its module
docstring what it overrides in Beam's runner and why.

* :mod:`pipelines.runners.dask`: Beam's DaskRunner, keeping tagged and
  ``finish_bundle`` outputs, side inputs, every leaf, ``Reshuffle``'s spread and
  the run's metrics (``pip install 'milvus-beam-ingest[dask]'``).

Nothing is imported here: importing a runner imports its engine (Dask...).
"""
