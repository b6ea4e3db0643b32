"""``usagetrace collect``: an embedded OTLP/HTTP collector for development and small deployments.

It receives OTLP/HTTP (protobuf or JSON, optionally gzip) on 127.0.0.1, applies
the rules of the bundled collector configuration to every request, and appends
what is left as OTLP JSON lines in the layout of the collector's ``file``
exporter (``traces.jsonl`` / ``metrics.jsonl``, rotated by size), which
``usagetrace report DIR`` reads.

The rules are not written again here: every key, type, limit, pattern and name
comes from :mod:`allowlist` and :mod:`collector_rules`, the single source that
``collector_config`` renders into ``collector-config/allowlist.yaml``. This
module applies them in the order of the bundled pipeline
(``filter/usagetrace -> filter/allowlist -> groupbyattrs/rebuild ->
redaction/allowlist -> transform/allowlist``); ``tests/test_collect.py`` sends
the same hostile and valid requests through both paths and compares what they
store. The patterns are RE2 syntax; :func:`python_pattern` translates the
constructs they use (``\\p{..}`` classes, ``\\x{..}``, ``(?s)``, ``$``, ASCII
``\\b``) into Python ``re`` with the same meaning.

Not the production path: one process, no memory limiter, no batching, no
ClickHouse; the bundled ``otelcol-contrib`` with ClickHouse is (see
docs/deployment.md).
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import unicodedata
import zlib
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from . import allowlist, collector_rules

__all__ = [
    "MAX_BODY_BYTES",
    "Collector",
    "JsonLinesFile",
    "process_metrics",
    "process_traces",
    "python_pattern",
    "run",
]

#: Largest request body, compressed or not (the bundled receiver's ``max_request_body_size``).
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Requests decoded and stored at the same time; more get 429 and retry.
MAX_CONCURRENT_REQUESTS = 8
#: Open connections; more are answered 503 and closed.
MAX_CONNECTIONS = 64
#: An oversized body up to this size is read and discarded before the 413 (larger: the connection is closed).
_DRAIN_BYTES = 4 * MAX_BODY_BYTES
#: Seconds a client may take to send a request (read timeout of the bundled receiver).
READ_TIMEOUT = 15.0

NOT_PRODUCTION = (
    "This is the development collector: one process, no memory limiter, no batching, files only. "
    "It is not the production path: for real users, run the bundled otelcol-contrib with ClickHouse "
    "(docker compose up; see docs/deployment.md), which applies the same rules at scale."
)


# --- RE2 patterns in Python ---------------------------------------------------------------


@lru_cache(maxsize=1)
def _all_category_ranges() -> dict[str, list[tuple[int, int]]]:
    """Code point ranges of every Unicode category and major class (``Lu`` and ``L``), in one pass."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    for cp in range(sys.maxunicode + 1):
        cat = unicodedata.category(chr(cp))
        for name in (cat, cat[0]):
            got = ranges.setdefault(name, [])
            if got and got[-1][1] == cp - 1:
                got[-1] = (got[-1][0], cp)
            else:
                got.append((cp, cp))
    return ranges


@lru_cache(maxsize=None)
def _category_ranges(name: str) -> str:
    """The body of a character class for Unicode category ``name`` (``L``, ``Nd`` ...)."""
    parts = _all_category_ranges().get(name)
    if not parts:
        raise ValueError(f"unknown Unicode category {name!r}")
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in parts)


