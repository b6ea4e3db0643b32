"""Export: real OTLP round trips, isolation from the host's OpenTelemetry, switches, exit."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from usagetrace._internal import allowlist
from usagetrace.testing import OTLPReceiver, capture

from .conftest import EXAMPLES, ROOT, run_python, self_signed_cert

USER_CODE = """
import tinystats
tinystats.mean([1, 2, 3])
tinystats.Table.width([1, 5])
try:
    tinystats.zscore([1, 1], 1)
except ValueError:
    pass
from usagetrace._internal import instrumentation
h = instrumentation.get("tinystats")
print("FLUSHED", h.flush(10) if h else None)
"""


def _env(**extra):
    env = {"PYTHONPATH": EXAMPLES, "TINYSTATS_TELEMETRY": "1"}
    env.update(extra)
    return env


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_round_trip_over_otlp(protocol):
    """Spans and exact counts reach a real OTLP receiver on 127.0.0.1, decoded with opentelemetry-proto."""
    with OTLPReceiver(grpc=True) as rx:
        endpoint = rx.grpc_endpoint if protocol == "grpc" else rx.endpoint
        proc = run_python(USER_CODE, _env(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_EXPORTER_OTLP_PROTOCOL=protocol))
        assert proc.returncode == 0, proc.stderr
        assert "FLUSHED True" in proc.stdout
        assert rx.calls("tinystats.mean", "ok") == 1
        assert rx.calls("tinystats.zscore", "error") == 1
        names = {s["name"] for s in rx.spans()}
        assert {"tinystats.mean", "tinystats.Table.width", "tinystats.zscore"} <= names
        for span in rx.spans():
            assert span["scope"] == allowlist.SCOPE_NAME
            assert span["parent_span_id"] == ""
            assert set(span["resource"]) <= allowlist.allowed_keys("resource")
            assert set(span["attributes"]) <= allowlist.allowed_keys("span")
        resource = rx.spans()[0]["resource"]
        assert resource["service.name"] == "tinystats" and resource["service.version"] == "1.2.0"
        assert resource["process.runtime.version"].count(".") == 1


# Modules the default install does not bring (they come with `usagetrace[grpc]`); setting
# sys.modules[name] = None makes `import name` fail and find_spec(name) answer None, as when absent.
_NOT_IN_DEFAULT_INSTALL = (
    "grpc",
    "requests",
    "opentelemetry.exporter.otlp.proto.grpc",
    "opentelemetry.exporter.otlp.proto.http",
)
_WITHOUT_EXTRAS = "import sys\nfor _m in %r:\n    sys.modules[_m] = None\n" % (_NOT_IN_DEFAULT_INSTALL,)


@pytest.mark.parametrize("protocol", ["http/protobuf", "http/json"])
def test_default_install_sends_without_grpc_or_requests(protocol):
    """The HTTP protocols work with none of the [grpc] extra's modules importable."""
    with OTLPReceiver() as rx:
        env = _env(OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL=protocol)
        proc = run_python(_WITHOUT_EXTRAS + USER_CODE, env)
        assert proc.returncode == 0, proc.stderr
        assert "FLUSHED True" in proc.stdout
        assert rx.calls("tinystats.mean", "ok") == 1 and rx.calls("tinystats.zscore", "error") == 1


