"""``usagetrace collect``: the embedded collector applies the bundled collector's rules and stores for report.

The equivalence tests send the same hostile and valid requests through both
paths, the bundled configuration (emulated inside rotel, as
test_collector_hostile.py does) and ``collect``, and compare what each stores.
The other tests run the collector in this process on 127.0.0.1 (bounds, formats,
files) or as ``usagetrace collect`` in a child process (signals, a real run,
``usagetrace report``).
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pb_trace = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
pb_metrics = pytest.importorskip("opentelemetry.proto.collector.metrics.v1.metrics_service_pb2")

from usagetrace._internal import allowlist, collect, otlp_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# --- helpers ---------------------------------------------------------------------------------


def post(port: int, path: str, body: bytes, ctype: str = "application/x-protobuf", headers: dict | None = None):
    """POST and return (status, body)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers={"Content-Type": ctype, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def stored(directory: Path, signal_name: str) -> list[dict]:
    path = directory / f"{signal_name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def _put(attrs, key, value):
    kv = attrs.add()
    kv.key = key
    if isinstance(value, str):
        kv.value.string_value = value
    else:
        kv.value.int_value = value


def valid_traces(n: int = 3, extra_resource: dict | None = None) -> bytes:
    req = pb_trace.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    _put(rs.resource.attributes, "service.name", "okpkg")
    _put(rs.resource.attributes, "service.version", "1.0.0")
    for k, v in (extra_resource or {}).items():
        _put(rs.resource.attributes, k, v)
    ss = rs.scope_spans.add()
    ss.scope.name = allowlist.SCOPE_NAME
    ss.scope.version = "0.1.0"
    for i in range(n):
        sp = ss.spans.add()
        sp.trace_id, sp.span_id = bytes([i + 1]) * 16, bytes([i + 1]) * 8
        sp.name = "okpkg.f"
        sp.start_time_unix_nano = sp.end_time_unix_nano = 1_763_800_000_000_000_000 + i
        _put(sp.attributes, "code.function.name", "okpkg.f")
    return req.SerializeToString()


@pytest.fixture
def running(tmp_path):
    c = collect.Collector(str(tmp_path / "data"), port=0).start()
    try:
        yield c
    finally:
        c.stop()


# --- the rules: the same output as the bundled configuration ----------------------------------


def _canonical(node):
    """What both paths must store, with rotel's known quirks taken out (see test_collector_hostile.py):
    rotel does not write schema_url changes back and reverses arrays a Python processor has read;
    it exports a resource whose spans were all dropped (the contrib collector does not)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "schemaUrl":
                continue
            if k == "arrayValue":
                values = [_canonical(x) for x in v.get("values", [])]
                out[k] = {"values": sorted(values, key=lambda x: json.dumps(x, sort_keys=True))}
                continue
            out[k] = _canonical(v)
        return out
    if isinstance(node, list):
        return [_canonical(x) for x in node]
    return node


def _flatten(requests: list[dict], signal_name: str) -> list[str]:
    """One canonical JSON text per stored span (or metric), with its resource and scope, sorted."""
    top, scoped, items = (
        ("resourceSpans", "scopeSpans", "spans") if signal_name == "traces" else ("resourceMetrics", "scopeMetrics", "metrics")
    )
    out = []
    for req in requests:
        for r in req.get(top, []):
            for s in r.get(scoped, []):
                for item in s.get(items, []):
                    out.append(json.dumps(_canonical({"resource": r.get("resource", {}), "scope": s.get("scope", {}),
                                                      "item": item}), sort_keys=True))
    return sorted(out)


def _both_paths(emulated_collector, sink, tmp_path, signal_name: str, body: bytes):
    port, log = emulated_collector
    assert post(port, f"/v1/{signal_name}", body)[0] == 200
    assert sink.wait_for(lambda: (sink.traces if signal_name == "traces" else sink.metrics) and
                         log.exists() and log.read_text().strip())
    time.sleep(0.5)  # rotel exports each resource on its own: let the rest arrive (bounded wait)
    lines = log.read_text(encoding="utf-8").splitlines()
    assert lines and all(line == f"{signal_name} ok" for line in lines), lines
    via_config = [otlp_json.to_dict(signal_name, m.SerializeToString())
                  for m in (sink.traces if signal_name == "traces" else sink.metrics)]
    with collect.Collector(str(tmp_path / "collect"), port=0) as c:
        status, _ = post(c.port, f"/v1/{signal_name}", body)
        assert status == 200
    via_collect = stored(tmp_path / "collect", signal_name)
    return _flatten(via_config, signal_name), _flatten(via_collect, signal_name)


@pytest.mark.slow
def test_hostile_traces_store_the_same_as_the_bundled_config(sink, emulated_collector, tmp_path):
    from tests.test_collector_hostile import build_traces

    via_config, via_collect = _both_paths(emulated_collector, sink, tmp_path, "traces", build_traces()[0])
    assert len(via_collect) > 10
    assert via_collect == via_config


@pytest.mark.slow
def test_hostile_metrics_store_the_same_as_the_bundled_config(sink, emulated_collector, tmp_path):
    from tests.test_collector_hostile import build_metrics

    via_config, via_collect = _both_paths(emulated_collector, sink, tmp_path, "metrics", build_metrics()[0])
    assert via_collect and via_collect == via_config


@pytest.mark.slow
def test_valid_requests_store_the_same_as_the_bundled_config(sink, emulated_collector, tmp_path):
    via_config, via_collect = _both_paths(
        emulated_collector, sink, tmp_path, "traces",
        valid_traces(5, {"usagetrace.install.id": "3f0c9e0a-4f7b-4d8e-9a51-0c2f5d6e7a8b", "host.arch": "amd64"}),
    )
    assert len(via_collect) == 5 and via_collect == via_config
    assert all('"okpkg.f"' in s for s in via_collect)


# fixtures of the emulated collector (rotel + the bundled configuration)
try:
    from tests.test_collector_e2e import sink  # noqa: E402,F401
    from tests.test_collector_hostile import emulated_collector  # noqa: E402,F401
except pytest.skip.Exception:  # yaml/re2 missing: only the equivalence tests skip
    @pytest.fixture
    def emulated_collector():
        pytest.skip("the emulated collector needs pyyaml and google-re2")

    @pytest.fixture
    def sink():
        pytest.skip("the emulated collector needs pyyaml and google-re2")


# --- receiving ---------------------------------------------------------------------------------


def test_protobuf_json_and_gzip_are_stored_as_otlp_json_lines(running, tmp_path):
    body = valid_traces(2)
    assert post(running.port, "/v1/traces", body)[0] == 200
    assert post(running.port, "/v1/traces", gzip.compress(body), headers={"Content-Encoding": "gzip"})[0] == 200
    as_json = otlp_json.to_json("traces", body).encode()
    status, answer = post(running.port, "/v1/traces", as_json, ctype="application/json")
    assert status == 200 and json.loads(answer) == {}
    lines = stored(tmp_path / "data", "traces")
    assert len(lines) == 3
    assert lines[0] == lines[1] == lines[2]  # the JSON request (hex ids) is read like the protobuf one
    span = lines[0]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == "01" * 16 and span["spanId"] == "01" * 8


def test_dropped_items_are_answered_with_partial_success(running, tmp_path):
    req = pb_trace.ExportTraceServiceRequest.FromString(valid_traces(3))
    ss = req.resource_spans[0].scope_spans[0]
    ss.spans[1].name = "not a qualified name"
    ss.spans[2].links.add().trace_id = b"\x01" * 16
    _put(req.resource_spans[0].resource.attributes, "host.name", "secret-host")
    _put(req.resource_spans[0].resource.attributes, "user.email", "jane@example.com")
    status, answer = post(running.port, "/v1/traces", req.SerializeToString())
    assert status == 200
    resp = pb_trace.ExportTraceServiceResponse.FromString(answer)
    assert resp.partial_success.rejected_spans == 2 and resp.partial_success.error_message
    raw = (tmp_path / "data" / "traces.jsonl").read_text()
    assert "secret-host" not in raw and "jane@example.com" not in raw and "host.name" not in raw
    [line] = stored(tmp_path / "data", "traces")
    assert [s["name"] for s in line["resourceSpans"][0]["scopeSpans"][0]["spans"]] == ["okpkg.f"]
    # JSON requests get a JSON partial success
    body = otlp_json.to_json("traces", req.SerializeToString()).encode()
    status, answer = post(running.port, "/v1/traces", body, ctype="application/json")
    assert status == 200 and json.loads(answer)["partialSuccess"]["rejectedSpans"] == "2"
    # a request with nothing usagetrace sends stores nothing at all
    foreign = pb_trace.ExportTraceServiceRequest.FromString(valid_traces(1))
    foreign.resource_spans[0].scope_spans[0].scope.name = "someone.else"
    assert post(running.port, "/v1/traces", foreign.SerializeToString())[0] == 200
    assert len(stored(tmp_path / "data", "traces")) == 2
    assert running.counts["dropped_spans"] == 5 and running.counts["spans"] == 2


def test_bad_requests_get_the_otlp_status_codes(running, tmp_path):
    port = running.port
    assert post(port, "/v1/logs", b"x")[0] == 404
    assert post(port, "/v1/traces", b"\xff\xfe garbage")[0] == 400
    assert post(port, "/v1/traces", b"{not json", ctype="application/json")[0] == 400
    assert post(port, "/v1/traces", b"", ctype="text/plain")[0] == 415
    assert post(port, "/v1/traces", b"abc", headers={"Content-Encoding": "br"})[0] == 415
    assert post(port, "/v1/traces", b"not gzip", headers={"Content-Encoding": "gzip"})[0] == 400
    too_big = b"\0" * (collect.MAX_BODY_BYTES + 1)
    assert post(port, "/v1/traces", too_big)[0] == 413
    bomb = gzip.compress(b"\0" * (collect.MAX_BODY_BYTES + 1))  # small on the wire, too large once read
    assert len(bomb) < 100_000
    assert post(port, "/v1/traces", bomb, headers={"Content-Encoding": "gzip"})[0] == 413
    # all request slots taken: 429 with Retry-After, and nothing stored
    held = 0
    for _ in range(collect.MAX_CONCURRENT_REQUESTS):  # a request just answered may still hold its slot
        held += running._slots.acquire(timeout=10)
    try:
        assert held == collect.MAX_CONCURRENT_REQUESTS and not running._slots.acquire(blocking=False)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/traces", data=valid_traces(1),
                                         headers={"Content-Type": "application/x-protobuf"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        assert info.value.code == 429 and info.value.headers["Retry-After"] == "1"
    finally:
        for _ in range(held):
            running._slots.release()
    assert post(port, "/v1/traces", valid_traces(1))[0] == 200
    assert len(stored(tmp_path / "data", "traces")) == 1


def test_files_are_private_and_rotate_by_size(tmp_path):
    directory = tmp_path / "data"
    with collect.Collector(str(directory), port=0):
        pass
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("traces.jsonl", "metrics.jsonl"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    f = collect.JsonLinesFile(str(directory), "traces", max_bytes=250, max_backups=2)
    for i in range(10):
        f.append(json.dumps({"n": i, "pad": "x" * 80}).encode())
    f.close()
    files = sorted(p.name for p in directory.iterdir() if p.name.startswith("traces"))
    assert len(files) == 3 and "traces.jsonl" in files  # the live file and two backups
    kept = [json.loads(line)["n"] for name in files for line in (directory / name).read_text().splitlines()]
    assert sorted(kept) == list(range(10 - len(kept), 10))  # only the oldest went, whole lines only
    for name in files:
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600


def test_stopping_loses_no_acknowledged_request(tmp_path):
    """Requests racing a stop are either stored (and acknowledged) or refused with a retryable status."""
    c = collect.Collector(str(tmp_path / "data"), port=0).start()
    results: list[int] = []

    def sender():
        for _ in range(200):
            try:
                status, _ = post(c.port, "/v1/traces", valid_traces(1))
            except OSError:
                return  # the listener is gone: not acknowledged, the SDK retries
            results.append(status)
            if status != 200:
                return

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    c.stop()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    acknowledged = results.count(200)
    assert acknowledged > 0
    assert set(results) <= {200, 503}
    assert len(stored(tmp_path / "data", "traces")) == acknowledged


def test_python_patterns_mean_what_re2_means():
    re2 = pytest.importorskip("re2")
    from usagetrace._internal import collector_rules as rules

    samples = ["a", "a.b", "mypkg.io.read_table", "café", "名前", "1x", "a b", "a\n", "x" * 257, "x" * 256,
               "\ufffe", "é" * 300, "1.2.3", "v2.0", "unknown", "1.2.3.4", "jane@example.com",
               "пользователь@пример.рф", "10.0.0.1:80", "fe80::1", "::1", "2001:db8::", "ab::cd",
               "1.2.3.4.5", "x 192.168.0.1 192.168.0.2 y", "𝄞" * 3, ""]
    patterns = [p for _, p in rules.BLOCKED_VALUES] + [rules.VERSION, rules.IDENTIFIER, rules.QUALIFIED_NAME,
                                                       rules.NAME_LENGTH, rules.TRUNCATE, rules.INVALID_UTF8]
    for p in patterns:
        for s in samples:
            assert bool(collect.python_pattern(p).search(s)) == bool(re2.search(p, s)), (p, s)
            assert collect.python_pattern(p).sub("#", s) == re2.sub(p, "#", s), (p, s)


# --- the command --------------------------------------------------------------------------------

SAMPLE = '''
import usagetrace

__all__ = ["add", "fail"]


def add(a, b):
    return a + b


def fail(message):
    raise ValueError(message)


usagetrace.instrument(__name__, consent="opt-in")
'''


def _child_env(tmp_path: Path, **extra: str) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "USAGETRACE_HOME": str(home / "usagetrace"),
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "pkgs"), str(ROOT / "src")]),
    }
    env.update(extra)
    return env


def start_collect(tmp_path: Path, directory: Path) -> tuple[subprocess.Popen, int, Path]:
    """``usagetrace collect --port 0 --dir D`` in a child; returns it, its port and its stderr file."""
    err = tmp_path / "collect.err"
    with open(err, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "usagetrace", "collect", "--port", "0", "--dir", str(directory)],
                                stdout=fh, stderr=fh, stdin=subprocess.DEVNULL, env=_child_env(tmp_path))
    deadline = time.monotonic() + 60
    for _ in range(1200):
        text = err.read_text(encoding="utf-8")
        if "listening on http://127.0.0.1:" in text:
            port = int(text.split("listening on http://127.0.0.1:", 1)[1].split()[0])
            return proc, port, err
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(err.read_text(encoding="utf-8"))


def test_collect_receives_a_consented_run_exactly_and_report_shows_it(tmp_path):
    """The issue's check: 37 calls exactly, a hostile request's extra attributes dropped, SIGINT, report."""
    pytest.importorskip("duckdb")
    pkg = tmp_path / "pkgs" / "collectpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(SAMPLE, encoding="utf-8")
    data = tmp_path / "data"
    proc, port, err = start_collect(tmp_path, data)
    try:
        code = ("import collectpkg\n"
                "for i in range(30): collectpkg.add(i, 1)\n"
                "for i in range(7):\n"
                "    try: collectpkg.fail('secret@example.com')\n"
                "    except ValueError: pass\n")
        env = _child_env(tmp_path, COLLECTPKG_TELEMETRY="1", OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}")
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                             stdin=subprocess.DEVNULL, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        # the run hands its data to a background sender: wait (bounded) until the counts are in
        deadline = time.monotonic() + 60
        for _ in range(600):
            if sum(_calls(data).values()) >= 37 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        hostile = valid_traces(1, {"host.name": "hostile-host", "user.email": "jane@example.com"})
        status, answer = post(port, "/v1/traces", hostile)
        assert status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    text = err.read_text(encoding="utf-8")
    assert "not the production path" in text and "otelcol-contrib" in text and "stopped." in text
    raw = (data / "traces.jsonl").read_text() + (data / "metrics.jsonl").read_text()
    assert "hostile-host" not in raw and "jane@example.com" not in raw and "secret@example.com" not in raw
    assert "host.name" not in raw and "user.email" not in raw
    calls = _calls(data)
    assert calls == {("collectpkg.add", "ok"): 30, ("collectpkg.fail", "error"): 7}
    report = subprocess.run([sys.executable, "-m", "usagetrace", "report", str(data), "--k", "1", "--no-cache",
                             "--package", "collectpkg", "--format", "json"],
                            env=_child_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    doc = json.loads(report.stdout)
    text = json.dumps(doc)
    assert "collectpkg.add" in text and "collectpkg.fail" in text
    assert _overview_calls(doc) == 37


def _calls(data: Path) -> dict:
    """Exact call counts stored, by (function, outcome)."""
    calls: dict = {}
    for line in stored(data, "metrics"):
        for rm in line["resourceMetrics"]:
            for sm in rm["scopeMetrics"]:
                for m in sm["metrics"]:
                    if m["name"] == "usagetrace.calls":
                        for p in m["sum"]["dataPoints"]:
                            a = {kv["key"]: kv["value"]["stringValue"] for kv in p["attributes"]}
                            key = (a["code.function.name"], a["usagetrace.outcome"])
                            calls[key] = calls.get(key, 0) + int(p["asInt"])
    return calls


def _overview_calls(doc: dict) -> int:
    return int(doc["sections"]["overview"]["rows"][0]["calls"])


# --- the README's maintainer path, followed word for word --------------------------------------


def readme_commands() -> list[str]:
    """The shell lines of the README's "See your own data" block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- maintainer-path:start -->", 1)[1].split("<!-- maintainer-path:end -->", 1)[0]
    body = block.split("```sh", 1)[1].split("```", 1)[0]
    return [line for line in body.strip().splitlines() if line.strip()]


def test_the_readmes_three_commands_give_a_report(tmp_path):
    """collect, run the package with the README's environment, report: the package's calls are in the report.

    The only changes to the README's words: a free port instead of 4318 (tests share the machine),
    and `python`/`usagetrace` are this interpreter (a bin directory on PATH)."""
    pytest.importorskip("duckdb")
    lines = readme_commands()
    assert len(lines) == 3
    assert lines[0].startswith("usagetrace collect") and "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318" in lines[1]
    assert lines[2].startswith("usagetrace report")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, args in (("python", ""), ("usagetrace", " -m usagetrace")):  # scripts: a symlink would leave the venv
        tool = bindir / name
        tool.write_text(f'#!/bin/sh\nexec "{sys.executable}"{args} "$@"\n')
        tool.chmod(0o755)
    pkg = tmp_path / "work" / "mypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "import usagetrace\nusagetrace.instrument(__name__, endpoint='https://telemetry.example.org', "
        "consent='opt-in')\n\n\ndef greet(name):\n    return f'hello {name}'\n", encoding="utf-8")
    env = _child_env(tmp_path)
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "work"), str(ROOT / "src")])
    cwd = tmp_path / "work"

    def shell(line: str) -> str:
        return line.replace("usagetrace collect", f"usagetrace collect --port {port}", 1).replace(
            "127.0.0.1:4318", f"127.0.0.1:{port}")

    err = tmp_path / "collect.err"
    with open(err, "wb") as fh:
        collector = subprocess.Popen(["bash", "-c", shell(lines[0])], env=env, cwd=cwd, stdout=fh, stderr=fh,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(1200):
            if "listening on" in err.read_text() or collector.poll() is not None:
                break
            time.sleep(0.05)
        assert "listening on" in err.read_text(), err.read_text()
        used = subprocess.run(["bash", "-c", shell(lines[1])], env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
        assert used.returncode == 0, used.stderr
        data = cwd / "usagetrace-data"
        deadline = time.monotonic() + 60
        for _ in range(600):
            if _calls(data) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert _calls(data) == {("mypkg.greet", "ok"): 1}
    finally:
        os.killpg(collector.pid, signal.SIGINT)
        assert collector.wait(timeout=60) == 0
    report = subprocess.run(["bash", "-c", shell(lines[2])], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL)
    assert report.returncode == 0, report.stderr
    assert "mypkg.greet" in report.stdout


def test_sigterm_stops_it_cleanly_with_every_acknowledged_request_on_disk(tmp_path):
    data = tmp_path / "data"
    proc, port, err = start_collect(tmp_path, data)
    try:
        for _ in range(5):
            assert post(port, "/v1/traces", valid_traces(2))[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert len(stored(data, "traces")) == 5
    assert "Stored 10 span(s)" in err.read_text(encoding="utf-8")
