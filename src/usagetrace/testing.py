"""Helpers for asserting what a package would send, in its own test suite.

Two tools:

* :func:`capture` forces consent on for a package and keeps every export in
  memory, decoded::

      from usagetrace.testing import capture

      def test_reports_usage():
          with capture("mypkg") as cap:
              mypkg.read_table("x.csv")
          assert cap.calls("mypkg.read_table") == 1
          assert cap.spans("mypkg.read_table")[0]["attributes"]["usagetrace.args.count"] == 1

* :class:`OTLPReceiver` is a real OTLP/HTTP (and optionally gRPC) receiver on
  127.0.0.1 that decodes requests with ``opentelemetry-proto``, for end-to-end
  tests over the wire. It can also misbehave on purpose (status codes,
  ``Retry-After``, slow or never-answering responses) to test failure handling.
"""

from __future__ import annotations

import contextlib
import gzip
import threading
from typing import Any, Callable, Iterator

from ._internal import clock

_clock = clock.REAL  # the real clocks, even while the host fakes its own (clock.py)

__all__ = ["Capture", "OTLPReceiver", "capture", "disabled", "flatten", "is_wrapped", "original"]


def __dir__() -> list[str]:
    # The public names only: not the imports this module needs (annotations, Any, gzip, threading ...).
    return sorted(__all__)


