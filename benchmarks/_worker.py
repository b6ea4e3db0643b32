"""One benchmark scenario per process: ``python _worker.py SCENARIO '{json args}'``.

Prints one JSON object on its last stdout line. Started by ``run.py``; every
scenario isolates its global state (OTel providers, sentry hub, consent) by
running in its own fresh interpreter. Every loop is bounded in count and time.
Talks only to 127.0.0.1.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import time
import timeit

ARGS: dict = {}
STMT = "f(1, b=2)"


def f(a, b=None):
    return a


def _is_trampoline(func) -> bool:
    from usagetrace._internal.wrappers import is_trampoline

    return is_trampoline(func)


def per_call_ns(func, n: int) -> float:
    """ns per ``func(1, b=2)`` over ``n`` calls (timeit's loop, gc off as timeit does)."""
    return timeit.Timer(STMT, globals={"f": func}).timeit(n) / n * 1e9


def calibrate(func, target_s: float = 0.08, cap: int = 2_000_000) -> int:
    n = 100
    while n < cap:
        t = timeit.Timer(STMT, globals={"f": func}).timeit(n)
        if t > target_s / 4:
            break
        n *= 4
    return max(100, min(cap, int(n * (target_s / max(t, 1e-9)) if t > 0 else n)))


def rounds(cases: dict, repeats: int) -> dict:
    """Round-robin: each round measures every case once; returns medians and raw values."""
    ns = {name: calibrate(fn) for name, fn in cases.items()}
    raw = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            raw[name].append(per_call_ns(fn, ns[name]))
    return {name: {"median_ns": statistics.median(v), "runs": v, "n": ns[name]} for name, v in raw.items()}


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def thread_cpu_s(native_id: int) -> float:
    with open(f"/proc/self/task/{native_id}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrapt_passthrough(func):
    import wrapt

    def passthrough(wrapped, instance, args, kwargs):
        return wrapped(*args, **kwargs)

    return wrapt.FunctionWrapper(func, passthrough)


def memory_override():
    """Route every usagetrace export of this process into memory (nothing leaves the process)."""
    from usagetrace._internal import delivery, transport

    mem = transport.MemoryTransport()
    delivery.get().override = mem
    return mem


def decoded_calls(handle, mem, name: str) -> tuple[int, int]:
    from usagetrace.testing import Capture

    cap = Capture(handle, mem)
    return cap.calls(name), len(cap.spans(name))


# --------------------------------------------------------------------------- scenarios


def scenario_core() -> dict:
    """bare, wrapt pass-through and usagetrace in every state, round-robin in one process."""
    import importlib

    repeats = ARGS.get("repeats", 7)
    mem = memory_override()
    pkgs = {}
    for name in ("ut_off", "ut_optin", "ut_on", "ut_withdrawn"):
        pkgs[name] = importlib.import_module(name)
    from usagetrace._internal import instrumentation

    wd = instrumentation.get("ut_withdrawn")
    os.environ["UT_WITHDRAWN_TELEMETRY"] = "0"  # withdraw while running; the refresher notices
    wd.refresh_consent()
    on_handle = instrumentation.get("ut_on")

    def inner_case(n):
        # ut_on.call_with is a usage; every ut_on.f call inside it is an inner call.
        return pkgs["ut_on"].call_with(lambda: timeit.Timer(STMT, globals={"f": pkgs["ut_on"].f}).timeit(n)) / n * 1e9

    cases = {
        "bare": f,
        "wrapt_passthrough": wrapt_passthrough(f),
        "ut_off_env": pkgs["ut_off"].f,
        "ut_optin_unconsented": pkgs["ut_optin"].f,
        "ut_withdrawn": pkgs["ut_withdrawn"].f,
        "ut_usage": pkgs["ut_on"].f,
    }
    checks = {
        "off_is_plain_function": not _is_trampoline(pkgs["ut_off"].f),
        "optin_is_plain_function": not _is_trampoline(pkgs["ut_optin"].f),
        "withdrawn_is_wrapper": _is_trampoline(pkgs["ut_withdrawn"].f),
        "withdrawn_enabled_flag": wd.recorder.enabled,
        "on_is_wrapper": _is_trampoline(pkgs["ut_on"].f),
    }
    ns = {name: calibrate(fn) for name, fn in cases.items()}
    n_inner = ns["wrapt_passthrough"]
    raw = {name: [] for name in list(cases) + ["ut_inner"]}
    for _ in range(repeats):
        for name, fn in cases.items():
            raw[name].append(per_call_ns(fn, ns[name]))
        raw["ut_inner"].append(inner_case(n_inner))
    out = {name: {"median_ns": statistics.median(v), "runs": v} for name, v in raw.items()}
    # usage calls counted exactly (the calibration + timing calls)
    on_handle.flush(10)
    calls, spans = decoded_calls(on_handle, mem, "ut_on.f")
    expected = ns["ut_usage"] * repeats
    out["checks"] = checks
    out["checks"]["usage_counted_at_least_timed_calls"] = calls >= expected
    out["checks"]["usage_spans"] = spans
    return out


def scenario_hotloop() -> dict:
    """1,000,000 usage calls to one function, default settings; mean ns; exact counts after a flush."""
    import ut_hot

    from usagetrace._internal import instrumentation

    mem = memory_override()
    handle = instrumentation.get("ut_hot")
    n = ARGS.get("n", 1_000_000)
    repeats = ARGS.get("repeats", 3)
    bare, wrapped, means = [], [], []
    wp = wrapt_passthrough(f)
    per_call_ns(ut_hot.f, 10_000)  # warm-up (these calls are counted too)
    total_calls = 10_000
    for _ in range(repeats):
        bare.append(per_call_ns(f, n))
        wrapped.append(per_call_ns(wp, n))
        means.append(per_call_ns(ut_hot.f, n))
        total_calls += n
    t = time.perf_counter()
    ok = handle.flush(30)
    flush_s = time.perf_counter() - t
    calls, spans = decoded_calls(handle, mem, "ut_hot.f")
    return {
        "bare_ns": statistics.median(bare),
        "wrapt_ns": statistics.median(wrapped),
        "usage_mean_ns": statistics.median(means),
        "runs": {"bare": bare, "wrapt": wrapped, "usage": means},
        "calls_made": total_calls,
        "calls_exported": calls,
        "counts_exact": calls == total_calls,
        "spans_exported": spans,
        "span_budget": handle.recorder.span_budget,
        "flush_ok": ok,
        "flush_ms": flush_s * 1e3,
        "otlp_requests": len(mem.requests),
    }


def scenario_sampled() -> dict:
    """Every call recorded as a span: caller-side ns, then the delivery-side materialise+encode per span."""
    import ut_sampled

    from usagetrace._internal import instrumentation

    mem = memory_override()
    handle = instrumentation.get("ut_sampled")
    n = ARGS.get("n", 20_000)
    repeats = ARGS.get("repeats", 5)
    per_call_ns(ut_sampled.f, 2000)
    handle.flush(30)  # pipeline built, SDK imported: steady state
    caller, background, bare = [], [], []
    spans_total = 0
    for _ in range(repeats):
        bare.append(per_call_ns(f, n))
        caller.append(per_call_ns(ut_sampled.f, n))
        before = len(mem.requests)
        t = time.perf_counter()
        handle.flush(60)
        background.append((time.perf_counter() - t) / n * 1e9)
        from usagetrace._internal import otlp_json

        for signal, payload in mem.requests[before:]:
            if signal == "traces":
                d = otlp_json.to_dict(signal, payload)
                spans_total += sum(len(ss.get("spans", [])) for rs in d.get("resourceSpans", []) for ss in rs.get("scopeSpans", []))
    dropped = {k: int(repr(v)[6:-1]) for k, v in handle.recorder.dropped.items()}
    return {
        "bare_ns": statistics.median(bare),
        "caller_ns": statistics.median(caller),
        "background_ns": statistics.median(background),
        "total_ns": statistics.median(caller) + statistics.median(background),
        "runs": {"caller": caller, "background": background},
        "spans_exported": spans_total,
        "spans_expected": n * repeats,
        "dropped": dropped,
    }


def scenario_otel() -> dict:
    """Raw OpenTelemetry SDK: start_span+end, start_as_current_span, Counter.add; BSP into a discarding exporter."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    class EncodeDiscard(SpanExporter):
        def export(self, spans):
            encode_spans(spans).SerializeToString()
            return SpanExportResult.SUCCESS

    class DiscardMetrics(MetricExporter):
        def export(self, metrics_data, timeout_millis=10_000, **kw):
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis=10_000):
            return True

        def shutdown(self, timeout_millis=30_000, **kw):
            pass

    repeats = ARGS.get("repeats", 7)
    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(Discard()))
    tracer = tp.get_tracer("bench")
    from opentelemetry.sdk.resources import Resource

    # the same span attributes and a resource of the same shape as usagetrace's, for a like-for-like row
    span_attrs = {"code.function.name": "pkg.f", "usagetrace.module": "pkg", "usagetrace.callable.kind": "function",
                  "usagetrace.args.count": 1, "usagetrace.params.set": ["b"], "usagetrace.kwargs.extra": 0}
    resource = Resource({f"resource.key{i}": f"value-{i}" for i in range(17)})
    tp2 = TracerProvider(resource=resource)
    bsp2 = BatchSpanProcessor(EncodeDiscard(), max_queue_size=1_000_000)
    tp2.add_span_processor(bsp2)
    tracer2 = tp2.get_tracer("bench")
    reader = PeriodicExportingMetricReader(DiscardMetrics(), export_interval_millis=3_600_000)
    mp = MeterProvider(metric_readers=[reader])
    counter = mp.get_meter("bench").create_counter("calls")
    attrs = {"code.function.name": "f"}

    def span(a, b=None):
        s = tracer.start_span("f")
        try:
            return f(a, b=b)
        finally:
            s.end()

    def current(a, b=None):
        with tracer.start_as_current_span("f"):
            return f(a, b=b)

    def count(a, b=None):
        counter.add(1, attrs)
        return f(a, b=b)

    def span_attrs_fn(a, b=None):
        s = tracer.start_span("f", attributes=span_attrs)
        try:
            return f(a, b=b)
        finally:
            s.end()

    res = rounds({"bare": f, "otel_span": span, "otel_current_span": current, "otel_counter_add": count,
                  "otel_span_attrs": span_attrs_fn}, repeats)

    # span + OTLP encode, amortised: caller time plus flushing the encoding exporter
    def span2(a, b=None):
        s = tracer2.start_span("f", attributes=span_attrs)
        try:
            return f(a, b=b)
        finally:
            s.end()

    totals = []
    n = 20_000
    for _ in range(5):
        t = time.perf_counter()
        timeit.Timer(STMT, globals={"f": span2}).timeit(n)
        bsp2.force_flush(60_000)
        totals.append((time.perf_counter() - t) / n * 1e9)
    res["otel_span_plus_encode"] = {"median_ns": statistics.median(totals), "runs": totals, "n": n}
    import opentelemetry.sdk.version as v

    res["version"] = v.__version__
    return res


def scenario_logfire() -> dict:
    import logfire

    logfire.configure(send_to_logfire=False, console=False, inspect_arguments=False)

    @logfire.instrument("f")
    def lf(a, b=None):
        return a

    res = rounds({"bare": f, "logfire_instrument": lf}, ARGS.get("repeats", 5))
    res["version"] = logfire.VERSION if hasattr(logfire, "VERSION") else logfire.__version__
    return res


def scenario_sentry() -> dict:
    import sentry_sdk
    from sentry_sdk.transport import Transport

    class Discard(Transport):
        def capture_envelope(self, envelope):
            pass

    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1",
        transport=Discard,
        traces_sample_rate=1.0,
        default_integrations=False,
    )

    def child(a, b=None):
        with sentry_sdk.start_span(op="function", name="f"):
            return f(a, b=b)

    # sentry keeps at most 1000 spans per transaction: time batches of 500 inside fresh transactions
    batch, repeats = 500, ARGS.get("repeats", 7)
    bare = rounds({"bare": f}, repeats)["bare"]
    runs = []
    for _ in range(repeats):
        total = 0.0
        for _ in range(10):
            with sentry_sdk.start_transaction(op="bench", name="bench"):
                total += timeit.Timer(STMT, globals={"f": child}).timeit(batch)
        runs.append(total / (10 * batch) * 1e9)
    return {
        "bare": bare,
        "sentry_child_span": {"median_ns": statistics.median(runs), "runs": runs, "n": batch * 10},
        "version": sentry_sdk.VERSION,
    }


def scenario_d6tcollect() -> dict:
    import importlib.metadata

    import d6tcollect  # HOME points at a temp dir; D6TCOLLECT_SVR at a closed 127.0.0.1 port

    dc = d6tcollect.collect(f)
    n, repeats = ARGS.get("n", 2000), ARGS.get("repeats", 5)
    bare = rounds({"bare": f}, repeats)["bare"]
    caller, background, total = [], [], []
    writer = d6tcollect._t
    for _ in range(repeats):
        cpu0 = thread_cpu_s(writer.native_id)
        t = time.perf_counter()
        c = timeit.Timer(STMT, globals={"f": dc}).timeit(n)
        deadline = time.monotonic() + 120
        while not d6tcollect.payload_queue.empty() and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.02)
        wall = time.perf_counter() - t
        caller.append(c / n * 1e9)
        background.append((thread_cpu_s(writer.native_id) - cpu0) / n * 1e9)
        total.append(wall / n * 1e9)
    return {
        "bare": bare,
        "d6tcollect_caller": {"median_ns": statistics.median(caller), "runs": caller, "n": n},
        "d6tcollect_background_cpu": {"median_ns": statistics.median(background), "runs": background},
        "d6tcollect_total_wall": {"median_ns": statistics.median(total), "runs": total},
        "server": d6tcollect.host,
        "version": importlib.metadata.version("d6tcollect"),
    }


def scenario_memory() -> dict:
    """1,000,000 usage calls with the collector unreachable (closed port); RSS growth."""
    import ut_mem

    from usagetrace._internal import delivery, instrumentation

    handle = instrumentation.get("ut_mem")
    rss_import = rss_bytes()
    for _ in range(1000):
        ut_mem.f(1, b=2)
        try:
            ut_mem.g()
        except ValueError:
            pass
    handle.flush(0.5)  # first (failing) export: the SDK and pipeline are loaded now
    gc.collect()
    rss_steady = rss_bytes()
    n, chunk = ARGS.get("n", 1_000_000), 50_000
    t0 = time.monotonic()
    made = 0
    while made < n and time.monotonic() - t0 < 120:
        for _ in range(chunk):
            ut_mem.f(1, b=2)
        for _ in range(50):  # a failing call now and then: error counts and error spans too
            try:
                ut_mem.g()
            except ValueError:
                pass
        made += chunk
        time.sleep(0.01)  # let the delivery thread run its (failing) exports
    gc.collect()
    rss_end = rss_bytes()
    ch = delivery.get().channels.get("ut_mem")
    return {
        "calls": made,
        "seconds": time.monotonic() - t0,
        "rss_after_import_mb": rss_import / 2**20,
        "rss_steady_mb": rss_steady / 2**20,
        "rss_end_mb": rss_end / 2**20,
        "growth_mb": (rss_end - rss_steady) / 2**20,
        "growth_from_import_mb": (rss_end - rss_import) / 2**20,
        "retry_buffer_bytes": ch.retry_bytes if ch else None,
        "retry_payloads": len(ch.retry) if ch else None,
        "queued_samples": len(handle.recorder.samples),
        "export_failures": ch.failures if ch else None,
        "dropped": {k: int(repr(v)[6:-1]) for k, v in handle.recorder.dropped.items()},
    }


def scenario_throughput() -> dict:
    """Sampled spans at a paced rate into a local OTLPReceiver (endpoint from env); counts drops."""
    import ut_tp

    from usagetrace._internal import instrumentation, recorder

    handle = instrumentation.get("ut_tp")
    rate, seconds = ARGS["rate"], ARGS["seconds"]
    total = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(total):
        ut_tp.f(1, b=2)
        delay = t0 + (i + 1) / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    gen_s = time.perf_counter() - t0
    ok = handle.flush(20)
    dropped = {k: recorder.count_value(v) for k, v in handle.recorder.dropped.items()}
    return {"generated": total, "gen_seconds": gen_s, "flush_ok": ok, "dropped": dropped}


def main() -> None:
    global ARGS
    name = sys.argv[1]
    ARGS = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    gc.collect()
    result = globals()[f"scenario_{name}"]()
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
