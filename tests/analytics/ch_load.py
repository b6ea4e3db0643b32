"""Load OTLP JSON lines into chdb the way the collector's ClickHouse exporter would.

Mirrors ``exporter_traces.go`` / ``internal/metrics/sum_metrics.go`` of
opentelemetry-collector-contrib: one row per span / data point, attribute
values converted with ``pcommon.Value.AsString`` semantics (bools as
``true``/``false``, ints as decimal text, arrays as JSON), the span kind and
status code as their names, ``Duration`` = end - start in nanoseconds and
``ServiceName`` from the ``service.name`` resource attribute.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from clickhouse_ddl import METRICS_SUM, TRACES

KINDS = {0: "Unspecified", 1: "Internal", 2: "Server", 3: "Client", 4: "Producer", 5: "Consumer"}
STATUS = {0: "Unset", 1: "Ok", 2: "Error"}


def _as_string(v: dict[str, Any]) -> str:
    if "stringValue" in v:
        return v["stringValue"]
    if "boolValue" in v:
        return "true" if v["boolValue"] else "false"
    if "intValue" in v:
        return str(int(v["intValue"]))
    if "doubleValue" in v:
        f = float(v["doubleValue"])
        return str(int(f)) if f.is_integer() else repr(f)
    if "arrayValue" in v:
        return json.dumps([_raw(x) for x in v["arrayValue"].get("values", [])], separators=(",", ":"))
    return ""


def _raw(v: dict[str, Any]) -> Any:
    if "stringValue" in v:
        return v["stringValue"]
    if "boolValue" in v:
        return v["boolValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    return None


def _attrs(items: Iterable[dict[str, Any]] | None) -> dict[str, str]:
    return {a["key"]: _as_string(a.get("value", {})) for a in items or ()}


def _ts(ns: Any) -> str:
    ns = int(ns or 0)
    t = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=ns // 10**9)
    return t.strftime("%Y-%m-%d %H:%M:%S") + f".{ns % 10**9:09d}"


def rows_from_lines(lines: Iterable[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Exporter rows (traces, sums) for OTLP JSON lines."""
    traces: list[dict[str, Any]] = []
    sums: list[dict[str, Any]] = []
    for line in lines:
        req = json.loads(line)
        for rs in req.get("resourceSpans", []):
            res = _attrs(rs.get("resource", {}).get("attributes"))
            for ss in rs.get("scopeSpans", []):
                scope = ss.get("scope", {})
                for sp in ss.get("spans", []):
                    start, end = int(sp.get("startTimeUnixNano", 0)), int(sp.get("endTimeUnixNano", 0))
                    evs = sp.get("events", [])
                    traces.append({
                        "Timestamp": _ts(start), "TraceId": sp.get("traceId", ""), "SpanId": sp.get("spanId", ""),
                        "ParentSpanId": sp.get("parentSpanId", ""), "TraceState": "",
                        "SpanName": sp.get("name", ""), "SpanKind": KINDS[int(sp.get("kind", 0))],
                        "ServiceName": res.get("service.name", ""), "ResourceAttributes": res,
                        "ScopeName": scope.get("name", ""), "ScopeVersion": scope.get("version", ""),
                        "SpanAttributes": _attrs(sp.get("attributes")), "Duration": end - start,
                        "StatusCode": STATUS[int(sp.get("status", {}).get("code", 0))],
                        "StatusMessage": sp.get("status", {}).get("message", ""),
                        "Events.Timestamp": [_ts(e.get("timeUnixNano", 0)) for e in evs],
                        "Events.Name": [e.get("name", "") for e in evs],
                        "Events.Attributes": [_attrs(e.get("attributes")) for e in evs],
                        "Links.TraceId": [], "Links.SpanId": [], "Links.TraceState": [], "Links.Attributes": [],
                    })
        for rm in req.get("resourceMetrics", []):
            res = _attrs(rm.get("resource", {}).get("attributes"))
            for sm in rm.get("scopeMetrics", []):
                scope = sm.get("scope", {})
                for m in sm.get("metrics", []):
                    s = m.get("sum")
                    if s is None:
                        continue
                    for dp in s.get("dataPoints", []):
                        value = float(dp["asInt"]) if "asInt" in dp else float(dp.get("asDouble", 0))
                        sums.append({
                            "ResourceAttributes": res, "ResourceSchemaUrl": "", "ScopeName": scope.get("name", ""),
                            "ScopeVersion": scope.get("version", ""), "ScopeAttributes": {},
                            "ScopeDroppedAttrCount": 0, "ScopeSchemaUrl": "",
                            "ServiceName": res.get("service.name", ""), "MetricName": m.get("name", ""),
                            "MetricDescription": m.get("description", ""), "MetricUnit": m.get("unit", ""),
                            "Attributes": _attrs(dp.get("attributes")),
                            "StartTimeUnix": _ts(dp.get("startTimeUnixNano", 0)), "TimeUnix": _ts(dp.get("timeUnixNano", 0)),
                            "Value": value, "Flags": 0, "Exemplars.FilteredAttributes": [], "Exemplars.TimeUnix": [],
                            "Exemplars.Value": [], "Exemplars.SpanId": [], "Exemplars.TraceId": [],
                            "AggregationTemporality": int(s.get("aggregationTemporality", 0)),
                            "IsMonotonic": bool(s.get("isMonotonic", False)),
                        })
    return traces, sums


def load(session: Any, lines: Iterable[str], workdir: Path, db: str = "otel") -> None:
    """Create the exporter's tables in ``db`` and insert the rows for ``lines``."""
    session.query("SET session_timezone = 'UTC'")
    session.query(f'CREATE DATABASE IF NOT EXISTS "{db}"')
    session.query(TRACES.format(db=db))
    session.query(METRICS_SUM.format(db=db))
    traces, sums = rows_from_lines(lines)
    for table, rows in (("otel_traces", traces), ("otel_metrics_sum", sums)):
        if not rows:
            continue
        path = workdir / f"{table}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        session.query(
            f"INSERT INTO \"{db}\".\"{table}\" SELECT * FROM file('{path}', JSONEachRow) "
            "SETTINGS date_time_input_format = 'best_effort'"
        )