def test_grpc_without_the_extra_sends_nothing_and_status_says_so():
    """gRPC asked for without grpc installed: no byte to the gRPC or the HTTP port, and status names the extra."""
    status = "from usagetrace._internal import cli\ncli.main(['status', 'tinystats'])\n"
    with OTLPReceiver(grpc=True) as rx:
        env = _env(OTEL_EXPORTER_OTLP_ENDPOINT=rx.grpc_endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
        proc = run_python(_WITHOUT_EXTRAS + USER_CODE + status, env)
        assert proc.returncode == 0, proc.stderr
        # The HTTP port of the same receiver: a silent switch of protocol would show up here.
        http = run_python(_WITHOUT_EXTRAS + USER_CODE, dict(env, OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint))
        assert http.returncode == 0, http.stderr
        assert rx.attempts == 0 and rx.connections == 0 and rx.requests == []
    assert "sends to:       nothing is sent (OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs gRPC" in proc.stdout
    assert "pip install 'usagetrace[grpc]'" in proc.stdout


def test_signal_specific_grpc_without_the_extra(monkeypatch, capsys):
    """Only the signal asking for gRPC sends nothing; the reason (in status too) names that signal's variable."""
    from usagetrace._internal import cli, config

    monkeypatch.setitem(sys.modules, "grpc", None)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    traces, metrics = config.resolve("traces", None, "p"), config.resolve("metrics", None, "p")
    assert traces.kind == "none" and "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc" in traces.describe()
    assert config.GRPC_EXTRA in traces.describe()
    assert metrics.kind == "http" and metrics.url == "http://127.0.0.1:4317/v1/metrics"
    assert cli.main(["status", "p", "--force"]) == 0  # "p" is known nowhere: --force asks anyway
    assert f"sends to:       traces: {traces.describe()}; metrics: {metrics.describe()}" in capsys.readouterr().out
    monkeypatch.delitem(sys.modules, "grpc")
    assert config.resolve("traces", None, "p").kind == "grpc"  # installed (dev extra): used


def test_default_dependencies_leave_grpc_to_the_extra():
    """pyproject: the default install has no gRPC and no exporter meta-package; [grpc] and [dev] have them."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        project = tomllib.load(fh)["project"]

    def names(reqs):
        return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in reqs}

    default = names(project["dependencies"])
    assert default == {
        "opentelemetry-api", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-common",
        "opentelemetry-proto", "wrapt", "platformdirs", "tomli",
    }
    extras = project["optional-dependencies"]
    assert "opentelemetry-exporter-otlp" in names(extras["grpc"]) & names(extras["test"])
    assert "usagetrace" in names(extras["dev"])  # dev includes test


def test_signal_specific_endpoint_and_headers():
    """OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as-is and OTEL_EXPORTER_OTLP_HEADERS are sent."""
    seen = {}
    with OTLPReceiver() as rx:
        proc = run_python(
            USER_CODE,
            _env(
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=rx.endpoint + "/v1/traces",
                OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=rx.endpoint + "/v1/metrics",
                OTEL_EXPORTER_OTLP_HEADERS="x-api-key=abc%20def",
            ),
        )
        assert proc.returncode == 0, proc.stderr
        seen["spans"] = len(rx.spans())
        seen["calls"] = rx.calls("tinystats.mean")
    assert seen == {"spans": 3, "calls": 1}
    from usagetrace._internal.config import parse_headers

    assert parse_headers("x-api-key=abc%20def, b=2") == (("x-api-key", "abc def"), ("b", "2"))


def test_maintainer_endpoint_is_used_without_env(packages, monkeypatch):
    """Without OTEL_* variables the maintainer's endpoint= receives the data."""
    with OTLPReceiver() as rx:
        monkeypatch.setenv("EPKG_TELEMETRY", "1")
        mod = packages.load(
            "epkg", {"__init__.py": f"def f(): return 1\nimport usagetrace\nH = usagetrace.instrument(__name__, endpoint={rx.endpoint!r})\n"}
        )
        mod.f()
        assert mod.H.flush(10)
        assert rx.calls("epkg.f") == 1


def test_development_mode_writes_otlp_json_lines(tmp_path):
    """With no endpoint at all, OTLP JSON lines (one request per line, hex ids) go to the development file."""
    dev = tmp_path / "dev.jsonl"
    proc = run_python(USER_CODE, _env(USAGETRACE_DEV_FILE=str(dev)))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in dev.read_text().splitlines()]
    assert {next(iter(line)) for line in lines} == {"resourceSpans", "resourceMetrics"}
    span = lines[0]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert len(span["traceId"]) == 32 and int(span["traceId"], 16) >= 0
    assert len(span["spanId"]) == 16