@lru_cache(maxsize=None)
def python_pattern(pattern: str) -> re.Pattern:
    """Compile an RE2 pattern (as written in collector_rules) with Go's meaning, in Python ``re``.

    Handled: ``\\p{X}`` (Unicode categories, in and out of classes), ``\\x{HHHH}``,
    ``(?s)`` (the patterns put it first, after ``^``), ``$`` (end of text only, as
    in Go without ``(?m)``) and ``\\b``/``\\d``/``\\w`` (ASCII in RE2). Anything else
    that differs between the two is refused, so a new rule cannot slip through.
    """
    out, i, in_class, flags = [], 0, False, re.ASCII
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1]
            if nxt == "p" and pattern[i + 2] == "{":
                end = pattern.index("}", i)
                body = _category_ranges(pattern[i + 3 : end])
                out.append(body if in_class else f"[{body}]")
                i = end + 1
                continue
            if nxt == "x" and pattern[i + 2] == "{":
                end = pattern.index("}", i)
                out.append(f"\\U{int(pattern[i + 3 : end], 16):08x}")
                i = end + 1
                continue
            if nxt in "PQEzACpx":
                raise ValueError(f"RE2 construct \\{nxt} is not translated: {pattern!r}")
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append(c)
        elif c == "[":
            in_class = True
            out.append(c)
            if pattern[i + 1 : i + 2] == "^":
                out.append("^")
                i += 1
            if pattern[i + 1 : i + 2] == "]":  # a literal "]" first in a class
                out.append("\\]")
                i += 1
        elif pattern.startswith("(?s)", i):
            flags |= re.DOTALL
            i += 4
            continue
        elif pattern.startswith("(?", i) and not pattern.startswith("(?:", i):
            raise ValueError(f"RE2 group {pattern[i:i + 4]!r} is not translated: {pattern!r}")
        elif c == "$":
            out.append(r"\Z")
        else:
            out.append(c)
        i += 1
    return re.compile("".join(out), flags)


# --- attribute values ---------------------------------------------------------------------


def _native(any_value) -> Any:
    """An AnyValue as a plain value (None when no value is set), like the collector's pcommon.Value."""
    which = any_value.WhichOneof("value")
    if which is None:
        return None
    v = getattr(any_value, which)
    if which == "array_value":
        return [_native(x) for x in v.values]
    if which == "kvlist_value":
        return {kv.key: _native(kv.value) for kv in v.values}
    return v


def _string_like(v: Any) -> str | None:
    """What OTTL's IsMatch reads from a value that is not a string."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, bytes):
        return v.hex()
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"), default=str)


def _is_match(value: Any, pattern: str) -> bool:
    s = _string_like(value)
    return s is not None and python_pattern(pattern).search(s) is not None


_TYPE_TEST: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "string[]": lambda v: isinstance(v, list),
}


class _Attrs:
    """Map operations on a repeated KeyValue field, with the collector's semantics (first key wins on read)."""

    def __init__(self, field) -> None:
        self.field = field

    def get(self, key: str) -> Any:
        for kv in self.field:
            if kv.key == key:
                return _native(kv.value)
        return None

    def keys(self) -> list[str]:
        return [kv.key for kv in self.field]

    def remove_if(self, predicate: Callable[[str], bool]) -> None:
        keep = [kv for kv in self.field if not predicate(kv.key)]
        if len(keep) != len(self.field):
            copies = [type(kv)() for kv in keep]
            for new, old in zip(copies, keep):
                new.CopyFrom(old)
            del self.field[:]
            self.field.extend(copies)

    def put_str(self, key: str, value: str) -> None:
        for kv in self.field:
            if kv.key == key:
                kv.value.Clear()
                kv.value.string_value = value

    def limit(self, n: int) -> None:
        if len(self.field) > n:
            del self.field[n:]

    def replace_strings(self, rx: re.Pattern, repl: Callable[[re.Match], str] | str) -> None:
        for key in self.keys():
            v = self.get(key)
            if isinstance(v, str):
                new = rx.sub(repl, v)
                if new != v:
                    self.put_str(key, new)


# --- the rules, from allowlist and collector_rules --------------------------------------------


def _place_attributes(where: str) -> list[allowlist.Attr]:
    """The attributes allowed in one place; data points carry the keys their metrics declare."""
    if where == "metric":
        by_key = {a.key: a for a in allowlist.ATTRIBUTES}
        return [by_key[k] for k in sorted({k for m in allowlist.METRICS for k in m.attributes})]
    return sorted((a for a in allowlist.ATTRIBUTES if a.where == where), key=lambda a: a.key)


