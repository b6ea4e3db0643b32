"""Performance bounds that can be asserted without a clock: imports, wrapping, counts, spans, queues.

Wall-clock figures live in ``benchmarks/`` (``benchmarks/run.sh`` writes
BENCHMARKS.md); nothing here compares a time to a threshold. Each check runs in
a fresh interpreter so ``sys.modules`` and consent reflect only that scenario.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples", "tinystats")
SRC = os.path.join(ROOT, "src")

HEAVY_PREFIXES = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto", "google.protobuf", "grpc")

PACKAGE = '''
def f(a, b=None):
    return a


def g():
    raise ValueError("boom")


import usagetrace  # noqa: E402

usagetrace.instrument(__name__, consent="opt-in", endpoint="http://127.0.0.1:9"{options})
'''


def run_python(code: str, tmp_path, extra_path=(), **env_extra) -> dict:
    """Run ``code`` in a fresh interpreter outside pytest's consent rule; return its last stdout line as JSON."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST", "OTEL_", "USAGETRACE_", "TINYSTATS_", "BENCHPKG"))
        and k not in ("DO_NOT_TRACK", "PYTHONPATH")
    }
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(
        USAGETRACE_HOME=str(home),
        USAGETRACE_DETACHED_SEND="0",
        USAGETRACE_EXPORT_INTERVAL="3600",
        PYTHONPATH=os.pathsep.join([*extra_path, EXAMPLES, SRC]),
    )
    env.update(env_extra)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_package(tmp_path, options: str = "") -> str:
    """Write a one-function package ``benchpkg`` under ``tmp_path/pkgs``; return that directory."""
    pkgs = tmp_path / "pkgs"
    (pkgs / "benchpkg").mkdir(parents=True)
    (pkgs / "benchpkg" / "__init__.py").write_text(PACKAGE.format(options=options))
    return str(pkgs)


IMPORT_CHECK = """
import json, sys
import tinystats
mods = list(sys.modules)
wrappers = sys.modules.get("usagetrace._internal.wrappers")
def kind(f):
    return "trampoline" if wrappers is not None and wrappers.is_trampoline(f) else type(f).__name__
print(json.dumps({
    "wrapt": [m for m in mods if m == "wrapt" or m.startswith("wrapt.")],
    "otel": [m for m in mods if m.startswith("opentelemetry")],
    "heavy": [m for m in mods if m.startswith(%r)],
    "mean": kind(tinystats.mean),
    "table_add": kind(tinystats.Table.__dict__["add"]),
}))
""" % (HEAVY_PREFIXES,)


@pytest.mark.parametrize(
    "switch",
    [{"TINYSTATS_TELEMETRY": "0"}, {"DO_NOT_TRACK": "1"}, {"OTEL_SDK_DISABLED": "true"}, {}],
    ids=["package-env-off", "do-not-track", "otel-sdk-disabled", "opt-in-not-consented"],
)
def test_off_imports_no_wrapt_or_opentelemetry_and_wraps_nothing(tmp_path, switch):
    """With telemetry off (an env switch, or opt-in without consent) importing the package imports no wrapt or OpenTelemetry module and wraps nothing."""
    r = run_python(IMPORT_CHECK, tmp_path, **switch)
    assert r["wrapt"] == []
    assert r["otel"] == []
    assert r["mean"] == "function"
    assert r["table_add"] == "function"


@pytest.mark.parametrize(
    "content",
    [
        b"# usagetrace consent\n[consent]\n\"*\" = false\nnumpy = true  # by hand\n",
        b"[consent]\ntinystats = false\nnumpy = maybe\n",  # a hand-edited bad line: broken, off
        b"[consent]\ntinystats = false\nnumpy = true\n[consent_version]\nnumpy = \"2\"\n",
    ],
    ids=["denial", "broken", "versioned"],
)
def test_off_with_a_consent_file_parses_it_without_tomllib(tmp_path, content):
    """Reading a consent file in usagetrace's own format (a denial, a broken line) imports no tomllib, wrapt or OTel."""
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "consent.toml").write_bytes(content)
    r = run_python(IMPORT_CHECK.replace("print(json.dumps({", 'print(json.dumps({"tomllib": "tomllib" in mods or "tomli" in mods, '), tmp_path)
    assert r["tomllib"] is False
    assert r["wrapt"] == [] and r["otel"] == [] and r["mean"] == "function"


def test_consented_import_path_does_not_import_the_sdk_or_exporter(tmp_path):
    """With consent the import path wraps the API but imports no OTel SDK, exporter, protobuf or gRPC module."""
    r = run_python(IMPORT_CHECK, tmp_path, TINYSTATS_TELEMETRY="1")
    assert r["mean"] == "trampoline"
    assert r["wrapt"], "wrapt is what wraps the API"
    assert r["heavy"] == []