@pytest.mark.parametrize(
    "switch",
    [
        {"DO_NOT_TRACK": "1"},
        {"OTEL_SDK_DISABLED": "true"},
        {"TINYSTATS_TELEMETRY": "0"},
        {"TINYSTATS_TELEMETRY": ""},  # unset -> opt-in policy -> off
    ],
)
def test_every_off_switch_wraps_nothing_imports_nothing_sends_nothing(switch):
    """Each off switch: nothing wrapped, no wrapt or OpenTelemetry imported, and zero connections to the collector."""
    code = """
    import sys, tinystats
    from usagetrace._internal import instrumentation
    h = instrumentation.get("tinystats")
    print("WRAPPED", h.wrapped_names, type(tinystats.mean).__name__)
    print("MODULES", sorted(m for m in sys.modules if m.split(".")[0] in ("wrapt", "opentelemetry", "grpc", "google")))
    tinystats.mean([1, 2])
    """
    with OTLPReceiver() as rx:
        env = _env(OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_DETACHED_SEND="1", CI="")
        env.update(switch)
        proc = run_python(code, env)
        assert proc.returncode == 0, proc.stderr
        assert "WRAPPED [] function" in proc.stdout
        assert "MODULES []" in proc.stdout
        time.sleep(0.5)  # a detached sender, if one were (wrongly) started, would connect now
        assert rx.connections == 0


def test_consented_import_does_not_load_the_sdk():
    """With consent, wrapt is imported but the OpenTelemetry SDK and exporter are not, until export."""
    code = """
    import sys, tinystats
    print("SDK", sorted(m for m in sys.modules if m.startswith(("opentelemetry", "grpc", "google.protobuf"))))
    print("WRAPT", "wrapt" in sys.modules)
    """
    proc = run_python(code, _env(USAGETRACE_DEV_FILE=os.devnull))
    assert proc.returncode == 0, proc.stderr
    assert "SDK []" in proc.stdout and "WRAPT True" in proc.stdout


def test_host_opentelemetry_is_untouched(packages, monkeypatch):
    """The host's global TracerProvider, its spans and its context never see usagetrace, and vice versa."""
    from opentelemetry import context, trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    host_exporter = InMemorySpanExporter()
    host_provider = TracerProvider()
    host_provider.add_span_processor(SimpleSpanProcessor(host_exporter))
    host_tracer = host_provider.get_tracer("host-app")
    monkeypatch.setenv("HOSTPKG_TELEMETRY", "1")
    mod = packages.load("hostpkg", {"__init__.py": "def f(): return 1\nimport usagetrace\nH = usagetrace.instrument(__name__)\n"})
    global_before = trace.get_tracer_provider()
    with capture("hostpkg") as cap:
        with host_tracer.start_as_current_span("host-request") as host_span:
            ctx_before = context.get_current()
            mod.f()
            assert context.get_current() == ctx_before
            assert trace.get_current_span() is host_span
    assert trace.get_tracer_provider() is global_before
    host_spans = host_exporter.get_finished_spans()
    assert [s.name for s in host_spans] == ["host-request"]
    [ours] = cap.spans("hostpkg.f")
    assert ours["parent_span_id"] == ""
    assert ours["trace_id"] != format(host_span.get_span_context().trace_id, "032x")


def test_host_resource_attributes_never_leak(tmp_path):
    """OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME set by the host never reach usagetrace's resource."""
    dev = tmp_path / "dev.jsonl"
    proc = run_python(
        USER_CODE,
        _env(
            USAGETRACE_DEV_FILE=str(dev),
            OTEL_RESOURCE_ATTRIBUTES="host.name=canary-host-7731,deployment.environment=canary-env",
            OTEL_SERVICE_NAME="canary-service",
        ),
    )
    assert proc.returncode == 0, proc.stderr
    text = dev.read_text()
    assert "canary" not in text
    assert socket.gethostname() not in text
    assert '"host.name"' not in text


def test_exit_never_waits_on_a_black_holed_collector(tmp_path):
    """With a collector that accepts and never answers, the process exits promptly and spools its data."""
    home = tmp_path / "home"
    code = """
    import time, tinystats
    tinystats.mean([1, 2])
    t = time.monotonic()
    import atexit
    atexit.register(lambda: print("ATEXIT-START", flush=True))
    """
    with OTLPReceiver() as rx:
        rx.blackhole = True
        start = time.monotonic()
        proc = run_python(code, _env(OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_HOME=str(home)), timeout=30)
        elapsed = time.monotonic() - start
    assert proc.returncode == 0 and proc.stderr == ""
    assert elapsed < 25  # bounded (the OTel SDK default would wait ~10 s per signal); BENCHMARKS.md has the figure
    spooled = list((home / "cache" / "spool").glob("*.json"))
    assert len(spooled) == 1
    doc = json.loads(spooled[0].read_text())
    assert doc["package"] == "tinystats"
    assert ["calls", "tinystats.mean", "ok"] in [k for k, _ in doc["counts"]]