def _clean_attributes(field, where: str) -> None:
    """transform/allowlist for one place: keep its keys, typed, versions and names checked, cleaned, cut."""
    rules = collector_rules
    m = _Attrs(field)
    attrs = _place_attributes(where)
    keep = {a.key for a in attrs}
    m.remove_if(lambda k: k not in keep)
    for a in attrs:
        v = m.get(a.key)
        if v is not None and not _TYPE_TEST[a.type](v):
            m.remove_if(lambda k, key=a.key: k == key)
    for a in attrs:
        if a.key in allowlist.VERSION_KEYS:
            v = m.get(a.key)
            if v is not None and not _is_match(v, rules.VERSION):
                m.remove_if(lambda k, key=a.key: k == key)
    # Names, tokens and ids of the wrong shape are masked (collector_rules.NAME_SHAPES, where defined).
    shapes = getattr(rules, "NAME_SHAPES", {})
    for a in attrs:
        pattern = shapes.get(a.key)
        v = m.get(a.key) if pattern is not None else None
        if v is not None and (not _is_match(v, pattern) or not _is_match(v, rules.NAME_LENGTH)):
            m.put_str(a.key, rules.MASK)
    item_shapes = getattr(rules, "ITEM_SHAPES", {})
    for a in attrs:
        if a.type != "string[]":
            continue
        v = m.get(a.key)
        if v is None:
            continue
        item_pattern = item_shapes.get(a.key, rules.IDENTIFIER)
        bad = len(v) > allowlist.MAX_ARRAY_ITEMS or any(
            not isinstance(item, str) or not _is_match(item, item_pattern) or not _is_match(item, rules.NAME_LENGTH)
            for item in v[: allowlist.MAX_ARRAY_ITEMS]
        )
        if bad:
            m.remove_if(lambda k, key=a.key: k == key)
    m.replace_strings(python_pattern(rules.INVALID_UTF8), rules.REPLACEMENT_CHARACTER)
    m.replace_strings(python_pattern(rules.TRUNCATE), lambda mt: mt.group(1))
    m.limit(allowlist.MAX_ATTRIBUTES)


def _redact(field) -> None:
    """redaction/allowlist: keys off the allowlist removed, blocked values masked (version keys exempt)."""
    allowed = allowlist.allowed_keys()
    ignored = set(allowlist.VERSION_KEYS)
    m = _Attrs(field)
    m.remove_if(lambda k: k not in allowed and k not in ignored)
    blocked = [python_pattern(p) for _, p in collector_rules.BLOCKED_VALUES]
    for key in m.keys():
        v = m.get(key)
        if key in ignored or not isinstance(v, str):
            continue
        new = v
        for rx in blocked:  # each pattern once, in order, on the current value
            if rx.search(new):
                new = rx.sub(collector_rules.MASK, new)
        if new != v:
            m.put_str(key, new)


def _allowed_services() -> str:
    # The bundled config's ${env:USAGETRACE_ALLOWED_SERVICES:-.+}
    return os.environ.get("USAGETRACE_ALLOWED_SERVICES") or ".+"


def _foreign(resource_item, scope_item) -> bool:
    """filter/usagetrace: not usagetrace's scope, no service.name, or a service the operator did not list."""
    if scope_item.scope.name != allowlist.SCOPE_NAME:
        return True
    service = _Attrs(resource_item.resource.attributes).get("service.name")
    return service is None or not _is_match(service, _allowed_services())


def _rebuild(item, scoped) -> None:
    """groupbyattrs/rebuild: resources and scopes made anew from their attributes."""
    item.schema_url = ""
    if item.HasField("resource"):
        item.resource.dropped_attributes_count = 0
    if hasattr(item.resource, "entity_refs") and len(item.resource.entity_refs):
        del item.resource.entity_refs[:]
    for s in scoped:
        s.schema_url = ""


def _clean_resource_and_scope(item, scoped) -> None:
    _redact(item.resource.attributes)
    for s in scoped:
        _redact(s.scope.attributes)


def _finish_resource_and_scope(item, scoped) -> None:
    _clean_attributes(item.resource.attributes, "resource")
    item.schema_url = ""
    for s in scoped:
        del s.scope.attributes[:]
        if not _is_match(s.scope.version, collector_rules.VERSION):
            s.scope.version = ""
        s.schema_url = ""


def _keep(repeated, predicate) -> None:
    kept = [x for x in repeated if predicate(x)]
    if len(kept) != len(repeated):
        copies = []
        for x in kept:
            y = type(x)()
            y.CopyFrom(x)
            copies.append(y)
        del repeated[:]
        repeated.extend(copies)


