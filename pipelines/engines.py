"""Which engine runs a pipeline, chosen the same way on every machine, and named in the report.

A Beam *runner* is what ``--runner`` names; the *engine* is what executes the
steps. They differ on a laptop: Beam 2.77's ``DirectRunner`` is not an engine
but a choice made per run. It first tries Prism, Beam's Go runner, downloading
it from GitHub releases, and falls back to the Python FnApiRunner (silently,
at INFO) when the download fails. The same command would then run on Prism on
a machine with internet and on the FnApiRunner on one without, and the two
differ: Prism starts one SDK worker process per pipeline, so
``--direct_num_workers=2 --direct_running_mode=multi_processing`` does nothing
there.

So the pipelines choose the local engine themselves (:func:`make_runner`):

* no ``--runner`` (and none in the config): the FnApiRunner, the engine
  ``configs/*.yaml`` pin (``runner: FnApiRunner``);
* ``--runner=FnApiRunner``: Beam's FnApiRunner, given the run's options for its
  workers as the ``DirectRunner`` gives them (worker processes read them);
* ``--runner=PrismRunner``: Prism; asking it for several local worker
  processes is a :class:`~pipelines.cli.UsageError` naming the flags;
* ``--runner=DirectRunner``: Beam's choice, with a warning that it depends on
  the network, unless the run asks for several local worker processes: only
  the FnApiRunner can honour those, so it runs there;
* any other runner: made by Beam, untouched.

:func:`engine_of` names the engine that ran, from the runner and the type of
its result, for the report's ``engine`` field. Costs nothing measurable: a
few ``isinstance`` checks on the launcher.
"""

from __future__ import annotations

import logging

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.direct.direct_runner import SwitchingDirectRunner
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.portability.portable_runner import JobServiceHandle
from apache_beam.runners.portability.prism_runner import PrismRunner
from apache_beam.runners.runner import PipelineResult, PipelineRunner, create_runner

from pipelines.cli import UsageError

__all__ = [
    "DEFAULT_ENGINE",
    "FN_API_RUNNER",
    "PRISM",
    "engine_of",
    "local_worker_flags",
    "make_runner",
    "runner_name",
]

_LOGGER = logging.getLogger(__name__)

FN_API_RUNNER = "FnApiRunner"
PRISM = "Prism"
DEFAULT_ENGINE = FN_API_RUNNER
"""The local engine where no runner is named: the one ``configs/*.yaml`` pin."""

# Runner classes (by module and name, so that optional extras need not be
# importable) and the engine each one is. The first class of a runner's MRO
# found here wins: PrismRunner and FlinkRunner are PortableRunners too.
_ENGINES = {
    "apache_beam.runners.portability.prism_runner.PrismRunner": PRISM,
    "apache_beam.runners.portability.flink_runner.FlinkRunner": "Flink",
    "apache_beam.runners.portability.spark_runner.SparkRunner": "Spark",
    "apache_beam.runners.portability.portable_runner.PortableRunner": "portable",
    "apache_beam.runners.dataflow.dataflow_runner.DataflowRunner": "Dataflow",
    "apache_beam.runners.dask.dask_runner.DaskRunner": "Dask",
    "apache_beam.runners.portability.fn_api_runner.fn_runner.FnApiRunner": FN_API_RUNNER,
    "apache_beam.runners.direct.direct_runner.BundleBasedDirectRunner": "BundleBasedDirectRunner",
}
# What the DirectRunner's result tells of the engine it chose.
_DIRECT_RESULTS = {
    "apache_beam.runners.portability.fn_api_runner.fn_runner.RunnerResult": FN_API_RUNNER,
    "apache_beam.runners.portability.portable_runner.PipelineResult": PRISM,
    "apache_beam.runners.direct.direct_runner.DirectPipelineResult": "BundleBasedDirectRunner",
}


def _first_known(obj: object, known: dict[str, str]) -> str | None:
    for cls in type(obj).__mro__:
        engine = known.get(f"{cls.__module__}.{cls.__qualname__}")
        if engine:
            return engine
    return None


def engine_of(runner: PipelineRunner, result: PipelineResult | None) -> str:
    """The engine that ran (or, without a result yet, runs) a pipeline.

    Args:
      runner: The pipeline's runner (``pipeline.runner``).
      result: What ``pipeline.run()`` returned: for the DirectRunner, its type
        tells which engine it chose (a portable result comes from Prism).

    Returns:
      ``"FnApiRunner"``, ``"Prism"``, ``"Dask"``, ``"Dataflow"``, ``"Flink"``,
      ``"Spark"``, ``"portable"`` (a job service of the user's), or else the
      runner's class name.
    """
    engine = _first_known(runner, _ENGINES)
    if engine is None and isinstance(runner, SwitchingDirectRunner) and result is not None:
        engine = _first_known(result, _DIRECT_RESULTS)
    return engine or type(runner).__name__


def runner_name(options: PipelineOptions, runner: PipelineRunner) -> str:
    """The runner as named (``--runner``), else the class :func:`make_runner` chose."""
    named = options.view_as(StandardOptions).runner
    return str(named) if named else type(runner).__name__


def local_worker_flags(options: PipelineOptions) -> list[str]:
    """The DirectRunner flags of this run that ask for more than one local worker, as given."""
    direct = options.view_as(DirectOptions)
    flags = []
    if direct.direct_num_workers != 1:
        flags.append(f"--direct_num_workers={direct.direct_num_workers}")
    if direct.direct_running_mode != "in_memory":
        flags.append(f"--direct_running_mode={direct.direct_running_mode}")
    return flags


def _fn_api_runner(options: PipelineOptions) -> fn_runner.FnApiRunner:
    """Beam's FnApiRunner, handing the run's options to its worker processes
    as Beam's DirectRunner does when it falls back to it (a bare
    ``FnApiRunner()`` gives them none: ``PIPELINE_OPTIONS`` would be empty)."""
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(provision))


def make_runner(options: PipelineOptions) -> PipelineRunner:
    """The runner for this run, with the local engine chosen as the module doc says.

    Raises:
      UsageError: the run asks Prism for several local worker processes.
      ValueError: ``--runner`` names no runner (Beam's own error).
    """
    named = options.view_as(StandardOptions).runner
    if not named:
        return _fn_api_runner(options)
    runner = create_runner(named) if isinstance(named, str) else named
    workers = local_worker_flags(options)
    if type(runner) is fn_runner.FnApiRunner:
        return _fn_api_runner(options)
    if isinstance(runner, PrismRunner) and workers:
        raise UsageError(
            f"{' '.join(workers)}: Prism runs one SDK worker process per pipeline, so these "
            "flags would do nothing; for several local worker processes use "
            "--runner=FnApiRunner."
        )
    if type(runner) is SwitchingDirectRunner:
        if workers:
            _LOGGER.info(
                "--runner=%s with %s: running on the FnApiRunner, the local engine that "
                "honours them (Prism, the DirectRunner's first choice, runs one worker process).",
                named,
                " ".join(workers),
            )
            return _fn_api_runner(options)
        _LOGGER.warning(
            "--runner=%s runs on Prism where it can download it and on the FnApiRunner where "
            "it cannot; the report's engine field says which ran. Name the engine to run the "
            "same everywhere: --runner=FnApiRunner, or --runner=PrismRunner "
            "(--prism_location=PATH for a binary of your own, e.g. make prism).",
            named,
        )
    return runner