def test_spool_is_delivered_by_the_sender(tmp_path):
    """A spooled run is delivered later by the sender, with its original counts, and the file is removed."""
    home = tmp_path / "home"
    with OTLPReceiver() as rx:
        env = _env(OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_HOME=str(home))
        proc = run_python("import tinystats\nfor _ in range(7): tinystats.mean([1])\n", env)
        assert proc.returncode == 0, proc.stderr
        assert rx.connections == 0  # nothing sent from the exiting process
        sender = run_python("from usagetrace._internal import spool; print(spool.deliver()['delivered'])", env)
        assert sender.stdout.strip() == "1", sender.stderr
        assert rx.calls("tinystats.mean") == 7
    assert list((home / "cache" / "spool").glob("*.json")) == []


def test_spool_is_deleted_unsent_after_withdrawal(tmp_path):
    """If consent is withdrawn before the spool is sent, it is deleted without sending."""
    home = tmp_path / "home"
    with OTLPReceiver() as rx:
        env = _env(OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_HOME=str(home))
        run_python("import tinystats\ntinystats.mean([1])\n", env)
        env["TINYSTATS_TELEMETRY"] = "0"
        sender = run_python("from usagetrace._internal import spool; print(spool.deliver()['withdrawn'])", env)
        assert sender.stdout.strip() == "1"
        assert rx.connections == 0
    assert list((home / "cache" / "spool").glob("*.json")) == []


def test_detached_sender_delivers_after_exit(tmp_path):
    """By default the exiting process starts a detached sender that delivers the spool."""
    home = tmp_path / "home"
    with OTLPReceiver() as rx:
        env = _env(OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_HOME=str(home), USAGETRACE_DETACHED_SEND="1")
        proc = run_python("import tinystats\ntinystats.median([3, 1, 2])\n", env)
        assert proc.returncode == 0, proc.stderr
        assert rx.wait_for(lambda r: r.calls("tinystats.median") == 1, timeout=30)


def test_failed_sends_are_retried_and_counted_not_silent(packages, monkeypatch):
    """A 503 with Retry-After keeps data for a retry; once the collector recovers it is delivered."""
    with OTLPReceiver(status=503, retry_after="1") as rx:
        monkeypatch.setenv("RPKG_TELEMETRY", "1")
        mod = packages.load(
            "rpkg", {"__init__.py": f"def f(): return 1\nimport usagetrace\nH = usagetrace.instrument(__name__, endpoint={rx.endpoint!r})\n"}
        )
        mod.f()
        assert mod.H.flush(5) is False
        assert rx.attempts >= 1 and rx.calls("rpkg.f") == 0
        rx.status = 200
        assert mod.H.flush(5) is True
        assert rx.calls("rpkg.f") == 1


def test_console_development_output(tmp_path):
    """USAGETRACE_CONSOLE=1 in development mode also prints the OTLP JSON requests to stderr, never stdout."""
    proc = run_python(USER_CODE, _env(USAGETRACE_DEV_FILE=str(tmp_path / "dev.jsonl"), USAGETRACE_CONSOLE="1"))
    assert proc.returncode == 0, proc.stderr
    assert '"resourceSpans"' in proc.stderr and '"resourceSpans"' not in proc.stdout


