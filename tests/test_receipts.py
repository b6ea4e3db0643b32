"""Receipts: every request that left the machine is recorded once, exactly as the receiver got it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from usagetrace._internal import config, receipts
from usagetrace.testing import OTLPReceiver

from .conftest import EXAMPLES, child_env

RUN = """
import tinystats
tinystats.mean([1, 2, 3])
try:
    tinystats.zscore([1, 1], 1)
except ValueError:
    pass
from usagetrace._internal import instrumentation
assert instrumentation.get("tinystats").flush(10)   # in-process delivery
tinystats.median([3, 1, 2])                          # left for the spool, sent by `usagetrace flush`
"""


def _cli(env, *args):
    return subprocess.run([sys.executable, "-m", "usagetrace", *args], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(
    "protocol,compression",
    [("http/protobuf", "none"), ("http/json", "none"), ("http/protobuf", "gzip"), ("grpc", "none")],
)
def test_history_matches_exactly_what_the_receiver_got(tmp_path, protocol, compression):
    """Receipts from in-process delivery and from the spool sender match the receiver's requests and byte counts."""
    with OTLPReceiver(grpc=protocol == "grpc") as rx:
        endpoint = rx.grpc_endpoint if protocol == "grpc" else rx.endpoint
        env = child_env({"USAGETRACE_HOME": str(tmp_path / "home"), "PYTHONPATH": EXAMPLES,
                         "TINYSTATS_TELEMETRY": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                         "OTEL_EXPORTER_OTLP_PROTOCOL": protocol, "OTEL_EXPORTER_OTLP_COMPRESSION": compression,
                         "USAGETRACE_DETACHED_SEND": "0", "USAGETRACE_EXPORT_INTERVAL": "3600"})
        proc = subprocess.run([sys.executable, "-c", RUN], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert _cli(env, "flush").returncode == 0
        history = _cli(env, "history", "tinystats", "--json")
        text = _cli(env, "history", "tinystats", "--full")  # decoded (the default is a summary)
    receipts_ = json.loads(history.stdout)["packages"]["tinystats"]
    got = sorted(json.dumps([r["signal"], r["bytes"], r["request"]], sort_keys=True) for r in receipts_)
    sent = sorted(json.dumps([signal, size, request], sort_keys=True)
                  for (signal, request), size in zip(rx.requests, rx.wire_sizes))
    assert len(sent) == 4  # traces + metrics, twice (in-process, then the spool)
    assert got == sent
    port = rx.grpc_port if protocol == "grpc" else rx.port
    assert {r["endpoint"] for r in receipts_} == {f"http://127.0.0.1:{port}"}
    assert all(r["accepted"] and r["protocol"] == protocol for r in receipts_)
    assert "tinystats.median" in text.stdout and "Resource (sent with everything):" in text.stdout


def test_no_receipt_when_nothing_left_but_the_attempt_is_recorded(tmp_path, monkeypatch):
    """A refused connection leaves no receipt (nothing left) but status can show the failed attempt."""
    from .reliability.conftest import free_port

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    target = config.resolve("metrics", None, "rpkg")
    from usagetrace._internal import transport

    result = receipts.send(transport.for_target(target), target, "rpkg", "metrics", b"", 2.0)
    assert result not in (transport.OK, transport.DROP)
    assert receipts.load("rpkg") == ([], 0)
    attempt = receipts.last("rpkg")["attempt"]
    assert attempt["outcome"].startswith("not sent:") and not attempt["accepted"]
    assert "delivered" not in receipts.last("rpkg")


def test_a_rejected_request_left_the_machine_and_has_a_receipt(monkeypatch):
    """HTTP 400: the collector got the bytes and refused them; the receipt says so."""
    from usagetrace._internal import transport

    with OTLPReceiver(status=400) as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
        target = config.resolve("metrics", None, "rpkg")
        assert receipts.send(transport.for_target(target), target, "rpkg", "metrics", b"", 2.0) == transport.DROP
    [receipt] = receipts.load("rpkg")[0]
    assert receipt["outcome"] == "rejected (HTTP 400)" and receipt["accepted"] is False and receipt["bytes"] == 0


def test_nothing_local_gets_a_receipt(packages, monkeypatch, tmp_path):
    """capture() (memory) and development mode (a local file) send nothing over the network: no receipts."""
    from usagetrace.testing import capture

    monkeypatch.setenv("USAGETRACE_DEV_FILE", str(tmp_path / "dev.jsonl"))
    monkeypatch.setenv("LOCALPKG_TELEMETRY", "1")
    mod = packages.load("localpkg", {"__init__.py": "def f(): return 1\nimport usagetrace\nH = usagetrace.instrument(__name__)\n"})
    mod.f()
    assert mod.H.flush(5)
    assert (tmp_path / "dev.jsonl").exists()
    with capture("localpkg") as cap:
        mod.f()
    assert cap.calls("localpkg.f") == 1
    assert receipts.packages() == []


def test_receipts_are_bounded_newest_kept(monkeypatch):
    """Past MAX_BYTES the oldest receipts are dropped; what remains is whole lines, newest last."""
    from usagetrace._internal import transport

    monkeypatch.setattr(receipts, "MAX_BYTES", 4000)
    target = config.Target("http", "http://127.0.0.1:1/v1/metrics", "http/protobuf")
    for i in range(60):
        receipts.record("bpkg", target, "metrics", b"", transport.OK, (True, f"accepted {i}", i))
    kept, bad = receipts.load("bpkg")
    assert bad == 0 and 0 < len(kept) < 60
    assert [r["bytes"] for r in kept] == list(range(60 - len(kept), 60))
    assert os.path.getsize(receipts._file("bpkg", ".jsonl")) <= 4000


def test_endpoint_keeps_only_scheme_host_and_port():
    """No path, query or credentials in a receipt's endpoint."""
    t = config.Target("http", "https://user:secret@telemetry.example.org/base/v1/traces?token=x", "http/protobuf")
    assert receipts.endpoint_of(t) == "https://telemetry.example.org:443"
    g = config.Target("grpc", "[::1]:4317", "grpc", secure=False)
    assert receipts.endpoint_of(g) == "http://[::1]:4317"


def test_an_oversized_receipt_keeps_a_complete_summary(monkeypatch):
    """A request too large to keep decoded is summarised (span names and counts), never silently dropped."""
    from usagetrace._internal import transport

    monkeypatch.setattr(receipts, "MAX_RECEIPT_BYTES", 50)
    target = config.Target("http", "http://127.0.0.1:1/v1/metrics", "http/protobuf")
    receipts.record("spkg", target, "metrics", b"", transport.OK, (True, "accepted (HTTP 200)", 0))
    [receipt] = receipts.load("spkg")[0]
    assert receipt["request"] is None and "more than" in receipt["omitted"]
    assert receipt["summary"] == {"points": 0, "metrics": []}
