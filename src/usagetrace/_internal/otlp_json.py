"""OTLP protobuf requests as OTLP/JSON, the encoding the collector's ``file`` exporter writes.

Differences from plain proto3 JSON, per the OTLP specification: trace and span
ids are lowercase hex (not base64), and enums are integers.
"""

from __future__ import annotations

import base64
import json

_ID_KEYS = ("traceId", "spanId", "parentSpanId")


#: Bound once by :func:`prepare` (the delivery thread's imports happen before its first export, never
#: during one: see ``delivery._Deps``): (ExportTraceServiceRequest, ExportMetricsServiceRequest, MessageToDict).
_BOUND = None


def prepare() -> tuple:
    """Import protobuf's ``json_format`` and the two OTLP request classes, once; later calls import nothing."""
    global _BOUND
    if _BOUND is None:
        from google.protobuf.json_format import MessageToDict
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        _BOUND = (ExportTraceServiceRequest, ExportMetricsServiceRequest, MessageToDict)
    return _BOUND


def _message_type(signal: str):
    traces, metrics, _ = prepare()
    return traces if signal == "traces" else metrics


def _fix_ids(node) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _fix_ids(value)
    elif isinstance(node, list):
        for item in node:
            _fix_ids(item)


def to_dict(signal: str, payload: bytes) -> dict:
    """Decode protobuf request bytes into an OTLP/JSON dict."""
    MessageToDict = prepare()[2]
    message = _message_type(signal)()
    message.ParseFromString(payload)
    data = MessageToDict(message, use_integers_for_enums=True)
    _fix_ids(data)
    return data


def to_json(signal: str, payload: bytes, indent: int | None = None) -> str:
    """Decode protobuf request bytes into one OTLP/JSON document (one line unless indented)."""
    separators = (",", ":") if indent is None else None
    return json.dumps(to_dict(signal, payload), indent=indent, separators=separators, sort_keys=False)
