"""Collector faults: the host's results, output and exit never depend on the collector."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from usagetrace.testing import OTLPReceiver

from ..conftest import self_signed_cert
from .conftest import GENEROUS, REPO, WORKLOAD, clean_env, free_port, run_py

N = 200
HOST = WORKLOAD.format(n=N) + "\nprint(json.dumps(out))\n"


def _assert_clean(proc, baseline_output):
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == baseline_output  # same results, nothing else on stdout
    assert proc.stderr == ""


@pytest.mark.parametrize("protocol", ["http/protobuf", "http/json", "grpc"])
def test_connection_refused(home, baseline_output, protocol):
    """With nothing listening on the endpoint the host's output is unchanged, stderr empty, exit clean."""
    env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}",
                    OTEL_EXPORTER_OTLP_PROTOCOL=protocol, USAGETRACE_EXPORT_INTERVAL="0.1")
    code = HOST.replace("print(json.dumps(out))", "import time; time.sleep(0.5)\nprint(json.dumps(out))")
    _assert_clean(run_py(code, env), baseline_output)


def test_black_hole(home, baseline_output):
    """A collector that accepts and never answers neither blocks calls nor delays exit past the bound."""
    with OTLPReceiver() as rx:
        rx.blackhole = True
        env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_EXPORT_INTERVAL="0.1")
        code = HOST.replace("print(json.dumps(out))",
                            "import time\nfor _ in range(100):\n    time.sleep(0.05)\nprint(json.dumps(out))")
        proc = run_py(code, env)
        assert rx.attempts >= 1  # the export really went into the hole
        assert rx.requests == []
    _assert_clean(proc, baseline_output)


def test_slow_collector_still_delivers(home, baseline_output):
    """A collector slower than the export interval gets every count exactly once, host unaffected."""
    with OTLPReceiver() as rx:
        rx.delay = 0.5
        env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_EXPORT_INTERVAL="0.1")
        code = HOST.replace("print(json.dumps(out))",
                            "import usagetrace._internal.instrumentation as I\n"
                            "assert I.get('tinystats').flush(30)\nprint(json.dumps(out))")
        proc = run_py(code, env)
        _assert_clean(proc, baseline_output)
        assert rx.calls("tinystats.mean") == N
        assert rx.calls("tinystats.zscore", "error") == N


def _phased_host(env, phases: int) -> subprocess.Popen:
    """Start a host that runs the workload once per phase, waiting for a line on stdin between phases."""
    code = textwrap.dedent("""
        import json, sys, time
        import tinystats
        from usagetrace._internal import delivery, instrumentation
        for phase in range(%d):
            if phase:
                # wait (bounded) until an export of this phase's data failed, then for the test's go
                ch = delivery.get().channels["tinystats"]
                sys.stdin.readline()
            for i in range(100):
                tinystats.mean([1, 2, i])
            time.sleep(0.3)
        ok = instrumentation.get("tinystats").flush(30)
        print(json.dumps({"flushed": ok}))
    """ % phases)
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc):
    try:
        out, err = proc.communicate(timeout=GENEROUS)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("host process did not exit within the bound")
    assert proc.returncode == 0, err
    assert err == ""
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("status,retry_after", [(429, "1"), (503, "1"), (503, None), (429, "Wed, 21 Oct 2015 07:28:00 GMT"),
                                                (302, None), (307, "1")])
def test_retryable_status_then_recovery_loses_nothing(home, status, retry_after):
    """429/503 (with and without Retry-After) and 3xx (a captive portal: kept, never deleted) are retried from
    the buffer: after recovery every count arrives once."""
    with OTLPReceiver(status=status, retry_after=retry_after) as rx:
        env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_EXPORT_INTERVAL="0.1")
        proc = _phased_host(env, 2)
        assert rx.wait_for(lambda r: r.attempts >= 1, GENEROUS)
        rx.status = 200
        proc.stdin.write("go\n")
        proc.stdin.flush()
        result = _finish(proc)
        assert result == {"flushed": True}
        assert rx.calls("tinystats.mean") == 200


def test_http_500_drops_counted_then_resumes(home):
    """A 500 is not retried: that data is dropped and counted, and later data is delivered."""
    with OTLPReceiver(status=500) as rx:
        env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_EXPORT_INTERVAL="0.1")
        proc = _phased_host(env, 2)
        assert rx.wait_for(lambda r: r.attempts >= 2, GENEROUS)  # traces and metrics both refused
        rx.status = 200
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert _finish(proc) == {"flushed": True}
        delivered = rx.calls("tinystats.mean")
        assert 0 < delivered <= 200  # the refused batch is gone, the rest arrived
        dropped = sum(p["value"] for p in rx.points("usagetrace.dropped")
                      if p["attributes"].get("usagetrace.drop.reason") == "export_failed")
        assert dropped >= 1  # the refused spans are accounted for


def test_huge_retry_after_does_not_delay_exit(home, baseline_output):
    """A Retry-After of a day is capped and never holds the host at exit."""
    with OTLPReceiver(status=429, retry_after="86400") as rx:
        env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_EXPORT_INTERVAL="0.1")
        # An export attempt now, not after a sleep (a busy machine may not get there in time).
        code = HOST.replace("print(json.dumps(out))", "import usagetrace._internal.instrumentation as I\nI.get('tinystats').flush(10)\nprint(json.dumps(out))")
        proc = run_py(code, env)
        assert rx.attempts >= 1
    _assert_clean(proc, baseline_output)
    # What could not be sent waits in the spool for a later run, within its bounds.
    spool = home / "cache" / "spool"
    assert spool.is_dir() and any(p.suffix == ".json" for p in spool.iterdir())


