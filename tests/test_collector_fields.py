"""Every OTLP field the exporters can store is handled by the bundled collector configuration.

Two sources of "what can be stored", neither of them this project's own list:

* the file exporter writes whole OTLP export requests as JSON, so every field
  of the protocol is stored: the fields are read from the OTLP protobuf
  descriptors (``opentelemetry-proto``);
* the ClickHouse exporter maps requests to table columns: the columns are read
  from its DDL (``tests/analytics/clickhouse_ddl.py`` for the two tables the
  dashboard reads; the other metric tables' columns below, read from the same
  exporter's ``internal/sqltemplates/metrics_*_table.sql``).

Each field that can carry text or bytes must have an entry in
``collector_rules.FIELDS``, and the config each entry names must be in the
merged collector configuration, in a processor of that signal's pipeline.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
pb_trace = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
pb_metrics = pytest.importorskip("opentelemetry.proto.collector.metrics.v1.metrics_service_pb2")

from tests.analytics import clickhouse_ddl  # noqa: E402
from tests.collector_emulator import load  # noqa: E402
from usagetrace._internal import collector_rules  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = [ROOT / "collector-config" / "collector.yaml", ROOT / "collector-config" / "allowlist.yaml"]

_TEXT_TYPES = {9, 12}  # TYPE_STRING, TYPE_BYTES


def _short(descriptor) -> str:
    return ".".join(p for p in descriptor.full_name.split(".") if p[:1].isupper())


def proto_text_fields() -> list[str]:
    """``Message.field`` of every string, bytes or attribute-list field under the export requests.

    A message field that ``collector_rules.FIELDS`` handles as a whole (e.g.
    ``Resource.entity_refs``) is not descended into.
    """
    out: list[str] = []

    def walk(descriptor, seen: frozenset) -> None:
        for field in descriptor.fields:
            name = f"{_short(descriptor)}.{field.name}"
            msg = field.message_type
            if msg is None:
                if field.type in _TEXT_TYPES:
                    out.append(name)
                continue
            if msg.full_name.endswith(".KeyValue") or name in collector_rules.FIELDS:
                out.append(name)
            elif msg.full_name not in seen:
                walk(msg, seen | {msg.full_name})

    for request in (pb_trace.ExportTraceServiceRequest, pb_metrics.ExportMetricsServiceRequest):
        for field in request.DESCRIPTOR.fields:  # resource_spans / resource_metrics
            walk(field.message_type, frozenset({field.message_type.full_name}))
    return sorted(set(out))


# ClickHouse columns of the tables the exporter writes for traces and metrics, mapped to the
# OTLP field each one stores (None: a number or a timestamp; ENUM: the name of an enum value).
ENUM = "enum"
_COMMON_METRIC_COLUMNS = {
    "ResourceAttributes": "Resource.attributes",
    "ResourceSchemaUrl": "ResourceMetrics.schema_url",
    "ScopeName": "InstrumentationScope.name",
    "ScopeVersion": "InstrumentationScope.version",
    "ScopeAttributes": "InstrumentationScope.attributes",
    "ScopeDroppedAttrCount": None,
    "ScopeSchemaUrl": "ScopeMetrics.schema_url",
    "ServiceName": "Resource.attributes",
    "MetricName": "Metric.name",
    "MetricDescription": "Metric.description",
    "MetricUnit": "Metric.unit",
    "StartTimeUnix": None,
    "TimeUnix": None,
    "Flags": None,
    "Exemplars.FilteredAttributes": "Exemplar.filtered_attributes",
    "Exemplars.TimeUnix": None,
    "Exemplars.Value": None,
    "Exemplars.SpanId": "Exemplar.span_id",
    "Exemplars.TraceId": "Exemplar.trace_id",
}
COLUMN_FIELDS = {
    "otel_traces": {
        "Timestamp": None,
        "TraceId": "Span.trace_id",
        "SpanId": "Span.span_id",
        "ParentSpanId": "Span.parent_span_id",
        "TraceState": "Span.trace_state",
        "SpanName": "Span.name",
        "SpanKind": ENUM,
        "ServiceName": "Resource.attributes",
        "ResourceAttributes": "Resource.attributes",
        "ScopeName": "InstrumentationScope.name",
        "ScopeVersion": "InstrumentationScope.version",
        "SpanAttributes": "Span.attributes",
        "Duration": None,
        "StatusCode": ENUM,
        "StatusMessage": "Status.message",
        "Events.Timestamp": None,
        "Events.Name": "Span.Event.name",
        "Events.Attributes": "Span.Event.attributes",
        "Links.TraceId": "Span.Link.trace_id",
        "Links.SpanId": "Span.Link.span_id",
        "Links.TraceState": "Span.Link.trace_state",
        "Links.Attributes": "Span.Link.attributes",
    },
    "otel_metrics_sum": {
        **_COMMON_METRIC_COLUMNS,
        "Attributes": "NumberDataPoint.attributes",
        "Value": None,
        "AggregationTemporality": None,
        "IsMonotonic": None,
    },
}
# Read from metrics_{gauge,histogram,exp_histogram,summary}_table.sql of the same exporter
# (string-typed columns only; the rest are numbers). Every metric of these types is dropped.
OTHER_METRIC_TABLES = {
    "otel_metrics_gauge": ("NumberDataPoint.attributes", ()),
    "otel_metrics_histogram": ("HistogramDataPoint.attributes", ()),
    "otel_metrics_exponential_histogram": ("ExponentialHistogramDataPoint.attributes", ()),
    "otel_metrics_summary": ("SummaryDataPoint.attributes", ()),
}

_COLUMN = re.compile(r"^\s*([A-Z][A-Za-z]+)\s+(.+?)(?:\s+CODEC\(.*)?,?\s*$")


def ddl_columns(ddl: str) -> dict[str, str]:
    """``{column: type}`` of a CREATE TABLE, Nested sub-columns as ``Parent.Child``."""
    cols: dict[str, str] = {}
    nested = None
    for line in ddl.splitlines():
        stripped = line.strip()
        if nested is not None:
            if stripped.startswith(")"):
                nested = None
                continue
            m = re.match(r"([A-Z][A-Za-z]+)\s+(.+?),?$", stripped)
            if m:
                cols[f"{nested}.{m.group(1)}"] = m.group(2)
            continue
        m = re.match(r"([A-Z][A-Za-z]+)\s+Nested\s*\($", stripped)
        if m:
            nested = m.group(1)
            continue
        m = _COLUMN.match(line)
        if m and not stripped.startswith(("INDEX", "CREATE", "ORDER", "PARTITION", "SETTINGS")):
            cols[m.group(1)] = m.group(2)
    return cols


def _is_text(column_type: str) -> bool:
    return "String" in column_type or column_type.startswith("Map(")


def test_every_protocol_text_field_has_a_rule():
    """Each string/bytes/attribute field of OTLP traces and metrics (as the file exporter stores them) has a rule."""
    fields = proto_text_fields()
    assert "Span.trace_state" in fields and "Metric.unit" in fields and "Resource.entity_refs" in fields
    missing = [f for f in fields if f not in collector_rules.FIELDS]
    assert missing == [], missing


@pytest.mark.parametrize("table,ddl", [("otel_traces", clickhouse_ddl.TRACES), ("otel_metrics_sum", clickhouse_ddl.METRICS_SUM)])
def test_every_clickhouse_column_is_mapped_and_handled(table, ddl):
    """Every column of the exporter's table is known; each text column's OTLP field has a rule."""
    cols = ddl_columns(ddl)
    mapping = COLUMN_FIELDS[table]
    assert set(cols) == set(mapping), (set(cols) ^ set(mapping))
    for column, column_type in cols.items():
        field = mapping[column]
        if field == ENUM:
            continue
        if _is_text(column_type):
            assert field in collector_rules.FIELDS, (column, field)
        else:
            assert field is None or field in collector_rules.FIELDS, (column, column_type)


def test_metric_types_without_a_table_rule_are_dropped():
    """Gauge, histogram, exponential-histogram and summary tables stay empty: those metric types are dropped."""
    cfg = load(CONFIG, env={})
    metric_conditions = cfg["processors"]["filter/allowlist"]["metrics"]["metric"]
    assert "type != METRIC_DATA_TYPE_SUM" in metric_conditions
    for _table, (field, _) in OTHER_METRIC_TABLES.items():
        assert field in collector_rules.FIELDS


def _section(cfg: dict, check: collector_rules.Check):
    proc = cfg["processors"][check.component]
    if "/" in check.section:
        group, context = check.section.split("/")
        if check.component.startswith("transform"):
            return [s for g in proc[group] if g["context"] == context for s in g["statements"]]
        return proc[group][context]
    return proc[check.section]


def test_every_rule_is_in_the_merged_config_and_in_the_pipelines():
    """The config each FIELDS entry names exists, and its processor runs in the traces and metrics pipelines."""
    cfg = load(CONFIG, env={})
    pipelines = cfg["service"]["pipelines"]
    for field, handling in collector_rules.FIELDS.items():
        for check in handling.checks:
            for name in ("traces", "metrics"):
                assert check.component in pipelines[name]["processors"], (field, check.component, name)
            section = _section(cfg, check)
            if check.text == "[]":
                assert section == [], (field, check)
            elif check.text:
                assert any(check.text in entry for entry in section), (field, check)
            else:
                assert section, (field, check)
        if not handling.checks:
            assert field.endswith("_id"), f"{field} has no rule in the config"


def test_deployment_doc_lists_every_field_rule():
    """docs/deployment.md's field table says, for every field, what FIELDS says."""
    doc = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    for field, handling in collector_rules.FIELDS.items():
        assert f"| `{field}` | {handling.how} |" in doc, field
