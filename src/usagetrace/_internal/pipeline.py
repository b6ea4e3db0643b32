"""The private OpenTelemetry pipeline of one package: samples in, OTLP bytes out.

Imported only by the delivery thread (or a flush), never on the import path.
Each package gets its own ``TracerProvider`` with an anonymized ``Resource``
built directly from the allowlist, a :class:`ConsentSampler`, and a processor
that hands finished spans back to usagetrace. Nothing global is set: the host
application's providers, context and exporters are never touched, and our
spans are always roots (created with an empty context, never attached).

Counts are emitted as OTLP delta sums built with the SDK's metric data model
from usagetrace's exact tallies (the SDK's ``Counter.add`` costs microseconds
per call; see ``recorder.py``).
"""

from __future__ import annotations

import random

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode, get_current_span

from .. import __version__
from . import allowlist, sanitize
from .allowlist import MAX_ARRAY_ITEMS, MAX_ATTRIBUTES, MAX_EVENTS, MAX_VALUE_LENGTH, SCOPE_NAME
from .clock import clamp_ns

_METRIC_META = {m.name: m for m in allowlist.METRICS}
#: Count key kind -> (metric, its point attributes in key order). The first three come from
#: the recorder; the rest only from daily and weekly uploads (``aggregate.Tally``).
_KEYS = {
    "calls": ("usagetrace.calls", ("code.function.name", "usagetrace.outcome")),
    "errors": ("usagetrace.errors", ("code.function.name", "error.type")),
    "dropped": ("usagetrace.dropped", ("usagetrace.drop.reason",)),
    "runs": ("usagetrace.runs", ()),
    "commands": ("usagetrace.commands", ("usagetrace.command.name", "usagetrace.outcome")),
    "events": ("usagetrace.events", ("usagetrace.event.name",)),
    "measurements": ("usagetrace.measurements",
                     ("usagetrace.command.name", "usagetrace.measurement", "usagetrace.measurement.value")),
    "measurement_sum": ("usagetrace.measurement.sum", ("usagetrace.command.name", "usagetrace.measurement")),
}
_EMPTY_CONTEXT = Context()


def clean(attributes: dict, allowed: frozenset) -> dict:
    """Return only allowlisted keys, with values capped; drop anything of another type."""
    out = {}
    for key, value in attributes.items():
        if key not in allowed or len(out) >= MAX_ATTRIBUTES:
            continue
        if isinstance(value, bool) or isinstance(value, (int, float)):
            out[key] = value
        elif isinstance(value, str):
            out[key] = value[:MAX_VALUE_LENGTH]
        elif isinstance(value, (list, tuple)):
            items = [v[:MAX_VALUE_LENGTH] for v in value if isinstance(v, str)][:MAX_ARRAY_ITEMS]
            out[key] = items
    return out


class PrivateIdGenerator(IdGenerator):
    """Trace and span ids from a private ``random.Random`` seeded from the OS.

    The SDK's default generator draws from the global ``random`` module: making
    spans would then advance the host's own seeded random sequence (a
    ``random.seed(42)`` in the host would stop being reproducible).
    """

    def __init__(self) -> None:
        self._rng = random.Random()

    def generate_span_id(self) -> int:
        value = 0
        while value == 0:
            value = self._rng.getrandbits(64)
        return value

    def generate_trace_id(self) -> int:
        value = 0
        while value == 0:
            value = self._rng.getrandbits(128)
        return value

    def is_trace_id_random(self) -> bool:
        return True


class ConsentSampler(Sampler):
    """Drops every span unless its package has consent at the moment the span is made.

    Also drops any span that would become a child of another span: usagetrace
    spans are roots and never join the host application's traces.
    """

    def __init__(self, is_enabled) -> None:
        self._is_enabled = is_enabled

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
        try:
            parent = get_current_span(parent_context) if parent_context is not None else None
            if parent is not None and parent.get_span_context().is_valid:
                return SamplingResult(Decision.DROP)
            if self._is_enabled():
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        except Exception:
            pass
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "usagetrace.ConsentSampler"