COLLECTOR = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
sys.path.insert(0, sys.argv[3])
from usagetrace._internal import otlp_json
out = open(sys.argv[2], "a")
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        signal = "traces" if self.path.endswith("/v1/traces") else "metrics"
        out.write(json.dumps([signal, otlp_json.to_dict(signal, body)]) + "\n"); out.flush()
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
ThreadingHTTPServer.allow_reuse_address = True
srv = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("ready", flush=True)
srv.serve_forever(poll_interval=0.05)
"""


def _start_collector(port, path):
    proc = subprocess.Popen([sys.executable, "-c", COLLECTOR, str(port), str(path), os.path.join(REPO, "src")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _received_calls(path, function="tinystats.mean") -> int:
    from usagetrace.testing import flatten

    total = 0
    if not path.exists():
        return 0
    for line in path.read_text().splitlines():
        signal, req = json.loads(line)
        if signal == "metrics":
            total += sum(p["value"] for p in flatten(signal, req) if p["metric"] == "usagetrace.calls"
                         and p["attributes"].get("code.function.name") == function)
    return total


def _wait(predicate, timeout=GENEROUS):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_collector_killed_and_restarted_mid_stream(home, tmp_path):
    """A collector SIGKILLed mid-stream and restarted on the same port gets every count exactly once."""
    port = free_port()
    log = tmp_path / "received.jsonl"
    collector = _start_collector(port, log)
    env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}", USAGETRACE_EXPORT_INTERVAL="0.1")
    host = _phased_host(env, 3)
    try:
        assert _wait(lambda: _received_calls(log) == 100)  # phase 1 delivered live
        collector.send_signal(signal.SIGKILL)
        collector.wait(timeout=GENEROUS)
        host.stdin.write("go\n")
        host.stdin.flush()  # phase 2 runs while nothing listens
        time.sleep(1.0)  # let a few export attempts fail (no assertion on timing)
        collector = _start_collector(port, log)
        host.stdin.write("go\n")
        host.stdin.flush()
        assert _finish(host) == {"flushed": True}
        assert _received_calls(log) == 300
    finally:
        collector.kill()
        collector.wait(timeout=GENEROUS)
        if host.poll() is None:
            host.kill()


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_tls_endpoint_with_self_signed_certificate(home, tmp_path, baseline_output, protocol):
    """An https endpoint with an untrusted certificate gets no data, and the host runs and exits cleanly."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    cert, key = self_signed_cert(tmp_path)
    handshakes, bodies = [], []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.send_response(200)
            self.end_headers()

    class S(ThreadingHTTPServer):
        daemon_threads = True

        def get_request(self):
            sock, addr = self.socket.accept()
            handshakes.append(addr)
            return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

        def handle_error(self, request, client_address):
            pass

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    srv = S(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=f"https://127.0.0.1:{srv.server_address[1]}",
                        OTEL_EXPORTER_OTLP_PROTOCOL=protocol, USAGETRACE_EXPORT_INTERVAL="0.1")
        code = HOST.replace("print(json.dumps(out))", "import usagetrace._internal.instrumentation as I\nI.get('tinystats').flush(10)\nprint(json.dumps(out))")
        proc = run_py(code, env)
    finally:
        srv.shutdown()
        srv.server_close()
    _assert_clean(proc, baseline_output)
    assert handshakes  # the exporter did try
    assert bodies == []  # and sent nothing over the unverified connection


def test_retry_buffer_and_queue_stay_bounded(home):
    """While the collector is down the retry buffer and sample queue never exceed their bounds; excess is counted."""
    code = """
        import json, time
        from usagetrace._internal import delivery
        delivery.MAX_BUFFER_BYTES = 4000
        import usagetrace, tinystats
        from usagetrace._internal import instrumentation
        h = instrumentation.get("tinystats")
        h.recorder.max_queue = 50
        ch = None
        worst_buf = worst_q = 0
        for round_ in range(40):
            for stats in h.recorder.functions.values():
                stats.budget = 1000  # sample every call: the queue fills
            for i in range(100):
                tinystats.mean([i, 1]); tinystats.median([i, 2])
            worst_q = max(worst_q, len(h.recorder.samples))
            h.flush(0.5)  # force an export attempt (refused)
            ch = delivery.get().channels["tinystats"]
            worst_buf = max(worst_buf, ch.retry_bytes)
        counts = h.recorder.counts()
        print(json.dumps({"buf": worst_buf, "q": worst_q, "items": len(ch.retry),
                          "queue_full": counts.get(("dropped", "queue_full"), 0),
                          "export_failed": counts.get(("dropped", "export_failed"), 0)}))
    """
    env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}",
                    USAGETRACE_EXPORT_INTERVAL="3600")
    proc = run_py(code, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    r = json.loads(proc.stdout)
    assert r["q"] <= 50
    assert r["queue_full"] > 0
    # one oversized payload may be kept alone; otherwise the byte bound holds
    assert r["buf"] <= 4000 or r["items"] == 1
    assert r["export_failed"] > 0
