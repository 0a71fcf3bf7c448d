"""Beam's DaskRunner, with the translations that this framework's pipelines need.

Use it with ``--runner=pipelines.runners.dask.DaskRunner`` and Beam's own Dask
flags (``--dask_client_address=tcp://HOST:8786``, ``--dask_npartitions``...),
with ``pip install 'milvus-beam-ingest[dask]'`` on the launcher and the workers.

Beam's ``apache_beam.runners.dask.dask_runner.DaskRunner`` is a proof of
concept that loses data silently on any pipeline of this shape. This runner
keeps Beam's options, ``Create`` translation and result type, and replaces
the rest:

* **Tagged outputs.** Beam's puts every output of a multi-output ``ParDo`` in
  one bag, so consumers of ``dead_letters`` also see the main output and the
  other way round. Here a partition yields ``(tag, value)`` pairs and each
  consumer keeps its own tag.
* **finish_bundle outputs.** Beam's drops them: the last batch of every
  ``BatchElements`` (so of every ``RunInference``), every file of
  ``WriteToText``. Here a partition is one bundle run through Beam's
  ``DoFnInvoker`` (``setup``, ``start_bundle``, ``process``...,
  ``finish_bundle``, ``teardown``), and every output is kept.
* **Side inputs.** Beam's recomputes a side input inside each task that reads
  it. Here each is computed once, as a whole, ahead of the bundles.
* **Leaves.** Beam's computes only the last step applied: other branches
  (dead-letter writes, ``assert_that``) never run. Here every step that no
  other step consumes is drained and computed.
* **Reshuffle.** Beam's keeps one partition, so a read that fans out from one
  file pattern runs on one worker. Here it repartitions to
  ``--dask_npartitions``, or twice the cluster's threads.
* **GroupByKey.** Beam's leaves the shuffle to Dask's configuration, whose
  ``disk`` shuffle works on one machine only. Here it is always
  ``shuffle="tasks"``.
* **Metrics.** Beam's ``PipelineResult.metrics()`` raises
  ``NotImplementedError``. Here each bundle's metric updates come back with
  its outputs and are committed to ``DirectMetrics`` when the run ends.
* **Graph.** Beam's optimises (fuses) the graph; here it is computed
  unoptimised, since fusing would run a ``ParDo`` once for each consumer.

Each Dask partition is one bundle: its outputs are held in the worker's
memory until the next step takes them, so ``--dask_npartitions`` bounds how
much one task holds. A DoFn instance lives for one bundle (``setup`` and
``teardown`` around it); models are shared per worker process.

It is built on Beam's private code (``apache_beam.runners.dask.*``,
``apache_beam.runners.common``' invoker, ``DirectMetrics``), so it runs only
on the Beam versions it was tested with, :data:`SUPPORTED_BEAM` (the ``dask``
extra in setup.py pins the same range); on another it refuses to start.
Moving the range means running ``tests/test_runners_dask.py`` on the new
version first.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
import dask
import dask.bag as db
from apache_beam import pvalue
from apache_beam.metrics.execution import MetricsContainer, MetricUpdates
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.runners.common import (
    DoFnContext,
    DoFnInvoker,
    DoFnSignature,
    Receiver,
    _OutputHandler,
)
from apache_beam.runners.dask import dask_runner as beam_dask
from apache_beam.runners.dask import overrides, transform_evaluator
from apache_beam.runners.direct.direct_metrics import DirectMetrics
from apache_beam.runners.runner import PipelineState
from apache_beam.runners.worker import statesampler
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils import counters
from apache_beam.utils.windowed_value import WindowedValue
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from transforms.config import ConfigError

__all__ = ["SUPPORTED_BEAM", "DaskRunner", "check_beam_version"]

SUPPORTED_BEAM = ">=2.77,<2.78"
"""The apache-beam versions this runner was written and tested against (as in setup.py's
``dask`` extra)."""

_LOGGER = logging.getLogger(__name__)


def check_beam_version(installed: str | None = None) -> None:
    """Refuses a Beam outside :data:`SUPPORTED_BEAM`.

    Args:
      installed: The version to check (default: the installed apache-beam).

    Raises:
      ConfigError: The version is outside the supported range.
    """
    installed = installed or beam.__version__
    if not SpecifierSet(SUPPORTED_BEAM).contains(Version(installed), prereleases=True):
        raise ConfigError(
            f"pipelines.runners.dask.DaskRunner runs on apache-beam{SUPPORTED_BEAM} (it is "
            f"built on Beam's private Dask runner code), not on the installed {installed}: "
            f"pip install 'apache-beam[dask]{SUPPORTED_BEAM}', or choose another runner."
        )


# The tag of a bundle's metric updates among a ParDo partition's outputs; a
# PCollection tag is a str or None, so it cannot collide.
_METRICS = ("metrics",)


@dataclasses.dataclass
class _TaggedReceiver(Receiver):
    """Collects one output tag's values as ``(tag, value)`` pairs."""

    tag: str | None
    outputs: list[tuple[Any, Any]]

    def receive(self, windowed_value: WindowedValue) -> None:
        self.outputs.append((self.tag, windowed_value.value))