class _Collect(SpanProcessor):
    """Keeps finished spans for the pipeline to encode; a plain list, filled and drained by one thread."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class Pipeline:
    """One package's private TracerProvider, and the encoders for its data."""

    def __init__(self, resource_attributes: dict, is_enabled, extra_keys: frozenset = frozenset()) -> None:
        self.resource = Resource(clean(resource_attributes, allowlist.allowed_keys("resource")))
        self.scope = InstrumentationScope(SCOPE_NAME, __version__)
        self.span_keys = allowlist.allowed_keys("span") | extra_keys
        self.event_keys = allowlist.allowed_keys("event")
        self.metric_keys = frozenset(k for m in allowlist.METRICS for k in m.attributes)
        self._collect = _Collect()
        self.provider = TracerProvider(
            sampler=ConsentSampler(is_enabled),
            id_generator=PrivateIdGenerator(),
            resource=self.resource,
            shutdown_on_exit=False,
            span_limits=SpanLimits(
                max_span_attributes=MAX_ATTRIBUTES,
                max_event_attributes=MAX_ATTRIBUTES,
                max_attribute_length=MAX_VALUE_LENGTH,
                max_events=MAX_EVENTS,
                max_links=0,
            ),
        )
        self.provider.add_span_processor(self._collect)
        self.tracer = self.provider.get_tracer(SCOPE_NAME, __version__)

    def spans(self, samples) -> list[ReadableSpan]:
        """Turn samples into finished SDK spans (those the sampler keeps)."""
        for sample in samples:
            name, start, end, attributes, error = sample
            start, end = clamp_ns(start), clamp_ns(end)  # a host clock patched in C can say anything
            span = self.tracer.start_span(
                name,
                context=_EMPTY_CONTEXT,
                kind=SpanKind.INTERNAL,
                attributes=clean(attributes, self.span_keys),
                start_time=start,
            )
            if error is not None:
                type_name, frames, signature = error
                span.set_attribute("error.type", type_name)
                span.set_attribute("usagetrace.exception.signature", signature)
                span.add_event(
                    "exception",
                    clean(
                        {"exception.type": type_name, "exception.stacktrace": sanitize.stacktrace(frames)},
                        self.event_keys,
                    ),
                    timestamp=end,
                )
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=max(end, start))
        out, self._collect.spans = self._collect.spans, []
        return out

    def metrics(self, deltas: dict, start_ns: int, end_ns: int, sums: dict | None = None) -> MetricsData | None:
        """Build delta sums from ``{key: increment}`` as produced by the recorder's counts.

        Daily and weekly uploads add the keys of :data:`_AGGREGATED` (counted by
        ``aggregate.Tally``) and ``sums``, ``{("measurement_sum", command,
        measurement): float}``, sent as non-monotonic sums.
        """
        points: dict[str, list] = {}
        start_ns, end_ns = clamp_ns(start_ns), clamp_ns(end_ns)
        start_ns = min(start_ns, end_ns)
        items = [(key, value, int) for key, value in deltas.items() if value > 0]
        items += [(key, value, float) for key, value in (sums or {}).items()]
        for key, value, kind in items:
            spec = _KEYS.get(key[0])
            if spec is None or len(key) != len(spec[1]) + 1:
                continue
            name, attr_names = spec
            attrs = dict(zip(attr_names, key[1:]))
            points.setdefault(name, []).append(
                NumberDataPoint(
                    attributes=clean(attrs, self.metric_keys),
                    start_time_unix_nano=start_ns,
                    time_unix_nano=end_ns,
                    value=kind(value),
                )
            )
        if not points:
            return None
        metrics = [
            Metric(
                name=name,
                description=_METRIC_META[name].meaning,
                unit=_METRIC_META[name].unit,
                data=Sum(
                    data_points=data_points,
                    aggregation_temporality=AggregationTemporality.DELTA,
                    is_monotonic=name != "usagetrace.measurement.sum",
                ),
            )
            for name, data_points in sorted(points.items())
        ]
        return MetricsData(
            resource_metrics=[
                ResourceMetrics(
                    resource=self.resource,
                    scope_metrics=[ScopeMetrics(scope=self.scope, metrics=metrics, schema_url="")],
                    schema_url="",
                )
            ]
        )


def encode_trace_request(spans) -> bytes:
    """Return an OTLP ``ExportTraceServiceRequest`` as protobuf bytes."""
    return encode_spans(spans).SerializeToString()


def encode_metric_request(data: MetricsData) -> bytes:
    """Return an OTLP ``ExportMetricsServiceRequest`` as protobuf bytes."""
    return encode_metrics(data).SerializeToString()


def merge_metrics(parts: list) -> MetricsData | None:
    """One ``MetricsData`` for several (one request for many resources and periods).

    Points of equal resources end up under one ``ResourceMetrics`` (each
    keeps its own start and end): the encoder keys resources by their
    attributes, so a second ``ResourceMetrics`` of the same resource would
    replace the first one's metrics.
    """
    merged: dict = {}
    for data in parts:
        for rm in data.resource_metrics if data is not None else ():
            resource, by_name = merged.setdefault(rm.resource, (rm.resource, {}))
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    old = by_name.get(metric.name)
                    if old is not None:
                        data = metric.data
                        points = list(old.data.data_points) + list(data.data_points)
                        metric = Metric(name=metric.name, description=metric.description, unit=metric.unit,
                                        data=Sum(data_points=points, is_monotonic=data.is_monotonic,
                                                 aggregation_temporality=data.aggregation_temporality))
                    by_name[metric.name] = metric
    if not merged:
        return None
    scope = InstrumentationScope(SCOPE_NAME, __version__)
    return MetricsData(resource_metrics=[
        ResourceMetrics(resource=resource, schema_url="",
                        scope_metrics=[ScopeMetrics(scope=scope, metrics=[by_name[n] for n in sorted(by_name)],
                                                    schema_url="")])
        for resource, by_name in merged.values()
    ])
