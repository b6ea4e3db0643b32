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

from .conftest import EXAMPLES, ROOT, run_python

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