class _TaggedReceivers(dict[Any, _TaggedReceiver]):
    """A receiver per output tag, made on first use, all into one list."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: list[tuple[Any, Any]] = []

    def __missing__(self, tag: str | None) -> _TaggedReceiver:
        receiver = self[tag] = _TaggedReceiver(tag, self.outputs)
        return receiver


@dataclasses.dataclass(frozen=True)
class _SideInputView:
    """What a bundle needs, besides the values, to read one side input."""

    view_class: Any
    view_options: Any

    def bind(self, values: list[Any]) -> SideInputMap:
        windowed = [transform_evaluator.get_windowed_value(v, GlobalWindows()) for v in values]
        return SideInputMap(self.view_class, self.view_options, windowed)


def _concat(partitions: Iterable[Iterable[Any]]) -> list[Any]:
    return [value for partition in partitions for value in partition]


def _run_bundle(
    elements: Iterable[Any],
    transform: beam.ParDo,
    label: str,
    window_fn: Any,
    views: Sequence[_SideInputView],
    *side_values: list[Any],
) -> list[tuple[Any, Any]]:
    """Runs one Dask partition through ``transform``'s DoFn as one bundle.

    Returns every output as ``(tag, value)``, the main output under ``None``,
    ``finish_bundle``'s included, then the bundle's metric updates under
    ``_METRICS``.
    """
    receivers = _TaggedReceivers()
    args, kwargs = transform.raw_side_inputs
    invoker = DoFnInvoker.create_invoker(
        DoFnSignature(transform.fn),
        _OutputHandler(
            window_fn=window_fn,
            main_receivers=receivers[None],
            tagged_receivers=receivers,
            per_element_output_counter=None,
            output_batch_converter=None,
            process_yields_batches=False,
            process_batch_yields_elements=False,
        ),
        context=DoFnContext(label, state=None),
        side_inputs=[view.bind(values) for view, values in zip(views, side_values, strict=True)]
        or None,
        input_args=list(args),
        input_kwargs=kwargs,
        user_state_context=None,
        bundle_finalizer_param=beam.DoFn.BundleFinalizerParam(),
    )
    container = MetricsContainer(label)
    sampler = statesampler.StateSampler(label, counters.CounterFactory())
    statesampler.set_current_tracker(sampler)
    try:
        with sampler.scoped_state(label, "process", metrics_container=container):
            # A DoFn instance lives for one task here: clients and models are
            # set up per bundle (models are shared per process, see transforms.embedding.model).
            invoker.invoke_setup()
            try:
                invoker.invoke_start_bundle()
                for element in elements:
                    invoker.invoke_process(
                        transform_evaluator.get_windowed_value(element, window_fn)
                    )
                invoker.invoke_finish_bundle()
            finally:
                invoker.invoke_teardown()
    finally:
        statesampler.set_current_tracker(None)
    receivers.outputs.append((_METRICS, container.get_cumulative()))
    return receivers.outputs


def _has_tag(tag: Any) -> Any:
    return lambda pair: pair[0] == tag


def _value(pair: tuple[Any, Any]) -> Any:
    return pair[1]


def _drain(partition: Iterable[Any]) -> list[Any]:
    """Consumes a leaf's partition and keeps nothing of it."""
    for _ in partition:
        pass
    return []


