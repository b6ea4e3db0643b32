"""End-to-end through a real collector process: sender -> OTLP -> rotel -> OTLP -> test receiver.

rotel (PyPI ``rotel``) is a Rust OpenTelemetry collector that runs here without
Docker. Everything listens on 127.0.0.1 on free ports; rotel forwards OTLP over
HTTP to a small protobuf receiver started by the test. Senders run in a
subprocess so that environment variables (consent switch, OTEL_* settings, a
canary ``OTEL_RESOURCE_ATTRIBUTES=host.name=...``) apply cleanly. Every wait is
bounded in iterations and time.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pb_trace = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
pb_metrics = pytest.importorskip("opentelemetry.proto.collector.metrics.v1.metrics_service_pb2")

from usagetrace._internal import allowlist

ROOT = Path(__file__).resolve().parents[1]
CANARY = "canary-host"
HOSTNAME = socket.gethostname()

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for _ in range(400):
        if proc.poll() is not None:
            raise RuntimeError(f"rotel exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                break
            time.sleep(0.025)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


class OTLPSink:
    """Minimal OTLP/HTTP protobuf receiver on 127.0.0.1 (what rotel forwards to)."""

    def __init__(self) -> None:
        self.traces: list = []
        self.metrics: list = []
        self.raw: list[bytes] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 64 * 1024 * 1024))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    msg, resp = pb_trace.ExportTraceServiceRequest(), pb_trace.ExportTraceServiceResponse()
                elif self.path == "/v1/metrics":
                    msg, resp = (
                        pb_metrics.ExportMetricsServiceRequest(),
                        pb_metrics.ExportMetricsServiceResponse(),
                    )
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                msg.ParseFromString(body)
                with sink._lock:
                    sink.raw.append(body)
                    (sink.traces if self.path == "/v1/traces" else sink.metrics).append(msg)
                out = resp.SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="otlp-sink", daemon=True)
        self._thread.start()

    def resource_spans(self):
        with self._lock:
            return [rs for req in self.traces for rs in req.resource_spans]

    def resource_metrics(self):
        with self._lock:
            return [rm for req in self.metrics for rm in req.resource_metrics]

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        for _ in range(1000):
            if predicate():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return predicate()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def _rotel_binary() -> Path:
    try:
        import rotel
    except ImportError:
        pytest.skip("rotel is not installed (pip install rotel)")
    binary = Path(rotel.__file__).resolve().parent / "rotel-agent"
    if not binary.is_file():
        pytest.skip(f"the rotel package ships no agent binary at {binary}")
    return binary


@pytest.fixture
def sink():
    s = OTLPSink()
    yield s
    s.close()


@pytest.fixture
def rotel(sink, tmp_path):
    """A rotel collector on 127.0.0.1 forwarding everything to the sink; yields (grpc_port, http_port)."""
    grpc_port, http_port = _free_port(), _free_port()
    with open(tmp_path / "rotel.out", "wb") as log:
        proc = _start_rotel(grpc_port, http_port, sink.port, tmp_path, log)
    try:
        _wait_listening(grpc_port, proc)
        _wait_listening(http_port, proc)
        yield grpc_port, http_port
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _start_rotel(
    grpc_port: int, http_port: int, sink_port: int, tmp_path: Path, log, extra_args=(), extra_env=None
) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(_rotel_binary()),
            "start",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{grpc_port}",
            "--otlp-http-endpoint",
            f"127.0.0.1:{http_port}",
            "--exporter",
            "otlp",
            "--otlp-exporter-endpoint",
            f"http://127.0.0.1:{sink_port}",
            "--otlp-exporter-protocol",
            "http",
            # rotel drops the resource of a request carrying >= 8192 spans when batching
            "--disable-batching",
            "--pid-file",
            str(tmp_path / "rotel.pid"),
            "--log-file",
            str(tmp_path / "rotel.log"),
            *extra_args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **(extra_env or {})},
    )


def _attrs(kvs) -> dict:
    out = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        value = getattr(kv.value, which) if which else None
        if which == "array_value":
            value = [getattr(v, v.WhichOneof("value")) for v in value.values]
        out[kv.key] = value
    return out


def _sender_env(tmp_path: Path, protocol: str, grpc_port: int, http_port: int, **extra: str) -> dict:
    """A small, explicit environment: no CI markers, a private HOME, the canary resource attribute."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    port = grpc_port if protocol == "grpc" else http_port
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "pkgs"), str(ROOT / "src")]),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_RESOURCE_ATTRIBUTES": f"host.name={CANARY},service.name=not-the-package",
        "OTEL_SERVICE_NAME": "not-the-package-either",
    }
    env.update(extra)
    return env