def test_packages_coexist_on_one_delivery_thread(packages, monkeypatch):
    """Two instrumented packages keep separate resources and data, served by a single delivery thread."""
    import threading

    with OTLPReceiver() as rx:
        for name in ("pkga", "pkgb"):
            monkeypatch.setenv(f"{name.upper()}_TELEMETRY", "1")
            packages.load(name, {"__init__.py": f"def f(): return 1\nimport usagetrace\nH = usagetrace.instrument(__name__, endpoint={rx.endpoint!r})\n"})
        import pkga
        import pkgb

        pkga.f()
        pkgb.f()
        pkgb.f()
        assert pkga.H.flush(10) and pkgb.H.flush(10)
        by_service = {}
        for point in rx.points("usagetrace.calls"):
            by_service.setdefault(point["resource"]["service.name"], []).append(point["attributes"]["code.function.name"])
        ids = {p["resource"]["usagetrace.install.id"] for p in rx.points("usagetrace.calls")}
    assert by_service == {"pkga": ["pkga.f"], "pkgb": ["pkgb.f"]}
    assert rx.calls("pkgb.f") == 2 and len(ids) == 2  # install ids are per package
    from usagetrace._internal import delivery

    assert delivery.get().is_running()  # one process-wide thread, and threading.enumerate() never lists it
    assert not any("usagetrace" in t.name for t in threading.enumerate())


def test_denial_in_the_consent_file_sends_no_byte(tmp_path):
    """After `usagetrace disable`, an instrumented run opens no connection to the collector at all."""
    home = tmp_path / "home"
    with OTLPReceiver() as rx:
        env = _env(OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_HOME=str(home), USAGETRACE_DETACHED_SEND="1")
        env.pop("TINYSTATS_TELEMETRY")
        disable = subprocess.run([sys.executable, "-m", "usagetrace", "disable", "tinystats"], env={**os.environ, **env},
                                 capture_output=True, text=True, timeout=60)
        assert disable.returncode == 0, disable.stderr
        proc = run_python(USER_CODE + "print('SOURCE', h.consent.source)\n", env)
        assert f"SOURCE user:{home / 'config' / 'consent.toml'}" in proc.stdout, proc.stdout + proc.stderr
        time.sleep(0.5)
        assert rx.connections == 0


@pytest.mark.parametrize("value", ["carrier-pigeon", "http/protobuff", "grpc-web"])
def test_unknown_protocol_sends_nothing_and_status_says_why(tmp_path, value):
    """An unknown OTEL_EXPORTER_OTLP_PROTOCOL sends nothing (no guessing) and `usagetrace status` says why."""
    home = tmp_path / "home"
    with OTLPReceiver() as rx:
        env = _env(OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL=value,
                   USAGETRACE_HOME=str(home))
        proc = run_python(USER_CODE, env)
        assert proc.returncode == 0 and proc.stderr == ""
        assert "FLUSHED False" in proc.stdout  # nothing could be delivered
        flushed = run_python("from usagetrace._internal import spool; print(spool.deliver())", env)
        status = subprocess.run([sys.executable, "-m", "usagetrace", "status", "tinystats"], capture_output=True,
                                text=True, env={**os.environ, **env}, timeout=60)
        assert rx.connections == 0
    assert "'rejected': 1" in flushed.stdout  # the spooled batch is dropped, not kept forever
    assert f"OTEL_EXPORTER_OTLP_PROTOCOL={value!r} is not one of http/protobuf, http/json, grpc: nothing is sent" \
        in status.stdout


# -- one deadline per request, 3xx, proxies (transport) -------------------------------------------------

def _http_target(url: str, **kw):
    from usagetrace._internal import config

    return config.Target("http", url, "http/protobuf", **kw)


class _OneShot:
    """A 127.0.0.1 server whose connections run ``handler(conn)`` in threads; bounded, closed on exit."""

    def __init__(self, handler) -> None:
        import threading

        self.handler = handler
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.srv.settimeout(0.1)
        self.port = self.srv.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        import threading

        while not self.stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except OSError:
                continue
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn) -> None:
        try:
            self.handler(conn, self.stop)
        except OSError:
            pass
        finally:
            conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.srv.close()


def _read_head(conn, stop) -> bytes:
    conn.settimeout(0.2)
    buf = b""
    end = time.monotonic() + 10
    while b"\r\n\r\n" not in buf and time.monotonic() < end and not stop.is_set():
        try:
            chunk = conn.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
    return buf