def test_consented_calls_do_not_import_the_sdk_until_export(tmp_path):
    """Usage calls (counted and sampled) import no SDK module; the first export does."""
    r = run_python(
        """
        import json, sys
        import tinystats
        for _ in range(1000):
            tinystats.mean([1, 2, 3])
        try:
            tinystats.zscore([1, 1], 1)
        except ValueError:
            pass
        heavy = %r
        before = [m for m in sys.modules if m.startswith(heavy)]
        from usagetrace._internal import delivery, instrumentation, transport
        delivery.get().override = transport.MemoryTransport()
        instrumentation.get("tinystats").flush(10)
        after = [m for m in sys.modules if m.startswith("opentelemetry.sdk")]
        print(json.dumps({"before": before, "after": after}))
        """
        % (HEAVY_PREFIXES,),
        tmp_path,
        TINYSTATS_TELEMETRY="1",
    )
    assert r["before"] == []
    assert r["after"], "the export path builds SDK spans"


def test_million_call_hot_loop_counts_exact_and_spans_bounded_by_budget(tmp_path):
    """1,000,000 calls to one function are exported as an exact count and at most span_budget spans."""
    pkgs = bench_package(tmp_path)
    r = run_python(
        """
        import json
        import benchpkg
        from usagetrace._internal import delivery, instrumentation, transport
        from usagetrace.testing import Capture
        mem = transport.MemoryTransport()
        delivery.get().override = mem
        f = benchpkg.f
        for _ in range(1_000_000):
            f(1, b=2)
        handle = instrumentation.get("benchpkg")
        ok = handle.flush(30)
        cap = Capture(handle, mem)
        print(json.dumps({"ok": ok, "calls": cap.calls("benchpkg.f"), "spans": len(cap.spans("benchpkg.f")),
                          "budget": handle.recorder.span_budget, "requests": len(mem.requests)}))
        """,
        tmp_path,
        extra_path=[pkgs],
        BENCHPKG_TELEMETRY="1",
    )
    assert r["ok"]
    assert r["calls"] == 1_000_000
    assert 1 <= r["spans"] <= r["budget"] == 5
    assert r["requests"] <= 2  # one traces request, one metrics request


def test_failed_calls_counted_exactly_with_error_spans_bounded(tmp_path):
    """Every failed call is counted while error spans stop at error_budget per window."""
    pkgs = bench_package(tmp_path)
    r = run_python(
        """
        import json
        import benchpkg
        from usagetrace._internal import delivery, instrumentation, transport
        from usagetrace.testing import Capture
        mem = transport.MemoryTransport()
        delivery.get().override = mem
        for _ in range(500):
            try:
                benchpkg.g()
            except ValueError:
                pass
        handle = instrumentation.get("benchpkg")
        handle.flush(30)
        cap = Capture(handle, mem)
        print(json.dumps({"errors": cap.calls("benchpkg.g", "error"), "spans": len(cap.spans("benchpkg.g")),
                          "budget": handle.recorder.error_budget}))
        """,
        tmp_path,
        extra_path=[pkgs],
        BENCHPKG_TELEMETRY="1",
    )
    assert r["errors"] == 500
    assert r["spans"] == r["budget"] == 50


def test_sample_queue_is_bounded_and_overflow_is_counted(tmp_path):
    """Samples beyond max_queue are dropped and counted as usagetrace.dropped{queue_full}, never silently."""
    pkgs = bench_package(tmp_path, options=", span_budget=10**9, max_queue=100")
    r = run_python(
        """
        import json
        import benchpkg
        from usagetrace._internal import delivery, instrumentation, transport
        from usagetrace.testing import Capture
        mem = transport.MemoryTransport()
        delivery.get().override = mem
        for _ in range(1000):
            benchpkg.f(1, b=2)
        handle = instrumentation.get("benchpkg")
        queued = len(handle.recorder.samples)
        handle.flush(30)
        cap = Capture(handle, mem)
        dropped = sum(p["value"] for p in cap.points("usagetrace.dropped")
                      if p["attributes"].get("usagetrace.drop.reason") == "queue_full")
        print(json.dumps({"queued": queued, "spans": len(cap.spans("benchpkg.f")), "dropped": dropped,
                          "calls": cap.calls("benchpkg.f")}))
        """,
        tmp_path,
        extra_path=[pkgs],
        BENCHPKG_TELEMETRY="1",
    )
    assert r["queued"] == 100
    assert r["spans"] == 100
    assert r["dropped"] == 900
    assert r["calls"] == 1000


def test_withdrawn_consent_records_nothing_more(tmp_path):
    """After consent is withdrawn in a running process the wrapper stays but counts and queues nothing."""
    pkgs = bench_package(tmp_path)
    r = run_python(
        """
        import json, os
        import benchpkg
        from usagetrace._internal import instrumentation, recorder
        handle = instrumentation.get("benchpkg")
        for _ in range(10):
            benchpkg.f(1)
        os.environ["BENCHPKG_TELEMETRY"] = "0"
        handle.refresh_consent()
        queued = len(handle.recorder.samples)
        for _ in range(100_000):
            benchpkg.f(1)
        stats = handle.recorder.functions["benchpkg.f"]
        from usagetrace._internal import wrappers

        print(json.dumps({"wrapper": wrappers.is_trampoline(benchpkg.f), "ok": recorder.count_value(stats.ok),
                          "queued_before": queued, "queued_after": len(handle.recorder.samples)}))
        """,
        tmp_path,
        extra_path=[pkgs],
        BENCHPKG_TELEMETRY="1",
    )
    assert r["wrapper"] is True
    assert r["ok"] == 10
    assert r["queued_after"] == r["queued_before"]