def _run_sender(code: str, env: dict, cwd: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


PROTOCOLS = ["http/protobuf", "grpc"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rotel_forwards_otlp_with_resource_intact(protocol, sink, rotel, tmp_path):
    """Plain OpenTelemetry SDK spans and metrics pass through rotel unchanged, resource included (transport check)."""
    grpc_port, http_port = rotel
    code = """
        import json, os
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.metrics import Counter, MeterProvider
        from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
        if os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        res = Resource({"service.name": "transportpkg", "usagetrace.install.id": "0000-test"})
        tp = TracerProvider(resource=res)
        tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), max_export_batch_size=512))
        delta = {Counter: AggregationTemporality.DELTA}  # like usagetrace.calls
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(preferred_temporality=delta), export_interval_millis=3600000
        )
        mp = MeterProvider(resource=res, metric_readers=[reader])
        tracer = tp.get_tracer("usagetrace")
        counter = mp.get_meter("usagetrace").create_counter("usagetrace.calls")
        for i in range(300):
            with tracer.start_as_current_span("transportpkg.f"):
                counter.add(1, {"code.function.name": "transportpkg.f", "usagetrace.outcome": "ok"})
        ok = tp.force_flush(10000) and mp.force_flush(10000)
        tp.shutdown(); mp.shutdown()
        print(json.dumps({"ok": ok}))
    """
    env = _sender_env(tmp_path, protocol, grpc_port, http_port)
    env.pop("OTEL_RESOURCE_ATTRIBUTES")
    env.pop("OTEL_SERVICE_NAME")
    assert _run_sender(code, env, tmp_path)["ok"] is True

    def spans():
        return sum(len(ss.spans) for rs in sink.resource_spans() for ss in rs.scope_spans)

    def calls():
        return sum(
            dp.as_int
            for rm in sink.resource_metrics()
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == "usagetrace.calls"
            for dp in m.sum.data_points
        )

    assert sink.wait_for(lambda: spans() >= 300 and calls() >= 300)
    assert spans() == 300 and calls() == 300
    for rs in sink.resource_spans() + sink.resource_metrics():
        res = _attrs(rs.resource.attributes)
        assert res["service.name"] == "transportpkg"
        assert res["usagetrace.install.id"] == "0000-test"


SAMPLE_PACKAGE = '''
"""A tiny library instrumented with usagetrace (the end-to-end test's sample package)."""
import usagetrace

__all__ = ["add", "fail"]


def add(a, b):
    """Return a + b."""
    return a + b


def fail(message):
    """Always raise ValueError."""
    raise ValueError(message)


telemetry = usagetrace.instrument(__name__, endpoint="http://127.0.0.1:9", consent="opt-in")
'''


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_instrumented_package_through_rotel(protocol, sink, rotel, tmp_path):
    """An instrumented package's spans and exact call counts reach the receiver via rotel with the anonymized resource."""
    grpc_port, http_port = rotel
    pkg = tmp_path / "pkgs" / "e2esample"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(SAMPLE_PACKAGE, encoding="utf-8")
    code = """
        import json
        import e2esample
        for i in range(7):
            e2esample.add(i, 1)
        for _ in range(2):
            try:
                e2esample.fail("secret@example.com lives at 10.1.2.3")
            except ValueError:
                pass
        print(json.dumps({"flushed": e2esample.telemetry.flush(timeout=5)}))
    """
    env = _sender_env(tmp_path, protocol, grpc_port, http_port, E2ESAMPLE_TELEMETRY="1")
    assert _run_sender(code, env, tmp_path)["flushed"] is True

    def points(metric_name):
        return [
            (_attrs(rm.resource.attributes), _attrs(dp.attributes), dp.as_int)
            for rm in sink.resource_metrics()
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == metric_name
            for dp in m.sum.data_points
        ]

    def count(metric_name, **want):
        return sum(
            v for _, a, v in points(metric_name) if all(a.get(k, "").endswith(x) for k, x in want.items())
        )

    def arrived():
        return (
            count("usagetrace.calls", **{"code.function.name": "add", "usagetrace.outcome": "ok"}) >= 7
            and count("usagetrace.calls", **{"code.function.name": "fail", "usagetrace.outcome": "error"})
            >= 2
            and any(ss.spans for rs in sink.resource_spans() for ss in rs.scope_spans)
        )

    assert sink.wait_for(arrived), (len(sink.traces), len(sink.metrics))

    # exact counts from the delta sums (spans are sampled; the metric is not)
    assert count("usagetrace.calls", **{"code.function.name": "add", "usagetrace.outcome": "ok"}) == 7
    assert count("usagetrace.calls", **{"code.function.name": "fail", "usagetrace.outcome": "error"}) == 2
    assert count("usagetrace.errors", **{"code.function.name": "fail", "error.type": "ValueError"}) == 2

    # the anonymized resource arrives intact, on spans and metrics alike
    resources = [_attrs(r.resource.attributes) for r in sink.resource_spans() + sink.resource_metrics()]
    assert resources
    for res in resources:
        assert res["service.name"] == "e2esample"
        assert res.get("usagetrace.install.id")
        assert "host.name" not in res
        assert set(res) <= allowlist.allowed_keys("resource"), set(res) - allowlist.allowed_keys("resource")
    for rs in sink.resource_spans():
        for ss in rs.scope_spans:
            assert ss.scope.name == allowlist.SCOPE_NAME
            for span in ss.spans:
                assert set(_attrs(span.attributes)) <= allowlist.allowed_keys()

    # nothing identifying anywhere in what was delivered: not the canary, the
    # host name, the exception message, its e-mail address or IP
    blob = b"".join(sink.raw)
    for needle in (CANARY, "secret@example.com", "10.1.2.3", "not-the-package"):
        assert needle.encode() not in blob, needle
    if len(HOSTNAME) >= 4:
        assert HOSTNAME.encode() not in blob