def test_a_trickling_answer_cannot_extend_a_request_past_its_deadline():
    """One byte every 0.2 s: a socket timeout never fires, the request's deadline does (it was 45-97 s)."""
    from usagetrace._internal import transport

    def trickle(conn, stop):
        _read_head(conn, stop)
        for byte in b"HTTP/1.1 200 OK\r\nX-Pad: " + b"." * 400 + b"\r\n\r\n":
            if stop.wait(0.2):
                return
            conn.sendall(bytes([byte]))

    with _OneShot(trickle) as srv:
        t = transport.HttpTransport(_http_target(f"http://127.0.0.1:{srv.port}/v1/traces"))
        start = time.monotonic()
        result = t.send("traces", b"", 1.0)
        took = time.monotonic() - start
    assert result not in (transport.OK, transport.DROP)  # retried later, kept
    assert took < 1.0 + 1.5  # bounded by the deadline (the whole answer takes ~80 s)
    assert transport.last_attempt()[1] == "no answer: deadline passed"


def test_a_name_server_that_never_answers_cannot_extend_a_request(monkeypatch):
    """getaddrinfo has no timeout: it runs in a helper thread and the request gives up at its deadline."""
    import threading

    from usagetrace._internal import transport

    never = threading.Event()
    real = socket.getaddrinfo

    def hanging(host, *args, **kwargs):
        if host == "stalled.test":
            never.wait(30)
            raise socket.gaierror(socket.EAI_AGAIN, "no answer")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    t = transport.HttpTransport(_http_target("http://stalled.test:4318/v1/traces"))
    try:
        start = time.monotonic()
        results = [t.send("traces", b"", 0.5) for _ in range(3)]
        took = time.monotonic() - start
        assert all(r not in (transport.OK, transport.DROP) for r in results)
        assert took < 3 * 0.5 + 1.5
        assert len(transport._lookups) == 1  # one lookup thread per name, however many requests wait on it
    finally:
        never.set()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_kept_and_retried_never_dropped(status):
    """A captive portal's 3xx is not a rejection: the data stays queued (and the redirect is not followed)."""
    from usagetrace._internal import transport

    seen = []

    def portal(conn, stop):
        seen.append(_read_head(conn, stop))
        conn.sendall(f"HTTP/1.1 {status} Moved\r\nLocation: http://portal.invalid/\r\nContent-Length: 0\r\n\r\n"
                     .encode())

    with _OneShot(portal) as srv:
        result = transport.HttpTransport(_http_target(f"http://127.0.0.1:{srv.port}/v1/metrics")).send(
            "metrics", b"", 5.0)
    assert result != transport.DROP and result != transport.OK
    assert float(result) >= 1.0
    assert len(seen) == 1 and seen[0].startswith(b"POST /v1/metrics HTTP/1.1\r\n")
    assert transport.last_attempt()[1] == f"retry later (HTTP {status})"


class _Proxy(_OneShot):
    """A forward proxy on 127.0.0.1: CONNECT tunnels (https) and absolute-form requests (http)."""

    def __init__(self, refuse_connect: int | None = None) -> None:
        self.requests: list[bytes] = []
        self.refuse_connect = refuse_connect
        super().__init__(self._handle)

    def _handle(self, conn, stop) -> None:
        import threading
        from urllib.parse import urlsplit

        head = _read_head(conn, stop)
        first, _, rest = head.partition(b"\r\n")
        self.requests.append(head)
        method, target, _ = first.decode().split(" ", 2)
        if method == "CONNECT":
            if self.refuse_connect:
                conn.sendall(f"HTTP/1.1 {self.refuse_connect} No\r\nContent-Length: 0\r\n\r\n".encode())
                return
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)), timeout=5)
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            leftover = rest.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in rest else b""
            if leftover:
                upstream.sendall(leftover)
        else:
            parts = urlsplit(target)
            upstream = socket.create_connection((parts.hostname, parts.port), timeout=5)
            upstream.sendall(f"{method} {parts.path} HTTP/1.1\r\n".encode() + rest)
        conn.settimeout(5)

        def pipe(a, b):
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        other = threading.Thread(target=pipe, args=(upstream, conn), daemon=True)
        other.start()
        pipe(conn, upstream)
        other.join(timeout=5)
        upstream.close()