def process_traces(request) -> int:
    """Apply the bundled pipeline to an ExportTraceServiceRequest in place; return the spans dropped."""
    rules = collector_rules
    before = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    events = set(allowlist.EVENT_NAMES)
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            if _foreign(rs, ss):
                del ss.spans[:]
                continue

            def span_ok(sp) -> bool:  # filter/allowlist, span conditions
                return not (
                    len(sp.links) > 0
                    or len(sp.events) > allowlist.MAX_EVENTS
                    or not _is_match(sp.name, rules.QUALIFIED_NAME)
                    or not _is_match(sp.name, rules.NAME_LENGTH)
                )

            _keep(ss.spans, span_ok)
            for sp in ss.spans:
                _keep(sp.events, lambda ev: ev.name in events)
        _keep(rs.scope_spans, lambda ss: len(ss.spans) > 0)
    _keep(request.resource_spans, lambda rs: len(rs.scope_spans) > 0)
    for rs in request.resource_spans:
        _rebuild(rs, rs.scope_spans)
        _clean_resource_and_scope(rs, rs.scope_spans)
        for ss in rs.scope_spans:
            for sp in ss.spans:
                _redact(sp.attributes)
                for ev in sp.events:
                    _redact(ev.attributes)
        _finish_resource_and_scope(rs, rs.scope_spans)
        for ss in rs.scope_spans:
            for sp in ss.spans:
                _clean_attributes(sp.attributes, "span")
                sp.trace_state = ""
                if sp.HasField("status"):  # setting a field would make an absent status present
                    sp.status.message = ""
            for sp in ss.spans:
                for ev in sp.events:
                    _clean_attributes(ev.attributes, "event")
    after = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    return before - after


def _points(metric) -> list:
    which = metric.WhichOneof("data")
    return [] if which is None else list(getattr(metric, which).data_points)