@dataclasses.dataclass
class _BagVisitor(PipelineVisitor):
    """Translates each applied transform into a Dask bag operation."""

    bag_kwargs: dict[str, Any]
    spread_partitions: int
    bags: dict[AppliedPTransform, Any] = dataclasses.field(default_factory=dict)
    pardos: set[AppliedPTransform] = dataclasses.field(default_factory=set)
    consumed: set[AppliedPTransform] = dataclasses.field(default_factory=set)

    def bag_of(self, pcoll: pvalue.PValue) -> Any:
        """The bag of ``pcoll``: its producer's, narrowed to its tag for a ParDo."""
        producer = pcoll.producer
        assert producer is not None, "a PCollection's producer is set when it is applied"
        self.consumed.add(producer)
        bag = self.bags.get(producer)
        if bag is None or producer not in self.pardos:
            return bag
        return bag.filter(_has_tag(pcoll.tag)).map(_value)

    def visit_transform(self, node: AppliedPTransform) -> None:
        inputs = [self.bag_of(i) for i in node.inputs if not isinstance(i, pvalue.PBegin)]
        transform = node.transform
        if isinstance(transform, overrides._GroupAlsoByWindow):
            # Windows are global here: the grouping above already made the groups.
            self.bags[node] = inputs[0]
        elif isinstance(transform, beam.ParDo):
            self.pardos.add(node)
            self.bags[node] = self._pardo(node, inputs[0])
        elif isinstance(transform, beam.Impulse):
            self.bags[node] = db.from_sequence([b""], npartitions=1)
        elif isinstance(transform, overrides._Reshuffle):
            self.bags[node] = inputs[0].repartition(
                max(inputs[0].npartitions, self.spread_partitions)
            )
        elif isinstance(transform, overrides._GroupByKeyOnly):
            self.bags[node] = inputs[0].groupby(_key, shuffle="tasks").map(_group_values)
        elif isinstance(transform, overrides._Flatten):
            self.bags[node] = db.concat(inputs)
        elif isinstance(transform, overrides._Create):
            op = transform_evaluator.Create(node, bag_kwargs=self.bag_kwargs)
            self.bags[node] = op.apply(input_bag=None)
        else:
            raise NotImplementedError(
                f"the Dask runner cannot run step {node.full_label!r} "
                f"({type(transform).__name__}); file reads go through ReadDocuments"
            )

    def _pardo(self, node: AppliedPTransform, bag: Any) -> Any:
        main_input = next(iter(node.main_inputs.values()))
        window_fn = getattr(getattr(main_input, "windowing", None), "windowfn", None)
        views = [_SideInputView(type(si), si._view_options()) for si in node.side_inputs]
        # Each side input is computed once, as a whole, ahead of the bundles
        # that read it (Beam's translation recomputes it inside each task).
        values = [
            dask.delayed(_concat)(self.bag_of(si.pvalue).to_delayed(optimize_graph=False))
            for si in node.side_inputs
        ]
        return bag.map_partitions(
            _run_bundle, node.transform, node.full_label, window_fn, views, *values
        )

    def leaves(self) -> list[Any]:
        """What to compute so that every step runs: each unconsumed bag, drained."""
        return [
            bag.map_partitions(_drain)
            for node, bag in self.bags.items()
            if node not in self.consumed and bag is not None
        ]

    def metric_updates(self) -> list[Any]:
        """One bag per ParDo with its bundles' metric updates."""
        return [self.bags[node].filter(_has_tag(_METRICS)).map(_value) for node in self.pardos]


def _key(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def _group_values(group: tuple[Any, list[Any]]) -> tuple[Any, list[Any]]:
    key, pairs = group
    return key, [transform_evaluator.defenestrate(value) for _, value in pairs]


@dataclasses.dataclass
class DaskRunnerResult(beam_dask.DaskRunnerResult):
    """Beam's Dask result, with the run's metrics once it has finished."""

    metric_futures: Sequence[Any] = ()
    _metrics: DirectMetrics = dataclasses.field(default_factory=DirectMetrics)

    def wait_until_finish(self, duration: int | None = None) -> str:
        try:
            state = super().wait_until_finish(duration)
            for future in self.metric_futures:
                for updates in future.result():
                    self._add(updates)
        finally:
            if self.state in (PipelineState.DONE, PipelineState.FAILED):
                self.client.close()  # else it retries a stopped scheduler until exit
        return state

    def _add(self, updates: MetricUpdates) -> None:
        self._metrics.commit_physical(None, updates)
        self._metrics.commit_logical(None, updates)

    def metrics(self) -> DirectMetrics:
        return self._metrics


class DaskRunner(beam_dask.DaskRunner):
    """Executes a pipeline on a Dask cluster, keeping every output (see module doc).

    Raises:
      ConfigError: The installed Beam is outside :data:`SUPPORTED_BEAM`.
    """

    def __init__(self) -> None:
        check_beam_version()
        super().__init__()

    def run_pipeline(self, pipeline: beam.Pipeline, options: PipelineOptions) -> DaskRunnerResult:
        import dask.distributed as ddist

        dask_options = options.view_as(beam_dask.DaskOptions).get_all_options(
            drop_default=True, current_only=True
        )
        bag_kwargs = beam_dask.DaskOptions._extract_bag_kwargs(dask_options)
        client = ddist.Client(**dask_options)
        threads = sum(client.nthreads().values()) or 1
        pipeline.replace_all(overrides.dask_overrides())
        visitor = _BagVisitor(
            bag_kwargs, spread_partitions=bag_kwargs.get("npartitions") or 2 * threads
        )
        pipeline.visit(visitor)
        leaves = visitor.leaves()
        metric_updates = visitor.metric_updates()
        _LOGGER.info(
            "Dask: %d steps, %d leaves, %d threads on %s",
            len(visitor.bags),
            len(leaves),
            threads,
            dask_options.get("address") or "a local cluster",
        )
        # Unoptimised: fusing would run a ParDo once for each consumer.
        futures = client.compute([*leaves, *metric_updates], optimize_graph=False)
        return DaskRunnerResult(
            client, futures[: len(leaves)], metric_futures=futures[len(leaves) :]
        )