def _value(v: dict) -> Any:
    if "stringValue" in v:
        return v["stringValue"]
    if "boolValue" in v:
        return v["boolValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return v["doubleValue"]
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return {kv["key"]: _value(kv.get("value", {})) for kv in v["kvlistValue"].get("values", [])}
    return None


def _attrs(items) -> dict:
    return {kv["key"]: _value(kv.get("value", {})) for kv in items or []}


def flatten(signal: str, request: dict) -> list[dict]:
    """Flatten one OTLP/JSON request into simple dicts: one per span or per metric point.

    Spans: ``name``, ``attributes``, ``resource``, ``scope``, ``status`` (0 unset,
    1 ok, 2 error), ``events`` (list of ``{"name", "attributes"}``), ``start``,
    ``end`` (ns), ``trace_id``, ``span_id``, ``parent_span_id``. Points:
    ``metric``, ``attributes``, ``resource``, ``scope``, ``value``, ``start``,
    ``time``, ``temporality``.
    """
    out = []
    if signal == "traces":
        for rs in request.get("resourceSpans", []):
            resource = _attrs(rs.get("resource", {}).get("attributes"))
            for ss in rs.get("scopeSpans", []):
                scope = ss.get("scope", {}).get("name", "")
                for span in ss.get("spans", []):
                    out.append(
                        {
                            "name": span.get("name", ""),
                            "attributes": _attrs(span.get("attributes")),
                            "resource": resource,
                            "scope": scope,
                            "status": int(span.get("status", {}).get("code", 0)),
                            "events": [
                                {"name": e.get("name", ""), "attributes": _attrs(e.get("attributes"))}
                                for e in span.get("events", [])
                            ],
                            "start": int(span.get("startTimeUnixNano", 0)),
                            "end": int(span.get("endTimeUnixNano", 0)),
                            "trace_id": span.get("traceId", ""),
                            "span_id": span.get("spanId", ""),
                            "parent_span_id": span.get("parentSpanId", ""),
                        }
                    )
    else:
        for rm in request.get("resourceMetrics", []):
            resource = _attrs(rm.get("resource", {}).get("attributes"))
            for sm in rm.get("scopeMetrics", []):
                scope = sm.get("scope", {}).get("name", "")
                for metric in sm.get("metrics", []):
                    data = metric.get("sum") or metric.get("gauge") or {}
                    for p in data.get("dataPoints", []):
                        value = int(p["asInt"]) if "asInt" in p else p.get("asDouble", 0)
                        out.append(
                            {
                                "metric": metric.get("name", ""),
                                "attributes": _attrs(p.get("attributes")),
                                "resource": resource,
                                "scope": scope,
                                "value": value,
                                "start": int(p.get("startTimeUnixNano", 0)),
                                "time": int(p.get("timeUnixNano", 0)),
                                "temporality": int(data.get("aggregationTemporality", 0)),
                            }
                        )
    return out


def is_wrapped(func) -> bool:
    """True when ``func`` is a usagetrace wrapper (a function standing for a counted public callable).

    Wrappers are real functions with the original's signature and attributes,
    so ``type()`` and ``isinstance`` cannot tell; this can. Also true for a
    bound method of a wrapped method.
    """
    import sys

    wrappers = sys.modules.get("usagetrace._internal.wrappers")
    return wrappers is not None and wrappers.is_trampoline(getattr(func, "__func__", func))


def original(func):
    """The function a usagetrace wrapper stands for; ``func`` itself when it is not wrapped."""
    import sys

    wrappers = sys.modules.get("usagetrace._internal.wrappers")
    found = wrappers.original_of(getattr(func, "__func__", func)) if wrappers is not None else None
    return found if found is not None else func


def _batch_ids(signal: str, request: dict) -> tuple:
    """The request's ``usagetrace.batch.id`` values (none for data from versions without them)."""
    key = "resourceSpans" if signal == "traces" else "resourceMetrics"
    ids = (_attrs(r.get("resource", {}).get("attributes")).get("usagetrace.batch.id") for r in request.get(key, []))
    return tuple(sorted({str(i) for i in ids if i is not None}))


class _Decoded:
    """Shared query helpers over a list of decoded (signal, OTLP/JSON dict) requests.

    Spans, points and calls count each request once by its ``usagetrace.batch.id``, as storage does
    (DuckDB, ClickHouse, ``usagetrace report``): delivery is at least once, and a request resent because
    its answer never came (a fork paused the sender, a connection reset) is the same batch. ``requests``
    keeps every request as it arrived.
    """

    requests: list

    def unique_requests(self) -> list:
        """The requests, each batch once (the first copy); requests without a batch id are all kept."""
        seen: set = set()
        out = []
        for signal, req in list(self.requests):
            ids = _batch_ids(signal, req)
            if ids:
                if (signal, ids) in seen:
                    continue
                seen.add((signal, ids))
            out.append((signal, req))
        return out

    def all_spans(self) -> list[dict]:
        """Every span received, flattened (each batch once)."""
        return [s for signal, req in self.unique_requests() if signal == "traces" for s in flatten(signal, req)]

    def spans(self, name: str | None = None) -> list[dict]:
        """Spans, optionally only those with this name."""
        return [s for s in self.all_spans() if name is None or s["name"] == name]

    def points(self, metric: str | None = None) -> list[dict]:
        """Metric points, optionally only those of one metric (each batch once)."""
        return [
            p
            for signal, req in self.unique_requests()
            if signal == "metrics"
            for p in flatten(signal, req)
            if metric is None or p["metric"] == metric
        ]

    def calls(self, function: str, outcome: str | None = None) -> int:
        """Total of ``usagetrace.calls`` for a function (delta sums added up)."""
        return sum(
            p["value"]
            for p in self.points("usagetrace.calls")
            if p["attributes"].get("code.function.name") == function
            and (outcome is None or p["attributes"].get("usagetrace.outcome") == outcome)
        )

    def raw_bytes(self) -> bytes:
        """Everything received, as bytes (for asserting that something never appears)."""
        return b"".join(getattr(self, "_raw", []))


class Capture(_Decoded):
    """In-memory record of what one package would have sent (see :func:`capture`)."""

    def __init__(self, handle, memory) -> None:
        self.handle = handle
        self._memory = memory

    @property
    def requests(self) -> list:  # type: ignore[override]
        from ._internal import otlp_json

        return [(signal, otlp_json.to_dict(signal, payload)) for signal, payload in list(self._memory.requests)]

    @property
    def _raw(self) -> list:
        return [payload for _, payload in list(self._memory.requests)]

    def flush(self, timeout: float = 5.0) -> bool:
        """Export everything recorded so far into this capture."""
        return self.handle.flush(timeout)


@contextlib.contextmanager
def _forced(handle, enabled: bool, flush: bool) -> Iterator[Capture]:
    """Force one handle's consent for the block, with every export kept in memory."""
    from ._internal import consent as _consent
    from ._internal import delivery, transport

    memory = transport.MemoryTransport()
    service = delivery.get()
    previous_override = service.override
    service.override = memory
    # A test process has no business with the spool of the home it runs in: the background
    # thread would look for it after the block, when the isolated home is gone.
    service._spool_checked = True
    state = _consent.GRANTED if enabled else _consent.DENIED
    handle.consent = _consent.ConsentState(enabled, state, "testing")
    handle._fingerprint = _consent.fingerprint(handle.package)  # keep the refresher from undoing it
    handle.recorder.enabled = enabled
    service.register(handle, start=False)
    try:
        yield Capture(handle, memory)
    finally:
        if flush:
            handle.flush(5.0)
        service.override = previous_override


def _restore_consent(handle) -> None:
    # Back to the real decision (not a saved one: consent may have changed meanwhile).
    handle._fingerprint = None
    handle.refresh_consent()


@contextlib.contextmanager
def _isolated_home() -> Iterator[None]:
    """Per-user files (install ids, state.json, spool) in a throwaway directory, unless one is chosen.

    A ``USAGETRACE_HOME`` already set (by you, or by the pytest plugin) is kept;
    otherwise one is made for the block and removed afterwards, so a test never
    writes into the real home directory (``usagetrace status`` would report the
    test run as telemetry having run).
    """
    import os
    import shutil
    import tempfile

    if os.environ.get("USAGETRACE_HOME"):
        yield
        return
    directory = tempfile.mkdtemp(prefix="usagetrace-testing-")
    os.environ["USAGETRACE_HOME"] = directory
    try:
        yield
    finally:
        if os.environ.get("USAGETRACE_HOME") == directory:
            del os.environ["USAGETRACE_HOME"]
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def capture(package: str, *, flush: bool = True, **instrument_options) -> Iterator[Capture]:
    """Force telemetry on for ``package`` and capture its exports in memory.

    The package is instrumented if it is not already; consent is forced on for
    the block and restored afterwards; nothing leaves the process. The capture
    holds only what happens inside the block: anything the package recorded
    before it (e.g. earlier tests, under the pytest plugin) is delivered where it
    was going first. On exit the block's data is flushed into the capture
    (``flush=False`` to skip). Per-user files go to a throwaway directory unless
    ``USAGETRACE_HOME`` is set.
    """
    from ._internal import delivery, instrumentation

    with _isolated_home():
        handle = instrumentation.get(package)
        created = handle is None
        if created:
            handle = instrumentation.instrument(package, _force=True, **instrument_options)
        else:
            handle.flush(5.0)  # what was recorded before the block is not the block's
            if not handle.instrumented:
                handle._start()
        try:
            with _forced(handle, True, flush) as cap:
                yield cap
        finally:
            if created:
                handle.uninstrument()
                delivery.get().unregister(handle)
            else:
                _restore_consent(handle)


@contextlib.contextmanager
def disabled(package: str) -> Iterator[Capture | None]:
    """Force telemetry off for an instrumented ``package`` during the block.

    Yields a :class:`Capture` of anything that would still be exported (it
    should stay empty), or None when the package is not instrumented (nothing
    can be recorded then). Consent is re-evaluated afterwards.
    """
    from ._internal import instrumentation

    handle = instrumentation.get(package)
    if handle is None or handle.recorder is None:
        yield None
        return
    with _isolated_home():
        try:
            with _forced(handle, False, flush=True) as cap:
                yield cap
        finally:
            _restore_consent(handle)


def _import_grpc():
    try:
        import grpc
    except ImportError as exc:
        from ._internal.config import GRPC_EXTRA

        raise ImportError(
            f"OTLPReceiver(grpc=True) needs 'grpc', which is not installed; install it with: {GRPC_EXTRA}"
        ) from exc
    return grpc


class OTLPReceiver(_Decoded):
    """A real OTLP receiver on 127.0.0.1 (HTTP, and gRPC with ``grpc=True``).

    Behaviour knobs, changeable while running: ``status`` (HTTP status to
    answer), ``retry_after`` (header value), ``delay`` (seconds before
    answering), ``blackhole`` (accept and never answer until stopped).
    """

    def __init__(self, *, grpc: bool = False, status: int = 200, retry_after: str | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        self.delay = 0.0
        self.blackhole = False
        self.requests: list = []
        self._raw: list[bytes] = []
        #: Body size of each accepted request as it arrived (before gzip decoding), same order as ``requests``.
        self.wire_sizes: list[int] = []
        self.connections = 0
        self.attempts = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._want_grpc = grpc
        self._http = None
        self._grpc = None
        self.port = 0
        self.grpc_port = 0

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> OTLPReceiver:
        """Start listening on free ports on 127.0.0.1."""
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        grpc = _import_grpc() if self._want_grpc else None  # before anything listens
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                with receiver._lock:
                    receiver.connections += 1
                super().setup()

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 64 * 1024 * 1024))
                with receiver._lock:
                    receiver.attempts += 1
                if receiver.blackhole:
                    receiver._stopped.wait(60)
                    return
                if receiver.delay:
                    receiver._stopped.wait(receiver.delay)
                status = receiver.status
                if 200 <= status < 300:
                    wire = len(body)
                    if self.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    signal = "traces" if self.path.endswith("/v1/traces") else "metrics"
                    receiver._accept(signal, body, self.headers.get("Content-Type", ""), wire)
                self.send_response(status)
                if receiver.retry_after is not None and status >= 400:
                    self.send_header("Retry-After", receiver.retry_after)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        if grpc is not None:
            self._start_grpc(grpc)
        return self

    def _start_grpc(self, grpc) -> None:
        from concurrent import futures

        receiver = self

        def handler(signal):
            def export(request: bytes, context):
                with receiver._lock:
                    receiver.attempts += 1
                receiver._accept(signal, request, "application/x-protobuf", len(request))
                return b""

            return grpc.unary_unary_rpc_method_handler(export)

        generic = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": handler("traces")}
        )
        generic_m = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.metrics.v1.MetricsService", {"Export": handler("metrics")}
        )
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[generic, generic_m])
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()

    def _accept(self, signal: str, body: bytes, content_type: str, wire: int) -> None:
        import json

        from ._internal import otlp_json

        if "json" in content_type:
            decoded = json.loads(body)
        else:
            decoded = otlp_json.to_dict(signal, body)
        with self._lock:
            self.requests.append((signal, decoded))
            self._raw.append(body)
            self.wire_sizes.append(wire)

    def stop(self) -> None:
        """Stop listening and release any black-holed request."""
        self._stopped.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._grpc is not None:
            self._grpc.stop(grace=None)
            self._grpc = None

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- addresses and waiting ----------------------------------------------------
    @property
    def endpoint(self) -> str:
        """Base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (HTTP)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_endpoint(self) -> str:
        """Endpoint for ``OTEL_EXPORTER_OTLP_ENDPOINT`` with ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``."""
        return f"http://127.0.0.1:{self.grpc_port}"

    def wait_for(self, predicate: Callable[[OTLPReceiver], bool], timeout: float = 10.0) -> bool:
        """Poll ``predicate(self)`` until it is true or ``timeout`` seconds pass; return the last result."""
        deadline = _clock.monotonic() + timeout
        while _clock.monotonic() < deadline:
            if predicate(self):
                return True
            _clock.sleep(0.02)
        return bool(predicate(self))