def process_metrics(request) -> int:
    """Apply the bundled pipeline to an ExportMetricsServiceRequest in place; return the data points dropped."""
    names = {m.name: m for m in allowlist.METRICS}
    before = sum(len(_points(m)) for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            if _foreign(rm, sm):
                del sm.metrics[:]
                continue
            _keep(sm.metrics, lambda m: m.name in names and m.WhichOneof("data") == "sum")
            for m in sm.metrics:
                _keep(m.sum.data_points, lambda p: len(p.exemplars) == 0)
            _keep(sm.metrics, lambda m: len(m.sum.data_points) > 0)
        _keep(rm.scope_metrics, lambda sm: len(sm.metrics) > 0)
    _keep(request.resource_metrics, lambda rm: len(rm.scope_metrics) > 0)
    for rm in request.resource_metrics:
        _rebuild(rm, rm.scope_metrics)
        _clean_resource_and_scope(rm, rm.scope_metrics)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.sum.data_points:
                    _redact(p.attributes)
        _finish_resource_and_scope(rm, rm.scope_metrics)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                m.description = names[m.name].meaning
                m.unit = names[m.name].unit
                del m.metadata[:]
            for m in sm.metrics:
                for p in m.sum.data_points:
                    _clean_attributes(p.attributes, "metric")
    after = sum(len(_points(m)) for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)
    return before - after


# --- storage ---------------------------------------------------------------------------------


class JsonLinesFile:
    """An append-only OTLP JSON-lines file, 0600, rotated by size like the file exporter (lumberjack names)."""

    def __init__(self, directory: str, name: str, max_bytes: int, max_backups: int) -> None:
        self.directory, self.name = directory, name
        self.max_bytes, self.max_backups = max_bytes, max_backups
        self.path = os.path.join(directory, f"{name}.jsonl")
        self._lock = threading.Lock()
        self._fd = self._open()

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600)
        if hasattr(os, "fchmod"):  # an existing file keeps its mode on open: make it 0600 too
            os.fchmod(fd, 0o600)
        return fd

    def append(self, line: bytes) -> None:
        """Append one line and make it durable before returning (the request is acknowledged after)."""
        with self._lock:
            size = os.fstat(self._fd).st_size
            if size and size + len(line) + 1 > self.max_bytes:
                self._rotate()
            data = memoryview(line + b"\n")
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
            os.fsync(self._fd)

    def _rotate(self) -> None:
        os.close(self._fd)
        now_ms = time.time_ns() // 1_000_000  # one clock read: the seconds and milliseconds agree
        stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime(now_ms // 1000)) + f".{now_ms % 1000:03d}"
        target = os.path.join(self.directory, f"{self.name}-{stamp}.jsonl")
        n = 1
        while os.path.exists(target):
            target = os.path.join(self.directory, f"{self.name}-{stamp}-{n}.jsonl")
            n += 1
        os.rename(self.path, target)
        def age(name: str) -> tuple:
            # name-<stamp>.jsonl, then name-<stamp>-1.jsonl, -2 ... for backups made within one millisecond
            stem = name[len(self.name) + 1: -len(".jsonl")]
            base, _, n = stem.partition(".")[2].partition("-")
            return (stem.partition(".")[0], base, int(n) if n.isdigit() else 0)

        backups = sorted(
            (f for f in os.listdir(self.directory) if f.startswith(f"{self.name}-") and f.endswith(".jsonl")), key=age
        )
        for old in backups[: max(0, len(backups) - self.max_backups)]:
            os.unlink(os.path.join(self.directory, old))
        self._fd = self._open()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1


# --- decoding requests -------------------------------------------------------------------------

_SIGNALS = {"/v1/traces": "traces", "/v1/metrics": "metrics"}
_ID_KEYS = ("traceId", "spanId", "parentSpanId")


class BadRequest(Exception):
    """The request cannot be read: answered 400 (not retryable), nothing stored."""


def _messages(signal_name: str):
    if signal_name == "traces":
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb

        return pb.ExportTraceServiceRequest, pb.ExportTraceServiceResponse
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb

    return pb.ExportMetricsServiceRequest, pb.ExportMetricsServiceResponse


def _ids_to_base64(node) -> None:
    """OTLP/JSON writes ids as hex; the protobuf JSON parser wants base64."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
                except ValueError:
                    raise BadRequest(f"{key} is not hex") from None
            else:
                _ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _ids_to_base64(item)


def decode(signal_name: str, body: bytes, content_type: str):
    """Parse a request body (protobuf or OTLP/JSON) into its protobuf message."""
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError

    request_type, _ = _messages(signal_name)
    message = request_type()
    if content_type == "application/x-protobuf":
        try:
            message.ParseFromString(body)
        except (DecodeError, ValueError, RuntimeError) as exc:
            raise BadRequest(f"not a valid protobuf {request_type.__name__}: {exc}") from None
        return message
    try:
        data = json.loads(body.decode("utf-8"))
        if not isinstance(data, dict):
            raise BadRequest("the JSON body is not an object")
        _ids_to_base64(data)
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (UnicodeDecodeError, ValueError, json_format.ParseError, TypeError) as exc:
        raise BadRequest(f"not a valid OTLP/JSON {request_type.__name__}: {exc}") from None
    return message


def _gunzip(body: bytes) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise BadRequest(f"bad gzip body: {exc}") from None
    if len(out) > MAX_BODY_BYTES or d.unconsumed_tail:
        raise _TooLarge()
    if not d.eof:
        raise BadRequest("truncated gzip body")
    return out


class _TooLarge(Exception):
    pass


def _status_body(code: int, message: str, content_type: str) -> bytes:
    """A google.rpc.Status, as OTLP/HTTP error responses carry (hand-encoded: two fields)."""
    if content_type == "application/json":
        return json.dumps({"code": code, "message": message}).encode()
    msg = message.encode("utf-8")

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            b, n = n & 0x7F, n >> 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    return b"\x08" + varint(code) + b"\x12" + varint(len(msg)) + msg


# --- the server ---------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for requests in flight: none is cut off once read
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address, handler, collector: Collector) -> None:
        self.collector = collector
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        c = self.collector
        with c._lock:
            full = len(c._connections) >= MAX_CONNECTIONS
            if not full:
                c._connections[request] = False  # idle
        if full:
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
                                b"Connection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.collector._lock:
            self.collector._connections.pop(request, None)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    server_version = "usagetrace-collect"
    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def handle_one_request(self):
        c: Collector = self.server.collector
        if c._stopping.is_set():
            self.close_connection = True
            return
        try:
            super().handle_one_request()
        finally:
            with c._lock:
                if self.connection in c._connections:
                    c._connections[self.connection] = False

    def _reply(self, status: int, body: bytes, content_type: str, retry_after: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        if self.close_connection or self.server.collector._stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, content_type: str, retry_after: int | None = None) -> None:
        grpc_code = {400: 3, 404: 12, 405: 12, 411: 3, 413: 8, 415: 3, 429: 8, 503: 14}.get(status, 13)
        self._reply(status, _status_body(grpc_code, message, content_type), content_type, retry_after)

    def do_GET(self):
        self.close_connection = True
        self._error(405, "only POST is accepted", "application/json")

    def do_POST(self):
        c: Collector = self.server.collector
        with c._lock:
            c._connections[self.connection] = True  # busy: not cut at shutdown
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        reply_type = "application/json" if ctype == "application/json" else "application/x-protobuf"
        signal_name = _SIGNALS.get(self.path.split("?")[0])
        length_text = self.headers.get("Content-Length")
        if signal_name is None or length_text is None or not length_text.isdigit():
            self.close_connection = True  # the body is not read: the connection cannot be reused
            if signal_name is None:
                return self._error(404, f"no such path {self.path[:100]!r}: use /v1/traces or /v1/metrics", reply_type)
            return self._error(411, "a Content-Length is required", reply_type)
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            c._count("rejected_too_large")
            if length <= _DRAIN_BYTES:  # read and discard, so the sender sees the 413 and not a broken pipe
                left = length
                while left:
                    chunk = self.rfile.read(min(left, 65536))
                    if not chunk:
                        return
                    left -= len(chunk)
            return self._error(413, f"request body over {MAX_BODY_BYTES} bytes", reply_type)
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return
        if c._stopping.is_set():
            return self._error(503, "the collector is stopping", reply_type, retry_after=1)
        if ctype not in ("application/x-protobuf", "application/json"):
            return self._error(415, "Content-Type must be application/x-protobuf or application/json", reply_type)
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            return self._error(415, f"unsupported Content-Encoding {encoding[:40]!r} (gzip or none)", reply_type)
        if not c._slots.acquire(blocking=False):
            c._count("rejected_busy")
            return self._error(429, "too many requests at once; retry", reply_type, retry_after=1)
        try:
            try:
                if encoding == "gzip":
                    body = _gunzip(body)
                message = decode(signal_name, body, ctype)
            except _TooLarge:
                c._count("rejected_too_large")
                return self._error(413, f"decompressed body over {MAX_BODY_BYTES} bytes", reply_type)
            except BadRequest as exc:
                c._count("rejected_bad")
                return self._error(400, str(exc)[:500], reply_type)
            try:
                response = c.accept(signal_name, message)
            except OSError as exc:  # disk full, permissions: not stored, so not acknowledged
                c._say(f"could not store a {signal_name} request: {exc}")
                return self._error(503, "the collector could not store the request", reply_type, retry_after=5)
        finally:
            c._slots.release()
        if reply_type == "application/json":
            from google.protobuf.json_format import MessageToJson

            out = MessageToJson(response, indent=None).encode()
        else:
            out = response.SerializeToString()
        self._reply(200, out, reply_type)


class Collector:
    """The embedded collector: an HTTP server on ``host:port`` writing to ``directory``."""

    def __init__(
        self,
        directory: str,
        *,
        host: str = "127.0.0.1",
        port: int = 4318,
        max_megabytes: int = 64,
        max_backups: int = 100,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.directory = os.path.abspath(directory)
        created = not os.path.isdir(self.directory)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        if created:
            os.chmod(self.directory, 0o700)
        self._files = {
            s: JsonLinesFile(self.directory, s, max_megabytes * 1024 * 1024, max_backups) for s in ("traces", "metrics")
        }
        self._say_fn = say
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, bool] = {}
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT_REQUESTS)
        self._stopping = threading.Event()
        self.counts = {"requests": 0, "spans": 0, "points": 0, "dropped_spans": 0, "dropped_points": 0,
                       "rejected_bad": 0, "rejected_busy": 0, "rejected_too_large": 0}
        self._server = _Server((host, port), _Handler, self)
        self.host, self.port = self._server.server_address[:2]
        self._thread: threading.Thread | None = None

    def _say(self, text: str) -> None:
        if self._say_fn is not None:
            self._say_fn(text)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def accept(self, signal_name: str, message):
        """Apply the rules to one decoded request, store what is left durably, return the OTLP response."""
        from google.protobuf.json_format import MessageToDict

        _, response_type = _messages(signal_name)
        if signal_name == "traces":
            dropped = process_traces(message)
            kept = sum(len(ss.spans) for rs in message.resource_spans for ss in rs.scope_spans)
        else:
            dropped = process_metrics(message)
            kept = sum(len(_points(m)) for rm in message.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)
        if kept:
            data = MessageToDict(message, use_integers_for_enums=True)
            _hex_ids(data)
            self._files[signal_name].append(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
        response = response_type()
        with self._lock:
            self.counts["requests"] += 1
            self.counts["spans" if signal_name == "traces" else "points"] += kept
            self.counts["dropped_spans" if signal_name == "traces" else "dropped_points"] += dropped
        if dropped:
            what = "spans" if signal_name == "traces" else "data points"
            response.partial_success.error_message = (
                f"{dropped} {what} dropped by the usagetrace collector rules (not from usagetrace, "
                "or a shape usagetrace never sends)"
            )
            if signal_name == "traces":
                response.partial_success.rejected_spans = dropped
            else:
                response.partial_success.rejected_data_points = dropped
        return response

    def start(self) -> Collector:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="usagetrace-collect", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, let requests in flight finish and store, close the files."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
        with self._lock:
            idle = [s for s, busy in self._connections.items() if not busy]
        for s in idle:  # a keep-alive connection waiting for its next request: nothing to lose
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()  # joins the request threads
        for f in self._files.values():
            f.close()

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _hex_ids(node) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)


def default_directory() -> str:
    """Where ``usagetrace collect`` writes without ``--dir``: the per-user data directory."""
    from . import paths

    return os.path.join(paths.user_dir("data"), "collected")


def run(directory: str, *, host: str, port: int, max_megabytes: int, max_backups: int, quiet: bool = False) -> int:
    """Run in the foreground until SIGINT/SIGTERM; return the exit status."""
    err = sys.stderr

    def say(text: str) -> None:
        print(f"usagetrace collect: {text}", file=err, flush=True)

    try:
        collector = Collector(directory, host=host, port=port, max_megabytes=max_megabytes,
                              max_backups=max_backups, say=say)
    except OSError as exc:
        say(f"cannot start on {host}:{port} writing to {directory}: {exc}")
        return 1
    # Compile every rule now: a rule that cannot be translated stops the start, not a request.
    process_traces(_messages("traces")[0]())
    for _, p in collector_rules.BLOCKED_VALUES:
        python_pattern(p)
    for p in (collector_rules.VERSION, collector_rules.IDENTIFIER, collector_rules.QUALIFIED_NAME,
              collector_rules.NAME_LENGTH, collector_rules.TRUNCATE, collector_rules.INVALID_UTF8,
              *getattr(collector_rules, "NAME_SHAPES", {}).values(), *getattr(collector_rules, "ITEM_SHAPES", {}).values()):
        python_pattern(p)
    stop = threading.Event()
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    collector.start()
    endpoint = f"http://{collector.host}:{collector.port}"
    say(f"listening on {endpoint} (OTLP/HTTP: /v1/traces, /v1/metrics), writing to {collector.directory}")
    say(NOT_PRODUCTION)
    if collector.host not in ("127.0.0.1", "::1", "localhost"):
        say(f"warning: listening on {collector.host}, beyond this machine, with no TLS and no authentication")
    say(f"send to it:  OTEL_EXPORTER_OTLP_ENDPOINT={endpoint} <your program>")
    say(f"read it:     usagetrace report {collector.directory} --k 1   (Ctrl-C stops this collector)")
    try:
        for _ in iter(int, 1):  # until a signal; each wait is bounded so a signal is seen promptly
            if stop.wait(0.5):
                break
    finally:
        collector.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    c = collector.counts
    if not quiet:
        say(
            f"stopped. Stored {c['spans']} span(s) and {c['points']} data point(s) from {c['requests']} request(s); "
            f"dropped by the rules: {c['dropped_spans']} span(s), {c['dropped_points']} data point(s); "
            f"refused: {c['rejected_bad']} unreadable, {c['rejected_too_large']} too large, "
            f"{c['rejected_busy']} while busy (retried by the sender)."
        )
    return 0