def _clear_proxies(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_http_proxy_is_honoured(monkeypatch, variable):
    """http:// endpoints go through HTTP_PROXY (absolute-form request, with the proxy's credentials)."""
    from usagetrace._internal import transport

    _clear_proxies(monkeypatch)
    with OTLPReceiver() as rx, _Proxy() as proxy:
        monkeypatch.setenv(variable, f"http://user:p%40ss@127.0.0.1:{proxy.port}")
        result = transport.HttpTransport(_http_target(f"{rx.endpoint}/v1/traces")).send("traces", b"", 5.0)
        assert result == transport.OK
        assert rx.wait_for(lambda r: len(r.requests) == 1, 5)
    assert len(proxy.requests) == 1
    head = proxy.requests[0].decode()
    assert head.startswith(f"POST {rx.endpoint}/v1/traces HTTP/1.1\r\n")
    assert "Proxy-Authorization: Basic dXNlcjpwQHNz" in head  # user:p@ss


def test_no_proxy_bypasses_the_proxy(monkeypatch):
    from usagetrace._internal import transport

    _clear_proxies(monkeypatch)
    with OTLPReceiver() as rx, _Proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("NO_PROXY", "example.org,127.0.0.1")
        assert transport.HttpTransport(_http_target(f"{rx.endpoint}/v1/traces")).send("traces", b"", 5.0) == \
            transport.OK
    assert proxy.requests == []


def test_a_proxy_that_is_down_or_refuses_keeps_the_data(monkeypatch):
    """No proxy listening, or a CONNECT refused (407): retried later, never dropped, never sent around it."""
    from usagetrace._internal import transport

    _clear_proxies(monkeypatch)
    with OTLPReceiver() as rx:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead}")
        result = transport.HttpTransport(_http_target(f"{rx.endpoint}/v1/traces")).send("traces", b"", 2.0)
        assert result not in (transport.OK, transport.DROP)
        with _Proxy(refuse_connect=407) as proxy:
            monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
            result = transport.HttpTransport(_http_target("https://127.0.0.1:1/v1/traces")).send("traces", b"", 2.0)
        assert result not in (transport.OK, transport.DROP)
        assert proxy.requests and proxy.requests[0].startswith(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n")
        assert rx.requests == []


def test_https_goes_through_a_connect_proxy(monkeypatch, tmp_path):
    """https:// endpoints are tunnelled with CONNECT through HTTPS_PROXY; TLS is end to end (verified)."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from usagetrace._internal import transport

    cert, key = self_signed_cert(tmp_path)
    bodies = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    _clear_proxies(monkeypatch)
    try:
        with _Proxy() as proxy:
            monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{proxy.port}")  # no scheme: http:// assumed
            port = srv.server_address[1]
            target = _http_target(f"https://127.0.0.1:{port}/v1/traces", certificate=str(cert), secure=True)
            result = transport.HttpTransport(target).send("traces", b"\x0a\x00", 5.0)
        assert result == transport.OK
        assert bodies == [b"\x0a\x00"]
        assert len(proxy.requests) == 1 and proxy.requests[0].startswith(f"CONNECT 127.0.0.1:{port} ".encode())
        assert b"\x0a\x00" not in proxy.requests[0]  # the proxy saw only the tunnel request, not the data
    finally:
        srv.shutdown()
        srv.server_close()


def test_host_behind_an_http_proxy_delivers_every_count(tmp_path):
    """End to end: a consenting host with HTTP_PROXY set delivers through the proxy, exact counts."""
    with OTLPReceiver() as rx, _Proxy() as proxy:
        proc = run_python(USER_CODE, _env(OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, NO_PROXY="", no_proxy="",
                                          HTTP_PROXY=f"http://127.0.0.1:{proxy.port}", USAGETRACE_HOME=str(tmp_path)))
        assert proc.returncode == 0, proc.stderr
        assert "FLUSHED True" in proc.stdout
        assert rx.calls("tinystats.mean", "ok") == 1
        assert rx.calls("tinystats.zscore", "error") == 1
    assert len(proxy.requests) >= 2 and all(r.startswith(b"POST http://127.0.0.1:") for r in proxy.requests)


# -- delivery never depends on the host's import state -------------------------------------------------------

SNAPSHOT_HOST = """
import json, sys, time
snapshot = dict(sys.modules)  # what pytester's SysModulesSnapshot takes before an inner run
import tinystats
from usagetrace._internal import delivery, instrumentation
d, h = delivery.get(), instrumentation.get("tinystats")
for i in range(100):
    tinystats.mean([1, i])
if {after}:
    end = time.monotonic() + 20
    while delivery._DEPS is None and time.monotonic() < end:
        time.sleep(0.01)
    time.sleep(0.2)
# ... and restores after it: every module imported since is dropped (usagetrace, the SDK, protobuf)
for name in [n for n in sys.modules if n not in snapshot]:
    del sys.modules[name]
sys.modules.update(snapshot)
for i in range(100):
    tinystats.mean([2, i])
print("FLUSHED", d.flush(20, only=h))
"""


@pytest.mark.parametrize("after", [False, True], ids=["restored-before-first-export", "restored-after"])
def test_a_restored_sys_modules_snapshot_loses_no_count(tmp_path, after):
    """pytester's sys.modules snapshot and restore, before or after the first export: every count arrives."""
    with OTLPReceiver() as rx:
        proc = run_python(SNAPSHOT_HOST.format(after=after), _env(
            OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_HOME=str(tmp_path),
            USAGETRACE_EXPORT_INTERVAL="0.1" if after else "2"))
        assert proc.returncode == 0, proc.stderr
        assert "FLUSHED True" in proc.stdout, proc.stdout + proc.stderr
        assert rx.calls("tinystats.mean", "ok") == 200
    assert proc.stderr == ""


IMPORT_SPY_HOST = """
import json, sys, time
import tinystats
from usagetrace._internal import delivery, instrumentation
d, h = delivery.get(), instrumentation.get("tinystats")
tinystats.mean([1])
assert d.flush(20, only=h)
if {drop}:  # a restored snapshot taken before usagetrace was imported (pytester)
    for name in [n for n in sys.modules if n.startswith("usagetrace")]:
        del sys.modules[name]
seen = []
class Spy:
    def find_spec(self, name, path=None, target=None):
        seen.append(name)
        return None
sys.meta_path.insert(0, Spy())
for i in range(50):
    tinystats.mean([1, i])
try:
    tinystats.zscore([1, 1], 1)
except ValueError:
    pass
ok = d.flush(20, only=h)
# A few periodic exports; with {drop}, two consent refreshes too (the fingerprint, the files).
time.sleep(2 * delivery.CONSENT_INTERVAL + 0.5 if {drop} else 0.5)
print(json.dumps({{"ok": ok, "seen": seen}}))
"""


def test_the_first_consent_refresh_imports_nothing_in_the_background(tmp_path):
    """Granted by the environment, consent never read a file at import; the delivery thread's first refresh,
    before its first export, must not import what reading one needs (a host import hook would see it)."""
    code = """
import json, sys, time
import tinystats
from usagetrace._internal import delivery
seen = []
class Spy:
    def find_spec(self, name, path=None, target=None):
        seen.append(name)
        return None
sys.meta_path.insert(0, Spy())
tinystats.mean([1])  # the first sample starts the delivery thread
time.sleep(delivery.CONSENT_INTERVAL + 1.0)  # its first consent refresh; the first export is later
print(json.dumps({"deps": delivery._DEPS is not None, "ours": [n for n in seen if n.startswith("usagetrace")]}))
"""
    proc = run_python(code, _env(USAGETRACE_HOME=str(tmp_path), USAGETRACE_EXPORT_INTERVAL="60"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"deps": False, "ours": []}


@pytest.mark.parametrize("drop", [False, True], ids=["modules-kept", "our-modules-dropped"])
def test_host_import_hooks_see_none_of_our_imports_after_the_first_export(tmp_path, drop):
    """After the first export, the delivery thread imports nothing: a host meta_path finder sees no name.

    Also when the host then drops our modules from sys.modules (a restored snapshot): what consent,
    paths, state and aggregate import on first need (so a run with telemetry off does not) is bound
    before the first export, so the consent refresher and the exports run no import statement.
    """
    with OTLPReceiver() as rx:
        proc = run_python(IMPORT_SPY_HOST.format(drop=drop), _env(
            OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_HOME=str(tmp_path),
            USAGETRACE_EXPORT_INTERVAL="0.1"), timeout=90)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out == {"ok": True, "seen": []}
        assert rx.calls("tinystats.mean", "ok") == 51
